//===- Device.h - Device buffers and timing for the GPU checks ------------===//
//
// Internal to lib/Check: what Verify.cpp and VerifyBackward.cpp share.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_CHECK_DEVICE_H
#define MUSE_LIB_CHECK_DEVICE_H

#include "muse/Runtime/CudaDriver.h"
#include "muse/Runtime/Engine.h"

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#define MUSE_TRY(expr)                                                                   \
  do {                                                                                   \
    ::muse::Status _st = (expr);                                                         \
    if (!_st.ok())                                                                       \
      return _st;                                                                        \
  } while (0)

namespace muse::check {

/// Strides (elements) of contiguous [B, H, rows, width] tensors: q, k, v and o
/// of a.shape with head dim D and value dim Dv.
inline void setStrides(int64_t (&s)[3], int64_t heads, int64_t rows, int64_t width) {
  s[0] = heads * rows * width;
  s[1] = rows * width;
  s[2] = width;
}
inline void setContiguousStrides(ForwardArgs &a, int64_t D, int64_t Dv) {
  const Shape &sh = a.shape;
  setStrides(a.qStride, sh.H, sh.N, D);
  setStrides(a.kStride, sh.Hkv, sh.M, D);
  setStrides(a.vStride, sh.Hkv, sh.M, Dv);
  setStrides(a.oStride, sh.H, sh.N, Dv);
}
/// The same for a backward call: dO like o, dq/dk/dv like q/k/v.
inline void setContiguousStrides(BackwardArgs &b, int64_t D, int64_t Dv) {
  const Shape &sh = b.shape;
  setStrides(b.qStride, sh.H, sh.N, D);
  setStrides(b.kStride, sh.Hkv, sh.M, D);
  setStrides(b.vStride, sh.Hkv, sh.M, Dv);
  setStrides(b.oStride, sh.H, sh.N, Dv);
  setStrides(b.dOStride, sh.H, sh.N, Dv);
  setStrides(b.dqStride, sh.H, sh.N, D);
  setStrides(b.dkStride, sh.Hkv, sh.M, D);
  setStrides(b.dvStride, sh.Hkv, sh.M, Dv);
}

/// A device allocation freed on scope exit.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  ~DeviceBuffer() {
    if (ptr_)
      CudaDriver::get().cuMemFree(ptr_);
  }
  Status allocate(size_t bytes) {
    bytes_ = std::max<size_t>(bytes, 1);
    auto &drv = CudaDriver::get();
    return drv.check(drv.cuMemAlloc(&ptr_, bytes_), "cuMemAlloc");
  }
  Status upload(const void *data, size_t bytes) {
    auto &drv = CudaDriver::get();
    return drv.check(drv.cuMemcpyHtoD(ptr_, data, bytes), "cuMemcpyHtoD");
  }
  Status upload(const std::string &bytes) { return upload(bytes.data(), bytes.size()); }
  /// 0xFF bytes: NaN in f32, -1 in i32, so unwritten outputs cannot pass.
  Status poison() {
    auto &drv = CudaDriver::get();
    return drv.check(drv.cuMemsetD8Async(ptr_, 0xFF, bytes_, nullptr), "cuMemsetD8Async");
  }
  template <class T> Status download(std::vector<T> &out, size_t count) {
    out.resize(count);
    auto &drv = CudaDriver::get();
    return drv.check(drv.cuMemcpyDtoH(out.data(), ptr_, count * sizeof(T)), "cuMemcpyDtoH");
  }
  void *get() const { return reinterpret_cast<void *>(ptr_); }
  float *f() const { return static_cast<float *>(get()); }

private:
  CUdeviceptr ptr_ = 0;
  size_t bytes_ = 0;
};

/// Median time in ms of `runs` calls of `launch` on the default stream, after
/// two warm-up calls, measured with CUDA events.
inline Status medianMs(int runs, const std::function<Status()> &launch, double &ms) {
  auto &drv = CudaDriver::get();
  CUevent start, stop;
  MUSE_TRY(drv.check(drv.cuEventCreate(&start, 0), "cuEventCreate"));
  MUSE_TRY(drv.check(drv.cuEventCreate(&stop, 0), "cuEventCreate"));
  std::vector<float> times;
  Status st;
  for (int r = 0; r < runs + 2 && st.ok(); ++r) {
    drv.cuEventRecord(start, nullptr);
    st = launch();
    drv.cuEventRecord(stop, nullptr);
    if (st.ok())
      st = drv.check(drv.cuEventSynchronize(stop), "cuEventSynchronize");
    float t = 0;
    drv.cuEventElapsedTime(&t, start, stop);
    if (r >= 2)
      times.push_back(t);
  }
  drv.cuEventDestroy(start);
  drv.cuEventDestroy(stop);
  if (!st.ok())
    return st;
  std::sort(times.begin(), times.end());
  ms = times[times.size() / 2];
  return Status::success();
}

} // namespace muse::check

#endif
