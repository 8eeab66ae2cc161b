/* mlxfn's plain C calling API: open an mlxfn file, call its function on
 * tensors, read the outputs, free everything.  For Swift, Rust and other
 * languages that bind C; C++ users have <mlxfn/mlxfn.h>.
 *
 *   MlxfnError* err = NULL;
 *   MlxfnFunction* fn = mlxfn_function_open("model.mlxfn", &err);
 *   if (!fn) { puts(mlxfn_error_message(err)); mlxfn_error_free(err); return 1; }
 *   int64_t shape[2] = {2, 3};
 *   float x[6] = {0};
 *   MlxfnTensor in = {MlxfnDType_Float32, shape, 2, x};
 *   MlxfnTensors* out = NULL;
 *   if (mlxfn_function_call(fn, &in, 1, &out, &err)) {
 *     const MlxfnTensor* y = mlxfn_tensors_get(out, 0);  // y->data: row-major
 *     mlxfn_tensors_free(out);
 *   }
 *   mlxfn_function_free(fn);
 *
 * Failures follow the core's convention (mlxfn_core.h): a call returns null
 * or false and, when `err` is not null, stores a new MlxfnError there (free
 * it with mlxfn_error_free); on success it stores null.  The message is the
 * one the C++ API's exception carries; a call that matches no trace of the
 * file gets MLX's "[import_function::call] No imported function found ...". */
#ifndef MLXFN_C_H
#define MLXFN_C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mlxfn/mlxfn_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An imported function (every trace of one file).  May be called from
 * several threads at once. */
typedef struct MlxfnFunction MlxfnFunction;

/* A tensor: dtype, shape (ndim sizes) and row-major contiguous data.  Inputs
 * are copied at the call; outputs are owned by their MlxfnTensors. */
typedef struct MlxfnTensor {
  MlxfnDType dtype;
  const int64_t* shape;
  size_t ndim;
  const void* data;
} MlxfnTensor;

/* A call's outputs, evaluated and row-contiguous. */
typedef struct MlxfnTensors MlxfnTensors;

/* Import the function in the mlxfn file at `path` (constants mapped where
 * MLX can compute on the mapped pages, else copied). */
MlxfnFunction* mlxfn_function_open(const char* path, MlxfnError** err);

/* Import from an mlxfn file in memory.  Not copied: the caller keeps the
 * `len` bytes at `data` alive and unchanged until the function and every
 * output it returned are freed. */
MlxfnFunction* mlxfn_function_open_bytes(const uint8_t* data, size_t len, MlxfnError** err);

/* Call with `n_inputs` positional inputs.  On success stores the outputs in
 * `*outputs` (free them with mlxfn_tensors_free). */
bool mlxfn_function_call(MlxfnFunction* fn, const MlxfnTensor* inputs, size_t n_inputs,
                         MlxfnTensors** outputs, MlxfnError** err);

/* Call with positional inputs and `n_kwargs` keyword inputs named
 * `kwarg_names[i]` with values `kwargs[i]`. */
bool mlxfn_function_call_kwargs(MlxfnFunction* fn, const MlxfnTensor* inputs, size_t n_inputs,
                                const char* const* kwarg_names, const MlxfnTensor* kwargs,
                                size_t n_kwargs, MlxfnTensors** outputs, MlxfnError** err);

/* How many outputs; the `i`th (null past the end), valid until freed. */
size_t mlxfn_tensors_len(const MlxfnTensors* tensors);
const MlxfnTensor* mlxfn_tensors_get(const MlxfnTensors* tensors, size_t i);

/* Free outputs or a function (null is allowed). */
void mlxfn_tensors_free(MlxfnTensors* tensors);
void mlxfn_function_free(MlxfnFunction* fn);

#ifdef __cplusplus
}
#endif

#endif /* MLXFN_C_H */
