/* AVX2 + FMA kernels: a 6x16 micro-kernel (12 ymm accumulators, 2 for B, 2 broadcasts of A),
 * its variant reading A in place (strided), and SIMD packing. Functions carry target attributes instead of the file being compiled with
 * -mavx2, so the rest of the addon stays runnable on any x86-64 and nothing here runs unless
 * the CPU check in cpu.c passed. */
#include "gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MR 6
#define NR 16
/* Cache blocks (see the kernel table at the end); overridable for tuning runs. */
#ifndef AVX2_MC
#define AVX2_MC 144
#endif
#ifndef AVX2_KC
#define AVX2_KC 256
#endif

/* The 6x16 micro-kernel. The loop is written in assembly because compilers spill some of the
 * 12 accumulators or copy registers around in it (GCC 12 did, costing ~30%).
 * Registers: ymm4..ymm15 = C tile (row i in ymm(4+2i), ymm(5+2i)); ymm0, ymm1 = one row of the
 * B micro-panel; ymm2, ymm3 = broadcasts of A, alternated so consecutive rows overlap. */
#define K_STEP(p)                                         \
  "vmovaps " #p "*64(%[b]), %%ymm0\n\t"                   \
  "vmovaps " #p "*64+32(%[b]), %%ymm1\n\t"                \
  "vbroadcastss " #p "*24+0(%[a]), %%ymm2\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm4\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm5\n\t"                \
  "vbroadcastss " #p "*24+4(%[a]), %%ymm3\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm6\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm7\n\t"                \
  "vbroadcastss " #p "*24+8(%[a]), %%ymm2\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm8\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm9\n\t"                \
  "vbroadcastss " #p "*24+12(%[a]), %%ymm3\n\t"           \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm10\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm11\n\t"               \
  "vbroadcastss " #p "*24+16(%[a]), %%ymm2\n\t"           \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm12\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm13\n\t"               \
  "vbroadcastss " #p "*24+20(%[a]), %%ymm3\n\t"           \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm14\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm15\n\t"

/* C row r: accumulate (load-add) or not, then store; %%rax walks the rows. */
#define C_ROW_ADD(lo, hi)                                 \
  "vaddps (%%rax), %%ymm" #lo ", %%ymm" #lo "\n\t"        \
  "vaddps 32(%%rax), %%ymm" #hi ", %%ymm" #hi "\n\t"      \
  "vmovups %%ymm" #lo ", (%%rax)\n\t"                     \
  "vmovups %%ymm" #hi ", 32(%%rax)\n\t"                   \
  "add %[ldc], %%rax\n\t"
#define C_ROW_SET(lo, hi)                                 \
  "vmovups %%ymm" #lo ", (%%rax)\n\t"                     \
  "vmovups %%ymm" #hi ", 32(%%rax)\n\t"                   \
  "add %[ldc], %%rax\n\t"

/* The 12 accumulators ymm4..ymm15 cleared, and stored to (or added into, when acc) the 6 x 16
 * tile at c with row stride ldc: the two kernels' shared prologue and epilogue. */
#define ACC_ZERO                                                                                   \
  "vxorps %%ymm4, %%ymm4, %%ymm4\n\t" "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"                          \
  "vxorps %%ymm6, %%ymm6, %%ymm6\n\t" "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"                          \
  "vxorps %%ymm8, %%ymm8, %%ymm8\n\t" "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"                          \
  "vxorps %%ymm10, %%ymm10, %%ymm10\n\t" "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"                    \
  "vxorps %%ymm12, %%ymm12, %%ymm12\n\t" "vxorps %%ymm13, %%ymm13, %%ymm13\n\t"                    \
  "vxorps %%ymm14, %%ymm14, %%ymm14\n\t" "vxorps %%ymm15, %%ymm15, %%ymm15\n\t"
#define C_STORE                                                                                    \
  "mov %[c], %%rax\n\t"                                                                            \
  "test %[acc], %[acc]\n\t"                                                                        \
  "jz 5f\n\t"                                                                                      \
  C_ROW_ADD(4, 5) C_ROW_ADD(6, 7) C_ROW_ADD(8, 9) C_ROW_ADD(10, 11) C_ROW_ADD(12, 13)              \
  C_ROW_ADD(14, 15)                                                                                \
  "jmp 6f\n"                                                                                       \
  "5:\n\t"                                                                                         \
  C_ROW_SET(4, 5) C_ROW_SET(6, 7) C_ROW_SET(8, 9) C_ROW_SET(10, 11) C_ROW_SET(12, 13)              \
  C_ROW_SET(14, 15)                                                                                \
  "6:\n\t"

TARGET_AVX2 static void kernel_6x16(ptrdiff_t kc, const float *restrict a, const float *restrict b,
                                    float *restrict c, ptrdiff_t ldc, int accumulate) {
  ptrdiff_t k4 = kc / 4, krest = kc % 4, ldc_bytes = ldc * (ptrdiff_t)sizeof(float);
  /* Bring the C tile into L1 while the products are computed. */
  for (int i = 0; i < MR; i++) {
    _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  __asm__ volatile(
      ACC_ZERO
      "test %[k4], %[k4]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n"
      "1:\n\t"
      "prefetcht0 384(%[a])\n\t"
      K_STEP(0) K_STEP(1) K_STEP(2) K_STEP(3)
      "add $96, %[a]\n\t"
      "add $256, %[b]\n\t"
      "dec %[k4]\n\t"
      "jnz 1b\n"
      "2:\n\t"
      "test %[krest], %[krest]\n\t"
      "jz 4f\n"
      "3:\n\t"
      K_STEP(0)
      "add $24, %[a]\n\t"
      "add $64, %[b]\n\t"
      "dec %[krest]\n\t"
      "jnz 3b\n"
      "4:\n\t"
      C_STORE
      "vzeroupper\n\t"
      : [a] "+r"(a), [b] "+r"(b), [k4] "+r"(k4), [krest] "+r"(krest)
      : [c] "r"(c), [ldc] "r"(ldc_bytes), [acc] "r"(accumulate)
      : "rax", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
        "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

/* The same tile with A read in place: row i of the micro-panel at a + i*rs_a, consecutive k
 * at a stride of cs_a (A not transposed: rs_a = lda, cs_a = 1; transposed: rs_a = 1,
 * cs_a = lda). Rows are addressed as a0 + {0, 1, 2, 3, 4}*rs and a3 + 2*rs (a3 = a0 + 3*rs),
 * both pointers stepping by cs_a. */
#define KS_STEP                                           \
  "vmovaps (%[b]), %%ymm0\n\t"                            \
  "vmovaps 32(%[b]), %%ymm1\n\t"                          \
  "vbroadcastss (%[a0]), %%ymm2\n\t"                      \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm4\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm5\n\t"                \
  "vbroadcastss (%[a0], %[rs], 1), %%ymm3\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm6\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm7\n\t"                \
  "vbroadcastss (%[a0], %[rs], 2), %%ymm2\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm8\n\t"                \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm9\n\t"                \
  "vbroadcastss (%[a3]), %%ymm3\n\t"                      \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm10\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm11\n\t"               \
  "vbroadcastss (%[a0], %[rs], 4), %%ymm2\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm2, %%ymm12\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm2, %%ymm13\n\t"               \
  "vbroadcastss (%[a3], %[rs], 2), %%ymm3\n\t"            \
  "vfmadd231ps %%ymm0, %%ymm3, %%ymm14\n\t"               \
  "vfmadd231ps %%ymm1, %%ymm3, %%ymm15\n\t"               \
  "add %[cs], %[a0]\n\t"                                  \
  "add %[cs], %[a3]\n\t"                                  \
  "add $64, %[b]\n\t"

TARGET_AVX2 static void kernel_6x16_strided_a(ptrdiff_t kc, const float *a, ptrdiff_t rs_a,
                                              ptrdiff_t cs_a, const float *restrict b,
                                              float *restrict c, ptrdiff_t ldc, int accumulate) {
  ptrdiff_t k4 = kc / 4, krest = kc % 4, ldc_bytes = ldc * (ptrdiff_t)sizeof(float);
  ptrdiff_t rs = rs_a * (ptrdiff_t)sizeof(float), cs = cs_a * (ptrdiff_t)sizeof(float);
  const float *a0 = a, *a3 = a + 3 * rs_a;
  for (int i = 0; i < MR; i++) {
    _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  __asm__ volatile(
      ACC_ZERO
      "test %[k4], %[k4]\n\t"
      "jz 2f\n\t"
      ".p2align 5\n"
      "1:\n\t"
      KS_STEP KS_STEP KS_STEP KS_STEP
      "dec %[k4]\n\t"
      "jnz 1b\n"
      "2:\n\t"
      "test %[krest], %[krest]\n\t"
      "jz 4f\n"
      "3:\n\t"
      KS_STEP
      "dec %[krest]\n\t"
      "jnz 3b\n"
      "4:\n\t"
      C_STORE
      "vzeroupper\n\t"
      : [a0] "+r"(a0), [a3] "+r"(a3), [b] "+r"(b), [k4] "+r"(k4), [krest] "+r"(krest)
      : [rs] "r"(rs), [cs] "r"(cs), [c] "r"(c), [ldc] "r"(ldc_bytes), [acc] "r"(accumulate)
      : "rax", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
        "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#undef KS_STEP
#undef K_STEP
#undef C_ROW_ADD
#undef C_ROW_SET
#undef ACC_ZERO
#undef C_STORE

/* In-register transpose of an 8x8 block: on return r[q] holds what was column q. */
TARGET_AVX2 static inline void transpose8(__m256 r[8]) {
  __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Rows r0..r0+7 of a panel, p0..p0+7: an 8x8 transpose, each output row 32 bytes. */
TARGET_AVX2 static inline void transpose_8rows(const float *src, ptrdiff_t rs, int p0, float *dst,
                                               int R) {
  __m256 r[8];
  for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(src + q * rs + p0);
  transpose8(r);
  for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (ptrdiff_t)(p0 + q) * R, r[q]);
}

/* Rows r0..r0+3, p0..p0+7: two 4x4 transposes (SSE), each output row 16 bytes. */
TARGET_AVX2 static inline void transpose_4rows(const float *src, ptrdiff_t rs, int p0, float *dst,
                                               int R) {
  for (int h = 0; h < 8; h += 4) {
    __m128 r0 = _mm_loadu_ps(src + p0 + h), r1 = _mm_loadu_ps(src + rs + p0 + h);
    __m128 r2 = _mm_loadu_ps(src + 2 * rs + p0 + h), r3 = _mm_loadu_ps(src + 3 * rs + p0 + h);
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    float *d = dst + (ptrdiff_t)(p0 + h) * R;
    _mm_storeu_ps(d, r0);
    _mm_storeu_ps(d + R, r1);
    _mm_storeu_ps(d + 2 * R, r2);
    _mm_storeu_ps(d + 3 * R, r3);
  }
}

/* Rows r0, r0+1, p0..p0+7: interleave into pairs, each output row 8 bytes. */
TARGET_AVX2 static inline void transpose_2rows(const float *src, ptrdiff_t rs, int p0, float *dst,
                                               int R) {
  for (int h = 0; h < 8; h += 4) {
    __m128 r0 = _mm_loadu_ps(src + p0 + h), r1 = _mm_loadu_ps(src + rs + p0 + h);
    __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1); /* (p, p+1), (p+2, p+3) */
    float *d = dst + (ptrdiff_t)(p0 + h) * R;
    _mm_storel_pi((__m64 *)d, lo);
    _mm_storeh_pi((__m64 *)(d + R), lo);
    _mm_storel_pi((__m64 *)(d + 2 * R), hi);
    _mm_storeh_pi((__m64 *)(d + 3 * R), hi);
  }
}

/* One full panel of R rows whose elements are contiguous along p (src[r*rs + p]): the
 * "transposing" case (A not transposed, or B transposed). Eight p at a time, the rows split
 * into groups of 8, 4 and 2 (R = 6 = 4+2, 14 = 8+4+2, 16 = 8+8, 32 = 4x8) so that every
 * store is exactly one output row of its group: nothing is read or written past the panel. */
TARGET_AVX2 static void pack_panel_transposing(const float *src, ptrdiff_t rs, int kc, int R,
                                               float *dst) {
  int p = 0;
  for (; p + 8 <= kc; p += 8) {
    int r = 0;
    for (; r + 8 <= R; r += 8) transpose_8rows(src + r * rs, rs, p, dst + r, R);
    if (r + 4 <= R) {
      transpose_4rows(src + r * rs, rs, p, dst + r, R);
      r += 4;
    }
    if (r + 2 <= R) {
      transpose_2rows(src + r * rs, rs, p, dst + r, R);
      r += 2;
    }
    for (; r < R; r++)
      for (int q = p; q < p + 8; q++) dst[(ptrdiff_t)q * R + r] = src[r * rs + q];
  }
  for (; p < kc; p++)
    for (int row = 0; row < R; row++) dst[(ptrdiff_t)p * R + row] = src[row * rs + p];
}

/* Copies R floats; R is a compile-time constant after inlining. dst is 32-byte aligned when
 * R is a multiple of 8. */
TARGET_AVX2 static inline void copy_row(const float *src, float *dst, int R) {
  int r = 0;
  for (; r + 8 <= R; r += 8) _mm256_storeu_ps(dst + r, _mm256_loadu_ps(src + r));
  if (r + 4 <= R) {
    _mm_storeu_ps(dst + r, _mm_loadu_ps(src + r));
    r += 4;
  }
  for (; r < R; r++) dst[r] = src[r];
}

/* Full panels whose elements are contiguous along r (src[r + p*cs]): the "copy" case (A
 * transposed, or B not transposed). Walks the source row by row (p outer), filling all panels
 * at once, so the reads are sequential and the hardware prefetcher keeps up. */
TARGET_AVX2 static void pack_panels_copy(const float *src, ptrdiff_t cs, int npanels, int kc,
                                         int R, float *dst) {
  ptrdiff_t panel = (ptrdiff_t)R * kc;
  switch (R) {
#define COPY_CASE(RR)                                                        \
  case RR:                                                                   \
    for (int p = 0; p < kc; p++)                                             \
      for (int q = 0; q < npanels; q++) {                                    \
        _mm_prefetch((const char *)(src + (p + 4) * cs + q * RR), _MM_HINT_T0); \
        copy_row(src + p * cs + q * RR, dst + q * panel + p * RR, RR);       \
      }                                                                      \
    return;
    COPY_CASE(6)
    COPY_CASE(14)
    COPY_CASE(16)
    COPY_CASE(32)
#undef COPY_CASE
    default:
      for (int p = 0; p < kc; p++)
        for (int q = 0; q < npanels; q++)
          memcpy(dst + q * panel + p * R, src + p * cs + q * R, (size_t)R * sizeof(float));
  }
}

/* The copy case for R = 6 (A transposed): four source rows p..p+3 at a time, their six-float
 * pieces gathered by blends into three full 8-float stores (6 x 4 = 24 floats of one panel).
 * The loads reach up to 6 floats before or after a piece, but never outside [row p's piece,
 * row p+3's piece], since cs >= the row count >= 6: all inside the source matrix. */
TARGET_AVX2 static void pack_panels_copy6(const float *src, ptrdiff_t cs, int npanels, int kc,
                                          float *dst) {
  ptrdiff_t panel = 6 * (ptrdiff_t)kc;
  int p = 0;
  for (; p + 4 <= kc; p += 4) {
    const float *s0 = src + p * cs, *s1 = s0 + cs, *s2 = s1 + cs, *s3 = s2 + cs;
    float *d = dst + (ptrdiff_t)p * 6;
    for (int q = 0; q < npanels; q++, s0 += 6, s1 += 6, s2 += 6, s3 += 6, d += panel) {
      __m256 y0 = _mm256_blend_ps(_mm256_loadu_ps(s0), _mm256_loadu_ps(s1 - 6), 0xC0);
      __m256 y1 = _mm256_blend_ps(_mm256_loadu_ps(s1 + 2), _mm256_loadu_ps(s2 - 4), 0xF0);
      __m256 y2 = _mm256_blend_ps(_mm256_loadu_ps(s2 + 4), _mm256_loadu_ps(s3 - 2), 0xFC);
      _mm256_storeu_ps(d, y0);
      _mm256_storeu_ps(d + 8, y1);
      _mm256_storeu_ps(d + 16, y2);
    }
  }
  for (; p < kc; p++)
    for (int q = 0; q < npanels; q++) copy_row(src + p * cs + q * 6, dst + q * panel + p * 6, 6);
}

TARGET_AVX2 static void pack_avx2(const float *src, ptrdiff_t rs, ptrdiff_t cs, int rows, int kc,
                                  int R, float *dst) {
  int npanels = rows / R, full = npanels * R;
  if (rs == 1) {
    if (R == 6) pack_panels_copy6(src, cs, npanels, kc, dst);
    else pack_panels_copy(src, cs, npanels, kc, R, dst);
  } else {
    for (int q = 0; q < npanels; q++) {
      const float *s = src + (ptrdiff_t)q * R * rs;
      float *d = dst + (ptrdiff_t)q * R * kc;
      if (cs == 1) pack_panel_transposing(s, rs, kc, R, d);
      else cubit_gemm_pack_generic(s, rs, cs, R, kc, R, d);
    }
  }
  if (full < rows)
    cubit_gemm_pack_generic(src + full * rs, rs, cs, rows - full, kc, R, dst + (ptrdiff_t)full * kc);
}

static const cubit_gemm_kernels avx2_kernels = {
    .name = "avx2",
    .mr = MR, .nr = NR,
    /* Zen 3 here: L1d 32K, L2 512K. B micro-panel kc*nr*4 = 16K in L1; A block 144*256*4 = 144K. */
    .mc = AVX2_MC, .kc = AVX2_KC, .nc = 4080,
    .kernel = kernel_6x16,
    .kernel_strided_a = kernel_6x16_strided_a,
    .pack = pack_avx2,
};

const cubit_gemm_kernels *cubit_gemm_kernels_avx2(void) { return &avx2_kernels; }

#else
const cubit_gemm_kernels *cubit_gemm_kernels_avx2(void) { return 0; }
#endif
