//===- Engine.cpp - Spec to loaded kernels, through NVRTC and the cache ---===//

#include "muse/Runtime/Engine.h"

#include "muse/Compiler/Compiler.h"
#include "muse/Runtime/Cache.h"
#include "muse/Runtime/Nvrtc.h"
#include "LoadedAttention.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

namespace muse {
namespace {

std::string joinDiagnostics(const std::vector<SpecDiagnostic> &diags) {
  std::string out;
  for (const SpecDiagnostic &d : diags)
    out += (out.empty() ? "" : "\n") + d.str();
  return out;
}

std::string joinLines(const std::vector<std::string> &lines) {
  std::string out;
  for (const std::string &l : lines)
    out += (out.empty() ? "" : "\n") + l;
  return out;
}

/// Options that decide the bytes: the compiler's, plus the resource report
/// flag. The -I of the toolkit is left out on purpose: a path says nothing
/// about content (the NVRTC version does).
std::vector<std::string> keyedOptions(const Spec &spec) {
  std::vector<std::string> opts = nvrtcOptions(spec);
  opts.push_back("--ptxas-options=-v");
  return opts;
}

bool logCompiles() {
  const char *v = std::getenv("MUSE_LOG");
  return v && *v && std::string(v) != "0";
}

} // namespace

struct Engine::Impl {
  explicit Impl(const CacheConfig &config) : cache(config) {}

  DiskCache cache;
  std::mutex mutex; // one compile or load at a time; forward never takes it
  std::map<std::string, std::shared_ptr<const CompiledSpec>> compiled; // canonical spec ->
  std::map<std::pair<std::string, CUcontext>, std::shared_ptr<Attention>> loaded;
  int64_t compilations = 0;

  std::shared_ptr<const CompiledSpec> compileLocked(const Spec &spec, Status &status,
                                                    const std::string &specFile = "");
  std::shared_ptr<Attention> buildLocked(const Spec &spec, Status &status,
                                         const std::string &specFile = "");
};

Engine::Engine() : impl_(std::make_unique<Impl>(CacheConfig::fromEnvironment())) {}
Engine::Engine(const CacheConfig &cache) : impl_(std::make_unique<Impl>(cache)) {}
Engine::~Engine() = default;

DiskCache &Engine::cache() { return impl_->cache; }

int64_t Engine::compilations() const {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->compilations;
}

std::shared_ptr<const CompiledSpec>
Engine::Impl::compileLocked(const Spec &spec, Status &status, const std::string &specFile) {
  if (auto diags = validateSpec(spec); !diags.empty()) {
    status = {StatusCode::InvalidSpec, joinDiagnostics(diags)};
    return nullptr;
  }
  std::string canonical = canonicalSpec(spec);
  if (auto it = compiled.find(canonical); it != compiled.end()) {
    status = Status::success();
    return it->second;
  }

  CompileOutput co = compileSpec(spec, specFile);
  if (!co.ok) {
    status = {StatusCode::CompileError,
              "cannot compile spec '" + spec.name + "':\n" + joinLines(co.errors)};
    return nullptr;
  }
  std::string planText = co.plan.serialize();
  CacheKeyInputs in;
  in.canonicalSpec = canonical;
  in.cudaSource = co.cudaSource;
  in.plan = planText;
  in.arch = spec.arch;
  in.nvrtcVersion = nvrtcVersionString();
  in.options = keyedOptions(spec);
  in.templates = &embeddedTemplates();
  std::string key = cacheKey(in);

  auto compute = [&](CacheEntry &entry) -> Status {
    auto start = std::chrono::steady_clock::now();
    NvrtcRequest req;
    req.source = co.cudaSource;
    req.programName = spec.name + ".cu";
    req.headers = embeddedTemplates();
    req.options = nvrtcOptions(spec);
    req.wantResourceUsage = true;
    NvrtcOutput out;
    if (Status s = compileCuda(req, out); !s.ok())
      return s;
    ++compilations;
    entry.specName = spec.name;
    entry.arch = spec.arch;
    entry.cubin = std::move(out.cubin);
    entry.plan = planText;
    entry.resourceUsage = std::move(out.resourceUsage);
    if (logCompiles())
      std::fprintf(stderr, "muse: compiled spec '%s' for %s in %.2f s (key %.16s)\n",
                   spec.name.c_str(), spec.arch.c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
                       .count(),
                   key.c_str());
    return Status::success();
  };
  CacheEntry entry;
  bool fromCache = false;
  if (Status s = cache.getOrCompute(key, compute, entry, fromCache); !s.ok()) {
    status = s;
    return nullptr;
  }
  auto result = std::make_shared<CompiledSpec>();
  result->spec = spec;
  result->key = key;
  result->cubin = std::move(entry.cubin);
  result->resourceUsage = std::move(entry.resourceUsage);
  result->fromDiskCache = fromCache;
  std::string error;
  if (!LaunchPlan::deserialize(entry.plan, result->plan, error)) {
    status = {StatusCode::Internal, "the launch plan stored with cache entry " + key +
                                        " does not parse: " + error};
    return nullptr;
  }
  compiled[canonical] = result;
  status = Status::success();
  return result;
}

std::shared_ptr<const CompiledSpec> Engine::compile(const Spec &spec, Status &status) {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->compileLocked(spec, status);
}

Status Engine::ptx(const Spec &spec, std::string &out) {
  if (auto diags = validateSpec(spec); !diags.empty())
    return {StatusCode::InvalidSpec, joinDiagnostics(diags)};
  CompileOutput co = compileSpec(spec);
  if (!co.ok)
    return {StatusCode::CompileError,
            "cannot compile spec '" + spec.name + "':\n" + joinLines(co.errors)};
  NvrtcRequest req;
  req.source = co.cudaSource;
  req.programName = spec.name + ".cu";
  req.headers = embeddedTemplates();
  req.options = nvrtcOptions(spec);
  req.wantCubin = false;
  req.wantPtx = true;
  NvrtcOutput nv;
  if (Status s = compileCuda(req, nv); !s.ok())
    return s;
  out = std::move(nv.ptx);
  return Status::success();
}

std::shared_ptr<Attention> Engine::build(const Spec &spec, Status &status) {
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->buildLocked(spec, status);
}

std::shared_ptr<Attention> Engine::Impl::buildLocked(const Spec &spec, Status &status,
                                                     const std::string &specFile) {
  std::shared_ptr<const CompiledSpec> done = compileLocked(spec, status, specFile);
  if (!done)
    return nullptr;
  CUcontext ctx = nullptr;
  if (Status s = currentContext(ctx); !s.ok()) {
    status = {s.code, s.message + "; the kernels of spec '" + spec.name + "' were compiled for " +
                          spec.arch + (cache.enabled() ? " and cached" : "") + " (key " +
                          done->key.substr(0, 16) + "), but running them needs a GPU"};
    return nullptr;
  }
  auto id = std::make_pair(canonicalSpec(spec), ctx);
  if (auto it = loaded.find(id); it != loaded.end())
    return it->second;
  std::shared_ptr<Attention> att = loadAttention(done, ctx, status);
  if (att)
    loaded[id] = att;
  return att;
}

std::shared_ptr<Attention> Engine::load(std::shared_ptr<const CompiledSpec> compiled,
                                        Status &status) {
  if (!compiled) {
    status = {StatusCode::InvalidArgument, "Engine::load: no compiled spec given"};
    return nullptr;
  }
  CUcontext ctx = nullptr;
  if (Status s = currentContext(ctx); !s.ok()) {
    status = s;
    return nullptr;
  }
  return loadAttention(std::move(compiled), ctx, status);
}

std::shared_ptr<Attention> Engine::buildFromFile(const std::string &path, Status &status) {
  SpecResult r = parseSpecFile(path);
  if (!r.ok()) {
    status = {StatusCode::InvalidSpec, joinDiagnostics(r.diagnostics)};
    return nullptr;
  }
  std::lock_guard<std::mutex> guard(impl_->mutex);
  return impl_->buildLocked(*r.spec, status, path);
}

std::shared_ptr<Attention> Engine::buildFromString(const std::string &yaml, Status &status) {
  SpecResult r = parseSpec(yaml);
  if (!r.ok()) {
    status = {StatusCode::InvalidSpec, joinDiagnostics(r.diagnostics)};
    return nullptr;
  }
  return build(*r.spec, status);
}

std::shared_ptr<Attention> Engine::buildFromString(const std::string &yaml,
                                                   const std::vector<std::string> &overrides,
                                                   Status &status) {
  SpecResult r = parseSpecWithOverrides(yaml, "<string>", overrides);
  if (!r.ok()) {
    status = {StatusCode::InvalidSpec, joinDiagnostics(r.diagnostics)};
    return nullptr;
  }
  return build(*r.spec, status);
}

} // namespace muse
