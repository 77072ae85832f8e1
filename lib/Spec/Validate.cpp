//===- Validate.cpp - Value rules shared by the parser and validateSpec ---===//

#include "Validate.h"

#include "FieldTable.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace muse::spec {

std::string formatDouble(double v) {
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  return buf;
}

namespace {

std::string suggestion(const std::string &word, const std::vector<std::string> &candidates) {
  std::string near = nearestName(word, candidates);
  return near.empty() ? std::string() : "; did you mean '" + near + "'?";
}

} // namespace

void checkValues(const Spec &s, const SkipFn &skip, const ReportFn &report) {
  for (const FieldRule &r : fieldRules()) {
    std::string path = r.path();
    if (skip(path))
      continue;
    switch (r.kind) {
    case FieldKind::Name:
      if (!isValidName(s.name))
        report(path, "'" + s.name + "' is not a valid name; allowed: " + r.allowed());
      break;
    case FieldKind::Int: {
      int v = s.*r.intMember;
      if (!r.accepts(v))
        report(path, r.rejection(v) + "; allowed: " + r.allowed());
      break;
    }
    case FieldKind::Scale:
      if (s.scale && !(std::isfinite(*s.scale) && *s.scale > 0))
        report(path, formatDouble(*s.scale) +
                         (std::isfinite(*s.scale) ? " is out of range" : " is not finite") +
                         "; allowed: " + r.allowed());
      break;
    case FieldKind::Arch:
      if (!isSupportedArch(s.arch))
        report(path, "'" + s.arch + "' is not a supported architecture; allowed: " + r.allowed() +
                         suggestion(s.arch, supportedArchs()));
      break;
    case FieldKind::Bool:
    case FieldKind::DType:
      break; // every value of the C++ type is valid
    }
  }

  const FieldRule *near = findRule("multipole", "near_clusters");
  const FieldRule *keys = findRule("clustering", "key_clusters");
  if (!skip(near->path()) && !skip(keys->path()) && near->accepts(s.nearClusters) &&
      keys->accepts(s.keyClusters) && s.nearClusters > s.keyClusters)
    report(near->path(), std::to_string(s.nearClusters) +
                             " is more than clustering.key_clusters (" +
                             std::to_string(s.keyClusters) +
                             "); allowed: an integer from 0 to clustering.key_clusters");
}

} // namespace muse::spec
