//===- ParseTree.h - From a YAML tree to a validated Spec -----------------===//
//
// Internal to MuseSpec: the steps shared by parseSpec and
// parseSpecWithOverrides. Both catch every exception yaml-cpp may throw.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_SPEC_PARSETREE_H
#define MUSE_LIB_SPEC_PARSETREE_H

#include "muse/Spec/Spec.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

namespace muse::spec {

/// The file name of diagnostics about override values.
inline constexpr const char *kOverrideFile = "<override>";

/// A value node placed into the tree by an override, with the override text.
struct AppliedOverride {
  YAML::Node value;
  std::string text;
};

/// Reads exactly one YAML document. Syntax errors, an empty text and extra
/// documents become diagnostics and give nullopt.
std::optional<YAML::Node> loadDocument(const std::string &text, const std::string &file,
                                       std::vector<SpecDiagnostic> &diags);

/// Walks the tree (a mapping of sections), checks names and types, then the
/// values and their combinations. `diags` holds errors found before (bad
/// overrides); the result has all errors in document order.
SpecResult parseTree(const YAML::Node &root, const std::string &file,
                     const std::vector<AppliedOverride> &overrides,
                     std::vector<SpecDiagnostic> diags);

/// A diagnostic for an exception that escaped a step, so none leaves the
/// library.
SpecDiagnostic failureDiagnostic(const std::string &file, const char *what);

} // namespace muse::spec

#endif
