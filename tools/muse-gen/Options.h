//===- Options.h - muse-gen's command line --------------------------------===//
#ifndef MUSE_TOOLS_MUSEGEN_OPTIONS_H
#define MUSE_TOOLS_MUSEGEN_OPTIONS_H

#include <map>
#include <string>
#include <vector>

namespace musegen {

/// One parsed command line: positional arguments, repeated `--set` overrides,
/// and the other `--name[=value]` options of the subcommand.
struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> overrides; // --set section.field=value, --arch
  std::map<std::string, std::string> options;
  bool has(const std::string &name) const { return options.count(name) != 0; }
  std::string get(const std::string &name, const std::string &fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
};

/// An option a subcommand accepts: its name, whether it takes a value, help.
struct OptionSpec {
  const char *name;
  bool takesValue;
  const char *help;
};

/// Parses argv[first..] against `allowed`; on error `error` names the
/// argument and lists what is allowed.
bool parseArgs(int argc, char **argv, int first, const std::vector<OptionSpec> &allowed,
               Args &out, std::string &error);

/// Parses an integer option value; `error` explains a bad one.
bool parseInt(const std::string &name, const std::string &text, long long lo, long long hi,
              long long &out, std::string &error);

} // namespace musegen

#endif
