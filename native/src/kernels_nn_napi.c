/* N-API layer of the non-GEMM kernels: each kernel one argument table (napi_args.h) and a body
 * that calls the C API of kernels_nn.h with the values, after any check the table cannot say
 * (ids, overlaps, strided views). */
#include "kernels_nn_napi.h"

#include "kernels_nn.h"
#include "napi_args.h"

_Static_assert(ARG_MAX_RANK == NN_MAX_RANK, "napi_args.h reads shapes of rank NN_MAX_RANK");

/* ---- checks the table cannot say ---------------------------------------------------------- */

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

/* ---- data movement ------------------------------------------------------------------------ */

KERNEL(cubit_napi_nn_fill, "fill", 4, F32("out", "2+3"), NUMBER("value"), INDEX("offset"), INDEX("length")) {
  (void)fn;
  cubit_nn_fill(F(0) + N(2), (float)X(1), Z(3));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_copy, "copy", 5, F32("src", "1+4"), INDEX("srcOffset"), F32("out", "3+4"),
       INDEX("outOffset"), INDEX("length")) {
  (void)fn;
  cubit_nn_copy(F(0) + N(1), F(2) + N(3), Z(4));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_strided_copy, "stridedCopy", 6, F32("src", NULL), INDEX("srcOffset"),
       SHAPE("shape"), STRIDES("srcStrides"), F32("out", NULL), INDEX("outOffset")) {
  int rank = (int)v[2].len;
  if (!same_rank(env, fn, "srcStrides", (int)v[3].len, rank) ||
      !need_strided(env, fn, "src", v[0].len, N(1), v[2].dims, v[3].dims, rank) ||
      !need(env, fn, "out", v[4].len, N(5), numel(v[2].dims, rank)))
    return NULL;
  cubit_nn_strided_copy(F(0) + N(1), v[2].dims, v[3].dims, rank, F(4) + N(5));
  return cubit_undefined(env);
}

/* ---- elementwise -------------------------------------------------------------------------- */

KERNEL(cubit_napi_nn_unary, "unary", 5, OP(NN_UNARY_COUNT), F32("x", "3"), F32("out", "3"),
       INDEX("length"), NUMBER("scalar")) {
  (void)fn;
  cubit_nn_unary((int)N(0), F(1), F(2), Z(3), X(4));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_unary_bwd, "unaryBackward", 7, OP(NN_UNARY_COUNT), F32("x", "5"), F32("y", "5"),
       F32("dy", "5"), F32("dx", "5"), INDEX("length"), NUMBER("scalar")) {
  (void)fn;
  cubit_nn_unary_bwd((int)N(0), F(1), F(2), F(3), F(4), Z(5), X(6));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_binary, "binary", 7, OP(NN_BINARY_COUNT), F32("a", NULL), STRIDES("aStrides"),
       F32("b", NULL), STRIDES("bStrides"), F32("out", NULL), SHAPE("shape")) {
  int rank = (int)v[6].len;
  const int64_t *shape = v[6].dims;
  if (!same_rank(env, fn, "aStrides", (int)v[2].len, rank) ||
      !same_rank(env, fn, "bStrides", (int)v[4].len, rank) ||
      !need_strided(env, fn, "a", v[1].len, 0, shape, v[2].dims, rank) ||
      !need_strided(env, fn, "b", v[3].len, 0, shape, v[4].dims, rank) ||
      !need(env, fn, "out", v[5].len, 0, numel(shape, rank)))
    return NULL;
  cubit_nn_binary((int)N(0), F(1), v[2].dims, F(3), v[4].dims, F(5), shape, rank);
  return cubit_undefined(env);
}

/* cond is a Float32Array or an Int32Array (nonzero = true) */
KERNEL(cubit_napi_nn_where, "where", 8, {ARG_ANY, "cond", NULL, 0}, STRIDES("cStrides"), F32("a", NULL),
       STRIDES("aStrides"), F32("b", NULL), STRIDES("bStrides"), F32("out", NULL), SHAPE("shape")) {
  int rank = (int)v[7].len;
  const int64_t *shape = v[7].dims;
  if (!same_rank(env, fn, "cStrides", (int)v[1].len, rank) ||
      !same_rank(env, fn, "aStrides", (int)v[3].len, rank) ||
      !same_rank(env, fn, "bStrides", (int)v[5].len, rank) ||
      !need_strided(env, fn, "cond", v[0].len, 0, shape, v[1].dims, rank) ||
      !need_strided(env, fn, "a", v[2].len, 0, shape, v[3].dims, rank) ||
      !need_strided(env, fn, "b", v[4].len, 0, shape, v[5].dims, rank) ||
      !need(env, fn, "out", v[6].len, 0, numel(shape, rank)))
    return NULL;
  cubit_nn_where((const uint32_t *)v[0].data, B(0), v[1].dims, F(2), v[3].dims, F(4), v[5].dims, F(6),
                 shape, rank);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_reduce, "reduce", 6, OP(NN_REDUCE_COUNT), F32("x", "345"), F32("out", "35"),
       INDEX("outer"), INDEX("len"), INDEX("inner")) {
  (void)fn;
  cubit_nn_reduce((int)N(0), F(1), F(2), Z(3), Z(4), Z(5));
  return cubit_undefined(env);
}

/* ---- fused row kernels -------------------------------------------------------------------- */

KERNEL(cubit_napi_nn_softmax, "softmax", 5, F32("x", "23"), F32("out", "23"), INDEX("rows"),
       INDEX("cols"), BOOL("log")) {
  (void)fn;
  cubit_nn_softmax(F(0), F(1), Z(2), Z(3), B(4));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_softmax_bwd, "softmaxBackward", 6, F32("y", "34"), F32("dy", "34"), F32("dx", "34"),
       INDEX("rows"), INDEX("cols"), BOOL("log")) {
  (void)fn;
  cubit_nn_softmax_bwd(F(0), F(1), F(2), Z(3), Z(4), B(5));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_rmsnorm, "rmsNorm", 7, F32("x", "45"), F32_OPT("w", "5"), F32("out", "45"),
       F32("rstd", "4"), INDEX("rows"), INDEX("cols"), NUMBER("eps")) {
  (void)fn;
  cubit_nn_rmsnorm(F(0), F(1), F(2), F(3), Z(4), Z(5), X(6));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_rmsnorm_bwd, "rmsNormBackward", 8, F32("x", "67"), F32_OPT("w", "7"),
       F32("rstd", "6"), F32("dy", "67"), F32("dx", "67"), F32_OPT("dw", "7"), INDEX("rows"),
       INDEX("cols")) {
  if (cubit_nn_rmsnorm_bwd(F(0), F(1), F(2), F(3), F(4), F(5), Z(6), Z(7)) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the weight-gradient scratch", fn);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_layernorm, "layerNorm", 9, F32("x", "67"), F32_OPT("w", "7"), F32_OPT("b", "7"),
       F32("out", "67"), F32("mean", "6"), F32("rstd", "6"), INDEX("rows"), INDEX("cols"),
       NUMBER("eps")) {
  (void)fn;
  cubit_nn_layernorm(F(0), F(1), F(2), F(3), F(4), F(5), Z(6), Z(7), X(8));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_layernorm_bwd, "layerNormBackward", 10, F32("x", "89"), F32_OPT("w", "9"),
       F32("mean", "8"), F32("rstd", "8"), F32("dy", "89"), F32("dx", "89"), F32_OPT("dw", "9"),
       F32_OPT("db", "9"), INDEX("rows"), INDEX("cols")) {
  if (cubit_nn_layernorm_bwd(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), Z(8), Z(9)) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the weight-gradient scratch", fn);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_gather, "gather", 5, F32("table", NULL), I32("ids", "3"), F32("out", "34"),
       INDEX("count"), INDEX("cols")) {
  size_t pos = 0;
  if (N(4) == 0) return cubit_undefined(env);
  size_t vocab = v[0].len / Z(4);
  if (cubit_nn_gather(F(0), vocab, I(1), F(2), Z(3), Z(4), &pos) != NN_OK)
    return bad_id(env, fn, "id", pos, I(1)[pos], vocab);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_scatter_add, "scatterAdd", 5, F32("dy", "34"), I32("ids", "3"), F32("dtable", NULL),
       INDEX("count"), INDEX("cols")) {
  size_t pos = 0;
  if (N(4) == 0) return cubit_undefined(env);
  size_t vocab = v[2].len / Z(4);
  if (cubit_nn_scatter_add(F(0), I(1), F(2), vocab, Z(3), Z(4), &pos) != NN_OK)
    return bad_id(env, fn, "id", pos, I(1)[pos], vocab);
  return cubit_undefined(env);
}

/* The int32 ignore index of crossEntropy(Backward); one outside int32 matches no target, so then
 * every target must be a class (checked here). */
static bool ignore_index(napi_env env, const char *fn, int64_t ignore, const int32_t *t, int64_t rows,
                         int64_t cols, int32_t *ig) {
  if (ignore >= INT32_MIN && ignore <= INT32_MAX) {
    *ig = (int32_t)ignore;
    return true;
  }
  for (int64_t r = 0; r < rows; r++)
    if (t[r] < 0 || t[r] >= cols) {
      bad_id(env, fn, "target", (size_t)r, t[r], (size_t)cols);
      return false;
    }
  *ig = -1;
  return true;
}

KERNEL(cubit_napi_nn_xent, "crossEntropy", 7, F32("logits", "45"), I32("targets", "4"),
       F32("losses", "4"), F32("lse", "4"), INDEX("rows"), INDEX("cols"), INT("ignoreIndex")) {
  size_t pos = 0;
  int32_t ig;
  if (!ignore_index(env, fn, N(6), I(1), N(4), N(5), &ig)) return NULL;
  if (cubit_nn_xent(F(0), I(1), F(2), F(3), Z(4), Z(5), ig, &pos) != NN_OK)
    return bad_id(env, fn, "target", pos, I(1)[pos], Z(5));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_xent_bwd, "crossEntropyBackward", 8, F32("logits", "56"), I32("targets", "5"),
       F32("lse", "5"), F32("dloss", "5"), F32("dlogits", "56"), INDEX("rows"), INDEX("cols"),
       INT("ignoreIndex")) {
  size_t pos = 0;
  int32_t ig;
  if (!ignore_index(env, fn, N(7), I(1), N(5), N(6), &ig)) return NULL;
  if (cubit_nn_xent_bwd(F(0), I(1), F(2), F(3), F(4), Z(5), Z(6), ig, &pos) != NN_OK)
    return bad_id(env, fn, "target", pos, I(1)[pos], Z(6));
  return cubit_undefined(env);
}

/* ---- dropout / AdamW ---------------------------------------------------------------------- */

/* seed is taken modulo 2^32 as in core/random.ts */
KERNEL(cubit_napi_nn_dropout, "dropoutMask", 4, F32("out", "1"), INDEX("length"), NUMBER("p"), INT("seed")) {
  if (!(X(2) >= 0 && X(2) < 1)) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: p must be in [0, 1), got %g", fn, X(2));
  cubit_nn_dropout(F(0), Z(1), X(2), (uint32_t)(uint64_t)N(3));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_adamw, "adamw", 12, F32("param", "4"), F32("grad", "4"), F32("m", "4"), F32("v", "4"),
       INDEX("length"), NUMBER("lr"), NUMBER("beta1"), NUMBER("beta2"), NUMBER("eps"),
       NUMBER("weightDecay"), NUMBER("bc1"), NUMBER("bc2")) {
  (void)fn;
  cubit_nn_adamw(F(0), F(1), F(2), F(3), Z(4), X(5), X(6), X(7), X(8), X(9), X(10), X(11));
  return cubit_undefined(env);
}

/* ---- rotary, SwiGLU ----------------------------------------------------------------------- */

KERNEL(cubit_napi_nn_rotary, "rotary", 12, F32("x", "4567"), F32("cos", NULL), F32("sin", NULL),
       F32("out", "4567"), INDEX("B"), INDEX("T"), INDEX("H"), INDEX("D"), INDEX("offset"),
       BOOL("inverse"), BOOL("xHeadsFirst"), BOOL("outHeadsFirst")) {
  int64_t n, half_rows;
  if (N(7) % 2 != 0) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument 8 (D) must be even, got %lld", fn, (long long)N(7));
  if (!mul_ok(env, fn, N(8) + N(5), N(7) / 2, &half_rows) || !need(env, fn, "cos", v[1].len, 0, half_rows) ||
      !need(env, fn, "sin", v[2].len, 0, half_rows))
    return NULL;
  n = N(4) * N(5) * N(6) * N(7); /* checked by the table */
  if (n == 0) return cubit_undefined(env);
  if (F(0) < F(3) + n && F(3) < F(0) + n) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: out must not overlap x", fn);
  cubit_nn_rotary(F(0), F(1), F(2), F(3), Z(4), Z(5), Z(6), Z(7), Z(8), B(9), B(10), B(11));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_swiglu, "swiglu", 4, F32("a", "3"), F32("b", "3"), F32("out", "3"), INDEX("length")) {
  if (N(3) == 0) return cubit_undefined(env);
  const float *in[2] = {F(0), F(1)};
  if (!disjoint(env, fn, F(2), in, 2, N(3))) return NULL;
  cubit_nn_swiglu(F(0), F(1), F(2), Z(3));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_swiglu_bwd, "swigluBackward", 6, F32("a", "5"), F32("b", "5"), F32("dy", "5"),
       F32("da", "5"), F32("db", "5"), INDEX("length")) {
  if (N(5) == 0) return cubit_undefined(env);
  const float *in_a[4] = {F(0), F(1), F(2), F(4)}, *in_b[3] = {F(0), F(1), F(2)};
  if (!disjoint(env, fn, F(3), in_a, 4, N(5)) || !disjoint(env, fn, F(4), in_b, 3, N(5))) return NULL;
  cubit_nn_swiglu_bwd(F(0), F(1), F(2), F(3), F(4), Z(5));
  return cubit_undefined(env);
}

/* ---- Cubit's r̂ normalisation and LRR-scaled values ------------------------------------------ */

KERNEL(cubit_napi_nn_ref_norm, "normalizeReference", 8, F32("r", "3456"), F32("alpha", "4"),
       F32("out", "3456"), INDEX("B"), INDEX("H"), INDEX("T"), INDEX("D"), NUMBER("eps")) {
  int64_t n = N(3) * N(4) * N(5) * N(6); /* checked by the table */
  if (n == 0) return cubit_undefined(env);
  const float *in[1] = {F(0)};
  if (!disjoint(env, fn, F(2), in, 1, n)) return NULL;
  cubit_nn_ref_norm(F(0), F(1), F(2), Z(3), Z(4), Z(5), Z(6), X(7));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_ref_norm_bwd, "normalizeReferenceBackward", 10, F32("r", "5678"), F32("alpha", "6"),
       F32("dy", "5678"), F32_OPT("dr", "5678"), F32_OPT("dAlpha", "6"), INDEX("B"), INDEX("H"),
       INDEX("T"), INDEX("D"), NUMBER("eps")) {
  int64_t n = N(5) * N(6) * N(7) * N(8);
  const float *in[2] = {F(0), F(2)};
  if (F(3) && n > 0 && !disjoint(env, fn, F(3), in, 2, n)) return NULL;
  if (cubit_nn_ref_norm_bwd(F(0), F(1), F(2), F(3), F(4), Z(5), Z(6), Z(7), Z(8), X(9)) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the per-row scratch", fn);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_lrr, "lrrValues", 9, F32("v", "5678"), F32("z", "567"), F32("lower", "6"),
       F32("range", "6"), F32("out", "5678"), INDEX("B"), INDEX("H"), INDEX("T"), INDEX("D")) {
  int64_t n = N(5) * N(6) * N(7) * N(8);
  if (n == 0) return cubit_undefined(env);
  const float *in[1] = {F(0)};
  if (!disjoint(env, fn, F(4), in, 1, n)) return NULL;
  cubit_nn_lrr(F(0), F(1), F(2), F(3), F(4), Z(5), Z(6), Z(7), Z(8));
  return cubit_undefined(env);
}

KERNEL(cubit_napi_nn_lrr_bwd, "lrrValuesBackward", 13, F32("v", "9abc"), F32("z", "9ab"), F32("lower", "a"),
       F32("range", "a"), F32("dy", "9abc"), F32_OPT("dv", "9abc"), F32_OPT("dz", "9ab"),
       F32_OPT("dLower", "a"), F32_OPT("dRange", "a"), INDEX("B"), INDEX("H"), INDEX("T"), INDEX("D")) {
  int64_t n = N(9) * N(10) * N(11) * N(12);
  const float *in[2] = {F(0), F(4)};
  if (F(5) && n > 0 && !disjoint(env, fn, F(5), in, 2, n)) return NULL;
  if (cubit_nn_lrr_bwd(F(0), F(1), F(2), F(3), F(4), F(5), F(6), F(7), F(8), Z(9), Z(10), Z(11), Z(12)) != NN_OK)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the per-row scratch", fn);
  return cubit_undefined(env);
}
