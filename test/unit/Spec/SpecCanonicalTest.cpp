//===- SpecCanonicalTest.cpp - Canonical text: exact form and round trip --===//

#include "SpecTestUtil.h"

#include <random>

using namespace muse;

TEST(SpecCanonical, DefaultSpecText) {
  EXPECT_EQ(canonicalSpec(Spec()), R"(name: 'muse'
attention:
  causal: false
  head_dim: 64
  value_dim: 64
  dtype: bf16
  scale: auto
  kv_heads_ratio: 1
clustering:
  query_clusters: 64
  key_clusters: 64
  kmeans_iters: 3
multipole:
  order: 1
  near_clusters: 0
tiling:
  block_q: 0
  block_k: 0
  warps: 0
target:
  arch: sm_90
)");
}

TEST(SpecCanonical, CausalSectionOnlyWhenCausal) {
  Spec s;
  s.causal = true;
  s.blockSize = 128;
  s.windowBlocks = 3;
  std::string text = canonicalSpec(s);
  EXPECT_NE(text.find("causal:\n  block_size: 128\n  window_blocks: 3\ntiling:"), std::string::npos)
      << text;
}

TEST(SpecCanonical, SameSpecWrittenDifferentlyGivesSameText) {
  SpecResult a = parseSpec("attention: {dtype: half, head_dim: 128, scale: 0.50}\n");
  SpecResult b = parseSpec("attention:\n  value_dim: 128\n  scale: 5e-1\n  head_dim: 128\n  "
                           "dtype: float16\nname: muse\n");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(canonicalSpec(*a.spec), canonicalSpec(*b.spec));
  EXPECT_NE(canonicalSpec(*a.spec).find("scale: 0.5\n"), std::string::npos);
}

TEST(SpecCanonical, NamesThatLookLikeOtherTypesStayNames) {
  for (const char *name : {"null", "true", "123", "1e5", "-x", ".5"}) {
    Spec s;
    s.name = name;
    SpecResult r = parseSpec(canonicalSpec(s));
    ASSERT_TRUE(r.ok()) << name << ": " << r.diagnostics.at(0).str();
    EXPECT_EQ(r.spec->name, name);
  }
}

namespace {

template <typename T> T pick(std::mt19937 &rng, std::initializer_list<T> values) {
  return *(values.begin() + std::uniform_int_distribution<size_t>(0, values.size() - 1)(rng));
}

int between(std::mt19937 &rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

Spec randomValidSpec(std::mt19937 &rng) {
  Spec s;
  const char alphabet[] = "abcXYZ019_.-";
  s.name.clear();
  for (int i = between(rng, 1, 64); i > 0; --i)
    s.name += alphabet[between(rng, 0, sizeof(alphabet) - 2)];
  s.causal = between(rng, 0, 1);
  s.headDim = pick(rng, {64, 128});
  s.valueDim = pick(rng, {64, 128});
  s.dtype = pick(rng, {DType::BF16, DType::F16, DType::F32});
  switch (between(rng, 0, 2)) {
  case 0:
    break; // auto
  case 1:
    s.scale = std::uniform_real_distribution<double>(1e-6, 10.0)(rng);
    break;
  default:
    s.scale = std::ldexp(1.0, between(rng, -40, 40)) * between(rng, 1, 1000);
  }
  s.kvHeadsRatio = between(rng, 1, 64);
  s.queryClusters = between(rng, 1, 1024);
  s.keyClusters = between(rng, 1, 512);
  s.kmeansIters = between(rng, 1, 32);
  s.order = between(rng, 0, 1);
  s.nearClusters = between(rng, 0, s.keyClusters);
  if (s.causal) {
    s.blockSize = 1 << between(rng, 4, 12);
    s.windowBlocks = between(rng, 1, 64);
  }
  s.blockQ = pick(rng, {0, 16, 32, 64, 128});
  s.blockK = pick(rng, {0, 16, 32, 64, 128});
  s.warps = pick(rng, {0, 1, 2, 4, 8});
  s.arch = supportedArchs()[between(rng, 0, static_cast<int>(supportedArchs().size()) - 1)];
  return s;
}

} // namespace

TEST(SpecCanonical, RoundTripOfRandomValidSpecs) {
  std::mt19937 rng(20240601);
  for (int i = 0; i < 2000; ++i) {
    Spec s = randomValidSpec(rng);
    ASSERT_TRUE(validateSpec(s).empty()) << validateSpec(s)[0].str();
    std::string text = canonicalSpec(s);
    SpecResult r = parseSpec(text, "canonical.yaml");
    ASSERT_TRUE(r.ok()) << text << "\n" << r.diagnostics.at(0).str();
    ASSERT_EQ(*r.spec, s) << text;
    ASSERT_EQ(canonicalSpec(*r.spec), text);
  }
}
