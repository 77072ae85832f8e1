/*===- muse.h - libmuse C ABI ----------------------------------------------===
 *
 * The C++ API of muse/Runtime/Engine.h through opaque handles and status
 * codes, for Python (ctypes) and any other embedder. No C++ exception crosses
 * this boundary; every failure returns a status and leaves a message in
 * muse_last_error() (per thread: the message of the last failed call).
 *
 *   muse_engine_t *e;       muse_engine_create(&e);
 *   muse_attention_t *a;    if (muse_attention_build_file(e, "spec.yaml", &a))
 *                             fprintf(stderr, "%s\n", muse_last_error());
 *   muse_shape_t s = {B, H, Hkv, N, M};
 *   int64_t ws;             muse_attention_workspace_bytes(a, &s, &ws);
 *   muse_forward_args_t f = {...};  muse_attention_forward(a, &f, stream);
 *   muse_attention_destroy(a); muse_engine_destroy(e);
 *
 * An attention stays valid after its engine is destroyed.
 *===----------------------------------------------------------------------===*/
#ifndef MUSE_MUSE_H
#define MUSE_MUSE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 3: o and the gradients may be in the attention's dtype (o_type, grad_type);
 * 2: the backward's o and d_o are in the attention's dtype (1: fp32). */
#define MUSE_ABI_VERSION 3

typedef enum muse_status {
  MUSE_OK = 0,
  MUSE_ERROR_INVALID_SPEC = 1,     /* the spec does not parse or validate */
  MUSE_ERROR_INVALID_ARGUMENT = 2, /* shapes, strides, pointers, null handles */
  MUSE_ERROR_COMPILE = 3,          /* the compiler or NVRTC failed */
  MUSE_ERROR_NO_DEVICE = 4,        /* no CUDA driver or no GPU */
  MUSE_ERROR_CUDA = 5,             /* a driver call failed */
  MUSE_ERROR_CACHE = 6,
  MUSE_ERROR_INTERNAL = 7
} muse_status_t;

typedef struct muse_engine muse_engine_t;
typedef struct muse_attention muse_attention_t;

/* Element type of a call's outputs (o; dq, dk, dv). MUSE_OUTPUT_INPUT: the
 * attention's dtype (bf16, f16; f32 attentions: fp32), each element rounded
 * once from the fp32 result, with no fp32 copy for the caller to allocate. */
typedef enum muse_output_type {
  MUSE_OUTPUT_F32 = 0,
  MUSE_OUTPUT_INPUT = 1
} muse_output_type_t;

typedef struct muse_shape {
  int64_t B, H, Hkv, N, M;
} muse_shape_t;

/* Device pointers; strides in elements (b, h, n|m); the innermost dimension
 * is contiguous. o is fp32 or in the attention's dtype (o_type); lse is fp32,
 * [B, H, N] contiguous or NULL. */
typedef struct muse_forward_args {
  muse_shape_t shape;
  const void *q; int64_t q_stride[3];
  const void *k; int64_t k_stride[3];
  const void *v; int64_t v_stride[3];
  void *o;       int64_t o_stride[3];
  float *lse;
  void *workspace; int64_t workspace_bytes;
  int32_t *query_assign; /* optional copies of the partitions: [B*H, N] */
  int32_t *key_assign;   /* [B*Hkv, M] */
  int32_t o_type;        /* muse_output_type_t; 0: fp32 */
} muse_forward_args_t;

/* The backward of one forward call (acausal and causal specs; muse::BackwardArgs in
 * muse/Runtime/Engine.h): q, k, v, o and workspace of that call, the
 * workspace allocated with muse_attention_backward_workspace_bytes and its
 * forward part untouched since. o and d_o are in the attention's dtype, like
 * q, k and v; dq, dk, dv are fp32 or in the attention's dtype (grad_type);
 * lse and d_lse ([B, H, N] contiguous) may be NULL (lse: the workspace's
 * copy; d_lse: 0). */
typedef struct muse_backward_args {
  muse_shape_t shape;
  const void *q;  int64_t q_stride[3];
  const void *k;  int64_t k_stride[3];
  const void *v;  int64_t v_stride[3];
  const void *o;  int64_t o_stride[3];
  const float *lse;
  const void *d_o; int64_t d_o_stride[3];
  const float *d_lse;
  void *dq; int64_t dq_stride[3];
  void *dk; int64_t dk_stride[3];
  void *dv; int64_t dv_stride[3];
  void *workspace; int64_t workspace_bytes;
  int32_t grad_type; /* muse_output_type_t; 0: fp32 */
} muse_backward_args_t;

typedef struct muse_attention_info {
  const char *name; /* owned by the attention */
  const char *arch; /* "sm_90"; owned by the attention */
  const char *dtype; /* "bf16", "f16", "f32" */
  int head_dim, value_dim, kv_heads_ratio, causal;
  int query_clusters, key_clusters;
  double scale; /* the softmax scale actually used */
  int num_launches;
} muse_attention_info_t;

/* "0.1.0" */
const char *muse_version(void);
int muse_abi_version(void);
/* The message of the last failed call on this thread ("" if none). */
const char *muse_last_error(void);

muse_status_t muse_engine_create(muse_engine_t **out);
void muse_engine_destroy(muse_engine_t *engine);

muse_status_t muse_attention_build_file(muse_engine_t *engine, const char *path,
                                        muse_attention_t **out);
muse_status_t muse_attention_build_string(muse_engine_t *engine, const char *yaml,
                                          muse_attention_t **out);
/* YAML plus "section.field=value" overrides (num_overrides may be 0). */
muse_status_t muse_attention_build_string_overrides(muse_engine_t *engine, const char *yaml,
                                                    const char *const *overrides,
                                                    int num_overrides, muse_attention_t **out);
/* Compiles (and caches) without loading: works without a GPU. */
muse_status_t muse_engine_precompile_file(muse_engine_t *engine, const char *path);
void muse_attention_destroy(muse_attention_t *attention);

muse_status_t muse_attention_info(const muse_attention_t *attention,
                                  muse_attention_info_t *out);
muse_status_t muse_attention_workspace_bytes(const muse_attention_t *attention,
                                             const muse_shape_t *shape, int64_t *out);
/* stream: a CUstream / cudaStream_t, NULL for the default stream. */
muse_status_t muse_attention_forward(muse_attention_t *attention,
                                     const muse_forward_args_t *args, void *stream);
/* Bytes of a workspace that serves a forward call and then its backward. */
muse_status_t muse_attention_backward_workspace_bytes(const muse_attention_t *attention,
                                                      const muse_shape_t *shape, int64_t *out);
/* dq, dk, dv on `stream`, after the forward call on the same stream. */
muse_status_t muse_attention_backward(muse_attention_t *attention,
                                      const muse_backward_args_t *args, void *stream);

#ifdef __cplusplus
}
#endif

#endif
