#include "core/file_system.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>
#include <vector>

#include "core/test_folder.h"

namespace minpanel {
namespace {

class FileSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = TestFolder("posix_fs");
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }

  std::string Path(const std::string& name) const { return (folder_ / name).string(); }
  void Write(const std::string& path, std::string_view data) {
    ASSERT_TRUE(file_system_->WriteFileAtomically(path, data, 0600).ok());
  }

  std::filesystem::path folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
};

TEST_F(FileSystemTest, ReadAtReadsAnyRangeAndStopsShortOnlyAtTheEnd) {
  Write(Path("a"), "0123456789");
  auto file = file_system_->OpenRandomAccess(Path("a"));
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Size().value(), 10u);
  std::string out = "stale";
  ASSERT_TRUE((*file)->ReadAt(3, 4, &out).ok());
  EXPECT_EQ(out, "3456");
  ASSERT_TRUE((*file)->ReadAt(0, 10, &out).ok());
  EXPECT_EQ(out, "0123456789");
  ASSERT_TRUE((*file)->ReadAt(7, 100, &out).ok());
  EXPECT_EQ(out, "789");
  ASSERT_TRUE((*file)->ReadAt(10, 5, &out).ok());
  EXPECT_EQ(out, "");
  ASSERT_TRUE((*file)->ReadAt(1000, 5, &out).ok());
  EXPECT_EQ(out, "");
  ASSERT_TRUE((*file)->ReadAt(2, 0, &out).ok());
  EXPECT_EQ(out, "");
}

TEST_F(FileSystemTest, PositionalWritesOverwriteInPlaceAndExtendPastTheEnd) {
  Write(Path("p"), "0123456789");
  auto file = file_system_->OpenPositional(Path("p"), 0600);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  ASSERT_TRUE((*file)->WriteAt(2, "ab").ok());
  EXPECT_EQ((*file)->Size().value(), 10u);
  ASSERT_TRUE((*file)->WriteAt(12, "xy").ok());  // the gap reads as zeros
  ASSERT_TRUE((*file)->Sync().ok());
  EXPECT_EQ((*file)->Size().value(), 14u);
  EXPECT_EQ(file_system_->ReadFile(Path("p")).value(),
            std::string("01ab456789") + std::string(2, '\0') + "xy");
  ASSERT_TRUE((*file)->Close().ok());
  auto created = file_system_->OpenPositional(Path("new"), 0600);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ((*created)->Size().value(), 0u);
}

TEST_F(FileSystemTest, OpenRandomAccessOfAMissingFileIsNotFound) {
  EXPECT_EQ(file_system_->OpenRandomAccess(Path("missing")).status().code(), StatusCode::kNotFound);
}

// The open descriptor keeps the file: compaction deletes segment files that
// queries may still be reading.
TEST_F(FileSystemTest, AnOpenFileStaysReadableAfterItsPathIsRemovedOrReplaced) {
  Write(Path("b"), "first contents");
  auto file = file_system_->OpenRandomAccess(Path("b"));
  ASSERT_TRUE(file.ok());
  Write(Path("b"), "replaced");
  std::string out;
  ASSERT_TRUE((*file)->ReadAt(0, 5, &out).ok());
  EXPECT_EQ(out, "first");
  ASSERT_TRUE(file_system_->Remove(Path("b")).ok());
  ASSERT_TRUE((*file)->ReadAt(6, 8, &out).ok());
  EXPECT_EQ(out, "contents");
  EXPECT_EQ((*file)->Size().value(), 14u);
}

TEST_F(FileSystemTest, ATruncationAfterOpenShowsAsAShortRead) {
  Write(Path("c"), "0123456789");
  auto file = file_system_->OpenRandomAccess(Path("c"));
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(file_system_->Truncate(Path("c"), 6).ok());
  std::string out;
  ASSERT_TRUE((*file)->ReadAt(4, 4, &out).ok());
  EXPECT_EQ(out, "45");
  EXPECT_EQ((*file)->Size().value(), 6u);
}

TEST_F(FileSystemTest, ManyThreadsReadOneFileAtOnce) {
  std::string contents;
  for (int value = 0; value < 100'000; ++value) {
    contents += static_cast<char>('a' + value % 26);
  }
  Write(Path("d"), contents);
  auto file = file_system_->OpenRandomAccess(Path("d"));
  ASSERT_TRUE(file.ok());
  const RandomAccessFile& shared = **file;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (size_t thread_idx = 0; thread_idx < mismatches.size(); ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      std::string out;
      for (uint64_t offset = thread_idx; offset + 50 < contents.size(); offset += 997) {
        if (!shared.ReadAt(offset, 50, &out).ok() || out != contents.substr(offset, 50)) {
          ++mismatches[thread_idx];
        }
      }
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace minpanel
