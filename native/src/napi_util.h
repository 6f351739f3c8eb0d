/* Small helpers for the N-API entry points: fetching typed arrays and numbers with clear errors.
 *
 * Every cubit_arg_* helper takes the function's name (for messages), the argument vector, the
 * argument's 0-based position and its name; it stores the value and returns true, or throws a
 * TypeError such as "sgemm: argument 2 (m) must be a non-negative integer" and returns false
 * (the entry point should then return NULL). Messages number arguments from 1.
 *
 * Typical entry point:
 *   CUBIT_NAPI(cubit_napi_scale) {
 *     napi_value argv[2];
 *     float *x; size_t n; double s;
 *     if (!cubit_get_args(env, info, "scale", 2, argv) ||
 *         !cubit_arg_f32(env, argv, 0, "scale", "x", &x, &n) ||
 *         !cubit_arg_double(env, argv, 1, "scale", "s", &s)) return NULL;
 *     ...
 *     return cubit_undefined(env);
 *   }
 */
#ifndef CUBIT_NAPI_UTIL_H
#define CUBIT_NAPI_UTIL_H

#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <node_api.h>

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Declares (or defines) an N-API entry point. */
#define CUBIT_NAPI(fn_name) napi_value fn_name(napi_env env, napi_callback_info info)

/* Largest integer a JS number holds exactly. */
#define CUBIT_MAX_SAFE_INTEGER 9007199254740991.0

typedef enum { CUBIT_TYPE_ERROR, CUBIT_RANGE_ERROR, CUBIT_ERROR } cubit_error_kind;

/* Throws an error of the given kind with a printf-style message (unless one is pending).
 * Returns NULL so an entry point can `return cubit_throw(...)`. */
static inline napi_value cubit_throw(napi_env env, cubit_error_kind kind, const char *fmt, ...) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return NULL;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  switch (kind) {
    case CUBIT_TYPE_ERROR: napi_throw_type_error(env, NULL, msg); break;
    case CUBIT_RANGE_ERROR: napi_throw_range_error(env, NULL, msg); break;
    default: napi_throw_error(env, NULL, msg); break;
  }
  return NULL;
}

static inline napi_value cubit_undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

/* Fetches exactly `expected` arguments into argv (missing ones are an error). */
static inline bool cubit_get_args(napi_env env, napi_callback_info info, const char *fn,
                                  size_t expected, napi_value *argv) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    cubit_throw(env, CUBIT_ERROR, "%s: could not read the arguments", fn);
    return false;
  }
  if (argc < expected) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: expected %zu arguments, got %zu", fn, expected, argc);
    return false;
  }
  return true;
}

static inline bool cubit_arg_typedarray_(napi_env env, napi_value *argv, int i, const char *fn,
                                         const char *name, napi_typedarray_type want,
                                         const char *want_name, void **data, size_t *length) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *ptr = NULL;
  if (napi_is_typedarray(env, argv[i], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[i], &type, &len, &ptr, NULL, NULL) != napi_ok ||
      type != want) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a %s", fn, i + 1, name, want_name);
    return false;
  }
  *data = ptr;
  *length = len;
  return true;
}

static inline bool cubit_arg_f32(napi_env env, napi_value *argv, int i, const char *fn,
                                 const char *name, float **data, size_t *length) {
  void *p;
  if (!cubit_arg_typedarray_(env, argv, i, fn, name, napi_float32_array, "Float32Array", &p, length))
    return false;
  *data = p;
  return true;
}

static inline bool cubit_arg_i32(napi_env env, napi_value *argv, int i, const char *fn,
                                 const char *name, int32_t **data, size_t *length) {
  void *p;
  if (!cubit_arg_typedarray_(env, argv, i, fn, name, napi_int32_array, "Int32Array", &p, length))
    return false;
  *data = p;
  return true;
}

static inline bool cubit_arg_double(napi_env env, napi_value *argv, int i, const char *fn,
                                    const char *name, double *out) {
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[i], out) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a number", fn, i + 1, name);
    return false;
  }
  return true;
}

/* An integer number (no fraction, |x| <= 2^53 - 1). */
static inline bool cubit_arg_int(napi_env env, napi_value *argv, int i, const char *fn,
                                 const char *name, int64_t *out) {
  double x;
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[i], &x) != napi_ok || !(fabs(x) <= CUBIT_MAX_SAFE_INTEGER) ||
      x != floor(x)) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be an integer", fn, i + 1, name);
    return false;
  }
  *out = (int64_t)x;
  return true;
}

/* A non-negative integer: sizes, offsets, strides. */
static inline bool cubit_arg_index(napi_env env, napi_value *argv, int i, const char *fn,
                                   const char *name, int64_t *out) {
  double x;
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) != napi_ok || t != napi_number ||
      napi_get_value_double(env, argv[i], &x) != napi_ok || !(x >= 0 && x <= CUBIT_MAX_SAFE_INTEGER) ||
      x != floor(x)) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a non-negative integer", fn,
                i + 1, name);
    return false;
  }
  *out = (int64_t)x;
  return true;
}

/* A boolean; 0 / 1 numbers are accepted too. */
static inline bool cubit_arg_bool(napi_env env, napi_value *argv, int i, const char *fn,
                                  const char *name, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) == napi_ok) {
    if (t == napi_boolean && napi_get_value_bool(env, argv[i], out) == napi_ok) return true;
    double x;
    if (t == napi_number && napi_get_value_double(env, argv[i], &x) == napi_ok && (x == 0 || x == 1)) {
      *out = x != 0;
      return true;
    }
  }
  cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a boolean", fn, i + 1, name);
  return false;
}

/* A string of fewer than `cap` bytes (UTF-8), copied into buf. */
static inline bool cubit_arg_string(napi_env env, napi_value *argv, int i, const char *fn,
                                    const char *name, char *buf, size_t cap) {
  napi_valuetype t;
  size_t len = 0;
  if (napi_typeof(env, argv[i], &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, argv[i], NULL, 0, &len) != napi_ok || len >= cap ||
      napi_get_value_string_utf8(env, argv[i], buf, cap, &len) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a string of at most %zu bytes",
                fn, i + 1, name, cap - 1);
    return false;
  }
  return true;
}

/* Checks that a strided 2-D view of a typed array stays inside it, for each of `batch`
 * matrices: element (p, r, c) is at off + p*batch_stride + r*ld + c, r < rows, c < cols.
 * Needs ld >= cols. Views with no elements are always fine. Throws a RangeError naming the
 * array (`what`) otherwise. */
static inline bool cubit_check_view(napi_env env, const char *fn, const char *what, size_t length,
                                    int64_t off, int64_t batch, int64_t batch_stride, int64_t rows,
                                    int64_t cols, int64_t ld, const char *ld_name,
                                    const char *cols_name) {
  if (ld < cols) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s (%lld) must be >= %s (%lld)", fn, ld_name,
                (long long)ld, cols_name, (long long)cols);
    return false;
  }
  if (batch == 0 || rows == 0 || cols == 0) return true;
  /* last = off + (batch-1)*batch_stride + (rows-1)*ld + cols-1, with overflow checks */
  int64_t t1, t2, last;
  if (__builtin_mul_overflow(batch - 1, batch_stride, &t1) ||
      __builtin_mul_overflow(rows - 1, ld, &t2) || __builtin_add_overflow(off, t1, &last) ||
      __builtin_add_overflow(last, t2, &last) || __builtin_add_overflow(last, cols - 1, &last) ||
      (uint64_t)last >= (uint64_t)length) {
    cubit_throw(env, CUBIT_RANGE_ERROR,
                "%s: %s is too short: the view (offset %lld, batch %lld x stride %lld, %lld x %lld "
                "with row stride %lld) reaches past its length %zu",
                fn, what, (long long)off, (long long)batch, (long long)batch_stride,
                (long long)rows, (long long)cols, (long long)ld, length);
    return false;
  }
  return true;
}

#endif
