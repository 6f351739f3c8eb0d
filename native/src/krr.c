/* The causal KRR solve of CUBIT.md §2-§3, streamed (mixer.h): drivers and N-API entry points.
 * A (b, h) row's blocks depend on each other (forward substitution in the forward, the adjoint
 * solve from the last block in the backward), so each (b, h) is one task on the thread pool;
 * with fewer (b, h) than mx_par_units() the blocks are done in lockstep across (b, h), each one's
 * span split into groups that run as separate tasks (mixer.h). */
#include <stdatomic.h>

#include "mixer.h"
#include "mixer_napi.h"
#include "threadpool.h"

typedef struct {
  const mx_kernels *K;
  mx_dims d;
  mx_krr_args a;
  /* the split form (G > 1): the block in progress, the (b, h)'s workspaces and dλ sums */
  int G, blk;
  float *ws;
  size_t per_bh;
  double *dl;
  _Atomic int failed;
} krr_job;

#define FAIL_IF(x) do { if ((x) != 0) atomic_store(&j->failed, 1); } while (0)

static void krr_fwd_task(void *ctx, int bh) {
  krr_job *j = ctx;
  FAIL_IF(j->K->krr_fwd(&j->d, &j->a, bh));
}
static void krr_bwd_task(void *ctx, int bh) {
  krr_job *j = ctx;
  FAIL_IF(j->K->krr_bwd(&j->d, &j->a, bh));
}
static void krr_fwd_part_task(void *ctx, int t) {
  krr_job *j = ctx;
  int bh = t / j->G, g = t % j->G;
  FAIL_IF(j->K->krr_fwd_part(&j->d, &j->a, j->ws + bh * j->per_bh, j->G, bh, j->blk, g));
}
static void krr_fwd_close_task(void *ctx, int bh) {
  krr_job *j = ctx;
  FAIL_IF(j->K->krr_fwd_close(&j->d, &j->a, j->ws + bh * j->per_bh, j->G, bh, j->blk));
}
static void krr_bwd_setup_task(void *ctx, int bh) {
  krr_job *j = ctx;
  FAIL_IF(j->K->krr_bwd_setup(&j->d, &j->a, j->ws + bh * j->per_bh, j->G, j->dl + (size_t)bh * MX_KBW_SUMS, bh, j->blk));
}
static void krr_bwd_grads_task(void *ctx, int t) {
  krr_job *j = ctx;
  int bh = t / j->G, g = t % j->G;
  FAIL_IF(j->K->krr_bwd_grads(&j->d, &j->a, j->ws + bh * j->per_bh, j->G, bh, j->blk, g));
}

/* Floating-point work of one pass over the causal (or windowed) logits, for the threading
 * threshold: about T * span * D multiply-adds per product. */
static double krr_flops(const mx_dims *d, int products) {
  double span = d->window > 0 && d->window < d->T ? d->window : d->T / 2.0 + 1;
  return 2.0 * products * (double)d->B * d->H * d->T * span * d->D;
}

/* The forward sweep over job->a (set up by the caller, masks built). */
static napi_value krr_forward(napi_env env, const char *fn, krr_job *job) {
  mx_dims *d = &job->d;
  job->K = mx_current_kernels();
  const int BH = d->B * d->H, nblocks = (d->T + d->block - 1) / d->block;
  const double flops = krr_flops(d, 2);
  job->G = mx_groups(BH);
  if (job->G == 1) {
    cubit_parallel_for_work(BH, krr_fwd_task, job, flops);
  } else {
    /* Few (b, h): every block's off-diagonal chunks split into G groups (mixer.h). */
    job->per_bh = mx_kfw_floats(d, job->G);
    if (!(job->ws = mx_scratch(7, job->per_bh * BH))) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
    for (job->blk = 0; job->blk < nblocks && !atomic_load(&job->failed); job->blk++) {
      cubit_parallel_for_work(BH * job->G, krr_fwd_part_task, job, flops);
      cubit_parallel_for_work(BH, krr_fwd_close_task, job, flops);
    }
  }
  if (atomic_load(&job->failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}

/* The backward sweep over job->a (set up by the caller, masks built). */
static napi_value krr_backward(napi_env env, const char *fn, krr_job *job) {
  mx_dims *d = &job->d;
  job->K = mx_current_kernels();
  const int BH = d->B * d->H, nblocks = (d->T + d->block - 1) / d->block;
  const double flops = krr_flops(d, 5);
  job->G = mx_groups(BH);
  if (job->G == 1) {
    cubit_parallel_for_work(BH, krr_bwd_task, job, flops);
  } else {
    /* Few (b, h): each block's span split into G groups of chunks (mixer.h). */
    job->per_bh = mx_kbw(d, job->G).total;
    job->ws = mx_scratch(7, job->per_bh * BH);
    job->dl = (double *)mx_scratch(8, 2 * (size_t)BH * MX_KBW_SUMS);
    if (!job->ws || !job->dl) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
    for (job->blk = nblocks - 1; job->blk >= 0 && !atomic_load(&job->failed); job->blk--) {
      cubit_parallel_for_work(BH, krr_bwd_setup_task, job, flops);
      cubit_parallel_for_work(BH * job->G, krr_bwd_grads_task, job, flops);
    }
    job->blk = -1; /* finish: block 0's rows, the sums */
    cubit_parallel_for_work(BH, krr_bwd_setup_task, job, flops);
  }
  if (atomic_load(&job->failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}

/* krrSolve(r, rHat, y, logLambda, x, lse, wxMinusX, B, H, T, D, window, docIds, blockSize) */
CUBIT_NAPI(cubit_napi_krr_solve) {
  static const char *fn = "krrSolve";
  napi_value argv[14];
  krr_job job = {0};
  mx_dims *d = &job.d;
  float *r, *rh, *y, *ll, *x, *lse, *wx;
  if (!cubit_get_args(env, info, fn, 14, argv) || !mx_arg_dims(env, argv, 7, fn, d)) return NULL;
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T;
  if (!mx_arg_f32(env, argv, 0, fn, "r", n, &r) || !mx_arg_f32(env, argv, 1, fn, "rHat", n, &rh) ||
      !mx_arg_f32(env, argv, 2, fn, "y", n, &y) ||
      !mx_arg_f32(env, argv, 3, fn, "logLambda", (size_t)d->H, &ll) ||
      !mx_arg_f32(env, argv, 4, fn, "x", n, &x) || !mx_arg_f32(env, argv, 5, fn, "lse", nl, &lse) ||
      !mx_arg_f32(env, argv, 6, fn, "wxMinusX", n, &wx))
    return NULL;
  if (mx_masks_build(d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  job.a = (mx_krr_args){.r = r, .rh = rh, .y = y, .loglam = ll, .x = x, .lse = lse, .wx = wx};
  return krr_forward(env, fn, &job);
}

/* krrSolveBackward(r, rHat, logLambda, x, lse, wxMinusX, g, dr, drHat, dy, dLambda,
 *                  B, H, T, D, window, docIds, blockSize) */
CUBIT_NAPI(cubit_napi_krr_solve_backward) {
  static const char *fn = "krrSolveBackward";
  napi_value argv[18];
  krr_job job = {0};
  mx_dims *d = &job.d;
  float *r, *rh, *ll, *x, *lse, *wx, *g, *dr, *drh, *dy, *dlam;
  if (!cubit_get_args(env, info, fn, 18, argv) || !mx_arg_dims(env, argv, 11, fn, d)) return NULL;
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T;
  if (!mx_arg_f32(env, argv, 0, fn, "r", n, &r) || !mx_arg_f32(env, argv, 1, fn, "rHat", n, &rh) ||
      !mx_arg_f32(env, argv, 2, fn, "logLambda", (size_t)d->H, &ll) ||
      !mx_arg_f32(env, argv, 3, fn, "x", n, &x) || !mx_arg_f32(env, argv, 4, fn, "lse", nl, &lse) ||
      !mx_arg_f32(env, argv, 5, fn, "wxMinusX", n, &wx) ||
      !mx_arg_f32(env, argv, 6, fn, "g", n, &g) || !mx_arg_f32(env, argv, 7, fn, "dr", n, &dr) ||
      !mx_arg_f32(env, argv, 8, fn, "drHat", n, &drh) || !mx_arg_f32(env, argv, 9, fn, "dy", n, &dy) ||
      !mx_arg_f32(env, argv, 10, fn, "dLambda", (size_t)d->B * d->H, &dlam))
    return NULL;
  if (mx_masks_build(d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  job.a = (mx_krr_args){.r = r, .rh = rh, .loglam = ll, .x = x, .lse = lse, .wx = wx, .g = g,
                        .dr = dr, .drh = drh, .dy = dy, .dlam = dlam};
  return krr_backward(env, fn, &job);
}

/* The Cubit solve with its elementwise stages fused in (mixer.h, mx_krr_args). Both entry points
 * start with the same 12 arguments:
 *   r, refScale, v, lrrLogits | null, lrrLower | null, lrrRange | null, logLambda, eps,
 *   x, rHat, lse, wxMinusX
 * (lrrLogits null: no LRR, s = 1), read here into a as the forward uses them. */
static bool cubit_args(napi_env env, napi_value *argv, const char *fn, const mx_dims *d, mx_krr_args *a) {
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T, H = (size_t)d->H;
  float *r, *alpha, *v, *z, *lower, *range, *ll, *x, *rh, *lse, *wx;
  double eps;
  if (!mx_arg_f32(env, argv, 0, fn, "r", n, &r) || !mx_arg_f32(env, argv, 1, fn, "refScale", H, &alpha) ||
      !mx_arg_f32(env, argv, 2, fn, "v", n, &v) || !mx_arg_f32_or_null(env, argv, 3, fn, "lrrLogits", nl, &z) ||
      !mx_arg_f32_or_null(env, argv, 4, fn, "lrrLower", H, &lower) ||
      !mx_arg_f32_or_null(env, argv, 5, fn, "lrrRange", H, &range) ||
      !mx_arg_f32(env, argv, 6, fn, "logLambda", H, &ll) || !cubit_arg_double(env, argv, 7, fn, "eps", &eps) ||
      !mx_arg_f32(env, argv, 8, fn, "x", n, &x) || !mx_arg_f32(env, argv, 9, fn, "rHat", n, &rh) ||
      !mx_arg_f32(env, argv, 10, fn, "lse", nl, &lse) || !mx_arg_f32(env, argv, 11, fn, "wxMinusX", n, &wx))
    return false;
  if (z && (!lower || !range)) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: lrrLogits needs lrrLower and lrrRange", fn);
    return false;
  }
  if (!(eps > 0 && eps < INFINITY)) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: eps must be positive and finite", fn);
    return false;
  }
  *a = (mx_krr_args){.r = r, .rh = rh, .y = v, .loglam = ll, .x = x, .lse = lse, .wx = wx, .alpha = alpha,
                     .eps = (float)eps, .rhw = rh, .z = z, .lower = lower, .range = range};
  return true;
}

/* cubitSolve(<the 12>, B, H, T, D, window, docIds, blockSize): writes x, rHat, lse, wxMinusX. */
CUBIT_NAPI(cubit_napi_cubit_solve) {
  static const char *fn = "cubitSolve";
  napi_value argv[19];
  krr_job job = {0};
  if (!cubit_get_args(env, info, fn, 19, argv) || !mx_arg_dims(env, argv, 12, fn, &job.d) ||
      !cubit_args(env, argv, fn, &job.d, &job.a))
    return NULL;
  if (mx_masks_build(&job.d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  return krr_forward(env, fn, &job);
}

/* cubitSolveBackward(<the 12>, g, dr, dv, dRefScale, dLrrLogits | null, dLrrLower | null,
 *                    dLrrRange | null, dLambda, B, H, T, D, window, docIds, blockSize)
 * dRefScale, dLrrLower, dLrrRange, dLambda: (B*H), each (b, h)'s part. */
CUBIT_NAPI(cubit_napi_cubit_solve_backward) {
  static const char *fn = "cubitSolveBackward";
  napi_value argv[27];
  krr_job job = {0};
  mx_dims *d = &job.d;
  mx_krr_args *a = &job.a;
  if (!cubit_get_args(env, info, fn, 27, argv) || !mx_arg_dims(env, argv, 20, fn, d) || !cubit_args(env, argv, fn, d, a))
    return NULL;
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T, BH = (size_t)d->B * d->H;
  float *g;
  if (!mx_arg_f32(env, argv, 12, fn, "g", n, &g) || !mx_arg_f32(env, argv, 13, fn, "dr", n, &a->dr) ||
      !mx_arg_f32(env, argv, 14, fn, "dv", n, &a->dy) || !mx_arg_f32(env, argv, 15, fn, "dRefScale", BH, &a->dalpha) ||
      !mx_arg_f32_or_null(env, argv, 16, fn, "dLrrLogits", nl, &a->dz) ||
      !mx_arg_f32_or_null(env, argv, 17, fn, "dLrrLower", BH, &a->dlower) ||
      !mx_arg_f32_or_null(env, argv, 18, fn, "dLrrRange", BH, &a->drange) ||
      !mx_arg_f32(env, argv, 19, fn, "dLambda", BH, &a->dlam))
    return NULL;
  a->g = g;
  if (a->z && (!a->dz || !a->dlower || !a->drange))
    return cubit_throw(env, CUBIT_TYPE_ERROR, "%s: lrrLogits needs dLrrLogits, dLrrLower and dLrrRange", fn);
  if (mx_masks_build(d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  a->drh = mx_scratch(11, n); /* dL/dr^, used up block by block */
  if (!a->drh) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  a->rhw = NULL;             /* the backward reads r^ */
  if (!a->z) a->y = NULL;    /* v is read for dz only */
  return krr_backward(env, fn, &job);
}
