//===- Spec.cpp - Spec helpers and diagnostics ----------------------------===//

#include "muse/Spec/Spec.h"

#include "FieldTable.h"

#include <cmath>
#include <cstdlib>

namespace muse {

std::string SpecDiagnostic::str() const {
  std::string out;
  if (!loc.file.empty()) {
    out += loc.file;
    if (loc.line > 0) {
      out += ":" + std::to_string(loc.line);
      if (loc.col > 0)
        out += ":" + std::to_string(loc.col);
    }
    out += ": ";
  }
  out += "error: ";
  if (!field.empty())
    out += field + ": ";
  return out + message;
}

double Spec::effectiveScale() const {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(headDim));
}

int Spec::archNumber() const {
  if (!spec::isSupportedArch(arch))
    return 0;
  // Every supported name is "sm_" followed by digits and an optional "a".
  return std::atoi(arch.c_str() + 3);
}

const char *dtypeName(DType t) {
  switch (t) {
  case DType::BF16:
    return "bf16";
  case DType::F16:
    return "f16";
  case DType::F32:
    return "f32";
  }
  return "?";
}

bool operator==(const Spec &a, const Spec &b) {
  return a.name == b.name && a.causal == b.causal && a.headDim == b.headDim &&
         a.valueDim == b.valueDim && a.dtype == b.dtype && a.scale == b.scale &&
         a.kvHeadsRatio == b.kvHeadsRatio && a.queryClusters == b.queryClusters &&
         a.keyClusters == b.keyClusters && a.kmeansIters == b.kmeansIters &&
         a.order == b.order && a.nearClusters == b.nearClusters && a.blockSize == b.blockSize &&
         a.windowBlocks == b.windowBlocks && a.blockQ == b.blockQ && a.blockK == b.blockK &&
         a.warps == b.warps && a.arch == b.arch;
}

std::string describeAllowed() {
  const Spec defaults;
  std::string out;
  for (const spec::FieldRule &r : spec::fieldRules()) {
    std::string def;
    switch (r.kind) {
    case spec::FieldKind::Name:
      def = defaults.name;
      break;
    case spec::FieldKind::Bool:
      def = defaults.causal ? "true" : "false";
      break;
    case spec::FieldKind::DType:
      def = dtypeName(defaults.dtype);
      break;
    case spec::FieldKind::Scale:
      def = "auto";
      break;
    case spec::FieldKind::Arch:
      def = defaults.arch;
      break;
    case spec::FieldKind::Int:
      def = r.intMember == &Spec::valueDim ? std::string("head_dim")
                                            : std::to_string(defaults.*r.intMember);
      break;
    }
    out += r.path() + ": " + r.allowed() + " (default " + def + ")";
    if (std::string(r.section) == "causal")
      out += "; only with attention.causal: true";
    out += "\n";
  }
  return out;
}

} // namespace muse
