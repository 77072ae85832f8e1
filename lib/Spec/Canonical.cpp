//===- Canonical.cpp - The one text form of a Spec ------------------------===//
//
// Part of the compiler cache key: the output depends only on the Spec's
// values, in table order, with no whitespace or number-format freedom.
//
//===----------------------------------------------------------------------===//

#include "FieldTable.h"
#include "Validate.h"

namespace muse {

namespace {

/// Single-quoted YAML scalar; quoting keeps names such as "null" or "true"
/// strings.
std::string quote(const std::string &s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string valueText(const spec::FieldRule &r, const Spec &s) {
  switch (r.kind) {
  case spec::FieldKind::Name:
    return quote(s.name);
  case spec::FieldKind::Bool:
    return s.causal ? "true" : "false";
  case spec::FieldKind::Int:
    return std::to_string(s.*r.intMember);
  case spec::FieldKind::DType:
    return dtypeName(s.dtype);
  case spec::FieldKind::Scale:
    return s.scale ? spec::formatDouble(*s.scale) : "auto";
  case spec::FieldKind::Arch:
    return spec::isSupportedArch(s.arch) ? s.arch : quote(s.arch);
  }
  return "";
}

} // namespace

std::string canonicalSpec(const Spec &s) {
  std::string out, section;
  for (const spec::FieldRule &r : spec::fieldRules()) {
    // The causal fields mean nothing without causal masking; leaving them out
    // keeps one cache entry per distinct kernel.
    if (!s.causal && std::string(r.section) == "causal")
      continue;
    if (!*r.section) {
      out += std::string(r.key) + ": " + valueText(r, s) + "\n";
      continue;
    }
    if (section != r.section) {
      section = r.section;
      out += section + ":\n";
    }
    out += std::string("  ") + r.key + ": " + valueText(r, s) + "\n";
  }
  return out;
}

} // namespace muse
