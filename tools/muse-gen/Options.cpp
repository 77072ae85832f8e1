#include "Options.h"

#include <cerrno>
#include <cstdlib>

namespace musegen {

bool parseArgs(int argc, char **argv, int first, const std::vector<OptionSpec> &allowed,
               Args &out, std::string &error) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() < 2 || a[0] != '-' || a == "-") {
      out.positional.push_back(a);
      continue;
    }
    std::string name = a, value;
    bool hasValue = false;
    if (a.rfind("--", 0) == 0) {
      auto eq = a.find('=');
      name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        hasValue = true;
      }
    } else {
      name = a.substr(1);
    }
    const OptionSpec *spec = nullptr;
    for (const auto &o : allowed)
      if (name == o.name)
        spec = &o;
    if (!spec) {
      error = "unknown option '" + a + "'; allowed:";
      for (const auto &o : allowed)
        error += std::string(" --") + o.name;
      return false;
    }
    if (spec->takesValue && !hasValue) {
      if (i + 1 >= argc) {
        error = "option '--" + name + "' needs a value";
        return false;
      }
      value = argv[++i];
    } else if (!spec->takesValue && hasValue) {
      error = "option '--" + name + "' takes no value";
      return false;
    }
    if (name == "set")
      out.overrides.push_back(value);
    else if (name == "arch")
      out.overrides.push_back("target.arch=" + value);
    else
      out.options[name] = value;
  }
  return true;
}

bool parseInt(const std::string &name, const std::string &text, long long lo, long long hi,
              long long &out, std::string &error) {
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < lo || v > hi) {
    error = "--" + name + ": '" + text + "' is not an integer from " + std::to_string(lo) +
            " to " + std::to_string(hi);
    return false;
  }
  out = v;
  return true;
}

} // namespace musegen
