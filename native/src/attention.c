/* Masked softmax attention, streamed (mixer.h): drivers and N-API entry points. The forward's
 * tasks are single row blocks (independent; in each (b, h) the heaviest, last blocks first); the
 * backward's are whole (b, h) rows, whose blocks all add into the same dk and dv, or with fewer
 * (b, h) than mx_par_units(), groups of a (b, h)'s blocks into their own dk and dv, summed after
 * (mixer.h). */
#include <stdatomic.h>
#include <string.h>

#include "mixer.h"
#include "mixer_napi.h" /* napi_args.h */
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

/* The scale at argument i, which must be finite, and the job with dims from the DIMS at v[first]
 * and masks built. */
static bool att_job_init(napi_env env, const char *fn, const arg_value *v, int i, int first, att_job *job) {
  if (!isfinite(X(i))) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (scale) must be finite", fn, i + 1);
    return false;
  }
  *job = (att_job){0};
  job->d = mx_dims_of(v + first);
  if (mx_masks_build(&job->d) != 0) {
    cubit_throw(env, CUBIT_ERROR, "%s: out of memory", fn);
    return false;
  }
  job->K = mx_current_kernels();
  return true;
}

KERNEL(cubit_napi_attention, "attention", 13, F32("q", "6789"), F32("k", "6789"), F32("v", "6789"),
       F32("out", "6789"), F32("lse", "678"), NUMBER("scale"), DIMS) {
  att_job job;
  if (!att_job_init(env, fn, v, 5, 6, &job)) return NULL;
  mx_dims *d = &job.d;
  job.a = (mx_att_args){.q = F(0), .k = F(1), .v = F(2), .o = F(3), .lse = F(4), .scale = (float)X(5)};
  job.nblocks = (d->T + d->block - 1) / d->block;
  if ((double)job.nblocks * d->B * d->H > INT32_MAX)
    return cubit_throw(env, CUBIT_RANGE_ERROR, "%s: too many row blocks", fn);
  cubit_parallel_for_work(job.nblocks * d->B * d->H, att_fwd_task, &job, att_flops(d, 2));
  if (atomic_load(&job.failed)) return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for scratch", fn);
  return cubit_undefined(env);
}

KERNEL(cubit_napi_attention_backward, "attentionBackward", 17, F32("q", "abcd"), F32("k", "abcd"),
       F32("v", "abcd"), F32("out", "abcd"), F32("lse", "abc"), F32("g", "abcd"), NUMBER("scale"),
       F32("dq", "abcd"), F32("dk", "abcd"), F32("dv", "abcd"), DIMS) {
  att_job job;
  if (!att_job_init(env, fn, v, 6, 10, &job)) return NULL;
  mx_dims *d = &job.d;
  job.a = (mx_att_args){.q = F(0), .k = F(1), .v = F(2), .out = F(3), .lse_in = F(4), .g = F(5),
                        .scale = (float)X(6), .dq = F(7), .dk = F(8), .dv = F(9)};
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
