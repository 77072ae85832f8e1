//===- Engine.h - libmuse C++ API -----------------------------------------===//
//
//   muse::Engine engine;                       // NVRTC + driver + cache
//   muse::Status st;
//   auto att = engine.buildFromFile("specs/acausal_d64.yaml", st);
//   if (!att) { puts(st.message.c_str()); ... }
//   int64_t ws = att->workspaceBytes(shape);
//   st = att->forward(args, stream);
//
// Two steps, so that everything but running kernels works without a GPU:
// `compile` (spec -> CUDA source -> NVRTC cubin, through the cache; no driver
// needed: `muse-gen build`) and `build` (compile, then load the cubin into
// the current CUDA context and resolve the kernels of the plan).
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

/// Element type of a call's outputs (o; dq, dk, dv): fp32, or the spec's
/// dtype (bf16, f16; for f32 specs the same as F32). Input rounds each
/// element once from the fp32 result (templates/muse/emit.cuh), so it equals
/// an F32 call's output rounded to the input dtype.
enum class OutputType { F32, Input };

/// Tensor arguments of one forward call (device pointers; strides in elements;
/// the innermost dimension must be contiguous). See templates/muse/params.cuh.
struct ForwardArgs {
  Shape shape;
  const void *q = nullptr; int64_t qStride[3] = {0, 0, 0}; // b, h, n
  const void *k = nullptr; int64_t kStride[3] = {0, 0, 0}; // b, h, m
  const void *v = nullptr; int64_t vStride[3] = {0, 0, 0};
  void *o = nullptr;       int64_t oStride[3] = {0, 0, 0};
  OutputType oType = OutputType::F32; // o's elements: float, or the spec's dtype
  float *lse = nullptr;    // [B, H, N] contiguous, may be null
  void *workspace = nullptr; int64_t workspaceBytes = 0;
  /// Optional copies of the partitions (device, int32): [B*H, N] and [B*Hkv, M].
  /// Causal specs: the layout of muse::ref::Partitions, levels x heads x N
  /// (levels: Attention::causalLevels), -1 where a level does not apply; then
  /// all three or none, and servedAssign [levels, B*H, N] is the nearest
  /// non-empty segment centroid of every served query.
  int32_t *queryAssign = nullptr;
  int32_t *keyAssign = nullptr;
  int32_t *servedAssign = nullptr;
};

/// Arguments of one backward call (acausal specs; ALGORITHM.md section 5):
/// the gradients of a loss L given dO = dL/do (and optionally dL/dlse), with
/// the partitions of the forward call held fixed. q, k, v and o must be those
/// of that forward call, and `workspace` the one it used, allocated with at
/// least Attention::backwardWorkspaceBytes bytes: its first workspaceBytes
/// bytes must still hold what the forward wrote (partitions, centroids,
/// summaries, near lists, row lse); the backward writes only after the
/// persistent ones (LaunchPlan::persistentBytes: its scratch reuses the bytes
/// of the forward's fp32 o accumulator, which only the forward needs).
/// o and dO are in the spec's dtype, like q, k and v (as a bf16/f16 model
/// keeps them; o feeds only delta_n = dO_n . o_n, so a 16-bit caller rounds
/// the forward's fp32 o once). Gradients are fp32 (gradType F32) or in the
/// spec's dtype (Input: accumulated in fp32 and rounded once, the GQA group's
/// sum included); strides in elements, innermost contiguous.
struct BackwardArgs {
  Shape shape;
  const void *q = nullptr; int64_t qStride[3] = {0, 0, 0}; // as in ForwardArgs
  const void *k = nullptr; int64_t kStride[3] = {0, 0, 0};
  const void *v = nullptr; int64_t vStride[3] = {0, 0, 0};
  const void *o = nullptr;  int64_t oStride[3] = {0, 0, 0}; // the forward's output, spec dtype
  const float *lse = nullptr; // the forward's lse [B, H, N]; null: its copy in the workspace
  const void *dO = nullptr; int64_t dOStride[3] = {0, 0, 0}; // [B, H, N, Dv], spec dtype
  const float *dLse = nullptr; // [B, H, N] contiguous; null: zero
  void *dq = nullptr; int64_t dqStride[3] = {0, 0, 0}; // [B, H, N, D]
  void *dk = nullptr; int64_t dkStride[3] = {0, 0, 0}; // [B, Hkv, M, D]
  void *dv = nullptr; int64_t dvStride[3] = {0, 0, 0}; // [B, Hkv, M, Dv]
  OutputType gradType = OutputType::F32; // dq, dk, dv elements: float, or the spec's dtype
  void *workspace = nullptr; int64_t workspaceBytes = 0;
};

class Attention; // a compiled spec: module loaded, plan ready
class DiskCache;
struct CacheConfig;

/// A spec compiled to a cubin; no GPU involved.
struct CompiledSpec {
  Spec spec;
  std::string key;           // the cache key (SHA-256, hex)
  LaunchPlan plan;           // stored with the cubin: the two always match
  std::string cubin;         // SASS for spec.arch
  std::string resourceUsage; // ptxas report: registers, spills, shared memory per kernel
  bool fromDiskCache = false;
};

class Engine {
public:
  /// The cache as configured by the environment (see muse/Runtime/Cache.h).
  Engine();
  explicit Engine(const CacheConfig &cache);
  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

  /// Compiles a spec to a cubin (or loads it from the memory or disk cache).
  /// Works without a driver or GPU.
  std::shared_ptr<const CompiledSpec> compile(const Spec &spec, Status &status);
  /// The PTX of a spec (for `muse-gen emit --emit=ptx`; never cached, never
  /// what runs: kernels always run from the cubin).
  Status ptx(const Spec &spec, std::string &out);

  /// Compiles, then loads the kernels into the current CUDA context (the
  /// primary context of device 0 when none is current). Without a driver or
  /// GPU this fails with NoDevice after compiling and caching. The same spec
  /// in the same context gives the same Attention.
  std::shared_ptr<Attention> build(const Spec &spec, Status &status);
  /// The loading half of build: `compiled` (from compile(), or made by hand
  /// in tests) into the current context.
  std::shared_ptr<Attention> load(std::shared_ptr<const CompiledSpec> compiled, Status &status);
  std::shared_ptr<Attention> buildFromFile(const std::string &path, Status &status);
  std::shared_ptr<Attention> buildFromString(const std::string &yaml, Status &status);
  /// YAML plus "section.field=value" overrides (Python keywords, CLI flags).
  std::shared_ptr<Attention> buildFromString(const std::string &yaml,
                                             const std::vector<std::string> &overrides,
                                             Status &status);

  /// The disk cache, for `muse-gen cache ls|clear|verify` and `muse-gen env`.
  DiskCache &cache();
  /// Number of NVRTC compilations this engine ran (not cache hits).
  int64_t compilations() const;

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
  /// Whether the spec has a backward plan (acausal specs).
  virtual bool hasBackward() const = 0;
  /// Workspace bytes of a forward + backward pair: >= workspaceBytes(shape).
  virtual int64_t backwardWorkspaceBytes(const Shape &shape) const = 0;
  /// dq, dk, dv of the forward call that used args.workspace (BackwardArgs).
  /// Deterministic: no atomics, every sum in a fixed order. Same stream
  /// order as the forward (it reads the forward's workspace).
  virtual Status backward(const BackwardArgs &args, void *stream) = 0;
};

} // namespace muse

#endif
