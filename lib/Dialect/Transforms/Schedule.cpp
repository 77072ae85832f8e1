//===- Schedule.cpp - Tile sizes and threads for the target ---------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/IR/Builders.h"

namespace mlir::muse {
#define GEN_PASS_DEF_MUSESCHEDULE
#include "muse/Dialect/Muse/Transforms/Passes.h.inc"
} // namespace mlir::muse

using namespace mlir;
using namespace mlir::muse;

namespace {
/// Defaults, overridden field by field by the spec's tiling section:
/// - threads: 128; 256 on sm_90 and newer when a head is 128 wide, where the
///   larger register file and shared memory keep two wide tiles resident.
/// - block_q: 64 queries per tile; block_k: 64 keys per tile, 32 when
///   D + Dv > 128 so a key and a value tile still fit in 48 KB of static
///   shared memory next to the query tile.
ScheduleAttr chooseSchedule(SpecAttr spec) {
  int64_t wide = std::max(spec.getHeadDim(), spec.getValueDim());
  int64_t threads = (spec.getArchNumber() >= 90 && wide >= 128) ? 256 : 128;
  if (spec.getWarps() > 0)
    threads = spec.getWarps() * 32;
  int64_t blockQ = spec.getBlockQ() > 0 ? spec.getBlockQ() : 64;
  int64_t blockK = spec.getBlockK() > 0 ? spec.getBlockK()
                                        : (spec.getHeadDim() + spec.getValueDim() > 128 ? 32 : 64);
  return ScheduleAttr::get(spec.getContext(), blockQ, blockK, threads);
}

struct MuseSchedule : public mlir::muse::impl::MuseScheduleBase<MuseSchedule> {
  void runOnOperation() override {
    getOperation()->walk([](Operation *op) {
      if (auto s = dyn_cast<SummarizeOp>(op))
        s.setScheduleAttr(chooseSchedule(s.getSpec()));
      else if (auto f = dyn_cast<FarFieldOp>(op))
        f.setScheduleAttr(chooseSchedule(f.getSpec()));
      else if (auto d = dyn_cast<DipoleOp>(op))
        d.setScheduleAttr(chooseSchedule(d.getSpec()));
      else if (auto w = dyn_cast<WindowOp>(op))
        w.setScheduleAttr(chooseSchedule(w.getSpec()));
    });
  }
};
} // namespace

IntegerAttr mlir::muse::kernelMinBlocks(Builder &b, SpecAttr spec, StringRef kernel, int64_t threads) {
  // Only where measured (H100, sm_90 and newer; bench/NOTES.md version 7):
  // 16-bit inputs whose head and value dims fit the narrow tiles (D + Dv <=
  // 128, multiples of 16), at the block size each kernel was measured with.
  // Each cap was checked against ptxas's report to cost at most a few
  // spilled words, and each made its kernel faster in a timed A/B (more
  // warps to hide shared-memory and L2 latency).
  const int64_t D = spec.getHeadDim(), DV = spec.getValueDim();
  const bool narrow16 = !spec.getDtype().isF32() && D + DV <= 128 && D % 16 == 0 && DV % 16 == 0;
  if (!narrow16 || spec.getArchNumber() < 90)
    return IntegerAttr();
  int64_t blocks = 0;
  if (kernel == "muse_far_field" && threads == 128)
    // 130 -> 128 registers; with near clusters the cap would spill 224 bytes.
    blocks = spec.getNearClusters() == 0 ? 4 : 0;
  else if (kernel == "muse_backward_keys" && threads == 128)
    blocks = spec.getOrder() == 0 ? 3 : 0; // keysFar0Mma: 224 -> 168
  else if (kernel == "muse_causal_window" && threads == 256) // 128 queries a block (S >= 128)
    blocks = 2; // 129 -> 128 registers, 4 bytes spilled: two blocks (16 warps) an SM
  else if (kernel == "muse_backward_window_dkdv" && threads == 128) // 64 keys a block (S >= 64)
    blocks = 4; // 32-query tiles: 128 registers
  else if (kernel == "muse_backward_window_dq" && threads == 256) // 128 queries a block (S >= 128)
    blocks = 2; // Q and dO fragments in registers: 128, no spill
  return blocks > 0 ? b.getI64IntegerAttr(blocks) : IntegerAttr();
}
