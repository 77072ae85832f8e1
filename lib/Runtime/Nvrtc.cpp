//===- Nvrtc.cpp - CUDA source to cubin through NVRTC ---------------------===//

#include "muse/Runtime/Nvrtc.h"

#include <nvrtc.h>

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <sstream>

namespace muse {
namespace {

bool isFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string parentDir(const std::string &path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

/// Keeps the ptxas lines of an NVRTC log: the per-kernel resource report.
std::string ptxasReport(const std::string &log) {
  std::istringstream in(log);
  std::string line, out;
  while (std::getline(in, line))
    if (line.find("ptxas") != std::string::npos)
      out += line + "\n";
  return out;
}

/// PTX needs a virtual architecture: -arch=sm_90 becomes -arch=compute_90.
std::vector<std::string> virtualArchOptions(const std::vector<std::string> &opts) {
  std::vector<std::string> out;
  for (const std::string &o : opts) {
    std::string replaced = o;
    for (const std::string prefix : {"-arch=", "--gpu-architecture="})
      if (o.compare(0, prefix.size() + 3, prefix + "sm_") == 0)
        replaced = prefix + "compute_" + o.substr(prefix.size() + 3);
    out.push_back(replaced);
  }
  return out;
}

struct Program {
  nvrtcProgram prog = nullptr;
  ~Program() {
    if (prog)
      nvrtcDestroyProgram(&prog);
  }
};

Status nvrtcFailure(nvrtcResult r, const char *call) {
  return {StatusCode::CompileError,
          std::string(call) + " failed: " + nvrtcGetErrorString(r)};
}

/// One NVRTC compilation; fills the log and, on success, the requested outputs.
Status runNvrtc(const NvrtcRequest &req, const std::vector<std::string> &options, bool cubin,
                bool ptx, NvrtcOutput &out) {
  std::vector<const char *> headerSrc, headerNames, opts;
  for (const auto &h : req.headers) {
    headerNames.push_back(h.first.c_str());
    headerSrc.push_back(h.second.c_str());
  }
  for (const std::string &o : options)
    opts.push_back(o.c_str());
  Program p;
  nvrtcResult r = nvrtcCreateProgram(&p.prog, req.source.c_str(), req.programName.c_str(),
                                     int(headerSrc.size()), headerSrc.data(), headerNames.data());
  if (r != NVRTC_SUCCESS)
    return nvrtcFailure(r, "nvrtcCreateProgram");
  nvrtcResult compiled = nvrtcCompileProgram(p.prog, int(opts.size()), opts.data());
  size_t logSize = 0;
  if (nvrtcGetProgramLogSize(p.prog, &logSize) == NVRTC_SUCCESS && logSize > 1) {
    std::string log(logSize, '\0');
    nvrtcGetProgramLog(p.prog, log.data());
    log.resize(logSize - 1);
    out.log += log;
  }
  if (compiled != NVRTC_SUCCESS) {
    std::string cmd;
    for (const std::string &o : options)
      cmd += " " + o;
    return {StatusCode::CompileError, "NVRTC could not compile " + req.programName + " (" +
                                          nvrtcGetErrorString(compiled) + ", options:" + cmd +
                                          "):\n" + out.log};
  }
  if (cubin) {
    size_t size = 0;
    if ((r = nvrtcGetCUBINSize(p.prog, &size)) != NVRTC_SUCCESS)
      return nvrtcFailure(r, "nvrtcGetCUBINSize");
    if (size == 0)
      return {StatusCode::CompileError,
              "NVRTC produced no cubin: the options must name a real architecture "
              "(-arch=sm_XY), not only a virtual one (compute_XY)"};
    out.cubin.assign(size, '\0');
    if ((r = nvrtcGetCUBIN(p.prog, out.cubin.data())) != NVRTC_SUCCESS)
      return nvrtcFailure(r, "nvrtcGetCUBIN");
  }
  if (ptx) {
    size_t size = 0;
    if ((r = nvrtcGetPTXSize(p.prog, &size)) != NVRTC_SUCCESS)
      return nvrtcFailure(r, "nvrtcGetPTXSize");
    out.ptx.assign(size, '\0');
    if ((r = nvrtcGetPTX(p.prog, out.ptx.data())) != NVRTC_SUCCESS)
      return nvrtcFailure(r, "nvrtcGetPTX");
    if (!out.ptx.empty() && out.ptx.back() == '\0')
      out.ptx.pop_back();
  }
  return Status::success();
}

} // namespace

std::pair<int, int> nvrtcVersion() {
  int major = 0, minor = 0;
  if (::nvrtcVersion(&major, &minor) != NVRTC_SUCCESS)
    return {0, 0};
  return {major, minor};
}

std::string nvrtcVersionString() {
  auto [major, minor] = nvrtcVersion();
  return std::to_string(major) + "." + std::to_string(minor);
}

Status cudaIncludeDir(std::string &dir) {
  std::vector<std::string> tried;
  auto probe = [&](const std::string &candidate) {
    tried.push_back(candidate);
    if (isFile(candidate + "/cuda_bf16.h")) {
      dir = candidate;
      return true;
    }
    return false;
  };
  if (const char *home = std::getenv("CUDA_HOME"); home && *home)
    if (probe(std::string(home) + "/include"))
      return Status::success();
  if (probe("/usr/local/cuda/include"))
    return Status::success();
  // The toolkit that provides the libnvrtc we actually loaded: lib64/ or
  // targets/<arch>/lib/ sit next to include/.
  Dl_info info;
  if (dladdr(reinterpret_cast<void *>(&::nvrtcVersion), &info) && info.dli_fname) {
    std::string libDir = parentDir(info.dli_fname);
    if (probe(parentDir(libDir) + "/include"))
      return Status::success();
  }
  std::string list;
  for (const std::string &t : tried)
    list += (list.empty() ? "" : ", ") + t;
  return {StatusCode::CompileError,
          "cuda_bf16.h not found (looked in " + list +
              "): set CUDA_HOME to a CUDA toolkit whose include/ has the CUDA headers"};
}

Status compileCuda(const NvrtcRequest &req, NvrtcOutput &out) {
  out = NvrtcOutput();
  std::string include;
  if (Status s = cudaIncludeDir(include); !s.ok())
    return s;
  std::vector<std::string> options = req.options;
  options.push_back("-I" + include);
  std::vector<std::string> ptxOptions = virtualArchOptions(options);
  if (req.wantResourceUsage)
    options.push_back("--ptxas-options=-v");
  if (req.wantCubin || !req.wantPtx) {
    if (Status s = runNvrtc(req, options, /*cubin=*/true, /*ptx=*/false, out); !s.ok())
      return s;
    if (req.wantResourceUsage)
      out.resourceUsage = ptxasReport(out.log);
  }
  if (req.wantPtx) {
    NvrtcOutput ptxOut;
    if (Status s = runNvrtc(req, ptxOptions, false, true, ptxOut); !s.ok())
      return s;
    out.ptx = std::move(ptxOut.ptx);
    if (!req.wantCubin)
      out.log = ptxOut.log;
  }
  return Status::success();
}

} // namespace muse
