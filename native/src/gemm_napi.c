/* N-API entry point for sgemm: argument checking, then cubit_sgemm_batched. */
#include "gemm.h"
#include "napi_util.h"

/* sgemm(batch, m, n, k, transA, transB, a, aOff, aBatchStride, lda, b, bOff, bBatchStride, ldb,
 *       c, cOff, cBatchStride, ldc, accumulate) */
CUBIT_NAPI(cubit_napi_sgemm) {
  static const char *fn = "sgemm";
  napi_value argv[19];
  int64_t batch, m, n, k, aOff, sA, lda, bOff, sB, ldb, cOff, sC, ldc;
  bool transA, transB, accumulate;
  float *a, *b, *c;
  size_t aLen, bLen, cLen;
  if (!cubit_get_args(env, info, fn, 19, argv) ||
      !cubit_arg_index(env, argv, 0, fn, "batch", &batch) ||
      !cubit_arg_index(env, argv, 1, fn, "m", &m) ||
      !cubit_arg_index(env, argv, 2, fn, "n", &n) ||
      !cubit_arg_index(env, argv, 3, fn, "k", &k) ||
      !cubit_arg_bool(env, argv, 4, fn, "transA", &transA) ||
      !cubit_arg_bool(env, argv, 5, fn, "transB", &transB) ||
      !cubit_arg_f32(env, argv, 6, fn, "a", &a, &aLen) ||
      !cubit_arg_index(env, argv, 7, fn, "aOff", &aOff) ||
      !cubit_arg_index(env, argv, 8, fn, "aBatchStride", &sA) ||
      !cubit_arg_index(env, argv, 9, fn, "lda", &lda) ||
      !cubit_arg_f32(env, argv, 10, fn, "b", &b, &bLen) ||
      !cubit_arg_index(env, argv, 11, fn, "bOff", &bOff) ||
      !cubit_arg_index(env, argv, 12, fn, "bBatchStride", &sB) ||
      !cubit_arg_index(env, argv, 13, fn, "ldb", &ldb) ||
      !cubit_arg_f32(env, argv, 14, fn, "c", &c, &cLen) ||
      !cubit_arg_index(env, argv, 15, fn, "cOff", &cOff) ||
      !cubit_arg_index(env, argv, 16, fn, "cBatchStride", &sC) ||
      !cubit_arg_index(env, argv, 17, fn, "ldc", &ldc) ||
      !cubit_arg_bool(env, argv, 18, fn, "accumulate", &accumulate))
    return NULL;

  /* Storage shapes: A is m x k (k x m when transA), B is k x n (n x k when transB). When k = 0
   * nothing of A or B is read, and C is only written. */
  if (!cubit_check_view(env, fn, "a", aLen, aOff, batch, sA, transA ? k : m, transA ? m : k, lda,
                        "lda", transA ? "m" : "k") ||
      !cubit_check_view(env, fn, "b", bLen, bOff, batch, sB, transB ? n : k, transB ? k : n, ldb,
                        "ldb", transB ? "k" : "n") ||
      !cubit_check_view(env, fn, "c", cLen, cOff, batch, sC, m, n, ldc, "ldc", "n"))
    return NULL;

  if (cubit_sgemm_batched(batch, m, n, k, transA, transB, a + aOff, lda, sA, b + bOff, ldb, sB,
                          c + cOff, ldc, sC, accumulate) != 0)
    return cubit_throw(env, CUBIT_ERROR, "sgemm: out of memory for packing buffers");
  return cubit_undefined(env);
}
