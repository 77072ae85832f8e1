//===- CudaDriver.h - The CUDA driver API, opened at run time -------------===//
//
// libcuda.so.1 is never linked: it is dlopen'ed on first use, so that
// everything except loading and launching kernels (parsing, compiling,
// caching, `muse-gen build`) works on machines without an NVIDIA driver.
// Entry points are resolved through cuGetProcAddress for the ABI version whose
// signatures <cuda.h> declares for them (falling back to dlsym of versioned
// names), so their types match the header exactly.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_CUDADRIVER_H
#define MUSE_RUNTIME_CUDADRIVER_H

#include "muse/Runtime/Engine.h"

#include <cuda.h>

#include <string>
#include <vector>

namespace muse {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int ccMajor = 0, ccMinor = 0;
  int multiprocessors = 0;
  size_t totalMemory = 0;
  std::string arch() const { return "sm_" + std::to_string(ccMajor * 10 + ccMinor); }
};

class CudaDriver {
public:
  /// The process-wide driver. The first call opens libcuda.so.1 and runs
  /// cuInit(0); `available()` then says whether that worked.
  static CudaDriver &get();

  /// Ok when a driver is loaded and at least one GPU is visible; otherwise
  /// NoDevice with the reason ("libcuda.so.1 not found: ...").
  const Status &available() const { return status_; }
  int driverVersion() const { return driverVersion_; } // e.g. 13000; 0 without a driver
  Status devices(std::vector<DeviceInfo> &out) const;

  /// Turns a driver result into a Status naming the call:
  /// "cuModuleLoadData failed: CUDA_ERROR_INVALID_IMAGE (device kernel image is invalid)".
  Status check(CUresult r, const char *call) const;

#define MUSE_CUDA_ENTRY_POINTS(X)                                                          \
  X(cuDriverGetVersion) X(cuDeviceGet) X(cuDeviceGetCount) X(cuDeviceGetAttribute)         \
  X(cuDeviceGetName) X(cuDeviceTotalMem) X(cuCtxGetCurrent) X(cuCtxSetCurrent)             \
  X(cuCtxGetDevice) X(cuDevicePrimaryCtxRetain) X(cuModuleLoadData) X(cuModuleUnload)      \
  X(cuModuleGetFunction) X(cuFuncSetAttribute) X(cuFuncGetAttribute) X(cuLaunchKernel)     \
  X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemcpyDtoDAsync)          \
  X(cuMemsetD8Async) X(cuStreamSynchronize) X(cuCtxSynchronize) X(cuEventCreate)           \
  X(cuEventDestroy) X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime)           \
  X(cuGetErrorName) X(cuGetErrorString)

  // One member per entry point, typed from <cuda.h> (the macros there map
  // e.g. cuMemAlloc to cuMemAlloc_v2, so decltype picks the current ABI).
#define MUSE_CUDA_DECLARE(name) decltype(&::name) name = nullptr;
  MUSE_CUDA_ENTRY_POINTS(MUSE_CUDA_DECLARE)
#undef MUSE_CUDA_DECLARE

private:
  CudaDriver();
  void open();
  Status status_;
  int driverVersion_ = 0;
  void *lib_ = nullptr;
};

} // namespace muse

#endif
