//===- GpuTest.cpp - Loading and launching on a real GPU (label gpu) ------===//
//
// A hand-written kernel behind a hand-made plan exercises the runtime's half
// on its own: module loading, the shared-memory opt-in, MuseParams passing,
// workspace offsets and the partition copies. Skips without a GPU.
//
//===----------------------------------------------------------------------===//

#include "muse/Runtime/CudaDriver.h"
#include "muse/Runtime/Engine.h"
#include "muse/Runtime/Nvrtc.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

namespace muse {
namespace {

// o[b,h,n,d] = scale * q[b,h,n,d] (through 64 KB of dynamic shared memory,
// above the 48 KB default), lse[b,h,n] = n, q_assign[bh, n] = n % 7 + bh.
const char *kProbe = R"(
#include "muse/params.cuh"
#include <cuda_bf16.h>
extern "C" __global__ void __launch_bounds__(128) probe(MuseParams p) {
  extern __shared__ float scratch[];
  int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  int n = blockIdx.x * blockDim.x + threadIdx.x;
  scratch[16383 - threadIdx.x] = p.scale;
  __syncthreads();
  if (n >= p.N) return;
  const __nv_bfloat16 *q = (const __nv_bfloat16 *)p.q + b * p.q_sb + h * p.q_sh + n * p.q_sn;
  float *o = p.o + b * p.o_sb + h * p.o_sh + n * p.o_sn;
  for (int d = 0; d < 64; ++d) o[d] = scratch[16383 - threadIdx.x] * __bfloat162float(q[d]);
  if (p.lse) p.lse[(long long)bh * p.N + n] = n;
  p.q_assign[(long long)bh * p.N + n] = n % 7 + bh;
}
)";

#define CU(call) ASSERT_EQ((call), CUDA_SUCCESS) << #call

TEST(Gpu, HandMadePlanRuns) {
  CudaDriver &d = CudaDriver::get();
  if (!d.available().ok())
    GTEST_SKIP() << d.available().message;
  std::vector<DeviceInfo> devices;
  ASSERT_TRUE(d.devices(devices).ok());

  auto compiled = std::make_shared<CompiledSpec>();
  compiled->spec.arch = devices[0].arch();
  compiled->spec.scale = 0.5;
  NvrtcRequest req;
  req.source = kProbe;
  req.headers = {{"muse/params.cuh", ""}};
  {
    FILE *f = fopen(MUSE_TEMPLATES_DIR "/muse/params.cuh", "r");
    ASSERT_TRUE(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    req.headers[0].second.assign(buf, n);
  }
  req.options = {"-arch=" + compiled->spec.arch, "-std=c++17"};
  NvrtcOutput out;
  Status s = compileCuda(req, out);
  ASSERT_TRUE(s.ok()) << s.message;
  compiled->cubin = out.cubin;
  compiled->plan.buffers.push_back({"row_lse", Sym::QHeads, 1, 0, 0, 4});
  compiled->plan.buffers.push_back({"q_assign", Sym::QHeads, 1, 0, 0, 4});
  compiled->plan.buffers.push_back({"k_assign", Sym::KHeads, 0, 1, 0, 4});
  KernelLaunch l;
  l.kernel = "probe";
  l.grid[0] = {Sym::N, 128, 1};
  l.grid[1] = {Sym::QHeads, 1, 1};
  l.block = 128;
  l.sharedBytes = 64 * 1024;
  compiled->plan.launches.push_back(l);

  Engine engine;
  auto att = engine.load(compiled, s);
  ASSERT_TRUE(att) << s.message;

  const int B = 2, H = 3, N = 300, D = 64;
  Shape shape{B, H, H, N, 5};
  std::vector<uint16_t> qHost(size_t(B) * H * N * D);
  for (size_t i = 0; i < qHost.size(); ++i) {
    float v = float(int(i % 97) - 48) / 8.0f; // exact in bf16
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    qHost[i] = uint16_t(bits >> 16);
  }
  CUdeviceptr q, o, lse, ws, assign;
  int64_t wsBytes = att->workspaceBytes(shape);
  CU(d.cuMemAlloc(&q, qHost.size() * 2));
  CU(d.cuMemAlloc(&o, size_t(B) * H * N * D * 4));
  CU(d.cuMemAlloc(&lse, size_t(B) * H * N * 4));
  CU(d.cuMemAlloc(&ws, size_t(wsBytes)));
  CU(d.cuMemAlloc(&assign, size_t(B) * H * N * 4));
  CU(d.cuMemcpyHtoD(q, qHost.data(), qHost.size() * 2));

  ForwardArgs a;
  a.shape = shape;
  a.q = a.k = a.v = reinterpret_cast<void *>(q);
  for (int64_t *st : {a.qStride, a.kStride, a.vStride}) {
    st[0] = int64_t(H) * N * D;
    st[1] = int64_t(N) * D;
    st[2] = D;
  }
  a.o = reinterpret_cast<float *>(o);
  a.oStride[0] = int64_t(H) * N * D;
  a.oStride[1] = int64_t(N) * D;
  a.oStride[2] = D;
  a.lse = reinterpret_cast<float *>(lse);
  a.workspace = reinterpret_cast<void *>(ws);
  a.workspaceBytes = wsBytes;
  a.queryAssign = reinterpret_cast<int32_t *>(assign);
  s = att->forward(a, nullptr);
  ASSERT_TRUE(s.ok()) << s.message;
  CU(d.cuCtxSynchronize());

  std::vector<float> oHost(size_t(B) * H * N * D), lseHost(size_t(B) * H * N);
  std::vector<int32_t> assignHost(size_t(B) * H * N);
  CU(d.cuMemcpyDtoH(oHost.data(), o, oHost.size() * 4));
  CU(d.cuMemcpyDtoH(lseHost.data(), lse, lseHost.size() * 4));
  CU(d.cuMemcpyDtoH(assignHost.data(), assign, assignHost.size() * 4));
  for (size_t i = 0; i < oHost.size(); ++i)
    ASSERT_EQ(oHost[i], 0.5f * float(int(i % 97) - 48) / 8.0f) << i;
  for (int bh = 0; bh < B * H; ++bh)
    for (int n = 0; n < N; ++n) {
      ASSERT_EQ(lseHost[size_t(bh) * N + n], float(n));
      ASSERT_EQ(assignHost[size_t(bh) * N + n], n % 7 + bh);
    }

  // The checks run before any launch.
  ForwardArgs bad = a;
  bad.workspaceBytes = wsBytes - 1;
  EXPECT_EQ(att->forward(bad, nullptr).code, StatusCode::InvalidArgument);

  for (CUdeviceptr p : {q, o, lse, ws, assign})
    d.cuMemFree(p);
}

TEST(Gpu, WrongArchIsNamed) {
  CudaDriver &d = CudaDriver::get();
  if (!d.available().ok())
    GTEST_SKIP() << d.available().message;
  std::vector<DeviceInfo> devices;
  ASSERT_TRUE(d.devices(devices).ok());
  Spec spec;
  spec.arch = devices[0].arch() == "sm_80" ? "sm_86" : "sm_80";
  Engine engine;
  Status s;
  EXPECT_FALSE(engine.build(spec, s));
  EXPECT_EQ(s.code, StatusCode::InvalidArgument);
  EXPECT_NE(s.message.find(spec.arch), std::string::npos) << s.message;
  EXPECT_NE(s.message.find(devices[0].arch()), std::string::npos) << s.message;
}

} // namespace
} // namespace muse
