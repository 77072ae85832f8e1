//===- LoadedAttention.cpp - Module loading and the forward launch --------===//

#include "LoadedAttention.h"

#include "CausalLevels.h"

#include "muse/Runtime/CudaDriver.h"
#include "muse/Runtime/Params.h"
#include "muse/params.cuh"

#include <map>
#include <tuple>

namespace muse {
namespace {

/// Above this, a kernel's dynamic shared memory must be opted into.
constexpr int kDefaultSharedLimit = 48 * 1024;

class LoadedAttention final : public Attention {
public:
  LoadedAttention(std::shared_ptr<const CompiledSpec> compiled, CUcontext ctx)
      : compiled_(std::move(compiled)), ctx_(ctx) {}

  ~LoadedAttention() override {
    if (!module_)
      return;
    // Unload in the context it was loaded into, then restore the caller's.
    CudaDriver &d = CudaDriver::get();
    CUcontext prev = nullptr;
    d.cuCtxGetCurrent(&prev);
    if (prev != ctx_)
      d.cuCtxSetCurrent(ctx_);
    d.cuModuleUnload(module_);
    if (prev != ctx_)
      d.cuCtxSetCurrent(prev);
  }

  Status load() {
    CudaDriver &d = CudaDriver::get();
    const Spec &spec = compiled_->spec;
    if (Status s = checkPlanBuffers(compiled_->plan); !s.ok())
      return s;
    CUdevice dev;
    if (Status s = d.check(d.cuCtxGetDevice(&dev), "cuCtxGetDevice"); !s.ok())
      return s;
    int major = 0, minor = 0, optin = 0;
    d.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    d.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    d.cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
    if (major * 10 + minor != spec.archNumber()) {
      char name[256] = {0};
      d.cuDeviceGetName(name, sizeof(name) - 1, dev);
      std::string devArch = "sm_" + std::to_string(major * 10 + minor);
      return {StatusCode::InvalidArgument,
              "spec '" + spec.name + "' targets " + spec.arch + " but the current device (" +
                  name + ") is " + devArch + "; set target.arch: " + devArch +
                  " (or pass target.arch=" + devArch + " as an override)"};
    }
    if (Status s = d.check(d.cuModuleLoadData(&module_, compiled_->cubin.data()),
                           "cuModuleLoadData");
        !s.ok())
      return s;
    std::map<std::string, CUfunction> byName;
    for (const KernelLaunch &l : compiled_->plan.launches) {
      CUfunction f = byName[l.kernel];
      if (!f) {
        CUresult r = d.cuModuleGetFunction(&f, module_, l.kernel.c_str());
        if (r != CUDA_SUCCESS)
          return {StatusCode::Internal, "kernel '" + l.kernel +
                                            "' of the launch plan is not in the module of "
                                            "spec '" + spec.name + "' (" +
                                            d.check(r, "cuModuleGetFunction").message + ")"};
        byName[l.kernel] = f;
      }
      int maxThreads = 0;
      d.cuFuncGetAttribute(&maxThreads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f);
      if (l.block < 1 || l.block > maxThreads)
        return {StatusCode::Internal, "kernel '" + l.kernel + "' is launched with " +
                                          std::to_string(l.block) +
                                          " threads but was compiled for at most " +
                                          std::to_string(maxThreads)};
      if (l.sharedBytes > kDefaultSharedLimit) {
        if (l.sharedBytes > optin)
          return {StatusCode::InvalidArgument,
                  "kernel '" + l.kernel + "' needs " + std::to_string(l.sharedBytes) +
                      " bytes of shared memory; this device allows " + std::to_string(optin) +
                      " (use smaller tiles)"};
        if (Status s = d.check(
                d.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                     l.sharedBytes),
                "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
            !s.ok())
          return s;
      }
      functions_.push_back(f);
    }
    // The backward plan's kernels are in the same module.
    for (const KernelLaunch &l : compiled_->plan.backwardLaunches) {
      CUfunction f = nullptr;
      CUresult r = d.cuModuleGetFunction(&f, module_, l.kernel.c_str());
      if (r != CUDA_SUCCESS)
        return {StatusCode::Internal, "backward kernel '" + l.kernel +
                                          "' is not in the module of spec '" + spec.name + "' (" +
                                          d.check(r, "cuModuleGetFunction").message + ")"};
      int maxThreads = 0;
      d.cuFuncGetAttribute(&maxThreads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f);
      if (l.block < 1 || l.block > maxThreads || l.sharedBytes > kDefaultSharedLimit)
        return {StatusCode::Internal, "backward kernel '" + l.kernel + "' is launched with " +
                                          std::to_string(l.block) + " threads (at most " +
                                          std::to_string(maxThreads) + ") and " +
                                          std::to_string(l.sharedBytes) +
                                          " bytes of dynamic shared memory (at most 48 KB)"};
      backwardFunctions_.push_back(f);
    }
    return Status::success();
  }

  bool hasBackward() const override { return compiled_->plan.hasBackward(); }
  int64_t backwardWorkspaceBytes(const Shape &shape) const override {
    return compiled_->plan.backwardWorkspaceBytes(shape) + causalSave(shape);
  }

  Status backward(const BackwardArgs &args, void *stream) override {
    CudaDriver &d = CudaDriver::get();
    MuseParams params;
    if (Status s = fillBackwardParams(compiled_->spec, compiled_->plan, args, params); !s.ok())
      return s;
    if (Status s = makeCurrent(); !s.ok())
      return s;
    const LaunchPlan &plan = compiled_->plan;
    return runLaunches(plan.backwardLaunches, backwardFunctions_, params, args.shape,
                       static_cast<CUstream>(stream));
  }

  const Spec &spec() const override { return compiled_->spec; }
  const LaunchPlan &plan() const override { return compiled_->plan; }
  int64_t workspaceBytes(const Shape &shape) const override {
    return compiled_->plan.workspaceBytes(shape) + causalSave(shape);
  }

  Status forward(const ForwardArgs &args, void *stream) override {
    CudaDriver &d = CudaDriver::get();
    MuseParams params;
    // Causal: the save area sits between the persistent buffers and the
    // transient ones (acc_o), where a backward's scratch will go.
    if (Status s = fillParams(compiled_->spec, compiled_->plan, args, params,
                              compiled_->plan.firstTransient(), causalSave(args.shape));
        !s.ok())
      return s;
    CUcontext current = nullptr;
    d.cuCtxGetCurrent(&current);
    if (!current) {
      if (Status s = d.check(d.cuCtxSetCurrent(ctx_), "cuCtxSetCurrent"); !s.ok())
        return s;
    } else if (current != ctx_) {
      return {StatusCode::InvalidArgument,
              "spec '" + compiled_->spec.name +
                  "' was loaded in another CUDA context than the current one (another "
                  "device?); build one Attention per device, with that device current"};
    }
    CUstream s = static_cast<CUstream>(stream);
    const LaunchPlan &plan = compiled_->plan;
    const Spec &spec = compiled_->spec;
    const int64_t save = causalSave(args.shape);
    if (save > 0) {
      // Every causal forward saves its per-level partitions after the plan's
      // buffers for the backward (causal_export writes them there).
      const int64_t need = plan.workspaceBytes(args.shape) + save;
      if (args.workspaceBytes < need)
        return {StatusCode::InvalidArgument,
                "workspace has " + std::to_string(args.workspaceBytes) + " bytes; this call needs " +
                    std::to_string(need) + " (Attention::workspaceBytes)"};
      bindCausalSave(args.shape, spec.blockSize, spec.windowBlocks, args.workspace,
                     plan.persistentBytes(args.shape), params);
    }
    if (Status st = runLaunches(plan.launches, functions_, params, args.shape, s); !st.ok())
      return st;
    if (spec.causal) {
      // The caller's copy of the partitions, when requested.
      const Shape &sh = args.shape;
      const int64_t levels = causalLevelCount(sh.N, spec.blockSize, spec.windowBlocks);
      if (args.queryAssign && levels > 0) {
        const int64_t q = levels * sh.B * sh.H * sh.N, k = levels * sh.B * sh.Hkv * sh.N;
        for (auto [from, to, count] :
             {std::tuple{params.out_query, args.queryAssign, q},
              std::tuple{params.out_key, args.keyAssign, k},
              std::tuple{params.out_served, args.servedAssign, q}})
          if (Status st = copyBuffer(from, to, count, s); !st.ok())
            return st;
      }
      return Status::success();
    }
    const Shape &sh = args.shape;
    if (args.queryAssign)
      if (Status st = copyBuffer(params.q_assign, args.queryAssign, sh.B * sh.H * sh.N, s);
          !st.ok())
        return st;
    if (args.keyAssign)
      if (Status st = copyBuffer(params.k_assign, args.keyAssign, sh.B * sh.Hkv * sh.M, s);
          !st.ok())
        return st;
    return Status::success();
  }

private:
  /// Bytes of the causal per-level partition save (0 for acausal specs).
  int64_t causalSave(const Shape &shape) const {
    const Spec &spec = compiled_->spec;
    return spec.causal ? causalSaveBytes(shape, spec.blockSize, spec.windowBlocks) : 0;
  }

  /// Runs `launches` in order on `stream`: a Full launch once on the base
  /// params, a run of per-level launches (causal plans) all at level 0, then
  /// all at level 1, ..., each on the view it names. One stream, plan order:
  /// the causal backward's accumulation into dq/dk/dv relies on it.
  Status runLaunches(const std::vector<KernelLaunch> &launches,
                     const std::vector<CUfunction> &functions, MuseParams &params,
                     const Shape &shape, CUstream s) {
    CudaDriver &d = CudaDriver::get();
    const Spec &spec = compiled_->spec;
    auto run = [&](size_t i, MuseParams &p, const Shape &viewShape) -> Status {
      const KernelLaunch &l = launches[i];
      unsigned grid[3];
      if (Status st = launchGrid(l, viewShape, grid); !st.ok())
        return st;
      void *viewArgs[] = {&p};
      CUresult r = d.cuLaunchKernel(functions[i], grid[0], grid[1], grid[2], unsigned(l.block),
                                    1, 1, unsigned(l.sharedBytes), s, viewArgs, nullptr);
      if (r != CUDA_SUCCESS)
        return d.check(r, ("cuLaunchKernel(" + l.kernel + ")").c_str());
      return Status::success();
    };
    const int levels =
        spec.causal ? causalLevelCount(shape.N, spec.blockSize, spec.windowBlocks) : 0;
    for (size_t i = 0; i < launches.size();) {
      if (launches[i].view == LaunchView::Full) {
        if (Status st = run(i, params, shape); !st.ok())
          return st;
        ++i;
        continue;
      }
      // A run of per-level launches: all of them at level 0, then level 1, ...
      size_t end = i;
      while (end < launches.size() && launches[end].view != LaunchView::Full)
        ++end;
      for (int lv = 0; lv < levels; ++lv) {
        const LevelGeometry g = levelGeometry(shape.N, spec.blockSize, spec.windowBlocks, lv);
        for (size_t j = i; j < end; ++j) {
          MuseParams view;
          Shape viewShape;
          levelView(launches[j].view, g, params, shape, spec.valueDim, view, viewShape);
          if (Status st = run(j, view, viewShape); !st.ok())
            return st;
        }
      }
      i = end;
    }
    return Status::success();
  }

  /// The context the module lives in, made current when none is.
  Status makeCurrent() {
    CudaDriver &d = CudaDriver::get();
    CUcontext current = nullptr;
    d.cuCtxGetCurrent(&current);
    if (!current)
      return d.check(d.cuCtxSetCurrent(ctx_), "cuCtxSetCurrent");
    if (current != ctx_)
      return {StatusCode::InvalidArgument,
              "spec '" + compiled_->spec.name +
                  "' was loaded in another CUDA context than the current one (another "
                  "device?); build one Attention per device, with that device current"};
    return Status::success();
  }

  static Status copyBuffer(const int *from, int32_t *to, int64_t count, CUstream s) {
    CudaDriver &d = CudaDriver::get();
    return d.check(d.cuMemcpyDtoDAsync(reinterpret_cast<CUdeviceptr>(to),
                                       reinterpret_cast<CUdeviceptr>(from),
                                       size_t(count) * sizeof(int32_t), s),
                   "cuMemcpyDtoDAsync (partitions)");
  }

  std::shared_ptr<const CompiledSpec> compiled_;
  CUcontext ctx_;
  CUmodule module_ = nullptr;
  std::vector<CUfunction> functions_; // one per launch, in plan order
  std::vector<CUfunction> backwardFunctions_; // one per backward launch
};

} // namespace

Status currentContext(CUcontext &ctx) {
  CudaDriver &d = CudaDriver::get();
  if (!d.available().ok())
    return d.available();
  ctx = nullptr;
  if (Status s = d.check(d.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent"); !s.ok())
    return s;
  if (ctx)
    return Status::success();
  CUdevice dev;
  if (Status s = d.check(d.cuDeviceGet(&dev, 0), "cuDeviceGet(0)"); !s.ok())
    return s;
  // Retained for the life of the process: modules loaded into it must outlive
  // every Attention, and the runtime API (PyTorch) shares the same context.
  if (Status s = d.check(d.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
      !s.ok())
    return s;
  return d.check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
}

std::shared_ptr<Attention> loadAttention(std::shared_ptr<const CompiledSpec> compiled,
                                         CUcontext ctx, Status &status) {
  auto att = std::make_shared<LoadedAttention>(std::move(compiled), ctx);
  status = att->load();
  if (!status.ok())
    return nullptr;
  return att;
}

} // namespace muse
