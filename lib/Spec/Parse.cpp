//===- Parse.cpp - The public parse and validate entry points -------------===//

#include "ParseTree.h"
#include "Validate.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace muse {

SpecResult parseSpec(const std::string &yamlText, const std::string &file) {
  return parseSpecWithOverrides(yamlText, file, {});
}

SpecResult parseSpecFile(const std::string &path) {
  auto cannotRead = [&](int err) {
    SpecResult r;
    r.diagnostics.push_back(
        {{path, 0, 0}, "", "cannot read '" + path + "': " + std::strerror(err)});
    return r;
  };
  std::string text;
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return cannotRead(errno);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  // Linux opens a directory for reading; the read then fails with EISDIR.
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err)
    return cannotRead(err);
  return parseSpec(text, path);
}

std::vector<SpecDiagnostic> validateSpec(const Spec &spec) {
  std::vector<SpecDiagnostic> diags;
  try {
    spec::checkValues(
        spec, [](const std::string &) { return false; },
        [&](const std::string &path, const std::string &msg) {
          diags.push_back({SourceLoc{"", 0, 0}, path, msg});
        });
  } catch (const std::exception &e) {
    diags.push_back(spec::failureDiagnostic("", e.what()));
  }
  return diags;
}

} // namespace muse
