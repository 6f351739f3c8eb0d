/* AVX-512 build of the loops in kernels_nn_simd.h (16 floats per vector, masked tails). The
 * whole file is compiled for AVX-512 F/DQ/BW/VL + FMA through a target pragma, so no -march flag
 * is needed; kernels_nn.c only calls it when cpu.c reports AVX-512. */
#include "kernels_nn.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
#endif
#include <immintrin.h>

#define NN_TABLE nn_kernels_avx512
#define VW 16
typedef __m512 vf;
typedef __mmask16 vm;

static inline vm v_tail(size_t n) { return (vm)((1u << n) - 1u); }
#define v_zero() _mm512_setzero_ps()
#define v_set1(x) _mm512_set1_ps(x)
#define v_load(p) _mm512_loadu_ps(p)
#define v_store(p, v) _mm512_storeu_ps((p), (v))
#define v_loadn(p, n, fill) _mm512_mask_loadu_ps(_mm512_set1_ps(fill), v_tail(n), (p))
#define v_storen(p, v, n) _mm512_mask_storeu_ps((p), v_tail(n), (v))
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_mul _mm512_mul_ps
#define v_div _mm512_div_ps
#define v_sqrt _mm512_sqrt_ps
#define v_abs(x) _mm512_abs_ps(x)
#define v_neg(x) _mm512_xor_ps((x), _mm512_set1_ps(-0.0f))
#define v_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define v_fnma(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define v_fms(a, b, c) _mm512_fmsub_ps((a), (b), (c))
#define v_max _mm512_max_ps
#define v_min _mm512_min_ps
#define v_lt(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_LT_OQ)
#define v_gt(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GT_OQ)
#define v_ge(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GE_OQ)
#define v_unord(a) _mm512_cmp_ps_mask((a), (a), _CMP_UNORD_Q)
#define v_sel(m, t, f) _mm512_mask_blend_ps((m), (f), (t))
#define v_mor(a, b) ((vm)((a) | (b)))
#define v_any(m) ((m) != 0)
#define v_hsum(v) _mm512_reduce_add_ps(v)
#define v_hmax(v) _mm512_reduce_max_ps(v)
#define v_hmin(v) _mm512_reduce_min_ps(v)
/* doubles: the low and high halves of a float vector, widened */
typedef __m512d vd;
#define vd_zero() _mm512_setzero_pd()
#define vd_lo(v) _mm512_cvtps_pd(_mm512_castps512_ps256(v))
#define vd_hi(v) _mm512_cvtps_pd(_mm512_extractf32x8_ps((v), 1))
#define vd_mul _mm512_mul_pd
#define vd_fma(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define vd_add _mm512_add_pd
#define vd_hsum(v) _mm512_reduce_add_pd(v)

/* exp(x): n = round(x/ln2), r = x - n ln2 (Cody-Waite), Cephes' degree-6 polynomial for e^r,
 * then scalef by 2^n, which handles overflow to inf and gradual underflow to 0 by itself. The
 * lower clamp sits far enough below the smallest denormal that exp(-inf) is exactly 0. */
static inline vf v_exp(vf x) {
  x = _mm512_max_ps(_mm512_set1_ps(-110.0f), x); /* the NaN-keeping operand order */
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), x);
  vf n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  vf p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

#include "kernels_nn_simd.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
