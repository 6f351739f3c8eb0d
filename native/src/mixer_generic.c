/* Portable build of the mixer algorithms (mixer_simd.h): "vectors" of one float, a 4 x 4
 * micro-kernel. Used where neither AVX2 nor AVX-512 is available, and by tests (setIsa). */
#include <math.h>

#include "mixer.h"

#define MX_TABLE mx_kernels_generic
#define MX_NAME "generic"
#define VW 1
typedef float vf;
typedef int vmask;

static inline vmask v_tailmask(int n) { return n; }
static inline vf v_zero(void) { return 0.0f; }
static inline vf v_set1(float x) { return x; }
static inline vf v_load(const float *p) { return *p; }
static inline void v_store(float *p, vf v) { *p = v; }
static inline vf v_loadm(const float *p, vmask m) { (void)m; return *p; }
static inline void v_storem(float *p, vf v, vmask m) { (void)m; *p = v; }
static inline vf v_add(vf a, vf b) { return a + b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_mul(vf a, vf b) { return a * b; }
static inline vf v_max(vf a, vf b) { return a > b ? a : b; }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf v_exp2(vf x) { return exp2f(x); }

static inline float mx_fmaf(float a, float b, float c) { return a * b + c; } /* as v_fma */

#include "mixer_simd.h"
