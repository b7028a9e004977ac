#include "incident/bounded_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace minpanel::incident {
namespace {

class BoundedFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::path(::testing::TempDir()) /
              ("bounded_file_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (folder_ / name).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    return path;
  }

  std::filesystem::path folder_;
};

TEST_F(BoundedFileTest, ReadsAWholeFileUpToItsLimitAndNamesTheLimitPastIt) {
  const std::string path = Write("a.csv", "email\nx@example.test\n");
  for (const FileKind kind : {FileKind::kAny, FileKind::kPrivate}) {
    EXPECT_EQ(ReadBoundedFile(path, 21, "kTestBytesMax", kind).value(), "email\nx@example.test\n");
    const Status larger = ReadBoundedFile(path, 20, "kTestBytesMax", kind).status();
    EXPECT_EQ(larger.code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(larger.message(), path + ": larger than kTestBytesMax (20 bytes)");
  }
  EXPECT_EQ(ReadBoundedFile(Write("empty", ""), 0, "kTestBytesMax", FileKind::kAny).value(), "");
  const Status missing =
      ReadBoundedFile((folder_ / "missing").string(), 10, "kTestBytesMax", FileKind::kAny).status();
  EXPECT_EQ(missing.code(), StatusCode::kIoError);
  EXPECT_EQ(missing.message(), (folder_ / "missing").string() + ": No such file or directory");
}

TEST_F(BoundedFileTest, APrivateFileIsARegularFileNotReachedThroughALink) {
  const std::string path = Write("notice.eml", "To: a@example.test\n\nbody\n");
  const std::string link = (folder_ / "link.eml").string();
  std::filesystem::create_symlink(path, link);
  EXPECT_EQ(ReadBoundedFile(link, 100, "kTestBytesMax", FileKind::kAny).value(),
            "To: a@example.test\n\nbody\n");
  EXPECT_EQ(ReadBoundedFile(link, 100, "kTestBytesMax", FileKind::kPrivate).status().code(),
            StatusCode::kIoError);  // O_NOFOLLOW: ELOOP
  const Status folder =
      ReadBoundedFile(folder_.string(), 100, "kTestBytesMax", FileKind::kPrivate).status();
  EXPECT_EQ(folder.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(folder.message(), folder_.string() + ": not a regular file");
}

}  // namespace
}  // namespace minpanel::incident
