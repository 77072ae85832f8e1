//===- SpecParseTest.cpp - Valid specs: defaults, every field, aliases ----===//

#include "SpecTestUtil.h"

#include <cmath>

using namespace muse;
using muse::test::parseOk;

TEST(SpecParse, EmptyMappingGivesDefaults) {
  Spec s = parseOk("{}");
  EXPECT_EQ(s, Spec());
  EXPECT_EQ(s.name, "muse");
  EXPECT_FALSE(s.causal);
  EXPECT_EQ(s.headDim, 64);
  EXPECT_EQ(s.valueDim, 64);
  EXPECT_EQ(s.dtype, DType::BF16);
  EXPECT_FALSE(s.scale.has_value());
  EXPECT_EQ(s.kvHeadsRatio, 1);
  EXPECT_EQ(s.queryClusters, 64);
  EXPECT_EQ(s.keyClusters, 64);
  EXPECT_EQ(s.kmeansIters, 3);
  EXPECT_EQ(s.order, 1);
  EXPECT_EQ(s.nearClusters, 0);
  EXPECT_EQ(s.blockSize, 2048);
  EXPECT_EQ(s.windowBlocks, 1);
  EXPECT_EQ(s.blockQ, 0);
  EXPECT_EQ(s.blockK, 0);
  EXPECT_EQ(s.warps, 0);
  EXPECT_EQ(s.arch, "sm_90");
  EXPECT_DOUBLE_EQ(s.effectiveScale(), 0.125);
  EXPECT_EQ(s.archNumber(), 90);
}

TEST(SpecParse, EmptySectionsKeepDefaults) {
  EXPECT_EQ(parseOk("attention:\nclustering: {}\ntiling:\n"), Spec());
}

TEST(SpecParse, EveryField) {
  Spec s = parseOk(R"(
name: every.field-1
attention:
  causal: true
  head_dim: 128
  value_dim: 64
  dtype: f16
  scale: 0.25
  kv_heads_ratio: 8
clustering:
  query_clusters: 1024
  key_clusters: 512
  kmeans_iters: 32
multipole:
  order: 0
  near_clusters: 512
causal:
  block_size: 4096
  window_blocks: 64
tiling:
  block_q: 128
  block_k: 16
  warps: 8
target:
  arch: sm_100a
)");
  EXPECT_EQ(s.name, "every.field-1");
  EXPECT_TRUE(s.causal);
  EXPECT_EQ(s.headDim, 128);
  EXPECT_EQ(s.valueDim, 64);
  EXPECT_EQ(s.dtype, DType::F16);
  ASSERT_TRUE(s.scale.has_value());
  EXPECT_DOUBLE_EQ(*s.scale, 0.25);
  EXPECT_DOUBLE_EQ(s.effectiveScale(), 0.25);
  EXPECT_EQ(s.kvHeadsRatio, 8);
  EXPECT_EQ(s.queryClusters, 1024);
  EXPECT_EQ(s.keyClusters, 512);
  EXPECT_EQ(s.kmeansIters, 32);
  EXPECT_EQ(s.order, 0);
  EXPECT_EQ(s.nearClusters, 512);
  EXPECT_EQ(s.blockSize, 4096);
  EXPECT_EQ(s.windowBlocks, 64);
  EXPECT_EQ(s.blockQ, 128);
  EXPECT_EQ(s.blockK, 16);
  EXPECT_EQ(s.warps, 8);
  EXPECT_EQ(s.arch, "sm_100a");
  EXPECT_EQ(s.archNumber(), 100);
}

TEST(SpecParse, FlowStyleAsInTheDesign) {
  Spec s = parseOk(R"(name: acausal_d64
attention: {causal: false, head_dim: 64, value_dim: 64, dtype: bf16, scale: auto, kv_heads_ratio: 1}
clustering: {query_clusters: 64, key_clusters: 64, kmeans_iters: 3}
multipole: {order: 1, near_clusters: 0}
tiling: {block_q: 64, block_k: 64, warps: 4}
target: {arch: sm_90}
)");
  Spec expected;
  expected.name = "acausal_d64";
  expected.blockQ = 64;
  expected.blockK = 64;
  expected.warps = 4;
  EXPECT_EQ(s, expected);
}

TEST(SpecParse, ValueDimDefaultsToHeadDim) {
  EXPECT_EQ(parseOk("attention: {head_dim: 128}").valueDim, 128);
  EXPECT_EQ(parseOk("attention: {head_dim: 128, value_dim: 64}").valueDim, 64);
  EXPECT_EQ(parseOk("attention: {value_dim: 128}").headDim, 64);
}

TEST(SpecParse, DTypeAliases) {
  const std::pair<const char *, DType> cases[] = {
      {"bf16", DType::BF16},  {"bfloat16", DType::BF16}, {"f16", DType::F16},
      {"fp16", DType::F16},   {"float16", DType::F16},   {"half", DType::F16},
      {"f32", DType::F32},    {"fp32", DType::F32},      {"float32", DType::F32},
      {"float", DType::F32},  {"\"half\"", DType::F16},
  };
  for (const auto &[text, type] : cases)
    EXPECT_EQ(parseOk(std::string("attention: {dtype: ") + text + "}").dtype, type) << text;
  EXPECT_STREQ(dtypeName(DType::BF16), "bf16");
  EXPECT_STREQ(dtypeName(DType::F16), "f16");
  EXPECT_STREQ(dtypeName(DType::F32), "f32");
}

TEST(SpecParse, ScaleForms) {
  EXPECT_FALSE(parseOk("attention: {scale: auto}").scale.has_value());
  EXPECT_FALSE(parseOk("attention: {scale: \"auto\"}").scale.has_value());
  EXPECT_DOUBLE_EQ(*parseOk("attention: {scale: 1}").scale, 1.0);
  EXPECT_DOUBLE_EQ(*parseOk("attention: {scale: 1.5e-2}").scale, 0.015);
  EXPECT_DOUBLE_EQ(*parseOk("attention: {scale: .5}").scale, 0.5);
  EXPECT_DOUBLE_EQ(parseOk("attention: {head_dim: 128}").effectiveScale(), 1.0 / std::sqrt(128.0));
}

TEST(SpecParse, EveryArch) {
  for (const std::string &arch : supportedArchs()) {
    Spec s = parseOk("target: {arch: " + arch + "}");
    EXPECT_EQ(s.arch, arch);
    EXPECT_EQ(s.archNumber(), std::stoi(arch.substr(3))) << arch;
  }
  EXPECT_EQ(parseOk("target: {arch: sm_90a}").archNumber(), 90);
  Spec bad;
  bad.arch = "sm_75";
  EXPECT_EQ(bad.archNumber(), 0);
}

TEST(SpecParse, CausalSection) {
  Spec s = parseOk("attention: {causal: true}\ncausal: {block_size: 16, window_blocks: 2}\n");
  EXPECT_TRUE(s.causal);
  EXPECT_EQ(s.blockSize, 16);
  EXPECT_EQ(s.windowBlocks, 2);
  // Causal without the section keeps the causal defaults.
  Spec d = parseOk("attention: {causal: true}");
  EXPECT_EQ(d.blockSize, 2048);
  EXPECT_EQ(d.windowBlocks, 1);
}

TEST(SpecParse, NamesAndNumbersAsNames) {
  EXPECT_EQ(parseOk("name: \"a-b.c_9\"").name, "a-b.c_9");
  EXPECT_EQ(parseOk("name: 123").name, "123");
  EXPECT_EQ(parseOk("name: " + std::string(64, 'x')).name, std::string(64, 'x'));
}

TEST(SpecParse, CommentsAnchorsAndAliases) {
  Spec s = parseOk(R"(# a comment
clustering:
  query_clusters: &n 32   # trailing comment
  key_clusters: *n
)");
  EXPECT_EQ(s.queryClusters, 32);
  EXPECT_EQ(s.keyClusters, 32);
}

TEST(SpecParse, ValidateSpecAcceptsDefaultsAndRejectsBadValues) {
  EXPECT_TRUE(validateSpec(Spec()).empty());
  Spec s;
  s.headDim = 96;
  s.keyClusters = 16;
  s.nearClusters = 20;
  s.scale = -1.0;
  s.name = "has space";
  std::vector<SpecDiagnostic> d = validateSpec(s);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d[0].str(), "error: name: 'has space' is not a valid name; allowed: 1 to 64 "
                        "characters from A-Z, a-z, 0-9, '_', '.' and '-'");
  EXPECT_EQ(d[1].field, "attention.head_dim");
  EXPECT_EQ(d[2].field, "attention.scale");
  EXPECT_EQ(d[3].field, "multipole.near_clusters");
  EXPECT_NE(d[3].message.find("20 is more than clustering.key_clusters (16)"), std::string::npos);
}

TEST(SpecParse, DescribeAllowedListsEveryField) {
  std::string text = describeAllowed();
  for (const char *line :
       {"name: 1 to 64 characters", "attention.head_dim: one of 64, 128 (default 64)",
        "attention.value_dim: one of 64, 128; defaults to attention.head_dim (default head_dim)",
        "attention.dtype: bf16 (or bfloat16)", "clustering.query_clusters: an integer from 1 to 1024",
        "multipole.order: one of 0 (monopole), 1 (dipole); higher orders are not implemented",
        "causal.block_size: a power of two from 16 to 4096 (default 2048); only with "
        "attention.causal: true",
        "tiling.warps: one of 0 (auto: chosen by the compiler), 1, 2, 4, 8 (default 0)",
        "target.arch: one of sm_80, sm_86, sm_87, sm_89, sm_90, sm_90a, sm_100, sm_100a, sm_103, "
        "sm_120 (default sm_90)"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}
