/* Portable build of the loops in kernels_nn_simd.h: one float per "vector", libm for exp and
 * double-precision erfc for GELU. Used where neither AVX2 nor AVX-512 is available, and as the
 * plain-C twin the tests can force with setIsa('generic'). */
#include <math.h>
#include <stddef.h>

#define NN_TABLE nn_kernels_generic
#define VW 1
typedef float vf;
typedef int vm;

static inline float v_max_(float x, float acc) { return x > acc ? x : acc; } /* acc when NaN */
static inline float v_min_(float x, float acc) { return x < acc ? x : acc; }
#define v_zero() 0.0f
#define v_set1(x) ((float)(x))
#define v_load(p) (*(p))
#define v_store(p, v) (*(p) = (v))
#define v_loadn(p, n, fill) (*(p))
#define v_storen(p, v, n) (*(p) = (v))
#define v_add(a, b) ((a) + (b))
#define v_sub(a, b) ((a) - (b))
#define v_mul(a, b) ((a) * (b))
#define v_div(a, b) ((a) / (b))
#define v_sqrt(a) sqrtf(a)
#define v_abs(a) fabsf(a)
#define v_neg(a) (-(a))
#define v_fma(a, b, c) ((a) * (b) + (c))
#define v_fnma(a, b, c) ((c) - (a) * (b))
#define v_fms(a, b, c) ((a) * (b) - (c))
#define v_max v_max_
#define v_min v_min_
#define v_lt(a, b) ((a) < (b))
#define v_gt(a, b) ((a) > (b))
#define v_ge(a, b) ((a) >= (b))
#define v_unord(a) ((a) != (a))
#define v_sel(m, t, f) ((m) ? (t) : (f))
#define v_mor(a, b) ((a) || (b))
#define v_any(m) (m)
#define v_hsum(v) (v)
#define v_hmax(v) (v)
#define v_hmin(v) (v)
#define v_exp(x) expf(x)
typedef double vd; /* one lane: the "high half" is empty */
#define vd_zero() 0.0
#define vd_lo(v) ((double)(v))
#define vd_hi(v) 0.0
#define vd_mul(a, b) ((a) * (b))
#define vd_fma(a, b, c) ((a) * (b) + (c))
#define vd_add(a, b) ((a) + (b))
#define vd_hsum(v) (v)

#include "kernels_nn_simd.h"
