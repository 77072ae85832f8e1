//===- TestMain.cpp - GoogleTest, or a child process of a cache test ------===//
//
// The concurrency tests start this same binary several times at once with
// "--child <mode> ..." to race real processes on one cache directory.
//
//===----------------------------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include <gtest/gtest.h>

#include <cstring>

int main(int argc, char **argv) {
  if (argc > 1 && std::strcmp(argv[1], "--child") == 0)
    return muse::test::cacheChildMain(std::vector<std::string>(argv + 2, argv + argc));
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
