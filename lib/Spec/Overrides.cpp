//===- Overrides.cpp - "section.field=value" on top of a spec -------------===//
//
// Overrides are applied to the YAML tree, not to the Spec, so an overridden
// value goes through exactly the same type and value checks as a written one.
//
//===----------------------------------------------------------------------===//

#include "FieldTable.h"
#include "ParseTree.h"

namespace muse {

namespace {

std::vector<std::string> allFieldPaths() {
  std::vector<std::string> paths;
  for (const spec::FieldRule &r : spec::fieldRules())
    paths.push_back(r.path());
  return paths;
}

/// Applies one override to `root` (a mapping); problems with the override
/// itself become diagnostics.
void applyOverride(YAML::Node &root, const std::string &text,
                   std::vector<spec::AppliedOverride> &applied,
                   std::vector<SpecDiagnostic> &diags) {
  const SourceLoc loc{spec::kOverrideFile, 0, 0};
  const std::string quoted = "override '" + text + "'";
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    diags.push_back({loc, "",
                     quoted + " is not of the form section.field=value "
                              "(e.g. clustering.query_clusters=32)"});
    return;
  }
  const std::string path = text.substr(0, eq), valueText = text.substr(eq + 1);
  size_t dot = path.find('.');
  std::string section = dot == std::string::npos ? "" : path.substr(0, dot);
  std::string key = dot == std::string::npos ? path : path.substr(dot + 1);
  const spec::FieldRule *rule = spec::findRule(section, key);
  if (!rule) {
    std::vector<std::string> paths = allFieldPaths();
    std::string near = spec::nearestName(path, paths);
    diags.push_back({loc, path,
                     quoted + ": unknown field '" + path + "'" +
                         (near.empty() ? std::string() : "; did you mean '" + near + "'?") +
                         "; allowed: " + spec::joinNames(paths)});
    return;
  }
  YAML::Node value;
  try {
    value = YAML::Load(valueText);
  } catch (const YAML::Exception &e) {
    diags.push_back({loc, path, quoted + ": the value is not valid YAML: " + e.msg});
    return;
  }
  if (!root.IsMap())
    return; // the top-level error is reported by the parse
  if (section.empty()) {
    root[key] = value;
  } else {
    YAML::Node sec = root[section];
    if (!sec.IsDefined() || sec.IsNull()) {
      root[section] = YAML::Node(YAML::NodeType::Map);
      sec = root[section];
    } else if (!sec.IsMap()) {
      return; // the parse reports the malformed section
    }
    sec[key] = value;
  }
  applied.push_back({value, text});
}

} // namespace

SpecResult parseSpecWithOverrides(const std::string &yamlText, const std::string &file,
                                  const std::vector<std::string> &overrides) {
  std::vector<SpecDiagnostic> diags;
  try {
    std::optional<YAML::Node> root = spec::loadDocument(yamlText, file, diags);
    if (!root)
      return {std::nullopt, diags};
    std::vector<spec::AppliedOverride> applied;
    for (const std::string &o : overrides)
      applyOverride(*root, o, applied, diags);
    return spec::parseTree(*root, file, applied, diags);
  } catch (const std::exception &e) {
    diags.push_back(spec::failureDiagnostic(file, e.what()));
  } catch (...) {
    diags.push_back(spec::failureDiagnostic(file, "unknown exception"));
  }
  return {std::nullopt, diags};
}

} // namespace muse
