/* Internal interface between the GEMM driver (gemm.c) and its per-ISA kernels
 * (gemm_generic.c, gemm_avx2.c, gemm_avx512.c).
 *
 * Packed layouts (BLIS style): a block of op(A) (rows i, depth k) is packed as consecutive
 * micro-panels of MR rows, each stored k-major: panel[k*MR + i]. A block of op(B) is packed
 * the same way with its columns j in the role of rows: panel[k*NR + j]. Rows past the edge of
 * the matrix are zero-filled, so the micro-kernel can always compute a full MR x NR tile.
 */
#ifndef CUBIT_GEMM_KERNELS_H
#define CUBIT_GEMM_KERNELS_H

#include <stddef.h>

/* Extra floats the driver allocates after each packing buffer, as a safety margin for SIMD
 * packers (the current ones store exactly inside their panels). */
#define CUBIT_PACK_SLACK 64

typedef struct cubit_gemm_kernels {
  const char *name;
  int mr, nr;     /* register tile of C */
  int mc, kc, nc; /* cache blocks: A block mc x kc stays in L2, B micro-panel kc x nr in L1 */

  /* C[i*ldc + j] (i < mr, j < nr) = (accumulate ? C : 0) + sum_p a[p*mr + i] * b[p*nr + j].
   * b is 64-byte aligned; a and c need no alignment. */
  void (*kernel)(ptrdiff_t kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                 int accumulate);

  /* Optional (NULL if absent): the same with A read in place, a[i*rs_a + p*cs_a], for A blocks
   * used by so few B micro-panels that packing them would cost more than it saves. All mr rows
   * must exist. */
  void (*kernel_strided_a)(ptrdiff_t kc, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                           const float *b, float *c, ptrdiff_t ldc, int accumulate);

  /* Packs `rows` rows (of a matrix whose element (r, p) is src[r*rs + p*cs]) times kc into
   * ceil(rows/R) micro-panels of R rows at dst (dst[panel*R*kc + p*R + r]); R is mr or nr.
   * Either rs or cs is 1 (the two transposition cases); dst is 64-byte aligned. */
  void (*pack)(const float *src, ptrdiff_t rs, ptrdiff_t cs, int rows, int kc, int R, float *dst);
} cubit_gemm_kernels;

const cubit_gemm_kernels *cubit_gemm_kernels_generic(void);
/* NULL when the addon was built for a CPU family without these paths. */
const cubit_gemm_kernels *cubit_gemm_kernels_avx2(void);
const cubit_gemm_kernels *cubit_gemm_kernels_avx512(void);

/* Portable packing, used by every path for edge panels (rows < R) and odd cases. */
void cubit_gemm_pack_generic(const float *src, ptrdiff_t rs, ptrdiff_t cs, int rows, int kc, int R,
                             float *dst);

#endif
