//===- VerifyBackward.cpp - The backward kernels against the reference ----===//
//
// Random q, k, v and dO (rounded to the spec's dtype) and dLse (fp32); the
// forward, its fp32 o rounded to the spec's dtype (BackwardArgs takes o and
// dO in it, as a 16-bit model keeps them); the backward runs twice on
// poisoned gradients (the second
// must be bit-identical: no atomics, fixed summation orders), then
// ref::museBackward recomputes dq, dk, dv in double on the kernel's partitions
// (causal specs: every level's partitions, and a causality check).
//
//===----------------------------------------------------------------------===//
#include "muse/Check/Verify.h"

#include "Device.h"
#include "muse/Check/HostTypes.h"
#include "muse/Reference/Reference.h"
#include "muse/Runtime/CudaDriver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <sstream>

namespace muse::check {
namespace {

std::vector<double> gaussian(std::mt19937_64 &rng, int64_t count) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(static_cast<size_t>(count));
  for (double &e : x)
    e = normal(rng);
  return x;
}

/// The values as float (device bytes) and, rounded, back as double.
std::vector<float> toFloat(std::vector<double> &x) {
  std::vector<float> f(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    f[i] = static_cast<float>(x[i]);
    x[i] = f[i];
  }
  return f;
}

double relL2(const std::vector<float> &got, const std::vector<double> &want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

/// 16-bit elements of `got` that differ from `want` (roundTo's bytes).
int64_t countMismatches(const std::vector<uint16_t> &got, const std::string &want) {
  if (got.size() * 2 != want.size())
    return int64_t(std::max(got.size(), want.size() / 2));
  int64_t n = 0;
  for (size_t i = 0; i < got.size(); ++i)
    n += std::memcmp(&got[i], want.data() + 2 * i, 2) != 0;
  return n;
}

} // namespace

std::string BackwardReport::str() const {
  std::ostringstream os;
  os.precision(3);
  os << std::scientific;
  os << "shape B=" << shape.B << " H=" << shape.H << " Hkv=" << shape.Hkv << " N=" << shape.N
     << " M=" << shape.M << " seed=" << seed << "\n";
  os << "backward vs CPU reference on the kernel's partitions: rel L2 dq " << dqRelL2 << ", dk "
     << dkRelL2 << ", dv " << dvRelL2 << "\n";
  os << "second backward bit-identical: " << (deterministic ? "yes" : "NO") << "\n";
  if (inputTypeChecked)
    os << "o, dq, dk, dv in the input dtype equal the fp32 results rounded: "
       << (inputTypeMismatches == 0 ? "yes" : "NO, " + std::to_string(inputTypeMismatches) + " elements differ")
       << "\n";
  if (causalChecked)
    os << "gradients at positions >= N/2 unchanged by dO at positions < N/2: "
       << (causal ? "yes" : "NO") << "\n";
  if (!outputsFinite)
    os << "NON-FINITE values in the gradients\n";
  if (medianMs > 0) {
    os << std::fixed;
    os << "backward median " << medianMs << " ms\n";
  }
  return os.str();
}

Status verifyBackward(Engine &engine, const Spec &spec, const VerifyOptions &options,
                      bool withDLse, BackwardReport &report) {
  Shape shape = options.shape;
  if (spec.causal && shape.M != shape.N) {
    if (options.shape.M != 0 && options.shape.M != options.shape.N)
      return {StatusCode::InvalidArgument,
              "verify --backward: spec '" + spec.name + "' is causal and needs M == N, got N=" +
                  std::to_string(shape.N) + " M=" + std::to_string(shape.M)};
    shape.M = shape.N;
  }
  if (shape.Hkv == 0)
    shape.Hkv = shape.H / std::max(1, spec.kvHeadsRatio);
  if (shape.Hkv <= 0 || shape.H % shape.Hkv != 0 || shape.H / shape.Hkv != spec.kvHeadsRatio)
    return {StatusCode::InvalidArgument, "verify --backward: H=" + std::to_string(shape.H) +
                                             " does not fit kv_heads_ratio " +
                                             std::to_string(spec.kvHeadsRatio) + " of the spec"};
  report = BackwardReport();
  report.shape = shape;
  report.seed = options.seed ? options.seed : std::random_device{}() * 0x9e3779b97f4a7c15ull + 1;
  Status st;
  auto attention = engine.build(spec, st);
  if (!attention)
    return st;
  if (!attention->hasBackward())
    return {StatusCode::InvalidArgument, "spec '" + spec.name + "' has no backward plan"};

  const int64_t D = spec.headDim, Dv = spec.valueDim;
  const ref::RefShape rs{shape.B, shape.H, shape.Hkv, shape.N, shape.M, D, Dv};
  std::mt19937_64 rng(report.seed);
  auto q = gaussian(rng, rs.qSize()), k = gaussian(rng, rs.kSize()), v = gaussian(rng, rs.vSize());
  std::string qB, kB, vB;
  roundTo(spec.dtype, q, qB);
  roundTo(spec.dtype, k, kB);
  roundTo(spec.dtype, v, vB);
  auto dO = gaussian(rng, rs.oSize());
  std::string dOB;
  roundTo(spec.dtype, dO, dOB);
  std::vector<double> dLse = withDLse ? gaussian(rng, rs.lseSize()) : std::vector<double>();
  std::vector<float> dLsef = toFloat(dLse);

  DeviceBuffer bq, bk, bv, bo, boT, blse, bdO, bdLse, bdq, bdk, bdv, bws, bqa, bka, bsa;
  // Causal partitions are per far-field level (ref::Partitions' layout).
  const int levels =
      spec.causal ? ref::causalLevels(shape.N, spec.blockSize, spec.windowBlocks) : 0;
  const int64_t qaCount = (spec.causal ? levels : 1) * rs.B * rs.H * rs.N;
  const int64_t kaCount = (spec.causal ? levels : 1) * rs.B * rs.Hkv * rs.M;
  const int64_t ws = attention->backwardWorkspaceBytes(shape);
  MUSE_TRY(bq.allocate(qB.size()));
  MUSE_TRY(bk.allocate(kB.size()));
  MUSE_TRY(bv.allocate(vB.size()));
  MUSE_TRY(bo.allocate(rs.oSize() * 4));
  MUSE_TRY(boT.allocate(dOB.size()));
  MUSE_TRY(blse.allocate(rs.lseSize() * 4));
  MUSE_TRY(bdO.allocate(dOB.size()));
  MUSE_TRY(bdLse.allocate(rs.lseSize() * 4));
  MUSE_TRY(bdq.allocate(rs.qSize() * 4));
  MUSE_TRY(bdk.allocate(rs.kSize() * 4));
  MUSE_TRY(bdv.allocate(rs.vSize() * 4));
  MUSE_TRY(bws.allocate(ws));
  MUSE_TRY(bqa.allocate(std::max<int64_t>(qaCount, 1) * 4));
  MUSE_TRY(bka.allocate(std::max<int64_t>(kaCount, 1) * 4));
  MUSE_TRY(bsa.allocate(std::max<int64_t>(qaCount, 1) * 4));
  MUSE_TRY(bq.upload(qB.data(), qB.size()));
  MUSE_TRY(bk.upload(kB.data(), kB.size()));
  MUSE_TRY(bv.upload(vB.data(), vB.size()));
  MUSE_TRY(bdO.upload(dOB));
  if (withDLse)
    MUSE_TRY(bdLse.upload(dLsef.data(), dLsef.size() * 4));
  MUSE_TRY(bws.poison());

  ForwardArgs f;
  f.shape = shape;
  f.q = bq.get();
  f.k = bk.get();
  f.v = bv.get();
  f.o = bo.f();
  f.lse = blse.f();
  setContiguousStrides(f, D, Dv);
  f.workspace = bws.get();
  f.workspaceBytes = ws;
  f.queryAssign = static_cast<int32_t *>(bqa.get());
  f.keyAssign = static_cast<int32_t *>(bka.get());
  if (spec.causal)
    f.servedAssign = static_cast<int32_t *>(bsa.get());
  // 16-bit specs: first a forward that delivers o in the input dtype
  // (OutputType::Input), which must equal the fp32 forward's o rounded, bit
  // for bit (every k-means pass of these shapes has one block a head, so the
  // two forwards find the same partitions).
  const bool inputTypeOutputs = spec.dtype != DType::F32;
  std::vector<uint16_t> oIn;
  if (inputTypeOutputs) {
    DeviceBuffer boIn;
    MUSE_TRY(boIn.allocate(dOB.size()));
    MUSE_TRY(boIn.poison());
    ForwardArgs fi = f;
    fi.o = boIn.get();
    fi.oType = OutputType::Input;
    MUSE_TRY(attention->forward(fi, nullptr));
    MUSE_TRY(boIn.download(oIn, rs.oSize()));
  }
  MUSE_TRY(attention->forward(f, nullptr));
  {
    std::vector<float> of;
    MUSE_TRY(bo.download(of, rs.oSize()));
    std::vector<double> od(of.begin(), of.end());
    std::string oB;
    roundTo(spec.dtype, od, oB);
    MUSE_TRY(boT.upload(oB));
    if (inputTypeOutputs) {
      report.inputTypeChecked = true;
      report.inputTypeMismatches += countMismatches(oIn, oB);
    }
  }

  BackwardArgs b;
  b.shape = shape;
  b.q = f.q;
  b.k = f.k;
  b.v = f.v;
  b.o = boT.get();
  b.lse = f.lse;
  b.dO = bdO.get();
  b.dLse = withDLse ? bdLse.f() : nullptr;
  b.dq = bdq.f();
  b.dk = bdk.f();
  b.dv = bdv.f();
  setContiguousStrides(b, D, Dv);
  b.workspace = bws.get();
  b.workspaceBytes = ws;
  auto &drv = CudaDriver::get();
  std::vector<float> g[2][3];
  for (int run = 0; run < 2; ++run) {
    for (DeviceBuffer *x : {&bdq, &bdk, &bdv})
      MUSE_TRY(x->poison());
    MUSE_TRY(attention->backward(b, nullptr));
    MUSE_TRY(drv.check(drv.cuCtxSynchronize(), "backward kernels (cuCtxSynchronize)"));
    MUSE_TRY(bdq.download(g[run][0], rs.qSize()));
    MUSE_TRY(bdk.download(g[run][1], rs.kSize()));
    MUSE_TRY(bdv.download(g[run][2], rs.vSize()));
  }
  if (inputTypeOutputs) {
    // The gradients in the input dtype: each the fp32 run's rounded, bit for bit.
    DeviceBuffer bIn[3];
    const int64_t counts[3] = {rs.qSize(), rs.kSize(), rs.vSize()};
    BackwardArgs bi = b;
    void **dst[3] = {&bi.dq, &bi.dk, &bi.dv};
    for (int t = 0; t < 3; ++t) {
      MUSE_TRY(bIn[t].allocate(size_t(counts[t]) * 2));
      MUSE_TRY(bIn[t].poison());
      *dst[t] = bIn[t].get();
    }
    bi.gradType = OutputType::Input;
    MUSE_TRY(attention->backward(bi, nullptr));
    MUSE_TRY(drv.check(drv.cuCtxSynchronize(), "backward kernels (cuCtxSynchronize)"));
    for (int t = 0; t < 3; ++t) {
      std::vector<uint16_t> h;
      MUSE_TRY(bIn[t].download(h, size_t(counts[t])));
      std::vector<double> want(g[0][t].begin(), g[0][t].end());
      std::string wantB;
      roundTo(spec.dtype, want, wantB);
      report.inputTypeMismatches += countMismatches(h, wantB);
    }
  }
  for (int t = 0; t < 3; ++t) {
    report.deterministic = report.deterministic &&
                           std::memcmp(g[0][t].data(), g[1][t].data(), g[0][t].size() * 4) == 0;
    for (float x : g[0][t])
      report.outputsFinite = report.outputsFinite && std::isfinite(x);
  }

  // Causality (causal specs): o_t depends on positions <= t only, so the
  // gradient at every position >= cut must not change, bit for bit, when dO
  // and dLse change at positions < cut; the earlier rows must change (else
  // the check proves nothing).
  if (spec.causal && rs.N > 1) {
    const int64_t cut = rs.N / 2;
    std::vector<double> dO2 = dO;
    std::vector<float> dLse2 = dLsef;
    for (int64_t bh = 0; bh < rs.B * rs.H; ++bh)
      for (int64_t t = 0; t < cut; ++t) {
        for (int64_t c = 0; c < Dv; ++c)
          dO2[(bh * rs.N + t) * Dv + c] = -2.0 * dO2[(bh * rs.N + t) * Dv + c] + 0.5;
        if (withDLse)
          dLse2[bh * rs.N + t] += 1.f;
      }
    std::string dO2B;
    roundTo(spec.dtype, dO2, dO2B);
    MUSE_TRY(bdO.upload(dO2B));
    if (withDLse)
      MUSE_TRY(bdLse.upload(dLse2.data(), dLse2.size() * 4));
    MUSE_TRY(attention->backward(b, nullptr));
    MUSE_TRY(drv.check(drv.cuCtxSynchronize(), "backward kernels (cuCtxSynchronize)"));
    std::vector<float> h[3];
    MUSE_TRY(bdq.download(h[0], rs.qSize()));
    MUSE_TRY(bdk.download(h[1], rs.kSize()));
    MUSE_TRY(bdv.download(h[2], rs.vSize()));
    const int64_t heads[3] = {rs.B * rs.H, rs.B * rs.Hkv, rs.B * rs.Hkv};
    const int64_t width[3] = {D, D, Dv};
    bool laterSame = true, earlierChanged = false;
    for (int x = 0; x < 3; ++x)
      for (int64_t hh = 0; hh < heads[x]; ++hh)
        for (int64_t t = 0; t < rs.N; ++t) {
          const size_t at = size_t((hh * rs.N + t) * width[x]);
          const bool same = std::memcmp(&g[0][x][at], &h[x][at], size_t(width[x]) * 4) == 0;
          if (t >= cut)
            laterSame = laterSame && same;
          else
            earlierChanged = earlierChanged || !same;
        }
    report.causalChecked = true;
    report.causal = laterSame && earlierChanged;
    MUSE_TRY(bdO.upload(dOB)); // the timed runs use the original dO
    if (withDLse)
      MUSE_TRY(bdLse.upload(dLsef.data(), dLsef.size() * 4));
  }

  if (options.timedRuns > 0)
    MUSE_TRY(medianMs(options.timedRuns, [&] { return attention->backward(b, nullptr); },
                      report.medianMs));
  if (options.timeOnly)
    return Status::success();

  ref::MuseConfig cfg;
  cfg.queryClusters = spec.queryClusters;
  cfg.keyClusters = spec.keyClusters;
  cfg.kmeansIters = spec.kmeansIters;
  cfg.order = spec.order;
  cfg.nearClusters = spec.nearClusters;
  cfg.scale = spec.effectiveScale();
  cfg.causal = spec.causal;
  cfg.blockSize = spec.blockSize;
  cfg.windowBlocks = spec.windowBlocks;
  ref::Partitions parts;
  parts.levels = levels;
  MUSE_TRY(bqa.download(parts.query, qaCount));
  MUSE_TRY(bka.download(parts.key, kaCount));
  if (spec.causal)
    MUSE_TRY(bsa.download(parts.served, qaCount));
  ref::Gradients want;
  ref::RefStatus rst = ref::museBackward(cfg, rs, q, k, v, dO, dLse, &parts, want);
  if (!rst)
    return {StatusCode::InvalidArgument,
            "reference rejected the kernel's partitions: " + rst.message};
  report.dqRelL2 = relL2(g[0][0], want.dq);
  report.dkRelL2 = relL2(g[0][1], want.dk);
  report.dvRelL2 = relL2(g[0][2], want.dv);
  return Status::success();
}

} // namespace muse::check
