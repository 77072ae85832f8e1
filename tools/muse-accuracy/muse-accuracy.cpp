//===- muse-accuracy.cpp - How far MuSe is from exact attention -----------===//
//
// Prints, as a markdown table, the relative squared error
// ||o - o_exact||^2 / ||o_exact||^2 of the CPU reference for multipole orders
// 0 and 1 and near_clusters 0 and 4, on Gaussian inputs, on a Gaussian
// mixture (sharper logits) and on Gaussian inputs with 3x larger logits,
// acausal and causal. Deterministic: fixed seeds.
// docs/ACCURACY.md records its output.
//
//===----------------------------------------------------------------------===//
#include "muse/Reference/Reference.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace muse::ref;

namespace {

struct Options {
  int64_t heads = 2;
  int64_t n = 2048;       // acausal N = M
  int64_t causalN = 1024; // causal N = M
  int64_t dim = 64;       // D = Dv
  int clusters = 32;      // acausal C_q = C_k
  int causalClusters = 16;
  int iters = 3;
  int blockSize = 64;
  int windowBlocks = 1;
  int mixture = 32;       // components of the Gaussian mixture
  double spread = 1.0;    // their within-component standard deviation
  uint64_t seed = 2024;
};

struct Data {
  std::vector<double> q, k, v;
};

/// (a) q, k, v ~ N(0, 1): logits q.k/sqrt(D) have standard deviation ~1.
Data gaussianData(const RefShape &sh, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  Data d{std::vector<double>(sh.qSize()), std::vector<double>(sh.kSize()),
         std::vector<double>(sh.vSize())};
  for (auto *t : {&d.q, &d.k, &d.v})
    for (double &e : *t)
      e = g(rng);
  return d;
}

/// (b) q and k drawn from a mixture of `components` Gaussians per head (means
/// ~ N(0, I), standard deviation `spread`, component chosen uniformly per
/// point); v ~ N(0, 1). A query meeting keys of its own component has logits
/// ~ |mu|^2/sqrt(D) = sqrt(D): sharp attention with semantic clusters.
Data mixtureData(const RefShape &sh, int components, double spread, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::uniform_int_distribution<int> pick(0, components - 1);
  Data d = gaussianData(sh, seed + 1); // v stays N(0, 1)
  for (int64_t hk = 0; hk < sh.B * sh.Hkv; ++hk) {
    std::vector<double> mu(size_t(components) * sh.D);
    for (double &e : mu)
      e = g(rng);
    auto fill = [&](double *rows, int64_t count) {
      for (int64_t r = 0; r < count; ++r) {
        const double *m = mu.data() + int64_t(pick(rng)) * sh.D;
        for (int64_t c = 0; c < sh.D; ++c)
          rows[r * sh.D + c] = m[c] + spread * g(rng);
      }
    };
    fill(d.k.data() + hk * sh.M * sh.D, sh.M);
    const int64_t group = sh.H / sh.Hkv;
    for (int64_t h = 0; h < group; ++h)
      fill(d.q.data() + (hk * group + h) * sh.N * sh.D, sh.N);
  }
  return d;
}

double relSquaredError(const std::vector<double> &o, const std::vector<double> &ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    num += (o[i] - ref[i]) * (o[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return num / den;
}

bool parseInt(const char *arg, const char *name, int64_t &out) {
  size_t len = std::strlen(name);
  if (std::strncmp(arg, name, len) != 0 || arg[len] != '=')
    return false;
  char *end = nullptr;
  long long v = std::strtoll(arg + len + 1, &end, 10);
  if (*end != '\0' || v < 1) {
    std::fprintf(stderr, "muse-accuracy: %s needs a positive integer, got '%s'\n",
                 name, arg + len + 1);
    std::exit(1);
  }
  out = v;
  return true;
}

void usage() {
  std::printf(
      "usage: muse-accuracy [--heads=H] [--n=N] [--causal-n=N] [--clusters=C]\n"
      "                     [--causal-clusters=C] [--iters=T] [--seed=S]\n"
      "Relative squared error of the MuSe CPU reference against exact attention.\n");
}

} // namespace

int main(int argc, char **argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    int64_t v = 0;
    const char *a = argv[i];
    if (!std::strcmp(a, "--help") || !std::strcmp(a, "-h")) {
      usage();
      return 0;
    } else if (parseInt(a, "--heads", v)) {
      opt.heads = v;
    } else if (parseInt(a, "--n", v)) {
      opt.n = v;
    } else if (parseInt(a, "--causal-n", v)) {
      opt.causalN = v;
    } else if (parseInt(a, "--clusters", v)) {
      opt.clusters = int(v);
    } else if (parseInt(a, "--causal-clusters", v)) {
      opt.causalClusters = int(v);
    } else if (parseInt(a, "--iters", v)) {
      opt.iters = int(v);
    } else if (parseInt(a, "--seed", v)) {
      opt.seed = uint64_t(v);
    } else {
      std::fprintf(stderr, "muse-accuracy: unknown argument '%s'\n", a);
      usage();
      return 1;
    }
  }

  std::printf("Parameters: B=1, H=Hkv=%lld, D=Dv=%lld, scale=1/sqrt(D), "
              "kmeans_iters=%d, seed=%llu\n",
              (long long)opt.heads, (long long)opt.dim, opt.iters,
              (unsigned long long)opt.seed);
  std::printf("  acausal: N=M=%lld, query_clusters=key_clusters=%d\n",
              (long long)opt.n, opt.clusters);
  std::printf("  causal:  N=M=%lld, block_size=%d, window_blocks=%d, "
              "query_clusters=key_clusters=%d\n",
              (long long)opt.causalN, opt.blockSize, opt.windowBlocks,
              opt.causalClusters);
  std::printf("  data (a) gaussian: q, k, v ~ N(0, 1)\n");
  std::printf("  data (b) mixture: q, k from %d Gaussians per head (means ~ N(0, I), "
              "sd %.2f), v ~ N(0, 1)\n",
              opt.mixture, opt.spread);
  std::printf("  data (c) gaussian x3: as (a) with scale = 3/sqrt(D)\n\n");
  std::printf("| data | attention | order | near_clusters | rel. sq. error |\n");
  std::printf("|---|---|---|---|---|\n");

  const auto start = std::chrono::steady_clock::now();
  for (bool causal : {false, true}) {
    const int64_t n = causal ? opt.causalN : opt.n;
    RefShape sh{1, opt.heads, opt.heads, n, n, opt.dim, opt.dim};
    static const char *const names[] = {"gaussian", "mixture", "gaussian x3"};
    for (int dataset = 0; dataset < 3; ++dataset) {
      const uint64_t seed = opt.seed + 100 * (dataset % 2) + (causal ? 10 : 0);
      Data d = dataset == 1 ? mixtureData(sh, opt.mixture, opt.spread, seed)
                            : gaussianData(sh, seed);
      const double scale = dataset == 2 ? 3.0 / std::sqrt(double(opt.dim)) : 0.0;
      ForwardResult exact;
      if (RefStatus st = exactForward(sh, causal, scale, d.q, d.k, d.v, exact); !st) {
        std::fprintf(stderr, "muse-accuracy: %s\n", st.message.c_str());
        return 1;
      }
      for (int order : {0, 1})
        for (int nearClusters : {0, 4}) {
          MuseConfig cfg;
          cfg.causal = causal;
          cfg.queryClusters = cfg.keyClusters =
              causal ? opt.causalClusters : opt.clusters;
          cfg.kmeansIters = opt.iters;
          cfg.order = order;
          cfg.nearClusters = nearClusters;
          cfg.blockSize = opt.blockSize;
          cfg.windowBlocks = opt.windowBlocks;
          cfg.scale = scale;
          MuseForwardResult r;
          if (RefStatus st = museForward(cfg, sh, d.q, d.k, d.v, nullptr, r); !st) {
            std::fprintf(stderr, "muse-accuracy: %s\n", st.message.c_str());
            return 1;
          }
          std::printf("| %s | %s | %d (%s) | %d | %.4f |\n",
                      names[dataset],
                      causal ? "causal" : "acausal", order,
                      order == 0 ? "monopole" : "dipole", nearClusters,
                      relSquaredError(r.o, exact.o));
          std::fflush(stdout);
        }
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n(%.1f s; heads run on several threads, MUSE_REF_THREADS=1 for one)\n", secs);
  return 0;
}
