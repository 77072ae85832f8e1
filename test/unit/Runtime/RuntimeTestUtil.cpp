//===- RuntimeTestUtil.cpp ------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char **environ;

namespace muse::test {

const char *kTinyKernel = R"(
#include <cuda_bf16.h>
#include "tiny/scale.cuh"
extern "C" __global__ void tiny_scale(const __nv_bfloat16 *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = tiny::scale(__bfloat162float(x[i]));
}
)";
const char *kTinyHeader = "namespace tiny { __device__ inline float scale(float v) { return 2.f * v; } }\n";

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "muse-runtime-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data()))
    throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

ScopedEnv::ScopedEnv(const char *name, std::optional<std::string> value) : name_(name) {
  if (const char *v = std::getenv(name))
    old_ = v;
  if (value)
    setenv(name, value->c_str(), 1);
  else
    unsetenv(name);
}

ScopedEnv::~ScopedEnv() {
  if (old_)
    setenv(name_.c_str(), old_->c_str(), 1);
  else
    unsetenv(name_.c_str());
}

CacheConfig cacheIn(const std::string &dir) {
  CacheConfig c;
  c.dir = dir;
  c.disabled = false;
  c.lockTimeoutSeconds = 120;
  return c;
}

std::vector<int> runChildren(int count, const std::vector<std::string> &args) {
  std::vector<std::string> argv = {"/proc/self/exe", "--child"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char *> cargv;
  for (std::string &a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::vector<pid_t> pids;
  for (int i = 0; i < count; ++i) {
    pid_t pid = -1;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, cargv.data(), environ) != 0)
      pid = -1;
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
      codes.push_back(-1);
    else
      codes.push_back(WEXITSTATUS(status));
  }
  return codes;
}

std::string readAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void writeAll(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

} // namespace muse::test
