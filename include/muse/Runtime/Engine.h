//===- Engine.h - libmuse C++ API -----------------------------------------===//
//
//   muse::Engine engine;                       // NVRTC + driver + cache
//   auto att = engine.build(muse::SpecSource::file("specs/acausal_d64.yaml"));
//   if (!att) { puts(att.error().c_str()); ... }
//   size_t ws = att->workspaceBytes(shape);
//   muse::Status s = att->forward(args, stream);
//
// Every failure is a Status with a message; nothing here aborts or throws
// across the API.
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_ENGINE_H
#define MUSE_RUNTIME_ENGINE_H

#include "muse/Spec/Spec.h"
#include "muse/Target/Cuda/LaunchPlan.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace muse {

enum class StatusCode {
  Ok = 0,
  InvalidSpec,     // the spec does not parse or validate
  InvalidArgument, // shapes, strides, pointers, dtype
  CompileError,    // the compiler or NVRTC failed
  NoDevice,        // no CUDA driver or no GPU
  CudaError,       // a driver call failed
  CacheError,      // only reported when the cache is required
  Internal,
};

struct Status {
  StatusCode code = StatusCode::Ok;
  std::string message;
  bool ok() const { return code == StatusCode::Ok; }
  static Status success() { return {}; }
};

/// Tensor arguments of one forward call (device pointers; strides in elements;
/// the innermost dimension must be contiguous). See templates/muse/params.cuh.
struct ForwardArgs {
  Shape shape;
  const void *q = nullptr; int64_t qStride[3] = {0, 0, 0}; // b, h, n
  const void *k = nullptr; int64_t kStride[3] = {0, 0, 0}; // b, h, m
  const void *v = nullptr; int64_t vStride[3] = {0, 0, 0};
  float *o = nullptr;      int64_t oStride[3] = {0, 0, 0};
  float *lse = nullptr;    // [B, H, N] contiguous, may be null
  void *workspace = nullptr; int64_t workspaceBytes = 0;
  /// Optional copies of the partitions (device, int32): [B*H, N] and [B*Hkv, M].
  int32_t *queryAssign = nullptr;
  int32_t *keyAssign = nullptr;
};

class Attention; // a compiled spec: module loaded, plan ready

class Engine {
public:
  Engine();
  ~Engine();
  /// Builds (or loads from the cache) the kernels of a spec. The error text of
  /// a failure is in `status`.
  std::shared_ptr<Attention> build(const Spec &spec, Status &status);
  std::shared_ptr<Attention> buildFromFile(const std::string &path, Status &status);
  std::shared_ptr<Attention> buildFromString(const std::string &yaml, Status &status);

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Attention {
public:
  virtual ~Attention() = default;
  virtual const Spec &spec() const = 0;
  virtual const LaunchPlan &plan() const = 0;
  virtual int64_t workspaceBytes(const Shape &shape) const = 0;
  /// Checks shapes and strides against the spec; launches on `stream`
  /// (a CUstream, null for the default stream).
  virtual Status forward(const ForwardArgs &args, void *stream) = 0;
};

} // namespace muse

#endif
