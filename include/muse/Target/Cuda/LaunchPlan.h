//===- LaunchPlan.h - What the host does to run one compiled attention ----===//
//
// The launch plan is the host half of a compiled spec: the workspace layout
// and the ordered kernel launches. The compiler produces it (muse-outline, then
// the muse-to-host translation); the runtime interprets it on a stream; the
// `--emit=host` output of muse-gen prints the same plan as C++ launcher source.
// Everything that depends on the sequence length, batch or head count is a
// formula over the runtime shape, so new shapes never recompile.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TARGET_CUDA_LAUNCHPLAN_H
#define MUSE_TARGET_CUDA_LAUNCHPLAN_H

#include <cstdint>
#include <string>
#include <vector>

namespace muse {

/// Runtime shape of one call.
struct Shape {
  int64_t B = 1;   // batch
  int64_t H = 1;   // query heads
  int64_t Hkv = 1; // key/value heads (H % Hkv == 0)
  int64_t N = 1;   // queries per head
  int64_t M = 1;   // keys per head
};

/// A runtime symbol a launch dimension or a buffer size scales with.
enum class Sym { One, N, M, QHeads /*B*H*/, KHeads /*B*Hkv*/ };

const char *symName(Sym s); // "1", "N", "M", "B*H", "B*Hkv"
int64_t symValue(Sym s, const Shape &shape);

/// ceil(sym / div) * mul
struct DimExpr {
  Sym sym = Sym::One;
  int64_t div = 1;
  int64_t mul = 1;
  int64_t eval(const Shape &shape) const;
  std::string str() const; // e.g. "ceil(N/64)", "B*H", "1"
};

/// bytes = elemBytes * heads * (perN*N + perM*M + fixed)
struct BufferSpec {
  std::string name; // one of the MuseParams workspace field names
  Sym heads = Sym::QHeads;
  int64_t perN = 0;
  int64_t perM = 0;
  int64_t fixed = 0;
  int64_t elemBytes = 4;
  int64_t bytes(const Shape &shape) const;
};

/// What a launch sees (causal plans, templates/README.md "Causal forward"):
/// Full runs once on the real shape; the others run once per causal level, in
/// plan order: Level on the real shape with the level's fields set, Segment on
/// the level's segment view (B -> B*segments, N = M = segment length, rows of
/// L), Served on the same view with query and output rows of R.
enum class LaunchView { Full, Level, Segment, Served };
const char *viewName(LaunchView v); // "full", "level", "segment", "served"

struct KernelLaunch {
  std::string kernel; // extern "C" symbol in the generated CUDA source
  DimExpr grid[3];
  int block = 128; // threads, 1-D
  int sharedBytes = 0;
  std::string comment; // the stage it implements, for --emit=host and logs
  LaunchView view = LaunchView::Full;
};

struct LaunchPlan {
  std::vector<BufferSpec> buffers; // laid out in order, each 256-byte aligned
  std::vector<KernelLaunch> launches;

  /// The acausal backward (templates/README.md "Backward"; empty for causal
  /// specs): its scratch buffers, laid out after the forward's buffers in the
  /// same workspace (the forward's part must still hold what the forward
  /// wrote), and its launches, in order.
  std::vector<BufferSpec> backwardBuffers;
  std::vector<KernelLaunch> backwardLaunches;
  bool hasBackward() const { return !backwardLaunches.empty(); }

  /// Forward buffers that live only while the forward runs (acc_o, the fp32
  /// accumulator of an o delivered in the input dtype): they come last in
  /// `buffers`, and a backward's scratch reuses their bytes, so a workspace
  /// kept for the backward holds nothing the forward no longer needs.
  static bool isTransient(const std::string &name) { return name == "acc_o"; }
  /// Index of the first transient buffer (buffers.size() when none).
  size_t firstTransient() const;
  /// Total workspace bytes, with alignment padding.
  int64_t workspaceBytes(const Shape &shape) const;
  /// The forward buffers' bytes without the transient ones: what a backward
  /// finds where the forward left it (causal specs: the save area follows).
  int64_t persistentBytes(const Shape &shape) const;
  /// Workspace bytes of a backward call: the forward's persistent buffers,
  /// then the backward's, which reuse the transient ones' bytes.
  int64_t backwardWorkspaceBytes(const Shape &shape) const;
  /// Byte offset of each backward buffer (same order as `backwardBuffers`),
  /// from persistentBytes on.
  std::vector<int64_t> backwardBufferOffsets(const Shape &shape) const;
  /// Byte offset of each buffer (same order as `buffers`).
  std::vector<int64_t> bufferOffsets(const Shape &shape) const;
  /// A stable text serialisation (for the cache and tests) and its parser.
  std::string serialize() const;
  static bool deserialize(const std::string &text, LaunchPlan &out, std::string &error);
};

} // namespace muse

#endif
