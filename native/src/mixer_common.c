/* Shared parts of the mixer kernels: per-thread scratch, the mask bounds, the ISA table. */
#include "mixer.h"

#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-thread scratch ----------------------------------------------------------------- */

typedef struct {
  float *buf[MX_SLOTS];
  size_t cap[MX_SLOTS];
  int32_t *mask; /* the mask bounds of the call this thread drives */
  size_t mask_cap;
} mx_scratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local mx_scratch_t *tls;

static void scratch_free(void *p) {
  mx_scratch_t *s = p;
  for (int i = 0; i < MX_SLOTS; i++) free(s->buf[i]);
  free(s->mask);
  free(s);
}
static void scratch_key_init(void) { pthread_key_create(&scratch_key, scratch_free); }

static mx_scratch_t *get_tls(void) {
  if (!tls) {
    pthread_once(&scratch_once, scratch_key_init);
    tls = calloc(1, sizeof *tls);
    if (tls) pthread_setspecific(scratch_key, tls);
  }
  return tls;
}

/* 16 floats of slack: the vector loops may read (never write) up to a vector past a row. */
#define SLACK 16

float *mx_scratch(int slot, size_t n) {
  mx_scratch_t *s = get_tls();
  if (!s) return NULL;
  if (n > s->cap[slot] || !s->buf[slot]) {
    size_t bytes = ((n + SLACK) * sizeof(float) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    memset(p, 0, bytes);
    free(s->buf[slot]);
    s->buf[slot] = p;
    s->cap[slot] = n;
  }
  return s->buf[slot];
}

/* ---- mask bounds ------------------------------------------------------------------------ */

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

int mx_masks_build(mx_dims *d) {
  mx_scratch_t *s = get_tls();
  if (!s) return -1;
  size_t T = (size_t)d->T, B = (size_t)d->B;
  /* lo (B*T), a sort buffer (T) and the flags (B bytes). */
  size_t need = B * T + T + (B + 3) / 4 + 1;
  if (need > s->mask_cap) {
    int32_t *p = malloc(need * sizeof(int32_t));
    if (!p) return -1;
    free(s->mask);
    s->mask = p;
    s->mask_cap = need;
  }
  int32_t *lo = s->mask, *runs = s->mask + B * T;
  unsigned char *flags = (unsigned char *)(runs + T);
  for (size_t b = 0; b < B; b++) {
    int32_t *l = lo + b * T;
    for (size_t i = 0; i < T; i++) l[i] = d->window > 0 && (long)i - d->window + 1 > 0 ? (int32_t)(i - d->window + 1) : 0;
    flags[b] = 0;
    if (!d->doc) continue;
    /* Documents: contiguous runs (each id in one run, as packing makes) narrow lo to the
     * run's start; otherwise the ids are compared element by element. */
    const int32_t *id = d->doc + b * T;
    size_t nruns = 0;
    for (size_t i = 0; i < T; i++)
      if (i == 0 || id[i] != id[i - 1]) runs[nruns++] = id[i];
    qsort(runs, nruns, sizeof(int32_t), cmp_i32);
    for (size_t k = 1; k < nruns; k++)
      if (runs[k] == runs[k - 1]) flags[b] = 1;
    if (flags[b]) continue;
    int32_t start = 0;
    for (size_t i = 0; i < T; i++) {
      if (i > 0 && id[i] != id[i - 1]) start = (int32_t)i;
      if (l[i] < start) l[i] = start;
    }
  }
  d->lo = lo;
  d->ids_elementwise = flags;
  return 0;
}

/* ---- ISA ---------------------------------------------------------------------------------- */

const mx_kernels *mx_current_kernels(void) {
  const mx_kernels *K = NULL;
  switch (cubit_current_isa()) {
    case CUBIT_ISA_AVX512: K = mx_kernels_avx512(); break;
    case CUBIT_ISA_AVX2: K = mx_kernels_avx2(); break;
    default: break;
  }
  return K ? K : mx_kernels_generic();
}
