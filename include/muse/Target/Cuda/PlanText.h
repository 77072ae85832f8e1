//===- PlanText.h - Text forms of launch-plan symbols and dimensions ------===//
//
// The parsers behind LaunchPlan::deserialize, shared with the muse dialect's
// #muse.dim attribute so that IR, serialized plans and --emit=host all spell a
// launch dimension the same way ("ceil(N/256)", "B*H", "16").
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TARGET_CUDA_PLANTEXT_H
#define MUSE_TARGET_CUDA_PLANTEXT_H

#include "muse/Target/Cuda/LaunchPlan.h"

#include <optional>
#include <string>

namespace muse {

/// "1", "N", "M", "B*H", "B*Hkv" back to a Sym.
std::optional<Sym> parseSym(const std::string &text);
/// Parses DimExpr::str() output: an integer, "S", "S*m", "ceil(S/d)" or
/// "ceil(S/d)*m" with S a symbol name and d, m >= 1.
bool parseDimExpr(const std::string &text, DimExpr &out, std::string &error);

} // namespace muse

#endif
