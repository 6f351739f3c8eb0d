/* Masked softmax attention, streamed (mixer.h): drivers and N-API entry points. The forward's
 * tasks are single row blocks (independent; in each (b, h) the heaviest, last blocks first); the
 * backward's are whole (b, h) rows, whose blocks all add into the same dk and dv, or with fewer
 * (b, h) than mx_par_units(), groups of a (b, h)'s blocks into their own dk and dv, summed after
 * (mixer.h). */
#include <stdatomic.h>
#include <string.h>

#include "mixer.h"
#include "mixer_napi.h"
#include "threadpool.h"

typedef struct {
  const mx_kernels *K;
  mx_dims d;
  mx_att_args a;
  int nblocks;
  /* the split backward (G > 1): each group's dk then dv (T x D each), per (b, h) */
  int G;
  float *part;
  _Atomic int failed;
} att_job;

/* Rows of dk / dv summed per reduction task. */
#define REDUCE_ROWS 256

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

/* The query blocks [*b0, *b1) of group g: blocks go to groups in order, by the midpoint of
 * their cost (rows x visible keys) in the (b, h)'s running total, so the groups' work is even. */
static void att_group_blocks(const mx_dims *d, int bh, int G, int g, int *b0, int *b1) {
  const int T = d->T, bs = d->block, b = bh / d->H, nblocks = (T + bs - 1) / bs;
  const int32_t *lo = d->lo + (size_t)b * T;
  double total = 0;
  for (int blk = 0; blk < nblocks; blk++) {
    int i0 = blk * bs, i1 = i0 + bs < T ? i0 + bs : T;
    total += (double)(i1 - i0) * (i1 - lo[i0]);
  }
  double run = 0;
  *b0 = *b1 = nblocks;
  for (int blk = 0; blk < nblocks; blk++) {
    int i0 = blk * bs, i1 = i0 + bs < T ? i0 + bs : T;
    double cost = (double)(i1 - i0) * (i1 - lo[i0]);
    int grp = (int)(G * (run + cost / 2) / total);
    if (grp > G - 1) grp = G - 1;
    run += cost;
    if (grp >= g && *b0 == nblocks) *b0 = blk;
    if (grp >= g + 1) { *b1 = blk; break; }
  }
  if (*b1 < *b0) *b1 = *b0;
}

static void att_bwd_group_task(void *ctx, int t) {
  att_job *j = ctx;
  const int bh = t / j->G, g = t % j->G;
  const size_t n = (size_t)j->d.T * j->d.D;
  float *dk = j->part + ((size_t)bh * j->G + g) * 2 * n, *dv = dk + n;
  int b0, b1;
  att_group_blocks(&j->d, bh, j->G, g, &b0, &b1);
  if (j->K->att_bwd_range(&j->d, &j->a, bh, b0, b1, dk, dv) != 0) atomic_store(&j->failed, 1);
}

/* dk, dv of rows [r0, r0 + REDUCE_ROWS) of one (b, h): the groups' parts summed in order. */
static void att_bwd_reduce_task(void *ctx, int t) {
  att_job *j = ctx;
  const int per = (j->d.T + REDUCE_ROWS - 1) / REDUCE_ROWS, bh = t / per, D = j->d.D;
  const int r0 = t % per * REDUCE_ROWS, r1 = r0 + REDUCE_ROWS < j->d.T ? r0 + REDUCE_ROWS : j->d.T;
  const size_t n = (size_t)j->d.T * D, off = (size_t)bh * n, e0 = (size_t)r0 * D, len = (size_t)(r1 - r0) * D;
  for (int which = 0; which < 2; which++) {
    float *restrict out = (which ? j->a.dv : j->a.dk) + off + e0;
    const float *part = j->part + (size_t)bh * j->G * 2 * n + which * n + e0;
    memcpy(out, part, len * sizeof(float));
    for (int g = 1; g < j->G; g++) {
      const float *restrict pg = part + (size_t)g * 2 * n;
      for (size_t e = 0; e < len; e++) out[e] += pg[e];
    }
  }
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
  const int BH = d->B * d->H;
  const double flops = att_flops(d, 5);
  job.G = mx_groups(BH);
  if (job.G == 1) {
    cubit_parallel_for_work(BH, att_bwd_task, &job, flops);
  } else {
    /* Few (b, h): G groups of query blocks each, into their own dk, dv, then summed. */
    job.part = mx_scratch(7, (size_t)BH * job.G * 2 * d->T * d->D);
    if (!job.part) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
    cubit_parallel_for_work(BH * job.G, att_bwd_group_task, &job, flops);
    cubit_parallel_for_work(BH * ((d->T + REDUCE_ROWS - 1) / REDUCE_ROWS), att_bwd_reduce_task, &job, flops);
  }
  if (atomic_load(&job.failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}
