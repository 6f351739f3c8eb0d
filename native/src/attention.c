/* Masked softmax attention, streamed (mixer.h): drivers and N-API entry points. The forward's
 * tasks are single row blocks (independent; in each (b, h) the heaviest, last blocks first); the
 * backward's are whole (b, h) rows, whose blocks all add into the same dk and dv. */
#include <stdatomic.h>

#include "mixer.h"
#include "mixer_napi.h"
#include "threadpool.h"

typedef struct {
  const mx_kernels *K;
  mx_dims d;
  mx_att_args a;
  int nblocks;
  _Atomic int failed;
} att_job;

static void att_fwd_task(void *ctx, int t) {
  att_job *j = ctx;
  /* (b, h)-major, so that consecutive tasks share k and v in cache; within a (b, h), the
   * last (heaviest) blocks first, so the job ends on light tasks. */
  int bh = t / j->nblocks, blk = j->nblocks - 1 - t % j->nblocks;
  if (j->K->att_fwd(&j->d, &j->a, bh, blk) != 0) atomic_store(&j->failed, 1);
}

static void att_bwd_task(void *ctx, int bh) {
  att_job *j = ctx;
  if (j->K->att_bwd(&j->d, &j->a, bh) != 0) atomic_store(&j->failed, 1);
}

static double att_flops(const mx_dims *d, int products) {
  double span = d->window > 0 && d->window < d->T ? d->window : d->T / 2.0 + 1;
  return 2.0 * products * (double)d->B * d->H * d->T * span * d->D;
}

static bool att_scale(napi_env env, napi_value *argv, int i, const char *fn, float *scale) {
  double s;
  if (!cubit_arg_double(env, argv, i, fn, "scale", &s)) return false;
  if (!isfinite(s)) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (scale) must be finite", fn, i + 1);
    return false;
  }
  *scale = (float)s;
  return true;
}

/* attention(q, k, v, out, lse, scale, B, H, T, D, window, docIds, blockSize) */
CUBIT_NAPI(cubit_napi_attention) {
  static const char *fn = "attention";
  napi_value argv[13];
  att_job job = {0};
  mx_dims *d = &job.d;
  float *q, *k, *v, *o, *lse, scale;
  if (!cubit_get_args(env, info, fn, 13, argv) || !mx_arg_dims(env, argv, 6, fn, d)) return NULL;
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T;
  if (!mx_arg_f32(env, argv, 0, fn, "q", n, &q) || !mx_arg_f32(env, argv, 1, fn, "k", n, &k) ||
      !mx_arg_f32(env, argv, 2, fn, "v", n, &v) || !mx_arg_f32(env, argv, 3, fn, "out", n, &o) ||
      !mx_arg_f32(env, argv, 4, fn, "lse", nl, &lse) || !att_scale(env, argv, 5, fn, &scale))
    return NULL;
  if (mx_masks_build(d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  job.K = mx_current_kernels();
  job.a = (mx_att_args){.q = q, .k = k, .v = v, .o = o, .lse = lse, .scale = scale};
  job.nblocks = (d->T + d->block - 1) / d->block;
  if ((double)job.nblocks * d->B * d->H > INT32_MAX)
    return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: too many row blocks", fn);
  cubit_parallel_for_work(job.nblocks * d->B * d->H, att_fwd_task, &job, att_flops(d, 2));
  if (atomic_load(&job.failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}

/* attentionBackward(q, k, v, out, lse, g, scale, dq, dk, dv, B, H, T, D, window, docIds,
 *                   blockSize) */
CUBIT_NAPI(cubit_napi_attention_backward) {
  static const char *fn = "attentionBackward";
  napi_value argv[17];
  att_job job = {0};
  mx_dims *d = &job.d;
  float *q, *k, *v, *o, *lse, *g, *dq, *dk, *dv, scale;
  if (!cubit_get_args(env, info, fn, 17, argv) || !mx_arg_dims(env, argv, 10, fn, d)) return NULL;
  size_t n = (size_t)d->B * d->H * d->T * d->D, nl = (size_t)d->B * d->H * d->T;
  if (!mx_arg_f32(env, argv, 0, fn, "q", n, &q) || !mx_arg_f32(env, argv, 1, fn, "k", n, &k) ||
      !mx_arg_f32(env, argv, 2, fn, "v", n, &v) || !mx_arg_f32(env, argv, 3, fn, "out", n, &o) ||
      !mx_arg_f32(env, argv, 4, fn, "lse", nl, &lse) || !mx_arg_f32(env, argv, 5, fn, "g", n, &g) ||
      !att_scale(env, argv, 6, fn, &scale) || !mx_arg_f32(env, argv, 7, fn, "dq", n, &dq) ||
      !mx_arg_f32(env, argv, 8, fn, "dk", n, &dk) || !mx_arg_f32(env, argv, 9, fn, "dv", n, &dv))
    return NULL;
  if (mx_masks_build(d) != 0) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
  job.K = mx_current_kernels();
  job.a = (mx_att_args){.q = q, .k = k, .v = v, .out = o, .lse_in = lse, .g = g, .scale = scale,
                        .dq = dq, .dk = dk, .dv = dv};
  cubit_parallel_for_work(d->B * d->H, att_bwd_task, &job, att_flops(d, 5));
  if (atomic_load(&job.failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}
