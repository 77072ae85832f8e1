//===- DriverTest.cpp - The CUDA driver loads lazily and fails clearly ----===//

#include "muse/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <dlfcn.h>

namespace muse {
namespace {

bool driverInstalled() {
  void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (!h)
    h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  return h != nullptr;
}

TEST(CudaDriver, StatusIsClearEitherWay) {
  CudaDriver &d = CudaDriver::get();
  std::vector<DeviceInfo> devices;
  Status s = d.devices(devices);
  if (!driverInstalled()) {
    EXPECT_EQ(d.available().code, StatusCode::NoDevice);
    EXPECT_NE(d.available().message.find("libcuda.so.1 not found: no NVIDIA driver"),
              std::string::npos)
        << d.available().message;
    EXPECT_EQ(d.driverVersion(), 0);
    EXPECT_EQ(s.code, StatusCode::NoDevice);
    EXPECT_TRUE(devices.empty());
    return;
  }
  if (!d.available().ok()) {
    EXPECT_EQ(d.available().code, StatusCode::NoDevice);
    EXPECT_FALSE(d.available().message.empty());
    return;
  }
  ASSERT_TRUE(s.ok()) << s.message;
  ASSERT_FALSE(devices.empty());
  EXPECT_GE(devices[0].ccMajor, 5);
  EXPECT_FALSE(devices[0].name.empty());
  EXPECT_GT(d.driverVersion(), 0);
}

TEST(CudaDriver, ErrorTextNamesTheCall) {
  CudaDriver &d = CudaDriver::get();
  Status s = d.check(CUDA_ERROR_INVALID_IMAGE, "cuModuleLoadData");
  EXPECT_EQ(s.code, StatusCode::CudaError);
  EXPECT_EQ(s.message.rfind("cuModuleLoadData failed: ", 0), 0u) << s.message;
  EXPECT_TRUE(d.check(CUDA_SUCCESS, "x").ok());
  EXPECT_EQ(d.check(CUDA_ERROR_NO_DEVICE, "cuInit").code, StatusCode::NoDevice);
}

} // namespace
} // namespace muse
