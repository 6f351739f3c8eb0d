/* The per-ISA loops of kernels_nn.h, written once against a small vector layer and compiled
 * once per ISA. The including file defines, before including this one:
 *   NN_TABLE            name of the nn_kernels table to define
 *   VW                  floats per vector (16, 8, or 1 for the portable scalar build)
 *   vf, vm              vector and comparison-mask types
 *   v_zero v_set1 v_load v_store v_loadn(p,n,fill) v_storen(p,v,n)   (n < VW for the *n forms)
 *   v_add v_sub v_mul v_div v_sqrt v_abs v_neg
 *   v_fma(a,b,c)=a*b+c  v_fnma(a,b,c)=c-a*b  v_fms(a,b,c)=a*b-c (exact where the ISA has FMA)
 *   v_max(x,acc) v_min(x,acc): x86 semantics, the second operand when either is NaN
 *   v_lt v_gt v_ge v_unord(a) v_sel(m,t,f) v_mor(a,b) v_any(m)
 *   v_hsum v_hmax v_hmin  (horizontal, in float)
 *   v_exp               exp, ~1 ulp, exact 0 for -inf, NaN kept, inf above ~88.72
 *   vd, vd_zero vd_lo vd_hi vd_mul vd_fma vd_add vd_hsum: double vectors of half a float vector
 * Sums are taken in float over blocks of NN_BLK elements with two accumulators and the block
 * totals added in double, so a row of any length stays within ~1e-7 relative of a float64 sum. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels_nn.h"

/* Floating-point expressions are evaluated as written (GCC's ISO C mode does not contract a*b+c
 * into an FMA; clang must be told): the double-precision kernels match the reference bit for bit
 * only with its exact sequence of roundings. */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#define NN_BLK (16 * VW)
/* Rows accumulated in float before the weight-gradient partials are added into double. */
#define NN_FLUSH_ROWS 32

static inline size_t nn_min(size_t a, size_t b) { return a < b ? a : b; }

/* ---- vector math ---------------------------------------------------------------------------- */

static inline vf v_sigmoid(vf x) {
  const vf one = v_set1(1.0f);
  vf e = v_exp(v_neg(v_abs(x))); /* exp(-|x|) in (0, 1]: no overflow on either side */
  vf s = v_div(one, v_add(one, e));
  return v_sel(v_lt(x, v_zero()), v_mul(e, s), s);
}

/* For a >= 0 (or NaN): *erfc_out = erfc(a/sqrt2) and *gauss_out = exp(-a^2/2).
 * erfc is Numerical Recipes' erfcc, t*exp(-z^2 + P(t)) with t = 1/(1 + z/2), whose relative
 * error is below 1.2e-7 for every z >= 0. The Gaussian factor is taken from a^2 split exactly
 * into hi + lo (FMA), so the result keeps its relative accuracy in the far tail. */
static inline void v_erfc_gauss(vf a, vf *erfc_out, vf *gauss_out) {
  const vf one = v_set1(1.0f);
  vf big = v_set1(15.0f);
  vm over = v_gt(a, big);
  a = v_min(big, a); /* keeps NaN */
  vf z = v_mul(a, v_set1(0.70710678118654752f));
  vf t = v_div(one, v_fma(v_set1(0.5f), z, one));
  vf p = v_set1(0.17087277f);
  p = v_fma(p, t, v_set1(-0.82215223f));
  p = v_fma(p, t, v_set1(1.48851587f));
  p = v_fma(p, t, v_set1(-1.13520398f));
  p = v_fma(p, t, v_set1(0.27886807f));
  p = v_fma(p, t, v_set1(-0.18628806f));
  p = v_fma(p, t, v_set1(0.09678418f));
  p = v_fma(p, t, v_set1(0.37409196f));
  p = v_fma(p, t, v_set1(1.00002368f));
  p = v_fma(p, t, v_set1(-1.26551223f));
  vf hi = v_mul(a, a);
  vf lo = v_fms(a, a, hi); /* a^2 = hi + lo exactly */
  /* exp(-(hi+lo)/2) = exp(-hi/2) * (1 - lo/2), lo/2 being below an ulp of hi */
  vf g = v_mul(v_exp(v_mul(hi, v_set1(-0.5f))), v_fnma(lo, v_set1(0.5f), one));
  vf e = v_mul(v_mul(t, v_exp(p)), g);
  *erfc_out = v_sel(over, v_zero(), e);
  *gauss_out = v_sel(over, v_zero(), g);
}

/* GELU with the exact normal CDF: x * Phi(x), Phi(x) = erfc(-x/sqrt2)/2. */
static inline vf v_gelu(vf x) {
  vf e, g;
  v_erfc_gauss(v_abs(x), &e, &g);
  vf twophi = v_sel(v_ge(x, v_zero()), v_sub(v_set1(2.0f), e), e); /* 2 Phi(x) */
  return v_mul(v_mul(v_set1(0.5f), x), twophi);
}

/* d/dx GELU = Phi(x) + x phi(x). */
static inline vf v_gelu_grad(vf x) {
  vf e, g;
  v_erfc_gauss(v_abs(x), &e, &g);
  vf he = v_mul(v_set1(0.5f), e);
  vf phi = v_sel(v_ge(x, v_zero()), v_sub(v_set1(1.0f), he), he);
  return v_fma(v_mul(x, v_set1(0.39894228040143268f)), g, phi);
}

/* Math.pow's special cases where C's pow differs: a NaN exponent always gives NaN, and so does
 * (+-1) ** (+-inf). */
static inline double nn_js_pow(double x, double y) {
  if (y != y || (fabs(x) == 1.0 && fabs(y) == INFINITY)) return NAN;
  return pow(x, y);
}

/* ---- row helpers ---------------------------------------------------------------------------- */

/* Largest entry, NaNs skipped (as the reference's `if (a > max)`); -inf when there is none. */
static inline float nn_row_max(const float *x, size_t n) {
  vf m0 = v_set1(-INFINITY), m1 = m0;
  size_t j = 0;
  for (; j + 2 * VW <= n; j += 2 * VW) {
    m0 = v_max(v_load(x + j), m0);
    m1 = v_max(v_load(x + j + VW), m1);
  }
  for (; j + VW <= n; j += VW) m0 = v_max(v_load(x + j), m0);
  if (j < n) m0 = v_max(v_loadn(x + j, n - j, -INFINITY), m0);
  return v_hmax(v_max(m0, m1));
}

/* Blocked sum of EXPR(j), where EXPR reads vectors at offset j (full) or via LOADN (tail). The
 * macro keeps one loop skeleton for the many sums the kernels need. */
#define NN_BLOCKED_SUM(total, n, BODY_FULL, BODY_TAIL)                                    \
  do {                                                                                     \
    size_t j_ = 0;                                                                         \
    while (j_ < (n)) {                                                                     \
      size_t end_ = nn_min(j_ + NN_BLK, (n));                                              \
      vf a0_ = v_zero(), a1_ = v_zero();                                                   \
      for (; j_ + 2 * VW <= end_; j_ += 2 * VW) {                                          \
        { size_t j = j_; a0_ = v_add(a0_, BODY_FULL); }                                    \
        { size_t j = j_ + VW; a1_ = v_add(a1_, BODY_FULL); }                               \
      }                                                                                    \
      for (; j_ + VW <= end_; j_ += VW) { size_t j = j_; a0_ = v_add(a0_, BODY_FULL); }    \
      if (j_ < end_) { size_t j = j_, r_ = end_ - j_; (void)r_; a0_ = v_add(a0_, BODY_TAIL); j_ = end_; } \
      (total) += (double)v_hsum(v_add(a0_, a1_));                                          \
    }                                                                                      \
  } while (0)

static inline double nn_row_sum(const float *x, size_t n) {
  double s = 0;
  NN_BLOCKED_SUM(s, n, v_load(x + j), v_loadn(x + j, r_, 0.0f));
  return s;
}

static inline double nn_row_dot(const float *a, const float *b, size_t n) {
  double s = 0;
  NN_BLOCKED_SUM(s, n, v_mul(v_load(a + j), v_load(b + j)),
                 v_mul(v_loadn(a + j, r_, 0.0f), v_loadn(b + j, r_, 0.0f)));
  return s;
}

static inline double nn_row_dot3(const float *a, const float *b, const float *c, size_t n) {
  double s = 0;
  NN_BLOCKED_SUM(s, n, v_mul(v_mul(v_load(a + j), v_load(b + j)), v_load(c + j)),
                 v_mul(v_mul(v_loadn(a + j, r_, 0.0f), v_loadn(b + j, r_, 0.0f)),
                       v_loadn(c + j, r_, 0.0f)));
  return s;
}

/* exp(x - m), m the row max, with the rounding error of x - m put back (TwoSum): without it the
 * relative error of exp grows with |x - m| (8 ulps at x - m = -12), with it exp's own ~2 ulps
 * remain. lo = m - 200 clamps -inf (exp gives 0 either way) so the error term stays finite. */
static inline vf v_exp_diff(vf x, vf m, vf lo) {
  x = v_max(lo, x); /* keeps NaN */
  vf s = v_sub(x, m);
  vf bb = v_sub(s, x);
  vf err = v_sub(v_sub(x, v_sub(s, bb)), v_add(m, bb));
  vf e = v_exp(s);
  return v_fma(e, err, e);
}

/* Sum of exp(x - shift), blocked into double. */
static inline double nn_row_sum_exp(const float *x, size_t n, float shift) {
  double total = 0;
  const vf s = v_set1(shift);
  NN_BLOCKED_SUM(total, n, v_exp(v_sub(v_load(x + j), s)),
                 v_exp(v_sub(v_loadn(x + j, r_, -INFINITY), s)));
  return total;
}

static inline void nn_row_fill(float *o, size_t n, float value) {
  for (size_t j = 0; j < n; j++) o[j] = value;
}

/* Applies a vector expression elementwise: o[j] = EXPR, where EXPR loads with LD(p) (p + j, a
 * full vector in the main loop and a 0-filled partial one at the tail, rem_ lanes). */
#define NN_MAP(n, o, EXPR)                                                     \
  do {                                                                         \
    size_t j = 0;                                                              \
    for (; j + VW <= (n); j += VW) {                                           \
      const size_t rem_ = VW;                                                  \
      (void)rem_;                                                              \
      vf r_ = (EXPR);                                                          \
      v_store((o) + j, r_);                                                    \
    }                                                                          \
    if (j < (n)) {                                                             \
      const size_t rem_ = (n) - j;                                             \
      vf r_ = (EXPR);                                                          \
      v_storen((o) + j, r_, rem_);                                             \
    }                                                                          \
  } while (0)
/* Load for NN_MAP: full vector in the main loop, a masked one (filled with 0) in the tail. */
#define LD(p) (rem_ == VW ? v_load((p) + j) : v_loadn((p) + j, rem_, 0.0f))

/* ---- softmax -------------------------------------------------------------------------------- */

static void k_softmax(const float *x, float *out, size_t rows, size_t cols, int is_log) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *o = out + r * cols;
    float mx = nn_row_max(xr, cols);
    if (mx == -INFINITY) { nn_row_fill(o, cols, is_log ? -INFINITY : 0.0f); continue; }
    if (!is_log) {
      const vf m = v_set1(mx), lo = v_set1(mx - 200.0f);
      double s = 0;
      NN_BLOCKED_SUM(s, cols, ({ vf e_ = v_exp_diff(v_load(xr + j), m, lo); v_store(o + j, e_); e_; }),
                     ({ vf e_ = v_exp_diff(v_loadn(xr + j, r_, -INFINITY), m, lo);
                        v_storen(o + j, e_, r_); e_; }));
      vf inv = v_set1((float)(1.0 / s));
      NN_MAP(cols, o, v_mul(LD(o), inv));
    } else {
      double s = nn_row_sum_exp(xr, cols, mx);
      vf m = v_set1(mx), ls = v_set1((float)log(s));
      NN_MAP(cols, o, v_sub(v_sub(LD(xr), m), ls));
    }
  }
}

static void k_softmax_bwd(const float *y, const float *dy, float *dx, size_t rows, size_t cols,
                          int is_log) {
  for (size_t r = 0; r < rows; r++) {
    const float *yr = y + r * cols, *g = dy + r * cols;
    float *d = dx + r * cols;
    if (is_log) { /* dx = g - exp(y) * sum(g); exp(-inf) = 0 */
      vf s = v_set1((float)nn_row_sum(g, cols));
      NN_MAP(cols, d, v_fnma(v_exp(LD(yr)), s, LD(g)));
    } else { /* dx = y * (g - <g, y>) */
      vf s = v_set1((float)nn_row_dot(g, yr, cols));
      NN_MAP(cols, d, v_mul(LD(yr), v_sub(LD(g), s)));
    }
  }
}

/* ---- RMSNorm -------------------------------------------------------------------------------- */

static void k_rmsnorm(const float *x, const float *w, float *out, float *rstd, size_t rows,
                      size_t cols, double eps) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *o = out + r * cols;
    double ss = 0;
    NN_BLOCKED_SUM(ss, cols, v_mul(v_load(xr + j), v_load(xr + j)),
                   v_mul(v_loadn(xr + j, r_, 0.0f), v_loadn(xr + j, r_, 0.0f)));
    double rs = 1.0 / sqrt(ss / (double)cols + eps);
    rstd[r] = (float)rs;
    vf rv = v_set1((float)rs);
    if (w) NN_MAP(cols, o, v_mul(v_mul(LD(xr), rv), LD(w)));
    else NN_MAP(cols, o, v_mul(LD(xr), rv));
  }
}

static inline void nn_flush(float *f, double *d, size_t n) {
  for (size_t j = 0; j < n; j++) { d[j] += (double)f[j]; f[j] = 0.0f; }
}

/* sum of g*w*x (w may be NULL) with products and sums in double (each half of a float vector
 * widened): g*w is exact in double, and the FMA adds g*w*x with one rounding. */
static inline double nn_dot3_d(const float *g, const float *w, const float *x, size_t n) {
  vd a0 = vd_zero(), a1 = vd_zero();
  const vf one = v_set1(1.0f);
#define NN_DOT3_STEP(LOAD)                                       \
  do {                                                           \
    vf gv = LOAD(g), wv = w ? LOAD(w) : one, xv = LOAD(x);       \
    a0 = vd_fma(vd_mul(vd_lo(gv), vd_lo(wv)), vd_lo(xv), a0);    \
    a1 = vd_fma(vd_mul(vd_hi(gv), vd_hi(wv)), vd_hi(xv), a1);    \
  } while (0)
#define NN_FULL(p) v_load((p) + j)
#define NN_TAIL(p) v_loadn((p) + j, n - j, 0.0f)
  size_t j = 0;
  for (; j + VW <= n; j += VW) NN_DOT3_STEP(NN_FULL);
  if (j < n) NN_DOT3_STEP(NN_TAIL);
#undef NN_DOT3_STEP
#undef NN_FULL
#undef NN_TAIL
  return vd_hsum(vd_add(a0, a1));
}

/* dx = rs*g*w - x*rs^3*mean(g*w*x); dw += g*x*rs.
 * The two terms of dx cancel when g*w is nearly parallel to x (always, for one column), so the
 * row's dot and the difference are taken in double; the kernel is memory-bound, so this costs
 * next to nothing. */
static void k_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy,
                          float *dx, size_t rows, size_t cols, float *dwf, double *dwd) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols, *g = dy + r * cols;
    float *d = dx + r * cols;
    const double rs = rstd[r];
    const double c = rs * rs * rs * nn_dot3_d(g, w, xr, cols) / (double)cols;
    if (w)
      for (size_t j = 0; j < cols; j++)
        d[j] = (float)(rs * ((double)g[j] * (double)w[j]) - (double)xr[j] * c);
    else
      for (size_t j = 0; j < cols; j++) d[j] = (float)(rs * (double)g[j] - (double)xr[j] * c);
    if (dwf) {
      vf rv = v_set1((float)rs);
      NN_MAP(cols, dwf, v_fma(v_mul(LD(g), LD(xr)), rv, LD(dwf)));
      if ((r + 1) % NN_FLUSH_ROWS == 0) nn_flush(dwf, dwd, cols);
    }
  }
  if (dwf) nn_flush(dwf, dwd, cols);
}

/* ---- LayerNorm ------------------------------------------------------------------------------ */

static void k_layernorm(const float *x, const float *w, const float *b, float *out, float *mean,
                        float *rstd, size_t rows, size_t cols, double eps) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols;
    float *o = out + r * cols;
    /* Corrected two-pass moments: a first mean mu0 from a float-blocked sum is off by about an
     * ulp of sum|x| / n, which matters when the mean is large against the spread; the second
     * pass sums d = x - mu0 (mu0 as hi + lo floats, so d keeps float accuracy) and d^2, and
     * mu = mu0 + mean(d), var = mean(d^2) - mean(d)^2. */
    double mu0 = nn_row_sum(xr, cols) / (double)cols;
    float mh = (float)mu0, ml = (float)(mu0 - (double)mh);
    vf mhv = v_set1(mh), mlv = v_set1(ml);
    double sd = 0, sdd = 0;
    size_t j = 0;
    const size_t full = cols - cols % VW;
    while (j < full) {
      size_t end = nn_min(j + NN_BLK, full);
      vf a = v_zero(), a2 = v_zero();
      for (; j < end; j += VW) {
        vf d = v_sub(v_sub(v_load(xr + j), mhv), mlv);
        a = v_add(a, d);
        a2 = v_fma(d, d, a2);
      }
      sd += (double)v_hsum(a);
      sdd += (double)v_hsum(a2);
    }
    for (; j < cols; j++) {
      double d = (double)xr[j] - mu0;
      sd += d;
      sdd += d * d;
    }
    const double md = sd / (double)cols;
    const double mu = mu0 + md;
    double var = sdd / (double)cols - md * md;
    if (var < 0) var = 0;
    mh = (float)mu;
    ml = (float)(mu - (double)mh);
    mhv = v_set1(mh);
    mlv = v_set1(ml);
    double rs = 1.0 / sqrt(var + eps);
    mean[r] = mh;
    rstd[r] = (float)rs;
    vf rv = v_set1((float)rs);
    if (w && b) NN_MAP(cols, o, v_fma(v_mul(v_sub(v_sub(LD(xr), mhv), mlv), rv), LD(w), LD(b)));
    else if (w) NN_MAP(cols, o, v_mul(v_mul(v_sub(v_sub(LD(xr), mhv), mlv), rv), LD(w)));
    else if (b) NN_MAP(cols, o, v_fma(v_sub(v_sub(LD(xr), mhv), mlv), rv, LD(b)));
    else NN_MAP(cols, o, v_mul(v_sub(v_sub(LD(xr), mhv), mlv), rv));
  }
}

/* xh = (x - mu)*rs, gw = g*w: dx = rs*(gw - mean(gw) - xh*mean(gw*xh)); dw += g*xh; db += g. */
static void k_layernorm_bwd(const float *x, const float *w, const float *mean, const float *rstd,
                            const float *dy, float *dx, size_t rows, size_t cols, float *dwf,
                            double *dwd, float *dbf, double *dbd) {
  const vf one = v_set1(1.0f);
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * cols, *g = dy + r * cols;
    float *d = dx + r * cols;
    vf mv = v_set1(mean[r]), rv = v_set1(rstd[r]);
    double sg = 0, sgx = 0;
    /* rem_ is VW in full vectors, so LD works in both bodies */
    NN_BLOCKED_SUM(sg, cols, ({ size_t rem_ = VW; (void)rem_; w ? v_mul(LD(g), LD(w)) : LD(g); }),
                   ({ size_t rem_ = r_; w ? v_mul(LD(g), LD(w)) : LD(g); }));
    NN_BLOCKED_SUM(sgx, cols,
                   ({ size_t rem_ = VW; (void)rem_;
                      v_mul(w ? v_mul(LD(g), LD(w)) : LD(g), v_mul(v_sub(LD(xr), mv), rv)); }),
                   ({ size_t rem_ = r_;
                      v_mul(w ? v_mul(LD(g), LD(w)) : LD(g), v_mul(v_sub(LD(xr), mv), rv)); }));
    vf a = v_set1((float)(sg / (double)cols)), bb = v_set1((float)(sgx / (double)cols));
    NN_MAP(cols, d, ({
      vf xh_ = v_mul(v_sub(LD(xr), mv), rv);
      vf gw_ = w ? v_mul(LD(g), LD(w)) : LD(g);
      v_mul(rv, v_fnma(xh_, bb, v_sub(gw_, a)));
    }));
    if (dwf) NN_MAP(cols, dwf, v_fma(LD(g), v_mul(v_sub(LD(xr), mv), rv), LD(dwf)));
    if (dbf) NN_MAP(cols, dbf, v_add(LD(g), LD(dbf)));
    if ((r + 1) % NN_FLUSH_ROWS == 0) {
      if (dwf) nn_flush(dwf, dwd, cols);
      if (dbf) nn_flush(dbf, dbd, cols);
    }
    (void)one;
  }
  if (dwf) nn_flush(dwf, dwd, cols);
  if (dbf) nn_flush(dbf, dbd, cols);
}

/* ---- cross-entropy -------------------------------------------------------------------------- */

static void k_xent(const float *logits, const int32_t *targets, float *losses, float *lse,
                   size_t rows, size_t cols, int32_t ignore) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = logits + r * cols;
    float mx = nn_row_max(xr, cols);
    double s = nn_row_sum_exp(xr, cols, mx);
    double l = (double)mx + log(s);
    lse[r] = (float)l;
    int32_t t = targets[r];
    losses[r] = t == ignore ? 0.0f : (float)(l - (double)xr[t]);
  }
}

static void k_xent_bwd(const float *logits, const int32_t *targets, const float *lse,
                       const float *dloss, float *dlogits, size_t rows, size_t cols,
                       int32_t ignore) {
  for (size_t r = 0; r < rows; r++) {
    const float *xr = logits + r * cols;
    float *d = dlogits + r * cols;
    int32_t t = targets[r];
    if (t == ignore) { nn_row_fill(d, cols, 0.0f); continue; }
    float gs = dloss[r];
    vf g = v_set1(gs), l = v_set1(lse[r]);
    NN_MAP(cols, d, v_mul(g, v_exp(v_sub(LD(xr), l))));
    d[t] -= gs;
  }
}

/* ---- elementwise ---------------------------------------------------------------------------- */

/* exp/sigmoid/silu/gelu run on vectors; the rest are exact IEEE operations (computed in double
 * where the reference's double rounding differs from float's) or libm calls. */
static void k_unary(int op, const float *x, float *o, size_t n, double scalar) {
  switch (op) {
    case NN_NEG: for (size_t i = 0; i < n; i++) o[i] = -x[i]; break;
    case NN_ABS: for (size_t i = 0; i < n; i++) o[i] = fabsf(x[i]); break;
    case NN_EXP: NN_MAP(n, o, v_exp(LD(x))); break;
    case NN_LOG: for (size_t i = 0; i < n; i++) o[i] = logf(x[i]); break;
    case NN_SQRT: for (size_t i = 0; i < n; i++) o[i] = sqrtf(x[i]); break;
    case NN_RSQRT: for (size_t i = 0; i < n; i++) o[i] = (float)(1.0 / sqrt((double)x[i])); break;
    case NN_TANH: for (size_t i = 0; i < n; i++) o[i] = tanhf(x[i]); break;
    case NN_SIGMOID: NN_MAP(n, o, v_sigmoid(LD(x))); break;
    case NN_SILU: NN_MAP(n, o, ({ vf x_ = LD(x); v_mul(x_, v_sigmoid(x_)); })); break;
#if VW == 1
    case NN_GELU:
      for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        o[i] = (float)(0.5 * xd * erfc(-xd * 0.70710678118654752));
      }
      break;
#else
    case NN_GELU: NN_MAP(n, o, v_gelu(LD(x))); break;
#endif
    case NN_RELU: for (size_t i = 0; i < n; i++) o[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case NN_SQUARE: for (size_t i = 0; i < n; i++) o[i] = x[i] * x[i]; break;
    case NN_RECIPROCAL: for (size_t i = 0; i < n; i++) o[i] = 1.0f / x[i]; break;
    case NN_POW:
      if (scalar == 1.0) memmove(o, x, n * sizeof(float));
      else if (scalar == 2.0) for (size_t i = 0; i < n; i++) o[i] = x[i] * x[i];
      else for (size_t i = 0; i < n; i++) o[i] = (float)nn_js_pow((double)x[i], scalar);
      break;
    case NN_SIGN:
      for (size_t i = 0; i < n; i++) o[i] = x[i] > 0.0f ? 1.0f : x[i] < 0.0f ? -1.0f : x[i];
      break;
    default: break;
  }
}

/* dx = dy * f'(x, y), as the reference's unaryDerivative. */
static void k_unary_bwd(int op, const float *x, const float *y, const float *dy, float *dx,
                        size_t n, double scalar) {
  const float *g = dy;
  switch (op) {
    case NN_NEG: for (size_t i = 0; i < n; i++) dx[i] = -g[i]; break;
    case NN_ABS:
      for (size_t i = 0; i < n; i++) {
        float s = x[i] > 0.0f ? 1.0f : x[i] < 0.0f ? -1.0f : x[i]; /* Math.sign */
        dx[i] = g[i] * s;
      }
      break;
    case NN_EXP: for (size_t i = 0; i < n; i++) dx[i] = g[i] * y[i]; break;
    case NN_LOG: for (size_t i = 0; i < n; i++) dx[i] = (float)((double)g[i] * (1.0 / (double)x[i])); break;
    case NN_SQRT: for (size_t i = 0; i < n; i++) dx[i] = (float)((double)g[i] * (0.5 / (double)y[i])); break;
    case NN_RSQRT:
      for (size_t i = 0; i < n; i++) {
        double yd = y[i];
        dx[i] = (float)((double)g[i] * (-0.5 * yd * yd * yd));
      }
      break;
    case NN_TANH:
      for (size_t i = 0; i < n; i++) { double yd = y[i]; dx[i] = (float)((double)g[i] * (1.0 - yd * yd)); }
      break;
    case NN_SIGMOID:
      for (size_t i = 0; i < n; i++) { double yd = y[i]; dx[i] = (float)((double)g[i] * (yd * (1.0 - yd))); }
      break;
    case NN_SILU: {
      const vf one = v_set1(1.0f);
      NN_MAP(n, dx, ({
        vf x_ = LD(x), s_ = v_sigmoid(x_);
        v_mul(LD(g), v_mul(s_, v_fma(x_, v_sub(one, s_), one)));
      }));
      break;
    }
#if VW == 1
    case NN_GELU:
      for (size_t i = 0; i < n; i++) {
        double xd = x[i];
        double d = 0.5 * erfc(-xd * 0.70710678118654752) + xd * 0.39894228040143268 * exp(-0.5 * xd * xd);
        dx[i] = (float)((double)g[i] * d);
      }
      break;
#else
    case NN_GELU: NN_MAP(n, dx, v_mul(LD(g), v_gelu_grad(LD(x)))); break;
#endif
    case NN_RELU: for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? g[i] : g[i] * 0.0f; break;
    case NN_SQUARE: for (size_t i = 0; i < n; i++) dx[i] = (float)((double)g[i] * (2.0 * (double)x[i])); break;
    case NN_RECIPROCAL:
      for (size_t i = 0; i < n; i++) { double yd = y[i]; dx[i] = (float)((double)g[i] * (-yd * yd)); }
      break;
    case NN_POW:
      for (size_t i = 0; i < n; i++) {
        double d = scalar == 0.0 ? 0.0 : scalar * nn_js_pow((double)x[i], scalar - 1.0);
        dx[i] = (float)((double)g[i] * d);
      }
      break;
    case NN_SIGN: for (size_t i = 0; i < n; i++) dx[i] = g[i] * 0.0f; break;
    default: break;
  }
}

/* SwiGLU's gate: out = silu(a) * b, and its gradients da = dy * b * silu'(a), db = dy * silu(a),
 * with silu'(a) = s (1 + a (1 - s)), s = sigmoid(a): one pass each way instead of five. */
static void k_swiglu(const float *a, const float *b, float *o, size_t n) {
  NN_MAP(n, o, ({ vf a_ = LD(a); v_mul(v_mul(a_, v_sigmoid(a_)), LD(b)); }));
}

static void k_swiglu_bwd(const float *a, const float *b, const float *g, float *da, float *db,
                         size_t n) {
  const vf one = v_set1(1.0f);
  for (size_t j = 0; j < n; j += VW) {
    const size_t rem_ = nn_min(VW, n - j);
    vf a_ = LD(a), g_ = LD(g), s_ = v_sigmoid(a_);
    vf db_ = v_mul(g_, v_mul(a_, s_));
    vf da_ = v_mul(v_mul(g_, LD(b)), v_mul(s_, v_fma(a_, v_sub(one, s_), one)));
    if (rem_ == VW) { v_store(db + j, db_); v_store(da + j, da_); }
    else { v_storen(db + j, db_, rem_); v_storen(da + j, da_, rem_); }
  }
}

/* ---- Cubit's elementwise stages (kernels_nn.c cubit_nn_ref_norm*, cubit_nn_lrr*) -------------
 * Rows of one head at a time (the driver cuts at head boundaries); the per-row scalars are taken
 * in double, the row dots in double (exact products), and each row's terms of the per-head gradients are
 * written to part[] (double) for the driver to sum in row order. */

/* 1 / max(|r|, eps) from ss = |r|^2, as rsqrt(maximum(ss, eps^2)): the norm wins ties, NaN stays
 * NaN; *clamped tells the clamp is active (no gradient through the norm). */
static inline double nn_inv_norm(double ss, double eps2, int *clamped) {
  *clamped = !(ss >= eps2) && ss == ss;
  return 1.0 / sqrt(*clamped ? eps2 : ss);
}

static inline double nn_sigmoid_d(double x) {
  return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* out = (alpha / max(|r|, eps)) r per row. */
static void k_ref_norm(const float *r, float *out, size_t rows, size_t cols, double alpha,
                       double eps2) {
  for (size_t i = 0; i < rows; i++) {
    const float *ri = r + i * cols;
    float *o = out + i * cols;
    int clamped;
    const vf c = v_set1((float)(alpha * nn_inv_norm(nn_dot3_d(ri, NULL, ri, cols), eps2, &clamped)));
    NN_MAP(cols, o, v_mul(LD(ri), c));
  }
}

/* dr = alpha s g - [not clamped] alpha s^3 (g.r) r (dr may be NULL); part[i] = s (g.r). */
static void k_ref_norm_bwd(const float *r, const float *g, float *dr, double *part, size_t rows,
                           size_t cols, double alpha, double eps2) {
  for (size_t i = 0; i < rows; i++) {
    const float *ri = r + i * cols, *gi = g + i * cols;
    int clamped;
    const double s = nn_inv_norm(nn_dot3_d(ri, NULL, ri, cols), eps2, &clamped);
    const double gr = nn_dot3_d(gi, NULL, ri, cols);
    part[i] = s * gr;
    if (!dr) continue;
    float *d = dr + i * cols;
    const vf c1 = v_set1((float)(alpha * s)), c2 = v_set1(clamped ? 0.0f : (float)(alpha * s * s * s * gr));
    NN_MAP(cols, d, v_fnma(c2, LD(ri), v_mul(c1, LD(gi))));
  }
}

/* out = (lower + range sigmoid(z_i)) v per row. */
static void k_lrr(const float *v, const float *z, float *out, size_t rows, size_t cols,
                  double lower, double range) {
  for (size_t i = 0; i < rows; i++) {
    const float *vi = v + i * cols;
    float *o = out + i * cols;
    const vf c = v_set1((float)(lower + range * nn_sigmoid_d(z[i])));
    NN_MAP(cols, o, v_mul(LD(vi), c));
  }
}

/* dv = s g, dz = range sg (1 - sg) (g.v) (each may be NULL); part[2i] = g.v, part[2i+1] = sg (g.v). */
static void k_lrr_bwd(const float *v, const float *z, const float *g, float *dv, float *dz,
                      double *part, size_t rows, size_t cols, double lower, double range) {
  for (size_t i = 0; i < rows; i++) {
    const float *vi = v + i * cols, *gi = g + i * cols;
    const double sg = nn_sigmoid_d(z[i]), gv = nn_dot3_d(gi, NULL, vi, cols);
    part[2 * i] = gv;
    part[2 * i + 1] = sg * gv;
    if (dz) dz[i] = (float)(range * sg * (1.0 - sg) * gv);
    if (!dv) continue;
    float *d = dv + i * cols;
    const vf c = v_set1((float)(lower + range * sg));
    NN_MAP(cols, d, v_mul(LD(gi), c));
  }
}

/* One rotary row (kernels_nn.c cubit_nn_rotary): pair i turned by (c[i], sign * s[i]) in double,
 * where the products of floats are exact, so the bits match the reference. A plain loop the
 * compiler widens to this ISA's double vectors. */
static void k_rotary_row(const float *restrict x, const float *restrict c, const float *restrict s,
                         float *restrict o, size_t half, double sign) {
  for (size_t i = 0; i < half; i++) {
    double a = x[i], z = x[i + half], cc = c[i], ss = sign * (double)s[i];
    o[i] = (float)(a * cc - z * ss);
    o[i + half] = (float)(z * cc + a * ss);
  }
}

/* The counter hash of src/core/random.ts (hash32): keep iff hash >= p * 2^32. */
static void k_dropout(float *out, size_t start, size_t n, uint32_t seed, uint64_t threshold,
                      float scale) {
  if (threshold > 0xffffffffu) { nn_row_fill(out, n, 0.0f); return; }
  const uint32_t t = (uint32_t)threshold, hs = seed * 0x9e3779b1u;
  for (size_t i = 0; i < n; i++) {
    uint32_t h = hs ^ ((uint32_t)(start + i) * 0x85ebca77u);
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    out[i] = h >= t ? scale : 0.0f;
  }
}

/* In double with the reference's operations in its order, so the step is bit-identical to it;
 * the kernel is memory-bound (seven streams), so double arithmetic costs little. */
static void k_adamw(float *p, const float *g, float *m, float *v, size_t n, const nn_adamw *a) {
  const double b1 = a->beta1, c1 = a->one_m_beta1, b2 = a->beta2, c2 = a->one_m_beta2, eps = a->eps,
               decay = a->decay, lr = a->lr, bc1 = a->bc1, bc2 = a->bc2;
  for (size_t i = 0; i < n; i++) {
    const double gi = g[i];
    const double mi = b1 * (double)m[i] + c1 * gi;
    const double vi = b2 * (double)v[i] + c2 * gi * gi;
    m[i] = (float)mi;
    v[i] = (float)vi;
    p[i] = (float)((double)p[i] * decay - (lr * (mi / bc1)) / (sqrt(vi / bc2) + eps));
  }
}

/* One inner loop per (op, stride pattern); the contiguous ones vectorise. */
#define NN_BIN_LOOPS(EXPR)                                                              \
  do {                                                                                  \
    if (sa == 1 && sb == 1) {                                                           \
      for (size_t i = 0; i < n; i++) { float x_ = a[i], y_ = b[i]; o[i] = (EXPR); }     \
    } else if (sa == 1 && sb == 0) {                                                    \
      const float y_ = b[0];                                                            \
      for (size_t i = 0; i < n; i++) { float x_ = a[i]; o[i] = (EXPR); }                \
    } else if (sa == 0 && sb == 1) {                                                    \
      const float x_ = a[0];                                                            \
      for (size_t i = 0; i < n; i++) { float y_ = b[i]; o[i] = (EXPR); }                \
    } else {                                                                            \
      for (size_t i = 0; i < n; i++) {                                                  \
        float x_ = a[(ptrdiff_t)i * sa], y_ = b[(ptrdiff_t)i * sb];                     \
        o[i] = (EXPR);                                                                  \
      }                                                                                 \
    }                                                                                   \
  } while (0)

static void k_binary(int op, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb,
                     float *o, size_t n) {
  switch (op) {
    case NN_ADD: NN_BIN_LOOPS(x_ + y_); break;
    case NN_SUB: NN_BIN_LOOPS(x_ - y_); break;
    case NN_MUL: NN_BIN_LOOPS(x_ * y_); break;
    case NN_DIV: NN_BIN_LOOPS(x_ / y_); break;
    case NN_MAXIMUM: NN_BIN_LOOPS((x_ >= y_ || x_ != x_) ? x_ : y_); break;
    case NN_MINIMUM: NN_BIN_LOOPS((x_ <= y_ || x_ != x_) ? x_ : y_); break;
    case NN_BPOW: NN_BIN_LOOPS((float)nn_js_pow((double)x_, (double)y_)); break;
    case NN_GT: NN_BIN_LOOPS(x_ > y_ ? 1.0f : 0.0f); break;
    case NN_GE: NN_BIN_LOOPS(x_ >= y_ ? 1.0f : 0.0f); break;
    case NN_LT: NN_BIN_LOOPS(x_ < y_ ? 1.0f : 0.0f); break;
    case NN_LE: NN_BIN_LOOPS(x_ <= y_ ? 1.0f : 0.0f); break;
    case NN_EQ: NN_BIN_LOOPS(x_ == y_ ? 1.0f : 0.0f); break;
    case NN_NE: NN_BIN_LOOPS(x_ != y_ ? 1.0f : 0.0f); break;
    default: break;
  }
}

static void k_where(const uint32_t *cond, ptrdiff_t sc, int cond_is_int, const float *a,
                    ptrdiff_t sa, const float *b, ptrdiff_t sb, float *o, size_t n) {
  /* a float is true unless it is +0 or -0 (NaN is true, as `c !== 0` in the reference) */
  const uint32_t mask = cond_is_int ? 0xffffffffu : 0x7fffffffu;
  if (sc == 1 && sa == 1 && sb == 1) {
    for (size_t i = 0; i < n; i++) o[i] = (cond[i] & mask) ? a[i] : b[i];
  } else {
    for (size_t i = 0; i < n; i++) {
      ptrdiff_t k = (ptrdiff_t)i;
      o[i] = (cond[k * sc] & mask) ? a[k * sa] : b[k * sb];
    }
  }
}

/* ---- reductions ----------------------------------------------------------------------------- */

static double k_reduce_run(int op, const float *x, size_t n) {
  if (op == NN_SUM) return nn_row_sum(x, n);
  /* max/min skipping NaN, then NaN if any was seen (the reference's NaN is sticky) */
  const float init = op == NN_MAX ? -INFINITY : INFINITY;
  vf acc = v_set1(init);
  vm nan = v_unord(acc);
  size_t j = 0;
  for (; j + VW <= n; j += VW) {
    vf v = v_load(x + j);
    nan = v_mor(nan, v_unord(v));
    acc = op == NN_MAX ? v_max(v, acc) : v_min(v, acc);
  }
  if (j < n) {
    vf v = v_loadn(x + j, n - j, init);
    nan = v_mor(nan, v_unord(v));
    acc = op == NN_MAX ? v_max(v, acc) : v_min(v, acc);
  }
  if (v_any(nan)) return NAN;
  return op == NN_MAX ? (double)v_hmax(acc) : (double)v_hmin(acc);
}

static void k_reduce_cols(int op, const float *x, size_t len, size_t stride, size_t n,
                          float *out) {
  float f[NN_COLS];
  double d[NN_COLS];
  if (op == NN_SUM) {
    for (size_t i = 0; i < n; i++) { f[i] = 0.0f; d[i] = 0.0; }
    for (size_t j = 0; j < len; j++) {
      const float *row = x + j * stride;
      NN_MAP(n, f, v_add(LD(f), LD(row)));
      if ((j + 1) % NN_FLUSH_ROWS == 0) nn_flush(f, d, n);
    }
    nn_flush(f, d, n);
    for (size_t i = 0; i < n; i++) out[i] = (float)d[i];
    return;
  }
  const int mx = op == NN_MAX;
  for (size_t i = 0; i < n; i++) f[i] = mx ? -INFINITY : INFINITY;
  for (size_t j = 0; j < len; j++) {
    const float *row = x + j * stride;
    /* acc = v beats acc || v is NaN ? v : acc; a NaN acc stays NaN */
    NN_MAP(n, f, ({
      vf v_ = LD(row), a_ = LD(f);
      vm take_ = v_mor(mx ? v_gt(v_, a_) : v_lt(v_, a_), v_unord(v_));
      v_sel(take_, v_, a_);
    }));
  }
  memcpy(out, f, n * sizeof(float));
}

const nn_kernels NN_TABLE = {
    .softmax = k_softmax,
    .softmax_bwd = k_softmax_bwd,
    .rmsnorm = k_rmsnorm,
    .rmsnorm_bwd = k_rmsnorm_bwd,
    .layernorm = k_layernorm,
    .layernorm_bwd = k_layernorm_bwd,
    .xent = k_xent,
    .xent_bwd = k_xent_bwd,
    .unary = k_unary,
    .unary_bwd = k_unary_bwd,
    .dropout = k_dropout,
    .adamw = k_adamw,
    .swiglu = k_swiglu,
    .rotary_row = k_rotary_row,
    .swiglu_bwd = k_swiglu_bwd,
    .ref_norm = k_ref_norm,
    .ref_norm_bwd = k_ref_norm_bwd,
    .lrr = k_lrr,
    .lrr_bwd = k_lrr_bwd,
    .binary = k_binary,
    .where = k_where,
    .reduce_run = k_reduce_run,
    .reduce_cols = k_reduce_cols,
};
