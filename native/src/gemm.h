/* Single-precision matrix multiplication for the other kernels of the addon.
 *
 * For p in [0, batch): C_p = op(A_p) * op(B_p)  (+ C_p when accumulate), where
 *   A_p = A + p*strideA, op(A_p) is m x k (stored k x m, row stride lda, when transA),
 *   B_p = B + p*strideB, op(B_p) is k x n (stored n x k, row stride ldb, when transB),
 *   C_p = C + p*strideC, m x n, row stride ldc.
 * Everything is row-major; strides are in elements; strideA/strideB may be 0 (broadcast).
 * Inputs must not overlap C. Runs on the thread pool (serially when called from a pool task).
 * Returns 0, or -1 if scratch memory could not be allocated.
 * No bounds checking happens here: the N-API layer does that.
 */
#ifndef CUBIT_GEMM_H
#define CUBIT_GEMM_H

#include <stddef.h>

int cubit_sgemm_batched(ptrdiff_t batch, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, int transA,
                        int transB, const float *A, ptrdiff_t lda, ptrdiff_t strideA,
                        const float *B, ptrdiff_t ldb, ptrdiff_t strideB, float *C, ptrdiff_t ldc,
                        ptrdiff_t strideC, int accumulate);

static inline int cubit_sgemm(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                              const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                              float *C, ptrdiff_t ldc, int accumulate) {
  return cubit_sgemm_batched(1, m, n, k, transA, transB, A, lda, 0, B, ldb, 0, C, ldc, 0,
                             accumulate);
}

#endif
