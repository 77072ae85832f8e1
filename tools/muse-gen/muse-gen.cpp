//===- muse-gen.cpp - The muse compiler driver ----------------------------===//
//
// muse-gen reads a spec and runs the pipeline as far as asked:
//   check   validate only                      (Spec: lib/Spec)
//   emit    print one stage of the lowering    (compileSpec: lib/Compiler)
//   build   NVRTC-compile into the cache       (Engine::compile: lib/Runtime)
//   verify  run on a GPU, check the numbers    (check::verifyForward: lib/Check)
//   cache   inspect the kernel cache           (DiskCache: lib/Runtime)
//   env     versions, devices, cache location
// Every failure prints a message and exits with status 1.
//
//===----------------------------------------------------------------------===//
#include "Options.h"

#include "muse/Check/Verify.h"
#include "muse/Compiler/Compiler.h"
#include "muse/Runtime/Cache.h"
#include "muse/Runtime/CudaDriver.h"
#include "muse/Runtime/Engine.h"
#include "muse/Runtime/Nvrtc.h"
#include "muse/Spec/Spec.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

using namespace muse;
using namespace musegen;

namespace {

const char *kUsage = R"(muse-gen: compile MuSe attention specs to CUDA kernels

usage: muse-gen <command> [options]

commands:
  check SPEC...        validate specs (no GPU, no NVRTC)
  emit SPEC --emit=K   print a stage: mlir, lowered, cuda, host, ptx, cubin
  build SPEC...        compile to a cubin and store it in the cache
  verify SPEC          on a GPU: run on random data, compare with the CPU
                       reference and exact attention
  cache ls|clear|verify|prune
                       list, empty, checksum or shrink the kernel cache
  env                  versions, GPUs, cache location, supported features

'muse-gen <command> --help' describes a command's options.
)";

int fail(const std::string &message) {
  std::cerr << "muse-gen: error: " << message << "\n";
  return 1;
}

const OptionSpec kSet{"set", true, "override a spec field: --set clustering.query_clusters=32"};
const OptionSpec kArch{"arch", true, "target architecture, e.g. sm_90 (same as --set target.arch=)"};
const OptionSpec kHelp{"help", false, "this help"};

void printHelp(const char *synopsis, const char *what, const std::vector<OptionSpec> &opts) {
  std::cout << "usage: muse-gen " << synopsis << "\n\n" << what << "\n\noptions:\n";
  for (const auto &o : opts)
    std::printf("  --%-18s %s\n", (std::string(o.name) + (o.takesValue ? "=X" : "")).c_str(),
                o.help);
}

/// Parses the spec file with the command line's overrides; prints every
/// diagnostic. Returns false on any error.
bool loadSpec(const std::string &path, const Args &args, Spec &spec) {
  std::string text;
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::cerr << path << ": error: cannot read the spec file: " << std::strerror(errno) << "\n";
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  SpecResult r = parseSpecWithOverrides(text, path == "-" ? "<stdin>" : path, args.overrides);
  for (const auto &d : r.diagnostics)
    std::cerr << d.str() << "\n";
  if (!r.ok())
    return false;
  spec = *r.spec;
  return true;
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// failure never leaves a half-written file; "-" or empty is stdout.
bool writeOutput(const std::string &path, const std::string &bytes, std::string &error) {
  if (path.empty() || path == "-") {
    std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::cout.flush();
    return true;
  }
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      error = "cannot write '" + path + "': " + std::strerror(errno);
      return false;
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      error = "cannot write '" + path + "'";
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot rename onto '" + path + "': " + std::strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

int cmdCheck(const Args &args) {
  if (args.positional.empty())
    return fail("check needs at least one spec file (see muse-gen check --help)");
  bool ok = true;
  for (const auto &path : args.positional) {
    Spec spec;
    if (!loadSpec(path, args, spec)) {
      ok = false;
      continue;
    }
    if (args.has("canonical"))
      std::cout << canonicalSpec(spec);
    else
      std::cout << path << ": ok (" << spec.name << ")\n";
  }
  return ok ? 0 : 1;
}

int cmdEmit(const Args &args) {
  std::string err;
  if (args.positional.size() != 1)
    return fail("emit needs exactly one spec file (see muse-gen emit --help)");
  std::string kind = args.get("emit");
  static const char *kinds[] = {"mlir", "lowered", "cuda", "host", "ptx", "cubin"};
  bool known = false;
  for (const char *k : kinds)
    known = known || kind == k;
  if (!known)
    return fail("--emit='" + kind + "' is not a stage; allowed: mlir, lowered, cuda, host, ptx, cubin");
  std::string out = args.get("o");
  if (kind == "cubin" && (out.empty() || out == "-") && isatty(STDOUT_FILENO))
    return fail("--emit=cubin writes binary data: give -o FILE or redirect standard output");

  Spec spec;
  if (!loadSpec(args.positional[0], args, spec))
    return 1;
  std::string text;
  if (kind == "ptx" || kind == "cubin") {
    Engine engine;
    Status st;
    if (kind == "ptx") {
      st = engine.ptx(spec, text);
    } else {
      auto compiled = engine.compile(spec, st);
      if (compiled)
        text = compiled->cubin;
    }
    if (!st.ok())
      return fail(st.message);
  } else {
    CompileOutput c = compileSpec(spec);
    if (!c.ok) {
      for (const auto &e : c.errors)
        std::cerr << e << "\n";
      return 1;
    }
    text = kind == "mlir"      ? c.mlir
           : kind == "lowered" ? c.lowered
           : kind == "cuda"    ? c.cudaSource
                               : c.hostSource;
  }
  if (!writeOutput(out, text, err))
    return fail(err);
  return 0;
}

int cmdBuild(const Args &args) {
  if (args.positional.empty())
    return fail("build needs at least one spec file (see muse-gen build --help)");
  Engine engine;
  bool ok = true;
  for (const auto &path : args.positional) {
    Spec spec;
    if (!loadSpec(path, args, spec)) {
      ok = false;
      continue;
    }
    Status st;
    auto compiled = engine.compile(spec, st);
    if (!compiled) {
      std::cerr << path << ": error: " << st.message << "\n";
      ok = false;
      continue;
    }
    std::cout << path << ": " << spec.name << " " << spec.arch << " "
              << (compiled->fromDiskCache ? "loaded from cache" : "compiled") << ", "
              << compiled->cubin.size() << " bytes of cubin, " << compiled->plan.launches.size()
              << " launches, key " << compiled->key.substr(0, 16) << "\n";
    if (args.has("resource-usage"))
      std::cout << compiled->resourceUsage;
  }
  if (!engine.cache().enabled())
    std::cout << "note: the kernel cache is disabled; nothing was stored\n";
  return ok ? 0 : 1;
}

int cmdVerify(const Args &args) {
  std::string err;
  if (args.positional.size() != 1)
    return fail("verify needs exactly one spec file (see muse-gen verify --help)");
  Spec spec;
  if (!loadSpec(args.positional[0], args, spec))
    return 1;
  long long B = 1, H = 2LL * spec.kvHeadsRatio, N = 2000, M = -1, seed = 0, runs = 0;
  if ((args.has("batch") && !parseInt("batch", args.get("batch"), 1, 65535, B, err)) ||
      (args.has("heads") && !parseInt("heads", args.get("heads"), 1, 65535, H, err)) ||
      (args.has("seq") && !parseInt("seq", args.get("seq"), 1, 1LL << 31, N, err)) ||
      (args.has("kv-seq") && !parseInt("kv-seq", args.get("kv-seq"), 1, 1LL << 31, M, err)) ||
      (args.has("seed") && !parseInt("seed", args.get("seed"), 1, (1LL << 62), seed, err)) ||
      (args.has("timed-runs") && !parseInt("timed-runs", args.get("timed-runs"), 1, 1000, runs, err)))
    return fail(err);
  if (H % spec.kvHeadsRatio != 0)
    return fail("--heads=" + std::to_string(H) + " is not a multiple of kv_heads_ratio " +
                std::to_string(spec.kvHeadsRatio));
  check::VerifyOptions opt;
  opt.shape = {B, H, H / spec.kvHeadsRatio, N, M < 0 ? N : M};
  opt.seed = static_cast<uint64_t>(seed);
  opt.timedRuns = static_cast<int>(runs);
  if (args.has("well-separated")) {
    opt.inputs = check::InputKind::WellSeparated;
    opt.comparePartitions = true;
  }
  Engine engine;
  if (args.has("backward")) {
    check::BackwardReport bwd;
    Status st = check::verifyBackward(engine, spec, opt, /*withDLse=*/true, bwd);
    if (!st.ok())
      return fail(st.message);
    double tol = check::referenceTolerance(spec);
    double worst = std::max({bwd.dqRelL2, bwd.dkRelL2, bwd.dvRelL2});
    std::cout << spec.name << " backward (" << dtypeName(spec.dtype) << ", order " << spec.order
              << ", clusters " << spec.queryClusters << "/" << spec.keyClusters << ", near "
              << spec.nearClusters << ")\n"
              << bwd.str();
    bool ok = bwd.outputsFinite && bwd.deterministic && worst < tol &&
              (!bwd.causalChecked || bwd.causal);
    std::cout << (ok ? "PASS" : "FAIL") << ": worst gradient rel L2 vs reference " << worst
              << " (tolerance " << tol << ")\n";
    return ok ? 0 : 1;
  }
  check::VerifyReport report;
  Status st = check::verifyForward(engine, spec, opt, report);
  if (!st.ok())
    return fail(st.message);
  double tol = check::referenceTolerance(spec);
  std::cout << spec.name << " (" << dtypeName(spec.dtype) << ", order " << spec.order
            << ", clusters " << spec.queryClusters << "/" << spec.keyClusters << ", near "
            << spec.nearClusters << ")\n"
            << report.str();
  bool ok = report.outputsFinite && report.relL2VsReference < tol &&
            (!opt.comparePartitions ||
             (report.queryAssignMismatches == 0 && report.keyAssignMismatches == 0));
  std::cout << (ok ? "PASS" : "FAIL") << ": rel L2 vs reference " << report.relL2VsReference
            << " (tolerance " << tol << ")\n";
  return ok ? 0 : 1;
}

std::string formatTime(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&tt));
  return buf;
}

int cmdCache(const Args &args) {
  if (args.positional.size() != 1)
    return fail("cache needs one of: ls, clear, verify, prune (see muse-gen cache --help)");
  DiskCache cache(CacheConfig::fromEnvironment());
  const std::string &what = args.positional[0];
  if (cache.config().dir.empty())
    return fail("no cache directory: set MUSE_CACHE_DIR, XDG_CACHE_HOME or HOME");
  if (what == "ls" || what == "verify") {
    std::vector<CacheEntryInfo> entries;
    Status st = what == "ls" ? cache.list(entries) : cache.verify(entries);
    if (!st.ok())
      return fail(st.message);
    int bad = 0;
    std::cout << "cache: " << cache.config().dir << " (" << entries.size() << " entries, "
              << cache.totalBytes() << " bytes)\n";
    for (const auto &e : entries) {
      std::printf("%s  %-24s %-7s %9lld B  %s%s%s\n", e.key.substr(0, 16).c_str(),
                  e.specName.c_str(), e.arch.c_str(), static_cast<long long>(e.bytes),
                  formatTime(e.created).c_str(), e.valid ? "" : "  CORRUPT: ",
                  e.valid ? "" : e.problem.c_str());
      bad += !e.valid;
    }
    if (what == "verify")
      std::cout << (bad ? "cache: " + std::to_string(bad) + " corrupt entries\n"
                        : std::string("cache: every entry checks out\n"));
    return bad ? 1 : 0;
  }
  if (what == "clear") {
    int64_t removed = 0;
    Status st = cache.clear(removed);
    if (!st.ok())
      return fail(st.message);
    std::cout << "cache: removed " << removed << " entries from " << cache.config().dir << "\n";
    return 0;
  }
  if (what == "prune") {
    int64_t limit = cache.config().maxBytes;
    if (args.has("max-bytes")) {
      if (!parseByteSize(args.get("max-bytes"), limit))
        return fail("--max-bytes: '" + args.get("max-bytes") +
                    "' is not a size in bytes (N, or N with a K, M or G suffix)");
    } else if (limit <= 0) {
      return fail("cache prune needs --max-bytes N or MUSE_CACHE_MAX_BYTES");
    }
    int64_t removed = 0;
    Status st = cache.prune(limit, removed);
    if (!st.ok())
      return fail(st.message);
    std::cout << "cache: removed " << removed << " entries from " << cache.config().dir << " ("
              << cache.totalBytes() << " bytes left, limit " << limit << ")\n";
    return 0;
  }
  if (args.has("max-bytes"))
    return fail("--max-bytes applies to cache prune only");
  return fail("unknown cache command '" + what + "'; allowed: ls, clear, verify, prune");
}

int cmdEnv(const Args &args) {
  auto &drv = CudaDriver::get();
  if (args.has("has-gpu"))
    return drv.available().ok() ? 0 : 1;
  std::cout << "muse-gen " << kGeneratorVersion << "\n";
  std::cout << "NVRTC: " << nvrtcVersionString() << "\n";
  std::string inc;
  Status incSt = cudaIncludeDir(inc);
  std::cout << "CUDA headers: " << (incSt.ok() ? inc : incSt.message) << "\n";
  if (drv.available().ok()) {
    int v = drv.driverVersion();
    std::cout << "CUDA driver: " << v / 1000 << "." << (v % 1000) / 10 << "\n";
    std::vector<DeviceInfo> devs;
    if (drv.devices(devs).ok())
      for (const auto &d : devs)
        std::cout << "GPU " << d.ordinal << ": " << d.name << " (" << d.arch() << ", "
                  << d.multiprocessors << " SMs, " << (d.totalMemory >> 20) << " MiB)\n";
  } else {
    std::cout << "GPU: none (" << drv.available().message << ")\n";
  }
  DiskCache cache(CacheConfig::fromEnvironment());
  if (cache.config().disabled)
    std::cout << "cache: disabled (MUSE_CACHE_DISABLE=1)\n";
  else if (cache.config().dir.empty())
    std::cout << "cache: no directory (set MUSE_CACHE_DIR)\n";
  else
    std::cout << "cache: " << cache.config().dir << " (" << cache.totalBytes() << " bytes)\n";
  std::cout << "features: acausal forward; causal forward (exact window of window_blocks blocks,\n"
               "          dyadic far-field levels, N == M, any N); multipole order 0, 1;\n"
               "          near_clusters; head_dim 64, 128; value_dim 64, 128; bf16, f16, f32\n"
               "          inputs (fp32 accumulation and o, lse); GQA (kv_heads_ratio); any N, M;\n"
               "          sm_80 and newer; acausal and causal backward (dq, dk, dv in fp32,\n"
               "          libmuse, C ABI and the PyTorch package's autograd)\n";
  return 0;
}

/// A subcommand: what `--help` prints, the options it accepts, what it runs.
struct Command {
  const char *name;
  const char *synopsis;
  const char *description;
  std::vector<OptionSpec> options;
  int (*run)(const Args &);
};

const std::vector<Command> &commands() {
  static const std::vector<Command> table = {
      {"check", "check SPEC... [options]", "Validates specs; prints every error with file:line:col.",
       {kSet, kArch, {"canonical", false, "print each spec's canonical form"}, kHelp}, cmdCheck},
      {"emit", "emit SPEC --emit=KIND [-o FILE] [options]",
       "Prints one stage of the pipeline: the imported muse IR (mlir), the IR after\n"
       "decompose, schedule and outline (lowered), the CUDA translation unit (cuda),\n"
       "the host launcher (host), or NVRTC's PTX or cubin for the spec's arch.",
       {{"emit", true, "mlir | lowered | cuda | host | ptx | cubin"},
        {"o", true, "output file (default: standard output)"}, kSet, kArch, kHelp},
       cmdEmit},
      {"build", "build SPEC... [options]",
       "Compiles specs with NVRTC to cubins for their arch and stores them in the cache\n"
       "(ahead of time: a later run loads them without compiling). Needs no GPU.",
       {{"resource-usage", false, "print registers, spills and shared memory of every kernel"},
        kSet, kArch, kHelp},
       cmdBuild},
      {"verify", "verify SPEC [options]",
       "On a GPU: runs the kernels on random inputs and compares them with the CPU\n"
       "reference (double) on the kernel's own partitions, then with exact attention.\n"
       "Exit status 1 when the kernel is outside the tolerance.",
       {{"batch", true, "B (default 1)"},
        {"heads", true, "query heads H (default 2 x kv_heads_ratio)"},
        {"seq", true, "queries per head N (default 2000)"},
        {"kv-seq", true, "keys per head M (default: N)"},
        {"seed", true, "random seed (default: fresh, printed)"},
        {"well-separated", false,
         "clustered inputs; also require partitions equal to the reference's"},
        {"timed-runs", true, "also time the forward (median of this many)"},
        {"backward", false,
         "check the gradients instead (acausal and causal): dq, dk, dv against the\n"
         "reference's, and a second backward bit-identical"},
        kSet, kArch, kHelp},
       cmdVerify},
      {"cache", "cache ls|clear|verify|prune [--max-bytes N]",
       "ls: list entries; clear: remove every entry; verify: read and checksum every\n"
       "entry (exit status 1 if any is corrupt); prune: remove least recently used\n"
       "entries until they total at most --max-bytes (default MUSE_CACHE_MAX_BYTES),\n"
       "skipping entries being written. The directory is MUSE_CACHE_DIR, else\n"
       "$XDG_CACHE_HOME/muse, else ~/.cache/muse.",
       {{"max-bytes", true, "prune: size limit in bytes, or with a K, M or G suffix"}, kHelp},
       cmdCache},
      {"env", "env [--has-gpu]", "Prints versions, GPUs, the cache and the feature matrix.",
       {{"has-gpu", false, "print nothing; exit 0 iff a GPU is usable"}, kHelp}, cmdEnv},
  };
  return table;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2)
    return std::fputs(kUsage, stderr), 1;
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help")
    return std::fputs(kUsage, stdout), 0;
  if (cmd == "--version")
    return std::printf("muse-gen %s\n", kGeneratorVersion), 0;
  for (const Command &c : commands()) {
    if (cmd != c.name)
      continue;
    Args args;
    std::string err;
    if (!parseArgs(argc, argv, 2, c.options, args, err))
      return fail(err);
    if (args.has("help")) {
      printHelp(c.synopsis, c.description, c.options);
      return 0;
    }
    return c.run(args);
  }
  return fail("unknown command '" + cmd +
              "'; allowed: check, emit, build, verify, cache, env (see muse-gen --help)");
}
