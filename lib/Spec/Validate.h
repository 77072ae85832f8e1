//===- Validate.h - Value rules shared by the parser and validateSpec -----===//
//
// Checks the values of a Spec against the field table. The parser calls it
// after reading the YAML (so messages point at the YAML nodes); validateSpec
// calls it on a Spec built in code (no locations).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_LIB_SPEC_VALIDATE_H
#define MUSE_LIB_SPEC_VALIDATE_H

#include "muse/Spec/Spec.h"

#include <functional>
#include <string>

namespace muse::spec {

/// Receives one error: the dotted field path and the message.
using ReportFn = std::function<void(const std::string &path, const std::string &message)>;
/// Says whether a field must not be checked (its value was already rejected).
using SkipFn = std::function<bool(const std::string &path)>;

void checkValues(const Spec &spec, const SkipFn &skip, const ReportFn &report);

/// The shortest decimal text that reads back as exactly `v` (at most 17
/// significant digits), e.g. "0.125", "0.1", "1e-05".
std::string formatDouble(double v);

} // namespace muse::spec

#endif
