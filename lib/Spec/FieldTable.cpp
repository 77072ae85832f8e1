//===- FieldTable.cpp - Every spec field and what it allows ---------------===//

#include "FieldTable.h"

#include <algorithm>
#include <cctype>

namespace muse::spec {

namespace {

const char *const kAuto = "auto: chosen by the compiler";

FieldRule intRange(const char *section, const char *key, int Spec::*m, int lo, int hi,
                   const char *note = nullptr) {
  FieldRule r{section, key, FieldKind::Int};
  r.intMember = m;
  r.domain = IntDomain::Range;
  r.lo = lo;
  r.hi = hi;
  r.note = note;
  return r;
}

FieldRule intOneOf(const char *section, const char *key, int Spec::*m, std::vector<Choice> choices,
                   const char *note = nullptr) {
  FieldRule r{section, key, FieldKind::Int};
  r.intMember = m;
  r.domain = IntDomain::OneOf;
  r.choices = std::move(choices);
  r.note = note;
  return r;
}

FieldRule intPowerOfTwo(const char *section, const char *key, int Spec::*m, int lo, int hi) {
  FieldRule r{section, key, FieldKind::Int};
  r.intMember = m;
  r.domain = IntDomain::PowerOfTwo;
  r.lo = lo;
  r.hi = hi;
  return r;
}

FieldRule other(const char *section, const char *key, FieldKind kind) {
  return FieldRule{section, key, kind};
}

struct DTypeName {
  const char *name;
  DType type;
};
// Canonical names first; the rest are aliases accepted on input.
const DTypeName kDTypes[] = {
    {"bf16", DType::BF16},   {"f16", DType::F16},      {"f32", DType::F32},
    {"bfloat16", DType::BF16}, {"fp16", DType::F16},   {"float16", DType::F16},
    {"half", DType::F16},    {"fp32", DType::F32},     {"float32", DType::F32},
    {"float", DType::F32},
};

// "a" variants exist only where NVIDIA ships architecture-specific features
// that the kernels may use (wgmma on sm_90a, tcgen05 on sm_100a).
const char *const kArchs[] = {"sm_80", "sm_86",  "sm_87",   "sm_89",  "sm_90",
                              "sm_90a", "sm_100", "sm_100a", "sm_103", "sm_120"};

int editDistance(const std::string &a, const std::string &b) {
  std::vector<int> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    prev[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int sub = prev[j - 1] + (std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                                       std::tolower(static_cast<unsigned char>(b[j - 1]))
                                   ? 0
                                   : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

} // namespace

const std::vector<FieldRule> &fieldRules() {
  static const std::vector<FieldRule> rules = {
      other("", "name", FieldKind::Name),
      other("attention", "causal", FieldKind::Bool),
      intOneOf("attention", "head_dim", &Spec::headDim, {{64, nullptr}, {128, nullptr}}),
      intOneOf("attention", "value_dim", &Spec::valueDim, {{64, nullptr}, {128, nullptr}},
               "defaults to attention.head_dim"),
      other("attention", "dtype", FieldKind::DType),
      other("attention", "scale", FieldKind::Scale),
      intRange("attention", "kv_heads_ratio", &Spec::kvHeadsRatio, 1, 64),
      intRange("clustering", "query_clusters", &Spec::queryClusters, 1, 1024),
      intRange("clustering", "key_clusters", &Spec::keyClusters, 1, 512),
      intRange("clustering", "kmeans_iters", &Spec::kmeansIters, 1, 32),
      intOneOf("multipole", "order", &Spec::order, {{0, "monopole"}, {1, "dipole"}},
               "higher orders are not implemented"),
      intRange("multipole", "near_clusters", &Spec::nearClusters, 0, 512,
               "at most clustering.key_clusters"),
      intPowerOfTwo("causal", "block_size", &Spec::blockSize, 16, 4096),
      intRange("causal", "window_blocks", &Spec::windowBlocks, 1, 64),
      intOneOf("tiling", "block_q", &Spec::blockQ,
               {{0, kAuto}, {16, nullptr}, {32, nullptr}, {64, nullptr}, {128, nullptr}}),
      intOneOf("tiling", "block_k", &Spec::blockK,
               {{0, kAuto}, {16, nullptr}, {32, nullptr}, {64, nullptr}, {128, nullptr}}),
      intOneOf("tiling", "warps", &Spec::warps,
               {{0, kAuto}, {1, nullptr}, {2, nullptr}, {4, nullptr}, {8, nullptr}}),
      other("target", "arch", FieldKind::Arch),
  };
  return rules;
}

const std::vector<std::string> &topLevelKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const FieldRule &r : fieldRules()) {
      std::string name = *r.section ? r.section : r.key;
      if (std::find(k.begin(), k.end(), name) == k.end())
        k.push_back(name);
    }
    return k;
  }();
  return keys;
}

bool isSection(const std::string &name) {
  for (const FieldRule &r : fieldRules())
    if (name == r.section && *r.section)
      return true;
  return false;
}

std::vector<std::string> fieldsOf(const std::string &section) {
  std::vector<std::string> out;
  for (const FieldRule &r : fieldRules())
    if (section == r.section)
      out.push_back(r.key);
  return out;
}

const FieldRule *findRule(const std::string &section, const std::string &key) {
  for (const FieldRule &r : fieldRules())
    if (section == r.section && key == r.key)
      return &r;
  return nullptr;
}

const FieldRule *findRuleAnywhere(const std::string &key) {
  for (const FieldRule &r : fieldRules())
    if (key == r.key)
      return &r;
  return nullptr;
}

std::string FieldRule::path() const {
  return *section ? std::string(section) + "." + key : std::string(key);
}

std::string FieldRule::allowed() const {
  std::string text;
  switch (kind) {
  case FieldKind::Name:
    return allowedNames();
  case FieldKind::Bool:
    return "true or false";
  case FieldKind::DType:
    return allowedDTypes();
  case FieldKind::Scale:
    return allowedScales();
  case FieldKind::Arch:
    return allowedArchs();
  case FieldKind::Int:
    break;
  }
  switch (domain) {
  case IntDomain::Range:
    text = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    break;
  case IntDomain::PowerOfTwo:
    text = "a power of two from " + std::to_string(lo) + " to " + std::to_string(hi);
    break;
  case IntDomain::OneOf:
    text = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) {
      if (i)
        text += ", ";
      text += std::to_string(choices[i].value);
      if (choices[i].label)
        text += std::string(" (") + choices[i].label + ")";
    }
    break;
  }
  if (note)
    text += std::string("; ") + note;
  return text;
}

bool FieldRule::accepts(long long v) const {
  switch (domain) {
  case IntDomain::Range:
    return v >= lo && v <= hi;
  case IntDomain::PowerOfTwo:
    return v >= lo && v <= hi && (v & (v - 1)) == 0;
  case IntDomain::OneOf:
    return std::any_of(choices.begin(), choices.end(),
                       [v](const Choice &c) { return c.value == v; });
  }
  return false;
}

std::string FieldRule::rejection(long long v) const {
  std::string value = std::to_string(v);
  if (domain == IntDomain::OneOf)
    return value + " is not supported";
  if (domain == IntDomain::PowerOfTwo && v >= lo && v <= hi)
    return value + " is not a power of two";
  return value + " is out of range";
}

std::optional<DType> dtypeFromName(const std::string &name) {
  for (const DTypeName &d : kDTypes)
    if (name == d.name)
      return d.type;
  return std::nullopt;
}

std::vector<std::string> dtypeSpellings() {
  std::vector<std::string> out;
  for (const DTypeName &d : kDTypes)
    out.push_back(d.name);
  return out;
}

std::string allowedDTypes() {
  return "bf16 (or bfloat16), f16 (or fp16, float16, half), f32 (or fp32, float32, float)";
}

bool isSupportedArch(const std::string &arch) {
  const auto &archs = supportedArchs();
  return std::find(archs.begin(), archs.end(), arch) != archs.end();
}

std::string allowedArchs() { return "one of " + joinNames(supportedArchs()); }

bool isValidName(const std::string &name) {
  if (name.empty() || name.size() > 64)
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

std::string allowedNames() {
  return "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'";
}

std::string allowedScales() { return "auto (1/sqrt(head_dim)) or a finite number greater than 0"; }

std::string joinNames(const std::vector<std::string> &names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i ? ", " : "") + names[i];
  return out;
}

std::string nearestName(const std::string &word, const std::vector<std::string> &candidates) {
  int best = 3;
  std::string found;
  bool tied = false;
  for (const std::string &c : candidates) {
    int d = editDistance(word, c);
    if (d < best) {
      best = d;
      found = c;
      tied = false;
    } else if (d == best && c != found) {
      tied = true;
    }
  }
  return tied ? std::string() : found;
}

} // namespace muse::spec

namespace muse {

const std::vector<std::string> &supportedArchs() {
  static const std::vector<std::string> archs(std::begin(spec::kArchs), std::end(spec::kArchs));
  return archs;
}

} // namespace muse
