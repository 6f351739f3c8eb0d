/* Head layouts (Backend.splitHeads / mergeHeads in src/core/backend.ts). A fused projection (one
 * GEMM for q, k, v, …) writes token rows y (B·T, C) whose columns are consecutive parts; splitHeads
 * moves every part to its own (B, H_p, T, D_p) heads in one pass over y, turning the rotated parts
 * by the rotary tables on the way; mergeHeads is the adjoint (heads → columns, inverse rotation),
 * writing zeros for a part given as null.
 *
 * One pass over whole token rows in order, not one pass per part: a part is a slice of every row,
 * and walking slices of rows 516 floats long (not a multiple of a cache line) measured 2-4x slower
 * here than the whole rows; one pass costs about what the separate rotary passes over per-part
 * projections did (the backward merge ~1.4x that), while the fused GEMM saves more. The rotation is kernels_nn's rotary
 * row (double, exact products, one rounding), so the bits equal Backend.rotary's and the
 * reference's. */
#include "kernels_nn.h"
#include "napi_util.h"
#include "threadpool.h"

#include <string.h>

#define HEADS_MAX_PARTS 16

typedef struct {
  const nn_kernels *k;
  const float *tok_in; /* split: y */
  float *tok_out;      /* merge: out */
  const float *head_in[HEADS_MAX_PARTS]; /* merge: x_p (NULL: zeros) */
  float *head_out[HEADS_MAX_PARTS];      /* split: out_p */
  size_t heads[HEADS_MAX_PARTS], dims[HEADS_MAX_PARTS];
  int rotate[HEADS_MAX_PARTS];
  int nparts, merge;
  const float *cos, *sin;
  size_t T, C, offset, rows; /* rows = B·T */
  int ntasks;
} heads_ctx;

/* Task t moves token rows [rows·t/n, rows·(t+1)/n), each row's parts and heads in column order. */
static void heads_task(void *c, int task) {
  const heads_ctx *x = c;
  const size_t r0 = x->rows * (size_t)task / (size_t)x->ntasks;
  const size_t r1 = x->rows * (size_t)(task + 1) / (size_t)x->ntasks;
  const size_t T = x->T;
  for (size_t bt = r0; bt < r1; bt++) {
    const size_t t = bt % T, b = bt / T;
    size_t col = bt * x->C;
    for (int p = 0; p < x->nparts; p++) {
      const size_t H = x->heads[p], D = x->dims[p], half = D / 2;
      const float *cs = x->rotate[p] ? x->cos + (x->offset + t) * half : NULL;
      const float *sn = x->rotate[p] ? x->sin + (x->offset + t) * half : NULL;
      for (size_t h = 0; h < H; h++, col += D) {
        const size_t hf = ((b * H + h) * T + t) * D;
        if (!x->merge) {
          if (cs) x->k->rotary_row(x->tok_in + col, cs, sn, x->head_out[p] + hf, half, 1.0);
          else memcpy(x->head_out[p] + hf, x->tok_in + col, D * sizeof(float));
        } else {
          float *out = x->tok_out + col;
          if (!x->head_in[p]) memset(out, 0, D * sizeof(float));
          else if (cs) x->k->rotary_row(x->head_in[p] + hf, cs, sn, out, half, -1.0);
          else memcpy(out, x->head_in[p] + hf, D * sizeof(float));
        }
      }
    }
  }
}

static void heads_run(heads_ctx *c) {
  const double elems = (double)c->rows * (double)c->C;
  const int threads = cubit_num_threads();
  c->ntasks = 1;
  /* Memory-bound: split only big moves (the threshold of kernels_nn's copies). */
  if (threads > 1 && elems >= 262144.0 && !cubit_in_parallel_task()) {
    c->ntasks = 4 * threads;
    if ((size_t)c->ntasks > c->rows) c->ntasks = (int)c->rows;
  }
  if (c->ntasks <= 1) { c->ntasks = 1; heads_task(c, 0); return; }
  cubit_parallel_for(c->ntasks, heads_task, c);
}

/* ---- N-API -------------------------------------------------------------------------------- */

/* An array of `n` integers >= lo. */
static bool heads_ints(napi_env env, napi_value arr, const char *fn, const char *name, uint32_t n, int64_t lo,
                       int64_t *out) {
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    int64_t v;
    if (napi_get_element(env, arr, i, &e) != napi_ok || napi_get_value_int64(env, e, &v) != napi_ok || v < lo) {
      cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s[%u] must be an integer >= %lld", fn, name, i, (long long)lo);
      return false;
    }
    out[i] = v;
  }
  return true;
}

static bool heads_len(napi_env env, napi_value arr, const char *fn, const char *name, uint32_t *n) {
  bool is_array = false;
  if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array || napi_get_array_length(env, arr, n) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s must be an array", fn, name);
    return false;
  }
  return true;
}

static bool heads_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined);
}

/* A Float32Array (or, when `nullable`, null) of at least `need` elements. */
static bool heads_f32(napi_env env, napi_value v, const char *fn, const char *name, int idx, bool nullable,
                      size_t need, float **data) {
  if (nullable && heads_nullish(env, v)) { *data = NULL; return true; }
  bool is_ta = false;
  napi_typedarray_type type;
  size_t len = 0;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &len, &p, NULL, NULL) != napi_ok || type != napi_float32_array) {
    cubit_throw(env, CUBIT_TYPE_ERROR, idx >= 0 ? "%s: %s[%d] must be a Float32Array%s" : "%s: %s must be a Float32Array%s",
                fn, name, idx, nullable ? " or null" : "");
    return false;
  }
  if (len < need) {
    cubit_throw(env, CUBIT_RANGE_ERROR, idx >= 0 ? "%s: %s[%d] is too short: %zu elements, need %zu" : "%s: %s is too short: %zu elements, need %zu",
                fn, name, idx, len, need);
    return false;
  }
  *data = p;
  return true;
}

/* splitHeads(y, outs, B, T, heads, dims, rotate, cos, sin, offset) and
 * mergeHeads(xs, out, B, T, heads, dims, rotate, cos, sin, offset): the token side (B·T, C) with
 * C = Σ heads[p]·dims[p]; part p's heads side (B, heads[p], T, dims[p]); rotate[p] 0/1; cos/sin
 * null or (≥ offset + T, D/2) for the rotated parts' D. mergeHeads' xs[p] may be null (zeros). */
static napi_value heads_napi(napi_env env, napi_callback_info info, const char *fn, int merge) {
  napi_value argv[10];
  if (!cubit_get_args(env, info, fn, 10, argv)) return NULL;
  int64_t B, T, offset;
  if (!cubit_arg_index(env, argv, 2, fn, "B", &B) || !cubit_arg_index(env, argv, 3, fn, "T", &T) ||
      !cubit_arg_index(env, argv, 9, fn, "offset", &offset))
    return NULL;
  const napi_value heads_side = merge ? argv[0] : argv[1];
  const char *heads_name = merge ? "xs" : "outs";
  uint32_t n, n2, n3, n4;
  if (!heads_len(env, heads_side, fn, heads_name, &n) || !heads_len(env, argv[4], fn, "heads", &n2) ||
      !heads_len(env, argv[5], fn, "dims", &n3) || !heads_len(env, argv[6], fn, "rotate", &n4))
    return NULL;
  if (n == 0 || n > HEADS_MAX_PARTS || n2 != n || n3 != n || n4 != n)
    return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s, heads, dims and rotate must have one entry per part (1 to %d)", fn,
                       heads_name, HEADS_MAX_PARTS);
  int64_t H[HEADS_MAX_PARTS], D[HEADS_MAX_PARTS], R[HEADS_MAX_PARTS];
  if (!heads_ints(env, argv[4], fn, "heads", n, 1, H) || !heads_ints(env, argv[5], fn, "dims", n, 1, D) ||
      !heads_ints(env, argv[6], fn, "rotate", n, 0, R))
    return NULL;
  if (B > (int64_t)1 << 40 || T > (int64_t)1 << 40) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B or T is too large", fn);
  heads_ctx c;
  memset(&c, 0, sizeof c);
  c.k = nn_current_kernels();
  c.nparts = (int)n;
  c.merge = merge;
  c.T = (size_t)T;
  c.offset = (size_t)offset;
  c.rows = (size_t)B * (size_t)T;
  bool any_rot = false;
  size_t rot_half = 0, C = 0;
  for (uint32_t p = 0; p < n; p++) {
    if (H[p] > (int64_t)1 << 20 || D[p] > (int64_t)1 << 20) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: part %u is too large", fn, p);
    c.heads[p] = (size_t)H[p];
    c.dims[p] = (size_t)D[p];
    c.rotate[p] = R[p] != 0;
    C += (size_t)(H[p] * D[p]);
    if (!c.rotate[p]) continue;
    if (D[p] % 2 != 0) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: part %u rotates an odd dim %lld", fn, p, (long long)D[p]);
    if (any_rot && (size_t)D[p] / 2 != rot_half)
      return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: the rotated parts must share one dim (the tables')", fn);
    any_rot = true;
    rot_half = (size_t)D[p] / 2;
  }
  c.C = C;
  if (any_rot) {
    float *cs, *sn;
    const size_t tab = ((size_t)offset + (size_t)T) * rot_half;
    if (!heads_f32(env, argv[7], fn, "cos", -1, false, tab, &cs) || !heads_f32(env, argv[8], fn, "sin", -1, false, tab, &sn))
      return NULL;
    c.cos = cs;
    c.sin = sn;
  }
  float *tok;
  if (!heads_f32(env, merge ? argv[1] : argv[0], fn, merge ? "out" : "y", -1, false, c.rows * C, &tok)) return NULL;
  const float *lo = tok, *hi = tok + c.rows * C;
  for (uint32_t p = 0; p < n; p++) {
    napi_value e;
    float *a;
    const size_t need = c.rows * c.heads[p] * c.dims[p];
    if (napi_get_element(env, heads_side, p, &e) != napi_ok || !heads_f32(env, e, fn, heads_name, (int)p, merge, need, &a))
      return NULL;
    if (a && a < hi && lo < a + need) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s[%u] overlaps the token rows", fn, heads_name, p);
    if (merge) c.head_in[p] = a;
    else c.head_out[p] = a;
  }
  if (merge) c.tok_out = tok;
  else c.tok_in = tok;
  if (c.rows * C > 0) heads_run(&c);
  return cubit_undefined(env);
}

CUBIT_NAPI(cubit_napi_split_heads) { return heads_napi(env, info, "splitHeads", 0); }
CUBIT_NAPI(cubit_napi_merge_heads) { return heads_napi(env, info, "mergeHeads", 1); }
