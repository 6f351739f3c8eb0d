#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "threadpool.h"

#include "cpu.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* ---- futex-like wait/wake on a 32-bit word ---------------------------------------------- */
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
static void word_wait(_Atomic uint32_t *word, uint32_t expected) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void word_wake_all(_Atomic uint32_t *word) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}
#else
/* Portable stand-in: one condition variable for every word (waits are rare). */
static pthread_mutex_t word_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t word_cond = PTHREAD_COND_INITIALIZER;
static void word_wait(_Atomic uint32_t *word, uint32_t expected) {
  pthread_mutex_lock(&word_mutex);
  while (atomic_load(word) == expected) pthread_cond_wait(&word_cond, &word_mutex);
  pthread_mutex_unlock(&word_mutex);
}
static void word_wake_all(_Atomic uint32_t *word) {
  (void)word;
  pthread_mutex_lock(&word_mutex);
  pthread_cond_broadcast(&word_cond);
  pthread_mutex_unlock(&word_mutex);
}
#endif

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- pool state --------------------------------------------------------------------------- */
/* How long an idle worker spins before sleeping. Long enough to catch back-to-back calls from
 * JS (a few us apart), short enough not to burn a core when the program does something else.
 * CUBIT_SPIN_US overrides it. */
#define DEFAULT_SPIN_NS 50000u
/* How long the calling thread spins waiting for the workers before it sleeps too. */
#define CALLER_SPIN_NS 100000u

/* A job lives on the calling thread's stack for the duration of cubit_parallel_for. */
typedef struct {
  void (*fn)(void *, int);
  void *ctx;
  int ntasks;
  _Atomic int next_task;
} job_t;

typedef struct {
  /* The current job, or NULL once the caller has run out of tasks. Workers register in
   * `active` before looking at it, and the caller clears it, then waits for `active` to drain:
   * so a worker never touches a finished job, and the caller never waits for a worker that is
   * still asleep (it does the tasks itself meanwhile; the late worker then finds nothing). */
  _Atomic(job_t *) job;
  _Atomic uint32_t active;     /* workers inside a job; the caller may sleep on it */
  _Atomic uint32_t generation; /* bumped once per job: idle workers wait for it to change */
  _Atomic int sleeping_workers;
  _Atomic int caller_sleeping;
  _Atomic int quit;

  int nworkers;
  pthread_t *threads;
} pool_t;

static pool_t pool;
static pthread_mutex_t pool_mutex = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static _Atomic int requested_threads = 0;                      /* 0: default */
static uint64_t spin_ns = DEFAULT_SPIN_NS;
static _Thread_local int in_task = 0;

int cubit_in_parallel_task(void) { return in_task; }

int cubit_num_threads(void) {
  int n = atomic_load(&requested_threads);
  return n > 0 ? n : cubit_cpu_count();
}

static void run_tasks(job_t *job) {
  for (;;) {
    int t = atomic_fetch_add_explicit(&job->next_task, 1, memory_order_relaxed);
    if (t >= job->ntasks) break;
    job->fn(job->ctx, t);
  }
}

static void *worker_main(void *arg) {
  /* The generation when the pool started: the first job may be posted before we get here. */
  uint32_t seen = (uint32_t)(uintptr_t)arg;
  in_task = 1; /* anything a worker runs is a task: nested parallel_for runs serially */
  for (;;) {
    /* Wait for a new job: spin first, then sleep. */
    if (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
      uint64_t start = now_ns();
      for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&pool.generation, memory_order_acquire) != seen) break;
        cpu_relax();
        if ((i & 63) == 0 && now_ns() - start > spin_ns) {
          atomic_fetch_add(&pool.sleeping_workers, 1);
          /* seq_cst pairs with the caller's bump-then-check: one of us sees the other */
          while (atomic_load(&pool.generation) == seen) word_wait(&pool.generation, seen);
          atomic_fetch_sub(&pool.sleeping_workers, 1);
          break;
        }
      }
    }
    seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    if (atomic_load(&pool.quit)) break;
    /* Register, then look for the job (seq_cst pairs with the caller's clear-then-check). */
    atomic_fetch_add(&pool.active, 1);
    job_t *job = atomic_load(&pool.job);
    if (job) run_tasks(job);
    if (atomic_fetch_sub(&pool.active, 1) == 1 && atomic_load(&pool.caller_sleeping))
      word_wake_all(&pool.active);
  }
  return NULL;
}

/* Both called with pool_mutex held. */
static void pool_stop(void) {
  if (pool.nworkers == 0) return;
  atomic_store(&pool.quit, 1);
  atomic_fetch_add(&pool.generation, 1);
  word_wake_all(&pool.generation);
  for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.threads[i], NULL);
  free(pool.threads);
  pool.threads = NULL;
  pool.nworkers = 0;
  atomic_store(&pool.quit, 0);
}

static int pool_start(int nworkers) {
  const char *env = getenv("CUBIT_SPIN_US");
  if (env) spin_ns = (uint64_t)strtoul(env, NULL, 10) * 1000u;
  pool.threads = calloc((size_t)nworkers, sizeof(pthread_t));
  if (!pool.threads) return -1;
  /* Workers must not take the process's signals (Node handles those on its own threads). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int started = 0;
  for (; started < nworkers; started++)
    if (pthread_create(&pool.threads[started], NULL, worker_main,
                       (void *)(uintptr_t)atomic_load(&pool.generation)) != 0)
      break;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pool.nworkers = started;
  return started > 0 ? 0 : -1;
}

void cubit_set_num_threads(int n) {
  if (n < 0) n = 0;
  pthread_mutex_lock(&pool_mutex);
  atomic_store(&requested_threads, n);
  /* Workers are (re)started lazily by the next parallel_for with the new count. */
  if (pool.nworkers != cubit_num_threads() - 1) pool_stop();
  pthread_mutex_unlock(&pool_mutex);
}

static void run_serial(int ntasks, void (*fn)(void *, int), void *ctx) {
  for (int t = 0; t < ntasks; t++) fn(ctx, t);
}

void cubit_parallel_for(int ntasks, void (*fn)(void *ctx, int task), void *ctx) {
  if (ntasks <= 0) return;
  int nthreads = cubit_num_threads();
  if (ntasks == 1 || nthreads <= 1 || in_task || pthread_mutex_trylock(&pool_mutex) != 0) {
    run_serial(ntasks, fn, ctx);
    return;
  }
  if (pool.nworkers != nthreads - 1) {
    pool_stop();
    if (pool_start(nthreads - 1) != 0) {
      pthread_mutex_unlock(&pool_mutex);
      run_serial(ntasks, fn, ctx);
      return;
    }
  }

  job_t job = {.fn = fn, .ctx = ctx, .ntasks = ntasks};
  atomic_store_explicit(&job.next_task, 0, memory_order_relaxed);
  atomic_store(&pool.job, &job);
  atomic_fetch_add(&pool.generation, 1); /* seq_cst: publishes the job */
  if (atomic_load(&pool.sleeping_workers) > 0) word_wake_all(&pool.generation);

  in_task = 1;
  run_tasks(&job);
  in_task = 0;

  /* No task is left to start: withdraw the job, then wait for the workers inside it (they
   * may still be finishing their last task). */
  atomic_store(&pool.job, NULL);
  if (atomic_load(&pool.active) > 0) {
    uint64_t start = now_ns();
    for (unsigned i = 1; atomic_load(&pool.active) > 0; i++) {
      cpu_relax();
      if ((i & 63) == 0 && now_ns() - start > CALLER_SPIN_NS) {
        atomic_store(&pool.caller_sleeping, 1);
        uint32_t active;
        while ((active = atomic_load(&pool.active)) > 0) word_wait(&pool.active, active);
        atomic_store(&pool.caller_sleeping, 0);
      }
    }
  }
  pthread_mutex_unlock(&pool_mutex);
}

void cubit_parallel_for_work(int ntasks, void (*fn)(void *ctx, int task), void *ctx, double flops) {
  if (flops < CUBIT_MIN_PARALLEL_FLOPS) run_serial(ntasks, fn, ctx);
  else cubit_parallel_for(ntasks, fn, ctx);
}

/* ---- per-thread scratch ------------------------------------------------------------------ */

typedef struct {
  void *buf[CUBIT_SCRATCH_SLOTS];
  size_t cap[CUBIT_SCRATCH_SLOTS];
} thread_scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local thread_scratch *tls_scratch;

static void scratch_free(void *p) {
  thread_scratch *s = p;
  for (int i = 0; i < CUBIT_SCRATCH_SLOTS; i++) free(s->buf[i]);
  free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

void *cubit_scratch(int slot, size_t bytes) {
  if (!tls_scratch) {
    pthread_once(&scratch_once, scratch_key_init);
    tls_scratch = calloc(1, sizeof *tls_scratch);
    if (!tls_scratch) return NULL;
    pthread_setspecific(scratch_key, tls_scratch); /* frees it when the thread exits */
  }
  thread_scratch *s = tls_scratch;
  if (bytes > s->cap[slot] || !s->buf[slot]) {
    size_t cap = ((bytes + bytes / 4) + 63) & ~(size_t)63; /* a quarter spare: fewer regrowths */
    void *p = NULL;
    if (cap == 0) cap = 64;
    if (posix_memalign(&p, 64, cap) != 0) return NULL;
    memset(p, 0, cap);
    free(s->buf[slot]);
    s->buf[slot] = p;
    s->cap[slot] = cap;
  }
  return s->buf[slot];
}
