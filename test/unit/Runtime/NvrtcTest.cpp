//===- NvrtcTest.cpp - NVRTC to cubin and PTX, without a GPU --------------===//

#include "RuntimeTestUtil.h"

#include "muse/Runtime/Nvrtc.h"

#include <gtest/gtest.h>

namespace muse::test {
namespace {

NvrtcRequest tinyRequest() {
  NvrtcRequest req;
  req.source = kTinyKernel;
  req.programName = "tiny.cu";
  req.headers = {{"tiny/scale.cuh", kTinyHeader}};
  req.options = {"-arch=sm_90", "-std=c++17"};
  return req;
}

TEST(Nvrtc, Version) {
  auto [major, minor] = nvrtcVersion();
  EXPECT_GE(major, 12);
  EXPECT_GE(minor, 0);
  EXPECT_EQ(nvrtcVersionString(), std::to_string(major) + "." + std::to_string(minor));
}

TEST(Nvrtc, CubinForTheExactArch) {
  NvrtcRequest req = tinyRequest();
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  ASSERT_TRUE(s.ok()) << s.message;
  ASSERT_GT(out.cubin.size(), 64u);
  EXPECT_EQ(out.cubin.compare(0, 4, "\x7f" "ELF"), 0);
  EXPECT_NE(out.cubin.find("tiny_scale"), std::string::npos);
  EXPECT_TRUE(out.ptx.empty());
  EXPECT_TRUE(out.resourceUsage.empty());
}

TEST(Nvrtc, ResourceUsageOnRequest) {
  NvrtcRequest req = tinyRequest();
  req.wantResourceUsage = true;
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  ASSERT_TRUE(s.ok()) << s.message;
  EXPECT_NE(out.resourceUsage.find("tiny_scale"), std::string::npos) << out.resourceUsage;
  EXPECT_NE(out.resourceUsage.find("registers"), std::string::npos) << out.resourceUsage;
}

TEST(Nvrtc, PtxOnRequest) {
  NvrtcRequest req = tinyRequest();
  req.wantCubin = false;
  req.wantPtx = true;
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  ASSERT_TRUE(s.ok()) << s.message;
  EXPECT_TRUE(out.cubin.empty());
  EXPECT_NE(out.ptx.find(".entry tiny_scale"), std::string::npos) << out.ptx.substr(0, 400);
  EXPECT_NE(out.ptx.find(".target sm_90"), std::string::npos);
}

TEST(Nvrtc, ErrorsCarryTheLog) {
  NvrtcRequest req = tinyRequest();
  req.source = "extern \"C\" __global__ void broken() { undeclared_thing = 1; }\n";
  req.programName = "broken.cu";
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  EXPECT_EQ(s.code, StatusCode::CompileError);
  EXPECT_NE(s.message.find("broken.cu"), std::string::npos) << s.message;
  EXPECT_NE(s.message.find("undeclared_thing"), std::string::npos) << s.message;
}

TEST(Nvrtc, MissingHeaderIsAnError) {
  NvrtcRequest req = tinyRequest();
  req.headers.clear();
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  EXPECT_EQ(s.code, StatusCode::CompileError);
  EXPECT_NE(s.message.find("tiny/scale.cuh"), std::string::npos) << s.message;
}

TEST(Nvrtc, IncludeDirectoryFallsBackPastABadCudaHome) {
  ScopedEnv env("CUDA_HOME", "/nonexistent/cuda");
  std::string dir;
  Status s = cudaIncludeDir(dir);
  ASSERT_TRUE(s.ok()) << s.message;
  EXPECT_NE(dir.find("include"), std::string::npos);
}

} // namespace
} // namespace muse::test
