/* AVX2 + FMA build of the mixer algorithms (mixer_simd.h): 8 floats per vector, a 6 x 16
 * micro-kernel, tails through maskload / maskstore. Compiled for AVX2 through a target pragma;
 * mixer_common.c only picks it when cpu.c reports AVX2 and FMA. */
#include "mixer.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>
#include <math.h>

#define MX_TABLE mx_kernels_avx2
#define MX_NAME "avx2"
#define VW 8
typedef __m256 vf;
typedef __m256i vmask;

static const int32_t mx_tail_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline vmask v_tailmask(int n) { return _mm256_loadu_si256((const __m256i *)(mx_tail_bits + 8 - n)); }
static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float x) { return _mm256_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_store(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline vf v_loadm(const float *p, vmask m) { return _mm256_maskload_ps(p, m); }
static inline void v_storem(float *p, vf v, vmask m) { _mm256_maskstore_ps(p, m, v); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }

static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
/* 2^n for t = n + 1.5*2^23 (mixer_simd.h's v_exp2): n moved into the exponent field. */
static inline vf v_pow2i(vf t) {
  __m256i e = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(0x3F800000));
  return _mm256_castsi256_ps(e);
}
#define MX_POLY_EXP2

static inline float mx_fmaf(float a, float b, float c) { return fmaf(a, b, c); } /* vfmadd: FMA is on */

#include "mixer_simd.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
const mx_kernels *mx_kernels_avx2(void) { return 0; }
#endif
