//===- CApiTest.cpp - The C ABI of libmuse.so, without a GPU --------------===//
//
// Links only libmuse.so, so it also proves that the library exports what the
// header declares.
//
//===----------------------------------------------------------------------===//

#include "muse/muse.h"

#include <gtest/gtest.h>

#include <dlfcn.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace {

struct CApi : testing::Test {
  void SetUp() override {
    std::string base =
        (std::filesystem::temp_directory_path() / "muse-capi-test-XXXXXX").string();
    ASSERT_TRUE(mkdtemp(base.data()));
    dir = base;
    setenv("MUSE_CACHE_DIR", dir.c_str(), 1);
    ASSERT_EQ(muse_engine_create(&engine), MUSE_OK);
  }
  void TearDown() override {
    muse_engine_destroy(engine);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string dir;
  muse_engine_t *engine = nullptr;
};

bool gpuPresent() { return dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL) != nullptr; }

TEST_F(CApi, Version) {
  EXPECT_STRNE(muse_version(), "");
  EXPECT_EQ(muse_abi_version(), MUSE_ABI_VERSION);
}

TEST_F(CApi, NullArgumentsAreErrorsNotCrashes) {
  muse_attention_t *att = nullptr;
  EXPECT_EQ(muse_engine_create(nullptr), MUSE_ERROR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(muse_last_error()).find("NULL"), std::string::npos);
  EXPECT_EQ(muse_attention_build_string(nullptr, "name: x\n", &att), MUSE_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(muse_attention_build_string(engine, nullptr, &att), MUSE_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(muse_attention_build_file(engine, "x.yaml", nullptr), MUSE_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(muse_attention_forward(nullptr, nullptr, nullptr), MUSE_ERROR_INVALID_ARGUMENT);
  int64_t ws = 0;
  EXPECT_EQ(muse_attention_workspace_bytes(nullptr, nullptr, &ws), MUSE_ERROR_INVALID_ARGUMENT);
  const char *overrides[] = {nullptr};
  EXPECT_EQ(muse_attention_build_string_overrides(engine, "name: x\n", overrides, 1, &att),
            MUSE_ERROR_INVALID_ARGUMENT);
  muse_attention_destroy(nullptr);
  muse_engine_destroy(nullptr);
}

TEST_F(CApi, InvalidSpecHasAMessage) {
  muse_attention_t *att = nullptr;
  EXPECT_EQ(muse_attention_build_string(engine, "attention: {head_dim: 63}\n", &att),
            MUSE_ERROR_INVALID_SPEC);
  EXPECT_EQ(att, nullptr);
  EXPECT_NE(std::string(muse_last_error()).find("head_dim"), std::string::npos)
      << muse_last_error();
  EXPECT_EQ(muse_attention_build_file(engine, "/nonexistent/spec.yaml", &att),
            MUSE_ERROR_INVALID_SPEC);
  EXPECT_NE(std::string(muse_last_error()).find("spec.yaml"), std::string::npos);
  const char *overrides[] = {"clustering.kmeans_iters=0"};
  EXPECT_EQ(muse_attention_build_string_overrides(engine, "name: x\n", overrides, 1, &att),
            MUSE_ERROR_INVALID_SPEC);
  EXPECT_NE(std::string(muse_last_error()).find("kmeans_iters"), std::string::npos)
      << muse_last_error();
}

TEST_F(CApi, PrecompileWorksWithoutAGpu) {
  std::string path = dir + "/spec.yaml";
  FILE *f = fopen(path.c_str(), "w");
  ASSERT_TRUE(f);
  fputs("name: capi\n", f);
  fclose(f);
  EXPECT_EQ(muse_engine_precompile_file(engine, path.c_str()), MUSE_OK) << muse_last_error();
}

TEST_F(CApi, BuildWithoutAGpuIsNoDevice) {
  if (gpuPresent())
    GTEST_SKIP() << "a GPU driver is present";
  muse_attention_t *att = nullptr;
  EXPECT_EQ(muse_attention_build_string(engine, "name: capi\n", &att), MUSE_ERROR_NO_DEVICE);
  EXPECT_EQ(att, nullptr);
  EXPECT_NE(std::string(muse_last_error()).find("libcuda.so.1 not found"), std::string::npos)
      << muse_last_error();
}

} // namespace
