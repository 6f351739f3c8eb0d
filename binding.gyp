# Builds build/Release/cubit_native.node (run `npm run build:native`).
# gyp cannot glob: when you add a C file under native/src/, list it in "sources" below.
# ISA-specific code (AVX2, AVX-512) uses __attribute__((target(...))) on its functions and is
# chosen at run time (native/src/cpu.c), so no -march flag is needed or wanted here.
{
  "targets": [
    {
      "target_name": "cubit_native",
      "sources": [
        "native/src/addon.c",
        "native/src/cpu.c",
        "native/src/threadpool.c",
        "native/src/gemm.c",
        "native/src/gemm_napi.c",
        "native/src/gemm_generic.c",
        "native/src/gemm_avx2.c",
        "native/src/gemm_avx512.c",
        "native/src/kernels_nn.c",
        "native/src/kernels_nn_napi.c",
        "native/src/kernels_nn_generic.c",
        "native/src/kernels_nn_avx2.c",
        "native/src/kernels_nn_avx512.c",
        "native/src/kernels_heads.c",
        "native/src/cholesky.c",
        "native/src/mixer_common.c",
        "native/src/mixer_generic.c",
        "native/src/mixer_avx2.c",
        "native/src/mixer_avx512.c",
        "native/src/krr.c",
        "native/src/attention.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=c11", "-O3", "-fno-math-errno", "-Wno-unused-parameter"],
      "cflags!": ["-fno-omit-frame-pointer"],
      "ldflags": ["-pthread"],
      "libraries": ["-lm"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-std=c11", "-O3"]
      }
    }
  ]
}
