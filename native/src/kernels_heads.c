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
#include "napi_args.h"
#include "threadpool.h"

#include <string.h>

#define HEADS_MAX_PARTS 16
_Static_assert(HEADS_MAX_PARTS <= ARG_MAX_LIST, "the parts must fit a list argument");

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

/* splitHeads(y, outs, B, T, heads, dims, rotate, cos, sin, offset) and
 * mergeHeads(xs, out, B, T, heads, dims, rotate, cos, sin, offset): the token side (B·T, C) with
 * C = Σ heads[p]·dims[p]; part p's heads side (B, heads[p], T, dims[p]); rotate[p] 0/1; cos/sin
 * null or (≥ offset + T, D/2) for the rotated parts' D. mergeHeads' xs[p] may be null (zeros).
 * The tables read every argument; this checks what they cannot: the per-part counts and sizes,
 * the rotated dims, the tables' rows and the overlaps. */
/* a·b, false when it does not fit a size_t (the lengths checked against it would wrap). */
static bool heads_mul(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }

static napi_value heads_body(napi_env env, const char *fn, arg_value *v, int merge) {
  const int side = merge ? 0 : 1, tok_arg = merge ? 1 : 0;
  const char *heads_name = merge ? "xs" : "outs";
  const int64_t B = N(2), T = N(3), offset = N(9);
  const size_t n = LN(side);
  if (n == 0 || n > HEADS_MAX_PARTS || LN(4) != n || LN(5) != n || LN(6) != n)
    return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s, heads, dims and rotate must have one entry per part (1 to %d)", fn,
                       heads_name, HEADS_MAX_PARTS);
  if (B > (int64_t)1 << 40 || T > (int64_t)1 << 40) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B or T is too large", fn);
  heads_ctx c;
  memset(&c, 0, sizeof c);
  c.k = nn_current_kernels();
  c.nparts = (int)n;
  c.merge = merge;
  c.T = (size_t)T;
  c.offset = (size_t)offset;
  if (!heads_mul((size_t)B, (size_t)T, &c.rows)) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B*T is too large", fn);
  bool any_rot = false;
  size_t rot_half = 0, C = 0;
  for (size_t p = 0; p < n; p++) {
    const int64_t H = LI(4, p), D = LI(5, p);
    if (H > (int64_t)1 << 20 || D > (int64_t)1 << 20) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: part %zu is too large", fn, p);
    c.heads[p] = (size_t)H;
    c.dims[p] = (size_t)D;
    c.rotate[p] = LI(6, p) != 0;
    C += (size_t)(H * D);
    if (!c.rotate[p]) continue;
    if (D % 2 != 0) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: part %zu rotates an odd dim %lld", fn, p, (long long)D);
    if (any_rot && (size_t)D / 2 != rot_half)
      return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: the rotated parts must share one dim (the tables')", fn);
    any_rot = true;
    rot_half = (size_t)D / 2;
  }
  c.C = C;
  if (any_rot) {
    size_t tab;
    if (!heads_mul((size_t)offset + (size_t)T, rot_half, &tab))
      return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: (offset + T) * D/2 is too large", fn);
    for (int i = 7; i <= 8; i++) {
      const char *name = i == 7 ? "cos" : "sin";
      if (!F(i)) return cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s must be a Float32Array", fn, name);
      if (v[i].len < tab)
        return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s is too short: %zu elements, need %zu", fn, name, v[i].len, tab);
    }
    c.cos = F(7);
    c.sin = F(8);
  }
  float *tok = F(tok_arg);
  size_t tok_need;
  if (!heads_mul(c.rows, C, &tok_need)) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B*T*C is too large", fn);
  if (v[tok_arg].len < tok_need)
    return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s is too short: %zu elements, need %zu", fn, merge ? "out" : "y",
                       v[tok_arg].len, tok_need);
  const float *lo = tok, *hi = tok + tok_need;
  for (size_t p = 0; p < n; p++) {
    float *a = LF(side, p);
    size_t need; /* at most tok_need, which fits: C sums heads[p]·dims[p] */
    if (!heads_mul(c.rows, c.heads[p] * c.dims[p], &need)) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B*T*C is too large", fn);
    if (a && LL(side, p) < need)
      return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s[%zu] is too short: %zu elements, need %zu", fn, heads_name, p,
                         LL(side, p), need);
    if (a && a < hi && lo < a + need) return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s[%zu] overlaps the token rows", fn, heads_name, p);
    if (merge) c.head_in[p] = a;
    else c.head_out[p] = a;
  }
  if (merge) c.tok_out = tok;
  else c.tok_in = tok;
  if (tok_need > 0) heads_run(&c);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_split_heads, "splitHeads", 10, F32("y", NULL), F32_LIST("outs"), INDEX("B"), INDEX("T"),
       INT_LIST("heads", 1), INT_LIST("dims", 1), INT_LIST("rotate", 0), F32_OPT("cos", NULL), F32_OPT("sin", NULL),
       INDEX("offset")) {
  return heads_body(env, fn, v, 0);
}

KERNEL(cubit_napi_merge_heads, "mergeHeads", 10, F32_LIST_OPT("xs"), F32("out", NULL), INDEX("B"), INDEX("T"),
       INT_LIST("heads", 1), INT_LIST("dims", 1), INT_LIST("rotate", 0), F32_OPT("cos", NULL), F32_OPT("sin", NULL),
       INDEX("offset")) {
  return heads_body(env, fn, v, 1);
}
