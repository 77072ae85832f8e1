//===- Spec.h - The MuSe attention spec -----------------------------------===//
//
// A spec is the short YAML document a user writes to describe one attention
// layer (see README.md, "The spec"). `parseSpec` turns it into a validated
// `Spec`; every error carries file:line:col, the field, the bad value and what
// is allowed. `canonicalSpec` prints the one canonical form (fixed field order,
// defaults filled in) that the compiler cache keys on.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_SPEC_SPEC_H
#define MUSE_SPEC_SPEC_H

#include <optional>
#include <string>
#include <vector>

namespace muse {

enum class DType { BF16, F16, F32 };

/// Location of a node in the YAML source; line and column are 1-based.
struct SourceLoc {
  std::string file; // "<string>" when parsed from memory
  int line = 0;
  int col = 0;
};

struct SpecDiagnostic {
  SourceLoc loc;
  std::string field;   // dotted path, e.g. "clustering.query_clusters"
  std::string message; // full sentence: names the bad value and what is allowed
  /// "file:line:col: error: field: message"; the location parts that are
  /// unknown (empty file, line 0) are left out.
  std::string str() const;
};

struct Spec {
  std::string name = "muse";
  // attention
  bool causal = false;
  int headDim = 64;  // D, one of 64, 128
  int valueDim = 64; // Dv, defaults to head_dim, one of 64, 128
  DType dtype = DType::BF16;
  std::optional<double> scale; // nullopt = "auto" = 1/sqrt(head_dim)
  int kvHeadsRatio = 1;        // H / H_kv (GQA); 1 = MHA
  // clustering
  int queryClusters = 64; // C_q
  int keyClusters = 64;   // C_k
  int kmeansIters = 3;    // T >= 1
  // multipole
  int order = 1;        // 0 monopole, 1 dipole
  int nearClusters = 0; // E, 0 <= E <= C_k
  // causal (only meaningful when causal)
  // S. 2048: the fastest and most accurate one-block window in the H100 table
  // (bench/NOTES.md, version 5); see specs/causal_d64_order0.yaml.
  int blockSize = 2048;
  int windowBlocks = 1; // w >= 1
  // tiling: 0 = chosen by the schedule pass for the target
  int blockQ = 0;
  int blockK = 0;
  int warps = 0;
  // target
  std::string arch = "sm_90"; // sm_80, sm_86, sm_89, sm_90, sm_100, sm_120 ...

  /// The scale actually used: `scale` or 1/sqrt(headDim).
  double effectiveScale() const;
  /// Compute capability as an integer, e.g. 90 for "sm_90" and "sm_90a"; 0
  /// when `arch` is not a known architecture.
  int archNumber() const;
};

/// Field-by-field equality. The causal fields take part even when `causal` is
/// false, so a spec built in code with non-default causal fields differs from
/// the one parsed back from its canonical text (which omits them).
bool operator==(const Spec &a, const Spec &b);
inline bool operator!=(const Spec &a, const Spec &b) { return !(a == b); }

const char *dtypeName(DType t); // "bf16", "f16", "f32"

struct SpecResult {
  std::optional<Spec> spec; // set iff diagnostics is empty
  std::vector<SpecDiagnostic> diagnostics;
  bool ok() const { return spec.has_value(); }
};

/// Parses and validates YAML text. `file` is used in diagnostics only.
/// Typing is strict: integers are plain decimal numbers, booleans exactly
/// `true` or `false` (not yes/no/on/off), a quoted value is a string, and a
/// missing value (`head_dim:`) is an error. All errors of the document are
/// returned, in document order. Never throws.
SpecResult parseSpec(const std::string &yamlText, const std::string &file = "<string>");
/// Reads and parses a file; an unreadable file is a diagnostic, not an exception.
SpecResult parseSpecFile(const std::string &path);
/// Validates a Spec built in code (same rules as the parser; locations empty).
std::vector<SpecDiagnostic> validateSpec(const Spec &spec);
/// Canonical YAML: every field, fixed order, defaults filled. parseSpec of the
/// result gives back an equal Spec; equal Specs give identical text.
std::string canonicalSpec(const Spec &spec);
/// Applies "section.field=value" overrides (as given on the muse-gen command
/// line or from Python keywords) on top of YAML text, then parses. The value
/// is read as YAML ("32", "true", "bf16"); a later override of the same field
/// wins. Diagnostics about an overridden value carry the file "<override>" and
/// name the override in the message.
SpecResult parseSpecWithOverrides(const std::string &yamlText, const std::string &file,
                                  const std::vector<std::string> &overrides);

/// The table of every section and field with its default and allowed values,
/// one line per field ("clustering.query_clusters: an integer from 1 to 1024
/// (default 64)"), for `muse-gen check --help` and `muse-gen env`.
std::string describeAllowed();
/// Allowed target architectures, e.g. {"sm_80", ..., "sm_90", "sm_90a", ...}.
const std::vector<std::string> &supportedArchs();

} // namespace muse

#endif
