//===- ParseTree.cpp - From a YAML tree to a validated Spec ---------------===//
//
// Two passes: the walk checks structure and types and fills a Spec, reporting
// at the offending node; then the shared value rules (Validate.h) run on the
// Spec, and their errors are placed at the node that gave the value.
//
//===----------------------------------------------------------------------===//

#include "ParseTree.h"

#include "FieldTable.h"
#include "Validate.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <limits>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace muse::spec {

namespace {

bool isIntegerText(const std::string &t) {
  static const std::regex re("[-+]?[0-9]+");
  return std::regex_match(t, re);
}

bool isDecimalText(const std::string &t) {
  static const std::regex re("[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  return std::regex_match(t, re);
}

bool isInfOrNanText(const std::string &t) {
  static const std::regex re("[-+]?\\.?(inf|Inf|INF|infinity|nan|NaN|NAN)");
  return std::regex_match(t, re);
}

/// How a node is named in a message: numbers bare, other scalars quoted.
std::string describe(const YAML::Node &n) {
  switch (n.Type()) {
  case YAML::NodeType::Sequence:
    return "a list";
  case YAML::NodeType::Map:
    return "a mapping";
  case YAML::NodeType::Scalar:
    if (n.Tag() == "!")
      return "\"" + n.Scalar() + "\"";
    if (isDecimalText(n.Scalar()))
      return n.Scalar();
    return "'" + n.Scalar() + "'";
  default:
    return "no value";
  }
}

class TreeParser {
public:
  TreeParser(const std::string &file, const std::vector<AppliedOverride> &overrides,
             std::vector<SpecDiagnostic> diags)
      : file(file), overrides(overrides), diags(std::move(diags)) {}

  SpecResult run(const YAML::Node &root);

private:
  const std::string &file;
  const std::vector<AppliedOverride> &overrides;
  std::vector<SpecDiagnostic> diags;
  Spec spec;
  std::set<std::string> rejected; // fields whose value was already reported
  std::map<std::string, YAML::Node> given; // field path -> where its value was written
  std::optional<YAML::Node> causalKey;

  const AppliedOverride *overrideOf(const YAML::Node &n) const {
    for (const AppliedOverride &o : overrides)
      if (n.is(o.value))
        return &o;
    return nullptr;
  }

  SourceLoc locOf(const YAML::Node &n) const {
    const YAML::Mark m = n.Mark();
    if (m.is_null())
      return {file, 0, 0};
    return {file, m.line + 1, m.column + 1};
  }

  void error(const YAML::Node &at, const std::string &field, std::string message) {
    if (const AppliedOverride *o = overrideOf(at)) {
      diags.push_back({{kOverrideFile, 0, 0}, field, message + " (from override '" + o->text + "')"});
      return;
    }
    diags.push_back({locOf(at), field, std::move(message)});
  }

  /// Where to point for an error in a value: the value, or its key when the
  /// value is empty (yaml-cpp puts an empty value's mark on the next line).
  YAML::Node valueAt(const YAML::Node &key, const YAML::Node &value) const {
    return value.IsNull() && !overrideOf(value) ? key : value;
  }

  bool checkDuplicate(std::map<std::string, YAML::Node> &seen, const YAML::Node &key,
                      const std::string &field, const char *what);
  void walkSection(const std::string &section, const YAML::Node &key, const YAML::Node &value);
  void parseField(const FieldRule &rule, const YAML::Node &key, const YAML::Node &value);
  void parseInt(const FieldRule &rule, const YAML::Node &at, const std::string &text);
  void parseScale(const FieldRule &rule, const YAML::Node &at, const std::string &text,
                  bool plain);
  void reject(const YAML::Node &at, const FieldRule &rule, const std::string &why) {
    error(at, rule.path(), why + "; allowed: " + rule.allowed());
    rejected.insert(rule.path());
  }
  void rejectQuoted(const YAML::Node &at, const FieldRule &rule, const YAML::Node &value);
};

bool TreeParser::checkDuplicate(std::map<std::string, YAML::Node> &seen, const YAML::Node &key,
                                const std::string &field, const char *what) {
  auto [it, inserted] = seen.emplace(key.Scalar(), key);
  if (inserted)
    return false;
  std::string first;
  if (!it->second.Mark().is_null())
    first = " (first given at line " + std::to_string(it->second.Mark().line + 1) + ")";
  error(key, field,
        std::string(what) + " '" + key.Scalar() + "' is given twice" + first +
            "; give it once");
  return true;
}

SpecResult TreeParser::run(const YAML::Node &root) {
  if (!root.IsMap()) {
    error(root, "",
          "the top level must be a mapping of sections; found " + describe(root) +
              "; allowed: " + joinNames(topLevelKeys()));
  } else {
    std::map<std::string, YAML::Node> seen;
    for (auto it = root.begin(); it != root.end(); ++it) {
      const YAML::Node key = it->first, value = it->second;
      if (!key.IsScalar()) {
        error(key, "", "a section name must be a plain name, found " + describe(key) +
                           "; allowed: " + joinNames(topLevelKeys()));
        continue;
      }
      const std::string name = key.Scalar();
      if (checkDuplicate(seen, key, name, findRule("", name) ? "field" : "section"))
        continue;
      if (const FieldRule *rule = findRule("", name)) {
        parseField(*rule, key, value);
      } else if (isSection(name)) {
        walkSection(name, key, value);
      } else {
        std::string msg = "unknown section '" + name + "'";
        std::string near = nearestName(name, topLevelKeys());
        if (!near.empty())
          msg += "; did you mean '" + near + "'?";
        else if (const FieldRule *elsewhere = findRuleAnywhere(name))
          msg += "; '" + name + "' is a field of section '" + elsewhere->section + "'";
        error(key, name, msg + "; allowed: " + joinNames(topLevelKeys()));
      }
    }
  }

  if (!given.count("attention.value_dim")) {
    spec.valueDim = spec.headDim;
    rejected.insert("attention.value_dim"); // a bad head_dim is reported once, at head_dim
  }
  // Defaults are valid, so every error is about a value the document wrote.
  checkValues(
      spec, [&](const std::string &path) { return rejected.count(path) > 0; },
      [&](const std::string &path, const std::string &msg) {
        auto it = given.find(path);
        if (it != given.end())
          error(it->second, path, msg);
        else
          diags.push_back({{file, 0, 0}, path, msg});
      });

  if (causalKey && !spec.causal && !rejected.count("attention.causal"))
    error(*causalKey, "causal",
          "a causal section is given but attention.causal is false; set attention.causal: "
          "true or remove the section");

  // Document order; errors without a line (overrides) go last, in the order
  // they were found.
  std::stable_sort(diags.begin(), diags.end(), [](const SpecDiagnostic &a, const SpecDiagnostic &b) {
    int la = a.loc.line > 0 ? a.loc.line : INT_MAX, lb = b.loc.line > 0 ? b.loc.line : INT_MAX;
    return la != lb ? la < lb : a.loc.col < b.loc.col;
  });
  SpecResult result;
  result.diagnostics = std::move(diags);
  if (result.diagnostics.empty())
    result.spec = spec;
  return result;
}

void TreeParser::walkSection(const std::string &section, const YAML::Node &key,
                             const YAML::Node &value) {
  if (section == "causal")
    causalKey = key;
  if (value.IsNull())
    return; // an empty section keeps every default
  if (!value.IsMap()) {
    error(valueAt(key, value), section,
          "section '" + section + "' must be a mapping of its fields; found " + describe(value) +
              "; allowed fields: " + joinNames(fieldsOf(section)));
    return;
  }
  std::map<std::string, YAML::Node> seen;
  for (auto it = value.begin(); it != value.end(); ++it) {
    const YAML::Node fkey = it->first, fvalue = it->second;
    if (!fkey.IsScalar()) {
      error(fkey, section, "a field name must be a plain name, found " + describe(fkey) +
                               "; allowed: " + joinNames(fieldsOf(section)));
      continue;
    }
    const std::string name = fkey.Scalar(), path = section + "." + name;
    if (checkDuplicate(seen, fkey, path, "field"))
      continue;
    if (const FieldRule *rule = findRule(section, name)) {
      parseField(*rule, fkey, fvalue);
      continue;
    }
    std::string msg = "unknown field '" + name + "' in section '" + section + "'";
    std::string near = nearestName(name, fieldsOf(section));
    const FieldRule *elsewhere = findRuleAnywhere(name);
    if (!near.empty())
      msg += "; did you mean '" + near + "'?";
    else if (elsewhere && *elsewhere->section)
      msg += "; '" + name + "' belongs in section '" + elsewhere->section + "'";
    error(fkey, path, msg + "; allowed: " + joinNames(fieldsOf(section)));
  }
}

void TreeParser::rejectQuoted(const YAML::Node &at, const FieldRule &rule,
                              const YAML::Node &value) {
  if (value.Tag() == "!") {
    reject(at, rule, describe(value) + " is a quoted string (write the value without quotes)");
    return;
  }
  // Show the standard tags the way they are written ("!!int").
  std::string tag = value.Tag();
  const std::string standard = "tag:yaml.org,2002:";
  if (tag.rfind(standard, 0) == 0)
    tag = "!!" + tag.substr(standard.size());
  reject(at, rule, "'" + value.Scalar() + "' has the YAML tag '" + tag + "', which is not supported");
}

void TreeParser::parseField(const FieldRule &rule, const YAML::Node &key,
                            const YAML::Node &value) {
  const YAML::Node at = valueAt(key, value);
  given[rule.path()] = at;
  if (value.IsNull()) {
    reject(at, rule, "no value given");
    return;
  }
  if (!value.IsScalar()) {
    reject(at, rule, "expected a single value, found " + describe(value));
    return;
  }
  const std::string text = value.Scalar();
  const bool plain = value.Tag() == "?";
  switch (rule.kind) {
  case FieldKind::Name:
    spec.name = text;
    return;
  case FieldKind::Arch:
    spec.arch = text;
    return;
  case FieldKind::DType:
    if (std::optional<DType> d = dtypeFromName(text)) {
      spec.dtype = *d;
    } else {
      std::string near = nearestName(text, dtypeSpellings());
      reject(at, rule,
             describe(value) + " is not a supported dtype" +
                 (near.empty() ? std::string() : "; did you mean '" + near + "'?"));
    }
    return;
  case FieldKind::Bool:
    if (!plain)
      rejectQuoted(at, rule, value);
    else if (text == "true" || text == "false")
      spec.causal = text == "true";
    else
      reject(at, rule, describe(value) + " is not a boolean");
    return;
  case FieldKind::Int:
    if (!plain)
      rejectQuoted(at, rule, value);
    else
      parseInt(rule, at, text);
    return;
  case FieldKind::Scale:
    parseScale(rule, at, text, plain);
    return;
  }
}

void TreeParser::parseInt(const FieldRule &rule, const YAML::Node &at, const std::string &text) {
  if (!isIntegerText(text)) {
    reject(at, rule, (isDecimalText(text) ? text : "'" + text + "'") + " is not an integer");
    return;
  }
  errno = 0;
  long long v = std::strtoll(text.c_str(), nullptr, 10);
  if (errno == ERANGE || v < INT_MIN || v > INT_MAX) {
    reject(at, rule, text + " is out of range");
    return;
  }
  spec.*rule.intMember = static_cast<int>(v);
}

void TreeParser::parseScale(const FieldRule &rule, const YAML::Node &at, const std::string &text,
                            bool plain) {
  if (text == "auto") {
    spec.scale.reset();
  } else if (plain && isDecimalText(text)) {
    spec.scale = std::strtod(text.c_str(), nullptr); // overflow gives inf, reported as such
  } else if (plain && isInfOrNanText(text)) {
    reject(at, rule, "'" + text + "' is not finite");
  } else if (!plain && isDecimalText(text)) {
    reject(at, rule, "\"" + text + "\" is a quoted string (write the value without quotes)");
  } else {
    reject(at, rule, (plain ? "'" + text + "'" : "\"" + text + "\"") + " is not a number");
  }
}

} // namespace

namespace {

/// Sees whether a document holds anything, and where it starts. Used to count
/// documents without YAML::LoadAll, which in yaml-cpp 0.7 loops forever (and
/// allocates without bound) on input such as "," (jbeder/yaml-cpp#1040).
class DocumentProbe : public YAML::EventHandler {
public:
  bool content = false;
  YAML::Mark start = YAML::Mark::null_mark();

  void OnDocumentStart(const YAML::Mark &mark) override {
    content = false;
    start = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark &, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark &, YAML::anchor_t) override { content = true; }
  void OnScalar(const YAML::Mark &, const std::string &, YAML::anchor_t,
                const std::string &) override {
    content = true;
  }
  void OnSequenceStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content = true;
  }
  void OnMapEnd() override {}
};

/// Whether the text has anything besides blank lines, comments and document
/// markers.
bool hasContent(const std::string &text) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#')
      continue;
    std::string rest = line.substr(first);
    if (rest.rfind("---", 0) == 0 || rest.rfind("...", 0) == 0) {
      size_t after = rest.find_first_not_of(" \t\r", 3);
      if (after == std::string::npos || rest[after] == '#')
        continue;
    }
    return true;
  }
  return false;
}

SourceLoc locOfMark(const std::string &file, const YAML::Mark &m) {
  return m.is_null() ? SourceLoc{file, 0, 0} : SourceLoc{file, m.line + 1, m.column + 1};
}

} // namespace

std::optional<YAML::Node> loadDocument(const std::string &text, const std::string &file,
                                       std::vector<SpecDiagnostic> &diags) {
  YAML::Node root;
  int documents = 0;
  YAML::Mark second = YAML::Mark::null_mark();
  try {
    root = YAML::Load(text);
    // Counting stops at the first empty document and after the second, so a
    // parser stuck on one token cannot loop.
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentProbe probe;
    while (documents < 2 && parser.HandleNextDocument(probe) && probe.content)
      if (++documents == 2)
        second = probe.start;
  } catch (const YAML::Exception &e) {
    diags.push_back({locOfMark(file, e.mark), "", "invalid YAML: " + e.msg});
    return std::nullopt;
  }
  if (root.IsNull()) {
    diags.push_back({{file, 1, 1}, "",
                     (hasContent(text) ? std::string("no YAML value could be read; expected")
                                       : std::string("the document is empty; expected")) +
                         " a mapping of sections; allowed: " + joinNames(topLevelKeys())});
    return std::nullopt;
  }
  if (documents > 1) {
    diags.push_back({locOfMark(file, second), "",
                     "found more than one YAML document; a spec is exactly one document"});
    return std::nullopt;
  }
  return root;
}

SpecResult parseTree(const YAML::Node &root, const std::string &file,
                     const std::vector<AppliedOverride> &overrides,
                     std::vector<SpecDiagnostic> diags) {
  return TreeParser(file, overrides, std::move(diags)).run(root);
}

SpecDiagnostic failureDiagnostic(const std::string &file, const char *what) {
  return {{file, 0, 0}, "", std::string("could not process the spec: ") + what};
}

} // namespace muse::spec
