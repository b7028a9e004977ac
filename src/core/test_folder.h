// For unit tests only (it uses GoogleTest): the scratch folder of the running
// test, unique to the process, so that two processes running the same test
// binary at once — two worktrees, two ctest runs — never share a folder.
// The fixture creates it and removes it in TearDown with
// RemoveTestFolderUnlessFailed, which keeps a failed test's folder to look
// at (its name says which process made it).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace minpanel {

// "<TempDir>/<prefix>_<suite>_<test>_<pid>" (TEST_TMPDIR when set, else /tmp).
inline std::string TestFolder(std::string_view prefix) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name(prefix);
  if (info != nullptr) {
    name += "_" + std::string(info->test_suite_name()) + "_" + info->name();
  }
  name += "_" + std::to_string(::getpid());
  // Parameterised tests name themselves "Suite/Name/0": no folders within.
  for (char& c : name) {
    if (c == '/') {
      c = '_';
    }
  }
  return (std::filesystem::path(::testing::TempDir()) / name).string();
}

inline void RemoveTestFolderUnlessFailed(const std::string& folder) {
  if (!::testing::Test::HasFailure()) {
    std::filesystem::remove_all(folder);
  }
}

}  // namespace minpanel
