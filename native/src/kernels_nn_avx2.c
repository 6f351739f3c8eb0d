/* AVX2 + FMA build of the loops in kernels_nn_simd.h (8 floats per vector; tails through
 * maskload / maskstore). Compiled for AVX2 through a target pragma; kernels_nn.c only calls it
 * when cpu.c reports AVX2 and FMA. */
#include "kernels_nn.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>

#define NN_TABLE nn_kernels_avx2
#define VW 8
typedef __m256 vf;
typedef __m256 vm; /* all-ones / all-zeros lanes */

static const int32_t nn_tail_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i v_tail(size_t n) {
  return _mm256_loadu_si256((const __m256i *)(nn_tail_bits + 8 - n));
}
static inline vf v_loadn_(const float *p, size_t n, float fill) {
  __m256i m = v_tail(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline float v_hsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float v_hmax(vf v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float v_hmin(vf v) {
  __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_min_ps(s, _mm_movehl_ps(s, s));
  s = _mm_min_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
/* doubles: the low and high halves of a float vector, widened */
typedef __m256d vd;
static inline double vd_hsum(vd v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#define vd_zero() _mm256_setzero_pd()
#define vd_lo(v) _mm256_cvtps_pd(_mm256_castps256_ps128(v))
#define vd_hi(v) _mm256_cvtps_pd(_mm256_extractf128_ps((v), 1))
#define vd_mul _mm256_mul_pd
#define vd_fma(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define vd_add _mm256_add_pd
#define v_zero() _mm256_setzero_ps()
#define v_set1(x) _mm256_set1_ps(x)
#define v_load(p) _mm256_loadu_ps(p)
#define v_store(p, v) _mm256_storeu_ps((p), (v))
#define v_loadn(p, n, fill) v_loadn_((p), (n), (fill))
#define v_storen(p, v, n) _mm256_maskstore_ps((p), v_tail(n), (v))
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_mul _mm256_mul_ps
#define v_div _mm256_div_ps
#define v_sqrt _mm256_sqrt_ps
#define v_abs(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), (x))
#define v_neg(x) _mm256_xor_ps((x), _mm256_set1_ps(-0.0f))
#define v_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define v_fnma(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define v_fms(a, b, c) _mm256_fmsub_ps((a), (b), (c))
#define v_max _mm256_max_ps
#define v_min _mm256_min_ps
#define v_lt(a, b) _mm256_cmp_ps((a), (b), _CMP_LT_OQ)
#define v_gt(a, b) _mm256_cmp_ps((a), (b), _CMP_GT_OQ)
#define v_ge(a, b) _mm256_cmp_ps((a), (b), _CMP_GE_OQ)
#define v_unord(a) _mm256_cmp_ps((a), (a), _CMP_UNORD_Q)
#define v_sel(m, t, f) _mm256_blendv_ps((f), (t), (m))
#define v_mor(a, b) _mm256_or_ps((a), (b))
#define v_any(m) (_mm256_movemask_ps(m) != 0)

/* exp(x) as in the AVX-512 build; 2^n is built from exponent bits in two halves so that n in
 * [-159, 128] still gives gradual underflow and overflow to inf. */
static inline vf v_exp(vf x) {
  x = _mm256_max_ps(_mm256_set1_ps(-110.0f), x); /* the NaN-keeping operand order */
  x = _mm256_min_ps(_mm256_set1_ps(88.8f), x);
  vf n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  vf p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i ni = _mm256_cvtps_epi32(n); /* NaN gives INT_MIN: p is NaN then anyway */
  __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
  const __m256i bias = _mm256_set1_epi32(127);
  vf s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, bias), 23));
  vf s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

#include "kernels_nn_simd.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
