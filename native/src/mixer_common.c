/* Shared parts of the mixer kernels: per-thread scratch, the mask bounds, the ISA table. */
#include "mixer.h"

#include "cpu.h"
#include "threadpool.h"

#include <stdatomic.h>
#include <stdlib.h>

/* ---- per-thread scratch ----------------------------------------------------------------- */

/* 16 floats of slack: the vector loops may read (never write) up to a vector past a row. */
#define SLACK 16

_Static_assert(CUBIT_SCRATCH_MX + MX_SLOTS <= CUBIT_SCRATCH_SLOTS, "threadpool.h reserves too few mixer slots");

float *mx_scratch(int slot, size_t n) { return cubit_scratch(CUBIT_SCRATCH_MX + slot, (n + SLACK) * sizeof(float)); }

/* ---- how finely a (b, h) is split (mixer.h) --------------------------------------------- */

int mx_par_units(void) {
  static _Atomic int p = 0;
  int v = atomic_load_explicit(&p, memory_order_relaxed);
  if (v == 0) {
    const int n = cubit_cpu_count();
    v = n < 4 ? 4 : n > 16 ? 16 : n;
    atomic_store_explicit(&p, v, memory_order_relaxed);
  }
  return v;
}

/* ---- mask bounds ------------------------------------------------------------------------ */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int mx_masks_build(mx_dims *d) {
  size_t T = (size_t)d->T, B = (size_t)d->B;
  /* lo (B*T), a sort buffer (T) and the flags (B bytes). */
  size_t need = B * T + T + (B + 3) / 4 + 1;
  int32_t *lo = cubit_scratch(CUBIT_SCRATCH_MX_MASK, need * sizeof(int32_t));
  if (!lo) return -1;
  int32_t *runs = lo + B * T;
  unsigned char *flags = (unsigned char *)(runs + T);
  for (size_t b = 0; b < B; b++) {
    int32_t *l = lo + b * T;
    for (size_t i = 0; i < T; i++) l[i] = d->window > 0 && (long)i - d->window + 1 > 0 ? (int32_t)(i - d->window + 1) : 0;
    flags[b] = 0;
    if (!d->doc) continue;
    /* Documents: contiguous runs (each id in one run, as packing makes) narrow lo to the
     * run's start; otherwise the ids are compared element by element. */
    const int32_t *id = d->doc + b * T;
    size_t nruns = 0;
    for (size_t i = 0; i < T; i++)
      if (i == 0 || id[i] != id[i - 1]) runs[nruns++] = id[i];
    qsort(runs, nruns, sizeof(int32_t), cmp_i32);
    for (size_t k = 1; k < nruns; k++)
      if (runs[k] == runs[k - 1]) flags[b] = 1;
    if (flags[b]) continue;
    int32_t start = 0;
    for (size_t i = 0; i < T; i++) {
      if (i > 0 && id[i] != id[i - 1]) start = (int32_t)i;
      if (l[i] < start) l[i] = start;
    }
  }
  d->lo = lo;
  d->ids_elementwise = flags;
  return 0;
}

/* ---- ISA ---------------------------------------------------------------------------------- */

const mx_kernels *mx_current_kernels(void) {
  const mx_kernels *K = NULL;
  switch (cubit_current_isa()) {
    case CUBIT_ISA_AVX512: K = mx_kernels_avx512(); break;
    case CUBIT_ISA_AVX2: K = mx_kernels_avx2(); break;
    default: break;
  }
  return K ? K : mx_kernels_generic();
}
