//===- SpecErrorTest.cpp - Every error kind, its location and message -----===//

#include "SpecTestUtil.h"

using namespace muse;
using muse::test::errorsOf;

namespace {

/// Expects exactly one error, starting with `prefix` and containing `part`.
void expectOneError(const std::string &text, const std::string &prefix, const std::string &part) {
  std::vector<std::string> errs = errorsOf(text);
  ASSERT_EQ(errs.size(), 1u) << text << "\n" << (errs.empty() ? "" : errs[0]);
  EXPECT_EQ(errs[0].rfind(prefix, 0), 0u) << errs[0];
  EXPECT_NE(errs[0].find(part), std::string::npos) << errs[0];
}

} // namespace

TEST(SpecError, MessageStyleOfTheDesign) {
  std::vector<std::string> errs = errorsOf("name: x\nattention:\n  head_dim: 64\nclustering:\n"
                                           "  query_clusters: 0\n");
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0], "t.yaml:5:19: error: clustering.query_clusters: 0 is out of range; allowed: "
                     "an integer from 1 to 1024");
}

TEST(SpecError, YamlSyntax) {
  expectOneError("clustering: {query_clusters: 3\nmultipole: {}\n", "t.yaml:",
                 "error: invalid YAML: ");
  expectOneError("attention:\n  head_dim: [64\n", "t.yaml:", "invalid YAML");
  expectOneError("a: b: c\n", "t.yaml:1:5: error: invalid YAML", "");
}

TEST(SpecError, EmptyDocumentAndWrongTopLevel) {
  expectOneError("", "t.yaml:1:1: error: the document is empty", "allowed: name, attention");
  expectOneError("# just a comment\n", "t.yaml:1:1: error: the document is empty", "");
  expectOneError("- 1\n- 2\n", "t.yaml:1:1: error: the top level must be a mapping of sections; "
                               "found a list",
                 "allowed: name, attention, clustering, multipole, causal, tiling, target");
  expectOneError("hello\n", "t.yaml:1:1: error: the top level must be a mapping", "'hello'");
  expectOneError("name: a\n---\nname: b\n", "t.yaml:2:1: error: found more than one YAML document",
                 "");
  expectOneError("---\n# nothing\n...\n", "t.yaml:1:1: error: the document is empty", "");
  // yaml-cpp 0.7's LoadAll loops forever on a leading ',' (jbeder/yaml-cpp#1040).
  expectOneError(",\n", "t.yaml:1:1: error: no YAML value could be read", "");
  expectOneError("# c\n ,\n", "t.yaml:1:1: error: no YAML value could be read", "");
}

TEST(SpecError, UnknownSection) {
  expectOneError("name: x\natention: {head_dim: 64}\n",
                 "t.yaml:2:1: error: atention: unknown section 'atention'; did you mean "
                 "'attention'?",
                 "allowed: name, attention, clustering, multipole, causal, tiling, target");
  expectOneError("head_dim: 64\n", "t.yaml:1:1: error: head_dim: unknown section 'head_dim'",
                 "'head_dim' is a field of section 'attention'");
  expectOneError("zzzzzzzz: 1\n", "t.yaml:1:1: error: zzzzzzzz: unknown section 'zzzzzzzz'; allowed:",
                 "");
}

TEST(SpecError, UnknownField) {
  expectOneError("clustering:\n  query_cluster: 16\n",
                 "t.yaml:2:3: error: clustering.query_cluster: unknown field 'query_cluster' in "
                 "section 'clustering'; did you mean 'query_clusters'?",
                 "allowed: query_clusters, key_clusters, kmeans_iters");
  expectOneError("clustering: {order: 0}\n",
                 "t.yaml:1:14: error: clustering.order: unknown field 'order'",
                 "'order' belongs in section 'multipole'");
  expectOneError("tiling: {block_z: 64}\n", "t.yaml:1:10: error: tiling.block_z: ",
                 "allowed: block_q, block_k, warps");
}

TEST(SpecError, NonScalarKeys) {
  expectOneError("? [a]\n: 1\n", "t.yaml:1:3: error: a section name must be a plain name", "");
  expectOneError("tiling:\n  ? {x: 1}\n  : 2\n", "t.yaml:2:5: error: tiling: a field name must be",
                 "");
}

TEST(SpecError, WrongTypes) {
  expectOneError("clustering: {query_clusters: abc}\n",
                 "t.yaml:1:30: error: clustering.query_clusters: 'abc' is not an integer; allowed: "
                 "an integer from 1 to 1024",
                 "");
  expectOneError("clustering: {query_clusters: 1.5}\n",
                 "t.yaml:1:30: error: clustering.query_clusters: 1.5 is not an integer", "");
  expectOneError("clustering: {query_clusters: \"16\"}\n",
                 "t.yaml:1:30: error: clustering.query_clusters: \"16\" is a quoted string (write "
                 "the value without quotes)",
                 "");
  expectOneError("clustering: {query_clusters: !!int 16}\n",
                 "t.yaml:1:30: error: clustering.query_clusters: '16' has the YAML tag '!!int', "
                 "which is not supported",
                 "");
  expectOneError("clustering:\n  query_clusters: [16, 32]\n",
                 "t.yaml:2:19: error: clustering.query_clusters: expected a single value, found a "
                 "list",
                 "");
  expectOneError("attention: {head_dim: {a: 1}}\n",
                 "t.yaml:1:23: error: attention.head_dim: expected a single value, found a mapping",
                 "allowed: one of 64, 128");
  expectOneError("attention:\n  head_dim:\nclustering: {}\n",
                 "t.yaml:2:3: error: attention.head_dim: no value given; allowed: one of 64, 128",
                 "");
  expectOneError("attention: 64\n",
                 "t.yaml:1:12: error: attention: section 'attention' must be a mapping of its "
                 "fields; found 64",
                 "allowed fields: causal, head_dim, value_dim, dtype, scale, kv_heads_ratio");
  expectOneError("name: [a]\n", "t.yaml:1:7: error: name: expected a single value, found a list",
                 "");
}

TEST(SpecError, BooleansAreOnlyTrueOrFalse) {
  for (const char *bad : {"yes", "no", "on", "off", "1", "True", "y"})
    expectOneError(std::string("attention: {causal: ") + bad + "}",
                   "t.yaml:1:21: error: attention.causal: ",
                   "is not a boolean; allowed: true or false");
  expectOneError("attention: {causal: \"true\"}", "t.yaml:1:21: error: attention.causal: ",
                 "is a quoted string");
}

TEST(SpecError, DTypes) {
  expectOneError("attention: {dtype: int8}\n",
                 "t.yaml:1:20: error: attention.dtype: 'int8' is not a supported dtype; allowed: "
                 "bf16 (or bfloat16), f16 (or fp16, float16, half), f32 (or fp32, float32, float)",
                 "");
  expectOneError("attention: {dtype: BF16}\n", "t.yaml:1:20: error: attention.dtype: ",
                 "did you mean 'bf16'?");
}

TEST(SpecError, Scales) {
  expectOneError("attention: {scale: 0}\n",
                 "t.yaml:1:20: error: attention.scale: 0 is out of range; allowed: auto "
                 "(1/sqrt(head_dim)) or a finite number greater than 0",
                 "");
  expectOneError("attention: {scale: -0.5}\n", "t.yaml:1:20: error: attention.scale: -0.5 is out",
                 "");
  expectOneError("attention: {scale: .inf}\n",
                 "t.yaml:1:20: error: attention.scale: '.inf' is not finite", "");
  expectOneError("attention: {scale: nan}\n", "t.yaml:1:20: error: attention.scale: 'nan' is not "
                                              "finite",
                 "");
  expectOneError("attention: {scale: 1e999}\n", "t.yaml:1:20: error: attention.scale: inf is not "
                                                "finite",
                 "");
  expectOneError("attention: {scale: big}\n", "t.yaml:1:20: error: attention.scale: 'big' is not "
                                              "a number",
                 "");
  expectOneError("attention: {scale: \"0.5\"}\n", "t.yaml:1:20: error: attention.scale: ",
                 "is a quoted string");
}

TEST(SpecError, OutOfRangeForEveryIntegerField) {
  struct Case {
    const char *section, *key, *value, *why, *allowed;
  };
  const Case cases[] = {
      {"attention", "head_dim", "96", "96 is not supported", "one of 64, 128"},
      {"attention", "value_dim", "32", "32 is not supported", "one of 64, 128"},
      {"attention", "kv_heads_ratio", "0", "0 is out of range", "an integer from 1 to 64"},
      {"attention", "kv_heads_ratio", "65", "65 is out of range", "an integer from 1 to 64"},
      {"clustering", "query_clusters", "1025", "1025 is out of range", "from 1 to 1024"},
      {"clustering", "key_clusters", "513", "513 is out of range", "from 1 to 512"},
      {"clustering", "key_clusters", "-1", "-1 is out of range", "from 1 to 512"},
      {"clustering", "kmeans_iters", "0", "0 is out of range", "from 1 to 32"},
      {"clustering", "kmeans_iters", "33", "33 is out of range", "from 1 to 32"},
      {"multipole", "order", "2", "2 is not supported",
       "one of 0 (monopole), 1 (dipole); higher orders are not implemented"},
      {"multipole", "near_clusters", "-1", "-1 is out of range", "from 0 to 512"},
      {"tiling", "block_q", "48", "48 is not supported",
       "one of 0 (auto: chosen by the compiler), 16, 32, 64, 128"},
      {"tiling", "block_k", "256", "256 is not supported", "16, 32, 64, 128"},
      {"tiling", "warps", "3", "3 is not supported", "1, 2, 4, 8"},
      {"clustering", "query_clusters", "99999999999999999999", "99999999999999999999 is out of range",
       "from 1 to 1024"},
  };
  for (const Case &c : cases) {
    std::string text = std::string(c.section) + ":\n  " + c.key + ": " + c.value + "\n";
    std::string col = std::to_string(2 + std::string(c.key).size() + 3);
    expectOneError(text,
                   "t.yaml:2:" + col + ": error: " + c.section + "." + c.key + ": " + c.why +
                       "; allowed: ",
                   c.allowed);
  }
}

TEST(SpecError, CausalRanges) {
  const std::string head = "attention: {causal: true}\ncausal:\n";
  expectOneError(head + "  block_size: 100\n",
                 "t.yaml:3:15: error: causal.block_size: 100 is not a power of two; allowed: a "
                 "power of two from 16 to 4096",
                 "");
  expectOneError(head + "  block_size: 8\n", "t.yaml:3:15: error: causal.block_size: 8 is out of "
                                             "range",
                 "");
  expectOneError(head + "  block_size: 8192\n", "t.yaml:3:15: error: causal.block_size: 8192 is "
                                                "out of range",
                 "");
  expectOneError(head + "  window_blocks: 0\n", "t.yaml:3:18: error: causal.window_blocks: 0 is "
                                                "out of range; allowed: an integer from 1 to 64",
                 "");
}

TEST(SpecError, NamesAndArchs) {
  expectOneError("name: \"has space\"\n", "t.yaml:1:7: error: name: 'has space' is not a valid "
                                          "name",
                 "allowed: 1 to 64 characters");
  expectOneError("name: " + std::string(65, 'a') + "\n", "t.yaml:1:7: error: name: ", "not a valid");
  expectOneError("name: \"\"\n", "t.yaml:1:7: error: name: '' is not a valid name", "");
  expectOneError("target: {arch: sm_75}\n",
                 "t.yaml:1:16: error: target.arch: 'sm_75' is not a supported architecture; "
                 "allowed: one of sm_80, sm_86, sm_87, sm_89, sm_90, sm_90a, sm_100, sm_100a, "
                 "sm_103, sm_120",
                 "");
  expectOneError("target: {arch: sm90}\n", "t.yaml:1:16: error: target.arch: ",
                 "did you mean 'sm_90'?");
  expectOneError("target: {arch: sm_89a}\n", "t.yaml:1:16: error: target.arch: ",
                 "did you mean 'sm_89'?");
}

TEST(SpecError, CausalSectionWithoutCausal) {
  expectOneError("attention: {head_dim: 64}\ncausal: {block_size: 128}\n",
                 "t.yaml:2:1: error: causal: a causal section is given but attention.causal is "
                 "false; set attention.causal: true or remove the section",
                 "");
  expectOneError("causal:\n", "t.yaml:1:1: error: causal: a causal section", "");
}

TEST(SpecError, NearClustersAboveKeyClusters) {
  expectOneError("clustering: {key_clusters: 16}\nmultipole: {near_clusters: 17}\n",
                 "t.yaml:2:28: error: multipole.near_clusters: 17 is more than "
                 "clustering.key_clusters (16); allowed: an integer from 0 to "
                 "clustering.key_clusters",
                 "");
  // Against the default key_clusters (64) too.
  expectOneError("multipole: {near_clusters: 100}\n", "t.yaml:1:28: error: multipole.near_clusters: "
                                                      "100 is more than clustering.key_clusters "
                                                      "(64)",
                 "");
  // A bad key_clusters is reported once, not again through near_clusters.
  expectOneError("clustering: {key_clusters: 0}\nmultipole: {near_clusters: 4}\n",
                 "t.yaml:1:28: error: clustering.key_clusters: 0 is out of range", "");
}

TEST(SpecError, DuplicateKeys) {
  expectOneError("attention:\n  head_dim: 64\n  head_dim: 128\n",
                 "t.yaml:3:3: error: attention.head_dim: field 'head_dim' is given twice (first "
                 "given at line 2); give it once",
                 "");
  expectOneError("tiling: {}\ntiling: {warps: 4}\n",
                 "t.yaml:2:1: error: tiling: section 'tiling' is given twice (first given at line "
                 "1)",
                 "");
  expectOneError("name: a\nname: b\n", "t.yaml:2:1: error: name: field 'name' is given twice",
                 "");
}

TEST(SpecError, AllErrorsInDocumentOrder) {
  std::vector<std::string> errs = errorsOf(R"(name: bad name
attention: {head_dim: 96, dtype: int4, causal: maybe}
clustering:
  query_clusters: 0
  kmeans_iter: 3
multipole: {order: 3, near_clusters: 1000}
causal: {block_size: 3}
target: {arch: sm_70}
bogus: 1
)");
  const char *expected[] = {
      "t.yaml:1:7: error: name: 'bad name' is not a valid name",
      "t.yaml:2:23: error: attention.head_dim: 96 is not supported",
      "t.yaml:2:34: error: attention.dtype: 'int4' is not a supported dtype",
      "t.yaml:2:48: error: attention.causal: 'maybe' is not a boolean",
      "t.yaml:4:19: error: clustering.query_clusters: 0 is out of range",
      "t.yaml:5:3: error: clustering.kmeans_iter: unknown field 'kmeans_iter'",
      "t.yaml:6:20: error: multipole.order: 3 is not supported",
      "t.yaml:6:38: error: multipole.near_clusters: 1000 is out of range",
      "t.yaml:7:22: error: causal.block_size: 3 is out of range",
      "t.yaml:8:16: error: target.arch: 'sm_70' is not a supported architecture",
      "t.yaml:9:1: error: bogus: unknown section 'bogus'",
  };
  ASSERT_EQ(errs.size(), std::size(expected));
  for (size_t i = 0; i < errs.size(); ++i)
    EXPECT_EQ(errs[i].rfind(expected[i], 0), 0u) << errs[i];
}

TEST(SpecError, DiagnosticParts) {
  SpecResult r = parseSpec("clustering: {kmeans_iters: 0}", "dir/spec.yaml");
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_FALSE(r.ok());
  const SpecDiagnostic &d = r.diagnostics[0];
  EXPECT_EQ(d.loc.file, "dir/spec.yaml");
  EXPECT_EQ(d.loc.line, 1);
  EXPECT_EQ(d.loc.col, 28);
  EXPECT_EQ(d.field, "clustering.kmeans_iters");
  EXPECT_EQ(d.message, "0 is out of range; allowed: an integer from 1 to 32");
  SpecResult m = parseSpec("clustering: {kmeans_iters: 0}");
  EXPECT_EQ(m.diagnostics.at(0).str().rfind("<string>:1:28: error: ", 0), 0u);
}
