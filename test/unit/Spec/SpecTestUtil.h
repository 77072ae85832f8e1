//===- SpecTestUtil.h - Helpers for the spec parser tests -----------------===//
#ifndef MUSE_TEST_SPEC_SPECTESTUTIL_H
#define MUSE_TEST_SPEC_SPECTESTUTIL_H

#include "muse/Spec/Spec.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace muse::test {

/// The diagnostics of `text` as "file:line:col: error: field: message".
inline std::vector<std::string> errorsOf(const std::string &text,
                                         const std::vector<std::string> &overrides = {}) {
  SpecResult r = parseSpecWithOverrides(text, "t.yaml", overrides);
  std::vector<std::string> out;
  for (const SpecDiagnostic &d : r.diagnostics)
    out.push_back(d.str());
  return out;
}

/// Parses text that must be valid; a failure is reported with every error.
inline Spec parseOk(const std::string &text) {
  SpecResult r = parseSpec(text, "t.yaml");
  std::string all;
  for (const SpecDiagnostic &d : r.diagnostics)
    all += d.str() + "\n";
  EXPECT_TRUE(r.ok()) << "unexpected errors for:\n" << text << "\n" << all;
  return r.ok() ? *r.spec : Spec();
}

} // namespace muse::test

#endif
