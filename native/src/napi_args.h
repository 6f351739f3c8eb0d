/* The argument tables of the N-API entry points. Each kernel is declared once, with KERNEL: its
 * JS name and a table of its arguments (kind, name, and for an array the element count it must
 * hold), from which one marshaller reads and checks them: every view must lie inside its typed
 * array, so a bad call throws a one-line TypeError / RangeError naming the argument instead of
 * touching foreign memory. The kernel's body then sees the values (F(i), N(i), ...) and makes
 * any check the table cannot say (ids, overlaps, strided views).
 *
 *   KERNEL(cubit_napi_scale, "scale", 3, F32("x", "2"), NUMBER("s"), INDEX("length")) {
 *     scale(F(0), X(1), Z(2));
 *     return cubit_undefined(env);
 *   }
 */
#ifndef CUBIT_NAPI_ARGS_H
#define CUBIT_NAPI_ARGS_H

#include "napi_util.h"

/* Most arguments of one kernel (cubitSolveBackward's). */
#define MAX_ARGS 27
/* Highest rank of a SHAPE / STRIDES argument (kernels_nn.h's NN_MAX_RANK). */
#define ARG_MAX_RANK 8
/* Most entries of a list argument (ARG_F32_LIST / ARG_INT_LIST: kernels_heads.c's parts). */
#define ARG_MAX_LIST 16

/* ---- checks shared by the marshaller and the kernels ---------------------------------------- */

/* a * b without overflow. */
static inline bool mul_ok(napi_env env, const char *fn, int64_t a, int64_t b, int64_t *out) {
  if (__builtin_mul_overflow(a, b, out)) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: sizes %lld x %lld overflow", fn, (long long)a, (long long)b);
    return false;
  }
  return true;
}

/* Elements [off, off + count) must lie inside an array of `len`. */
static inline bool need(napi_env env, const char *fn, const char *name, size_t len, int64_t off,
                        int64_t count) {
  int64_t end;
  if (count == 0) return true;
  if (__builtin_add_overflow(off, count, &end) || (uint64_t)end > (uint64_t)len) {
    cubit_throw(env, CUBIT_RANGE_ERROR,
                "%s: %s is too short: %lld elements from offset %lld reach past its length %zu", fn,
                name, (long long)count, (long long)off, len);
    return false;
  }
  return true;
}

/* A JS array of at most ARG_MAX_RANK integers (non-negative when `sizes`). */
static inline bool arg_ints(napi_env env, napi_value *argv, int i, const char *fn, const char *name,
                            bool sizes, int64_t *out, int *rank) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, argv[i], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[i], &n) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be an array of integers", fn, i + 1, name);
    return false;
  }
  if (n > ARG_MAX_RANK) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (%s) has rank %u; at most %d is supported",
                fn, i + 1, name, n, ARG_MAX_RANK);
    return false;
  }
  for (uint32_t d = 0; d < n; d++) {
    napi_value e;
    double x;
    if (napi_get_element(env, argv[i], d, &e) != napi_ok ||
        napi_get_value_double(env, e, &x) != napi_ok || x != floor(x) ||
        !(fabs(x) <= CUBIT_MAX_SAFE_INTEGER) || (sizes && x < 0)) {
      cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must hold %s integers", fn, i + 1,
                  name, sizes ? "non-negative" : "");
      return false;
    }
    out[d] = (int64_t)x;
  }
  *rank = (int)n;
  return true;
}

/* ---- the argument table -------------------------------------------------------------------- */

typedef enum {
  ARG_F32,     /* Float32Array */
  ARG_F32_OPT, /* Float32Array, or null / undefined (NULL) */
  ARG_I32,     /* Int32Array */
  ARG_ANY,     /* Float32Array or Int32Array (where's cond) */
  ARG_INDEX,   /* non-negative integer */
  ARG_INT,     /* integer */
  ARG_NUMBER,  /* number */
  ARG_BOOL,    /* boolean (or 0 / 1) */
  ARG_OP,      /* op code below `ops` */
  ARG_SHAPE,   /* array of at most ARG_MAX_RANK non-negative integers */
  ARG_STRIDES, /* array of at most ARG_MAX_RANK integers */
  ARG_DIMS,    /* a mixer's B, H, T, D, window, docIds, blockSize: seven arguments, see arg_mixer_dims */
  ARG_DIMS_REST, /* the six after ARG_DIMS (read with it) */
  ARG_F32_LIST,     /* array of at most ARG_MAX_LIST Float32Arrays */
  ARG_F32_LIST_OPT, /* the same, each entry a Float32Array or null / undefined (NULL) */
  ARG_INT_LIST,     /* array of at most ARG_MAX_LIST integers >= the spec's `ops` */
} arg_kind;

/* An array's `size` lists argument positions (base-36 digits, 0-9 then a-z) whose integer values
 * multiply to the element count it must hold; "o+…" first reads an offset from argument o.
 * NULL: no check here. */
typedef struct {
  arg_kind kind;
  const char *name;
  const char *size;
  int ops;
} arg_spec;

typedef struct {
  const char *fn;
  int count;
  arg_spec args[MAX_ARGS];
} kernel_spec;

typedef struct {
  void *data;  /* arrays (NULL when absent) */
  size_t len;  /* arrays: elements; shapes: rank */
  int64_t n;   /* integers, op codes; arrays: the offset read by their size */
  double x;    /* numbers */
  bool b;      /* booleans; ARG_ANY: true for an Int32Array */
  bool absent; /* ARG_F32_OPT given as null / undefined */
  int64_t dims[ARG_MAX_LIST]; /* shapes, int lists: the entries; F32 lists: their lengths */
  float *list[ARG_MAX_LIST];   /* F32 lists: the arrays (NULL for a null entry) */
} arg_value;

#define F32(name, size) {ARG_F32, name, size, 0}
#define F32_OPT(name, size) {ARG_F32_OPT, name, size, 0}
#define I32(name, size) {ARG_I32, name, size, 0}
#define INDEX(name) {ARG_INDEX, name, NULL, 0}
#define INT(name) {ARG_INT, name, NULL, 0}
#define NUMBER(name) {ARG_NUMBER, name, NULL, 0}
#define BOOL(name) {ARG_BOOL, name, NULL, 0}
#define OP(count) {ARG_OP, "op", NULL, count}
#define SHAPE(name) {ARG_SHAPE, name, NULL, 0}
#define STRIDES(name) {ARG_STRIDES, name, NULL, 0}
#define F32_LIST(name) {ARG_F32_LIST, name, NULL, 0}
#define F32_LIST_OPT(name) {ARG_F32_LIST_OPT, name, NULL, 0}
#define INT_LIST(name, lo) {ARG_INT_LIST, name, NULL, lo}
/* A mixer's (B, H, T, D, window, docIds, blockSize); array sizes may name B, H, T and D. */
#define DIMS                                                                                    \
  {ARG_DIMS, "B", NULL, 0}, {ARG_DIMS_REST, "H", NULL, 0}, {ARG_DIMS_REST, "T", NULL, 0},        \
  {ARG_DIMS_REST, "D", NULL, 0}, {ARG_DIMS_REST, "window", NULL, 0},                            \
  {ARG_DIMS_REST, "docIds", NULL, 0}, {ARG_DIMS_REST, "blockSize", NULL, 0}

static inline int arg_position(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

/* A mixer's dims from argv[i..i+6] into v[0..6]: B, H, T, D in [1, 2^31) with B*H and B*T below
 * 2^31; window (clamped to T: a window >= T masks nothing); docIds null / undefined (data NULL)
 * or an Int32Array of at least B*T ids; blockSize >= 1 (clamped to T). */
static inline bool arg_mixer_dims(napi_env env, napi_value *argv, int i, const char *fn, arg_value *v) {
  static const char *names[4] = {"B", "H", "T", "D"};
  for (int k = 0; k < 4; k++) {
    if (!cubit_arg_index(env, argv, i + k, fn, names[k], &v[k].n)) return false;
    if (v[k].n < 1 || v[k].n > INT32_MAX) {
      cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (%s) must be in [1, 2^31), got %lld", fn,
                  i + k + 1, names[k], (long long)v[k].n);
      return false;
    }
  }
  const int64_t B = v[0].n, H = v[1].n, T = v[2].n;
  if (B * H > INT32_MAX || B * T > INT32_MAX) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: B*H and B*T must stay below 2^31", fn);
    return false;
  }
  if (!cubit_arg_index(env, argv, i + 4, fn, "window", &v[4].n) ||
      !cubit_arg_index(env, argv, i + 6, fn, "blockSize", &v[6].n))
    return false;
  if (v[6].n < 1) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (blockSize) must be >= 1", fn, i + 7);
    return false;
  }
  if (v[4].n > T) v[4].n = T;
  if (v[6].n > T) v[6].n = T;
  napi_valuetype t;
  v[5].data = NULL;
  if (napi_typeof(env, argv[i + 5], &t) != napi_ok) return false;
  if (t != napi_null && t != napi_undefined) {
    if (!cubit_arg_i32(env, argv, i + 5, fn, "docIds", (int32_t **)&v[5].data, &v[5].len)) return false;
    if (v[5].len < (size_t)(B * T)) {
      cubit_throw(env, CUBIT_RANGE_ERROR, "%s: docIds has %zu ids, needs B*T = %lld", fn, v[5].len,
                  (long long)(B * T));
      return false;
    }
  }
  return true;
}

/* A list argument (ARG_F32_LIST / _OPT / ARG_INT_LIST) into v: count in len, entries in dims /
 * list. Size checks per entry are the kernel's. */
static inline bool arg_list(napi_env env, napi_value *argv, int i, const char *fn, const arg_spec *a,
                            arg_value *v) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, argv[i], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[i], &n) != napi_ok) {
    cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s must be an array", fn, a->name);
    return false;
  }
  if (n > ARG_MAX_LIST) {
    cubit_throw(env, CUBIT_RANGE_ERROR, "%s: %s has %u entries; at most %d are supported", fn,
                a->name, n, ARG_MAX_LIST);
    return false;
  }
  for (uint32_t p = 0; p < n; p++) {
    napi_value e;
    if (napi_get_element(env, argv[i], p, &e) != napi_ok) return false;
    if (a->kind == ARG_INT_LIST) {
      double x;
      if (napi_get_value_double(env, e, &x) != napi_ok || x != floor(x) ||
          !(fabs(x) <= CUBIT_MAX_SAFE_INTEGER) || x < a->ops) {
        cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s[%u] must be an integer >= %d", fn, a->name, p, a->ops);
        return false;
      }
      v->dims[p] = (int64_t)x;
      continue;
    }
    napi_valuetype t;
    const bool nullable = a->kind == ARG_F32_LIST_OPT;
    if (nullable && napi_typeof(env, e, &t) == napi_ok && (t == napi_null || t == napi_undefined)) {
      v->list[p] = NULL;
      v->dims[p] = 0;
      continue;
    }
    bool is_ta = false;
    napi_typedarray_type type;
    size_t len = 0;
    void *data = NULL;
    if (napi_is_typedarray(env, e, &is_ta) != napi_ok || !is_ta ||
        napi_get_typedarray_info(env, e, &type, &len, &data, NULL, NULL) != napi_ok ||
        type != napi_float32_array) {
      cubit_throw(env, CUBIT_TYPE_ERROR, "%s: %s[%u] must be a Float32Array%s", fn, a->name, p,
                  nullable ? " or null" : "");
      return false;
    }
    v->list[p] = data;
    v->dims[p] = (int64_t)len;
  }
  v->len = n;
  return true;
}

static inline bool arg_one(napi_env env, napi_value *argv, int i, const char *fn, const arg_spec *a,
                           arg_value *v) {
  napi_valuetype t;
  switch (a->kind) {
    case ARG_F32_OPT:
      v->absent = napi_typeof(env, argv[i], &t) == napi_ok && (t == napi_null || t == napi_undefined);
      if (v->absent) {
        v->data = NULL;
        v->len = 0;
        return true;
      }
      /* fall through */
    case ARG_F32: return cubit_arg_f32(env, argv, i, fn, a->name, (float **)&v->data, &v->len);
    case ARG_I32: return cubit_arg_i32(env, argv, i, fn, a->name, (int32_t **)&v->data, &v->len);
    case ARG_ANY: {
      bool is_ta = false;
      napi_typedarray_type type;
      if (napi_is_typedarray(env, argv[i], &is_ta) != napi_ok || !is_ta ||
          napi_get_typedarray_info(env, argv[i], &type, &v->len, &v->data, NULL, NULL) != napi_ok ||
          (type != napi_float32_array && type != napi_int32_array)) {
        cubit_throw(env, CUBIT_TYPE_ERROR, "%s: argument %d (%s) must be a Float32Array or an Int32Array", fn, i + 1, a->name);
        return false;
      }
      v->b = type == napi_int32_array;
      return true;
    }
    case ARG_INDEX: return cubit_arg_index(env, argv, i, fn, a->name, &v->n);
    case ARG_INT: return cubit_arg_int(env, argv, i, fn, a->name, &v->n);
    case ARG_NUMBER: return cubit_arg_double(env, argv, i, fn, a->name, &v->x);
    case ARG_BOOL: return cubit_arg_bool(env, argv, i, fn, a->name, &v->b);
    case ARG_OP:
      if (!cubit_arg_index(env, argv, i, fn, "op", &v->n)) return false;
      if (v->n >= a->ops) {
        cubit_throw(env, CUBIT_RANGE_ERROR, "%s: argument %d (op) must be an op code below %d, got %lld",
                    fn, i + 1, a->ops, (long long)v->n);
        return false;
      }
      return true;
    case ARG_SHAPE:
    case ARG_STRIDES: {
      int rank;
      if (!arg_ints(env, argv, i, fn, a->name, a->kind == ARG_SHAPE, v->dims, &rank)) return false;
      v->len = (size_t)rank;
      return true;
    }
    case ARG_DIMS: return arg_mixer_dims(env, argv, i, fn, v);
    case ARG_DIMS_REST: return true;
    case ARG_F32_LIST:
    case ARG_F32_LIST_OPT:
    case ARG_INT_LIST: return arg_list(env, argv, i, fn, a, v);
  }
  return false;
}

/* Reads every argument of `k` into v, then checks each array against its size. */
static inline bool marshal(napi_env env, napi_callback_info info, const kernel_spec *k, arg_value *v) {
  napi_value argv[MAX_ARGS];
  if (!cubit_get_args(env, info, k->fn, (size_t)k->count, argv)) return false;
  for (int i = 0; i < k->count; i++) v[i].absent = false;
  for (int i = 0; i < k->count; i++)
    if (!arg_one(env, argv, i, k->fn, &k->args[i], &v[i])) return false;
  for (int i = 0; i < k->count; i++) {
    const arg_spec *a = &k->args[i];
    const char *s = a->size;
    if (!s || v[i].absent) continue;
    int64_t off = 0, n = 1;
    if (s[0] && s[1] == '+') {
      off = v[arg_position(s[0])].n;
      s += 2;
    }
    for (; *s; s++)
      if (!mul_ok(env, k->fn, n, v[arg_position(*s)].n, &n)) return false;
    if (!need(env, k->fn, a->name, v[i].len, off, n)) return false;
    v[i].n = off;
  }
  return true;
}

/* Declares kernel `name`'s table and entry point; the body sees `v` (the values) and `fn`. */
#define KERNEL(name, js, count, ...)                                                            \
  static napi_value name##_body(napi_env env, const char *fn, arg_value *v);                   \
  static const kernel_spec name##_spec = {js, count, {__VA_ARGS__}};                           \
  _Static_assert(count <= MAX_ARGS, js ": too many arguments for MAX_ARGS");                   \
  CUBIT_NAPI(name) {                                                                           \
    arg_value v[count];                                                                        \
    if (!marshal(env, info, &name##_spec, v)) return NULL;                                     \
    return name##_body(env, name##_spec.fn, v);                                                \
  }                                                                                            \
  static napi_value name##_body(napi_env env, const char *fn, arg_value *v)

#define F(i) ((float *)v[i].data)
#define I(i) ((int32_t *)v[i].data)
#define N(i) (v[i].n)
#define Z(i) ((size_t)v[i].n)
#define X(i) (v[i].x)
#define B(i) (v[i].b)
/* List i's count, entry p (an integer, or an F32 list's array and its length). */
#define LN(i) (v[i].len)
#define LI(i, p) (v[i].dims[p])
#define LF(i, p) (v[i].list[p])
#define LL(i, p) ((size_t)v[i].dims[p])

#endif
