#include "core/fault_file_system.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/test_folder.h"

namespace minpanel {
namespace {

class FaultFileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = TestFolder("fault_fs");
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }

  std::string Path(const std::string& name) const { return (folder_ / name).string(); }

  std::filesystem::path folder_;
  FaultFileSystem file_system_{NewPosixFileSystem()};
};

TEST_F(FaultFileSystemTest, WritesFailAfterTheBudgetWithAPartialPrefix) {
  auto file = file_system_.OpenAppendable(Path("a"), 0600);
  ASSERT_TRUE(file.ok());
  file_system_.FailWritesAfterBytes(5);
  EXPECT_TRUE((*file)->Append("abc").ok());
  const Status status = (*file)->Append("defgh");
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(file_system_.ReadFile(Path("a")).value(), "abcde");
  EXPECT_EQ(file_system_.failed_appends(), 1u);

  file_system_.Reset();
  EXPECT_TRUE((*file)->Append("!").ok());
  EXPECT_EQ(file_system_.ReadFile(Path("a")).value(), "abcde!");
}

TEST_F(FaultFileSystemTest, PositionalWritesShareTheBudgetAndSyncsFailWhileSet) {
  auto file = file_system_.OpenPositional(Path("p"), 0600);
  ASSERT_TRUE(file.ok());
  file_system_.FailWritesAfterBytes(4);
  EXPECT_TRUE((*file)->WriteAt(0, "ab").ok());
  EXPECT_EQ((*file)->WriteAt(1, "XYZ").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(file_system_.ReadFile(Path("p")).value(), "aXY");
  EXPECT_EQ(file_system_.failed_appends(), 1u);
  file_system_.FailSyncs(true);
  EXPECT_EQ((*file)->Sync().code(), StatusCode::kIoError);
  file_system_.Reset();
  EXPECT_TRUE((*file)->Sync().ok());
  EXPECT_EQ((*file)->Size().value(), 3u);
}

TEST_F(FaultFileSystemTest, SyncAndTruncateFailWhileSet) {
  auto file = file_system_.OpenAppendable(Path("b"), 0600);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("hello").ok());
  file_system_.FailSyncs(true);
  EXPECT_EQ((*file)->Sync().code(), StatusCode::kIoError);
  file_system_.FailTruncate(true);
  EXPECT_EQ(file_system_.Truncate(Path("b"), 1).code(), StatusCode::kIoError);
  EXPECT_EQ(file_system_.FileSize(Path("b")).value(), 5u);

  file_system_.Reset();
  EXPECT_TRUE((*file)->Sync().ok());
  EXPECT_TRUE(file_system_.Truncate(Path("b"), 1).ok());
  EXPECT_EQ(file_system_.FileSize(Path("b")).value(), 1u);
  EXPECT_EQ(file_system_.failed_syncs(), 1u);
}

TEST_F(FaultFileSystemTest, AtomicWriteRespectsTheBudget) {
  file_system_.FailWritesAfterBytes(3);
  EXPECT_EQ(file_system_.WriteFileAtomically(Path("c"), "toolong", 0600).code(),
            StatusCode::kResourceExhausted);
  EXPECT_FALSE(file_system_.Exists(Path("c")));
}

TEST_F(FaultFileSystemTest, PositionalReadsFailAfterTheBudgetEvenOnFilesOpenedBefore) {
  ASSERT_TRUE(file_system_.WriteFileAtomically(Path("d"), "0123456789", 0600).ok());
  auto file = file_system_.OpenRandomAccess(Path("d"));
  ASSERT_TRUE(file.ok());
  file_system_.FailReadsAfter(1);
  std::string out;
  ASSERT_TRUE((*file)->ReadAt(2, 3, &out).ok());
  EXPECT_EQ(out, "234");
  const Status failed = (*file)->ReadAt(2, 3, &out);
  EXPECT_EQ(failed.code(), StatusCode::kIoError);
  EXPECT_NE(failed.message().find(Path("d")), std::string::npos) << failed.ToString();
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(file_system_.failed_reads(), 1u);
  EXPECT_EQ((*file)->Size().value(), 10u);

  file_system_.Reset();
  ASSERT_TRUE((*file)->ReadAt(8, 5, &out).ok());
  EXPECT_EQ(out, "89");
  EXPECT_EQ(file_system_.OpenRandomAccess(Path("missing")).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace minpanel
