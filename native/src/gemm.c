/* Packed SGEMM driver in the BLIS/GotoBLAS style.
 *
 * Loop nest for one tile of C (rows [i0,i1), columns [j0,j1), depth [k0,k1)) on one thread:
 *   for jc (nc columns):           B block kc x nc packed once per (jc, pc)   -> L3/L2
 *     for pc (kc depth):
 *       for ic (mc rows):          A block mc x kc packed                      -> L2
 *         for jr (nr columns):     B micro-panel kc x nr                       -> L1
 *           for ir (mr rows):      micro-kernel: mr x nr tile of C in registers
 * A non-transposed A block that meets only a few B micro-panels is read in place instead of
 * packed (where the ISA has a strided-A kernel). While one block is computed, the operands of
 * the next one are prefetched into L2 (and, for tasks holding several batches, the next
 * batch's), so packing and in-place reads do not wait on L3 or memory.
 *
 * Shapes of a training step get two special cases (see plan_call):
 *  - tall products with a small op(B) (activations times a weight): op(B) is packed once per
 *    call by the caller, and the rows of C are cut into tasks that share it;
 *  - long reductions into a small C (weight gradients, k = rows of a batch): the depth is cut
 *    into chunks whose partial products are computed independently (in C and in scratch),
 *    then added in chunk order. The chunks depend on the shape only, never on the thread
 *    count, so results are bit-identical whatever the number of threads.
 * Parallelism otherwise: the batch and the tiles of each C_p are cut into tasks that run
 * independently on the pool, each thread packing into its own reused buffers. Cutting C into
 * tiles never changes the arithmetic of an element, so neither does the thread count. */
#include "gemm.h"

#include "cpu.h"
#include "gemm_kernels.h"
#include "threadpool.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-thread scratch: grown once, reused by every call ------------------------------- */

#define TILE_MAX (64 * 64) /* largest mr*nr of any kernel */

typedef struct {
  /* Identity of the B block now in the packed-B buffer (b_pack), to skip repacking a broadcast
   * B (stride 0) or the same block seen by consecutive tasks. `call` is unique per sgemm call,
   * as B may change between calls. */
  const float *b_pack;
  uint64_t b_call;
  const float *b_src;
  ptrdiff_t b_j, b_p;
  int b_nc, b_kc;
  _Alignas(64) float tile[TILE_MAX]; /* edge tiles of C are computed here first */
} gemm_scratch;

static _Atomic uint64_t call_counter = 1;

/* The calling thread's GEMM state (threadpool.h's scratch: zeroed when first made). */
static gemm_scratch *get_scratch(void) {
  return cubit_scratch(CUBIT_SCRATCH_GEMM_STATE, sizeof(gemm_scratch));
}

/* A buffer of the calling thread holding at least `need` floats, plus slack for the SIMD packers. */
static float *gemm_buffer(int slot, size_t need) {
  return cubit_scratch(slot, (need + CUBIT_PACK_SLACK) * sizeof(float));
}

/* ---- prefetching ------------------------------------------------------------------------- */

/* Walks a strided 2-D region (rows x row_bytes, row stride ld_bytes) cache line by cache line,
 * prefetching into L2. Used to pull operands out of L3 / memory while other work is computed:
 * packing then reads from L2 instead of stalling on each row. */
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

/* The stored region of a matrix whose element (r, c) is base[r*rs + c*cs] (rs or cs is 1):
 * rows [r0, r1) x columns [c0, c1), walked along its contiguous direction. */
static void prefetcher_init_region(prefetcher *pf, const float *base, ptrdiff_t rs, ptrdiff_t cs,
                                   ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t c0, ptrdiff_t c1) {
  if (!base || r0 >= r1 || c0 >= c1) prefetcher_init(pf, NULL, 0, 0, 0);
  else if (cs == 1) prefetcher_init(pf, base + r0 * rs + c0, r1 - r0, c1 - c0, rs);
  else prefetcher_init(pf, base + r0 + c0 * cs, c1 - c0, r1 - r0, cs);
}

static inline void prefetcher_step(prefetcher *pf, ptrdiff_t nlines) {
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

/* ---- the serial packed GEMM on one tile of C -------------------------------------------- */

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
  /* Blocking for this call: depth step (the same for every tile: it fixes the order of the
   * sums), largest row and column blocks. */
  ptrdiff_t kc, mc, nc;
  int ic_outer; /* row blocks outer, depth steps inner (needs b_call) */
  int no_b_lookahead; /* the in-tile look-ahead prefetches the next A block only */
  /* op(B) packed once for the whole call (batch 1), or NULL: depth block q (rows
   * [q*kc, q*kc + kc_q) of op(B)) at b_call + q*b_call_stride, as micro-panels of nr x kc_q. */
  const float *b_call;
  ptrdiff_t b_call_stride;
} gemm_args;

/* Up to this many B micro-panels per A block, A is read in place rather than packed. */
#ifndef A_IN_PLACE_MAX_PANELS
#define A_IN_PLACE_MAX_PANELS 8
#endif

static ptrdiff_t ceil_div(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }
static ptrdiff_t round_up(ptrdiff_t a, ptrdiff_t b) { return ceil_div(a, b) * b; }
static ptrdiff_t min_p(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }
static ptrdiff_t max_p(ptrdiff_t a, ptrdiff_t b) { return a > b ? a : b; }

/* Splits `total` into equal steps of at most `block` (a multiple of `unit`), rounded up to
 * `unit`: k = 300 with kc = 256 becomes 2 x 152 rather than 256 + 44. */
static ptrdiff_t even_step(ptrdiff_t total, ptrdiff_t block, ptrdiff_t unit) {
  ptrdiff_t nblocks = ceil_div(total, block);
  return round_up(ceil_div(total, nblocks), unit);
}

/* Computes rows [i0,i1) x columns [j0,j1) of C = op(A) op(B) (+ C), over depth [k0,k1) (k0 a
 * multiple of g->kc); C has row stride ldc. When next_A / next_B are given, the same tile of
 * the next batch's operands is prefetched along the way. */
static int gemm_tile(const gemm_args *g, const float *A, const float *B, float *C, ptrdiff_t ldc,
                     int accumulate, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t j0, ptrdiff_t j1,
                     ptrdiff_t k0, ptrdiff_t k1, const float *next_A, const float *next_B) {
  const cubit_gemm_kernels *K = g->K;
  const int MR = K->mr, NR = K->nr;
  gemm_scratch *s = get_scratch();
  if (!s) return -1;

  /* Look-ahead within the tile, unless the tile's operands were prefetched as the previous
   * batch's "next" (then only the first batch of a task misses it, and the full-size A block
   * of the kernel table is used). */
  const int lookahead = !next_A && !next_B;
  ptrdiff_t kc_step = g->kc;
  ptrdiff_t mc_step = even_step(i1 - i0, lookahead ? g->mc : K->mc, MR);
  ptrdiff_t nc_step = even_step(j1 - j0, g->nc, NR);
  float *ap = gemm_buffer(CUBIT_SCRATCH_GEMM_A, (size_t)(mc_step * kc_step));
  if (!ap) return -1;
  float *bp = NULL;
  if (!g->b_call) {
    bp = gemm_buffer(CUBIT_SCRATCH_GEMM_B, (size_t)(nc_step * kc_step));
    if (!bp) return -1;
    if (bp != s->b_pack) s->b_pack = bp, s->b_call = 0; /* buffer replaced: forget what it held */
  }

  /* Stored regions of the next batch's operands that this tile reads, spread over all the
   * micro-kernel calls of the tile. */
  prefetcher pf_a, pf_b;
  prefetcher_init_region(&pf_a, next_A, g->a_rs, g->a_cs, i0, i1, k0, k1);
  prefetcher_init_region(&pf_b, next_B, g->b_cs, g->b_rs, k0, k1, j0, j1);
  ptrdiff_t kernel_calls = ceil_div(i1 - i0, MR) * ceil_div(j1 - j0, NR) * ceil_div(k1 - k0, kc_step);
  ptrdiff_t pf_per_call = ceil_div(prefetcher_lines(&pf_a) + prefetcher_lines(&pf_b), kernel_calls);
  /* Look-ahead within the tile: the next block's operands, spread over this block's calls. */
  prefetcher la_a, la_b;
  prefetcher_init(&la_a, NULL, 0, 0, 0);
  prefetcher_init(&la_b, NULL, 0, 0, 0);
  ptrdiff_t la_per_call = 0;

  /* The (depth step, row block) pairs of each column block, in the usual order (pc outer:
   * each B block is packed once and serves every row block), or with op(B) packed for the
   * whole call and small, row blocks outer: the mc x nc block of C then stays in cache over
   * the depth steps instead of being re-read from L3 at each. Either way every element of C
   * sums its depth blocks in increasing order, so the results are the same. */
  const ptrdiff_t n_pc = ceil_div(k1 - k0, kc_step), n_ic = ceil_div(i1 - i0, mc_step);
  const int ic_outer = g->ic_outer;
  for (ptrdiff_t jc = j0; jc < j1; jc += nc_step) {
    int nc = (int)min_p(nc_step, j1 - jc);
    for (ptrdiff_t step = 0; step < n_pc * n_ic; step++) {
      ptrdiff_t pc = k0 + (ic_outer ? step % n_pc : step / n_ic) * kc_step;
      ptrdiff_t ic = i0 + (ic_outer ? step / n_pc : step % n_ic) * mc_step;
      int kc = (int)min_p(kc_step, k1 - pc);
      int acc = accumulate || pc > k0;

      const float *b_block;
      if (g->b_call) {
        b_block = g->b_call + pc / kc_step * g->b_call_stride + jc * kc;
      } else {
        if (!(s->b_call == g->call && s->b_src == B && s->b_j == jc && s->b_p == pc &&
              s->b_nc == nc && s->b_kc == kc)) {
          K->pack(B + jc * g->b_rs + pc * g->b_cs, g->b_rs, g->b_cs, nc, kc, NR, bp);
          s->b_call = g->call, s->b_src = B, s->b_j = jc, s->b_p = pc, s->b_nc = nc, s->b_kc = kc;
        }
        b_block = bp;
      }

      {
        int mc = (int)min_p(mc_step, i1 - ic);
        const float *a_block = A + ic * g->a_rs + pc * g->a_cs;
        if (lookahead) {
          /* Next: the A block of the next step, and its B block when that is packed next
           * (a new depth step, pc outer, B not packed for the call); after the last step of
           * this column block, the first ones of the next column block. */
          ptrdiff_t na0, np0, nj0 = jc, nj1 = jc + nc, need_b = 0;
          if (step + 1 < n_pc * n_ic) {
            np0 = k0 + (ic_outer ? (step + 1) % n_pc : (step + 1) / n_ic) * kc_step;
            na0 = i0 + (ic_outer ? (step + 1) / n_pc : (step + 1) % n_ic) * mc_step;
            need_b = np0 != pc;
          } else if (jc + nc_step < j1) {
            np0 = k0, na0 = i0, nj0 = jc + nc_step, nj1 = min_p(j1, nj0 + nc_step), need_b = 1;
          } else {
            np0 = k0, na0 = i1; /* nothing next in this tile */
          }
          ptrdiff_t np1 = min_p(k1, np0 + kc_step);
          prefetcher_init_region(&la_a, A, g->a_rs, g->a_cs, na0, min_p(i1, na0 + mc_step), np0, np1);
          prefetcher_init_region(&la_b, g->b_call || !need_b || g->no_b_lookahead ? NULL : B,
                                 g->b_cs, g->b_rs, np0, np1, nj0, nj1);
          ptrdiff_t calls = ceil_div(mc, MR) * ceil_div(nc, NR);
          la_per_call = ceil_div(prefetcher_lines(&la_a) + prefetcher_lines(&la_b), calls);
        }
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
          const float *b_panel = b_block + (ptrdiff_t)jr * kc;
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = mc - ir < MR ? mc - ir : MR;
            const float *a_panel = ap + (ptrdiff_t)ir * kc;
            float *c = C + (ic + ir) * ldc + jc + jr;
            if (pf_per_call) {
              prefetcher_step(&pf_a, pf_per_call);
              prefetcher_step(&pf_b, pf_per_call);
            }
            if (la_per_call) {
              prefetcher_step(&la_a, la_per_call);
              prefetcher_step(&la_b, la_per_call);
            }
            /* Edge tiles are computed whole into the scratch tile, then the part inside C
             * is copied or added. */
            int whole = mr == MR && nr == NR;
            float *dst = whole ? c : s->tile;
            ptrdiff_t ld_dst = whole ? ldc : NR;
            if (a_in_place && mr == MR)
              K->kernel_strided_a(kc, a_block + ir * g->a_rs, g->a_rs, g->a_cs, b_panel, dst,
                                  ld_dst, whole && acc);
            else
              K->kernel(kc, a_panel, b_panel, dst, ld_dst, whole && acc);
            if (!whole) {
              for (int i = 0; i < mr; i++) {
                float *ci = c + i * ldc;
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
  ptrdiff_t mblocks, nblocks;  /* rows of C in units of mr, columns in units of nr */
  /* Depth chunks (batch 1 only): chunk q covers depth blocks [q*kblocks/ksplit,
   * (q+1)*kblocks/ksplit) of g.kc; chunk 0 goes to C, chunk q > 0 to partial + (q-1)*m*n. */
  int ksplit;
  ptrdiff_t kblocks;
  float *partial;
  _Atomic int failed;
} gemm_job;

static void gemm_task(void *ctx, int task) {
  gemm_job *job = ctx;
  const gemm_args *g = &job->g;
  int tiles = job->tm * job->tn;
  int chunk = task / tiles % job->ksplit;
  ptrdiff_t p0 = job->batch0 + task / tiles / job->ksplit * job->batch_chunk;
  ptrdiff_t p1 = min_p(job->batch_end, p0 + job->batch_chunk);
  int ti = task % tiles / job->tn, tj = task % tiles % job->tn;
  /* Whole micro-tiles per task, shared out as evenly as possible. */
  ptrdiff_t i0 = job->mblocks * ti / job->tm * g->K->mr;
  ptrdiff_t i1 = min_p(g->m, job->mblocks * (ti + 1) / job->tm * g->K->mr);
  ptrdiff_t j0 = job->nblocks * tj / job->tn * g->K->nr;
  ptrdiff_t j1 = min_p(g->n, job->nblocks * (tj + 1) / job->tn * g->K->nr);
  ptrdiff_t k0 = job->kblocks * chunk / job->ksplit * g->kc;
  ptrdiff_t k1 = min_p(g->k, job->kblocks * (chunk + 1) / job->ksplit * g->kc);
  if (i0 >= i1 || j0 >= j1) return;
  float *C = g->C;
  ptrdiff_t ldc = g->ldc;
  int accumulate = g->accumulate;
  if (chunk > 0) C = job->partial + (chunk - 1) * g->m * g->n, ldc = g->n, accumulate = 0;
  if (k0 >= k1) { /* (cannot happen: chunks hold at least one depth block) */
    atomic_store(&job->failed, 1);
    return;
  }
  for (ptrdiff_t p = p0; p < p1; p++) {
    const float *A = g->A + p * g->strideA, *B = g->B + p * g->strideB;
    /* prefetch the next batch's operands unless they are the same (broadcast) */
    const float *next_A = p + 1 < p1 && g->strideA ? A + g->strideA : NULL;
    const float *next_B = p + 1 < p1 && g->strideB ? B + g->strideB : NULL;
    if (gemm_tile(g, A, B, C + p * g->strideC, ldc, accumulate, i0, i1, j0, j1, k0, k1, next_A,
                  next_B) != 0) {
      atomic_store(&job->failed, 1);
      return;
    }
  }
}

/* Adds the partial products of depth chunks 1.. into C, in chunk order, rows [r0, r1). */
typedef struct {
  gemm_job *job;
  int nparts;
} reduce_job;

static void reduce_rows(const gemm_job *job, ptrdiff_t r0, ptrdiff_t r1) {
  const gemm_args *g = &job->g;
  ptrdiff_t mn = g->m * g->n;
  for (ptrdiff_t i = r0; i < r1; i++) {
    float *c = g->C + i * g->ldc;
    const float *p = job->partial + i * g->n;
    for (int q = 0; q < job->ksplit - 1; q++, p += mn)
      for (ptrdiff_t j = 0; j < g->n; j++) c[j] += p[j];
  }
}

#define REDUCE_TASKS 8
static void reduce_task(void *ctx, int task) {
  gemm_job *job = ctx;
  ptrdiff_t m = job->g.m;
  reduce_rows(job, m * task / REDUCE_TASKS, m * (task + 1) / REDUCE_TASKS);
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
  /* Enough whole batches (or depth chunks) per thread: split only those. Otherwise cut each
   * C_p so the task count is a multiple of the thread count (equal shares). */
  ptrdiff_t units = batch * job->ksplit;
  if (nthreads <= 1 || units % nthreads == 0 || units >= 8 * (ptrdiff_t)nthreads) return;
  ptrdiff_t tiles = nthreads / gcd_p(units, nthreads);
  if (g->b_call) { /* B is packed once: cut the rows only, in several tasks per thread */
    job->tm = (int)min_p(job->mblocks, max_p(tiles, min_p(4 * (ptrdiff_t)nthreads, g->m / (2 * g->mc))));
    return;
  }
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

/* B blocks up to this many floats are expected to stay in L2 beside two A blocks. */
#define GEMM_L2_B_BLOCK_FLOATS (1 << 16)

/* Depth chunks: a reduction at least this long into a C of at most GEMM_SPLIT_MAX_MN elements
 * is cut into chunks of about GEMM_SPLIT_CHUNK (whole depth blocks). */
#ifndef GEMM_SPLIT_MIN_K
#define GEMM_SPLIT_MIN_K 2048
#endif
#ifndef GEMM_SPLIT_CHUNK
#define GEMM_SPLIT_CHUNK 1024
#endif
#define GEMM_SPLIT_MAX_MN (256 * 256)
#define GEMM_SPLIT_MAX 8
/* op(B) is packed once per call when it is at most this many floats (padded to whole
 * micro-panels) and C has at least GEMM_B_ONCE_MIN_M rows: on several threads, so that the
 * row tasks share it, or when it has several depth steps, so that row blocks can be the outer
 * loop (then it must stay in L2 beside the A and C blocks). */
#define GEMM_B_ONCE_MAX_FLOATS (1 << 18)
#define GEMM_B_ONCE_MIN_M 1024
#define GEMM_IC_OUTER_MAX_FLOATS (1 << 16)

/* Blocking and special cases for one call; depends on the shape only (never on the thread
 * count), except that nothing here changes the arithmetic but the depth step and chunks. */
static void plan_call(gemm_job *job, ptrdiff_t batch, int disjoint) {
  gemm_args *g = &job->g;
  const cubit_gemm_kernels *K = g->K;
  g->kc = even_step(g->k, K->kc, 1);
  g->nc = K->nc;
  /* The A block and the next one (prefetched while this one is computed) share L2 with the B
   * block: where that B block is small enough to stay in L2 too, keep the two A blocks
   * within the A block the kernel table was tuned for. A larger B block streams from L3 once
   * per A block, and halving the A block would double that. */
  g->mc = K->mc;
  if (g->kc * min_p(round_up(g->n, K->nr), g->nc) <= GEMM_L2_B_BLOCK_FLOATS)
    g->mc = max_p(K->mr, min_p(K->mc, K->mc * K->kc / (2 * g->kc)) / K->mr * K->mr);
  job->ksplit = 1;
  job->kblocks = ceil_div(g->k, g->kc);
  if (batch == 1 && disjoint && g->k >= GEMM_SPLIT_MIN_K && g->m * g->n <= GEMM_SPLIT_MAX_MN) {
    job->ksplit = (int)min_p(GEMM_SPLIT_MAX, min_p(job->kblocks, g->k / GEMM_SPLIT_CHUNK));
    if (job->ksplit < 1) job->ksplit = 1;
    /* A depth chunk packs each B block once, from rows read in order that the hardware
     * prefetcher already follows; prefetching them too only competed with the A block's
     * strided rows (1-4% slower, dW of a training step). */
    g->no_b_lookahead = job->ksplit > 1;
  }
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
  int disjoint = c_batches_disjoint(batch, m, n, ldc, strideC);
  plan_call(&job, batch, disjoint);

  /* Threads worth using: none below CUBIT_MIN_PARALLEL_FLOPS, and tasks of >= 0.5 MFLOP. */
  double flops = 2.0 * (double)batch * (double)m * (double)n * (double)k;
  int nthreads = cubit_num_threads();
  if (flops < CUBIT_MIN_PARALLEL_FLOPS) nthreads = 1;
  else if (flops / 0.5e6 < nthreads) nthreads = (int)(flops / 0.5e6);
  if (nthreads < 1) nthreads = 1;

  gemm_scratch *s = NULL;
  if (job.ksplit > 1 || (batch == 1 && n <= g->nc && m >= GEMM_B_ONCE_MIN_M)) {
    s = get_scratch();
    if (!s) return -1;
  }
  if (job.ksplit > 1) {
    job.partial = gemm_buffer(CUBIT_SCRATCH_GEMM_PARTIAL, (size_t)((job.ksplit - 1) * m * n));
    if (!job.partial) return -1;
  } else if (s) {
    /* Tall product with a small op(B): pack op(B) once here, so that the tasks (row blocks of
     * C) share it instead of each packing its own, and with several depth steps, so that the
     * row blocks can be the outer loop. */
    const int NR = g->K->nr;
    ptrdiff_t panels = round_up(n, NR);
    int ic_outer = job.kblocks > 1 && panels * k <= GEMM_IC_OUTER_MAX_FLOATS;
    if (panels * k <= GEMM_B_ONCE_MAX_FLOATS && (nthreads > 1 || ic_outer)) {
      g->ic_outer = ic_outer;
      float *bc = gemm_buffer(CUBIT_SCRATCH_GEMM_B_CALL, (size_t)(panels * g->kc * job.kblocks));
      if (!bc) return -1;
      for (ptrdiff_t q = 0; q < job.kblocks; q++) {
        ptrdiff_t pc = q * g->kc;
        g->K->pack(B + pc * g->b_cs, g->b_rs, g->b_cs, (int)n, (int)min_p(g->kc, k - pc), NR,
                   bc + q * panels * g->kc);
      }
      g->b_call = bc, g->b_call_stride = panels * g->kc;
    }
  }

  if (disjoint) {
    plan_tiles(&job, batch, nthreads);
    int tiles = job.tm * job.tn * job.ksplit;
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
    if (job.ksplit > 1 && !atomic_load(&job.failed)) {
      if (nthreads == 1 || m < REDUCE_TASKS) reduce_rows(&job, 0, m);
      else cubit_parallel_for(REDUCE_TASKS, reduce_task, &job);
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
