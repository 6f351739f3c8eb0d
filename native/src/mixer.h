/* Streaming sequence-mixer kernels (CUBIT.md §2-§3): the causal KRR solve X = (W + λI)⁻¹ Y and
 * masked softmax attention, forward and backward, float32, with no T x T buffer anywhere.
 *
 * Layout (src/core/backend.ts, MixerDims): tensors are (B*H, T, D) row-major, per-head
 * parameters (H), the saved log-sum-exp (B*H, T), docIds (B, T) int32 or NULL. Query rows are
 * processed in blocks of `block` rows; each block sees the key span [lo(i0), i1) where lo is
 * the mask's lower bound (window start, document start). A block's logits are held transposed,
 * as a panel S[j][i] (key j major, query i minor, `ldq` = block rounded up to the vector
 * width), so per-row softmax statistics are vertical vector operations and every product is
 * a register-blocked micro-kernel reading its left operand by broadcasts.
 *
 * Files: mixer_simd.h (vector layer, micro-kernel, per-(b,h) algorithms; compiled once per ISA
 * in mixer_generic.c / mixer_avx2.c / mixer_avx512.c into an mx_kernels table), mixer_common.c
 * (masks, per-thread scratch, ISA choice), krr.c and attention.c (drivers and N-API). */
#ifndef CUBIT_MIXER_H
#define CUBIT_MIXER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int B, H, T, D;
  int window;   /* > 0: key j visible from query i only when j >= i - window + 1 */
  int block;    /* rows per streaming block, >= 1 */
  /* Mask, per batch row b (built by mx_masks_build): lo[b*T + i] = first key query i may
   * see (window start and, for contiguous documents, document start); lo is non-decreasing
   * in i. When a row's documents are not contiguous runs, ids_elementwise[b] = 1 and the
   * document test is done element by element against doc. */
  const int32_t *lo;
  const unsigned char *ids_elementwise;
  const int32_t *doc; /* (B, T) or NULL */
} mx_dims;

/* wx (B*H, T, D): the forward's rows wx_i = sum_{j != i} W_ij (X_j - X_i) = (W X - X)_i, which
 * give the backward its softmax row sums in closed form (mixer_simd.h, KRR backward).
 * Cubit's two elementwise stages can run inside the solve (all NULL: off), sparing their passes
 * over memory and the tensors between them:
 *   alpha (H), eps: the forward writes rh itself, r^ = alpha r / max(|r|, eps), block by block
 *     (rhw = rh); the backward adds r^'s gradient into dr through the normalisation (drh is then
 *     the driver's scratch) and writes dalpha (B*H), each (b, h)'s part of dL/dalpha.
 *   z (B*H*T), lower, range (H): y holds v and the solve's right side is s o v with
 *     s = lower + range sigmoid(z); the backward (given y = v) writes dL/dv into dy and dz, and
 *     dlower, drange (B*H). */
typedef struct {
  const float *r, *rh, *y, *loglam; /* y is NULL in the backward unless z is set */
  float *x, *lse, *wx;
  const float *g;                   /* backward: dL/dX */
  float *dr, *drh, *dy, *dlam;
  const float *alpha, *z, *lower, *range;
  float eps;
  float *rhw, *dalpha, *dz, *dlower, *drange;
} mx_krr_args;

typedef struct {
  const float *q, *k, *v, *out, *lse_in, *g;
  float *o, *lse;
  float *dq, *dk, *dv;
  float scale;
} mx_att_args;

/* ---- splitting one (b, h) across threads ------------------------------------------------
 * The KRR solve and the attention backward run a (b, h) row's blocks in order (each depends on
 * the last, or all add into the same dk / dv). With B*H >= P = mx_par_units() a task is a whole
 * (b, h). Below that, each (b, h) is cut into G groups (of key chunks within a block for the
 * KRR solve, of query blocks for the attention backward) whose partial results are merged in
 * group order. P is the number of CPUs the process may use, clamped to [4, 16], read once: G
 * depends on the shape and the machine, never on the thread count in use, so on one machine
 * results are the same for any number of threads. (With P fixed at 4, B=1 H=4 T=16384 ran as four
 * tasks, so the KRR solve used at most four cores of a larger machine.) */
#define MX_VW_MAX 16 /* widest vector of any ISA: workspace is laid out for it */

int mx_par_units(void);
static inline int mx_groups(int BH) {
  const int P = mx_par_units();
  return BH >= P ? 1 : (P + BH - 1) / BH;
}
static inline int mx_nbmax(const mx_dims *d) { return d->block < d->T ? d->block : d->T; }
static inline size_t mx_ldqcap(const mx_dims *d) { return (size_t)(mx_nbmax(d) + MX_VW_MAX - 1) / MX_VW_MAX * MX_VW_MAX; }

/* KRR forward workspace of one (b, h): per group, the running max m and sum l of each lane
 * (ldqcap each) and the accumulator U (nbmax x D); then |r^_j|^2 of the rows solved so far (T),
 * each block's close adding its own rows for the later blocks' bounds. */
static inline size_t mx_kfw_group_floats(const mx_dims *d) { return 2 * mx_ldqcap(d) + (size_t)mx_nbmax(d) * d->D; }
static inline size_t mx_kfw_norms(const mx_dims *d, int G) { return (size_t)G * mx_kfw_group_floats(d); }
static inline size_t mx_kfw_floats(const mx_dims *d, int G) { return mx_kfw_norms(d, G) + (size_t)d->T; }

/* Per (b, h), the backward's sums in double: dlambda, and with the fused stages dalpha, dlower,
 * drange (mx_krr_args). */
#define MX_KBW_SUMS 4

/* KRR backward workspace of one (b, h), offsets in floats: the diagonal tile's P and dS
 * (nbmax x ldqcap each), the transposed r and Z of the block (D x ldqcap), lse2, the shift sh,
 * the row sums c and h = sh + c (ldqcap each), and the groups' dr (G x nbmax x D). */
typedef struct { size_t Pd, dSd, Rt, Zt, lse, sh, c, h, dR, total; } mx_kbw_layout;
static inline mx_kbw_layout mx_kbw(const mx_dims *d, int G) {
  size_t q = mx_ldqcap(d), o = 0;
  mx_kbw_layout L;
  L.Pd = o, o += (size_t)mx_nbmax(d) * q;
  L.dSd = o, o += (size_t)mx_nbmax(d) * q;
  L.Rt = o, o += (size_t)d->D * q;
  L.Zt = o, o += (size_t)d->D * q;
  L.lse = o, o += q;
  L.sh = o, o += q;
  L.c = o, o += q;
  L.h = o, o += q;
  L.dR = o, o += (size_t)G * mx_nbmax(d) * d->D;
  L.total = o;
  return L;
}

/* The per-ISA algorithms. Return 0, or -1 when scratch memory could not be had.
 *   krr_fwd, krr_bwd, att_bwd: one whole (b, h) (G = 1);
 *   att_fwd: one row block of one (b, h) (its blocks are independent);
 *   the split forms (G > 1), called in this order for each block, `ws` being the (b, h)'s
 *   workspace (mx_kfw_floats / mx_kbw(d, G).total floats):
 *     KRR forward, blocks first to last: krr_fwd_part for every group, then krr_fwd_close;
 *     KRR backward, blocks last to first: krr_bwd_setup, then krr_bwd_grads for every
 *       group; then krr_bwd_setup with blk = -1 finishes (dr of block 0, dλ);
 *     attention backward: att_bwd_range for each group's range of query blocks, into the
 *       group's own dk, dv (T x D each), which the driver sums. */
typedef struct {
  const char *name;
  int (*krr_fwd)(const mx_dims *d, const mx_krr_args *a, int bh);
  int (*krr_bwd)(const mx_dims *d, const mx_krr_args *a, int bh);
  int (*att_fwd)(const mx_dims *d, const mx_att_args *a, int bh, int blk);
  int (*att_bwd)(const mx_dims *d, const mx_att_args *a, int bh);
  int (*krr_fwd_part)(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh, int blk, int g);
  int (*krr_fwd_close)(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh, int blk);
  int (*krr_bwd_setup)(const mx_dims *d, const mx_krr_args *a, float *ws, int G, double *dl, int bh, int blk);
  int (*krr_bwd_grads)(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh, int blk, int g);
  int (*att_bwd_range)(const mx_dims *d, const mx_att_args *a, int bh, int blk0, int blk1, float *dk, float *dv);
} mx_kernels;

const mx_kernels *mx_kernels_generic(void);
const mx_kernels *mx_kernels_avx2(void);   /* NULL when not built for x86 */
const mx_kernels *mx_kernels_avx512(void); /* NULL when not built for x86 */
/* The table for cubit_current_isa(). */
const mx_kernels *mx_current_kernels(void);

/* Per-thread scratch (threadpool.h's cubit_scratch): slot s (0 <= s < MX_SLOTS) holds at least
 * n floats, 64-byte aligned, grown (never shrunk) and reused across calls; freed when the thread
 * exits. NULL when out of memory. Distinct slots never alias. */
#define MX_SLOTS 12
float *mx_scratch(int slot, size_t n);

/* Fills d->lo / d->ids_elementwise for the given shape (d->B, T, window, doc) into the calling
 * thread's call scratch; returns -1 when out of memory. */
int mx_masks_build(mx_dims *d);

#endif
