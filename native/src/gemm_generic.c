/* Portable C kernels: the fallback path for CPUs without AVX2, and the reference the SIMD
 * packers use for edge panels. Written so the compiler can vectorise it with the baseline ISA. */
#include "gemm_kernels.h"

#include <string.h>

#define GENERIC_MR 4
#define GENERIC_NR 16

void cubit_gemm_pack_generic(const float *src, ptrdiff_t rs, ptrdiff_t cs, int rows, int kc, int R,
                             float *dst) {
  for (int r0 = 0; r0 < rows; r0 += R) {
    int valid = rows - r0 < R ? rows - r0 : R;
    const float *s = src + (ptrdiff_t)r0 * rs;
    for (int p = 0; p < kc; p++) {
      float *d = dst + (ptrdiff_t)p * R;
      for (int r = 0; r < valid; r++) d[r] = s[r * rs + p * cs];
      for (int r = valid; r < R; r++) d[r] = 0.0f;
    }
    dst += (ptrdiff_t)R * kc;
  }
}

static void kernel_generic(ptrdiff_t kc, const float *a, const float *b, float *c, ptrdiff_t ldc,
                           int accumulate) {
  float acc[GENERIC_MR][GENERIC_NR];
  memset(acc, 0, sizeof acc);
  for (ptrdiff_t p = 0; p < kc; p++) {
    for (int i = 0; i < GENERIC_MR; i++) {
      float ai = a[p * GENERIC_MR + i];
      for (int j = 0; j < GENERIC_NR; j++) acc[i][j] += ai * b[p * GENERIC_NR + j];
    }
  }
  for (int i = 0; i < GENERIC_MR; i++) {
    float *ci = c + i * ldc;
    if (accumulate)
      for (int j = 0; j < GENERIC_NR; j++) ci[j] += acc[i][j];
    else
      for (int j = 0; j < GENERIC_NR; j++) ci[j] = acc[i][j];
  }
}

static const cubit_gemm_kernels generic_kernels = {
    .name = "generic",
    .mr = GENERIC_MR, .nr = GENERIC_NR,
    .mc = 128, .kc = 256, .nc = 2048,
    .kernel = kernel_generic,
    .pack = cubit_gemm_pack_generic,
};

const cubit_gemm_kernels *cubit_gemm_kernels_generic(void) { return &generic_kernels; }
