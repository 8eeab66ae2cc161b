/* Calls an mlxfn file through the plain C API (mlxfn_c.h), for
 * tests/test_c_api.py.
 *
 *   call [--bytes] FILE INPUT...
 *
 * INPUT is [NAME=]DTYPE:D0,D1,...:RAW: a keyword input when NAME= is given,
 * DTYPE an MlxfnDType code, the shape (empty for a scalar) and a file of
 * the row-major bytes.  --bytes imports from memory.  Prints one line per
 * output, "output I DTYPE D0,D1,... HEX", or "error KIND MESSAGE" and exits
 * with 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlxfn/mlxfn_c.h"

#define MAX_INPUTS 16
#define MAX_DIMS 8

typedef struct Input {
  const char* name; /* null: positional */
  MlxfnTensor tensor;
  int64_t shape[MAX_DIMS];
  void* data;
} Input;

static void* read_all(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  /* Page-aligned, as mapped constants want from an in-memory file. */
  size_t rounded = ((size_t)size + 16383) / 16384 * 16384;
  void* data = aligned_alloc(16384, rounded > 0 ? rounded : 16384);
  if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *len = (size_t)size;
  return data;
}

static int parse_input(char* spec, Input* in) {
  char* eq = strchr(spec, '=');
  in->name = NULL;
  if (eq) {
    *eq = '\0';
    in->name = spec;
    spec = eq + 1;
  }
  char* dims = strchr(spec, ':');
  if (!dims) return 0;
  *dims++ = '\0';
  char* raw = strchr(dims, ':');
  if (!raw) return 0;
  *raw++ = '\0';
  in->tensor.dtype = (MlxfnDType)atoi(spec);
  in->tensor.ndim = 0;
  for (char* d = strtok(dims, ","); d && in->tensor.ndim < MAX_DIMS; d = strtok(NULL, ",")) {
    in->shape[in->tensor.ndim++] = atoll(d);
  }
  in->tensor.shape = in->shape;
  size_t len = 0;
  in->data = read_all(raw, &len);
  in->tensor.data = in->data;
  return in->data != NULL;
}

static int report(MlxfnError* err) {
  printf("error %d %s\n", (int)mlxfn_error_kind(err), mlxfn_error_message(err));
  mlxfn_error_free(err);
  return 2;
}

int main(int argc, char** argv) {
  int arg = 1;
  int from_bytes = argc > arg && strcmp(argv[arg], "--bytes") == 0;
  if (from_bytes) ++arg;
  if (argc <= arg) {
    fprintf(stderr, "usage: call [--bytes] FILE INPUT...\n");
    return 1;
  }
  MlxfnError* err = NULL;
  MlxfnFunction* fn = NULL;
  void* file = NULL;
  if (from_bytes) {
    size_t len = 0;
    file = read_all(argv[arg], &len);
    if (!file) {
      fprintf(stderr, "cannot read %s\n", argv[arg]);
      return 1;
    }
    fn = mlxfn_function_open_bytes(file, len, &err);
  } else {
    fn = mlxfn_function_open(argv[arg], &err);
  }
  if (!fn) return report(err);

  static Input inputs[MAX_INPUTS];
  MlxfnTensor positional[MAX_INPUTS], keyword[MAX_INPUTS];
  const char* names[MAX_INPUTS];
  size_t n_positional = 0, n_keyword = 0;
  for (int i = arg + 1; i < argc && i - arg - 1 < MAX_INPUTS; ++i) {
    Input* in = &inputs[i - arg - 1];
    if (!parse_input(argv[i], in)) {
      fprintf(stderr, "bad input %s\n", argv[i]);
      return 1;
    }
    if (in->name) {
      names[n_keyword] = in->name;
      keyword[n_keyword++] = in->tensor;
    } else {
      positional[n_positional++] = in->tensor;
    }
  }

  MlxfnTensors* outputs = NULL;
  int ok = n_keyword > 0 ? mlxfn_function_call_kwargs(fn, positional, n_positional, names, keyword, n_keyword,
                                                      &outputs, &err)
                         : mlxfn_function_call(fn, positional, n_positional, &outputs, &err);
  for (int i = arg + 1; i < argc && i - arg - 1 < MAX_INPUTS; ++i) free(inputs[i - arg - 1].data);
  if (!ok) {
    mlxfn_function_free(fn);
    free(file);
    return report(err);
  }
  for (size_t i = 0; i < mlxfn_tensors_len(outputs); ++i) {
    const MlxfnTensor* t = mlxfn_tensors_get(outputs, i);
    size_t count = 1;
    printf("output %zu %d ", i, (int)t->dtype);
    for (size_t k = 0; k < t->ndim; ++k) {
      printf(k ? ",%lld" : "%lld", (long long)t->shape[k]);
      count *= (size_t)t->shape[k];
    }
    printf(" ");
    size_t bytes = count * mlxfn_dtype_size((uint8_t)t->dtype);
    for (size_t b = 0; b < bytes; ++b) printf("%02x", ((const unsigned char*)t->data)[b]);
    printf("\n");
  }
  mlxfn_tensors_free(outputs);
  mlxfn_function_free(fn);
  free(file);
  return 0;
}
