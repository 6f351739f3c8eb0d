/* The mixer entry points' dims (krr.c, attention.c): what the DIMS argument of their tables
 * (napi_args.h) read, as mixer.h's mx_dims. */
#ifndef CUBIT_MIXER_NAPI_H
#define CUBIT_MIXER_NAPI_H

#include "mixer.h"
#include "napi_args.h"

/* The dims at v[0..6] (checked and clamped by arg_mixer_dims); lo and ids_elementwise are left
 * for mx_masks_build. */
static inline mx_dims mx_dims_of(const arg_value *v) {
  return (mx_dims){.B = (int)v[0].n, .H = (int)v[1].n, .T = (int)v[2].n, .D = (int)v[3].n,
                   .window = (int)v[4].n, .doc = (const int32_t *)v[5].data, .block = (int)v[6].n};
}

#endif
