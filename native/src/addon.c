/* N-API entry point of the cubit native addon (build/Release/cubit_native.node).
 *
 * To add a kernel: declare it once in your own file as `KERNEL(cubit_napi_myop, "myOp", ...)`,
 * its argument table and body (napi_args.h); declare `CUBIT_NAPI(cubit_napi_myop)` below, add a
 * row to `exports`, add the file to binding.gyp's sources, and describe it in
 * src/backends/native/addon.ts (NativeAddon). */
#include "cpu.h"
#include "napi_util.h"
#include "threadpool.h"

/* ---- entry points defined in other files ------------------------------------------------ */
CUBIT_NAPI(cubit_napi_sgemm); /* gemm_napi.c */
CUBIT_NAPI(cubit_napi_krr_solve);              /* krr.c */
CUBIT_NAPI(cubit_napi_krr_solve_backward);     /* krr.c */
CUBIT_NAPI(cubit_napi_cubit_solve);            /* krr.c */
CUBIT_NAPI(cubit_napi_cubit_solve_backward);   /* krr.c */
CUBIT_NAPI(cubit_napi_attention);              /* attention.c */
CUBIT_NAPI(cubit_napi_attention_backward);     /* attention.c */
#include "kernels_nn_napi.h" /* the non-GEMM kernels: CUBIT_NN_EXPORTS */
CUBIT_NAPI(cubit_napi_split_heads);            /* kernels_heads.c */
CUBIT_NAPI(cubit_napi_merge_heads);            /* kernels_heads.c */
CUBIT_NAPI(cubit_napi_cholesky);               /* cholesky.c */
CUBIT_NAPI(cubit_napi_triangular_solve);       /* cholesky.c */

/* ---- threads and ISA -------------------------------------------------------------------- */

/* setThreads(n): n >= 1 threads for parallel kernels; 0 restores the default (CPUs available). */
static CUBIT_NAPI(napi_set_threads) {
  napi_value argv[1];
  int64_t n;
  if (!cubit_get_args(env, info, "setThreads", 1, argv) ||
      !cubit_arg_index(env, argv, 0, "setThreads", "n", &n))
    return NULL;
  if (n > 1024) return cubit_throw(env, CUBIT_RANGE_ERROR, "setThreads: n (%lld) must be <= 1024", (long long)n);
  if (cubit_in_parallel_task())
    return cubit_throw(env, CUBIT_ERROR, "setThreads: cannot be called from a parallel task");
  cubit_set_num_threads((int)n);
  return cubit_undefined(env);
}

static CUBIT_NAPI(napi_get_threads) {
  (void)info;
  napi_value v;
  napi_create_int32(env, cubit_num_threads(), &v);
  return v;
}

static CUBIT_NAPI(napi_isa) {
  (void)info;
  napi_value v;
  napi_create_string_utf8(env, cubit_isa_name(cubit_current_isa()), NAPI_AUTO_LENGTH, &v);
  return v;
}

/* setIsa(name): "avx512" | "avx2" | "generic" forces a path, "auto" picks the best one. */
static CUBIT_NAPI(napi_set_isa) {
  napi_value argv[1];
  char name[32];
  if (!cubit_get_args(env, info, "setIsa", 1, argv) ||
      !cubit_arg_string(env, argv, 0, "setIsa", "name", name, sizeof name))
    return NULL;
  int isa = strcmp(name, "auto") == 0 ? (int)cubit_cpu_best_isa() : cubit_isa_from_name(name);
  if (isa < 0)
    return cubit_throw(env, CUBIT_RANGE_ERROR,
                       "setIsa: unknown ISA '%s' (expected avx512, avx2, generic or auto)", name);
  if (cubit_set_isa((cubit_isa)isa) != 0)
    return cubit_throw(env, CUBIT_ERROR, "setIsa: this CPU does not support %s", name);
  return cubit_undefined(env);
}

/* supportedIsas(): the paths setIsa accepts on this CPU, best first. */
static CUBIT_NAPI(napi_supported_isas) {
  (void)info;
  napi_value arr, s;
  static const cubit_isa all[] = {CUBIT_ISA_AVX512, CUBIT_ISA_AVX2, CUBIT_ISA_GENERIC};
  napi_create_array(env, &arr);
  uint32_t n = 0;
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (!cubit_cpu_supports(all[i])) continue;
    napi_create_string_utf8(env, cubit_isa_name(all[i]), NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, n++, s);
  }
  return arr;
}

/* ---- the export table ------------------------------------------------------------------- */

typedef struct {
  const char *name;
  napi_callback fn;
} cubit_export;

static const cubit_export exports_table[] = {
    {"sgemm", cubit_napi_sgemm},
    {"setThreads", napi_set_threads},
    {"getThreads", napi_get_threads},
    {"isa", napi_isa},
    {"setIsa", napi_set_isa},
    {"supportedIsas", napi_supported_isas},
    CUBIT_NN_EXPORTS /* kernels_nn_napi.h */
    {"krrSolve", cubit_napi_krr_solve},
    {"krrSolveBackward", cubit_napi_krr_solve_backward},
    {"cubitSolve", cubit_napi_cubit_solve},
    {"cubitSolveBackward", cubit_napi_cubit_solve_backward},
    {"attention", cubit_napi_attention},
    {"attentionBackward", cubit_napi_attention_backward},
    {"splitHeads", cubit_napi_split_heads},
    {"mergeHeads", cubit_napi_merge_heads},
    {"cholesky", cubit_napi_cholesky},
    {"triangularSolve", cubit_napi_triangular_solve},
    /* add new entry points here */
};

NAPI_MODULE_INIT() {
  size_t n = sizeof exports_table / sizeof exports_table[0];
  napi_property_descriptor props[sizeof exports_table / sizeof exports_table[0]];
  for (size_t i = 0; i < n; i++) {
    props[i] = (napi_property_descriptor){.utf8name = exports_table[i].name,
                                          .method = exports_table[i].fn,
                                          .attributes = napi_enumerable};
  }
  if (napi_define_properties(env, exports, n, props) != napi_ok) return NULL;
  return exports;
}
