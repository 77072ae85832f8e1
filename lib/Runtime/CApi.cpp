//===- CApi.cpp - The C ABI over muse::Engine -----------------------------===//

#include "muse/muse.h"

#include "muse/Compiler/Compiler.h"
#include "muse/Runtime/Engine.h"

#include <exception>
#include <new>
#include <string>

struct muse_engine {
  muse::Engine engine;
};

struct muse_attention {
  std::shared_ptr<muse::Attention> att;
  std::string dtype;
};

namespace {

thread_local std::string gLastError;

muse_status_t fail(muse_status_t code, std::string msg) {
  gLastError = std::move(msg);
  return code;
}

muse_status_t toC(const muse::Status &s) {
  if (s.ok())
    return MUSE_OK;
  switch (s.code) {
  case muse::StatusCode::InvalidSpec: return fail(MUSE_ERROR_INVALID_SPEC, s.message);
  case muse::StatusCode::InvalidArgument: return fail(MUSE_ERROR_INVALID_ARGUMENT, s.message);
  case muse::StatusCode::CompileError: return fail(MUSE_ERROR_COMPILE, s.message);
  case muse::StatusCode::NoDevice: return fail(MUSE_ERROR_NO_DEVICE, s.message);
  case muse::StatusCode::CudaError: return fail(MUSE_ERROR_CUDA, s.message);
  case muse::StatusCode::CacheError: return fail(MUSE_ERROR_CACHE, s.message);
  default: return fail(MUSE_ERROR_INTERNAL, s.message);
  }
}

/// Runs `body`, turning any escaping exception into a status.
template <typename F> muse_status_t guarded(F &&body) {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return fail(MUSE_ERROR_INTERNAL, "out of host memory");
  } catch (const std::exception &e) {
    return fail(MUSE_ERROR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return fail(MUSE_ERROR_INTERNAL, "internal error: unknown exception");
  }
}

muse_status_t wrap(std::shared_ptr<muse::Attention> att, const muse::Status &s,
                   muse_attention_t **out) {
  if (!att)
    return toC(s);
  auto *h = new muse_attention{std::move(att), ""};
  h->dtype = muse::dtypeName(h->att->spec().dtype);
  *out = h;
  return MUSE_OK;
}

muse::Shape toShape(const muse_shape_t &c) { return {c.B, c.H, c.Hkv, c.N, c.M}; }

bool allPositive(const muse::Shape &s) {
  return s.B >= 1 && s.H >= 1 && s.Hkv >= 1 && s.N >= 1 && s.M >= 1;
}

#define MUSE_REQUIRE(cond, what)                                                           \
  if (!(cond))                                                                             \
    return fail(MUSE_ERROR_INVALID_ARGUMENT, what);

} // namespace

extern "C" {

const char *muse_version(void) { return muse::kGeneratorVersion; }
int muse_abi_version(void) { return MUSE_ABI_VERSION; }
const char *muse_last_error(void) { return gLastError.c_str(); }

muse_status_t muse_engine_create(muse_engine_t **out) {
  return guarded([&] {
    MUSE_REQUIRE(out, "muse_engine_create: out is NULL");
    *out = new muse_engine();
    return MUSE_OK;
  });
}

void muse_engine_destroy(muse_engine_t *engine) {
  try {
    delete engine;
  } catch (...) {
  }
}

muse_status_t muse_attention_build_file(muse_engine_t *engine, const char *path,
                                        muse_attention_t **out) {
  return guarded([&] {
    MUSE_REQUIRE(engine && path && out, "muse_attention_build_file: engine, path and out "
                                        "must not be NULL");
    *out = nullptr;
    muse::Status s;
    return wrap(engine->engine.buildFromFile(path, s), s, out);
  });
}

muse_status_t muse_attention_build_string(muse_engine_t *engine, const char *yaml,
                                          muse_attention_t **out) {
  return muse_attention_build_string_overrides(engine, yaml, nullptr, 0, out);
}

muse_status_t muse_attention_build_string_overrides(muse_engine_t *engine, const char *yaml,
                                                    const char *const *overrides,
                                                    int num_overrides, muse_attention_t **out) {
  return guarded([&] {
    MUSE_REQUIRE(engine && yaml && out, "muse_attention_build_string: engine, yaml and out "
                                        "must not be NULL");
    MUSE_REQUIRE(num_overrides >= 0 && (num_overrides == 0 || overrides),
                 "muse_attention_build_string_overrides: overrides is NULL or "
                 "num_overrides < 0");
    *out = nullptr;
    std::vector<std::string> list;
    for (int i = 0; i < num_overrides; ++i) {
      MUSE_REQUIRE(overrides[i], "muse_attention_build_string_overrides: override " +
                                     std::to_string(i) + " is NULL");
      list.emplace_back(overrides[i]);
    }
    muse::Status s;
    return wrap(engine->engine.buildFromString(yaml, list, s), s, out);
  });
}

muse_status_t muse_engine_precompile_file(muse_engine_t *engine, const char *path) {
  return guarded([&] {
    MUSE_REQUIRE(engine && path, "muse_engine_precompile_file: engine and path must not be "
                                 "NULL");
    muse::SpecResult r = muse::parseSpecFile(path);
    if (!r.ok()) {
      std::string msg;
      for (const auto &d : r.diagnostics)
        msg += (msg.empty() ? "" : "\n") + d.str();
      return fail(MUSE_ERROR_INVALID_SPEC, msg);
    }
    muse::Status s;
    engine->engine.compile(*r.spec, s);
    return toC(s);
  });
}

void muse_attention_destroy(muse_attention_t *attention) {
  try {
    delete attention;
  } catch (...) {
  }
}

muse_status_t muse_attention_info(const muse_attention_t *attention,
                                  muse_attention_info_t *out) {
  return guarded([&] {
    MUSE_REQUIRE(attention && out, "muse_attention_info: attention and out must not be NULL");
    const muse::Spec &s = attention->att->spec();
    out->name = s.name.c_str();
    out->arch = s.arch.c_str();
    out->dtype = attention->dtype.c_str();
    out->head_dim = s.headDim;
    out->value_dim = s.valueDim;
    out->kv_heads_ratio = s.kvHeadsRatio;
    out->causal = s.causal ? 1 : 0;
    out->query_clusters = s.queryClusters;
    out->key_clusters = s.keyClusters;
    out->scale = s.effectiveScale();
    out->num_launches = int(attention->att->plan().launches.size());
    return MUSE_OK;
  });
}

muse_status_t muse_attention_workspace_bytes(const muse_attention_t *attention,
                                             const muse_shape_t *shape, int64_t *out) {
  return guarded([&] {
    MUSE_REQUIRE(attention && shape && out,
                 "muse_attention_workspace_bytes: attention, shape and out must not be NULL");
    const muse::Shape s = toShape(*shape);
    MUSE_REQUIRE(allPositive(s),
                 "muse_attention_workspace_bytes: every dimension of the shape must be >= 1");
    *out = attention->att->workspaceBytes(s);
    return MUSE_OK;
  });
}

muse_status_t muse_attention_forward(muse_attention_t *attention,
                                     const muse_forward_args_t *args, void *stream) {
  return guarded([&] {
    MUSE_REQUIRE(attention && args, "muse_attention_forward: attention and args must not be "
                                    "NULL");
    muse::ForwardArgs f;
    f.shape = toShape(args->shape);
    f.q = args->q;
    f.k = args->k;
    f.v = args->v;
    f.o = args->o;
    f.lse = args->lse;
    for (int i = 0; i < 3; ++i) {
      f.qStride[i] = args->q_stride[i];
      f.kStride[i] = args->k_stride[i];
      f.vStride[i] = args->v_stride[i];
      f.oStride[i] = args->o_stride[i];
    }
    f.workspace = args->workspace;
    f.workspaceBytes = args->workspace_bytes;
    f.queryAssign = args->query_assign;
    f.keyAssign = args->key_assign;
    MUSE_REQUIRE(args->o_type == MUSE_OUTPUT_F32 || args->o_type == MUSE_OUTPUT_INPUT,
                 "muse_attention_forward: o_type is " + std::to_string(args->o_type) +
                     "; allowed: MUSE_OUTPUT_F32 (0), MUSE_OUTPUT_INPUT (1)");
    f.oType = args->o_type == MUSE_OUTPUT_INPUT ? muse::OutputType::Input : muse::OutputType::F32;
    return toC(attention->att->forward(f, stream));
  });
}

muse_status_t muse_attention_backward_workspace_bytes(const muse_attention_t *attention,
                                                      const muse_shape_t *shape, int64_t *out) {
  return guarded([&] {
    MUSE_REQUIRE(attention && shape && out, "muse_attention_backward_workspace_bytes: attention, "
                                            "shape and out must not be NULL");
    const muse::Shape s = toShape(*shape);
    MUSE_REQUIRE(allPositive(s), "muse_attention_backward_workspace_bytes: every dimension of "
                                 "the shape must be >= 1");
    *out = attention->att->backwardWorkspaceBytes(s);
    return MUSE_OK;
  });
}

muse_status_t muse_attention_backward(muse_attention_t *attention,
                                      const muse_backward_args_t *args, void *stream) {
  return guarded([&] {
    MUSE_REQUIRE(attention && args, "muse_attention_backward: attention and args must not be "
                                    "NULL");
    muse::BackwardArgs b;
    b.shape = toShape(args->shape);
    b.q = args->q;
    b.k = args->k;
    b.v = args->v;
    b.o = args->o;
    b.lse = args->lse;
    b.dO = args->d_o;
    b.dLse = args->d_lse;
    b.dq = args->dq;
    b.dk = args->dk;
    b.dv = args->dv;
    for (int i = 0; i < 3; ++i) {
      b.qStride[i] = args->q_stride[i];
      b.kStride[i] = args->k_stride[i];
      b.vStride[i] = args->v_stride[i];
      b.oStride[i] = args->o_stride[i];
      b.dOStride[i] = args->d_o_stride[i];
      b.dqStride[i] = args->dq_stride[i];
      b.dkStride[i] = args->dk_stride[i];
      b.dvStride[i] = args->dv_stride[i];
    }
    b.workspace = args->workspace;
    b.workspaceBytes = args->workspace_bytes;
    MUSE_REQUIRE(args->grad_type == MUSE_OUTPUT_F32 || args->grad_type == MUSE_OUTPUT_INPUT,
                 "muse_attention_backward: grad_type is " + std::to_string(args->grad_type) +
                     "; allowed: MUSE_OUTPUT_F32 (0), MUSE_OUTPUT_INPUT (1)");
    b.gradType = args->grad_type == MUSE_OUTPUT_INPUT ? muse::OutputType::Input : muse::OutputType::F32;
    return toC(attention->att->backward(b, stream));
  });
}

} // extern "C"
