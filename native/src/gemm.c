/* Packed SGEMM driver in the BLIS/GotoBLAS style.
 *
 * Loop nest for one tile of C (rows [i0,i1), columns [j0,j1)) on one thread:
 *   for jc (nc columns):           B block kc x nc packed once per (jc, pc)   -> L3/L2
 *     for pc (kc depth):
 *       for ic (mc rows):          A block mc x kc packed                      -> L2
 *         for jr (nr columns):     B micro-panel kc x nr                       -> L1
 *           for ir (mr rows):      micro-kernel: mr x nr tile of C in registers
 * A non-transposed A block that meets only a few B micro-panels is read in place instead of
 * packed (where the ISA has a strided-A kernel). Tasks holding several batches prefetch the
 * next batch's operands into L2 while computing the current one.
 * Parallelism: the batch and the tiles of each C_p are cut into tasks that run independently
 * on the pool, each thread packing into its own reused buffers. */
#include "gemm.h"

#include "cpu.h"
#include "gemm_kernels.h"
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-thread scratch: grown once, reused by every call ------------------------------- */

#define TILE_MAX (64 * 64) /* largest mr*nr of any kernel */

typedef struct {
  float *a_pack, *b_pack;
  size_t a_cap, b_cap; /* in floats */
  /* Identity of the B block now in b_pack, to skip repacking a broadcast B (stride 0) or the
   * same block seen by consecutive tasks. `call` is unique per sgemm call, as B may change
   * between calls. */
  uint64_t b_call;
  const float *b_src;
  ptrdiff_t b_j, b_p;
  int b_nc, b_kc;
  _Alignas(64) float tile[TILE_MAX]; /* edge tiles of C are computed here first */
} gemm_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local gemm_scratch *tls_scratch;
static _Atomic uint64_t call_counter = 1;

static void scratch_free(void *p) {
  gemm_scratch *s = p;
  free(s->a_pack);
  free(s->b_pack);
  free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static gemm_scratch *get_scratch(void) {
  if (!tls_scratch) {
    pthread_once(&scratch_once, scratch_key_init);
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(gemm_scratch)) != 0) return NULL;
    memset(p, 0, sizeof(gemm_scratch));
    tls_scratch = p;
    pthread_setspecific(scratch_key, p); /* frees it when the thread exits */
  }
  return tls_scratch;
}

/* Makes *buf hold at least `need` floats (plus slack for the SIMD packers). */
static float *ensure(float **buf, size_t *cap, size_t need) {
  if (need > *cap) {
    size_t bytes = ((need + CUBIT_PACK_SLACK) * sizeof(float) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    free(*buf);
    *buf = p;
    *cap = need;
  }
  return *buf;
}

/* ---- the serial packed GEMM on one tile of C -------------------------------------------- */

/* Walks a strided 2-D region (rows x row_bytes, row stride ld_bytes) cache line by cache line,
 * prefetching into L2. Used to pull the next batch's operands out of L3 / memory while the
 * current one is computed: packing then reads from L2 instead of stalling on each row. */
typedef struct {
  const char *base;
  ptrdiff_t ld_bytes, row_bytes, rows;
  ptrdiff_t r, off; /* position of the next line */
} prefetcher;

static void prefetcher_init(prefetcher *pf, const float *base, ptrdiff_t rows, ptrdiff_t cols,
                            ptrdiff_t ld) {
  pf->base = (const char *)base;
  pf->rows = base ? rows : 0;
  pf->row_bytes = cols * (ptrdiff_t)sizeof(float);
  pf->ld_bytes = ld * (ptrdiff_t)sizeof(float);
  pf->r = pf->off = 0;
}

static inline void prefetcher_step(prefetcher *pf, int nlines) {
  for (; nlines > 0 && pf->r < pf->rows; nlines--) {
    /* lines at 64-byte steps, plus the row's last byte when the row is not line-aligned */
    ptrdiff_t off = pf->off < pf->row_bytes ? pf->off : pf->row_bytes - 1;
    __builtin_prefetch(pf->base + pf->r * pf->ld_bytes + off, 0, 2);
    pf->off += 64;
    if (pf->off >= pf->row_bytes + 63) pf->off = 0, pf->r++;
  }
}

static ptrdiff_t prefetcher_lines(const prefetcher *pf) {
  return pf->rows * ((pf->row_bytes + 63) / 64 + 1);
}

typedef struct {
  const cubit_gemm_kernels *K;
  ptrdiff_t m, n, k;
  const float *A, *B;
  float *C;
  /* op(A)(i, p) = A[i*a_rs + p*a_cs];  op(B)(p, j) = B[j*b_rs + p*b_cs] */
  ptrdiff_t a_rs, a_cs, b_rs, b_cs, ldc;
  ptrdiff_t strideA, strideB, strideC;
  int accumulate;
  uint64_t call;
} gemm_args;

/* Up to this many B micro-panels per A block, A is read in place rather than packed. */
#define A_IN_PLACE_MAX_PANELS 8

static ptrdiff_t ceil_div(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }
static ptrdiff_t round_up(ptrdiff_t a, ptrdiff_t b) { return ceil_div(a, b) * b; }
static ptrdiff_t min_p(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }

/* Splits `total` into equal steps of at most `block` (a multiple of `unit`), rounded up to
 * `unit`: k = 300 with kc = 256 becomes 2 x 152 rather than 256 + 44. */
static ptrdiff_t even_step(ptrdiff_t total, ptrdiff_t block, ptrdiff_t unit) {
  ptrdiff_t nblocks = ceil_div(total, block);
  return round_up(ceil_div(total, nblocks), unit);
}

/* Computes rows [i0,i1) x columns [j0,j1) of C = op(A) op(B) (+ C). When next_A / next_B are
 * given, the same tile of the next batch's operands is prefetched along the way. */
static int gemm_tile(const gemm_args *g, const float *A, const float *B, float *C, ptrdiff_t i0,
                     ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1, const float *next_A,
                     const float *next_B) {
  const cubit_gemm_kernels *K = g->K;
  const int MR = K->mr, NR = K->nr;
  gemm_scratch *s = get_scratch();
  if (!s) return -1;

  ptrdiff_t kc_step = even_step(g->k, K->kc, 1);
  ptrdiff_t mc_step = even_step(i1 - i0, K->mc, MR);
  ptrdiff_t nc_step = even_step(j1 - j0, K->nc, NR);
  float *ap = ensure(&s->a_pack, &s->a_cap, (size_t)(mc_step * kc_step));
  if (!ap) return -1;
  if (nc_step * kc_step > (ptrdiff_t)s->b_cap) s->b_call = 0; /* buffer replaced: forget it */
  float *bp = ensure(&s->b_pack, &s->b_cap, (size_t)(nc_step * kc_step));
  if (!bp) return -1;

  /* Stored regions of the next operands that this tile reads: A is (i1-i0) x k, or k x (i1-i0)
   * when transposed; B is k x (j1-j0), or (j1-j0) x k when transposed. */
  prefetcher pf_a, pf_b;
  if (g->a_cs == 1) prefetcher_init(&pf_a, next_A ? next_A + i0 * g->a_rs : NULL, i1 - i0, g->k, g->a_rs);
  else prefetcher_init(&pf_a, next_A ? next_A + i0 : NULL, g->k, i1 - i0, g->a_cs);
  if (g->b_rs == 1) prefetcher_init(&pf_b, next_B ? next_B + j0 : NULL, g->k, j1 - j0, g->b_cs);
  else prefetcher_init(&pf_b, next_B ? next_B + j0 * g->b_rs : NULL, j1 - j0, g->k, g->b_rs);
  /* Spread the prefetches over the micro-kernel calls. */
  ptrdiff_t kernel_calls = ceil_div(i1 - i0, MR) * ceil_div(j1 - j0, NR) * ceil_div(g->k, kc_step);
  int pf_per_call = (int)ceil_div(prefetcher_lines(&pf_a) + prefetcher_lines(&pf_b), kernel_calls);

  for (ptrdiff_t jc = j0; jc < j1; jc += nc_step) {
    int nc = (int)min_p(nc_step, j1 - jc);
    for (ptrdiff_t pc = 0; pc < g->k; pc += kc_step) {
      int kc = (int)min_p(kc_step, g->k - pc);
      int acc = g->accumulate || pc > 0;

      if (!(s->b_call == g->call && s->b_src == B && s->b_j == jc && s->b_p == pc &&
            s->b_nc == nc && s->b_kc == kc)) {
        K->pack(B + jc * g->b_rs + pc * g->b_cs, g->b_rs, g->b_cs, nc, kc, NR, bp);
        s->b_call = g->call, s->b_src = B, s->b_j = jc, s->b_p = pc, s->b_nc = nc, s->b_kc = kc;
      }

      for (ptrdiff_t ic = i0; ic < i1; ic += mc_step) {
        int mc = (int)min_p(mc_step, i1 - ic);
        const float *a_block = A + ic * g->a_rs + pc * g->a_cs;
        /* Packing A by transposition (A not transposed) costs about as much as one B
         * micro-panel's worth of products with it; with few micro-panels, read full A
         * micro-panels in place instead (and pack only the last, partial one). Transposed A
         * packs by cheap copies, and read in place it would touch a new line every step. */
        int full_rows = mc / MR * MR;
        int a_in_place = K->kernel_strided_a && g->a_cs == 1 && nc <= A_IN_PLACE_MAX_PANELS * NR;
        if (a_in_place)
          K->pack(a_block + full_rows * g->a_rs, g->a_rs, g->a_cs, mc - full_rows, kc, MR,
                  ap + (ptrdiff_t)full_rows * kc);
        else
          K->pack(a_block, g->a_rs, g->a_cs, mc, kc, MR, ap);

        for (int jr = 0; jr < nc; jr += NR) {
          int nr = nc - jr < NR ? nc - jr : NR;
          const float *b_panel = bp + (ptrdiff_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = mc - ir < MR ? mc - ir : MR;
            const float *a_panel = ap + (ptrdiff_t)ir * kc;
            float *c = C + (ic + ir) * g->ldc + jc + jr;
            if (pf_per_call) {
              prefetcher_step(&pf_a, pf_per_call);
              prefetcher_step(&pf_b, pf_per_call);
            }
            /* Edge tiles are computed whole into the scratch tile, then the part inside C
             * is copied or added. */
            int whole = mr == MR && nr == NR;
            float *dst = whole ? c : s->tile;
            ptrdiff_t ld_dst = whole ? g->ldc : NR;
            if (a_in_place && mr == MR)
              K->kernel_strided_a(kc, a_block + ir * g->a_rs, g->a_rs, g->a_cs, b_panel, dst,
                                  ld_dst, whole && acc);
            else
              K->kernel(kc, a_panel, b_panel, dst, ld_dst, whole && acc);
            if (!whole) {
              for (int i = 0; i < mr; i++) {
                float *ci = c + i * g->ldc;
                const float *ti = s->tile + i * NR;
                if (acc)
                  for (int j = 0; j < nr; j++) ci[j] += ti[j];
                else
                  memcpy(ci, ti, (size_t)nr * sizeof(float));
              }
            }
          }
        }
      }
    }
  }
  return 0;
}

/* ---- splitting the work into tasks ------------------------------------------------------ */

typedef struct {
  gemm_args g;
  ptrdiff_t batch0, batch_end; /* batches of this job */
  ptrdiff_t batch_chunk;       /* consecutive batches per task (to prefetch one while doing another) */
  int tm, tn;                  /* each C_p is cut into tm x tn tiles */
  ptrdiff_t mblocks, nblocks; /* rows of C in units of mr, columns in units of nr */
  _Atomic int failed;
} gemm_job;

static void gemm_task(void *ctx, int task) {
  gemm_job *job = ctx;
  const gemm_args *g = &job->g;
  int tiles = job->tm * job->tn;
  ptrdiff_t p0 = job->batch0 + task / tiles * job->batch_chunk;
  ptrdiff_t p1 = min_p(job->batch_end, p0 + job->batch_chunk);
  int ti = task % tiles / job->tn, tj = task % tiles % job->tn;
  /* Whole micro-tiles per task, shared out as evenly as possible. */
  ptrdiff_t i0 = job->mblocks * ti / job->tm * g->K->mr;
  ptrdiff_t i1 = min_p(g->m, job->mblocks * (ti + 1) / job->tm * g->K->mr);
  ptrdiff_t j0 = job->nblocks * tj / job->tn * g->K->nr;
  ptrdiff_t j1 = min_p(g->n, job->nblocks * (tj + 1) / job->tn * g->K->nr);
  if (i0 >= i1 || j0 >= j1) return;
  for (ptrdiff_t p = p0; p < p1; p++) {
    const float *A = g->A + p * g->strideA, *B = g->B + p * g->strideB;
    /* prefetch the next batch's operands unless they are the same (broadcast) */
    const float *next_A = p + 1 < p1 && g->strideA ? A + g->strideA : NULL;
    const float *next_B = p + 1 < p1 && g->strideB ? B + g->strideB : NULL;
    if (gemm_tile(g, A, B, g->C + p * g->strideC, i0, i1, j0, j1, next_A, next_B) != 0) {
      atomic_store(&job->failed, 1);
      return;
    }
  }
}

static ptrdiff_t gcd_p(ptrdiff_t a, ptrdiff_t b) {
  while (b) {
    ptrdiff_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Chooses how many tiles to cut each C_p into, and their shape, for `nthreads` threads. */
static void plan_tiles(gemm_job *job, ptrdiff_t batch, int nthreads) {
  const gemm_args *g = &job->g;
  job->mblocks = ceil_div(g->m, g->K->mr);
  job->nblocks = ceil_div(g->n, g->K->nr);
  job->tm = job->tn = 1;
  /* Enough whole batches per thread: split only the batch. Otherwise cut each C_p so the
   * task count is a multiple of the thread count (equal shares). */
  if (nthreads <= 1 || batch % nthreads == 0 || batch >= 8 * (ptrdiff_t)nthreads) return;
  ptrdiff_t tiles = nthreads / gcd_p(batch, nthreads);
  if (tiles > job->mblocks * job->nblocks) tiles = job->mblocks * job->nblocks;
  /* Among tm x tn = tiles, pick the cheapest task: its products, padded to whole
   * micro-tiles, plus packing its rows of A and columns of B (every task packs its own, so a
   * split along n repacks A and a split along m repacks B). A packed float costs about 16
   * flops when packing transposes it (A not transposed, B transposed), 6 when it copies. */
  double wA = g->a_cs == 1 ? 16.0 : 6.0, wB = g->b_rs == 1 ? 6.0 : 16.0;
  double best = -1;
  for (ptrdiff_t tm = 1; tm <= tiles; tm++) {
    if (tiles % tm) continue;
    ptrdiff_t tn = tiles / tm;
    if (tm > job->mblocks || tn > job->nblocks) continue;
    double rows = (double)ceil_div(job->mblocks, tm) * g->K->mr;
    double cols = (double)ceil_div(job->nblocks, tn) * g->K->nr;
    double cost = (2.0 * rows * cols + wA * rows + wB * cols) * (double)g->k; /* per task */
    if (best < 0 || cost < best) best = cost, job->tm = (int)tm, job->tn = (int)tn;
  }
}

/* Whether the C_p of different p can share an element (then they must not run in parallel).
 * Recognises the two usual layouts: blocks one after another, and blocks side by side in the
 * rows (C laid out as m x batch x n). */
static int c_batches_disjoint(ptrdiff_t batch, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ldc,
                              ptrdiff_t strideC) {
  if (batch <= 1) return 1;
  if (strideC >= (m - 1) * ldc + n) return 1;
  if (strideC >= n && (batch - 1) * strideC + n <= ldc) return 1;
  return 0;
}

static const cubit_gemm_kernels *current_kernels(void) {
  const cubit_gemm_kernels *K = NULL;
  switch (cubit_current_isa()) {
    case CUBIT_ISA_AVX512: K = cubit_gemm_kernels_avx512(); break;
    case CUBIT_ISA_AVX2: K = cubit_gemm_kernels_avx2(); break;
    default: break;
  }
  return K ? K : cubit_gemm_kernels_generic();
}

int cubit_sgemm_batched(ptrdiff_t batch, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int transA,
                        int transB, const float *A, ptrdiff_t lda, ptrdiff_t strideA,
                        const float *B, ptrdiff_t ldb, ptrdiff_t strideB, float *C, ptrdiff_t ldc,
                        ptrdiff_t strideC, int accumulate) {
  if (batch <= 0 || m <= 0 || n <= 0) return 0;
  if (k <= 0) { /* empty sum */
    if (!accumulate)
      for (ptrdiff_t p = 0; p < batch; p++)
        for (ptrdiff_t i = 0; i < m; i++) memset(C + p * strideC + i * ldc, 0, (size_t)n * sizeof(float));
    return 0;
  }

  gemm_job job;
  memset(&job, 0, sizeof job);
  gemm_args *g = &job.g;
  g->K = current_kernels();
  g->m = m, g->n = n, g->k = k;
  g->A = A, g->B = B, g->C = C;
  g->a_rs = transA ? 1 : lda;
  g->a_cs = transA ? lda : 1;
  g->b_rs = transB ? ldb : 1;
  g->b_cs = transB ? 1 : ldb;
  g->ldc = ldc;
  g->strideA = strideA, g->strideB = strideB, g->strideC = strideC;
  g->accumulate = accumulate;
  g->call = atomic_fetch_add(&call_counter, 1);

  /* Threads worth using: none below CUBIT_MIN_PARALLEL_FLOPS, and tasks of >= 0.5 MFLOP. */
  double flops = 2.0 * (double)batch * (double)m * (double)n * (double)k;
  int nthreads = cubit_num_threads();
  if (flops < CUBIT_MIN_PARALLEL_FLOPS) nthreads = 1;
  else if (flops / 0.5e6 < nthreads) nthreads = (int)(flops / 0.5e6);
  if (nthreads < 1) nthreads = 1;

  if (c_batches_disjoint(batch, m, n, ldc, strideC)) {
    plan_tiles(&job, batch, nthreads);
    int tiles = job.tm * job.tn;
    /* Whole batches per task when not tiling: about 4 tasks per thread, for balance. */
    job.batch_chunk = tiles == 1 ? ceil_div(batch, 4 * (ptrdiff_t)nthreads) : 1;
    job.batch_end = batch;
    ptrdiff_t nchunks = ceil_div(batch, job.batch_chunk);
    if (nthreads == 1) {
      job.batch_chunk = batch; /* one task: every batch but the first is prefetched */
      for (int t = 0; t < tiles; t++) gemm_task(&job, t);
    } else if (nchunks * tiles <= (1 << 30)) {
      cubit_parallel_for((int)(nchunks * tiles), gemm_task, &job);
    } else { /* task numbers are ints: run a huge batch in slices */
      ptrdiff_t slice = (ptrdiff_t)((1 << 30) / tiles) * job.batch_chunk;
      for (ptrdiff_t p0 = 0; p0 < batch; p0 += slice) {
        job.batch0 = p0;
        job.batch_end = min_p(batch, p0 + slice);
        cubit_parallel_for((int)(ceil_div(job.batch_end - p0, job.batch_chunk) * tiles), gemm_task, &job);
      }
    }
  } else {
    /* Overlapping outputs: one batch at a time, in order, each split into tiles. */
    plan_tiles(&job, 1, nthreads);
    job.batch_chunk = 1;
    for (ptrdiff_t p = 0; p < batch; p++) {
      job.batch0 = p;
      job.batch_end = p + 1;
      if (nthreads == 1) for (int t = 0; t < job.tm * job.tn; t++) gemm_task(&job, t);
      else cubit_parallel_for(job.tm * job.tn, gemm_task, &job);
    }
  }
  return atomic_load(&job.failed) ? -1 : 0;
}
