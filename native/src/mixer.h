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

typedef struct {
  const float *r, *rh, *y, *loglam; /* y is NULL in the backward */
  float *x, *lse;
  const float *g;                   /* backward: dL/dX */
  float *dr, *drh, *dy, *dlam;
} mx_krr_args;

typedef struct {
  const float *q, *k, *v, *out, *lse_in, *g;
  float *o, *lse;
  float *dq, *dk, *dv;
  float scale;
} mx_att_args;

/* The per-ISA algorithms. krr_* and att_bwd handle one (b, h) row; att_fwd one row block
 * `blk` of one (b, h) row (its blocks are independent). Return 0, or -1 when scratch memory
 * could not be had. */
typedef struct {
  const char *name;
  int (*krr_fwd)(const mx_dims *d, const mx_krr_args *a, int bh);
  int (*krr_bwd)(const mx_dims *d, const mx_krr_args *a, int bh);
  int (*att_fwd)(const mx_dims *d, const mx_att_args *a, int bh, int blk);
  int (*att_bwd)(const mx_dims *d, const mx_att_args *a, int bh);
} mx_kernels;

const mx_kernels *mx_kernels_generic(void);
const mx_kernels *mx_kernels_avx2(void);   /* NULL when not built for x86 */
const mx_kernels *mx_kernels_avx512(void); /* NULL when not built for x86 */
/* The table for cubit_current_isa(). */
const mx_kernels *mx_current_kernels(void);

/* Per-thread scratch: slot s (0 <= s < MX_SLOTS) holds at least n floats, 64-byte aligned,
 * grown (never shrunk) and reused across calls; freed when the thread exits. NULL when out of
 * memory. Distinct slots never alias. */
#define MX_SLOTS 10
float *mx_scratch(int slot, size_t n);

/* Fills d->lo / d->ids_elementwise for the given shape (d->B, T, window, doc) into the calling
 * thread's call scratch; returns -1 when out of memory. */
int mx_masks_build(mx_dims *d);

#endif
