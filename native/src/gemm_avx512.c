/* AVX-512 kernels: a 14x32 micro-kernel (28 zmm accumulators, 2 for B, 1 broadcast of A).
 * Per step of k: 2 loads of B and 14 broadcasts feed 28 FMAs, i.e. 14 cycles on two 512-bit
 * FMA pipes with loads to spare. Packing reuses the AVX2 packers (every AVX-512 CPU has AVX2).
 * Target attributes keep the instructions out of the rest of the addon. */
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#define MR 14
#define NR 32

TARGET_AVX512 static void kernel_14x32(ptrdiff_t kc, const float *restrict a,
                                       const float *restrict b, float *restrict c, ptrdiff_t ldc,
                                       int accumulate) {
  __m512 c0_0 = _mm512_setzero_ps(), c0_1 = _mm512_setzero_ps();
  __m512 c1_0 = _mm512_setzero_ps(), c1_1 = _mm512_setzero_ps();
  __m512 c2_0 = _mm512_setzero_ps(), c2_1 = _mm512_setzero_ps();
  __m512 c3_0 = _mm512_setzero_ps(), c3_1 = _mm512_setzero_ps();
  __m512 c4_0 = _mm512_setzero_ps(), c4_1 = _mm512_setzero_ps();
  __m512 c5_0 = _mm512_setzero_ps(), c5_1 = _mm512_setzero_ps();
  __m512 c6_0 = _mm512_setzero_ps(), c6_1 = _mm512_setzero_ps();
  __m512 c7_0 = _mm512_setzero_ps(), c7_1 = _mm512_setzero_ps();
  __m512 c8_0 = _mm512_setzero_ps(), c8_1 = _mm512_setzero_ps();
  __m512 c9_0 = _mm512_setzero_ps(), c9_1 = _mm512_setzero_ps();
  __m512 c10_0 = _mm512_setzero_ps(), c10_1 = _mm512_setzero_ps();
  __m512 c11_0 = _mm512_setzero_ps(), c11_1 = _mm512_setzero_ps();
  __m512 c12_0 = _mm512_setzero_ps(), c12_1 = _mm512_setzero_ps();
  __m512 c13_0 = _mm512_setzero_ps(), c13_1 = _mm512_setzero_ps();
  for (int i = 0; i < MR; i++) {
    _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
#define FMA_ROW(step, i)                                   \
  ai = _mm512_set1_ps(a[(step) * MR + (i)]);               \
  c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);            \
  c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);
#define STEP(step)                                                                        \
  do {                                                                                    \
    __m512 b0 = _mm512_load_ps(b + (step) * NR), b1 = _mm512_load_ps(b + (step) * NR + 16), ai; \
    FMA_ROW(step, 0) FMA_ROW(step, 1) FMA_ROW(step, 2) FMA_ROW(step, 3) FMA_ROW(step, 4)  \
    FMA_ROW(step, 5) FMA_ROW(step, 6) FMA_ROW(step, 7) FMA_ROW(step, 8) FMA_ROW(step, 9)  \
    FMA_ROW(step, 10) FMA_ROW(step, 11) FMA_ROW(step, 12) FMA_ROW(step, 13)              \
  } while (0)
  ptrdiff_t p = 0; /* (STEP's argument is the offset within the unrolled group, not p) */
  for (; p + 4 <= kc; p += 4) {
    _mm_prefetch((const char *)(b + 8 * NR), _MM_HINT_T0);
    _mm_prefetch((const char *)(b + 8 * NR + 16), _MM_HINT_T0);
    _mm_prefetch((const char *)(b + 10 * NR), _MM_HINT_T0);
    _mm_prefetch((const char *)(b + 10 * NR + 16), _MM_HINT_T0);
    STEP(0); STEP(1); STEP(2); STEP(3);
    a += 4 * MR;
    b += 4 * NR;
  }
  for (; p < kc; p++) {
    STEP(0);
    a += MR;
    b += NR;
  }
#undef STEP
#undef FMA_ROW
#define ROW(i)                                                           \
  do {                                                                   \
    float *ci = c + (i) * ldc;                                           \
    if (accumulate) {                                                    \
      c##i##_0 = _mm512_add_ps(c##i##_0, _mm512_loadu_ps(ci));           \
      c##i##_1 = _mm512_add_ps(c##i##_1, _mm512_loadu_ps(ci + 16));      \
    }                                                                    \
    _mm512_storeu_ps(ci, c##i##_0);                                      \
    _mm512_storeu_ps(ci + 16, c##i##_1);                                 \
  } while (0)
  ROW(0); ROW(1); ROW(2); ROW(3); ROW(4); ROW(5); ROW(6);
  ROW(7); ROW(8); ROW(9); ROW(10); ROW(11); ROW(12); ROW(13);
#undef ROW
}

static void pack_avx512(const float *src, ptrdiff_t rs, ptrdiff_t cs, int rows, int kc, int R,
                        float *dst) {
  cubit_gemm_kernels_avx2()->pack(src, rs, cs, rows, kc, R, dst);
}

static const cubit_gemm_kernels avx512_kernels = {
    .name = "avx512",
    .mr = MR, .nr = NR,
    /* Zen 5: L1d 48K, L2 1M. B micro-panel 256*32*4 = 32K in L1; A block 168*256*4 = 168K. */
    .mc = 168, .kc = 256, .nc = 4096,
    .kernel = kernel_14x32,
    .pack = pack_avx512,
};

const cubit_gemm_kernels *cubit_gemm_kernels_avx512(void) { return &avx512_kernels; }

#else
const cubit_gemm_kernels *cubit_gemm_kernels_avx512(void) { return 0; }
#endif
