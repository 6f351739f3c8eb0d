/* Non-GEMM float32 kernels of the addon: data movement, elementwise, reductions and the fused
 * neural-network kernels of src/core/backend.ts, with the semantics of the reference backend
 * (src/backends/reference/backend.ts), which the tests compare them against.
 *
 * kernels_nn.c holds the drivers (argument-free C API below, threading, broadcasting and
 * strided iteration); the per-row / per-span loops live in kernels_nn_simd.h, compiled once per
 * ISA (kernels_nn_generic.c, kernels_nn_avx2.c, kernels_nn_avx512.c) into an nn_kernels table
 * that the drivers pick at run time from cubit_current_isa(). kernels_nn_napi.c is the N-API
 * layer (bounds checks, then these functions). No bounds checking happens here. */
#ifndef CUBIT_KERNELS_NN_H
#define CUBIT_KERNELS_NN_H

#include <stddef.h>
#include <stdint.h>

/* Op codes: the order of UnaryOp / BinaryOp / ReduceOp in src/core/backend.ts (the TS side
 * keeps the same tables in src/backends/native/backend.ts). */
enum {
  NN_NEG, NN_ABS, NN_EXP, NN_LOG, NN_SQRT, NN_RSQRT, NN_TANH, NN_SIGMOID, NN_SILU, NN_GELU,
  NN_RELU, NN_SQUARE, NN_RECIPROCAL, NN_POW, NN_SIGN, NN_UNARY_COUNT
};
enum {
  NN_ADD, NN_SUB, NN_MUL, NN_DIV, NN_MAXIMUM, NN_MINIMUM, NN_BPOW,
  NN_GT, NN_GE, NN_LT, NN_LE, NN_EQ, NN_NE, NN_BINARY_COUNT
};
enum { NN_SUM, NN_MAX, NN_MIN, NN_REDUCE_COUNT };

/* Highest rank the strided / broadcasting kernels take (the TS side falls back beyond it). */
#define NN_MAX_RANK 8

/* Return codes. */
#define NN_OK 0
#define NN_ENOMEM (-1)
#define NN_EBADID (-2) /* an id / target outside its range; *bad_pos says where */

/* AdamW constants as the reference computes them (decay = 1 - lr*weightDecay). */
typedef struct {
  double beta1, one_m_beta1, beta2, one_m_beta2, eps, decay, lr, bc1, bc2;
} nn_adamw;

/* The per-ISA loops. Row kernels take a run of contiguous rows; span kernels a run of elements.
 * Backward norm kernels add their weight (and bias) gradients into float accumulators that are
 * flushed into double ones every few rows (dwf/dwd may be NULL). */
typedef struct {
  void (*softmax)(const float *x, float *out, size_t rows, size_t cols, int log);
  void (*softmax_bwd)(const float *y, const float *dy, float *dx, size_t rows, size_t cols, int log);
  void (*rmsnorm)(const float *x, const float *w, float *out, float *rstd, size_t rows,
                  size_t cols, double eps);
  void (*rmsnorm_bwd)(const float *x, const float *w, const float *rstd, const float *dy,
                      float *dx, size_t rows, size_t cols, float *dwf, double *dwd);
  void (*layernorm)(const float *x, const float *w, const float *b, float *out, float *mean,
                    float *rstd, size_t rows, size_t cols, double eps);
  void (*layernorm_bwd)(const float *x, const float *w, const float *mean, const float *rstd,
                        const float *dy, float *dx, size_t rows, size_t cols, float *dwf,
                        double *dwd, float *dbf, double *dbd);
  void (*xent)(const float *logits, const int32_t *targets, float *losses, float *lse,
               size_t rows, size_t cols, int32_t ignore);
  void (*xent_bwd)(const float *logits, const int32_t *targets, const float *lse,
                   const float *dloss, float *dlogits, size_t rows, size_t cols, int32_t ignore);
  void (*unary)(int op, const float *x, float *out, size_t n, double scalar);
  void (*unary_bwd)(int op, const float *x, const float *y, const float *dy, float *dx, size_t n,
                    double scalar);
  /* out[i] for i in [start, start+n) */
  void (*dropout)(float *out, size_t start, size_t n, uint32_t seed, uint64_t threshold,
                  float scale);
  void (*adamw)(float *p, const float *g, float *m, float *v, size_t n, const nn_adamw *a);
  void (*swiglu)(const float *a, const float *b, float *out, size_t n);
  void (*rotary_row)(const float *x, const float *c, const float *s, float *o, size_t half,
                     double sign);
  void (*swiglu_bwd)(const float *a, const float *b, const float *dy, float *da, float *db, size_t n);
  /* Cubit's r̂ normalisation and LRR-scaled values over rows of one head (kernels_nn_simd.h) */
  void (*ref_norm)(const float *r, float *out, size_t rows, size_t cols, double alpha, double eps2);
  void (*ref_norm_bwd)(const float *r, const float *g, float *dr, double *part, size_t rows,
                       size_t cols, double alpha, double eps2);
  void (*lrr)(const float *v, const float *z, float *out, size_t rows, size_t cols, double lower,
              double range);
  void (*lrr_bwd)(const float *v, const float *z, const float *g, float *dv, float *dz,
                  double *part, size_t rows, size_t cols, double lower, double range);
  /* out[i] = a[i*sa] op b[i*sb], i < n */
  void (*binary)(int op, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb, float *out,
                 size_t n);
  /* out[i] = cond[i*sc] != 0 ? a[i*sa] : b[i*sb]; cond holds float32 (cond_is_int = 0) or
   * int32 bits */
  void (*where)(const uint32_t *cond, ptrdiff_t sc, int cond_is_int, const float *a, ptrdiff_t sa,
                const float *b, ptrdiff_t sb, float *out, size_t n);
  /* reduction of a contiguous run: the sum in double, or max / min (NaN if any is NaN) */
  double (*reduce_run)(int op, const float *x, size_t n);
  /* out[i] = reduction over j < len of x[j*stride + i], i < n <= NN_COLS */
  void (*reduce_cols)(int op, const float *x, size_t len, size_t stride, size_t n, float *out);
} nn_kernels;

/* Columns one reduce_cols call handles (its accumulators live on the stack). */
#define NN_COLS 256

extern const nn_kernels nn_kernels_generic;
#if defined(__x86_64__) || defined(__i386__)
extern const nn_kernels nn_kernels_avx2;
extern const nn_kernels nn_kernels_avx512;
#endif

/* The table of the best ISA this CPU runs (cpu.c decides). */
const nn_kernels *nn_current_kernels(void);

/* ---- C API (kernels_nn.c): pointers are already offset; sizes in elements ------------------ */
void cubit_nn_fill(float *out, float value, size_t n);
void cubit_nn_copy(const float *src, float *out, size_t n);
/* out (contiguous, shape) <- src read with strides; rank <= NN_MAX_RANK */
void cubit_nn_strided_copy(const float *src, const int64_t *shape, const int64_t *strides,
                           int rank, float *out);
void cubit_nn_unary(int op, const float *x, float *out, size_t n, double scalar);
void cubit_nn_unary_bwd(int op, const float *x, const float *y, const float *dy, float *dx,
                        size_t n, double scalar);
void cubit_nn_binary(int op, const float *a, const int64_t *as, const float *b,
                     const int64_t *bs, float *out, const int64_t *shape, int rank);
void cubit_nn_where(const uint32_t *cond, int cond_is_int, const int64_t *cs, const float *a,
                    const int64_t *as, const float *b, const int64_t *bs, float *out,
                    const int64_t *shape, int rank);
void cubit_nn_reduce(int op, const float *x, float *out, size_t outer, size_t len, size_t inner);
void cubit_nn_softmax(const float *x, float *out, size_t rows, size_t cols, int log);
void cubit_nn_softmax_bwd(const float *y, const float *dy, float *dx, size_t rows, size_t cols,
                          int log);
void cubit_nn_rmsnorm(const float *x, const float *w, float *out, float *rstd, size_t rows,
                      size_t cols, double eps);
int cubit_nn_rmsnorm_bwd(const float *x, const float *w, const float *rstd, const float *dy,
                         float *dx, float *dw, size_t rows, size_t cols);
void cubit_nn_layernorm(const float *x, const float *w, const float *b, float *out, float *mean,
                        float *rstd, size_t rows, size_t cols, double eps);
int cubit_nn_layernorm_bwd(const float *x, const float *w, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dw, float *db, size_t rows,
                           size_t cols);
/* ids must lie in [0, vocab) */
int cubit_nn_gather(const float *table, size_t vocab, const int32_t *ids, float *out,
                    size_t count, size_t cols, size_t *bad_pos);
int cubit_nn_scatter_add(const float *dy, const int32_t *ids, float *dtable, size_t vocab,
                         size_t count, size_t cols, size_t *bad_pos);
/* targets must lie in [0, cols) or equal ignore */
int cubit_nn_xent(const float *logits, const int32_t *targets, float *losses, float *lse,
                  size_t rows, size_t cols, int32_t ignore, size_t *bad_pos);
int cubit_nn_xent_bwd(const float *logits, const int32_t *targets, const float *lse,
                      const float *dloss, float *dlogits, size_t rows, size_t cols,
                      int32_t ignore, size_t *bad_pos);
void cubit_nn_dropout(float *out, size_t n, double p, uint32_t seed);
void cubit_nn_adamw(float *param, const float *grad, float *m, float *v, size_t n, double lr,
                    double beta1, double beta2, double eps, double weight_decay, double bc1,
                    double bc2);

/* out = silu(a) * b; da = dy * b * silu'(a), db = dy * silu(a). Outputs must not alias inputs. */
void cubit_nn_swiglu(const float *a, const float *b, float *out, size_t n);
void cubit_nn_swiglu_bwd(const float *a, const float *b, const float *dy, float *da, float *db,
                         size_t n);
/* Cubit's elementwise stages over rows (b, h, t) of D floats, B*H*T rows, head h = (row / T) % H:
 * r̂ = alpha_h r / max(|r|, eps), and y = (lower_h + range_h sigmoid(z_row)) v. The backwards
 * write dr / dalpha (H) and dv / dz / dlower / drange (H), each skipped when NULL; the per-head
 * sums are taken in double in row order, the same for every thread count. Outputs must not alias
 * inputs. The backwards return NN_ENOMEM when their scratch cannot be had. */
void cubit_nn_ref_norm(const float *r, const float *alpha, float *out, size_t B, size_t H, size_t T,
                       size_t D, double eps);
int cubit_nn_ref_norm_bwd(const float *r, const float *alpha, const float *dy, float *dr,
                          float *dalpha, size_t B, size_t H, size_t T, size_t D, double eps);
void cubit_nn_lrr(const float *v, const float *z, const float *lower, const float *range,
                  float *out, size_t B, size_t H, size_t T, size_t D);
int cubit_nn_lrr_bwd(const float *v, const float *z, const float *lower, const float *range,
                     const float *dy, float *dv, float *dz, float *dlower, float *drange, size_t B,
                     size_t H, size_t T, size_t D);
/* Rotary embedding (rotate-half pairs i, i + D/2) of rows (b, t, h): x and out are each laid out
 * (B, T, H, D) or, when *_heads_first, (B, H, T, D); position offset + t reads row offset + t of
 * the (·, D/2) cos/sin tables; inverse turns by −angle (the gradient). out must not alias x. */
void cubit_nn_rotary(const float *x, const float *cos, const float *sin, float *out, size_t B,
                     size_t T, size_t H, size_t D, size_t offset, int inverse, int x_heads_first,
                     int out_heads_first);

#endif
