/* AVX-512 build of the mixer algorithms (mixer_simd.h): 16 floats per vector, micro-kernels up
 * to 14 x 32 / 6 x 64, tails through mask registers. Compiled for AVX-512 through a target
 * pragma; mixer_common.c only picks it when cpu.c reports AVX-512 F/DQ/BW/VL. */
#include "mixer.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif
#include <immintrin.h>
#include <math.h>

#define MX_TABLE mx_kernels_avx512
#define MX_NAME "avx512"
#define VW 16
typedef __m512 vf;
typedef __mmask16 vmask;

static inline vmask v_tailmask(int n) { return (__mmask16)((1u << n) - 1u); }
static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float x) { return _mm512_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_store(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline vf v_loadm(const float *p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void v_storem(float *p, vf v, vmask m) { _mm512_mask_storeu_ps(p, m, v); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }

static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); }
/* 2^n for t = n + 1.5*2^23 (mixer_simd.h's v_exp2): n moved into the exponent field. */
static inline vf v_pow2i(vf t) {
  __m512i e = _mm512_add_epi32(_mm512_slli_epi32(_mm512_castps_si512(t), 23), _mm512_set1_epi32(0x3F800000));
  return _mm512_castsi512_ps(e);
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
const mx_kernels *mx_kernels_avx512(void) { return 0; }
#endif
