/* The causal KRR solve of CUBIT.md §2-§3, streamed (mixer.h): drivers and N-API entry points.
 * A (b, h) row's blocks depend on each other (forward substitution in the forward, the adjoint
 * solve from the last block in the backward), so each (b, h) is one task on the thread pool;
 * with fewer (b, h) than mx_par_units() the blocks are done in lockstep across (b, h), each one's
 * span split into groups that run as separate tasks (mixer.h). */
#include <stdatomic.h>

#include "mixer.h"
#include "mixer_napi.h" /* napi_args.h */
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

/* A mixer body's job: dims from the DIMS at v[first], masks built. */
static bool krr_job_init(napi_env env, const char *fn, const arg_value *v, int first, krr_job *job) {
  *job = (krr_job){0};
  job->d = mx_dims_of(v + first);
  if (mx_masks_build(&job->d) == 0) return true;
  cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  return false;
}

KERNEL(cubit_napi_krr_solve, "krrSolve", 14, F32("r", "789a"), F32("rHat", "789a"), F32("y", "789a"),
       F32("logLambda", "8"), F32("x", "789a"), F32("lse", "789"), F32("wxMinusX", "789a"), DIMS) {
  krr_job job;
  if (!krr_job_init(env, fn, v, 7, &job)) return NULL;
  job.a = (mx_krr_args){.r = F(0), .rh = F(1), .y = F(2), .loglam = F(3), .x = F(4), .lse = F(5), .wx = F(6)};
  return krr_forward(env, fn, &job);
}

KERNEL(cubit_napi_krr_solve_backward, "krrSolveBackward", 18, F32("r", "bcde"), F32("rHat", "bcde"),
       F32("logLambda", "c"), F32("x", "bcde"), F32("lse", "bcd"), F32("wxMinusX", "bcde"), F32("g", "bcde"),
       F32("dr", "bcde"), F32("drHat", "bcde"), F32("dy", "bcde"), F32("dLambda", "bc"), DIMS) {
  krr_job job;
  if (!krr_job_init(env, fn, v, 11, &job)) return NULL;
  job.a = (mx_krr_args){.r = F(0), .rh = F(1), .loglam = F(2), .x = F(3), .lse = F(4), .wx = F(5), .g = F(6),
                        .dr = F(7), .drh = F(8), .dy = F(9), .dlam = F(10)};
  return krr_backward(env, fn, &job);
}

/* The Cubit solve with its elementwise stages fused in (mixer.h, mx_krr_args). Both entry points
 * start with the same 12 arguments (lrrLogits null: no LRR, s = 1); n, nl, h: the positions of
 * (B, H, T, D), (B, H, T) and H. */
#define CUBIT_SOLVE_ARGS(n, nl, h)                                                                    \
  F32("r", n), F32("refScale", h), F32("v", n), F32_OPT("lrrLogits", nl), F32_OPT("lrrLower", h),     \
  F32_OPT("lrrRange", h), F32("logLambda", h), NUMBER("eps"), F32("x", n), F32("rHat", n),            \
  F32("lse", nl), F32("wxMinusX", n)

/* The 12 into a, as the forward uses them. */
static bool cubit_args(napi_env env, const char *fn, const arg_value *v, mx_krr_args *a) {
  if (F(3) && (!F(4) || !F(5))) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: lrrLogits needs lrrLower and lrrRange", fn);
    return false;
  }
  if (!(X(7) > 0 && X(7) < INFINITY)) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: eps must be positive and finite", fn);
    return false;
  }
  *a = (mx_krr_args){.r = F(0), .rh = F(9), .y = F(2), .loglam = F(6), .x = F(8), .lse = F(10), .wx = F(11),
                     .alpha = F(1), .eps = (float)X(7), .rhw = F(9), .z = F(3), .lower = F(4), .range = F(5)};
  return true;
}

/* cubitSolve: writes x, rHat, lse, wxMinusX. */
KERNEL(cubit_napi_cubit_solve, "cubitSolve", 19, CUBIT_SOLVE_ARGS("cdef", "cde", "d"), DIMS) {
  krr_job job;
  mx_krr_args a;
  if (!cubit_args(env, fn, v, &a) || !krr_job_init(env, fn, v, 12, &job)) return NULL;
  job.a = a;
  return krr_forward(env, fn, &job);
}

/* cubitSolveBackward: dRefScale, dLrrLower, dLrrRange, dLambda are (B*H), each (b, h)'s part. */
KERNEL(cubit_napi_cubit_solve_backward, "cubitSolveBackward", 27, CUBIT_SOLVE_ARGS("klmn", "klm", "l"),
       F32("g", "klmn"), F32("dr", "klmn"), F32("dv", "klmn"), F32("dRefScale", "kl"), F32_OPT("dLrrLogits", "klm"),
       F32_OPT("dLrrLower", "kl"), F32_OPT("dLrrRange", "kl"), F32("dLambda", "kl"), DIMS) {
  krr_job job;
  mx_krr_args a;
  if (!cubit_args(env, fn, v, &a)) return NULL;
  a.g = F(12), a.dr = F(13), a.dy = F(14), a.dalpha = F(15), a.dz = F(16), a.dlower = F(17), a.drange = F(18),
  a.dlam = F(19);
  if (a.z && (!a.dz || !a.dlower || !a.drange))
    return cubit_throw(env, CUBIT_TYPE_ERROR, "%s: lrrLogits needs dLrrLogits, dLrrLower and dLrrRange", fn);
  if (!krr_job_init(env, fn, v, 20, &job)) return NULL;
  job.a = a;
  job.a.drh = mx_scratch(11, (size_t)N(20) * N(21) * N(22) * N(23)); /* dL/dr^, used up block by block */
  if (!job.a.drh) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  job.a.rhw = NULL;                  /* the backward reads r^ */
  if (!job.a.z) job.a.y = NULL;      /* v is read for dz only */
  return krr_backward(env, fn, &job);
}
