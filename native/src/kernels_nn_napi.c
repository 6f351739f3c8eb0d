/* N-API layer of the non-GEMM kernels: reads and checks the arguments (every view must lie
 * inside its typed array, so a bad call throws instead of touching foreign memory), then calls
 * the C API of kernels_nn.h. */
#include "kernels_nn_napi.h"

#include "kernels_nn.h"

/* ---- argument helpers --------------------------------------------------------------------- */

/* A Float32Array, or null / undefined for an optional one (NULL, length 0). */
static bool arg_f32_opt(napi_env env, napi_value *argv, int i, const char *fn, const char *name,
                        float **data, size_t *len) {
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) == napi_ok && (t == napi_null || t == napi_undefined)) {
    *data = NULL;
    *len = 0;
    return true;
  }
  return cubit_arg_f32(env, argv, i, fn, name, data, len);
}

/* An operation code in [0, count). */
static bool arg_op(napi_env env, napi_value *argv, int i, const char *fn, int count, int *op) {
  int64_t v;
  if (!cubit_arg_index(env, argv, i, fn, "op", &v)) return false;
  if (v >= count) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (op) must be an op code below %d, got %lld",
                fn, i + 1, count, (long long)v);
    return false;
  }
  *op = (int)v;
  return true;
}

/* a * b without overflow. */
static bool mul_ok(napi_env env, const char *fn, int64_t a, int64_t b, int64_t *out) {
  if (__builtin_mul_overflow(a, b, out)) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: sizes %lld x %lld overflow", fn, (long long)a, (long long)b);
    return false;
  }
  return true;
}

/* Elements [off, off + count) must lie inside an array of `len`. */
static bool need(napi_env env, const char *fn, const char *name, size_t len, int64_t off,
                 int64_t count) {
  int64_t end;
  if (count == 0) return true;
  if (__builtin_add_overflow(off, count, &end) || (uint64_t)end > (uint64_t)len) {
    cubit_throw(env, CUBIT_RANGE_ERROR,
                "%s: %s is too short: %lld elements from offset %lld reach past its length %zu", fn,
                name, (long long)count, (long long)off, len);
    return false;
  }
  return true;
}

/* A JS array of at most NN_MAX_RANK integers (non-negative when `sizes`). */
static bool arg_dims(napi_env env, napi_value *argv, int i, const char *fn, const char *name,
                     bool sizes, int64_t *out, int *rank) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, argv[i], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[i], &n) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be an array of integers", fn, i + 1, name);
    return false;
  }
  if (n > NN_MAX_RANK) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (%s) has rank %u; at most %d is supported",
                fn, i + 1, name, n, NN_MAX_RANK);
    return false;
  }
  for (uint32_t d = 0; d < n; d++) {
    napi_value e;
    double x;
    if (napi_get_element(env, argv[i], d, &e) != napi_ok ||
        napi_get_value_double(env, e, &x) != napi_ok || x != floor(x) ||
        !(fabs(x) <= CUBIT_MAX_SAFE_INTEGER) || (sizes && x < 0)) {
      cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must hold %s integers", fn, i + 1,
                  name, sizes ? "non-negative" : "");
      return false;
    }
    out[d] = (int64_t)x;
  }
  *rank = (int)n;
  return true;
}

/* Elements of `shape` read with `strides` from `off` must lie inside an array of `len`. */
static bool need_strided(napi_env env, const char *fn, const char *name, size_t len, int64_t off,
                         const int64_t *shape, const int64_t *strides, int rank) {
  int64_t lo = off, hi = off, t;
  for (int d = 0; d < rank; d++)
    if (shape[d] == 0) return true;
  for (int d = 0; d < rank; d++) {
    if (__builtin_mul_overflow(shape[d] - 1, strides[d], &t) ||
        __builtin_add_overflow(t > 0 ? hi : lo, t, t > 0 ? &hi : &lo))
      goto bad;
  }
  if (lo >= 0 && (uint64_t)hi < (uint64_t)len) return true;
bad:
  cubit_throw(env, CUBIT_RANGE_ERROR,
              "%s: %s is too short for the strided view (offset %lld reaches [%lld, %lld]; length %zu)",
              fn, name, (long long)off, (long long)lo, (long long)hi, len);
  return false;
}

static bool same_rank(napi_env env, const char *fn, const char *name, int r, int rank) {
  if (r == rank) return true;
  cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s has %d entries but the shape has rank %d", fn, name, r, rank);
  return false;
}

static int64_t numel(const int64_t *shape, int rank) {
  int64_t n = 1;
  for (int d = 0; d < rank; d++) n *= shape[d];
  return n;
}

static napi_value bad_id(napi_env env, const char *fn, const char *what, size_t pos, int32_t v,
                         size_t limit) {
  return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s %d at position %zu is outside [0, %zu)", fn,
                     what, (int)v, pos, limit);
}

/* ---- data movement ------------------------------------------------------------------------ */

/* fill(out, value, offset, length) */
CUBIT_NAPI(cubit_napi_nn_fill) {
  static const char *fn = "fill";
  napi_value argv[4];
  float *out;
  size_t len;
  double value;
  int64_t off, n;
  if (!cubit_get_args(env, info, fn, 4, argv) || !cubit_arg_f32(env, argv, 0, fn, "out", &out, &len) ||
      !cubit_arg_double(env, argv, 1, fn, "value", &value) ||
      !cubit_arg_index(env, argv, 2, fn, "offset", &off) ||
      !cubit_arg_index(env, argv, 3, fn, "length", &n) || !need(env, fn, "out", len, off, n))
    return NULL;
  cubit_nn_fill(out + off, (float)value, (size_t)n);
  return cubit_undefined(env);
}

/* copy(src, srcOffset, out, outOffset, length) */
CUBIT_NAPI(cubit_napi_nn_copy) {
  static const char *fn = "copy";
  napi_value argv[5];
  float *src, *out;
  size_t slen, olen;
  int64_t soff, ooff, n;
  if (!cubit_get_args(env, info, fn, 5, argv) || !cubit_arg_f32(env, argv, 0, fn, "src", &src, &slen) ||
      !cubit_arg_index(env, argv, 1, fn, "srcOffset", &soff) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &out, &olen) ||
      !cubit_arg_index(env, argv, 3, fn, "outOffset", &ooff) ||
      !cubit_arg_index(env, argv, 4, fn, "length", &n) || !need(env, fn, "src", slen, soff, n) ||
      !need(env, fn, "out", olen, ooff, n))
    return NULL;
  cubit_nn_copy(src + soff, out + ooff, (size_t)n);
  return cubit_undefined(env);
}

/* stridedCopy(src, srcOffset, shape, srcStrides, out, outOffset) */
CUBIT_NAPI(cubit_napi_nn_strided_copy) {
  static const char *fn = "stridedCopy";
  napi_value argv[6];
  float *src, *out;
  size_t slen, olen;
  int64_t soff, ooff, shape[NN_MAX_RANK], st[NN_MAX_RANK];
  int rank, r2;
  if (!cubit_get_args(env, info, fn, 6, argv) || !cubit_arg_f32(env, argv, 0, fn, "src", &src, &slen) ||
      !cubit_arg_index(env, argv, 1, fn, "srcOffset", &soff) ||
      !arg_dims(env, argv, 2, fn, "shape", true, shape, &rank) ||
      !arg_dims(env, argv, 3, fn, "srcStrides", false, st, &r2) ||
      !same_rank(env, fn, "srcStrides", r2, rank) ||
      !cubit_arg_f32(env, argv, 4, fn, "out", &out, &olen) ||
      !cubit_arg_index(env, argv, 5, fn, "outOffset", &ooff) ||
      !need_strided(env, fn, "src", slen, soff, shape, st, rank) ||
      !need(env, fn, "out", olen, ooff, numel(shape, rank)))
    return NULL;
  cubit_nn_strided_copy(src + soff, shape, st, rank, out + ooff);
  return cubit_undefined(env);
}

/* ---- elementwise -------------------------------------------------------------------------- */

/* unary(op, x, out, length, scalar) */
CUBIT_NAPI(cubit_napi_nn_unary) {
  static const char *fn = "unary";
  napi_value argv[5];
  int op;
  float *x, *out;
  size_t xl, ol;
  int64_t n;
  double scalar;
  if (!cubit_get_args(env, info, fn, 5, argv) || !arg_op(env, argv, 0, fn, NN_UNARY_COUNT, &op) ||
      !cubit_arg_f32(env, argv, 1, fn, "x", &x, &xl) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &out, &ol) ||
      !cubit_arg_index(env, argv, 3, fn, "length", &n) ||
      !cubit_arg_double(env, argv, 4, fn, "scalar", &scalar) || !need(env, fn, "x", xl, 0, n) ||
      !need(env, fn, "out", ol, 0, n))
    return NULL;
  cubit_nn_unary(op, x, out, (size_t)n, scalar);
  return cubit_undefined(env);
}

/* unaryBackward(op, x, y, dy, dx, length, scalar) */
CUBIT_NAPI(cubit_napi_nn_unary_bwd) {
  static const char *fn = "unaryBackward";
  napi_value argv[7];
  int op;
  float *x, *y, *dy, *dx;
  size_t xl, yl, gl, dl;
  int64_t n;
  double scalar;
  if (!cubit_get_args(env, info, fn, 7, argv) || !arg_op(env, argv, 0, fn, NN_UNARY_COUNT, &op) ||
      !cubit_arg_f32(env, argv, 1, fn, "x", &x, &xl) || !cubit_arg_f32(env, argv, 2, fn, "y", &y, &yl) ||
      !cubit_arg_f32(env, argv, 3, fn, "dy", &dy, &gl) ||
      !cubit_arg_f32(env, argv, 4, fn, "dx", &dx, &dl) ||
      !cubit_arg_index(env, argv, 5, fn, "length", &n) ||
      !cubit_arg_double(env, argv, 6, fn, "scalar", &scalar) || !need(env, fn, "x", xl, 0, n) ||
      !need(env, fn, "y", yl, 0, n) || !need(env, fn, "dy", gl, 0, n) ||
      !need(env, fn, "dx", dl, 0, n))
    return NULL;
  cubit_nn_unary_bwd(op, x, y, dy, dx, (size_t)n, scalar);
  return cubit_undefined(env);
}

/* binary(op, a, aStrides, b, bStrides, out, shape) */
CUBIT_NAPI(cubit_napi_nn_binary) {
  static const char *fn = "binary";
  napi_value argv[7];
  int op, rank, ra, rb;
  float *a, *b, *out;
  size_t al, bl, ol;
  int64_t as[NN_MAX_RANK], bs[NN_MAX_RANK], shape[NN_MAX_RANK];
  if (!cubit_get_args(env, info, fn, 7, argv) || !arg_op(env, argv, 0, fn, NN_BINARY_COUNT, &op) ||
      !cubit_arg_f32(env, argv, 1, fn, "a", &a, &al) ||
      !arg_dims(env, argv, 2, fn, "aStrides", false, as, &ra) ||
      !cubit_arg_f32(env, argv, 3, fn, "b", &b, &bl) ||
      !arg_dims(env, argv, 4, fn, "bStrides", false, bs, &rb) ||
      !cubit_arg_f32(env, argv, 5, fn, "out", &out, &ol) ||
      !arg_dims(env, argv, 6, fn, "shape", true, shape, &rank) ||
      !same_rank(env, fn, "aStrides", ra, rank) || !same_rank(env, fn, "bStrides", rb, rank) ||
      !need_strided(env, fn, "a", al, 0, shape, as, rank) ||
      !need_strided(env, fn, "b", bl, 0, shape, bs, rank) ||
      !need(env, fn, "out", ol, 0, numel(shape, rank)))
    return NULL;
  cubit_nn_binary(op, a, as, b, bs, out, shape, rank);
  return cubit_undefined(env);
}

/* where(cond, cStrides, a, aStrides, b, bStrides, out, shape); cond is a Float32Array or an
 * Int32Array (nonzero = true) */
CUBIT_NAPI(cubit_napi_nn_where) {
  static const char *fn = "where";
  napi_value argv[8];
  int rank, rc, ra, rb;
  bool is_ta = false;
  napi_typedarray_type ctype;
  void *cond = NULL;
  float *a, *b, *out;
  size_t cl = 0, al, bl, ol;
  int64_t cs[NN_MAX_RANK], as[NN_MAX_RANK], bs[NN_MAX_RANK], shape[NN_MAX_RANK];
  if (!cubit_get_args(env, info, fn, 8, argv)) return NULL;
  if (napi_is_typedarray(env, argv[0], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[0], &ctype, &cl, &cond, NULL, NULL) != napi_ok ||
      (ctype != napi_float32_array && ctype != napi_int32_array))
    return cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument 1 (cond) must be a Float32Array or an Int32Array", fn);
  if (!arg_dims(env, argv, 1, fn, "cStrides", false, cs, &rc) ||
      !cubit_arg_f32(env, argv, 2, fn, "a", &a, &al) ||
      !arg_dims(env, argv, 3, fn, "aStrides", false, as, &ra) ||
      !cubit_arg_f32(env, argv, 4, fn, "b", &b, &bl) ||
      !arg_dims(env, argv, 5, fn, "bStrides", false, bs, &rb) ||
      !cubit_arg_f32(env, argv, 6, fn, "out", &out, &ol) ||
      !arg_dims(env, argv, 7, fn, "shape", true, shape, &rank) ||
      !same_rank(env, fn, "cStrides", rc, rank) || !same_rank(env, fn, "aStrides", ra, rank) ||
      !same_rank(env, fn, "bStrides", rb, rank) ||
      !need_strided(env, fn, "cond", cl, 0, shape, cs, rank) ||
      !need_strided(env, fn, "a", al, 0, shape, as, rank) ||
      !need_strided(env, fn, "b", bl, 0, shape, bs, rank) ||
      !need(env, fn, "out", ol, 0, numel(shape, rank)))
    return NULL;
  cubit_nn_where((const uint32_t *)cond, ctype == napi_int32_array, cs, a, as, b, bs, out, shape, rank);
  return cubit_undefined(env);
}

/* reduce(op, x, out, outer, len, inner) */
CUBIT_NAPI(cubit_napi_nn_reduce) {
  static const char *fn = "reduce";
  napi_value argv[6];
  int op;
  float *x, *out;
  size_t xl, ol;
  int64_t outer, len, inner, on, n;
  if (!cubit_get_args(env, info, fn, 6, argv) || !arg_op(env, argv, 0, fn, NN_REDUCE_COUNT, &op) ||
      !cubit_arg_f32(env, argv, 1, fn, "x", &x, &xl) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &out, &ol) ||
      !cubit_arg_index(env, argv, 3, fn, "outer", &outer) ||
      !cubit_arg_index(env, argv, 4, fn, "len", &len) ||
      !cubit_arg_index(env, argv, 5, fn, "inner", &inner) ||
      !mul_ok(env, fn, outer, inner, &on) || !mul_ok(env, fn, on, len, &n) ||
      !need(env, fn, "x", xl, 0, n) || !need(env, fn, "out", ol, 0, on))
    return NULL;
  cubit_nn_reduce(op, x, out, (size_t)outer, (size_t)len, (size_t)inner);
  return cubit_undefined(env);
}

/* ---- fused row kernels -------------------------------------------------------------------- */

/* rows, cols at argv[i], argv[i+1], and rows*cols in *n */
static bool arg_rows_cols(napi_env env, napi_value *argv, int i, const char *fn, int64_t *rows,
                          int64_t *cols, int64_t *n) {
  return cubit_arg_index(env, argv, i, fn, "rows", rows) &&
         cubit_arg_index(env, argv, i + 1, fn, "cols", cols) && mul_ok(env, fn, *rows, *cols, n);
}

/* softmax(x, out, rows, cols, log) */
CUBIT_NAPI(cubit_napi_nn_softmax) {
  static const char *fn = "softmax";
  napi_value argv[5];
  float *x, *out;
  size_t xl, ol;
  int64_t rows, cols, n;
  bool log;
  if (!cubit_get_args(env, info, fn, 5, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !cubit_arg_f32(env, argv, 1, fn, "out", &out, &ol) ||
      !arg_rows_cols(env, argv, 2, fn, &rows, &cols, &n) ||
      !cubit_arg_bool(env, argv, 4, fn, "log", &log) || !need(env, fn, "x", xl, 0, n) ||
      !need(env, fn, "out", ol, 0, n))
    return NULL;
  cubit_nn_softmax(x, out, (size_t)rows, (size_t)cols, log);
  return cubit_undefined(env);
}

/* softmaxBackward(y, dy, dx, rows, cols, log) */
CUBIT_NAPI(cubit_napi_nn_softmax_bwd) {
  static const char *fn = "softmaxBackward";
  napi_value argv[6];
  float *y, *dy, *dx;
  size_t yl, gl, dl;
  int64_t rows, cols, n;
  bool log;
  if (!cubit_get_args(env, info, fn, 6, argv) || !cubit_arg_f32(env, argv, 0, fn, "y", &y, &yl) ||
      !cubit_arg_f32(env, argv, 1, fn, "dy", &dy, &gl) ||
      !cubit_arg_f32(env, argv, 2, fn, "dx", &dx, &dl) ||
      !arg_rows_cols(env, argv, 3, fn, &rows, &cols, &n) ||
      !cubit_arg_bool(env, argv, 5, fn, "log", &log) || !need(env, fn, "y", yl, 0, n) ||
      !need(env, fn, "dy", gl, 0, n) || !need(env, fn, "dx", dl, 0, n))
    return NULL;
  cubit_nn_softmax_bwd(y, dy, dx, (size_t)rows, (size_t)cols, log);
  return cubit_undefined(env);
}

/* rmsNorm(x, w | null, out, rstd, rows, cols, eps) */
CUBIT_NAPI(cubit_napi_nn_rmsnorm) {
  static const char *fn = "rmsNorm";
  napi_value argv[7];
  float *x, *w, *out, *rstd;
  size_t xl, wl, ol, rl;
  int64_t rows, cols, n;
  double eps;
  if (!cubit_get_args(env, info, fn, 7, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !arg_f32_opt(env, argv, 1, fn, "w", &w, &wl) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &out, &ol) ||
      !cubit_arg_f32(env, argv, 3, fn, "rstd", &rstd, &rl) ||
      !arg_rows_cols(env, argv, 4, fn, &rows, &cols, &n) ||
      !cubit_arg_double(env, argv, 6, fn, "eps", &eps) || !need(env, fn, "x", xl, 0, n) ||
      (w && !need(env, fn, "w", wl, 0, cols)) || !need(env, fn, "out", ol, 0, n) ||
      !need(env, fn, "rstd", rl, 0, rows))
    return NULL;
  cubit_nn_rmsnorm(x, w, out, rstd, (size_t)rows, (size_t)cols, eps);
  return cubit_undefined(env);
}

/* rmsNormBackward(x, w | null, rstd, dy, dx, dw | null, rows, cols) */
CUBIT_NAPI(cubit_napi_nn_rmsnorm_bwd) {
  static const char *fn = "rmsNormBackward";
  napi_value argv[8];
  float *x, *w, *rstd, *dy, *dx, *dw;
  size_t xl, wl, rl, gl, dl, dwl;
  int64_t rows, cols, n;
  if (!cubit_get_args(env, info, fn, 8, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !arg_f32_opt(env, argv, 1, fn, "w", &w, &wl) ||
      !cubit_arg_f32(env, argv, 2, fn, "rstd", &rstd, &rl) ||
      !cubit_arg_f32(env, argv, 3, fn, "dy", &dy, &gl) ||
      !cubit_arg_f32(env, argv, 4, fn, "dx", &dx, &dl) ||
      !arg_f32_opt(env, argv, 5, fn, "dw", &dw, &dwl) ||
      !arg_rows_cols(env, argv, 6, fn, &rows, &cols, &n) || !need(env, fn, "x", xl, 0, n) ||
      (w && !need(env, fn, "w", wl, 0, cols)) || !need(env, fn, "rstd", rl, 0, rows) ||
      !need(env, fn, "dy", gl, 0, n) || !need(env, fn, "dx", dl, 0, n) ||
      (dw && !need(env, fn, "dw", dwl, 0, cols)))
    return NULL;
  if (cubit_nn_rmsnorm_bwd(x, w, rstd, dy, dx, dw, (size_t)rows, (size_t)cols) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the weight-gradient scratch", fn);
  return cubit_undefined(env);
}

/* layerNorm(x, w | null, b | null, out, mean, rstd, rows, cols, eps) */
CUBIT_NAPI(cubit_napi_nn_layernorm) {
  static const char *fn = "layerNorm";
  napi_value argv[9];
  float *x, *w, *b, *out, *mean, *rstd;
  size_t xl, wl, bl, ol, ml, rl;
  int64_t rows, cols, n;
  double eps;
  if (!cubit_get_args(env, info, fn, 9, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !arg_f32_opt(env, argv, 1, fn, "w", &w, &wl) || !arg_f32_opt(env, argv, 2, fn, "b", &b, &bl) ||
      !cubit_arg_f32(env, argv, 3, fn, "out", &out, &ol) ||
      !cubit_arg_f32(env, argv, 4, fn, "mean", &mean, &ml) ||
      !cubit_arg_f32(env, argv, 5, fn, "rstd", &rstd, &rl) ||
      !arg_rows_cols(env, argv, 6, fn, &rows, &cols, &n) ||
      !cubit_arg_double(env, argv, 8, fn, "eps", &eps) || !need(env, fn, "x", xl, 0, n) ||
      (w && !need(env, fn, "w", wl, 0, cols)) || (b && !need(env, fn, "b", bl, 0, cols)) ||
      !need(env, fn, "out", ol, 0, n) || !need(env, fn, "mean", ml, 0, rows) ||
      !need(env, fn, "rstd", rl, 0, rows))
    return NULL;
  cubit_nn_layernorm(x, w, b, out, mean, rstd, (size_t)rows, (size_t)cols, eps);
  return cubit_undefined(env);
}

/* layerNormBackward(x, w | null, mean, rstd, dy, dx, dw | null, db | null, rows, cols) */
CUBIT_NAPI(cubit_napi_nn_layernorm_bwd) {
  static const char *fn = "layerNormBackward";
  napi_value argv[10];
  float *x, *w, *mean, *rstd, *dy, *dx, *dw, *db;
  size_t xl, wl, ml, rl, gl, dl, dwl, dbl;
  int64_t rows, cols, n;
  if (!cubit_get_args(env, info, fn, 10, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !arg_f32_opt(env, argv, 1, fn, "w", &w, &wl) ||
      !cubit_arg_f32(env, argv, 2, fn, "mean", &mean, &ml) ||
      !cubit_arg_f32(env, argv, 3, fn, "rstd", &rstd, &rl) ||
      !cubit_arg_f32(env, argv, 4, fn, "dy", &dy, &gl) ||
      !cubit_arg_f32(env, argv, 5, fn, "dx", &dx, &dl) ||
      !arg_f32_opt(env, argv, 6, fn, "dw", &dw, &dwl) ||
      !arg_f32_opt(env, argv, 7, fn, "db", &db, &dbl) ||
      !arg_rows_cols(env, argv, 8, fn, &rows, &cols, &n) || !need(env, fn, "x", xl, 0, n) ||
      (w && !need(env, fn, "w", wl, 0, cols)) || !need(env, fn, "mean", ml, 0, rows) ||
      !need(env, fn, "rstd", rl, 0, rows) || !need(env, fn, "dy", gl, 0, n) ||
      !need(env, fn, "dx", dl, 0, n) || (dw && !need(env, fn, "dw", dwl, 0, cols)) ||
      (db && !need(env, fn, "db", dbl, 0, cols)))
    return NULL;
  if (cubit_nn_layernorm_bwd(x, w, mean, rstd, dy, dx, dw, db, (size_t)rows, (size_t)cols) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the weight-gradient scratch", fn);
  return cubit_undefined(env);
}

/* gather(table, ids, out, count, cols) */
CUBIT_NAPI(cubit_napi_nn_gather) {
  static const char *fn = "gather";
  napi_value argv[5];
  float *table, *out;
  int32_t *ids;
  size_t tl, il, ol, pos = 0;
  int64_t count, cols, n;
  if (!cubit_get_args(env, info, fn, 5, argv) ||
      !cubit_arg_f32(env, argv, 0, fn, "table", &table, &tl) ||
      !cubit_arg_i32(env, argv, 1, fn, "ids", &ids, &il) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &out, &ol) ||
      !cubit_arg_index(env, argv, 3, fn, "count", &count) ||
      !cubit_arg_index(env, argv, 4, fn, "cols", &cols) || !mul_ok(env, fn, count, cols, &n) ||
      !need(env, fn, "ids", il, 0, count) || !need(env, fn, "out", ol, 0, n))
    return NULL;
  if (cols == 0) return cubit_undefined(env);
  size_t vocab = tl / (size_t)cols;
  if (cubit_nn_gather(table, vocab, ids, out, (size_t)count, (size_t)cols, &pos) != NN_OK)
    return bad_id(env, fn, "id", pos, ids[pos], vocab);
  return cubit_undefined(env);
}

/* scatterAdd(dy, ids, dtable, count, cols) */
CUBIT_NAPI(cubit_napi_nn_scatter_add) {
  static const char *fn = "scatterAdd";
  napi_value argv[5];
  float *dy, *dt;
  int32_t *ids;
  size_t gl, il, tl, pos = 0;
  int64_t count, cols, n;
  if (!cubit_get_args(env, info, fn, 5, argv) || !cubit_arg_f32(env, argv, 0, fn, "dy", &dy, &gl) ||
      !cubit_arg_i32(env, argv, 1, fn, "ids", &ids, &il) ||
      !cubit_arg_f32(env, argv, 2, fn, "dtable", &dt, &tl) ||
      !cubit_arg_index(env, argv, 3, fn, "count", &count) ||
      !cubit_arg_index(env, argv, 4, fn, "cols", &cols) || !mul_ok(env, fn, count, cols, &n) ||
      !need(env, fn, "ids", il, 0, count) || !need(env, fn, "dy", gl, 0, n))
    return NULL;
  if (cols == 0) return cubit_undefined(env);
  size_t vocab = tl / (size_t)cols;
  if (cubit_nn_scatter_add(dy, ids, dt, vocab, (size_t)count, (size_t)cols, &pos) != NN_OK)
    return bad_id(env, fn, "id", pos, ids[pos], vocab);
  return cubit_undefined(env);
}

/* crossEntropy(logits, targets, losses, lse, rows, cols, ignoreIndex) */
CUBIT_NAPI(cubit_napi_nn_xent) {
  static const char *fn = "crossEntropy";
  napi_value argv[7];
  float *x, *losses, *lse;
  int32_t *t;
  size_t xl, tl, ll, sl, pos = 0;
  int64_t rows, cols, n, ignore;
  if (!cubit_get_args(env, info, fn, 7, argv) || !cubit_arg_f32(env, argv, 0, fn, "logits", &x, &xl) ||
      !cubit_arg_i32(env, argv, 1, fn, "targets", &t, &tl) ||
      !cubit_arg_f32(env, argv, 2, fn, "losses", &losses, &ll) ||
      !cubit_arg_f32(env, argv, 3, fn, "lse", &lse, &sl) ||
      !arg_rows_cols(env, argv, 4, fn, &rows, &cols, &n) ||
      !cubit_arg_int(env, argv, 6, fn, "ignoreIndex", &ignore) || !need(env, fn, "logits", xl, 0, n) ||
      !need(env, fn, "targets", tl, 0, rows) || !need(env, fn, "losses", ll, 0, rows) ||
      !need(env, fn, "lse", sl, 0, rows))
    return NULL;
  int32_t ig;
  if (ignore < INT32_MIN || ignore > INT32_MAX) { /* matches no int32 target */
    for (int64_t r = 0; r < rows; r++)
      if (t[r] < 0 || t[r] >= cols) return bad_id(env, fn, "target", (size_t)r, t[r], (size_t)cols);
    ig = -1;
  } else {
    ig = (int32_t)ignore;
  }
  if (cubit_nn_xent(x, t, losses, lse, (size_t)rows, (size_t)cols, ig, &pos) != NN_OK)
    return bad_id(env, fn, "target", pos, t[pos], (size_t)cols);
  return cubit_undefined(env);
}

/* crossEntropyBackward(logits, targets, lse, dloss, dlogits, rows, cols, ignoreIndex) */
CUBIT_NAPI(cubit_napi_nn_xent_bwd) {
  static const char *fn = "crossEntropyBackward";
  napi_value argv[8];
  float *x, *lse, *dloss, *dx;
  int32_t *t;
  size_t xl, tl, sl, gl, dl, pos = 0;
  int64_t rows, cols, n, ignore;
  if (!cubit_get_args(env, info, fn, 8, argv) || !cubit_arg_f32(env, argv, 0, fn, "logits", &x, &xl) ||
      !cubit_arg_i32(env, argv, 1, fn, "targets", &t, &tl) ||
      !cubit_arg_f32(env, argv, 2, fn, "lse", &lse, &sl) ||
      !cubit_arg_f32(env, argv, 3, fn, "dloss", &dloss, &gl) ||
      !cubit_arg_f32(env, argv, 4, fn, "dlogits", &dx, &dl) ||
      !arg_rows_cols(env, argv, 5, fn, &rows, &cols, &n) ||
      !cubit_arg_int(env, argv, 7, fn, "ignoreIndex", &ignore) || !need(env, fn, "logits", xl, 0, n) ||
      !need(env, fn, "targets", tl, 0, rows) || !need(env, fn, "lse", sl, 0, rows) ||
      !need(env, fn, "dloss", gl, 0, rows) || !need(env, fn, "dlogits", dl, 0, n))
    return NULL;
  int32_t ig;
  if (ignore < INT32_MIN || ignore > INT32_MAX) { /* matches no int32 target */
    for (int64_t r = 0; r < rows; r++)
      if (t[r] < 0 || t[r] >= cols) return bad_id(env, fn, "target", (size_t)r, t[r], (size_t)cols);
    ig = -1;
  } else {
    ig = (int32_t)ignore;
  }
  if (cubit_nn_xent_bwd(x, t, lse, dloss, dx, (size_t)rows, (size_t)cols, ig, &pos) != NN_OK)
    return bad_id(env, fn, "target", pos, t[pos], (size_t)cols);
  return cubit_undefined(env);
}

/* ---- dropout / AdamW ---------------------------------------------------------------------- */

/* dropoutMask(out, length, p, seed); seed is taken modulo 2^32 as in core/random.ts */
CUBIT_NAPI(cubit_napi_nn_dropout) {
  static const char *fn = "dropoutMask";
  napi_value argv[4];
  float *out;
  size_t ol;
  int64_t n, seed;
  double p;
  if (!cubit_get_args(env, info, fn, 4, argv) || !cubit_arg_f32(env, argv, 0, fn, "out", &out, &ol) ||
      !cubit_arg_index(env, argv, 1, fn, "length", &n) ||
      !cubit_arg_double(env, argv, 2, fn, "p", &p) || !cubit_arg_int(env, argv, 3, fn, "seed", &seed) ||
      !need(env, fn, "out", ol, 0, n))
    return NULL;
  if (!(p >= 0 && p < 1)) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: p must be in [0, 1), got %g", fn, p);
  cubit_nn_dropout(out, (size_t)n, p, (uint32_t)(uint64_t)seed);
  return cubit_undefined(env);
}

/* adamw(param, grad, m, v, length, lr, beta1, beta2, eps, weightDecay, bc1, bc2) */
CUBIT_NAPI(cubit_napi_nn_adamw) {
  static const char *fn = "adamw";
  napi_value argv[12];
  float *p, *g, *m, *v;
  size_t pl, gl, ml, vl;
  int64_t n;
  double h[7];
  static const char *names[7] = {"lr", "beta1", "beta2", "eps", "weightDecay", "bc1", "bc2"};
  if (!cubit_get_args(env, info, fn, 12, argv) || !cubit_arg_f32(env, argv, 0, fn, "param", &p, &pl) ||
      !cubit_arg_f32(env, argv, 1, fn, "grad", &g, &gl) || !cubit_arg_f32(env, argv, 2, fn, "m", &m, &ml) ||
      !cubit_arg_f32(env, argv, 3, fn, "v", &v, &vl) || !cubit_arg_index(env, argv, 4, fn, "length", &n) ||
      !need(env, fn, "param", pl, 0, n) || !need(env, fn, "grad", gl, 0, n) ||
      !need(env, fn, "m", ml, 0, n) || !need(env, fn, "v", vl, 0, n))
    return NULL;
  for (int i = 0; i < 7; i++)
    if (!cubit_arg_double(env, argv, 5 + i, fn, names[i], &h[i])) return NULL;
  cubit_nn_adamw(p, g, m, v, (size_t)n, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
  return cubit_undefined(env);
}

/* rotary(x, cos, sin, out, B, T, H, D, offset, inverse, xHeadsFirst, outHeadsFirst) */
CUBIT_NAPI(cubit_napi_nn_rotary) {
  static const char *fn = "rotary";
  napi_value argv[12];
  float *x, *cs, *sn, *out;
  size_t xl, cl, sl, ol;
  int64_t dims[5], n, bt, half_rows;
  static const char *names[5] = {"B", "T", "H", "D", "offset"};
  bool inverse, xhf, ohf;
  if (!cubit_get_args(env, info, fn, 12, argv) || !cubit_arg_f32(env, argv, 0, fn, "x", &x, &xl) ||
      !cubit_arg_f32(env, argv, 1, fn, "cos", &cs, &cl) ||
      !cubit_arg_f32(env, argv, 2, fn, "sin", &sn, &sl) ||
      !cubit_arg_f32(env, argv, 3, fn, "out", &out, &ol))
    return NULL;
  for (int i = 0; i < 5; i++)
    if (!cubit_arg_index(env, argv, 4 + i, fn, names[i], &dims[i])) return NULL;
  if (!cubit_arg_bool(env, argv, 9, fn, "inverse", &inverse) ||
      !cubit_arg_bool(env, argv, 10, fn, "xHeadsFirst", &xhf) ||
      !cubit_arg_bool(env, argv, 11, fn, "outHeadsFirst", &ohf))
    return NULL;
  if (dims[3] % 2 != 0) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument 8 (D) must be even, got %lld", fn, (long long)dims[3]);
    return NULL;
  }
  if (!mul_ok(env, fn, dims[0], dims[1], &bt) || !mul_ok(env, fn, bt, dims[2], &n) ||
      !mul_ok(env, fn, n, dims[3], &n) ||
      !mul_ok(env, fn, dims[4] + dims[1], dims[3] / 2, &half_rows) ||
      !need(env, fn, "x", xl, 0, n) || !need(env, fn, "out", ol, 0, n) ||
      !need(env, fn, "cos", cl, 0, half_rows) || !need(env, fn, "sin", sl, 0, half_rows))
    return NULL;
  if (n == 0) return cubit_undefined(env);
  if (x < out + n && out < x + n) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: out must not overlap x", fn);
    return NULL;
  }
  cubit_nn_rotary(x, cs, sn, out, (size_t)dims[0], (size_t)dims[1], (size_t)dims[2],
                  (size_t)dims[3], (size_t)dims[4], inverse, xhf, ohf);
  return cubit_undefined(env);
}

/* The output's elements [0, n) must not overlap those of any array in `others`. */
static bool disjoint(napi_env env, const char *fn, const float *o, const float *const *others,
                     int count, int64_t n) {
  for (int i = 0; i < count; i++)
    if (o < others[i] + n && others[i] < o + n) {
      cubit_throw(env, CUBIT_RANGE_ERROR, "%s: an output overlaps another array", fn);
      return false;
    }
  return true;
}

/* swiglu(a, b, out, length) */
CUBIT_NAPI(cubit_napi_nn_swiglu) {
  static const char *fn = "swiglu";
  napi_value argv[4];
  float *a, *b, *o;
  size_t al, bl, ol;
  int64_t n;
  if (!cubit_get_args(env, info, fn, 4, argv) || !cubit_arg_f32(env, argv, 0, fn, "a", &a, &al) ||
      !cubit_arg_f32(env, argv, 1, fn, "b", &b, &bl) || !cubit_arg_f32(env, argv, 2, fn, "out", &o, &ol) ||
      !cubit_arg_index(env, argv, 3, fn, "length", &n) || !need(env, fn, "a", al, 0, n) ||
      !need(env, fn, "b", bl, 0, n) || !need(env, fn, "out", ol, 0, n))
    return NULL;
  if (n == 0) return cubit_undefined(env);
  const float *in[2] = {a, b};
  if (!disjoint(env, fn, o, in, 2, n)) return NULL;
  cubit_nn_swiglu(a, b, o, (size_t)n);
  return cubit_undefined(env);
}

/* swigluBackward(a, b, dy, da, db, length) */
CUBIT_NAPI(cubit_napi_nn_swiglu_bwd) {
  static const char *fn = "swigluBackward";
  napi_value argv[6];
  float *a, *b, *g, *da, *db;
  size_t al, bl, gl, dal, dbl;
  int64_t n;
  if (!cubit_get_args(env, info, fn, 6, argv) || !cubit_arg_f32(env, argv, 0, fn, "a", &a, &al) ||
      !cubit_arg_f32(env, argv, 1, fn, "b", &b, &bl) || !cubit_arg_f32(env, argv, 2, fn, "dy", &g, &gl) ||
      !cubit_arg_f32(env, argv, 3, fn, "da", &da, &dal) ||
      !cubit_arg_f32(env, argv, 4, fn, "db", &db, &dbl) ||
      !cubit_arg_index(env, argv, 5, fn, "length", &n) || !need(env, fn, "a", al, 0, n) ||
      !need(env, fn, "b", bl, 0, n) || !need(env, fn, "dy", gl, 0, n) ||
      !need(env, fn, "da", dal, 0, n) || !need(env, fn, "db", dbl, 0, n))
    return NULL;
  if (n == 0) return cubit_undefined(env);
  const float *in_a[4] = {a, b, g, db}, *in_b[3] = {a, b, g};
  if (!disjoint(env, fn, da, in_a, 4, n) || !disjoint(env, fn, db, in_b, 3, n)) return NULL;
  cubit_nn_swiglu_bwd(a, b, g, da, db, (size_t)n);
  return cubit_undefined(env);
}

/* ---- Cubit's r̂ normalisation and LRR-scaled values ------------------------------------------ */

/* B, H, T, D at argv[i..i+3]; *rows = B*H*T and *n = rows*D, overflow-checked. */
static bool arg_bhtd(napi_env env, napi_value *argv, int i, const char *fn, int64_t d[4],
                     int64_t *rows, int64_t *n) {
  static const char *names[4] = {"B", "H", "T", "D"};
  for (int k = 0; k < 4; k++)
    if (!cubit_arg_index(env, argv, i + k, fn, names[k], &d[k])) return false;
  int64_t bh;
  return mul_ok(env, fn, d[0], d[1], &bh) && mul_ok(env, fn, bh, d[2], rows) &&
         mul_ok(env, fn, *rows, d[3], n);
}

/* normalizeReference(r, alpha, out, B, H, T, D, eps) */
CUBIT_NAPI(cubit_napi_nn_ref_norm) {
  static const char *fn = "normalizeReference";
  napi_value argv[8];
  float *r, *a, *o;
  size_t rl, al, ol;
  int64_t d[4], rows, n;
  double eps;
  if (!cubit_get_args(env, info, fn, 8, argv) || !cubit_arg_f32(env, argv, 0, fn, "r", &r, &rl) ||
      !cubit_arg_f32(env, argv, 1, fn, "alpha", &a, &al) ||
      !cubit_arg_f32(env, argv, 2, fn, "out", &o, &ol) || !arg_bhtd(env, argv, 3, fn, d, &rows, &n) ||
      !cubit_arg_double(env, argv, 7, fn, "eps", &eps) || !need(env, fn, "r", rl, 0, n) ||
      !need(env, fn, "alpha", al, 0, d[1]) || !need(env, fn, "out", ol, 0, n))
    return NULL;
  if (n == 0) return cubit_undefined(env);
  const float *in[1] = {r};
  if (!disjoint(env, fn, o, in, 1, n)) return NULL;
  cubit_nn_ref_norm(r, a, o, (size_t)d[0], (size_t)d[1], (size_t)d[2], (size_t)d[3], eps);
  return cubit_undefined(env);
}

/* normalizeReferenceBackward(r, alpha, dy, dr | null, dAlpha | null, B, H, T, D, eps) */
CUBIT_NAPI(cubit_napi_nn_ref_norm_bwd) {
  static const char *fn = "normalizeReferenceBackward";
  napi_value argv[10];
  float *r, *a, *g, *dr, *da;
  size_t rl, al, gl, drl, dal;
  int64_t d[4], rows, n;
  double eps;
  if (!cubit_get_args(env, info, fn, 10, argv) || !cubit_arg_f32(env, argv, 0, fn, "r", &r, &rl) ||
      !cubit_arg_f32(env, argv, 1, fn, "alpha", &a, &al) ||
      !cubit_arg_f32(env, argv, 2, fn, "dy", &g, &gl) ||
      !arg_f32_opt(env, argv, 3, fn, "dr", &dr, &drl) ||
      !arg_f32_opt(env, argv, 4, fn, "dAlpha", &da, &dal) ||
      !arg_bhtd(env, argv, 5, fn, d, &rows, &n) || !cubit_arg_double(env, argv, 9, fn, "eps", &eps) ||
      !need(env, fn, "r", rl, 0, n) || !need(env, fn, "alpha", al, 0, d[1]) ||
      !need(env, fn, "dy", gl, 0, n) || (dr && !need(env, fn, "dr", drl, 0, n)) ||
      (da && !need(env, fn, "dAlpha", dal, 0, d[1])))
    return NULL;
  const float *in[2] = {r, g};
  if (dr && n > 0 && !disjoint(env, fn, dr, in, 2, n)) return NULL;
  if (cubit_nn_ref_norm_bwd(r, a, g, dr, da, (size_t)d[0], (size_t)d[1], (size_t)d[2], (size_t)d[3],
                            eps) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the per-row scratch", fn);
  return cubit_undefined(env);
}

/* lrrValues(v, z, lower, range, out, B, H, T, D) */
CUBIT_NAPI(cubit_napi_nn_lrr) {
  static const char *fn = "lrrValues";
  napi_value argv[9];
  float *v, *z, *lo, *ra, *o;
  size_t vl, zl, lol, ral, ol;
  int64_t d[4], rows, n;
  if (!cubit_get_args(env, info, fn, 9, argv) || !cubit_arg_f32(env, argv, 0, fn, "v", &v, &vl) ||
      !cubit_arg_f32(env, argv, 1, fn, "z", &z, &zl) ||
      !cubit_arg_f32(env, argv, 2, fn, "lower", &lo, &lol) ||
      !cubit_arg_f32(env, argv, 3, fn, "range", &ra, &ral) ||
      !cubit_arg_f32(env, argv, 4, fn, "out", &o, &ol) || !arg_bhtd(env, argv, 5, fn, d, &rows, &n) ||
      !need(env, fn, "v", vl, 0, n) || !need(env, fn, "z", zl, 0, rows) ||
      !need(env, fn, "lower", lol, 0, d[1]) || !need(env, fn, "range", ral, 0, d[1]) ||
      !need(env, fn, "out", ol, 0, n))
    return NULL;
  if (n == 0) return cubit_undefined(env);
  const float *in[1] = {v};
  if (!disjoint(env, fn, o, in, 1, n)) return NULL;
  cubit_nn_lrr(v, z, lo, ra, o, (size_t)d[0], (size_t)d[1], (size_t)d[2], (size_t)d[3]);
  return cubit_undefined(env);
}

/* lrrValuesBackward(v, z, lower, range, dy, dv | null, dz | null, dLower | null, dRange | null,
 *                   B, H, T, D) */
CUBIT_NAPI(cubit_napi_nn_lrr_bwd) {
  static const char *fn = "lrrValuesBackward";
  napi_value argv[13];
  float *v, *z, *lo, *ra, *g, *dv, *dz, *dlo, *dra;
  size_t vl, zl, lol, ral, gl, dvl, dzl, dlol, dral;
  int64_t d[4], rows, n;
  if (!cubit_get_args(env, info, fn, 13, argv) || !cubit_arg_f32(env, argv, 0, fn, "v", &v, &vl) ||
      !cubit_arg_f32(env, argv, 1, fn, "z", &z, &zl) ||
      !cubit_arg_f32(env, argv, 2, fn, "lower", &lo, &lol) ||
      !cubit_arg_f32(env, argv, 3, fn, "range", &ra, &ral) ||
      !cubit_arg_f32(env, argv, 4, fn, "dy", &g, &gl) ||
      !arg_f32_opt(env, argv, 5, fn, "dv", &dv, &dvl) ||
      !arg_f32_opt(env, argv, 6, fn, "dz", &dz, &dzl) ||
      !arg_f32_opt(env, argv, 7, fn, "dLower", &dlo, &dlol) ||
      !arg_f32_opt(env, argv, 8, fn, "dRange", &dra, &dral) ||
      !arg_bhtd(env, argv, 9, fn, d, &rows, &n) || !need(env, fn, "v", vl, 0, n) ||
      !need(env, fn, "z", zl, 0, rows) || !need(env, fn, "lower", lol, 0, d[1]) ||
      !need(env, fn, "range", ral, 0, d[1]) || !need(env, fn, "dy", gl, 0, n) ||
      (dv && !need(env, fn, "dv", dvl, 0, n)) || (dz && !need(env, fn, "dz", dzl, 0, rows)) ||
      (dlo && !need(env, fn, "dLower", dlol, 0, d[1])) ||
      (dra && !need(env, fn, "dRange", dral, 0, d[1])))
    return NULL;
  const float *in[2] = {v, g};
  if (dv && n > 0 && !disjoint(env, fn, dv, in, 2, n)) return NULL;
  if (cubit_nn_lrr_bwd(v, z, lo, ra, g, dv, dz, dlo, dra, (size_t)d[0], (size_t)d[1], (size_t)d[2],
                       (size_t)d[3]) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the per-row scratch", fn);
  return cubit_undefined(env);
}
