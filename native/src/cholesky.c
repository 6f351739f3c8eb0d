/* Batched Cholesky factorisation and triangular solves (Backend.cholesky and triangularSolve in
 * src/core/backend.ts): the many small SPD systems of the local linear mixer (solveSpd, one per
 * query, n = its rank). The loops are the reference backend's, in double and in the same order,
 * each result rounded once into float, so the bits equal the reference's on float32 storages.
 * Tasks take runs of whole matrices; each works in its thread's own double scratch. */
#include "napi_args.h"
#include "threadpool.h"

#include <math.h>

typedef struct {
  const float *a, *b; /* cholesky: a; triangularSolve: l, b */
  float *out;
  size_t batch, n, k;
  int transpose, ntasks;
  volatile int no_memory;
} spd_ctx;

/* out ← L with L Lᵀ = A (A's lower triangle read), zeros above; f: n·n doubles. A pivot that is
 * not positive leaves √pivot (NaN or 0) on the diagonal, as the reference does. */
static void cholesky_one(const float *a, float *out, double *f, size_t n) {
  for (size_t i = 0; i < n * n; i++) f[i] = 0;
  for (size_t j = 0; j < n; j++) {
    double s = a[j * n + j];
    for (size_t l = 0; l < j; l++) s -= f[j * n + l] * f[j * n + l];
    const double ljj = sqrt(s);
    f[j * n + j] = ljj;
    for (size_t i = j + 1; i < n; i++) {
      double t = a[i * n + j];
      for (size_t l = 0; l < j; l++) t -= f[i * n + l] * f[j * n + l];
      f[i * n + j] = t / ljj;
    }
  }
  for (size_t i = 0; i < n * n; i++) out[i] = (float)f[i];
}

/* out ← L⁻¹ B, or L⁻ᵀ B when transpose (B, out n×k); x: n doubles. */
static void solve_one(const float *l, const float *b, float *out, double *x, size_t n, size_t k,
                      int transpose) {
  for (size_t c = 0; c < k; c++) {
    for (size_t s = 0; s < n; s++) {
      const size_t i = transpose ? n - 1 - s : s;
      double acc = b[i * k + c];
      if (transpose)
        for (size_t j = i + 1; j < n; j++) acc -= l[j * n + i] * x[j];
      else
        for (size_t j = 0; j < i; j++) acc -= l[i * n + j] * x[j];
      x[i] = acc / l[i * n + i];
    }
    for (size_t i = 0; i < n; i++) out[i * k + c] = (float)x[i];
  }
}

static void spd_range(const spd_ctx *x, int task, size_t *p0, size_t *p1) {
  *p0 = x->batch * (size_t)task / (size_t)x->ntasks;
  *p1 = x->batch * (size_t)(task + 1) / (size_t)x->ntasks;
}

static void cholesky_task(void *c, int task) {
  spd_ctx *x = c;
  const size_t nn = x->n * x->n;
  double *f = cubit_scratch(CUBIT_SCRATCH_NN, nn * sizeof(double));
  if (!f) { x->no_memory = 1; return; }
  size_t p0, p1;
  spd_range(x, task, &p0, &p1);
  for (size_t p = p0; p < p1; p++) cholesky_one(x->a + p * nn, x->out + p * nn, f, x->n);
}

static void solve_task(void *c, int task) {
  spd_ctx *x = c;
  double *s = cubit_scratch(CUBIT_SCRATCH_NN, x->n * sizeof(double));
  if (!s) { x->no_memory = 1; return; }
  size_t p0, p1;
  spd_range(x, task, &p0, &p1);
  const size_t nn = x->n * x->n, nk = x->n * x->k;
  for (size_t p = p0; p < p1; p++) solve_one(x->a + p * nn, x->b + p * nk, x->out + p * nk, s, x->n, x->k, x->transpose);
}

/* Runs fn over the batch: a few tasks per thread when the work (flops) pays for the pool. */
static bool spd_run(napi_env env, const char *fn, spd_ctx *x, void (*task)(void *, int), double flops) {
  if (x->batch == 0 || x->n == 0) return true;
  int t = cubit_num_threads();
  x->ntasks = t <= 1 || cubit_in_parallel_task() ? 1 : 4 * t;
  if ((size_t)x->ntasks > x->batch) x->ntasks = (int)x->batch;
  cubit_parallel_for_work(x->ntasks, task, x, flops);
  if (!x->no_memory) return true;
  cubit_throw(env, CUBIT_ERROR, "%s: out of memory for the per-thread scratch", fn);
  return false;
}

static bool apart(napi_env env, const char *fn, const float *o, size_t on, const float *in, size_t len) {
  if (o + on <= in || in + len <= o || on == 0 || len == 0) return true;
  cubit_throw(env, CUBIT_RANGE_ERROR, "%s: the output overlaps an input", fn);
  return false;
}

KERNEL(cubit_napi_cholesky, "cholesky", 4, F32("a", "233"), F32("out", "233"), INDEX("batch"), INDEX("n")) {
  const size_t batch = Z(2), n = Z(3);
  if (!apart(env, fn, F(1), batch * n * n, F(0), batch * n * n)) return NULL;
  spd_ctx x = {.a = F(0), .out = F(1), .batch = batch, .n = n};
  if (!spd_run(env, fn, &x, cholesky_task, (double)batch * n * n * n / 3)) return NULL;
  return cubit_undefined(env);
}

KERNEL(cubit_napi_triangular_solve, "triangularSolve", 7, F32("l", "344"), F32("b", "345"),
       F32("out", "345"), INDEX("batch"), INDEX("n"), INDEX("k"), BOOL("transpose")) {
  const size_t batch = Z(3), n = Z(4), k = Z(5);
  if (!apart(env, fn, F(2), batch * n * k, F(0), batch * n * n) ||
      !apart(env, fn, F(2), batch * n * k, F(1), batch * n * k))
    return NULL;
  spd_ctx x = {.a = F(0), .b = F(1), .out = F(2), .batch = batch, .n = n, .k = k, .transpose = B(6)};
  if (!spd_run(env, fn, &x, solve_task, (double)batch * n * n * k)) return NULL;
  return cubit_undefined(env);
}
