/* Argument checking shared by the mixer entry points (krr.c, attention.c). */
#ifndef CUBIT_MIXER_NAPI_H
#define CUBIT_MIXER_NAPI_H

#include "mixer.h"
#include "napi_util.h"

/* Reads (B, H, T, D, window, docIds, blockSize) from argv[first..first+6] into d (lo and
 * ids_elementwise are left for mx_masks_build). docIds is null/undefined or an Int32Array of
 * at least B*T ids. */
static inline bool mx_arg_dims(napi_env env, napi_value *argv, int first, const char *fn,
                               mx_dims *d) {
  int64_t v[4], window, block;
  static const char *names[4] = {"B", "H", "T", "D"};
  for (int i = 0; i < 4; i++) {
    if (!cubit_arg_index(env, argv, first + i, fn, names[i], &v[i])) return false;
    if (v[i] < 1 || v[i] > INT32_MAX) {
      cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (%s) must be in [1, 2^31), got %lld", fn,
                  first + i + 1, names[i], (long long)v[i]);
      return false;
    }
  }
  if (v[0] * v[1] > INT32_MAX || v[0] * v[2] > INT32_MAX) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B*H and B*T must stay below 2^31", fn);
    return false;
  }
  if (!cubit_arg_index(env, argv, first + 4, fn, "window", &window) ||
      !cubit_arg_index(env, argv, first + 6, fn, "blockSize", &block))
    return false;
  if (block < 1) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (blockSize) must be >= 1", fn, first + 7);
    return false;
  }
  d->B = (int)v[0], d->H = (int)v[1], d->T = (int)v[2], d->D = (int)v[3];
  d->window = window > v[2] ? (int)v[2] : (int)window; /* a window >= T masks nothing */
  d->block = block > v[2] ? (int)v[2] : (int)block;
  d->doc = NULL;
  napi_valuetype t;
  if (napi_typeof(env, argv[first + 5], &t) != napi_ok) return false;
  if (t != napi_null && t != napi_undefined) {
    int32_t *ids;
    size_t n;
    if (!cubit_arg_i32(env, argv, first + 5, fn, "docIds", &ids, &n)) return false;
    if (n < (size_t)(v[0] * v[2])) {
      cubit_throw(env, CUBIT_RANGE_ERROR, "%s: docIds has %zu ids, needs B*T = %lld", fn, n,
                  (long long)(v[0] * v[2]));
      return false;
    }
    d->doc = ids;
  }
  return true;
}

/* A Float32Array of at least `need` elements. */
static inline bool mx_arg_f32(napi_env env, napi_value *argv, int i, const char *fn,
                              const char *name, size_t need, float **p) {
  size_t n;
  if (!cubit_arg_f32(env, argv, i, fn, name, p, &n)) return false;
  if (n < need) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s has %zu elements, needs %zu", fn, name, n, need);
    return false;
  }
  return true;
}

/* Like mx_arg_f32, or null/undefined (*p = NULL). */
static inline bool mx_arg_f32_or_null(napi_env env, napi_value *argv, int i, const char *fn,
                                      const char *name, size_t need, float **p) {
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) != napi_ok) return false;
  if (t == napi_null || t == napi_undefined) {
    *p = NULL;
    return true;
  }
  return mx_arg_f32(env, argv, i, fn, name, need, p);
}

#endif
