/* The mixer algorithms of mixer.h, written once against a small vector layer and compiled once
 * per ISA. The including file defines, before including this one:
 *   MX_TABLE   name of the function returning the mx_kernels table
 *   MX_NAME    its ISA name
 *   VW         floats per vector (16, 8, or 1 for the portable build)
 *   vf, vmask  vector type, tail-mask type
 *   v_zero v_set1 v_load v_store v_add v_sub v_mul v_max v_fma(a,b,c)=a*b+c
 *   v_tailmask(n) (1 <= n <= VW lanes) v_loadm(p,m) v_storem(p,v,m)
 *   v_exp2     2^x: exactly 0 for -inf (and below -126.5), NaN kept. The SIMD builds define
 *              MX_POLY_EXP2, v_min and v_pow2i(t) (2^n from the bits of t = x + 1.5*2^23) and
 *              get the polynomial below; the portable build defines v_exp2 as exp2f.
 *   mx_fmaf(a,b,c)  scalar a*b+c rounded as v_fma rounds it (fused where v_fma is)
 *
 * Per (b, h) and block of query rows R = [i0, i1) (nb rows, lanes of width ldq), the key span is
 * [k0, i1) with k0 = lo(i0). Its logits are computed chunk by chunk (MX_KC keys at a time) into
 * a transposed panel S[j][i]; nothing of size T x T exists. See CUBIT.md §3 for the maths.
 * Logits are kept in base 2 (log2(e) is folded into the transposed query panel), so softmax
 * weights are 2^(S - m): exp2 is about half the work of exp, and at D = 32 the exponentials
 * cost as much as the products. The saved lse is natural, as the interface says. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "mixer.h"

/* Keys per chunk of a panel: 64 keys x 64 lanes x 4 B = 16 KB, L1-resident with its operands. */
#ifndef MX_KC
#define MX_KC 64
#endif
/* Rows per step of the blocked b x b triangular solves. */
#define MX_SB 8

/* How a product is stored: C = acc, C += acc, C -= acc, C = -acc, or C = 2^(acc - e[j]) with e
 * a per-column vector (the rows' log-sum-exp when C is a panel of logits). One more mode, in a
 * separate tile family (so that the others' tiles compile without its extra operand), forms the
 * KRR backward's dS while the tile is in registers (no second pass):
 *   MM_PDS    C = P o (-acc - e[j]) with P (same layout and stride as C): dS = P o (dP - h) for
 *             dP = -acc and the rows' shift and sum h = e. */
enum { MM_SET = 0, MM_ADD = 1, MM_SUB = 2, MM_NEG = 3, MM_EXP2 = 4, MM_PDS = 5 };

#ifdef MX_POLY_EXP2
/* 2^x: n = round(x) by the 1.5*2^23 trick, 2^f on [-1/2, 1/2] by a degree-5 polynomial (relative
 * error 1.1e-7), 2^n built in the exponent bits. x is clamped to [-127, 127]; at -127 the
 * exponent field is 0, so the result is exactly 0 there (and for -inf). NaN stays NaN. Five
 * FMAs and a multiply: half the FMA-port work of a natural exp with its range reduction. */
static inline vf v_exp2(vf x) {
  x = v_min(v_set1(127.0f), v_max(v_set1(-127.0f), x));
  const vf magic = v_set1(12582912.0f);
  vf t = v_add(x, magic);
  vf f = v_sub(x, v_sub(t, magic));
  vf p = v_set1(1.326472614891827e-3f);
  p = v_fma(p, f, v_set1(9.671512991189957e-3f));
  p = v_fma(p, f, v_set1(5.550733581185341e-2f));
  p = v_fma(p, f, v_set1(0.24022242426872253f));
  p = v_fma(p, f, v_set1(0.6931470036506653f));
  p = v_fma(p, f, v_set1(1.0f));
  return v_mul(p, v_pow2i(t));
}
#endif

#define MX_LOG2E 1.44269504088896341f
#define MX_LN2 0.693147180559945309f

static inline int mx_imin(int a, int b) { return a < b ? a : b; }
static inline int mx_imax(int a, int b) { return a > b ? a : b; }
static inline int mx_round_up(int a, int b) { return (a + b - 1) / b * b; }

/* ---- the micro-kernel --------------------------------------------------------------------
 * C[i*ldc + j] (mode)= sum_p A[i*ars + p*acs] * B[p*ldb + j] for i < mr, j < nv*VW (the last
 * vector limited by `tail`). A is read by broadcasts, so either operand layout of A costs the
 * same; B rows are contiguous. mr and nv are compile-time constants in each instance, so the
 * accumulators live in registers. */
static inline __attribute__((always_inline)) void mx_tile(const int mr, const int nv,
                                                        const int has_tail, const int fam, int k,
                                                        const float *restrict A, ptrdiff_t ars,
                                                        ptrdiff_t acs, const float *restrict B,
                                                        ptrdiff_t ldb, float *restrict C,
                                                        ptrdiff_t ldc, int mode, vmask tail,
                                                        const float *restrict e,
                                                        const float *restrict P) {
  vf acc[24][4];
#pragma GCC unroll 24
  for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) acc[i][v] = v_zero();
  for (int p = 0; p < k; p++) {
    vf b[4];
    const float *bp = B + (ptrdiff_t)p * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++)
      b[v] = has_tail && v == nv - 1 ? v_loadm(bp + v * VW, tail) : v_load(bp + v * VW);
    const float *ap = A + (ptrdiff_t)p * acs;
#pragma GCC unroll 24
    for (int i = 0; i < mr; i++) {
      vf ai = v_set1(ap[i * ars]);
#pragma GCC unroll 4
      for (int v = 0; v < nv; v++) acc[i][v] = v_fma(ai, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 24
  for (int i = 0; i < mr; i++) {
    float *c = C + (ptrdiff_t)i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
      vf r = acc[i][v];
      const int masked = has_tail && v == nv - 1;
      if (!fam && (mode == MM_ADD || mode == MM_SUB)) {
        vf old = masked ? v_loadm(c + v * VW, tail) : v_load(c + v * VW);
        r = mode == MM_ADD ? v_add(old, r) : v_sub(old, r);
      } else if (!fam && mode == MM_NEG) {
        r = v_sub(v_zero(), r);
      } else if (!fam && mode == MM_EXP2) {
        r = v_exp2(v_sub(r, masked ? v_loadm(e + v * VW, tail) : v_load(e + v * VW)));
      } else if (fam && mode == MM_PDS) {
        const float *pp = P + (ptrdiff_t)i * ldc + v * VW;
        vf p = masked ? v_loadm(pp, tail) : v_load(pp);
        vf h = masked ? v_loadm(e + v * VW, tail) : v_load(e + v * VW);
        r = v_mul(p, v_sub(v_sub(v_zero(), r), h));
      }
      if (masked) v_storem(c + v * VW, r, tail);
      else v_store(c + v * VW, r);
    }
  }
}

typedef void (*mx_tile_fn)(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *B,
                           ptrdiff_t ldb, float *C, ptrdiff_t ldc, int mode, vmask tail,
                           const float *e);
typedef void (*mx_stile_fn)(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs, const float *B,
                            ptrdiff_t ldb, float *C, ptrdiff_t ldc, int mode, vmask tail,
                            const float *e, const float *P);

/* Per shape: whole vectors only (mx_tile_NV_MR), a masked last vector (mx_tilet_NV_MR) for
 * widths that are not a multiple of VW, and the same two for MM_PDS (mx_stile*), kept apart so
 * that the plain products' code is not burdened by it. */
#define MX_DEF_TILE(NV, MR)                                                                    \
  static void mx_tile_##NV##_##MR(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs,        \
                                  const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,      \
                                  int mode, vmask tail, const float *e) {                      \
    mx_tile(MR, NV, 0, 0, k, A, ars, acs, B, ldb, C, ldc, mode, tail, e, NULL);          \
  }                                                                                            \
  __attribute__((unused)) static void mx_tilet_##NV##_##MR(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs, \
                                   const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,     \
                                   int mode, vmask tail, const float *e) {                     \
    mx_tile(MR, NV, 1, 0, k, A, ars, acs, B, ldb, C, ldc, mode, tail, e, NULL);          \
  }                                                                                            \
  static void mx_stile_##NV##_##MR(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs,       \
                                   const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,     \
                                   int mode, vmask tail, const float *e, const float *P) {     \
    mx_tile(MR, NV, 0, 1, k, A, ars, acs, B, ldb, C, ldc, mode, tail, e, P);                   \
  }                                                                                            \
  __attribute__((unused)) static void mx_stilet_##NV##_##MR(int k, const float *A, ptrdiff_t ars, ptrdiff_t acs, \
                                   const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,     \
                                   int mode, vmask tail, const float *e, const float *P) {     \
    mx_tile(MR, NV, 1, 1, k, A, ars, acs, B, ldb, C, ldc, mode, tail, e, P);                   \
  }
#define MX_D4(NV) MX_DEF_TILE(NV, 1) MX_DEF_TILE(NV, 2) MX_DEF_TILE(NV, 3) MX_DEF_TILE(NV, 4)
#define MX_D6(NV) MX_D4(NV) MX_DEF_TILE(NV, 5) MX_DEF_TILE(NV, 6)
#define MX_D8(NV) MX_D6(NV) MX_DEF_TILE(NV, 7) MX_DEF_TILE(NV, 8)
#define MX_D12(NV) MX_D8(NV) MX_DEF_TILE(NV, 9) MX_DEF_TILE(NV, 10) MX_DEF_TILE(NV, 11) MX_DEF_TILE(NV, 12)
#define MX_D14(NV) MX_D12(NV) MX_DEF_TILE(NV, 13) MX_DEF_TILE(NV, 14)
#define MX_D24(NV) MX_D14(NV) MX_DEF_TILE(NV, 15) MX_DEF_TILE(NV, 16) MX_DEF_TILE(NV, 17) \
  MX_DEF_TILE(NV, 18) MX_DEF_TILE(NV, 19) MX_DEF_TILE(NV, 20) MX_DEF_TILE(NV, 21)          \
  MX_DEF_TILE(NV, 22) MX_DEF_TILE(NV, 23) MX_DEF_TILE(NV, 24)
#define MX_L4(F, NV) F##NV##_1, F##NV##_2, F##NV##_3, F##NV##_4
#define MX_L6(F, NV) MX_L4(F, NV), F##NV##_5, F##NV##_6
#define MX_L8(F, NV) MX_L6(F, NV), F##NV##_7, F##NV##_8
#define MX_L12(F, NV) MX_L8(F, NV), F##NV##_9, F##NV##_10, F##NV##_11, F##NV##_12
#define MX_L14(F, NV) MX_L12(F, NV), F##NV##_13, F##NV##_14
#define MX_L24(F, NV) MX_L14(F, NV), F##NV##_15, F##NV##_16, F##NV##_17, F##NV##_18,        \
  F##NV##_19, F##NV##_20, F##NV##_21, F##NV##_22, F##NV##_23, F##NV##_24
/* mx_tiles[has_tail][nv][mr], mx_stiles likewise */
#define MX_TABLES(L1, L2, L3, L4)                                                              \
  static const mx_tile_fn mx_f1[] = {0, L1(mx_tile_, 1)}, mx_t1[] = {0, L1(mx_tilet_, 1)};     \
  static const mx_tile_fn mx_f2[] = {0, L2(mx_tile_, 2)}, mx_t2[] = {0, L2(mx_tilet_, 2)};     \
  static const mx_tile_fn mx_f3[] = {0, L3(mx_tile_, 3)}, mx_t3[] = {0, L3(mx_tilet_, 3)};     \
  static const mx_tile_fn mx_f4[] = {0, L4(mx_tile_, 4)}, mx_t4[] = {0, L4(mx_tilet_, 4)};     \
  static const mx_tile_fn *const mx_tiles[2][5] = {{0, mx_f1, mx_f2, mx_f3, mx_f4},            \
                                                   {0, mx_t1, mx_t2, mx_t3, mx_t4}};           \
  static const mx_stile_fn mx_sf1[] = {0, L1(mx_stile_, 1)}, mx_st1[] = {0, L1(mx_stilet_, 1)}; \
  static const mx_stile_fn mx_sf2[] = {0, L2(mx_stile_, 2)}, mx_st2[] = {0, L2(mx_stilet_, 2)}; \
  static const mx_stile_fn mx_sf3[] = {0, L3(mx_stile_, 3)}, mx_st3[] = {0, L3(mx_stilet_, 3)}; \
  static const mx_stile_fn mx_sf4[] = {0, L4(mx_stile_, 4)}, mx_st4[] = {0, L4(mx_stilet_, 4)}; \
  static const mx_stile_fn *const mx_stiles[2][5] = {{0, mx_sf1, mx_sf2, mx_sf3, mx_sf4},      \
                                                     {0, mx_st1, mx_st2, mx_st3, mx_st4}};

#if VW == 16
/* 32 zmm: nv x mr accumulators + nv for B + 1 broadcast. */
MX_D24(1) MX_D14(2) MX_D8(3) MX_D6(4)
MX_TABLES(MX_L24, MX_L14, MX_L8, MX_L6)
static const int mx_mr[] = {0, 24, 14, 8, 6};
#define MX_NVMAX 4
#elif VW == 8
/* 16 ymm: 6 x 16 (12 accumulators + 2 + 1) or 12 x 8. */
MX_D12(1) MX_D6(2)
static const mx_tile_fn mx_f1[] = {0, MX_L12(mx_tile_, 1)}, mx_t1[] = {0, MX_L12(mx_tilet_, 1)};
static const mx_tile_fn mx_f2[] = {0, MX_L6(mx_tile_, 2)}, mx_t2[] = {0, MX_L6(mx_tilet_, 2)};
static const mx_tile_fn *const mx_tiles[2][3] = {{0, mx_f1, mx_f2}, {0, mx_t1, mx_t2}};
static const mx_stile_fn mx_sf1[] = {0, MX_L12(mx_stile_, 1)}, mx_st1[] = {0, MX_L12(mx_stilet_, 1)};
static const mx_stile_fn mx_sf2[] = {0, MX_L6(mx_stile_, 2)}, mx_st2[] = {0, MX_L6(mx_stilet_, 2)};
static const mx_stile_fn *const mx_stiles[2][3] = {{0, mx_sf1, mx_sf2}, {0, mx_st1, mx_st2}};
static const int mx_mr[] = {0, 12, 6};
#define MX_NVMAX 2
#else
/* Portable build: 4 x 4 scalars. */
MX_D4(4)
static const mx_tile_fn mx_f4[] = {0, MX_L4(mx_tile_, 4)};
static const mx_tile_fn *const mx_tiles[2][5] = {{0, mx_f4, mx_f4, mx_f4, mx_f4}, {0}};
static const mx_stile_fn mx_sf4[] = {0, MX_L4(mx_stile_, 4)};
static const mx_stile_fn *const mx_stiles[2][5] = {{0, mx_sf4, mx_sf4, mx_sf4, mx_sf4}, {0}};
static const int mx_mr[] = {0, 4, 4, 4, 4};
#define MX_NVMAX 4
#endif

/* C (m x n, row stride ldc) (mode)= op(A) B with op(A)(i, p) = A[i*ars + p*acs] (m x k) and B
 * row-major k x n (row stride ldb); e (n floats) is read by MM_EXP2 / MM_PDS, P (m x n, stride
 * ldc) by MM_PDS. C must not overlap A, B or P. */
static void mx_mm_x(int m, int n, int k, const float *A, ptrdiff_t ars, ptrdiff_t acs,
                    const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int mode,
                    const float *e, const float *P) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || VW == 1) {
    /* No products (acc = 0), or the portable build's edges: scalar, the tile's order. */
    const int strip = VW == 1 ? 4 : n;
    for (int j0 = 0; j0 < n; j0 += strip) {
      const int w = mx_imin(strip, n - j0);
      for (int i0 = 0; i0 < m; i0 += 4) {
        const int mr = mx_imin(4, m - i0);
        if (VW == 1 && k > 0 && w == 4) {
          if (mode == MM_PDS)
            mx_stiles[0][4][mr](k, A + (ptrdiff_t)i0 * ars, ars, acs, B + j0, ldb,
                                C + (ptrdiff_t)i0 * ldc + j0, ldc, mode, v_tailmask(1),
                                e + j0, P + (ptrdiff_t)i0 * ldc + j0);
          else
            mx_tiles[0][4][mr](k, A + (ptrdiff_t)i0 * ars, ars, acs, B + j0, ldb,
                               C + (ptrdiff_t)i0 * ldc + j0, ldc, mode, v_tailmask(1),
                               e ? e + j0 : NULL);
          continue;
        }
        for (int j = j0; j < j0 + w; j++) {
          for (int i = i0; i < i0 + mr; i++) {
            float acc = 0;
            for (int p = 0; p < k; p++) acc += A[(ptrdiff_t)i * ars + (ptrdiff_t)p * acs] * B[(ptrdiff_t)p * ldb + j];
            float *c = C + (ptrdiff_t)i * ldc + j;
            *c = mode == MM_SET ? acc : mode == MM_ADD ? *c + acc : mode == MM_SUB ? *c - acc
               : mode == MM_NEG ? (k > 0 ? -acc : 0.0f)
               : mode == MM_PDS ? P[(ptrdiff_t)i * ldc + j] * (-acc - e[j]) : exp2f(acc - e[j]);
          }
        }
      }
    }
    return;
  }
  const int strip = MX_NVMAX * VW;
  for (int j0 = 0; j0 < n; j0 += strip) {
    const int cols = mx_imin(n - j0, strip), nv = (cols + VW - 1) / VW;
    const int rem = cols - (nv - 1) * VW;
    vmask tail = v_tailmask(rem);
    const int MR = mx_mr[nv];
    const mx_tile_fn *tab = mx_tiles[rem != VW][nv];
    const mx_stile_fn *stab = mx_stiles[rem != VW][nv];
    const int pds = mode == MM_PDS;
    for (int i0 = 0; i0 < m; i0 += MR) {
      int mr = mx_imin(MR, m - i0);
      if (pds)
        stab[mr](k, A + (ptrdiff_t)i0 * ars, ars, acs, B + j0, ldb, C + (ptrdiff_t)i0 * ldc + j0,
                 ldc, mode, tail, e + j0, P + (ptrdiff_t)i0 * ldc + j0);
      else
        tab[mr](k, A + (ptrdiff_t)i0 * ars, ars, acs, B + j0, ldb, C + (ptrdiff_t)i0 * ldc + j0,
                ldc, mode, tail, e ? e + j0 : NULL);
    }
  }
}

static inline void mx_mm_e(int m, int n, int k, const float *A, ptrdiff_t ars, ptrdiff_t acs,
                           const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int mode,
                           const float *e) {
  mx_mm_x(m, n, k, A, ars, acs, B, ldb, C, ldc, mode, e, NULL);
}

static inline void mx_mm(int m, int n, int k, const float *A, ptrdiff_t ars, ptrdiff_t acs,
                         const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int mode) {
  mx_mm_e(m, n, k, A, ars, acs, B, ldb, C, ldc, mode, NULL);
}

/* ---- products over a chunk that may cross the block's diagonal ----------------------------
 * Keys j = c0 + (chunk row) and queries i = i0 + lane; entries with j > i are masked (P = 0,
 * logits -inf), so near the diagonal whole micro-tiles are known in advance to be masked and
 * are skipped. off = c0 - i0. Three shapes:
 *   MX_KEYS_X_LANES  C rows keys, C columns lanes (logits, dP): column strips whose lanes are all
 *                    below the tile's first key are skipped (zero-filled, so nothing stale or
 *                    NaN from an earlier call is left where P = 0 multiplies it).
 *   MX_LANES_BY_KEYS C rows lanes, k over keys (P V, dS K): k ends at the tile's last lane.
 *   MX_KEYS_BY_LANES C rows keys, k over lanes (P^T dO, dS^T Q): k starts at the tile's first key.
 * Away from the diagonal (c0 + m <= i0 + 1) nothing is skipped. The portable build computes
 * everything (the masked entries are exact zeros, so the result is the same). */
enum { MX_KEYS_X_LANES = 1, MX_LANES_BY_KEYS = 2, MX_KEYS_BY_LANES = 3 };

static void mx_mm_tri(int shape, int off, int m, int n, int k, const float *A, ptrdiff_t ars,
                      ptrdiff_t acs, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                      int mode, const float *e) {
  if (VW == 1 || m <= 0 || n <= 0 || k <= 0) {
    mx_mm_e(m, n, k, A, ars, acs, B, ldb, C, ldc, mode, e);
    return;
  }
  const int strip = MX_NVMAX * VW;
  for (int j0 = 0; j0 < n; j0 += strip) {
    const int cols = mx_imin(n - j0, strip), nv = (cols + VW - 1) / VW;
    const int rem = cols - (nv - 1) * VW;
    const vmask tail = v_tailmask(rem);
    const int MR = mx_mr[nv];
    const mx_tile_fn *tab = mx_tiles[rem != VW][nv];
    const float *ej = e ? e + j0 : NULL;
    for (int r = 0; r < m; r += MR) {
      const int mr = mx_imin(MR, m - r);
      int ka = 0, kb = k;
      if (shape == MX_KEYS_X_LANES) {
        if (r + off >= j0 + cols) kb = 0; /* every lane of the tile masked */
      } else if (shape == MX_LANES_BY_KEYS) {
        kb = mx_imin(k, r + mr - off); /* keys up to the tile's last lane i0 + r + mr - 1 */
      } else if (shape == MX_KEYS_BY_LANES) {
        ka = mx_imax(0, mx_imin(k, r + off)); /* lanes from the tile's first key c0 + r - i0 */
      }
      float *c = C + (ptrdiff_t)r * ldc + j0;
      if (kb - ka <= 0) {
        if (mode != MM_ADD && mode != MM_SUB)
          for (int i = 0; i < mr; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)cols * sizeof(float));
        continue;
      }
      tab[mr](kb - ka, A + (ptrdiff_t)r * ars + (ptrdiff_t)ka * acs, ars, acs,
              B + (ptrdiff_t)ka * ldb + j0, ldb, c, ldc, mode, tail, ej);
    }
  }
}

/* ---- small vector helpers over a row of D floats -------------------------------------- */

/* y += a * x */
static inline void mx_axpy(int D, float a, const float *restrict x, float *restrict y) {
  vf va = v_set1(a);
  int d = 0;
  for (; d + VW <= D; d += VW) v_store(y + d, v_fma(va, v_load(x + d), v_load(y + d)));
  if (d < D) {
    vmask m = v_tailmask(D - d);
    v_storem(y + d, v_fma(va, v_loadm(x + d, m), v_loadm(y + d, m)), m);
  }
}

/* y = a x (y may be x) */
static inline void mx_scal_to(int D, float a, const float *x, float *y) {
  vf va = v_set1(a);
  int c = 0;
  for (; c + VW <= D; c += VW) v_store(y + c, v_mul(va, v_load(x + c)));
  if (c < D) {
    vmask m = v_tailmask(D - c);
    v_storem(y + c, v_mul(va, v_loadm(x + c, m)), m);
  }
}

static inline void mx_scal(int D, float a, float *y) { mx_scal_to(D, a, y, y); }

/* x . y: vector FMAs along D, then the lanes summed. */
static inline float mx_dot(int D, const float *x, const float *y) {
  vf acc = v_zero();
  int c = 0;
  for (; c + VW <= D; c += VW) acc = v_fma(v_load(x + c), v_load(y + c), acc);
  if (c < D) {
    vmask m = v_tailmask(D - c);
    acc = v_fma(v_loadm(x + c, m), v_loadm(y + c, m), acc);
  }
  float t[VW], sum = 0;
  v_store(t, acc);
  for (int i = 0; i < VW; i++) sum += t[i];
  return sum;
}

/* z = a * (x - y); z may be x or y */
static inline void mx_sub_scal(int D, float a, const float *x, const float *y, float *z) {
  vf va = v_set1(a);
  int d = 0;
  for (; d + VW <= D; d += VW) v_store(z + d, v_mul(va, v_sub(v_load(x + d), v_load(y + d))));
  if (d < D) {
    vmask m = v_tailmask(D - d);
    v_storem(z + d, v_mul(va, v_sub(v_loadm(x + d, m), v_loadm(y + d, m))), m);
  }
}

/* Tt[p*ldq + i] = s * X[i*D + p] for i < nb; lanes nb..ldq are zero. */
static void mx_transpose(const float *X, int nb, int D, int ldq, float s, float *Tt) {
  for (int p = 0; p < D; p++) {
    float *t = Tt + (ptrdiff_t)p * ldq;
    for (int i = 0; i < nb; i++) t[i] = s * X[(ptrdiff_t)i * D + p];
    for (int i = nb; i < ldq; i++) t[i] = 0;
  }
}

/* ---- masks -------------------------------------------------------------------------------
 * Sets to `fill` (-inf for logits, 0 for weights) the entries of panel rows j in [j0, j1) (S
 * points at row j0) that query rows i0 + lane (lane < nb) may not see. Rows j in
 * [lo(i1-1), i0] are visible to every query of the block and are skipped, unless documents
 * must be compared element by element. */
static void mx_mask(const mx_dims *d, int b, int i0, int nb, int ldq, int j0, int j1, float *S,
                    float fill) {
  const int32_t *lo = d->lo + (ptrdiff_t)b * d->T;
  const int ids = d->ids_elementwise[b];
  const int32_t *id = ids ? d->doc + (ptrdiff_t)b * d->T : NULL;
  const int full_lo = lo[i0 + nb - 1], full_hi = i0;
  for (int j = j0; j < j1; j++) {
    if (!ids && j >= full_lo && j <= full_hi) continue;
    float *row = S + (ptrdiff_t)(j - j0) * ldq;
    int a = mx_imin(mx_imax(j - i0, 0), nb); /* lanes below: j > i (above the diagonal) */
    int lo_i = a, hi_i = nb;                  /* first lane at or after a with lo(i) > j */
    while (lo_i < hi_i) {
      int mid = (lo_i + hi_i) / 2;
      if (lo[i0 + mid] > j) hi_i = mid;
      else lo_i = mid + 1;
    }
    for (int i = 0; i < a; i++) row[i] = fill;
    for (int i = lo_i; i < nb; i++) row[i] = fill;
    if (ids)
      for (int i = a; i < lo_i; i++)
        if (id[i0 + i] != id[j]) row[i] = fill;
  }
}

/* ---- softmax pieces over panel lanes ------------------------------------------------------ */

/* The lanes [i, i + VW) of nc panel rows turned into 2^(S - m), and their sums (two chains). */
static inline vf mx_exp2_lanes(float *S, int nc, int ldq, int i, vf m) {
  vf s0 = v_zero(), s1 = v_zero();
  int j = 0;
  for (; j + 1 < nc; j += 2) {
    float *r0 = S + (ptrdiff_t)j * ldq + i, *r1 = r0 + ldq;
    vf e0 = v_exp2(v_sub(v_load(r0), m)), e1 = v_exp2(v_sub(v_load(r1), m));
    v_store(r0, e0);
    v_store(r1, e1);
    s0 = v_add(s0, e0);
    s1 = v_add(s1, e1);
  }
  if (j < nc) {
    float *r0 = S + (ptrdiff_t)j * ldq + i;
    vf e0 = v_exp2(v_sub(v_load(r0), m));
    v_store(r0, e0);
    s0 = v_add(s0, e0);
  }
  return v_add(s0, s1);
}

/* S = 2^(S - m) over nc panel rows, and l += their sums, per lane: weights against a known bound
 * m. A pass of its own over the L1-resident panel: in the product's store (as MM_EXP2 does) the
 * exponential's temporaries spill the AVX2 tile's registers, 2-9% slower there (no difference
 * with AVX-512's 32 registers). */
static void mx_exp2_sums(float *S, int nc, int ldq, const float *m, float *l) {
  for (int i = 0; i < ldq; i += VW) v_store(l + i, v_add(v_load(l + i), mx_exp2_lanes(S, nc, ldq, i, v_load(m + i))));
}

/* Online softmax (base 2): folds nc panel rows into the running max m (>= -FLT_MAX, so never
 * -inf) and sum l of each lane, turns the rows into 2^(S - m_new), and rescales the rows of the
 * nb x D accumulator U by 2^(m_old - m_new). */
static void mx_online(float *S, int nc, int ldq, float *m, float *l, float *corr, float *U,
                      int nb, int D) {
  for (int i = 0; i < ldq; i += VW) {
    vf mo = v_load(m + i);
    vf cm = v_set1(-INFINITY);
    for (int j = 0; j < nc; j++) cm = v_max(cm, v_load(S + (ptrdiff_t)j * ldq + i));
    vf mn = v_max(cm, mo);
    vf c = v_exp2(v_sub(mo, mn));
    v_store(l + i, v_fma(v_load(l + i), c, mx_exp2_lanes(S, nc, ldq, i, mn)));
    v_store(m + i, mn);
    v_store(corr + i, c);
  }
  for (int i = 0; i < nb; i++)
    if (corr[i] != 1.0f) mx_scal(D, corr[i], U + (ptrdiff_t)i * D);
}

/* ---- b x b triangular solves ---------------------------------------------------------------
 * P (nb x nb) is a block's diagonal tile in panel layout: P(i, j) = Pt[j*ldq + i], lower
 * triangular. X, Y, W and Z are nb x D row-major. */

/* (P + lam I) X = Y - W by forward substitution in steps of MX_SB rows, W holding on entry the
 * rows' sums over earlier blocks; the tile's part is added to W as it goes, so on return
 * W_i = (those) + sum_{j<i} P_ij X_j: the KRR forward's sum_{j<i} W_ij X_j, which wx needs. */
static void mx_solve_lower(int nb, int D, const float *Pt, int ldq, float lam, const float *Y,
                           float *W, float *X) {
  for (int a = 0; a < nb; a += MX_SB) {
    int e = mx_imin(a + MX_SB, nb);
    if (a > 0) mx_mm(e - a, D, a, Pt + a, 1, ldq, X, D, W + (ptrdiff_t)a * D, D, MM_ADD);
    for (int i = a; i < e; i++) {
      float *wi = W + (ptrdiff_t)i * D, *xi = X + (ptrdiff_t)i * D;
      const float *yi = Y + (ptrdiff_t)i * D, s = 1.0f / (Pt[(ptrdiff_t)i * ldq + i] + lam);
      for (int j = a; j < i; j++) mx_axpy(D, Pt[(ptrdiff_t)j * ldq + i], X + (ptrdiff_t)j * D, wi);
      mx_sub_scal(D, s, yi, wi, xi);
    }
  }
}

/* (P + lam I)^T Z = Z, backward substitution in steps of MX_SB rows. */
static void mx_solve_upper_t(int nb, int D, const float *Pt, int ldq, float lam, float *Z) {
  for (int e = nb; e > 0; e -= MX_SB) {
    int a = mx_imax(e - MX_SB, 0);
    /* Z[a:e] -= P[e:nb, a:e]^T Z[e:nb]; op(A)(i, k) = P(e + k, a + i) = Pt[(a+i)*ldq + e + k] */
    if (e < nb)
      mx_mm(e - a, D, nb - e, Pt + (ptrdiff_t)a * ldq + e, ldq, 1, Z + (ptrdiff_t)e * D, D,
            Z + (ptrdiff_t)a * D, D, MM_SUB);
    for (int i = e - 1; i >= a; i--) {
      float *zi = Z + (ptrdiff_t)i * D;
      for (int k = i + 1; k < e; k++) mx_axpy(D, -Pt[(ptrdiff_t)i * ldq + k], Z + (ptrdiff_t)k * D, zi);
      mx_scal(D, 1.0f / (Pt[(ptrdiff_t)i * ldq + i] + lam), zi);
    }
  }
}

/* ---- attention forward: one row block (FlashAttention-2 style online softmax) ------------- */

static int mx_att_fwd(const mx_dims *d, const mx_att_args *a, int bh, int blk) {
  const int T = d->T, D = d->D, b = bh / d->H;
  const int i0 = blk * d->block, i1 = mx_imin(T, i0 + d->block), nb = i1 - i0;
  const int ldq = mx_round_up(nb, VW);
  const int k0 = d->lo[(ptrdiff_t)b * T + i0];
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  const float *K = a->k + off, *V = a->v + off;
  float *Qt = mx_scratch(0, (size_t)D * ldq), *S = mx_scratch(1, (size_t)MX_KC * ldq);
  float *st = mx_scratch(3, 3 * (size_t)ldq);
  float *U = a->o + off + (ptrdiff_t)i0 * D; /* the output rows accumulate in place */
  if (!Qt || !S || !st) return -1;
  float *m = st, *l = st + ldq, *corr = st + 2 * ldq;
  mx_transpose(a->q + off + (ptrdiff_t)i0 * D, nb, D, ldq, a->scale * MX_LOG2E, Qt);
  for (int i = 0; i < ldq; i++) m[i] = -FLT_MAX, l[i] = 0;
  memset(U, 0, (size_t)nb * D * sizeof(float));
  for (int c0 = k0; c0 < i1; c0 += MX_KC) {
    int nc = mx_imin(MX_KC, i1 - c0);
    mx_mm_tri(MX_KEYS_X_LANES, c0 - i0, nc, ldq, D, K + (ptrdiff_t)c0 * D, D, 1, Qt, ldq, S, ldq, MM_SET, NULL);
    mx_mask(d, b, i0, nb, ldq, c0, c0 + nc, S, -INFINITY);
    mx_online(S, nc, ldq, m, l, corr, U, nb, D);
    mx_mm_tri(MX_LANES_BY_KEYS, c0 - i0, nb, D, nc, S, 1, ldq, V + (ptrdiff_t)c0 * D, D, U, D, MM_ADD, NULL);
  }
  float *lse = a->lse + (ptrdiff_t)bh * T + i0;
  for (int i = 0; i < nb; i++) {
    mx_scal(D, 1.0f / l[i], U + (ptrdiff_t)i * D);
    lse[i] = m[i] * MX_LN2 + logf(l[i]);
  }
  return 0;
}

/* ---- attention backward: one (b, h), rows in blocks, keys in chunks -----------------------
 * dS = scale * P (dP - Drow), Drow_i = dO_i . O_i; dv += P^T dO, dq = dS k, dk += dS^T q.
 * mx_att_bwd_range does query blocks [blk0, blk1) into dK, dV (T x D, zeroed here): the whole
 * range into the outputs, or a group's range into the group's own pair. */

static int mx_att_bwd_range(const mx_dims *d, const mx_att_args *a, int bh, int blk0, int blk1,
                            float *dK, float *dV) {
  const int T = d->T, D = d->D, b = bh / d->H, bs = d->block;
  const int ldq_max = mx_round_up(mx_imin(bs, T), VW);
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  const float *Q = a->q + off, *K = a->k + off, *V = a->v + off, *O = a->out + off, *G = a->g + off;
  float *dQ = a->dq + off;
  float *Qt = mx_scratch(0, (size_t)D * ldq_max), *Gt = mx_scratch(4, (size_t)D * ldq_max);
  float *S = mx_scratch(1, (size_t)MX_KC * ldq_max), *dP = mx_scratch(2, (size_t)MX_KC * ldq_max);
  float *st = mx_scratch(3, 2 * (size_t)ldq_max);
  if (!Qt || !Gt || !S || !dP || !st) return -1;
  float *lse = st, *Dr = st + ldq_max;
  memset(dK, 0, (size_t)T * D * sizeof(float));
  memset(dV, 0, (size_t)T * D * sizeof(float));
  const vf vscale = v_set1(a->scale);
  for (int blk = blk0; blk < blk1; blk++) {
    const int i0 = blk * bs, i1 = mx_imin(T, i0 + bs), nb = i1 - i0, ldq = mx_round_up(nb, VW);
    const int k0 = d->lo[(ptrdiff_t)b * T + i0];
    mx_transpose(Q + (ptrdiff_t)i0 * D, nb, D, ldq, a->scale * MX_LOG2E, Qt);
    mx_transpose(G + (ptrdiff_t)i0 * D, nb, D, ldq, 1.0f, Gt);
    for (int i = 0; i < ldq; i++) {
      /* Drow_i = dO_i . O_i with the micro-kernel's fused multiply-adds in its order, so that
       * for a row with one visible key (O_i = V_i exactly) dP_ii - Drow_i is exactly 0. */
      float s = 0;
      if (i < nb)
        for (int c = 0; c < D; c++) s = mx_fmaf(O[(ptrdiff_t)(i0 + i) * D + c], G[(ptrdiff_t)(i0 + i) * D + c], s);
      Dr[i] = s;
      lse[i] = i < nb ? a->lse_in[(ptrdiff_t)bh * T + i0 + i] * MX_LOG2E : 0;
    }
    for (int c0 = k0; c0 < i1; c0 += MX_KC) {
      int nc = mx_imin(MX_KC, i1 - c0);
      const int off = c0 - i0;
      mx_mm_tri(MX_KEYS_X_LANES, off, nc, ldq, D, K + (ptrdiff_t)c0 * D, D, 1, Qt, ldq, S, ldq, MM_EXP2, lse);
      mx_mask(d, b, i0, nb, ldq, c0, c0 + nc, S, 0.0f);
      mx_mm_tri(MX_KEYS_BY_LANES, off, nc, D, nb, S, ldq, 1, G + (ptrdiff_t)i0 * D, D, dV + (ptrdiff_t)c0 * D, D, MM_ADD, NULL);
      mx_mm_tri(MX_KEYS_X_LANES, off, nc, ldq, D, V + (ptrdiff_t)c0 * D, D, 1, Gt, ldq, dP, ldq, MM_SET, NULL);
      for (int j = 0; j < nc; j++) {
        float *p = S + (ptrdiff_t)j * ldq, *q = dP + (ptrdiff_t)j * ldq;
        for (int i = 0; i < ldq; i += VW)
          v_store(q + i, v_mul(vscale, v_mul(v_load(p + i), v_sub(v_load(q + i), v_load(Dr + i)))));
      }
      mx_mm_tri(MX_LANES_BY_KEYS, off, nb, D, nc, dP, 1, ldq, K + (ptrdiff_t)c0 * D, D, dQ + (ptrdiff_t)i0 * D, D,
                c0 == k0 ? MM_SET : MM_ADD, NULL);
      mx_mm_tri(MX_KEYS_BY_LANES, off, nc, D, nb, dP, ldq, 1, Q + (ptrdiff_t)i0 * D, D, dK + (ptrdiff_t)c0 * D, D, MM_ADD, NULL);
    }
  }
  return 0;
}

static int mx_att_bwd(const mx_dims *d, const mx_att_args *a, int bh) {
  const ptrdiff_t off = (ptrdiff_t)bh * d->T * d->D;
  return mx_att_bwd_range(d, a, bh, 0, (d->T + d->block - 1) / d->block, a->dk + off, a->dv + off);
}

/* ---- KRR forward, blocks in order ----------------------------------------------------------
 * Per block: a softmax over the off-diagonal chunks gives U = sum_j w_ij X_j, the max m and sum
 * l of each lane (mx_krr_fwd_part, each group over its share of the chunks); mx_krr_fwd_close
 * merges the groups, folds in the diagonal tile (which closes the row's log-sum-exp) and solves
 * X_R = (P_RR + lam I)^-1 (Y_R - U / l).
 * The off-diagonal chunks do not need an online max: by Cauchy-Schwarz every logit of lane i is
 * at most m_i = |r_i| max_j |r^_j| (j over the group's keys), so the weights 2^(S - m_i) and
 * their sums are formed in one pass (mx_exp2_sums): no max pass, no rescaling of U. In
 * Cubit r^ = alpha r / |r|, so with alpha > 0 the bound is the row's diagonal logit: exact. A
 * loose bound would lose the small weights to underflow, so the close checks each row's sum
 * (l_i >= n 2^-32 means the row's largest weight was >= 2^-32 of the bound's) and redoes the
 * block with the online softmax (mx_online) when one fails, for the rows that failed. */

/* The chunks [c_lo, c_hi) (in MX_KC steps from k0) of group g of G over nch chunks. */
static inline void mx_group_chunks(int nch, int G, int g, int *c_lo, int *c_hi) {
  *c_lo = (int)((long long)nch * g / G);
  *c_hi = (int)((long long)nch * (g + 1) / G);
}

/* Whether panel rows (keys) [j0, j1) are visible to every query of the block (mx_mask leaves
 * them alone). */
static inline int mx_unmasked(const mx_dims *d, int b, int i0, int nb, int j0, int j1) {
  return !d->ids_elementwise[b] && j0 >= d->lo[(ptrdiff_t)b * d->T + i0 + nb - 1] && j1 - 1 <= i0;
}

/* ---- Cubit's stages fused into the solve (mx_krr_args: alpha, z) ---------------------------
 * The same formulas as the ops normalizeReference and lrrValues, row by row while the rows are
 * in cache: r^_i = alpha r_i / max(|r_i|, eps) and s_i = lower + range sigmoid(z_i). The rows'
 * dots are vector FMAs along D; the per-row scalars are independent across rows, so their
 * latencies overlap. */

/* 1 / max(|r|, eps) from ss = |r|^2 (NaN stays NaN); *clamped: the floor is active, so no
 * gradient flows through the norm. */
static inline float mx_inv_norm(float ss, float eps, int *clamped) {
  *clamped = !(ss >= eps * eps) && ss == ss;
  return 1.0f / (*clamped ? eps : sqrtf(ss));
}

/* sg[i] = sigmoid(z[i]) for i < n (n <= MX_STAGE_ROWS), as 1 / (1 + 2^(-z log2 e)). */
#define MX_STAGE_ROWS 64
static inline void mx_sigmoids(int n, const float *z, float *sg) {
  const vf k = v_set1(-MX_LOG2E), one = v_set1(1.0f);
  int i = 0;
  for (; i + VW <= n; i += VW) v_store(sg + i, v_add(one, v_exp2(v_mul(k, v_load(z + i)))));
  if (i < n) {
    vmask m = v_tailmask(n - i);
    v_storem(sg + i, v_add(one, v_exp2(v_mul(k, v_loadm(z + i, m)))), m);
  }
  for (i = 0; i < n; i++) sg[i] = 1.0f / sg[i];
}

/* Rows [i0, i1) of r^ (forward). */
static void mx_stage_ref_rows(const mx_dims *d, const mx_krr_args *a, int bh, int i0, int i1) {
  const int D = d->D;
  const ptrdiff_t off = (ptrdiff_t)bh * d->T * D;
  const float alpha = a->alpha[bh % d->H];
  for (int i = i0; i < i1; i++) {
    const float *r = a->r + off + (ptrdiff_t)i * D;
    int clamped;
    mx_scal_to(D, alpha * mx_inv_norm(mx_dot(D, r, r), a->eps, &clamped), r, a->rhw + off + (ptrdiff_t)i * D);
  }
}

/* Rows [i0, i1) of s o v into Y (nb x D) (forward). */
static void mx_stage_lrr_rows(const mx_dims *d, const mx_krr_args *a, int bh, int i0, int i1, float *Y) {
  const int D = d->D, h = bh % d->H;
  const ptrdiff_t off = (ptrdiff_t)bh * d->T * D;
  float sg[MX_STAGE_ROWS];
  for (int c0 = i0; c0 < i1; c0 += MX_STAGE_ROWS) {
    const int n = mx_imin(MX_STAGE_ROWS, i1 - c0);
    mx_sigmoids(n, a->z + (ptrdiff_t)bh * d->T + c0, sg);
    for (int i = 0; i < n; i++)
      mx_scal_to(D, a->lower[h] + a->range[h] * sg[i], a->y + off + (ptrdiff_t)(c0 + i) * D, Y + (ptrdiff_t)(c0 + i - i0) * D);
  }
}

/* The backward of both stages on rows [i0, i1), once the rows' dr, dr^ and Z are final: dr +=
 * alpha sc dr^ - [not clamped] alpha sc^3 (dr^ . r) r, dalpha += sc (dr^ . r); dv = s Z (in
 * place: dy holds Z), dz = range sg (1 - sg) (Z . v), dlower += Z . v, drange += sg (Z . v).
 * sums: this (b, h)'s MX_KBW_SUMS. */
static void mx_stage_bwd_rows(const mx_dims *d, const mx_krr_args *a, int bh, int i0, int i1,
                              double *sums) {
  const int D = d->D, h = bh % d->H;
  const ptrdiff_t off = (ptrdiff_t)bh * d->T * D;
  if (a->alpha) {
    const float alpha = a->alpha[h];
    for (int i = i0; i < i1; i++) {
      const ptrdiff_t o = off + (ptrdiff_t)i * D;
      const float *r = a->r + o, *g = a->drh + o;
      int clamped;
      const float sc = mx_inv_norm(mx_dot(D, r, r), a->eps, &clamped), gr = mx_dot(D, g, r);
      sums[1] += (double)sc * gr;
      mx_axpy(D, alpha * sc, g, a->dr + o);
      if (!clamped) mx_axpy(D, -alpha * sc * sc * sc * gr, r, a->dr + o);
    }
  }
  if (a->z) {
    const float lower = a->lower[h], range = a->range[h];
    float sg[MX_STAGE_ROWS];
    for (int c0 = i0; c0 < i1; c0 += MX_STAGE_ROWS) {
      const int n = mx_imin(MX_STAGE_ROWS, i1 - c0);
      mx_sigmoids(n, a->z + (ptrdiff_t)bh * d->T + c0, sg);
      for (int i = 0; i < n; i++) {
        const ptrdiff_t o = off + (ptrdiff_t)(c0 + i) * D;
        float *z = a->dy + o;
        const float zv = mx_dot(D, z, a->y + o);
        sums[2] += zv;
        sums[3] += (double)sg[i] * zv;
        a->dz[(ptrdiff_t)bh * d->T + c0 + i] = range * sg[i] * (1.0f - sg[i]) * zv;
        mx_scal(D, lower + range * sg[i], z);
      }
    }
  }
}

static int mx_krr_fwd_part_x(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh,
                             int blk, int g, int online) {
  const int T = d->T, D = d->D, b = bh / d->H, bs = d->block;
  const int i0 = blk * bs, i1 = mx_imin(T, i0 + bs), nb = i1 - i0;
  const int ldq = mx_round_up(nb, VW), ldq_max = mx_round_up(mx_imin(bs, T), VW);
  const int k0 = d->lo[(ptrdiff_t)b * T + i0];
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  float *m = ws + (size_t)g * mx_kfw_group_floats(d), *l = m + mx_ldqcap(d), *U = l + mx_ldqcap(d);
  for (int i = 0; i < ldq; i++) m[i] = -FLT_MAX, l[i] = 0;
  memset(U, 0, (size_t)nb * D * sizeof(float));
  int c_lo, c_hi;
  mx_group_chunks((i0 - k0 + MX_KC - 1) / MX_KC, G, g, &c_lo, &c_hi);
  if (c_lo >= c_hi) return 0;
  float *Rt = mx_scratch(0, (size_t)D * ldq_max), *S = mx_scratch(1, (size_t)MX_KC * ldq_max);
  float *corr = mx_scratch(3, (size_t)ldq_max);
  if (!Rt || !S || !corr) return -1;
  const float *R = a->r + off + (ptrdiff_t)i0 * D, *Rh = a->rh + off;
  mx_transpose(R, nb, D, ldq, MX_LOG2E, Rt);
  if (!online) { /* the bound m_i = |r_i| max_j |r^_j|, in base 2 (Rt holds r_i log2(e)) */
    const float *hn = ws + mx_kfw_norms(d, G);
    float h = 0;
    for (int j = k0 + c_lo * MX_KC, j1 = mx_imin(i0, k0 + c_hi * MX_KC); j < j1; j++) h = hn[j] > h ? hn[j] : h;
    const vf vh = v_set1(sqrtf(h));
    for (int i = 0; i < ldq; i += VW) {
      vf s = v_zero();
      for (int p = 0; p < D; p++) {
        vf t = v_load(Rt + (ptrdiff_t)p * ldq + i);
        s = v_fma(t, t, s);
      }
      v_store(m + i, s);
    }
    for (int i = 0; i < ldq; i++) m[i] = sqrtf(m[i]);
    for (int i = 0; i < ldq; i += VW) v_store(m + i, v_mul(v_load(m + i), vh));
  }
  for (int ci = c_lo; ci < c_hi; ci++) {
    const int c0 = k0 + ci * MX_KC, nc = mx_imin(MX_KC, i0 - c0);
    if (online) {
      mx_mm(nc, ldq, D, Rh + (ptrdiff_t)c0 * D, D, 1, Rt, ldq, S, ldq, MM_SET);
      mx_mask(d, b, i0, nb, ldq, c0, c0 + nc, S, -INFINITY);
      mx_online(S, nc, ldq, m, l, corr, U, nb, D);
    } else if (mx_unmasked(d, b, i0, nb, c0, c0 + nc)) {
      mx_mm(nc, ldq, D, Rh + (ptrdiff_t)c0 * D, D, 1, Rt, ldq, S, ldq, MM_SET);
      mx_exp2_sums(S, nc, ldq, m, l);
    } else {
      mx_mm_e(nc, ldq, D, Rh + (ptrdiff_t)c0 * D, D, 1, Rt, ldq, S, ldq, MM_EXP2, m);
      mx_mask(d, b, i0, nb, ldq, c0, c0 + nc, S, 0.0f);
      for (int i = 0; i < ldq; i += VW) {
        vf s = v_load(l + i);
        for (int j = 0; j < nc; j++) s = v_add(s, v_load(S + (ptrdiff_t)j * ldq + i));
        v_store(l + i, s);
      }
    }
    mx_mm(nb, D, nc, S, 1, ldq, a->x + off + (ptrdiff_t)c0 * D, D, U, D, MM_ADD);
  }
  return 0;
}

static int mx_krr_fwd_part(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh,
                           int blk, int g) {
  return mx_krr_fwd_part_x(d, a, ws, G, bh, blk, g, 0);
}

/* rt_ready: the calling thread's scratch slot 0 already holds the block's transposed r (this
 * thread ran a part of the block with chunks just before). */
static int mx_krr_fwd_close_x(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh,
                              int blk, int rt_ready) {
  const int T = d->T, D = d->D, b = bh / d->H, bs = d->block;
  const int i0 = blk * bs, i1 = mx_imin(T, i0 + bs), nb = i1 - i0;
  const int ldq = mx_round_up(nb, VW), ldq_max = mx_round_up(mx_imin(bs, T), VW);
  const int k0 = d->lo[(ptrdiff_t)b * T + i0];
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  const float lam = (float)exp((double)a->loglam[bh % d->H]);
  float *m = ws, *l = m + mx_ldqcap(d), *U = l + mx_ldqcap(d);
  float *keep = NULL; /* a fallback's rows that passed: their bound results (below) */
  int online = 0;
  if (a->alpha) mx_stage_ref_rows(d, a, bh, i0, i1); /* the diagonal tile's keys */
again:;
  /* (part_x, on a fallback, uses scratch slots 0, 1 and 3: take them after it) */
  float *Rt = mx_scratch(0, (size_t)D * ldq_max), *Sd = mx_scratch(2, (size_t)mx_imin(bs, T) * ldq_max);
  float *corr = mx_scratch(3, (size_t)ldq_max);
  if (!Rt || !Sd || !corr) return -1;
  if (G > 1) {
    /* Merge the groups into group 0: a common max (in m), each group's sums and U rescaled to
     * it by f = 2^(m_g - max) (in corr). */
    const size_t gs = mx_kfw_group_floats(d);
    for (int g = 1; g < G; g++)
      for (int i = 0; i < ldq; i += VW) v_store(corr + i, v_max(v_load(ws + g * gs + i), g == 1 ? v_load(m + i) : v_load(corr + i)));
    for (int g = 0; g < G; g++) {
      float *mg = ws + g * gs, *lg = mg + mx_ldqcap(d), *Ug = lg + mx_ldqcap(d);
      for (int i = 0; i < ldq; i += VW) {
        vf f = v_exp2(v_sub(v_load(mg + i), v_load(corr + i)));
        v_store(mg + i, f); /* m_g is not needed any more: keep f there */
        v_store(l + i, g == 0 ? v_mul(v_load(l + i), f) : v_fma(v_load(lg + i), f, v_load(l + i)));
      }
      for (int i = 0; i < nb; i++) {
        if (g == 0) { if (mg[i] != 1.0f) mx_scal(D, mg[i], U + (ptrdiff_t)i * D); }
        else mx_axpy(D, mg[i], Ug + (ptrdiff_t)i * D, U + (ptrdiff_t)i * D);
      }
    }
    for (int i = 0; i < ldq; i++) m[i] = corr[i];
  }
  if (!rt_ready) mx_transpose(a->r + off + (ptrdiff_t)i0 * D, nb, D, ldq, MX_LOG2E, Rt);
  mx_mm_tri(MX_KEYS_X_LANES, 0, nb, ldq, D, a->rh + off + (ptrdiff_t)i0 * D, D, 1, Rt, ldq, Sd, ldq, MM_SET, NULL);
  mx_mask(d, b, i0, nb, ldq, i0, i1, Sd, -INFINITY);
  /* loff: the off-diagonal chunks' share of l, brought to the final max below (for wx) */
  float *loff = mx_scratch(9, (size_t)ldq_max);
  if (!loff) return -1;
  memcpy(loff, l, (size_t)ldq * sizeof(float));
  mx_online(Sd, nb, ldq, m, l, corr, U, nb, D);
  for (int i = 0; i < ldq; i += VW) v_store(loff + i, v_mul(v_load(loff + i), v_load(corr + i)));
  const float n = (float)(i1 - k0), l_lo = n * 0x1p-32f, l_hi = 2 * n;
  if (!online && k0 < i0) {
    int ok = 1;
    for (int i = 0; i < nb; i++) ok &= l[i] >= l_lo && l[i] <= l_hi; /* false for NaN */
    if (!ok) {
      /* Only the failing rows take the online results: the rows that passed keep theirs (m, l,
       * U and their lanes of the diagonal tile, set aside here), so that a row's result never
       * depends on another row's, later tokens' included. */
      keep = mx_scratch(4, 3 * (size_t)ldq + (size_t)nb * D + (size_t)nb * ldq);
      if (!keep) return -1;
      memcpy(keep, m, (size_t)ldq * sizeof(float));
      memcpy(keep + ldq, l, (size_t)ldq * sizeof(float));
      memcpy(keep + 2 * ldq, U, (size_t)nb * D * sizeof(float));
      memcpy(keep + 2 * ldq + (ptrdiff_t)nb * D, Sd, (size_t)nb * ldq * sizeof(float));
      memcpy(keep + 2 * ldq + (ptrdiff_t)nb * D + (ptrdiff_t)nb * ldq, loff, (size_t)ldq * sizeof(float));
      online = 1;
      for (int g = 0; g < G; g++)
        if (mx_krr_fwd_part_x(d, a, ws, G, bh, blk, g, 1)) return -1;
      rt_ready = 1; /* k0 < i0: some group had chunks, and transposed r here */
      goto again;
    }
  } else if (keep) {
    const float *km = keep, *kl = keep + ldq, *kU = keep + 2 * ldq, *kS = kU + (ptrdiff_t)nb * D;
    const float *ko = kS + (ptrdiff_t)nb * ldq;
    for (int i = 0; i < nb; i++) {
      if (!(kl[i] >= l_lo && kl[i] <= l_hi)) continue;
      m[i] = km[i], l[i] = kl[i], loff[i] = ko[i];
      memcpy(U + (ptrdiff_t)i * D, kU + (ptrdiff_t)i * D, (size_t)D * sizeof(float));
      for (int j = 0; j < nb; j++) Sd[(ptrdiff_t)j * ldq + i] = kS[(ptrdiff_t)j * ldq + i];
    }
  }
  float *lse = a->lse + (ptrdiff_t)bh * T + i0;
  for (int i = 0; i < ldq; i++) {
    corr[i] = 1.0f / l[i]; /* now 1/l */
    if (i < nb) lse[i] = m[i] * MX_LN2 + logf(l[i]);
  }
  for (int j = 0; j < nb; j++) {
    float *r = Sd + (ptrdiff_t)j * ldq;
    for (int i = 0; i < ldq; i += VW) v_store(r + i, v_mul(v_load(r + i), v_load(corr + i)));
  }
  float *XR = a->x + off + (ptrdiff_t)i0 * D, *WR = a->wx + off + (ptrdiff_t)i0 * D;
  for (int i = 0; i < nb; i++) mx_scal_to(D, corr[i], U + (ptrdiff_t)i * D, WR + (ptrdiff_t)i * D);
  const float *YR = a->y + off + (ptrdiff_t)i0 * D;
  if (a->z) {
    float *Ys = mx_scratch(10, (size_t)nb * D);
    if (!Ys) return -1;
    mx_stage_lrr_rows(d, a, bh, i0, i1, Ys);
    YR = Ys;
  }
  mx_solve_lower(nb, D, Sd, ldq, lam, YR, WR, XR);
  /* wx_i = sum_{j != i} P_ij (X_j - X_i), summed as (sum_{j<i} P_ij X_j) - (sum_{j<i} P_ij) X_i
   * without the diagonal weight, so that it keeps its relative precision when P_ii ~ 1 (the
   * backward's row sums are -Z_i . wx_i). The second sum: loff / l and the tile's strict part
   * (its diagonal is not needed any more). */
  for (int i = 0; i < nb; i++) Sd[(ptrdiff_t)i * ldq + i] = 0;
  for (int i = 0; i < ldq; i += VW) {
    vf s = v_mul(v_load(loff + i), v_load(corr + i));
    for (int j = 0; j < nb; j++) s = v_add(s, v_load(Sd + (ptrdiff_t)j * ldq + i));
    v_store(loff + i, s);
  }
  for (int i = 0; i < nb; i++) mx_axpy(D, -loff[i], XR + (ptrdiff_t)i * D, WR + (ptrdiff_t)i * D);
  float *hn = ws + mx_kfw_norms(d, G); /* the block's keys for the later blocks' bounds */
  for (int j = i0; j < i1; j++) hn[j] = mx_dot(D, a->rh + off + (ptrdiff_t)j * D, a->rh + off + (ptrdiff_t)j * D);
  return 0;
}

static int mx_krr_fwd_close(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh,
                            int blk) {
  return mx_krr_fwd_close_x(d, a, ws, G, bh, blk, 0);
}

static int mx_krr_fwd(const mx_dims *d, const mx_krr_args *a, int bh) {
  float *ws = mx_scratch(6, mx_kfw_floats(d, 1));
  if (!ws) return -1;
  for (int blk = 0; blk * d->block < d->T; blk++) {
    const int i0 = blk * d->block, k0 = d->lo[(ptrdiff_t)(bh / d->H) * d->T + i0];
    if (mx_krr_fwd_part(d, a, ws, 1, bh, blk, 0) || mx_krr_fwd_close_x(d, a, ws, 1, bh, blk, k0 < i0)) return -1;
  }
  return 0;
}

/* ---- KRR backward, blocks from last to first -----------------------------------------------
 * dy holds G minus the contributions of the blocks done so far, so on reaching block R it is
 * the residual of the adjoint solve: Z_R = (P_RR + lam I)^-T dy_R. Then over the block's span,
 * dP = -Z_R X^T, dS = P o (dP - rowsum(P o dP)): dr_R = dS r^, dr^ += dS^T r_R, and
 * dy[k0:i0] -= P^T Z_R passes the adjoint on to earlier rows.
 * The row sums come in closed form from the forward's wx_i = sum_{j != i} P_ij (X_j - X_i): with
 * the shift sh_i = dP_ii, rowsum(P o (dP - sh))_i = -Z_i . wx_i =: c_i, and dS = P o (dP - sh - c).
 * So every chunk is finished as soon as its P and dP are formed, like attention's backward: dS is
 * made in the dP product's store (MM_PDS) and used while in L1, with no panel over the span.
 * The shift matters: with alpha > 0 the diagonal is the row's largest weight, often ~1, and
 * dP_ii - rowsum would cancel to a few float32 ulps of dP (dr, dr^ off by up to 1e-3 relative);
 * on the diagonal tile sh is that tile's own dP_ii, so the k = i term is exactly -P_ii c_i.
 * Phases per block: setup (diagonal tile, Z_R, sh, c, the tile's dS); grads (each group: P and
 * dS of its chunks, its part of dr_R, and dr^, dy on its chunks' rows; the diagonal tile with
 * group 0). The next block's setup adds up the groups' dr. */

static int mx_krr_bwd_setup(const mx_dims *d, const mx_krr_args *a, float *ws, int G, double *dl,
                            int bh, int blk) {
  const int T = d->T, D = d->D, b = bh / d->H, bs = d->block, nbmax = mx_nbmax(d);
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  const mx_kbw_layout L = mx_kbw(d, G);
  if ((blk + 1) * bs < T) { /* the block done last: its rows' dr, dr^ and Z are final */
    const int p0 = (blk + 1) * bs, pn = mx_imin(T, p0 + bs) - p0;
    if (G > 1) { /* dr: the sum of its groups' */
      float *dR = a->dr + off + (ptrdiff_t)p0 * D;
      memcpy(dR, ws + L.dR, (size_t)pn * D * sizeof(float));
      for (int g = 1; g < G; g++) {
        const float *part = ws + L.dR + (size_t)g * nbmax * D;
        for (ptrdiff_t n = 0; n < (ptrdiff_t)pn * D; n++) dR[n] += part[n];
      }
    }
    if (a->alpha || a->z) mx_stage_bwd_rows(d, a, bh, p0, p0 + pn, dl);
  }
  if (blk < 0) {
    a->dlam[bh] = (float)dl[0];
    if (a->alpha) a->dalpha[bh] = (float)dl[1];
    if (a->z) a->dlower[bh] = (float)dl[2], a->drange[bh] = (float)dl[3];
    return 0;
  }
  const int i0 = blk * bs, i1 = mx_imin(T, i0 + bs), nb = i1 - i0, ldq = mx_round_up(nb, VW);
  const float lam = (float)exp((double)a->loglam[bh % d->H]);
  float *Rt = ws + L.Rt, *Zt = ws + L.Zt, *lse = ws + L.lse, *sh = ws + L.sh, *h = ws + L.h;
  float *Pd = ws + L.Pd, *dSd = ws + L.dSd;
  if ((blk + 1) * bs >= T) { /* the first block of the sweep */
    memcpy(a->dy + off, a->g + off, (size_t)T * D * sizeof(float));
    memset(a->drh + off, 0, (size_t)T * D * sizeof(float));
    for (int k = 0; k < MX_KBW_SUMS; k++) dl[k] = 0;
  }
  for (int i = 0; i < ldq; i++) lse[i] = i < nb ? a->lse[(ptrdiff_t)bh * T + i0 + i] * MX_LOG2E : 0;
  mx_transpose(a->r + off + (ptrdiff_t)i0 * D, nb, D, ldq, MX_LOG2E, Rt);
  /* The diagonal tile first: the adjoint solve needs it. Its rows are the keys i0..i1. */
  mx_mm_tri(MX_KEYS_X_LANES, 0, nb, ldq, D, a->rh + off + (ptrdiff_t)i0 * D, D, 1, Rt, ldq, Pd, ldq, MM_EXP2, lse);
  mx_mask(d, b, i0, nb, ldq, i0, i1, Pd, 0.0f);
  float *Z = a->dy + off + (ptrdiff_t)i0 * D;
  const float *XR = a->x + off + (ptrdiff_t)i0 * D, *WR = a->wx + off + (ptrdiff_t)i0 * D;
  mx_solve_upper_t(nb, D, Pd, ldq, lam, Z);
  double s4[4] = {0, 0, 0, 0}; /* four chains: a single one is latency-bound */
  ptrdiff_t n = 0;
  for (; n + 4 <= (ptrdiff_t)nb * D; n += 4)
    for (int u = 0; u < 4; u++) s4[u] -= (double)Z[n + u] * XR[n + u];
  for (; n < (ptrdiff_t)nb * D; n++) s4[0] -= (double)Z[n] * XR[n];
  dl[0] += (s4[0] + s4[1]) + (s4[2] + s4[3]);
  mx_transpose(Z, nb, D, ldq, 1.0f, Zt);
  /* dP = -X Z^T on the diagonal tile: its diagonal is the shift sh. c_i = -Z_i . wx_i; the other
   * chunks subtract h = sh + c in one step. */
  mx_mm_tri(MX_KEYS_X_LANES, 0, nb, ldq, D, XR, D, 1, Zt, ldq, dSd, ldq, MM_NEG, NULL);
  float *c = ws + L.c;
  for (int i = 0; i < ldq; i++) {
    const float ci = i < nb ? -mx_dot(D, Z + (ptrdiff_t)i * D, WR + (ptrdiff_t)i * D) : 0;
    sh[i] = i < nb ? dSd[(ptrdiff_t)i * ldq + i] : 0;
    c[i] = ci;
    h[i] = sh[i] + ci;
  }
  for (int j = 0; j < nb; j++) {
    float *q = dSd + (ptrdiff_t)j * ldq;
    const float *p = Pd + (ptrdiff_t)j * ldq;
    for (int i = 0; i < ldq; i += VW)
      v_store(q + i, v_mul(v_load(p + i), v_sub(v_sub(v_load(q + i), v_load(sh + i)), v_load(c + i))));
  }
  return 0;
}

static int mx_krr_bwd_grads(const mx_dims *d, const mx_krr_args *a, float *ws, int G, int bh,
                            int blk, int g) {
  const int T = d->T, D = d->D, b = bh / d->H, bs = d->block;
  const int i0 = blk * bs, i1 = mx_imin(T, i0 + bs), nb = i1 - i0;
  const int ldq = mx_round_up(nb, VW), ldq_max = mx_round_up(mx_imin(bs, T), VW);
  const int k0 = d->lo[(ptrdiff_t)b * T + i0];
  const ptrdiff_t off = (ptrdiff_t)bh * T * D;
  const mx_kbw_layout L = mx_kbw(d, G);
  const float *Rt = ws + L.Rt, *Zt = ws + L.Zt, *lse = ws + L.lse, *h = ws + L.h;
  const float *Z = a->dy + off + (ptrdiff_t)i0 * D;
  const float *R = a->r + off, *Rh = a->rh + off, *X = a->x + off;
  float *dRh = a->drh + off, *dY = a->dy + off;
  float *Pc = mx_scratch(3, (size_t)MX_KC * ldq_max), *dSc = mx_scratch(5, (size_t)MX_KC * ldq_max);
  if (!Pc || !dSc) return -1;
  /* This group's part of dr_R: the output rows themselves when there is one group. */
  float *dRg = G == 1 ? a->dr + off + (ptrdiff_t)i0 * D : ws + L.dR + (size_t)g * mx_nbmax(d) * D;
  int first = 1;
  int c_lo, c_hi;
  mx_group_chunks((i0 - k0 + MX_KC - 1) / MX_KC, G, g, &c_lo, &c_hi);
  /* The group's chunks in order; group 0 ends with the diagonal tile (its dS made in setup). */
  for (int ci = c_lo, c_end = g == 0 ? c_hi : c_hi - 1; ci <= c_end; ci++) {
    const int diag = ci == c_hi;
    const int c0 = diag ? i0 : k0 + ci * MX_KC, nc = diag ? nb : mx_imin(MX_KC, i0 - c0);
    if (nc <= 0) continue;
    const float *dS = ws + L.dSd;
    if (!diag) {
      mx_mm_e(nc, ldq, D, Rh + (ptrdiff_t)c0 * D, D, 1, Rt, ldq, Pc, ldq, MM_EXP2, lse);
      mx_mask(d, b, i0, nb, ldq, c0, c0 + nc, Pc, 0.0f);
      mx_mm_x(nc, ldq, D, X + (ptrdiff_t)c0 * D, D, 1, Zt, ldq, dSc, ldq, MM_PDS, h, Pc);
      dS = dSc;
    }
    mx_mm_tri(MX_LANES_BY_KEYS, c0 - i0, nb, D, nc, dS, 1, ldq, Rh + (ptrdiff_t)c0 * D, D, dRg, D,
              first ? MM_SET : MM_ADD, NULL);
    first = 0;
    mx_mm_tri(MX_KEYS_BY_LANES, c0 - i0, nc, D, nb, dS, ldq, 1, R + (ptrdiff_t)i0 * D, D, dRh + (ptrdiff_t)c0 * D, D, MM_ADD, NULL);
    if (!diag) mx_mm(nc, D, nb, Pc, ldq, 1, Z, D, dY + (ptrdiff_t)c0 * D, D, MM_SUB);
  }
  if (first) memset(dRg, 0, (size_t)nb * D * sizeof(float)); /* a group without chunks */
  return 0;
}

static int mx_krr_bwd(const mx_dims *d, const mx_krr_args *a, int bh) {
  float *ws = mx_scratch(6, mx_kbw(d, 1).total);
  if (!ws) return -1;
  double dl[MX_KBW_SUMS] = {0};
  for (int blk = (d->T + d->block - 1) / d->block - 1; blk >= 0; blk--)
    if (mx_krr_bwd_setup(d, a, ws, 1, dl, bh, blk) || mx_krr_bwd_grads(d, a, ws, 1, bh, blk, 0))
      return -1;
  return mx_krr_bwd_setup(d, a, ws, 1, dl, bh, -1);
}

static const mx_kernels mx_table = {
    .name = MX_NAME,
    .krr_fwd = mx_krr_fwd,
    .krr_bwd = mx_krr_bwd,
    .att_fwd = mx_att_fwd,
    .att_bwd = mx_att_bwd,
    .krr_fwd_part = mx_krr_fwd_part,
    .krr_fwd_close = mx_krr_fwd_close,
    .krr_bwd_setup = mx_krr_bwd_setup,
    .krr_bwd_grads = mx_krr_bwd_grads,
    .att_bwd_range = mx_att_bwd_range,
};

const mx_kernels *MX_TABLE(void) { return &mx_table; }
