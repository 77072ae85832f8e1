//===- LaunchPlan.cpp - Workspace layout and launch sequence --------------===//
#include "muse/Target/Cuda/LaunchPlan.h"
#include "muse/Target/Cuda/PlanText.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace muse {

namespace {
constexpr int64_t kBufferAlign = 256; // every buffer starts 256-byte aligned

int64_t alignUp(int64_t v) { return (v + kBufferAlign - 1) / kBufferAlign * kBufferAlign; }

/// A strictly positive decimal integer, nothing else.
bool parsePositive(const std::string &s, int64_t &out) {
  if (s.empty() || s.size() > 18)
    return false;
  for (char c : s)
    if (c < '0' || c > '9')
      return false;
  out = std::strtoll(s.c_str(), nullptr, 10);
  return out >= 1;
}

bool parseNonNegative(const std::string &s, int64_t &out) {
  if (s == "0") {
    out = 0;
    return true;
  }
  return parsePositive(s, out);
}
} // namespace

const char *symName(Sym s) {
  switch (s) {
  case Sym::One: return "1";
  case Sym::N: return "N";
  case Sym::M: return "M";
  case Sym::QHeads: return "B*H";
  case Sym::KHeads: return "B*Hkv";
  }
  return "?";
}

int64_t symValue(Sym s, const Shape &shape) {
  switch (s) {
  case Sym::One: return 1;
  case Sym::N: return shape.N;
  case Sym::M: return shape.M;
  case Sym::QHeads: return shape.B * shape.H;
  case Sym::KHeads: return shape.B * shape.Hkv;
  }
  return 0;
}

std::optional<Sym> parseSym(const std::string &text) {
  for (Sym s : {Sym::One, Sym::N, Sym::M, Sym::QHeads, Sym::KHeads})
    if (text == symName(s))
      return s;
  return std::nullopt;
}

int64_t DimExpr::eval(const Shape &shape) const {
  int64_t v = symValue(sym, shape);
  int64_t d = div < 1 ? 1 : div;
  return (v + d - 1) / d * mul;
}

std::string DimExpr::str() const {
  if (sym == Sym::One)
    return std::to_string(mul); // ceil(1/div) is 1
  std::string base = symName(sym);
  if (div != 1)
    base = "ceil(" + base + "/" + std::to_string(div) + ")";
  if (mul != 1)
    base += "*" + std::to_string(mul);
  return base;
}

bool parseDimExpr(const std::string &text, DimExpr &out, std::string &error) {
  error.clear();
  DimExpr e;
  int64_t n = 0;
  if (parsePositive(text, n)) {
    e.sym = Sym::One;
    e.mul = n;
    out = e;
    return true;
  }
  std::string rest = text;
  if (rest.rfind("ceil(", 0) == 0) {
    size_t close = rest.find(')');
    size_t slash = rest.rfind('/', close);
    if (close == std::string::npos || slash == std::string::npos || slash < 5) {
      error = "malformed dimension '" + text + "': expected ceil(SYM/DIV)";
      return false;
    }
    auto sym = parseSym(rest.substr(5, slash - 5));
    if (!sym || *sym == Sym::One || !parsePositive(rest.substr(slash + 1, close - slash - 1), e.div)) {
      error = "malformed dimension '" + text + "': expected ceil(SYM/DIV) with SYM one of N, M, "
              "B*H, B*Hkv and DIV >= 1";
      return false;
    }
    e.sym = *sym;
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != '*' || !parsePositive(rest.substr(1), e.mul)) {
        error = "malformed dimension '" + text + "': expected '*MUL' after ceil(...)";
        return false;
      }
    }
    out = e;
    return true;
  }
  // "SYM" or "SYM*MUL"; try the longer names first ("B*Hkv" before "B*H").
  for (Sym s : {Sym::KHeads, Sym::QHeads, Sym::N, Sym::M}) {
    std::string name = symName(s);
    if (rest.rfind(name, 0) != 0)
      continue;
    std::string tail = rest.substr(name.size());
    if (tail.empty()) {
      e.sym = s;
      out = e;
      return true;
    }
    if (tail[0] == '*' && parsePositive(tail.substr(1), e.mul)) {
      e.sym = s;
      out = e;
      return true;
    }
  }
  error = "malformed dimension '" + text +
          "': expected an integer >= 1, SYM, SYM*MUL, ceil(SYM/DIV) or ceil(SYM/DIV)*MUL with "
          "SYM one of N, M, B*H, B*Hkv";
  return false;
}

int64_t BufferSpec::bytes(const Shape &shape) const {
  return elemBytes * symValue(heads, shape) * (perN * shape.N + perM * shape.M + fixed);
}

int64_t LaunchPlan::workspaceBytes(const Shape &shape) const {
  int64_t total = 0;
  for (const BufferSpec &b : buffers)
    total += alignUp(b.bytes(shape));
  return total;
}

size_t LaunchPlan::firstTransient() const {
  size_t i = buffers.size();
  while (i > 0 && isTransient(buffers[i - 1].name))
    --i;
  return i;
}

int64_t LaunchPlan::persistentBytes(const Shape &shape) const {
  int64_t total = 0;
  for (size_t i = 0; i < firstTransient(); ++i)
    total += alignUp(buffers[i].bytes(shape));
  return total;
}

int64_t LaunchPlan::backwardWorkspaceBytes(const Shape &shape) const {
  int64_t scratch = 0;
  for (const BufferSpec &b : backwardBuffers)
    scratch += alignUp(b.bytes(shape));
  const int64_t persistent = persistentBytes(shape);
  return persistent + std::max(scratch, workspaceBytes(shape) - persistent);
}

std::vector<int64_t> LaunchPlan::backwardBufferOffsets(const Shape &shape) const {
  std::vector<int64_t> offsets;
  int64_t at = persistentBytes(shape);
  for (const BufferSpec &b : backwardBuffers) {
    offsets.push_back(at);
    at += alignUp(b.bytes(shape));
  }
  return offsets;
}

const char *viewName(LaunchView v) {
  switch (v) {
  case LaunchView::Full: return "full";
  case LaunchView::Level: return "level";
  case LaunchView::Segment: return "segment";
  case LaunchView::Served: return "served";
  }
  return "full";
}

std::vector<int64_t> LaunchPlan::bufferOffsets(const Shape &shape) const {
  std::vector<int64_t> offsets;
  int64_t at = 0;
  for (const BufferSpec &b : buffers) {
    offsets.push_back(at);
    at += alignUp(b.bytes(shape));
  }
  return offsets;
}

// Format, one record a line:
//   muse-launch-plan 1
//   buffer NAME heads=B*H perN=0 perM=0 fixed=4096 elem=4
//   launch KERNEL grid=X,Y,Z block=256 shared=0 comment=free text to the end
//   backward buffer ... / backward launch ...   (the backward plan, same fields)
//   end
std::string LaunchPlan::serialize() const {
  std::ostringstream os;
  os << "muse-launch-plan 1\n";
  auto buffer = [&](const char *prefix, const BufferSpec &b) {
    os << prefix << "buffer " << b.name << " heads=" << symName(b.heads) << " perN=" << b.perN
       << " perM=" << b.perM << " fixed=" << b.fixed << " elem=" << b.elemBytes << "\n";
  };
  auto launch = [&](const char *prefix, const KernelLaunch &l) {
    os << prefix << "launch " << l.kernel << " grid=" << l.grid[0].str() << "," << l.grid[1].str()
       << "," << l.grid[2].str() << " block=" << l.block << " shared=" << l.sharedBytes
       << (l.view == LaunchView::Full ? std::string() : std::string(" view=") + viewName(l.view))
       << " comment=" << l.comment << "\n";
  };
  for (const BufferSpec &b : buffers)
    buffer("", b);
  for (const KernelLaunch &l : launches)
    launch("", l);
  for (const BufferSpec &b : backwardBuffers)
    buffer("backward ", b);
  for (const KernelLaunch &l : backwardLaunches)
    launch("backward ", l);
  os << "end\n";
  return os.str();
}

namespace {
/// Splits "key=value" fields; the field named `restKey` takes the rest of the line.
bool splitFields(const std::string &line, size_t from, const std::string &restKey,
                 std::vector<std::pair<std::string, std::string>> &fields, std::string &error) {
  size_t pos = from;
  while (pos < line.size()) {
    while (pos < line.size() && line[pos] == ' ')
      ++pos;
    if (pos >= line.size())
      break;
    size_t eq = line.find('=', pos);
    if (eq == std::string::npos) {
      error = "expected key=value, found '" + line.substr(pos) + "'";
      return false;
    }
    std::string key = line.substr(pos, eq - pos);
    if (key == restKey) {
      fields.emplace_back(key, line.substr(eq + 1));
      return true;
    }
    size_t end = line.find(' ', eq);
    if (end == std::string::npos)
      end = line.size();
    fields.emplace_back(key, line.substr(eq + 1, end - eq - 1));
    pos = end;
  }
  return true;
}

bool parseBuffer(const std::string &line, BufferSpec &b, std::string &error) {
  size_t nameEnd = line.find(' ', 7);
  b.name = line.substr(7, nameEnd == std::string::npos ? std::string::npos : nameEnd - 7);
  if (b.name.empty()) {
    error = "buffer without a name";
    return false;
  }
  std::vector<std::pair<std::string, std::string>> fields;
  if (nameEnd != std::string::npos && !splitFields(line, nameEnd, "", fields, error))
    return false;
  const char *required[] = {"heads", "perN", "perM", "fixed", "elem"};
  if (fields.size() != 5) {
    error = "buffer '" + b.name + "' needs exactly heads=, perN=, perM=, fixed=, elem=";
    return false;
  }
  for (size_t i = 0; i < 5; ++i) {
    const auto &[key, value] = fields[i];
    if (key != required[i]) {
      error = "buffer '" + b.name + "': expected field '" + required[i] + "', found '" + key + "'";
      return false;
    }
    bool ok = true;
    if (key == "heads") {
      auto s = parseSym(value);
      ok = s && (*s == Sym::QHeads || *s == Sym::KHeads);
      if (ok)
        b.heads = *s;
    } else if (key == "perN") {
      ok = parseNonNegative(value, b.perN);
    } else if (key == "perM") {
      ok = parseNonNegative(value, b.perM);
    } else if (key == "fixed") {
      ok = parseNonNegative(value, b.fixed);
    } else {
      ok = parsePositive(value, b.elemBytes);
    }
    if (!ok) {
      error = "buffer '" + b.name + "': bad " + key + "='" + value +
              (key == "heads" ? "' (allowed: B*H, B*Hkv)" : "' (expected a non-negative integer)");
      return false;
    }
  }
  return true;
}

bool parseLaunch(const std::string &line, KernelLaunch &l, std::string &error) {
  size_t nameEnd = line.find(' ', 7);
  if (nameEnd == std::string::npos) {
    error = "launch needs grid=, block=, shared=, comment=";
    return false;
  }
  l.kernel = line.substr(7, nameEnd - 7);
  std::vector<std::pair<std::string, std::string>> fields;
  if (!splitFields(line, nameEnd, "comment", fields, error))
    return false;
  const char *required[] = {"grid", "block", "shared", "comment"};
  // An optional view= (causal plans) comes between shared= and comment=.
  if (fields.size() == 5 && fields[3].first == "view") {
    const std::string &value = fields[3].second;
    bool known = false;
    for (LaunchView v : {LaunchView::Full, LaunchView::Level, LaunchView::Segment, LaunchView::Served})
      if (value == viewName(v)) {
        l.view = v;
        known = true;
      }
    if (!known) {
      error = "launch '" + l.kernel + "': bad view='" + value +
              "' (allowed: full, level, segment, served)";
      return false;
    }
    fields.erase(fields.begin() + 3);
  }
  if (fields.size() != 4) {
    error = "launch '" + l.kernel + "' needs exactly grid=, block=, shared=, [view=,] comment=";
    return false;
  }
  for (size_t i = 0; i < 4; ++i) {
    const auto &[key, value] = fields[i];
    if (key != required[i]) {
      error = "launch '" + l.kernel + "': expected field '" + required[i] + "', found '" + key + "'";
      return false;
    }
    if (key == "grid") {
      size_t c1 = value.find(','), c2 = c1 == std::string::npos ? c1 : value.find(',', c1 + 1);
      if (c2 == std::string::npos) {
        error = "launch '" + l.kernel + "': grid needs three dimensions X,Y,Z, found '" + value + "'";
        return false;
      }
      std::string parts[3] = {value.substr(0, c1), value.substr(c1 + 1, c2 - c1 - 1),
                              value.substr(c2 + 1)};
      for (int d = 0; d < 3; ++d)
        if (!parseDimExpr(parts[d], l.grid[d], error)) {
          error = "launch '" + l.kernel + "': " + error;
          return false;
        }
    } else if (key == "block" || key == "shared") {
      int64_t v = 0;
      bool ok = key == "block" ? parsePositive(value, v) : parseNonNegative(value, v);
      if (!ok || v > (1 << 30)) {
        error = "launch '" + l.kernel + "': bad " + key + "='" + value + "'";
        return false;
      }
      (key == "block" ? l.block : l.sharedBytes) = static_cast<int>(v);
    } else {
      l.comment = value;
    }
  }
  return true;
}
} // namespace

bool LaunchPlan::deserialize(const std::string &text, LaunchPlan &out, std::string &error) {
  LaunchPlan plan;
  std::istringstream is(text);
  std::string line;
  int lineNo = 0;
  bool sawHeader = false, sawEnd = false;
  while (std::getline(is, line)) {
    ++lineNo;
    std::string where = "launch plan line " + std::to_string(lineNo) + ": ";
    if (sawEnd) {
      if (!line.empty()) {
        error = where + "text after 'end'";
        return false;
      }
      continue;
    }
    if (!sawHeader) {
      if (line != "muse-launch-plan 1") {
        error = where + "expected the header 'muse-launch-plan 1'";
        return false;
      }
      sawHeader = true;
      continue;
    }
    std::string why;
    // "backward buffer ..." and "backward launch ...": the backward plan.
    const bool backward = line.rfind("backward ", 0) == 0;
    if (backward)
      line = line.substr(9);
    if (backward && line.rfind("buffer ", 0) != 0 && line.rfind("launch ", 0) != 0) {
      error = where + "expected 'backward buffer' or 'backward launch', found 'backward " + line +
              "'";
      return false;
    }
    if (line == "end") {
      sawEnd = true;
    } else if (line.rfind("buffer ", 0) == 0) {
      BufferSpec b;
      if (!parseBuffer(line, b, why)) {
        error = where + why;
        return false;
      }
      (backward ? plan.backwardBuffers : plan.buffers).push_back(b);
    } else if (line.rfind("launch ", 0) == 0) {
      KernelLaunch l;
      if (!parseLaunch(line, l, why)) {
        error = where + why;
        return false;
      }
      (backward ? plan.backwardLaunches : plan.launches).push_back(l);
    } else {
      error = where + "expected 'buffer', 'launch' or 'end', found '" + line + "'";
      return false;
    }
  }
  if (!sawEnd) {
    error = sawHeader ? "launch plan: missing 'end' (truncated?)" : "launch plan: empty text";
    return false;
  }
  out = std::move(plan);
  error.clear();
  return true;
}

} // namespace muse
