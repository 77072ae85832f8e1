//===- FieldTable.h - Every spec field and what it allows -----------------===//
//
// The one table of sections, fields and allowed values. Parsing, validation,
// error messages, the canonical printer and `describeAllowed` all read it, so
// a rule and its message can never disagree.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_SPEC_FIELDTABLE_H
#define MUSE_LIB_SPEC_FIELDTABLE_H

#include "muse/Spec/Spec.h"

#include <optional>
#include <string>
#include <vector>

namespace muse::spec {

enum class FieldKind { Name, Bool, Int, DType, Scale, Arch };

/// How an integer field is constrained.
enum class IntDomain { Range, OneOf, PowerOfTwo };

/// One allowed integer with an optional word on what it means ("auto").
struct Choice {
  int value;
  const char *label; // may be null
};

struct FieldRule {
  const char *section; // "" for top-level fields (only `name`)
  const char *key;
  FieldKind kind;
  // Integer fields only.
  int Spec::*intMember = nullptr;
  IntDomain domain = IntDomain::Range;
  int lo = 0, hi = 0;          // Range and PowerOfTwo bounds, inclusive
  std::vector<Choice> choices; // OneOf
  const char *note = nullptr;  // appended to the allowed text

  /// "clustering.query_clusters", or "name" for a top-level field.
  std::string path() const;
  /// What the field allows, e.g. "an integer from 1 to 1024".
  std::string allowed() const;
  /// Integer fields: whether `v` is allowed.
  bool accepts(long long v) const;
  /// Integer fields: why `v` is not allowed, e.g. "0 is out of range".
  std::string rejection(long long v) const;
};

/// All fields, in canonical order.
const std::vector<FieldRule> &fieldRules();
/// Top-level keys in canonical order: "name" and the section names.
const std::vector<std::string> &topLevelKeys();
bool isSection(const std::string &name);
/// Field names of one section, in canonical order.
std::vector<std::string> fieldsOf(const std::string &section);
const FieldRule *findRule(const std::string &section, const std::string &key);
/// The first rule with this key in any section (for "belongs in" hints).
const FieldRule *findRuleAnywhere(const std::string &key);

std::optional<DType> dtypeFromName(const std::string &name);
std::vector<std::string> dtypeSpellings(); // canonical names and aliases
std::string allowedDTypes();

bool isSupportedArch(const std::string &arch);
std::string allowedArchs();

bool isValidName(const std::string &name);
std::string allowedNames();

std::string allowedScales();

/// "a, b, c" (the list joined with ", ").
std::string joinNames(const std::vector<std::string> &names);
/// The unique candidate within edit distance 2 of `word` (case-insensitive),
/// or "" when there is none or the best is tied.
std::string nearestName(const std::string &word, const std::vector<std::string> &candidates);

} // namespace muse::spec

#endif
