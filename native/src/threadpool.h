/* A small fork-join thread pool shared by every kernel of the addon.
 *
 * cubit_parallel_for(ntasks, fn, ctx) calls fn(ctx, t) once for each t in [0, ntasks), on the
 * calling thread and the pool's workers together, and returns when all calls have returned.
 * Tasks are handed out dynamically (an atomic counter), so they may be of unequal cost.
 *
 * It runs everything serially on the calling thread when: only one thread is configured, it is
 * called from inside a task (nested parallelism), or another thread is using the pool at the
 * time (e.g. two Node worker threads). So it never deadlocks, and fn must not assume which
 * thread runs a task. Per-thread scratch memory should be _Thread_local.
 *
 * Idle workers spin (with pause) for a short while before sleeping on a futex, because waking a
 * sleeping thread costs ~30 us here against ~2 us for a spinning one.
 */
#ifndef CUBIT_THREADPOOL_H
#define CUBIT_THREADPOOL_H

#include <stddef.h>

/* Work below this many floating-point operations is not worth splitting across threads. */
#define CUBIT_MIN_PARALLEL_FLOPS 1.0e6

/* Threads a parallel_for uses, counting the caller. Default: CPUs available to the process. */
int cubit_num_threads(void);
/* Sets the thread count (n <= 0: back to the default). Not to be called from inside a task. */
void cubit_set_num_threads(int n);

void cubit_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx);

/* Like cubit_parallel_for, but runs serially when the whole job is below
 * CUBIT_MIN_PARALLEL_FLOPS; `flops` is the job's total work. */
void cubit_parallel_for_work(int ntasks, void (*fn)(void *ctx, int task), void *ctx, double flops);

/* Non-zero while the calling thread runs a pool task (nested parallel_for calls run serially). */
int cubit_in_parallel_task(void);

/* Per-thread scratch, one grow-once buffer per slot: fresh memory page-faults, so the caller and
 * the workers each keep theirs between calls (freed when the thread exits). */
enum {
  CUBIT_SCRATCH_NN = 0,           /* kernels_nn.c: partial sums of one call */
  CUBIT_SCRATCH_GEMM_STATE = 1,   /* gemm.c: the thread's packed-B identity and edge tile */
  CUBIT_SCRATCH_GEMM_A = 2,       /* gemm.c: packed A block */
  CUBIT_SCRATCH_GEMM_B = 3,       /* gemm.c: packed B block */
  CUBIT_SCRATCH_GEMM_B_CALL = 4,  /* gemm.c: op(B) packed once per call */
  CUBIT_SCRATCH_GEMM_PARTIAL = 5, /* gemm.c: depth chunks' partial products */
  CUBIT_SCRATCH_MX_MASK = 6,      /* mixer_common.c: the mask bounds of a call */
  CUBIT_SCRATCH_MX = 7,           /* mixer_common.c: mx_scratch slot s is CUBIT_SCRATCH_MX + s */
  CUBIT_SCRATCH_SLOTS = CUBIT_SCRATCH_MX + 12
};
/* At least `bytes` of 64-byte-aligned memory in `slot` of the calling thread: zero-filled when
 * (re)allocated, otherwise as the last user of the slot on this thread left it. Distinct slots
 * never alias. NULL when out of memory. */
void *cubit_scratch(int slot, size_t bytes);

#endif
