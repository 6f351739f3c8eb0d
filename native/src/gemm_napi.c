/* N-API entry point for sgemm: its argument table (napi_args.h), the view checks, then
 * cubit_sgemm_batched. */
#include "gemm.h"
#include "napi_args.h"

KERNEL(cubit_napi_sgemm, "sgemm", 19, INDEX("batch"), INDEX("m"), INDEX("n"), INDEX("k"), BOOL("transA"),
       BOOL("transB"), F32("a", NULL), INDEX("aOff"), INDEX("aBatchStride"), INDEX("lda"), F32("b", NULL),
       INDEX("bOff"), INDEX("bBatchStride"), INDEX("ldb"), F32("c", NULL), INDEX("cOff"),
       INDEX("cBatchStride"), INDEX("ldc"), BOOL("accumulate")) {
  const int64_t batch = N(0), m = N(1), n = N(2), k = N(3);
  const bool transA = B(4), transB = B(5);
  /* Storage shapes: A is m x k (k x m when transA), B is k x n (n x k when transB). When k = 0
   * nothing of A or B is read, and C is only written. */
  if (!cubit_check_view(env, fn, "a", v[6].len, N(7), batch, N(8), transA ? k : m, transA ? m : k, N(9),
                        "lda", transA ? "m" : "k") ||
      !cubit_check_view(env, fn, "b", v[10].len, N(11), batch, N(12), transB ? n : k, transB ? k : n, N(13),
                        "ldb", transB ? "k" : "n") ||
      !cubit_check_view(env, fn, "c", v[14].len, N(15), batch, N(16), m, n, N(17), "ldc", "n"))
    return NULL;

  if (cubit_sgemm_batched(batch, m, n, k, transA, transB, F(6) + N(7), N(9), N(8), F(10) + N(11), N(13),
                          N(12), F(14) + N(15), N(17), N(16), B(18)) != 0)
    return cubit_throw(env, CUBIT_ERROR, "%s: out of memory for packing buffers", fn);
  return cubit_undefined(env);
}
