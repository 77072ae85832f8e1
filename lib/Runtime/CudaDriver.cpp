//===- CudaDriver.cpp - dlopen of libcuda.so.1 ----------------------------===//

#include "muse/Runtime/CudaDriver.h"

#include <dlfcn.h>

#include <algorithm>

namespace muse {
namespace {

#define MUSE_STR2(x) #x
#define MUSE_STR(x) MUSE_STR2(x)

using GetProcAddressFn = CUresult (*)(const char *, void **, int, cuuint64_t,
                                      CUdriverProcAddressQueryResult *);

} // namespace

CudaDriver &CudaDriver::get() {
  // Intentionally leaked: kernels may be unloaded from static destructors
  // after a function-local static would already be gone.
  static CudaDriver *driver = new CudaDriver();
  return *driver;
}

CudaDriver::CudaDriver() { open(); }

void CudaDriver::open() {
  lib_ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib_) {
    const char *why = dlerror();
    status_ = {StatusCode::NoDevice,
               std::string("libcuda.so.1 not found: no NVIDIA driver on this machine") +
                   (why ? std::string(" (") + why + ")" : std::string())};
    return;
  }
  auto getVersion = reinterpret_cast<decltype(&::cuDriverGetVersion)>(
      dlsym(lib_, "cuDriverGetVersion"));
  auto init = reinterpret_cast<decltype(&::cuInit)>(dlsym(lib_, "cuInit"));
  if (!getVersion || !init) {
    status_ = {StatusCode::NoDevice,
               "libcuda.so.1 was found but does not export cuInit/cuDriverGetVersion: "
               "it is not a usable NVIDIA driver library"};
    return;
  }
  getVersion(&driverVersion_);
  auto getProc = reinterpret_cast<GetProcAddressFn>(dlsym(lib_, "cuGetProcAddress_v2"));
  // The member types come from <cuda.h>'s declarations, which for these entry
  // points are the CUDA 12.8 ABI: CUDA 13.0 gave cuCtxGetDevice and
  // cuCtxSynchronize a context argument under the same cuGetProcAddress name,
  // so asking for 13000 would return functions of another signature.
  constexpr int kEntryPointAbi = 12080;
  int abiVersion = std::min(kEntryPointAbi, driverVersion_);
  std::string missing;
  auto resolve = [&](const char *base, const char *versioned, void **slot) {
    if (getProc) {
      CUdriverProcAddressQueryResult found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
      if (getProc(base, slot, abiVersion, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &found) ==
              CUDA_SUCCESS &&
          *slot)
        return;
    }
    *slot = dlsym(lib_, versioned);
    if (!*slot)
      *slot = dlsym(lib_, base);
    if (!*slot)
      missing += std::string(missing.empty() ? "" : ", ") + base;
  };
#define MUSE_CUDA_RESOLVE(name)                                                            \
  resolve(#name, MUSE_STR(name), reinterpret_cast<void **>(&this->name));
  MUSE_CUDA_ENTRY_POINTS(MUSE_CUDA_RESOLVE)
#undef MUSE_CUDA_RESOLVE
  if (!missing.empty()) {
    status_ = {StatusCode::NoDevice, "the NVIDIA driver (CUDA " +
                                         std::to_string(driverVersion_ / 1000) + "." +
                                         std::to_string(driverVersion_ % 1000 / 10) +
                                         ") lacks entry points muse needs: " + missing +
                                         "; update the driver"};
    return;
  }
  CUresult r = init(0);
  if (r != CUDA_SUCCESS) {
    Status why = check(r, "cuInit");
    status_ = {StatusCode::NoDevice,
               "the NVIDIA driver is installed but no usable GPU is visible (" + why.message +
                   ")"};
    return;
  }
  int count = 0;
  if (cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    status_ = {StatusCode::NoDevice, "the NVIDIA driver is installed but reports no GPU"};
    return;
  }
  status_ = Status::success();
}

Status CudaDriver::check(CUresult r, const char *call) const {
  if (r == CUDA_SUCCESS)
    return Status::success();
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName)
    cuGetErrorName(r, &name);
  if (cuGetErrorString)
    cuGetErrorString(r, &text);
  std::string msg = std::string(call) + " failed: " +
                    (name ? name : "CUDA error " + std::to_string(int(r))) +
                    (text ? std::string(" (") + text + ")" : std::string());
  StatusCode code = (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_INVALID_DEVICE)
                        ? StatusCode::NoDevice
                        : StatusCode::CudaError;
  return {code, msg};
}

Status CudaDriver::devices(std::vector<DeviceInfo> &out) const {
  out.clear();
  if (!status_.ok())
    return status_;
  int count = 0;
  if (Status s = check(cuDeviceGetCount(&count), "cuDeviceGetCount"); !s.ok())
    return s;
  for (int i = 0; i < count; ++i) {
    CUdevice dev;
    if (Status s = check(cuDeviceGet(&dev, i), "cuDeviceGet"); !s.ok())
      return s;
    DeviceInfo info;
    info.ordinal = i;
    char name[256] = {0};
    cuDeviceGetName(name, sizeof(name) - 1, dev);
    info.name = name;
    cuDeviceGetAttribute(&info.ccMajor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    cuDeviceGetAttribute(&info.ccMinor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    cuDeviceGetAttribute(&info.multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    cuDeviceTotalMem(&info.totalMemory, dev);
    out.push_back(info);
  }
  return Status::success();
}

} // namespace muse
