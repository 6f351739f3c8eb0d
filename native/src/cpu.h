/* CPU feature detection and the choice of the SIMD code path used by the kernels. */
#ifndef CUBIT_CPU_H
#define CUBIT_CPU_H

typedef enum {
  CUBIT_ISA_GENERIC = 0, /* portable C, whatever the compiler makes of it */
  CUBIT_ISA_AVX2 = 1,    /* AVX2 + FMA (Haswell, Zen 1-3 and later) */
  CUBIT_ISA_AVX512 = 2   /* AVX-512 F/DQ/BW/VL (Skylake-X, Zen 4/5 and later) */
} cubit_isa;

/* Best path this CPU (and OS, which must save the wide registers) supports. */
cubit_isa cubit_cpu_best_isa(void);
/* Whether the CPU supports the given path. */
int cubit_cpu_supports(cubit_isa isa);
/* Path currently used by the kernels: the best one unless cubit_set_isa changed it. */
cubit_isa cubit_current_isa(void);
/* Force a path (for tests). Returns 0 on success, -1 if the CPU lacks it. */
int cubit_set_isa(cubit_isa isa);

const char *cubit_isa_name(cubit_isa isa);
/* Parses "avx512" | "avx2" | "generic"; returns -1 for anything else. */
int cubit_isa_from_name(const char *name);

/* Number of CPUs this process may run on (sched_getaffinity), at least 1. */
int cubit_cpu_count(void);

#endif
