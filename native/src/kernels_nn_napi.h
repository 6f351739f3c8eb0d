/* N-API entry points of the non-GEMM kernels (kernels_nn_napi.c), and the rows they add to
 * addon.c's export table through CUBIT_NN_EXPORTS. Their arguments mirror the Backend kernels
 * of src/core/backend.ts, with op names passed as codes (kernels_nn.h). */
#ifndef CUBIT_KERNELS_NN_NAPI_H
#define CUBIT_KERNELS_NN_NAPI_H

#include "napi_util.h"

CUBIT_NAPI(cubit_napi_nn_fill);
CUBIT_NAPI(cubit_napi_nn_copy);
CUBIT_NAPI(cubit_napi_nn_strided_copy);
CUBIT_NAPI(cubit_napi_nn_unary);
CUBIT_NAPI(cubit_napi_nn_unary_bwd);
CUBIT_NAPI(cubit_napi_nn_binary);
CUBIT_NAPI(cubit_napi_nn_where);
CUBIT_NAPI(cubit_napi_nn_reduce);
CUBIT_NAPI(cubit_napi_nn_softmax);
CUBIT_NAPI(cubit_napi_nn_softmax_bwd);
CUBIT_NAPI(cubit_napi_nn_rmsnorm);
CUBIT_NAPI(cubit_napi_nn_rmsnorm_bwd);
CUBIT_NAPI(cubit_napi_nn_layernorm);
CUBIT_NAPI(cubit_napi_nn_layernorm_bwd);
CUBIT_NAPI(cubit_napi_nn_gather);
CUBIT_NAPI(cubit_napi_nn_scatter_add);
CUBIT_NAPI(cubit_napi_nn_xent);
CUBIT_NAPI(cubit_napi_nn_xent_bwd);
CUBIT_NAPI(cubit_napi_nn_dropout);
CUBIT_NAPI(cubit_napi_nn_adamw);
CUBIT_NAPI(cubit_napi_nn_rotary);
CUBIT_NAPI(cubit_napi_nn_swiglu);
CUBIT_NAPI(cubit_napi_nn_swiglu_bwd);
CUBIT_NAPI(cubit_napi_nn_ref_norm);
CUBIT_NAPI(cubit_napi_nn_ref_norm_bwd);
CUBIT_NAPI(cubit_napi_nn_lrr);
CUBIT_NAPI(cubit_napi_nn_lrr_bwd);

#define CUBIT_NN_EXPORTS                                       \
  {"fill", cubit_napi_nn_fill},                                \
  {"copy", cubit_napi_nn_copy},                                \
  {"stridedCopy", cubit_napi_nn_strided_copy},                 \
  {"unary", cubit_napi_nn_unary},                              \
  {"unaryBackward", cubit_napi_nn_unary_bwd},                  \
  {"binary", cubit_napi_nn_binary},                            \
  {"where", cubit_napi_nn_where},                              \
  {"reduce", cubit_napi_nn_reduce},                            \
  {"softmax", cubit_napi_nn_softmax},                          \
  {"softmaxBackward", cubit_napi_nn_softmax_bwd},              \
  {"rmsNorm", cubit_napi_nn_rmsnorm},                          \
  {"rmsNormBackward", cubit_napi_nn_rmsnorm_bwd},              \
  {"layerNorm", cubit_napi_nn_layernorm},                      \
  {"layerNormBackward", cubit_napi_nn_layernorm_bwd},          \
  {"gather", cubit_napi_nn_gather},                            \
  {"scatterAdd", cubit_napi_nn_scatter_add},                   \
  {"crossEntropy", cubit_napi_nn_xent},                        \
  {"crossEntropyBackward", cubit_napi_nn_xent_bwd},            \
  {"dropoutMask", cubit_napi_nn_dropout},                      \
  {"adamw", cubit_napi_nn_adamw},                              \
  {"rotary", cubit_napi_nn_rotary},                            \
  {"swiglu", cubit_napi_nn_swiglu},                            \
  {"swigluBackward", cubit_napi_nn_swiglu_bwd},                \
  {"normalizeReference", cubit_napi_nn_ref_norm},              \
  {"normalizeReferenceBackward", cubit_napi_nn_ref_norm_bwd},  \
  {"lrrValues", cubit_napi_nn_lrr},                            \
  {"lrrValuesBackward", cubit_napi_nn_lrr_bwd},

#endif
