/* Drivers of the non-GEMM kernels (kernels_nn.h): pick the ISA's loops, cut the work into tasks
 * for the thread pool when it is big enough to pay for it, walk strided and broadcast views, and
 * keep the per-task scratch the backward norms need in grow-once buffers. */
#include "kernels_nn.h"

#include "cpu.h"
#include "threadpool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Split a job across threads from this many elements, or this much arithmetic, up. */
#define NN_PAR_ELEMS 262144.0

const nn_kernels *nn_current_kernels(void) {
#if defined(__x86_64__) || defined(__i386__)
  switch (cubit_current_isa()) {
    case CUBIT_ISA_AVX512: return &nn_kernels_avx512;
    case CUBIT_ISA_AVX2: return &nn_kernels_avx2;
    default: break;
  }
#endif
  return &nn_kernels_generic;
}

/* ---- task splitting ----------------------------------------------------------------------- */

typedef void (*nn_range_fn)(void *ctx, size_t begin, size_t end, int task);

typedef struct {
  nn_range_fn fn;
  void *ctx;
  size_t n, align;
  int ntasks;
} nn_split;

/* Task t of ntasks gets [n*t/ntasks, n*(t+1)/ntasks), rounded to multiples of align. */
static size_t nn_bound(size_t n, size_t align, int t, int ntasks) {
  if (t >= ntasks) return n;
  size_t units = (n + align - 1) / align;
  size_t q = units / (size_t)ntasks, r = units % (size_t)ntasks;
  size_t b = ((size_t)t * q + ((size_t)t < r ? (size_t)t : r)) * align;
  return b < n ? b : n;
}

static void nn_split_task(void *c, int t) {
  nn_split *s = c;
  size_t b = nn_bound(s->n, s->align, t, s->ntasks), e = nn_bound(s->n, s->align, t + 1, s->ntasks);
  if (b < e) s->fn(s->ctx, b, e, t);
}

/* How many tasks a job of `elems` elements costing about `flops_per` each deserves: 1 when it
 * is too small to pay for waking the pool, else a few per thread (handed out dynamically). */
static int nn_tasks(double elems, double flops_per) {
  if (elems < NN_PAR_ELEMS && elems * flops_per < CUBIT_MIN_PARALLEL_FLOPS) return 1;
  int t = cubit_num_threads();
  if (t <= 1 || cubit_in_parallel_task()) return 1;
  return 4 * t;
}

/* Runs fn over [0, n) cut into at most ntasks ranges (multiples of align). */
static void nn_run(size_t n, size_t align, int ntasks, nn_range_fn fn, void *ctx) {
  if (n == 0) return;
  size_t units = (n + align - 1) / align;
  if ((size_t)ntasks > units) ntasks = (int)units;
  if (ntasks <= 1) { fn(ctx, 0, n, 0); return; }
  nn_split s = {fn, ctx, n, align, ntasks};
  cubit_parallel_for(ntasks, nn_split_task, &s);
}

/* Scratch of the calling thread (threadpool.h), shared by a call's tasks through their context. */
static void *nn_get_scratch(size_t bytes) { return cubit_scratch(CUBIT_SCRATCH_NN, bytes); }

/* ---- fill / copy -------------------------------------------------------------------------- */

typedef struct {
  float *out;
  const float *src;
  float value;
} nn_mem_ctx;

static void fill_range(void *c, size_t b, size_t e, int t) {
  nn_mem_ctx *x = c;
  (void)t;
  for (size_t i = b; i < e; i++) x->out[i] = x->value;
}

void cubit_nn_fill(float *out, float value, size_t n) {
  nn_mem_ctx c = {out, NULL, value};
  nn_run(n, 16, nn_tasks((double)n * 4, 0), fill_range, &c);
}

static void copy_range(void *c, size_t b, size_t e, int t) {
  nn_mem_ctx *x = c;
  (void)t;
  memcpy(x->out + b, x->src + b, (e - b) * sizeof(float));
}

void cubit_nn_copy(const float *src, float *out, size_t n) {
  if (src == out || n == 0) return;
  if (src < out + n && out < src + n) { memmove(out, src, n * sizeof(float)); return; }
  nn_mem_ctx c = {out, src, 0};
  nn_run(n, 16, nn_tasks((double)n * 2, 0), copy_range, &c);
}

/* ---- strided and broadcast iteration ------------------------------------------------------ */

/* A view of up to 3 operands over one shape, with size-1 axes dropped and axes merged wherever
 * every operand is contiguous across them. The last axis is the inner loop. */
typedef struct {
  int rank, nops;
  int64_t shape[NN_MAX_RANK];
  int64_t st[3][NN_MAX_RANK];
} nn_view;

static void nn_view_init(nn_view *v, int rank, const int64_t *shape, int nops,
                         const int64_t *const *strides) {
  v->rank = 0;
  v->nops = nops;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 1) continue;
    int k = v->rank;
    if (k > 0) {
      int merge = 1;
      for (int o = 0; o < nops; o++)
        if (v->st[o][k - 1] != strides[o][d] * shape[d]) merge = 0;
      if (merge) {
        v->shape[k - 1] *= shape[d];
        for (int o = 0; o < nops; o++) v->st[o][k - 1] = strides[o][d];
        continue;
      }
    }
    v->shape[k] = shape[d];
    for (int o = 0; o < nops; o++) v->st[o][k] = strides[o][d];
    v->rank++;
  }
  if (v->rank == 0) {
    v->rank = 1;
    v->shape[0] = 1;
    for (int o = 0; o < nops; o++) v->st[o][0] = 0;
  }
}

static size_t nn_view_size(const nn_view *v) {
  size_t n = 1;
  for (int d = 0; d < v->rank; d++) n *= (size_t)v->shape[d];
  return n;
}

/* Calls inner(ctx, offsets, out_index, n) for the runs of the inner axis that cover flat
 * output elements [b, e). offsets are the operands' element offsets at the run's start. */
typedef void (*nn_inner_fn)(void *ctx, const int64_t *offs, size_t out, size_t n);

static void nn_view_walk(const nn_view *v, size_t b, size_t e, nn_inner_fn inner, void *ctx) {
  const int R = v->rank;
  const size_t n = (size_t)v->shape[R - 1];
  int64_t idx[NN_MAX_RANK], offs[3];
  size_t row = b / n, col = b % n;
  /* multi-index of `row` over the outer axes */
  size_t rr = row;
  for (int d = R - 2; d >= 0; d--) {
    idx[d] = (int64_t)(rr % (size_t)v->shape[d]);
    rr /= (size_t)v->shape[d];
  }
  for (int o = 0; o < v->nops; o++) {
    int64_t off = (int64_t)col * v->st[o][R - 1];
    for (int d = 0; d < R - 1; d++) off += idx[d] * v->st[o][d];
    offs[o] = off;
  }
  size_t i = b;
  while (i < e) {
    size_t len = n - col;
    if (len > e - i) len = e - i;
    inner(ctx, offs, i, len);
    i += len;
    if (i >= e) break;
    /* next row: undo the column offset, step the odometer */
    for (int o = 0; o < v->nops; o++) offs[o] -= (int64_t)col * v->st[o][R - 1];
    col = 0;
    for (int d = R - 2; d >= 0; d--) {
      idx[d]++;
      for (int o = 0; o < v->nops; o++) offs[o] += v->st[o][d];
      if (idx[d] < v->shape[d]) break;
      for (int o = 0; o < v->nops; o++) offs[o] -= v->st[o][d] * v->shape[d];
      idx[d] = 0;
    }
  }
}

typedef struct {
  const nn_view *v;
  nn_inner_fn inner;
  void *ctx;
} nn_walk_ctx;

static void walk_range(void *c, size_t b, size_t e, int t) {
  nn_walk_ctx *w = c;
  (void)t;
  nn_view_walk(w->v, b, e, w->inner, w->ctx);
}

static void nn_view_run(const nn_view *v, double flops_per, nn_inner_fn inner, void *ctx) {
  size_t total = nn_view_size(v);
  nn_walk_ctx w = {v, inner, ctx};
  nn_run(total, 64, nn_tasks((double)total, flops_per), walk_range, &w);
}

/* stridedCopy */
typedef struct {
  const float *src;
  float *out;
  int64_t s;
} nn_copy_ctx;

static void copy_inner(void *c, const int64_t *offs, size_t o, size_t n) {
  nn_copy_ctx *x = c;
  const float *src = x->src + offs[0];
  float *dst = x->out + o;
  int64_t s = x->s;
  if (s == 1) memcpy(dst, src, n * sizeof(float));
  else if (s == 0) { float v = *src; for (size_t i = 0; i < n; i++) dst[i] = v; }
  else for (size_t i = 0; i < n; i++) dst[i] = src[(int64_t)i * s];
}

/* Transposed copies (the source's unit-stride axis is not the last) go through 32x32 tiles so
 * that both sides are read and written a cache line at a time. */
#define NN_TILE 32
static int nn_copy_tiled(const nn_view *v, const float *src, float *out) {
  const int R = v->rank;
  if (R < 2 || v->st[0][R - 1] == 1) return 0;
  int k = -1;
  for (int d = 0; d < R - 1; d++)
    if (v->st[0][d] == 1) k = d;
  if (k < 0 || v->shape[k] < 8 || v->shape[R - 1] < 8) return 0;
  /* out strides of the contiguous output */
  int64_t ost[NN_MAX_RANK];
  ost[R - 1] = 1;
  for (int d = R - 2; d >= 0; d--) ost[d] = ost[d + 1] * v->shape[d + 1];
  /* iterate the axes other than k and R-1 with an odometer; each step copies a K x N plane */
  int64_t idx[NN_MAX_RANK] = {0};
  const int64_t K = v->shape[k], N = v->shape[R - 1], sN = v->st[0][R - 1], oK = ost[k];
  size_t planes = nn_view_size(v) / (size_t)(K * N);
  int64_t so = 0, oo = 0;
  for (size_t p = 0; p < planes; p++) {
    for (int64_t k0 = 0; k0 < K; k0 += NN_TILE) {
      int64_t k1 = k0 + NN_TILE < K ? k0 + NN_TILE : K;
      for (int64_t n0 = 0; n0 < N; n0 += NN_TILE) {
        int64_t n1 = n0 + NN_TILE < N ? n0 + NN_TILE : N;
        for (int64_t kk = k0; kk < k1; kk++) {
          const float *s = src + so + kk + n0 * sN;
          float *o = out + oo + kk * oK + n0;
          for (int64_t nn = 0; nn < n1 - n0; nn++) o[nn] = s[nn * sN];
        }
      }
    }
    for (int d = R - 2; d >= 0; d--) {
      if (d == k) continue;
      idx[d]++;
      so += v->st[0][d];
      oo += ost[d];
      if (idx[d] < v->shape[d]) break;
      so -= v->st[0][d] * v->shape[d];
      oo -= ost[d] * v->shape[d];
      idx[d] = 0;
    }
  }
  return 1;
}

void cubit_nn_strided_copy(const float *src, const int64_t *shape, const int64_t *strides,
                           int rank, float *out) {
  for (int d = 0; d < rank; d++)
    if (shape[d] == 0) return;
  nn_view v;
  const int64_t *st[1] = {strides};
  nn_view_init(&v, rank, shape, 1, st);
  size_t total = nn_view_size(&v);
  /* tiled transposes run on one thread: they are cache-bound, not compute-bound */
  if (total >= 4096 && nn_copy_tiled(&v, src, out)) return;
  nn_copy_ctx c = {src, out, v.st[0][v.rank - 1]};
  nn_view_run(&v, 1.0, copy_inner, &c);
}

/* binary / where */
typedef struct {
  const nn_kernels *k;
  int op;
  const float *a, *b;
  const uint32_t *cond;
  int cond_is_int;
  float *out;
  int64_t sc, sa, sb;
} nn_ew_ctx;

static void binary_inner(void *c, const int64_t *offs, size_t o, size_t n) {
  nn_ew_ctx *x = c;
  x->k->binary(x->op, x->a + offs[0], x->sa, x->b + offs[1], x->sb, x->out + o, n);
}

void cubit_nn_binary(int op, const float *a, const int64_t *as, const float *b,
                     const int64_t *bs, float *out, const int64_t *shape, int rank) {
  for (int d = 0; d < rank; d++)
    if (shape[d] == 0) return;
  nn_view v;
  const int64_t *st[2] = {as, bs};
  nn_view_init(&v, rank, shape, 2, st);
  nn_ew_ctx c = {nn_current_kernels(), op, a, b, NULL, 0, out, 0, v.st[0][v.rank - 1], v.st[1][v.rank - 1]};
  nn_view_run(&v, op == NN_BPOW ? 40.0 : 1.0, binary_inner, &c);
}

static void where_inner(void *c, const int64_t *offs, size_t o, size_t n) {
  nn_ew_ctx *x = c;
  x->k->where(x->cond + offs[0], x->sc, x->cond_is_int, x->a + offs[1], x->sa, x->b + offs[2],
              x->sb, x->out + o, n);
}

void cubit_nn_where(const uint32_t *cond, int cond_is_int, const int64_t *cs, const float *a,
                    const int64_t *as, const float *b, const int64_t *bs, float *out,
                    const int64_t *shape, int rank) {
  for (int d = 0; d < rank; d++)
    if (shape[d] == 0) return;
  nn_view v;
  const int64_t *st[3] = {cs, as, bs};
  nn_view_init(&v, rank, shape, 3, st);
  int R = v.rank - 1;
  nn_ew_ctx c = {nn_current_kernels(), 0, a, b, cond, cond_is_int, out, v.st[0][R], v.st[1][R], v.st[2][R]};
  nn_view_run(&v, 1.0, where_inner, &c);
}

/* ---- unary -------------------------------------------------------------------------------- */

typedef struct {
  const nn_kernels *k;
  int op;
  const float *x, *y, *dy;
  float *out;
  double scalar;
} nn_unary_ctx;

static double unary_cost(int op) {
  switch (op) {
    case NN_EXP: case NN_SIGMOID: case NN_SILU: return 20;
    case NN_LOG: case NN_TANH: return 30;
    case NN_GELU: return 60;
    case NN_POW: return 60;
    default: return 1;
  }
}

static void unary_range(void *c, size_t b, size_t e, int t) {
  nn_unary_ctx *u = c;
  (void)t;
  u->k->unary(u->op, u->x + b, u->out + b, e - b, u->scalar);
}

void cubit_nn_unary(int op, const float *x, float *out, size_t n, double scalar) {
  nn_unary_ctx c = {nn_current_kernels(), op, x, NULL, NULL, out, scalar};
  nn_run(n, 64, nn_tasks((double)n, unary_cost(op)), unary_range, &c);
}

static void unary_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_unary_ctx *u = c;
  (void)t;
  u->k->unary_bwd(u->op, u->x + b, u->y + b, u->dy + b, u->out + b, e - b, u->scalar);
}

void cubit_nn_unary_bwd(int op, const float *x, const float *y, const float *dy, float *dx,
                        size_t n, double scalar) {
  nn_unary_ctx c = {nn_current_kernels(), op, x, y, dy, dx, scalar};
  nn_run(n, 64, nn_tasks((double)n, unary_cost(op) + 1), unary_bwd_range, &c);
}

/* ---- reduce ------------------------------------------------------------------------------- */

typedef struct {
  const nn_kernels *k;
  int op;
  const float *x;
  float *out;
  size_t len, inner, chunks;
  double *partial;
} nn_reduce_ctx;

/* inner == 1: each output is one contiguous run */
static void reduce_rows_range(void *c, size_t b, size_t e, int t) {
  nn_reduce_ctx *r = c;
  (void)t;
  for (size_t p = b; p < e; p++) r->out[p] = (float)r->k->reduce_run(r->op, r->x + p * r->len, r->len);
}

/* one long run cut into chunks, combined in order afterwards */
#define NN_RUN_CHUNK 65536
static void reduce_chunks_range(void *c, size_t b, size_t e, int t) {
  nn_reduce_ctx *r = c;
  (void)t;
  for (size_t q = b; q < e; q++) {
    size_t s = q * NN_RUN_CHUNK, n = r->len - s < NN_RUN_CHUNK ? r->len - s : NN_RUN_CHUNK;
    r->partial[q] = r->k->reduce_run(r->op, r->x + s, n);
  }
}

/* inner > 1: unit u = (p, column block) of NN_COLS columns */
static void reduce_cols_range(void *c, size_t b, size_t e, int t) {
  nn_reduce_ctx *r = c;
  (void)t;
  for (size_t u = b; u < e; u++) {
    size_t p = u / r->chunks, i0 = (u % r->chunks) * NN_COLS;
    size_t n = r->inner - i0 < NN_COLS ? r->inner - i0 : NN_COLS;
    r->k->reduce_cols(r->op, r->x + p * r->len * r->inner + i0, r->len, r->inner, n,
                      r->out + p * r->inner + i0);
  }
}

void cubit_nn_reduce(int op, const float *x, float *out, size_t outer, size_t len, size_t inner) {
  if (outer == 0 || inner == 0) return;
  const nn_kernels *k = nn_current_kernels();
  double total = (double)outer * (double)len * (double)inner;
  int ntasks = nn_tasks(total, 1);
  if (inner == 1) {
    /* a long single run is cut into fixed chunks (also on one thread, so that the result does
     * not depend on the thread count) */
    if (outer == 1 && len > 2 * NN_RUN_CHUNK) {
      size_t chunks = (len + NN_RUN_CHUNK - 1) / NN_RUN_CHUNK;
      double stack[64], *partial = chunks <= 64 ? stack : nn_get_scratch(chunks * sizeof(double));
      if (partial) {
        nn_reduce_ctx c = {k, op, x, out, len, 1, chunks, partial};
        nn_run(chunks, 1, ntasks, reduce_chunks_range, &c);
        double acc = op == NN_SUM ? 0.0 : partial[0];
        int nan = 0;
        for (size_t q = 0; q < chunks; q++) {
          double v = partial[q];
          if (v != v) nan = 1;
          else if (op == NN_SUM) acc += v;
          else if (op == NN_MAX ? v > acc : v < acc) acc = v;
        }
        out[0] = nan ? NAN : (float)acc;
        return;
      }
    }
    nn_reduce_ctx c = {k, op, x, out, len, 1, 0, NULL};
    nn_run(outer, 1, ntasks, reduce_rows_range, &c);
    return;
  }
  size_t chunks = (inner + NN_COLS - 1) / NN_COLS;
  nn_reduce_ctx c = {k, op, x, out, len, inner, chunks, NULL};
  nn_run(outer * chunks, 1, ntasks, reduce_cols_range, &c);
}

/* ---- softmax ------------------------------------------------------------------------------ */

typedef struct {
  const nn_kernels *k;
  const float *a, *b, *c, *d, *e;
  float *o1, *o2, *o3;
  size_t cols;
  int flag;
  int32_t ignore;
  const int32_t *ids;
  size_t count;
  double eps;
  /* per-task accumulators of the backward norms */
  float *f1, *f2;
  double *d1, *d2;
} nn_rows_ctx;

/* Row kernels cost about this many flops per element (exp-bound ones more). */
#define NN_EXP_COST 24.0

static void softmax_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  r->k->softmax(r->a + b * r->cols, r->o1 + b * r->cols, e - b, r->cols, r->flag);
}

void cubit_nn_softmax(const float *x, float *out, size_t rows, size_t cols, int log) {
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = x, .o1 = out, .cols = cols, .flag = log};
  nn_run(rows, 1, nn_tasks((double)rows * cols, NN_EXP_COST), softmax_range, &c);
}

static void softmax_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  size_t o = b * r->cols;
  r->k->softmax_bwd(r->a + o, r->b + o, r->o1 + o, e - b, r->cols, r->flag);
}

void cubit_nn_softmax_bwd(const float *y, const float *dy, float *dx, size_t rows, size_t cols,
                          int log) {
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = y, .b = dy, .o1 = dx, .cols = cols, .flag = log};
  nn_run(rows, 1, nn_tasks((double)rows * cols, log ? NN_EXP_COST : 4), softmax_bwd_range, &c);
}

/* ---- norms -------------------------------------------------------------------------------- */

static void rmsnorm_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  r->k->rmsnorm(r->a + b * r->cols, r->b, r->o1 + b * r->cols, r->o2 + b, e - b, r->cols, r->eps);
}

void cubit_nn_rmsnorm(const float *x, const float *w, float *out, float *rstd, size_t rows,
                      size_t cols, double eps) {
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = x, .b = w, .o1 = out, .o2 = rstd, .cols = cols, .eps = eps};
  nn_run(rows, 1, nn_tasks((double)rows * cols, 4), rmsnorm_range, &c);
}

/* The weight (and bias) gradients are column sums over rows. Each task sums its own rows into
 * its own float + double accumulators; the task partials are added in task order afterwards.
 * The number of tasks depends on the shape only, so results do not change with the thread
 * count. */
#define NN_DET_TASKS 32

static int nn_det_tasks(size_t rows, size_t cols) {
  if ((double)rows * cols < NN_PAR_ELEMS / 2 || cubit_in_parallel_task()) return 1;
  return rows < NN_DET_TASKS ? (int)rows : NN_DET_TASKS;
}

/* Scratch for `ntasks` tasks: nacc pairs of (float[cols], double[cols]) each, zeroed. */
static int nn_acc_scratch(int ntasks, size_t cols, int nacc, float **f, double **d) {
  size_t stride = (cols + 15) & ~(size_t)15;
  size_t nf = (size_t)ntasks * nacc * stride;
  char *p = nn_get_scratch(nf * (sizeof(float) + sizeof(double)));
  if (!p) return NN_ENOMEM;
  *d = (double *)p;
  *f = (float *)(p + nf * sizeof(double));
  memset(p, 0, nf * (sizeof(float) + sizeof(double)));
  return NN_OK;
}

/* dst[j] = sum over tasks of acc[t*stride*nacc + which*stride + j] */
static void nn_acc_reduce(float *dst, const double *acc, int ntasks, size_t cols, int nacc,
                          int which) {
  size_t stride = (cols + 15) & ~(size_t)15;
  for (size_t j = 0; j < cols; j++) {
    double s = 0;
    for (int t = 0; t < ntasks; t++) s += acc[((size_t)t * nacc + which) * stride + j];
    dst[j] = (float)s;
  }
}

static void rmsnorm_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  size_t o = b * r->cols, stride = (r->cols + 15) & ~(size_t)15;
  float *f = r->f1 ? r->f1 + (size_t)t * stride : NULL;
  double *d = r->d1 ? r->d1 + (size_t)t * stride : NULL;
  r->k->rmsnorm_bwd(r->a + o, r->b, r->c + b, r->d + o, r->o1 + o, e - b, r->cols, f, d);
}

int cubit_nn_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy,
                         float *dx, float *dw, size_t rows, size_t cols) {
  int ntasks = nn_det_tasks(rows, cols);
  float *f = NULL;
  double *d = NULL;
  if (dw) {
    if (nn_acc_scratch(ntasks, cols, 1, &f, &d) != NN_OK) return NN_ENOMEM;
  }
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = x, .b = w, .c = rstd, .d = dy, .o1 = dx, .cols = cols,
                   .f1 = f, .d1 = d};
  nn_run(rows, 1, ntasks, rmsnorm_bwd_range, &c);
  if (dw) {
    if (rows == 0) memset(dw, 0, cols * sizeof(float));
    else nn_acc_reduce(dw, d, ntasks, cols, 1, 0);
  }
  return NN_OK;
}

static void layernorm_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  size_t o = b * r->cols;
  r->k->layernorm(r->a + o, r->b, r->c, r->o1 + o, r->o2 + b, r->o3 + b, e - b, r->cols, r->eps);
}

void cubit_nn_layernorm(const float *x, const float *w, const float *b, float *out, float *mean,
                        float *rstd, size_t rows, size_t cols, double eps) {
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = x, .b = w, .c = b, .o1 = out, .o2 = mean, .o3 = rstd,
                   .cols = cols, .eps = eps};
  nn_run(rows, 1, nn_tasks((double)rows * cols, 6), layernorm_range, &c);
}

static void layernorm_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  size_t o = b * r->cols, stride = (r->cols + 15) & ~(size_t)15;
  /* task t owns accumulator pairs 2t (dw) and 2t+1 (db) */
  float *fw = r->f1 ? r->f1 + (size_t)(2 * t) * stride : NULL;
  double *dw = r->d1 ? r->d1 + (size_t)(2 * t) * stride : NULL;
  float *fb = r->f2 ? r->f2 + (size_t)(2 * t + 1) * stride : NULL;
  double *db = r->d2 ? r->d2 + (size_t)(2 * t + 1) * stride : NULL;
  r->k->layernorm_bwd(r->a + o, r->b, r->c + b, r->d + b, r->e + o, r->o1 + o, e - b, r->cols,
                      fw, dw, fb, db);
}

int cubit_nn_layernorm_bwd(const float *x, const float *w, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dw, float *db, size_t rows,
                           size_t cols) {
  int ntasks = nn_det_tasks(rows, cols);
  float *f = NULL;
  double *d = NULL;
  if (dw || db) {
    if (nn_acc_scratch(ntasks, cols, 2, &f, &d) != NN_OK) return NN_ENOMEM;
  }
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = x, .b = w, .c = mean, .d = rstd, .e = dy, .o1 = dx,
                   .cols = cols, .f1 = dw ? f : NULL, .d1 = dw ? d : NULL,
                   .f2 = db ? f : NULL, .d2 = db ? d : NULL};
  nn_run(rows, 1, ntasks, layernorm_bwd_range, &c);
  if (dw) {
    if (rows == 0) memset(dw, 0, cols * sizeof(float));
    else nn_acc_reduce(dw, d, ntasks, cols, 2, 0);
  }
  if (db) {
    if (rows == 0) memset(db, 0, cols * sizeof(float));
    else nn_acc_reduce(db, d, ntasks, cols, 2, 1);
  }
  return NN_OK;
}

/* ---- gather / scatterAdd ------------------------------------------------------------------ */

static int nn_check_ids(const int32_t *ids, size_t count, size_t limit, int has_ignore,
                        int32_t ignore, size_t *bad_pos) {
  for (size_t i = 0; i < count; i++) {
    int32_t v = ids[i];
    if (has_ignore && v == ignore) continue;
    if (v < 0 || (size_t)v >= limit) {
      if (bad_pos) *bad_pos = i;
      return NN_EBADID;
    }
  }
  return NN_OK;
}

static void gather_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  for (size_t i = b; i < e; i++)
    memcpy(r->o1 + i * r->cols, r->a + (size_t)r->ids[i] * r->cols, r->cols * sizeof(float));
}

int cubit_nn_gather(const float *table, size_t vocab, const int32_t *ids, float *out,
                    size_t count, size_t cols, size_t *bad_pos) {
  int rc = nn_check_ids(ids, count, vocab, 0, 0, bad_pos);
  if (rc != NN_OK) return rc;
  nn_rows_ctx c = {.a = table, .ids = ids, .o1 = out, .cols = cols};
  nn_run(count, 1, nn_tasks((double)count * cols * 2, 0), gather_range, &c);
  return NN_OK;
}

/* Columns are split between tasks (every task walks all ids), so repeated ids never race and
 * each entry is summed in id order whatever the thread count. */
static void scatter_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  for (size_t i = 0; i < r->count; i++) {
    const float *g = r->a + i * r->cols;
    float *d = r->o1 + (size_t)r->ids[i] * r->cols;
    for (size_t j = b; j < e; j++) d[j] += g[j];
  }
}

int cubit_nn_scatter_add(const float *dy, const int32_t *ids, float *dtable, size_t vocab,
                         size_t count, size_t cols, size_t *bad_pos) {
  int rc = nn_check_ids(ids, count, vocab, 0, 0, bad_pos);
  if (rc != NN_OK) return rc;
  nn_rows_ctx c = {.a = dy, .ids = ids, .o1 = dtable, .cols = cols, .count = count};
  int ntasks = nn_tasks((double)count * cols * 2, 0);
  /* tasks of at least 64 columns keep the inner loops vectorised */
  nn_run(cols, 64, ntasks, scatter_range, &c);
  return NN_OK;
}

/* ---- cross-entropy ------------------------------------------------------------------------ */

static void xent_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  r->k->xent(r->a + b * r->cols, r->ids + b, r->o1 + b, r->o2 + b, e - b, r->cols, r->ignore);
}

int cubit_nn_xent(const float *logits, const int32_t *targets, float *losses, float *lse,
                  size_t rows, size_t cols, int32_t ignore, size_t *bad_pos) {
  int rc = nn_check_ids(targets, rows, cols, 1, ignore, bad_pos);
  if (rc != NN_OK) return rc;
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = logits, .ids = targets, .o1 = losses, .o2 = lse,
                   .cols = cols, .ignore = ignore};
  nn_run(rows, 1, nn_tasks((double)rows * cols, NN_EXP_COST), xent_range, &c);
  return NN_OK;
}

static void xent_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_rows_ctx *r = c;
  (void)t;
  size_t o = b * r->cols;
  r->k->xent_bwd(r->a + o, r->ids + b, r->b + b, r->c + b, r->o1 + o, e - b, r->cols, r->ignore);
}

int cubit_nn_xent_bwd(const float *logits, const int32_t *targets, const float *lse,
                      const float *dloss, float *dlogits, size_t rows, size_t cols,
                      int32_t ignore, size_t *bad_pos) {
  int rc = nn_check_ids(targets, rows, cols, 1, ignore, bad_pos);
  if (rc != NN_OK) return rc;
  nn_rows_ctx c = {.k = nn_current_kernels(), .a = logits, .ids = targets, .b = lse, .c = dloss,
                   .o1 = dlogits, .cols = cols, .ignore = ignore};
  nn_run(rows, 1, nn_tasks((double)rows * cols, NN_EXP_COST), xent_bwd_range, &c);
  return NN_OK;
}

/* ---- dropout / AdamW ---------------------------------------------------------------------- */

typedef struct {
  const nn_kernels *k;
  float *out;
  uint32_t seed;
  uint64_t threshold;
  float scale;
} nn_dropout_ctx;

static void dropout_range(void *c, size_t b, size_t e, int t) {
  nn_dropout_ctx *d = c;
  (void)t;
  d->k->dropout(d->out + b, b, e - b, d->seed, d->threshold, d->scale);
}

void cubit_nn_dropout(float *out, size_t n, double p, uint32_t seed) {
  /* keep iff hash >= p * 2^32 (a double compare in the reference); hashes are integers */
  double t = ceil(p * 4294967296.0);
  nn_dropout_ctx c = {nn_current_kernels(), out, seed, t <= 0 ? 0 : (uint64_t)t, (float)(1.0 / (1.0 - p))};
  nn_run(n, 64, nn_tasks((double)n, 8), dropout_range, &c);
}

typedef struct {
  const nn_kernels *k;
  float *p, *m, *v;
  const float *g;
  nn_adamw a;
} nn_adamw_ctx;

static void adamw_range(void *c, size_t b, size_t e, int t) {
  nn_adamw_ctx *x = c;
  (void)t;
  x->k->adamw(x->p + b, x->g + b, x->m + b, x->v + b, e - b, &x->a);
}

void cubit_nn_adamw(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                    double beta1, double beta2, double eps, double weight_decay, double bc1,
                    double bc2) {
  nn_adamw_ctx c = {nn_current_kernels(), param, m, v, grad,
                    {beta1, 1 - beta1, beta2, 1 - beta2, eps, 1 - lr * weight_decay, lr, bc1, bc2}};
  nn_run(n, 64, nn_tasks((double)n, 12), adamw_range, &c);
}

/* ---- rotary embedding --------------------------------------------------------------------- */

typedef struct {
  const nn_kernels *k;
  const float *x, *cos, *sin;
  float *out;
  size_t T, H, D, offset;
  int inverse, x_heads_first, out_heads_first;
} nn_rotary_ctx;

/* Rows are (b, t, h) triples in (B, T, H) order. */
static void rotary_range(void *c, size_t b, size_t e, int task) {
  const nn_rotary_ctx *r = c;
  (void)task;
  const size_t T = r->T, H = r->H, D = r->D, half = D / 2;
  const double sign = r->inverse ? -1.0 : 1.0;
  for (size_t row = b; row < e; row++) {
    size_t h = row % H, bt = row / H, t = bt % T, bb = bt / T;
    size_t tok = (bt * H + h) * D, hf = ((bb * H + h) * T + t) * D;
    r->k->rotary_row(r->x + (r->x_heads_first ? hf : tok), r->cos + (r->offset + t) * half,
                     r->sin + (r->offset + t) * half, r->out + (r->out_heads_first ? hf : tok),
                     half, sign);
  }
}

void cubit_nn_rotary(const float *x, const float *cos, const float *sin, float *out, size_t B,
                     size_t T, size_t H, size_t D, size_t offset, int inverse, int x_heads_first,
                     int out_heads_first) {
  nn_rotary_ctx c = {nn_current_kernels(), x, cos, sin, out, T, H, D, offset, inverse, x_heads_first, out_heads_first};
  size_t rows = B * T * H;
  nn_run(rows, 1, nn_tasks((double)rows * D * 3, 0), rotary_range, &c);
}

/* ---- SwiGLU gate -------------------------------------------------------------------------- */

typedef struct {
  const nn_kernels *k;
  const float *a, *b, *dy;
  float *o1, *o2;
} nn_swiglu_ctx;

static void swiglu_range(void *c, size_t b, size_t e, int t) {
  nn_swiglu_ctx *x = c;
  (void)t;
  x->k->swiglu(x->a + b, x->b + b, x->o1 + b, e - b);
}

void cubit_nn_swiglu(const float *a, const float *b, float *out, size_t n) {
  nn_swiglu_ctx c = {nn_current_kernels(), a, b, NULL, out, NULL};
  nn_run(n, 64, nn_tasks((double)n, 20), swiglu_range, &c);
}

static void swiglu_bwd_range(void *c, size_t b, size_t e, int t) {
  nn_swiglu_ctx *x = c;
  (void)t;
  x->k->swiglu_bwd(x->a + b, x->b + b, x->dy + b, x->o1 + b, x->o2 + b, e - b);
}

void cubit_nn_swiglu_bwd(const float *a, const float *b, const float *dy, float *da, float *db,
                         size_t n) {
  nn_swiglu_ctx c = {nn_current_kernels(), a, b, dy, da, db};
  nn_run(n, 64, nn_tasks((double)n, 40), swiglu_bwd_range, &c);
}

/* ---- Cubit's r̂ normalisation and LRR-scaled values ------------------------------------------ */

typedef struct {
  const nn_kernels *k;
  const float *x, *z, *g, *p1, *p2; /* p1: alpha or lower; p2: range */
  float *o1, *o2;
  double *part; /* per-row terms of the per-head gradients (np per row) */
  size_t H, T, D;
  double eps2;
  int which; /* 0 ref_norm, 1 ref_norm_bwd, 2 lrr, 3 lrr_bwd */
} nn_cubit_ctx;

static inline size_t nn_min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Rows [b, e), cut where the head changes (every T rows). */
static void cubit_elem_range(void *c, size_t b, size_t e, int t) {
  nn_cubit_ctx *x = c;
  (void)t;
  const size_t D = x->D;
  for (size_t i = b; i < e;) {
    const size_t blk = i / x->T, h = blk % x->H, end = nn_min_sz((blk + 1) * x->T, e), n = end - i;
    const double p1 = x->p1[h];
    switch (x->which) {
      case 0: x->k->ref_norm(x->x + i * D, x->o1 + i * D, n, D, p1, x->eps2); break;
      case 1:
        x->k->ref_norm_bwd(x->x + i * D, x->g + i * D, x->o1 ? x->o1 + i * D : NULL, x->part + i, n,
                           D, p1, x->eps2);
        break;
      case 2: x->k->lrr(x->x + i * D, x->z + i, x->o1 + i * D, n, D, p1, x->p2[h]); break;
      default:
        x->k->lrr_bwd(x->x + i * D, x->z + i, x->g + i * D, x->o1 ? x->o1 + i * D : NULL,
                      x->o2 ? x->o2 + i : NULL, x->part + 2 * i, n, D, p1, x->p2[h]);
        break;
    }
    i = end;
  }
}

static void cubit_elem_run(nn_cubit_ctx *c, size_t rows, double flops_per) {
  nn_run(rows, 1, nn_tasks((double)rows * c->D, flops_per), cubit_elem_range, c);
}

/* out[h] = sum over rows of head h (batch-major, row order) of part[np*row + which]. */
static void cubit_head_sums(float *out, const double *part, size_t np, size_t which, size_t B,
                            size_t H, size_t T) {
  for (size_t h = 0; h < H; h++) {
    double s = 0;
    for (size_t b = 0; b < B; b++) {
      const double *p = part + np * ((b * H + h) * T) + which;
      for (size_t t = 0; t < T; t++) s += p[np * t];
    }
    out[h] = (float)s;
  }
}

void cubit_nn_ref_norm(const float *r, const float *alpha, float *out, size_t B, size_t H, size_t T,
                       size_t D, double eps) {
  nn_cubit_ctx c = {.k = nn_current_kernels(), .x = r, .p1 = alpha, .o1 = out, .H = H, .T = T, .D = D,
                    .eps2 = eps * eps, .which = 0};
  cubit_elem_run(&c, B * H * T, 3);
}

int cubit_nn_ref_norm_bwd(const float *r, const float *alpha, const float *dy, float *dr,
                          float *dalpha, size_t B, size_t H, size_t T, size_t D, double eps) {
  const size_t rows = B * H * T;
  double *part = nn_get_scratch((rows ? rows : 1) * sizeof(double));
  if (!part) return NN_ENOMEM;
  nn_cubit_ctx c = {.k = nn_current_kernels(), .x = r, .g = dy, .p1 = alpha, .o1 = dr, .part = part, .H = H,
                    .T = T, .D = D, .eps2 = eps * eps, .which = 1};
  cubit_elem_run(&c, rows, 6);
  if (dalpha) cubit_head_sums(dalpha, part, 1, 0, B, H, T);
  return NN_OK;
}

void cubit_nn_lrr(const float *v, const float *z, const float *lower, const float *range,
                  float *out, size_t B, size_t H, size_t T, size_t D) {
  nn_cubit_ctx c = {.k = nn_current_kernels(), .x = v, .z = z, .p1 = lower, .p2 = range, .o1 = out, .H = H,
                    .T = T, .D = D, .which = 2};
  cubit_elem_run(&c, B * H * T, 2);
}

int cubit_nn_lrr_bwd(const float *v, const float *z, const float *lower, const float *range,
                     const float *dy, float *dv, float *dz, float *dlower, float *drange, size_t B,
                     size_t H, size_t T, size_t D) {
  const size_t rows = B * H * T;
  double *part = nn_get_scratch((rows ? 2 * rows : 1) * sizeof(double));
  if (!part) return NN_ENOMEM;
  nn_cubit_ctx c = {.k = nn_current_kernels(), .x = v, .z = z, .g = dy, .p1 = lower, .p2 = range, .o1 = dv,
                    .o2 = dz, .part = part, .H = H, .T = T, .D = D, .which = 3};
  cubit_elem_run(&c, rows, 4);
  if (dlower) cubit_head_sums(dlower, part, 2, 0, B, H, T);
  if (drange) cubit_head_sums(drange, part, 2, 1, B, H, T);
  return NN_OK;
}
