#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "cpu.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define CUBIT_X86 1
#endif

int cubit_cpu_supports(cubit_isa isa) {
  switch (isa) {
    case CUBIT_ISA_GENERIC: return 1;
#if CUBIT_X86
    /* __builtin_cpu_supports also checks that the OS enabled the register state (XCR0). */
    case CUBIT_ISA_AVX2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CUBIT_ISA_AVX512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             cubit_cpu_supports(CUBIT_ISA_AVX2);
#endif
    default: return 0;
  }
}

cubit_isa cubit_cpu_best_isa(void) {
  if (cubit_cpu_supports(CUBIT_ISA_AVX512)) return CUBIT_ISA_AVX512;
  if (cubit_cpu_supports(CUBIT_ISA_AVX2)) return CUBIT_ISA_AVX2;
  return CUBIT_ISA_GENERIC;
}

/* -1 = not chosen yet. Relaxed atomics suffice: any thread computes the same default. */
static _Atomic int current_isa = -1;

cubit_isa cubit_current_isa(void) {
  int isa = atomic_load_explicit(&current_isa, memory_order_relaxed);
  if (isa < 0) {
    isa = (int)cubit_cpu_best_isa();
    atomic_store_explicit(&current_isa, isa, memory_order_relaxed);
  }
  return (cubit_isa)isa;
}

int cubit_set_isa(cubit_isa isa) {
  if (!cubit_cpu_supports(isa)) return -1;
  atomic_store_explicit(&current_isa, (int)isa, memory_order_relaxed);
  return 0;
}

const char *cubit_isa_name(cubit_isa isa) {
  switch (isa) {
    case CUBIT_ISA_AVX512: return "avx512";
    case CUBIT_ISA_AVX2: return "avx2";
    default: return "generic";
  }
}

int cubit_isa_from_name(const char *name) {
  if (strcmp(name, "avx512") == 0) return CUBIT_ISA_AVX512;
  if (strcmp(name, "avx2") == 0) return CUBIT_ISA_AVX2;
  if (strcmp(name, "generic") == 0) return CUBIT_ISA_GENERIC;
  return -1;
}

int cubit_cpu_count(void) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
