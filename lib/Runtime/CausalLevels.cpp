//===- CausalLevels.cpp - The per-level views of a causal launch plan -----===//

#include "CausalLevels.h"

#include "muse/params.cuh"

namespace muse {

int causalLevelCount(int64_t n, int64_t blockSize, int64_t windowBlocks) {
  if (n < 1 || blockSize < 1 || windowBlocks < 1)
    return 0;
  int64_t maxP = (n + blockSize - 1) / blockSize - windowBlocks;
  int levels = 0;
  for (; maxP > 0; maxP >>= 1)
    ++levels;
  return levels;
}

LevelGeometry levelGeometry(int64_t n, int64_t blockSize, int64_t windowBlocks, int level) {
  LevelGeometry g;
  g.level = level;
  g.length = blockSize << level;
  g.stride = blockSize << (level + 1);
  g.servedBase = ((int64_t(1) << level) + windowBlocks - 1) * blockSize;
  // Segment a serves when its first served block a 2^{ℓ+1} + 2^ℓ + w - 1 < ceil(n/S).
  const int64_t blocks = (n + blockSize - 1) / blockSize;
  const int64_t room = blocks - (int64_t(1) << level) - windowBlocks + 1;
  const int64_t group = int64_t(1) << (level + 1);
  g.segments = room > 0 ? (room + group - 1) / group : 0;
  return g;
}

void levelView(LaunchView view, const LevelGeometry &g, const MuseParams &base,
               const Shape &shape, int64_t valueDim, MuseParams &p, Shape &s) {
  p = base;
  s = shape;
  if (view == LaunchView::Full)
    return;
  p.seg_level = g.level;
  p.level_segs = static_cast<int>(g.segments);
  p.seg_stride = g.stride;
  if (view == LaunchView::Level)
    return;
  // A segment view: every segment is a batch entry of its own.
  p.seg_count = static_cast<int>(g.segments);
  p.B = static_cast<int>(shape.B * g.segments);
  p.N = p.M = static_cast<int>(g.length);
  s.B = shape.B * g.segments;
  s.N = s.M = g.length;
  if (view == LaunchView::Segment)
    return;
  // Served: query rows of R; stage 2 writes the level's partial, not o
  // (or merges it into o itself, through merge_o / merge_lse).
  p.seg_qbase = g.servedBase;
  p.merge_o = base.o;
  p.merge_o_sb = base.o_sb;
  p.merge_o_sh = base.o_sh;
  p.merge_o_sn = base.o_sn;
  p.merge_lse = base.lse;
  p.o = base.part_o; // null where the plan has none (the far field merges through merge_o)
  if (base.part_o) {
    p.o_sn = valueDim;
    p.o_sh = shape.N * valueDim;
    p.o_sb = shape.H * shape.N * valueDim;
  }
  p.lse = nullptr;
}

int64_t causalSaveBytes(const Shape &shape, int64_t blockSize, int64_t windowBlocks) {
  const int64_t levels = causalLevelCount(shape.N, blockSize, windowBlocks);
  const int64_t bytes = 4 * levels * shape.N * (2 * shape.B * shape.H + shape.B * shape.Hkv);
  return (bytes + 255) / 256 * 256; // what follows stays 256-byte aligned
}

void bindCausalSave(const Shape &shape, int64_t blockSize, int64_t windowBlocks, void *workspace,
                    int64_t offset, MuseParams &p) {
  const int64_t levels = causalLevelCount(shape.N, blockSize, windowBlocks);
  int *base = reinterpret_cast<int *>(static_cast<char *>(workspace) + offset);
  const int64_t q = levels * shape.B * shape.H * shape.N, k = levels * shape.B * shape.Hkv * shape.N;
  p.out_query = base;
  p.out_key = base + q;
  p.out_served = base + q + k;
}

} // namespace muse
