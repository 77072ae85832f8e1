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

/// Points of head-major rows [heads][n][dim]. Well-separated: point p of a
/// head belongs to mixture component j with p in [floor(j*n/C), floor((j+1)*n/C)),
/// so the strided k-means initialisation picks one point of every component.
std::vector<double> makeInputs(std::mt19937_64 &rng, InputKind kind, int64_t heads, int64_t n,
                               int64_t dim, int components, double pointScale) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(static_cast<size_t>(heads * n * dim));
  if (kind == InputKind::Gaussian) {
    for (double &e : x)
      e = normal(rng);
    return x;
  }
  int64_t c = std::min<int64_t>(components, n);
  std::vector<double> centers(static_cast<size_t>(c * dim));
  for (int64_t h = 0; h < heads; ++h) {
    for (double &e : centers)
      e = 3.0 * normal(rng);
    int64_t j = 0;
    for (int64_t p = 0; p < n; ++p) {
      while (j + 1 < c && p >= (j + 1) * n / c)
        ++j;
      for (int64_t d = 0; d < dim; ++d)
        x[(h * n + p) * dim + d] = (centers[j * dim + d] + 0.05 * normal(rng)) / pointScale;
    }
  }
  return x;
}

double sumSq(const std::vector<double> &a) {
  double s = 0;
  for (double e : a)
    s += e * e;
  return s;
}

} // namespace

double referenceTolerance(const Spec &spec) { return spec.dtype == DType::F32 ? 1e-5 : 2e-2; }

std::string VerifyReport::str() const {
  std::ostringstream os;
  os.precision(3);
  os << std::scientific;
  os << "shape B=" << shape.B << " H=" << shape.H << " Hkv=" << shape.Hkv << " N=" << shape.N
     << " M=" << shape.M << " seed=" << seed << "\n";
  os << "kernel vs CPU reference on the kernel's partitions: rel L2 " << relL2VsReference
     << ", max abs " << maxAbsVsReference << ", lse max abs " << lseMaxAbsVsReference << "\n";
  os << "relative squared error vs exact attention: kernel " << relSqErrVsExact
     << ", reference " << referenceRelSqErrVsExact << "\n";
  if (queryAssignMismatches >= 0)
    os << "partition mismatches vs reference k-means: queries " << queryAssignMismatches
       << ", keys " << keyAssignMismatches << "\n";
  if (!outputsFinite)
    os << "NON-FINITE values in the kernel output\n";
  if (medianMs > 0) {
    os << std::fixed;
    os << "forward median " << medianMs << " ms\n";
  }
  return os.str();
}

Status verifyForward(Engine &engine, const Spec &spec, const VerifyOptions &options,
                     VerifyReport &report) {
  Shape shape = options.shape;
  if (shape.Hkv == 0)
    shape.Hkv = shape.H / std::max(1, spec.kvHeadsRatio);
  if (shape.Hkv <= 0 || shape.H % shape.Hkv != 0 || shape.H / shape.Hkv != spec.kvHeadsRatio)
    return {StatusCode::InvalidArgument,
            "verify: H=" + std::to_string(shape.H) + " does not fit kv_heads_ratio " +
                std::to_string(spec.kvHeadsRatio) + " of the spec"};
  report = VerifyReport();
  report.shape = shape;
  report.seed = options.seed ? options.seed : std::random_device{}() * 0x9e3779b97f4a7c15ull + 1;

  Status st;
  auto attention = engine.build(spec, st);
  if (!attention)
    return st;

  const int64_t D = spec.headDim, Dv = spec.valueDim;
  ref::RefShape rs{shape.B, shape.H, shape.Hkv, shape.N, shape.M, D, Dv};
  std::mt19937_64 rng(report.seed);
  double scale = spec.effectiveScale();
  auto q = makeInputs(rng, options.inputs, shape.B * shape.H, shape.N, D, spec.queryClusters,
                      scale * std::sqrt(double(D)));
  auto k = makeInputs(rng, options.inputs, shape.B * shape.Hkv, shape.M, D, spec.keyClusters,
                      std::sqrt(double(D)));
  auto v = makeInputs(rng, InputKind::Gaussian, shape.B * shape.Hkv, shape.M, Dv, 1, 1.0);
  std::string qBytes, kBytes, vBytes;
  roundTo(spec.dtype, q, qBytes);
  roundTo(spec.dtype, k, kBytes);
  roundTo(spec.dtype, v, vBytes);

  DeviceBuffer dq, dk, dv, dO, dLse, dWs, dQa, dKa, dSa;
  int64_t oCount = rs.oSize(), lseCount = rs.lseSize();
  // Causal partitions are per far-field level (ref::Partitions' layout).
  const int levels =
      spec.causal ? ref::causalLevels(shape.N, spec.blockSize, spec.windowBlocks) : 0;
  const int64_t qaCount = (spec.causal ? levels : 1) * shape.B * shape.H * shape.N;
  const int64_t kaCount = (spec.causal ? levels : 1) * shape.B * shape.Hkv * shape.M;
  const int64_t saCount = spec.causal ? qaCount : 0;
  int64_t ws = attention->workspaceBytes(shape);
  MUSE_TRY(dq.allocate(qBytes.size()));
  MUSE_TRY(dk.allocate(kBytes.size()));
  MUSE_TRY(dv.allocate(vBytes.size()));
  MUSE_TRY(dO.allocate(oCount * 4));
  MUSE_TRY(dLse.allocate(lseCount * 4));
  MUSE_TRY(dWs.allocate(ws));
  MUSE_TRY(dQa.allocate(qaCount * 4));
  MUSE_TRY(dKa.allocate(kaCount * 4));
  MUSE_TRY(dSa.allocate(saCount * 4));
  MUSE_TRY(dq.upload(qBytes));
  MUSE_TRY(dk.upload(kBytes));
  MUSE_TRY(dv.upload(vBytes));

  auto &drv = CudaDriver::get();
  for (auto *b : {&dO, &dLse, &dWs})
    MUSE_TRY(b->poison());

  ForwardArgs args;
  args.shape = shape;
  args.q = dq.get();
  args.k = dk.get();
  args.v = dv.get();
  args.o = static_cast<float *>(dO.get());
  args.lse = static_cast<float *>(dLse.get());
  setContiguousStrides(args, D, Dv);
  args.workspace = dWs.get();
  args.workspaceBytes = ws;
  args.queryAssign = static_cast<int32_t *>(dQa.get());
  args.keyAssign = static_cast<int32_t *>(dKa.get());
  if (spec.causal)
    args.servedAssign = static_cast<int32_t *>(dSa.get());
  MUSE_TRY(attention->forward(args, nullptr));
  MUSE_TRY(drv.check(drv.cuCtxSynchronize(), "kernel execution (cuCtxSynchronize)"));

  std::vector<float> o, lse;
  std::vector<int32_t> qa, ka, sa;
  MUSE_TRY(dO.download(o, oCount));
  MUSE_TRY(dLse.download(lse, lseCount));
  MUSE_TRY(dQa.download(qa, qaCount));
  MUSE_TRY(dKa.download(ka, kaCount));
  MUSE_TRY(dSa.download(sa, saCount));

  if (options.timedRuns > 0)
    MUSE_TRY(medianMs(options.timedRuns, [&] { return attention->forward(args, nullptr); },
                      report.medianMs));

  for (float x : o)
    report.outputsFinite = report.outputsFinite && std::isfinite(x);
  for (float x : lse)
    report.outputsFinite = report.outputsFinite && std::isfinite(x);
  if (options.timeOnly)
    return Status::success();

  ref::MuseConfig cfg;
  cfg.causal = spec.causal;
  cfg.queryClusters = spec.queryClusters;
  cfg.keyClusters = spec.keyClusters;
  cfg.kmeansIters = spec.kmeansIters;
  cfg.order = spec.order;
  cfg.nearClusters = spec.nearClusters;
  cfg.blockSize = spec.blockSize;
  cfg.windowBlocks = spec.windowBlocks;
  cfg.scale = scale;

  ref::Partitions parts;
  parts.levels = levels;
  parts.query = qa;
  parts.key = ka;
  parts.served = sa;
  ref::MuseForwardResult onKernel;
  ref::RefStatus rst = ref::museForward(cfg, rs, q, k, v, &parts, onKernel);
  if (!rst)
    return {StatusCode::InvalidArgument,
            "reference rejected the kernel's partitions: " + rst.message};

  double diff = 0, maxAbs = 0, lseMax = 0;
  for (int64_t i = 0; i < oCount; ++i) {
    double d = o[i] - onKernel.o[i];
    diff += d * d;
    maxAbs = std::max(maxAbs, std::abs(d));
  }
  for (int64_t i = 0; i < lseCount; ++i)
    lseMax = std::max(lseMax, std::abs(lse[i] - onKernel.lse[i]));
  double refNorm = sumSq(onKernel.o);
  report.relL2VsReference = std::sqrt(diff / std::max(refNorm, 1e-300));
  report.maxAbsVsReference = maxAbs;
  report.lseMaxAbsVsReference = lseMax;
  if (!report.outputsFinite)
    report.relL2VsReference = INFINITY;

  ref::ForwardResult exact;
  rst = ref::exactForward(rs, spec.causal, scale, q, k, v, exact);
  if (!rst)
    return {StatusCode::Internal, "exact reference failed: " + rst.message};
  double exactNorm = std::max(sumSq(exact.o), 1e-300), e1 = 0, e2 = 0;
  for (int64_t i = 0; i < oCount; ++i) {
    e1 += (o[i] - exact.o[i]) * (o[i] - exact.o[i]);
    e2 += (onKernel.o[i] - exact.o[i]) * (onKernel.o[i] - exact.o[i]);
  }
  report.relSqErrVsExact = e1 / exactNorm;
  report.referenceRelSqErrVsExact = e2 / exactNorm;

  if (options.comparePartitions) {
    ref::MuseForwardResult own;
    rst = ref::museForward(cfg, rs, q, k, v, nullptr, own);
    if (!rst)
      return {StatusCode::Internal, "reference k-means failed: " + rst.message};
    report.queryAssignMismatches = 0;
    report.keyAssignMismatches = 0;
    for (size_t i = 0; i < qa.size(); ++i)
      report.queryAssignMismatches += qa[i] != own.partitions.query[i];
    for (size_t i = 0; i < ka.size(); ++i)
      report.keyAssignMismatches += ka[i] != own.partitions.key[i];
    for (size_t i = 0; i < sa.size(); ++i) // causal: served queries count as query mismatches
      report.queryAssignMismatches += sa[i] != own.partitions.served[i];
  }
  return Status::success();
}

/// Two forward calls whose inputs agree at positions <= cut and differ at
/// every position after it; outputs at positions <= cut must not move a bit.
Status verifyCausality(Engine &engine, const Spec &spec, const Shape &requested, uint64_t seed,
                       int64_t cut, CausalityReport &report) {
  Shape shape = requested;
  if (shape.Hkv == 0)
    shape.Hkv = shape.H / std::max(1, spec.kvHeadsRatio);
  if (!spec.causal)
    return {StatusCode::InvalidArgument, "causality check: spec '" + spec.name + "' is not causal"};
  if (cut < 0 || cut >= shape.N)
    return {StatusCode::InvalidArgument, "causality check: cut " + std::to_string(cut) +
                                             " must be a position in [0, N)"};
  report = CausalityReport();
  report.cut = cut;
  Status st;
  auto attention = engine.build(spec, st);
  if (!attention)
    return st;
  const int64_t D = spec.headDim, Dv = spec.valueDim, N = shape.N;
  const int64_t qh = shape.B * shape.H, kh = shape.B * shape.Hkv;
  std::mt19937_64 rng(seed ? seed : 12345);
  auto q = makeInputs(rng, InputKind::Gaussian, qh, N, D, 1, spec.effectiveScale() * std::sqrt(double(D)));
  auto k = makeInputs(rng, InputKind::Gaussian, kh, N, D, 1, std::sqrt(double(D)));
  auto v = makeInputs(rng, InputKind::Gaussian, kh, N, Dv, 1, 1.0);
  // The same tensors with every row after `cut` redrawn.
  auto redraw = [&](std::vector<double> x, int64_t heads, int64_t dim, double sc) {
    std::normal_distribution<double> normal(0.0, sc);
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t t = cut + 1; t < N; ++t)
        for (int64_t d = 0; d < dim; ++d)
          x[(h * N + t) * dim + d] = normal(rng);
    return x;
  };
  auto q2 = redraw(q, qh, D, 3.0), k2 = redraw(k, kh, D, 3.0), v2 = redraw(v, kh, Dv, 3.0);
  // k-means accumulates with float atomics, so the last bits of a centroid
  // depend on the order of the additions (templates/README.md): two runs on
  // the same inputs may differ by rounding. On a grid of 2^-6 with |x| < 8
  // every such sum (< 2^14 terms) is exact in fp32 and order-free, so any bit
  // that moves here moved because information flowed, not by rounding.
  for (auto *x : {&q, &k, &v, &q2, &k2, &v2})
    for (double &e : *x)
      e = std::min(7.96875, std::max(-7.96875, std::round(e * 64.0) / 64.0));

  const int64_t oCount = qh * N * Dv, lseCount = qh * N, ws = attention->workspaceBytes(shape);
  std::vector<float> o[2], lse[2];
  for (int run = 0; run < 2; ++run) {
    std::string qb, kb, vb;
    auto qr = run ? q2 : q, kr = run ? k2 : k, vr = run ? v2 : v;
    roundTo(spec.dtype, qr, qb);
    roundTo(spec.dtype, kr, kb);
    roundTo(spec.dtype, vr, vb);
    DeviceBuffer dq, dk, dv, dO, dLse, dWs;
    MUSE_TRY(dq.allocate(qb.size()));
    MUSE_TRY(dk.allocate(kb.size()));
    MUSE_TRY(dv.allocate(vb.size()));
    MUSE_TRY(dO.allocate(oCount * 4));
    MUSE_TRY(dLse.allocate(lseCount * 4));
    MUSE_TRY(dWs.allocate(ws));
    MUSE_TRY(dq.upload(qb));
    MUSE_TRY(dk.upload(kb));
    MUSE_TRY(dv.upload(vb));
    ForwardArgs args;
    args.shape = shape;
    args.q = dq.get();
    args.k = dk.get();
    args.v = dv.get();
    args.o = static_cast<float *>(dO.get());
    args.lse = static_cast<float *>(dLse.get());
    setContiguousStrides(args, D, Dv); // causal: M == N
    args.workspace = dWs.get();
    args.workspaceBytes = ws;
    MUSE_TRY(attention->forward(args, nullptr));
    auto &drv = CudaDriver::get();
    MUSE_TRY(drv.check(drv.cuCtxSynchronize(), "kernel execution (cuCtxSynchronize)"));
    MUSE_TRY(dO.download(o[run], oCount));
    MUSE_TRY(dLse.download(lse[run], lseCount));
  }
  for (int64_t h = 0; h < qh; ++h)
    for (int64_t t = 0; t < N; ++t) {
      const bool past = t <= cut;
      bool same = std::memcmp(&lse[0][h * N + t], &lse[1][h * N + t], 4) == 0;
      for (int64_t e = 0; e < Dv; ++e)
        same = same && std::memcmp(&o[0][(h * N + t) * Dv + e], &o[1][(h * N + t) * Dv + e], 4) == 0;
      report.changedAtOrBefore += past && !same;
      report.changedAfter += !past && !same;
      report.outputsFinite = report.outputsFinite && std::isfinite(lse[0][h * N + t]) &&
                             std::isfinite(lse[1][h * N + t]);
    }
  return Status::success();
}

} // namespace muse::check
