#include "core/secret_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/fault_file_system.h"

namespace minpanel {
namespace {

constexpr SecretFileFormat kFormat{
    .magic = std::string_view("MPTEST\0\0", 8), .format_version = 1, .kind = "test file"};
constexpr DaySecretFiles::Names kNames{.prefix = "day-", .extension = ".bin", .secret = "secret"};
// 2026-11-26.
constexpr int64_t kDay = 20'783;

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A file laid out by hand as the formats' docs say, not by the code under test.
std::string HandMadeFile(std::string_view magic, uint32_t format_version, uint32_t label,
                         char fill) {
  std::string bytes(magic);
  for (const uint32_t field : {format_version, label}) {
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      bytes.push_back(static_cast<char>((field >> (8 * byte_idx)) & 0xFF));
    }
  }
  bytes.append(kSecretBytes, fill);
  return bytes;
}

Secret Filled(uint8_t fill) {
  Secret secret{};
  secret.fill(fill);
  return secret;
}

std::vector<std::string> Names(const std::filesystem::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class SecretFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::path(::testing::TempDir()) /
              ("secret_files_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::string Path(const std::string& name) const { return (folder_ / name).string(); }

  std::filesystem::path folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
};

TEST(UtcDayTest, DaysNamesAndBack) {
  EXPECT_EQ(UtcDayOf(0), 0);
  EXPECT_EQ(UtcDayOf(-1), -1);
  EXPECT_EQ(UtcDayOf(86'400'000 - 1), 0);
  EXPECT_EQ(UtcDayName(0), "1970-01-01");
  EXPECT_EQ(UtcDayName(kDay), "2026-11-26");
  EXPECT_EQ(UtcDayName(kDay + 96), "2027-03-02");  // across February
  EXPECT_EQ(ParseUtcDayName("2026-11-26"), kDay);
  EXPECT_EQ(ParseUtcDayName("1970-01-01"), 0);
  for (const std::string_view bad :
       {"2026-02-30", "2026-13-01", "2026-1-26", "2026/11/26", "+026-11-26", "2026-11-26 ", ""}) {
    EXPECT_EQ(ParseUtcDayName(bad), std::nullopt) << bad;
  }
}

TEST_F(SecretFilesTest, WrittenFileHasTheDocumentedLayoutAndReadsBack) {
  ASSERT_TRUE(WriteSecretFile(*file_system_, Path("a"), kFormat, 7, Filled(0xAB)).ok());
  EXPECT_EQ(ReadBytes(folder_ / "a"), HandMadeFile(kFormat.magic, 1, 7, '\xAB'));
  EXPECT_EQ(std::filesystem::status(folder_ / "a").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  Secret secret{};
  EXPECT_EQ(ReadSecretFile(*file_system_, Path("a"), kFormat, &secret).value(), 7u);
  EXPECT_EQ(secret, Filled(0xAB));
}

TEST_F(SecretFilesTest, DamagedFilesAreCorruptionNamingThem) {
  Secret secret{};
  WriteBytes(folder_ / "short", HandMadeFile(kFormat.magic, 1, 7, 'x').substr(0, 30));
  WriteBytes(folder_ / "magic", HandMadeFile("MPOTHER\0", 1, 7, 'x'));
  WriteBytes(folder_ / "newer", HandMadeFile(kFormat.magic, 2, 7, 'x'));
  EXPECT_EQ(ReadSecretFile(*file_system_, Path("short"), kFormat, &secret).status().message(),
            "test file " + Path("short") + ": wrong size or magic");
  EXPECT_EQ(ReadSecretFile(*file_system_, Path("magic"), kFormat, &secret).status().message(),
            "test file " + Path("magic") + ": wrong size or magic");
  const Status newer = ReadSecretFile(*file_system_, Path("newer"), kFormat, &secret).status();
  EXPECT_EQ(newer.code(), StatusCode::kCorruption);
  EXPECT_EQ(newer.message(),
            "test file " + Path("newer") + ": format version 2 is newer than this binary");
  EXPECT_EQ(secret, Secret{});  // nothing taken from a refused file
  EXPECT_EQ(ReadSecretFile(*file_system_, Path("missing"), kFormat, &secret).status().code(),
            StatusCode::kNotFound);
}

TEST_F(SecretFilesTest, AFailedWriteLeavesNoTemporaryFile) {
  // The temporary file is written and synced, then the rename fails: the
  // path is a folder that is not empty.
  std::filesystem::create_directories(folder_ / "a" / "inside");
  const Status written = WriteSecretFile(*file_system_, Path("a"), kFormat, 7, Filled(1));
  EXPECT_FALSE(written.ok());
  EXPECT_EQ(Names(folder_), std::vector<std::string>{"a"});
}

TEST_F(SecretFilesTest, DayFilesAreMadeOnceKeptAndReadFromHandMadeFiles) {
  WriteBytes(folder_ / "day-2026-11-25.bin",
             HandMadeFile(kFormat.magic, 1, static_cast<uint32_t>(kDay - 1), '\x05'));
  DaySecretFiles files(folder_.string(), file_system_, kFormat, kNames);
  int made = 0;
  const auto make = [&made](Secret* secret) {
    ++made;
    *secret = Filled(0x11);
  };
  // An existing file is read, never replaced.
  const Secret* yesterday = files.Get(kDay - 1, true, make).value();
  ASSERT_NE(yesterday, nullptr);
  EXPECT_EQ(*yesterday, Filled(0x05));
  EXPECT_EQ(made, 0);
  // A missing one is absent unless asked to be made, then made and written once.
  EXPECT_EQ(files.Get(kDay, false, make).value(), nullptr);
  const Secret* today = files.Get(kDay, true, make).value();
  EXPECT_EQ(*today, Filled(0x11));
  EXPECT_EQ(files.Get(kDay, true, make).value(), today);
  EXPECT_EQ(made, 1);
  EXPECT_EQ(files.PathOf(kDay), Path("day-2026-11-26.bin"));
  EXPECT_EQ(ReadBytes(folder_ / "day-2026-11-26.bin"),
            HandMadeFile(kFormat.magic, 1, static_cast<uint32_t>(kDay), 0x11));
  // Dropped from memory, read again from the file.
  std::filesystem::remove(folder_ / "day-2026-11-25.bin");
  files.Drop([](int64_t day) { return day == kDay - 1; });
  EXPECT_EQ(files.Get(kDay - 1, false, make).value(), nullptr);
  EXPECT_EQ(files.Get(kDay, false, make).value(), today);
}

TEST_F(SecretFilesTest, AFileOfAnotherDayIsCorruptionAndAFailedWriteKeepsNothing) {
  WriteBytes(folder_ / "day-2026-11-26.bin",
             HandMadeFile(kFormat.magic, 1, static_cast<uint32_t>(kDay + 1), 'x'));
  DaySecretFiles files(folder_.string(), file_system_, kFormat, kNames);
  const auto make = [](Secret* secret) { *secret = Filled(2); };
  EXPECT_EQ(files.Get(kDay, true, make).status().message(),
            "test file " + Path("day-2026-11-26.bin") + ": holds the secret of another day");
  file_system_->FailWritesAfterBytes(0);
  const Status failed = files.Get(kDay + 1, true, make).status();
  EXPECT_EQ(failed.code(), StatusCode::kIoError);
  EXPECT_TRUE(
      failed.message().starts_with("test file " + Path("day-2026-11-27.bin") + " not written: "))
      << failed.message();
  file_system_->Reset();
  EXPECT_EQ(files.Get(kDay + 1, false, make).value(), nullptr);  // nothing kept
}

TEST_F(SecretFilesTest, RemoveFilesTakesOnlyTheDaysAndKindsItIsTold) {
  for (const char* name :
       {"day-2026-11-24.bin", "day-2026-11-25.bin.tmp", "day-2026-11-26.bin",
        "day-2026-11-26.bin.tmp", "day-2026-02-30.bin", "README", "other-2026-11-24.bin"}) {
    WriteBytes(folder_ / name, "x");
  }
  DaySecretFiles files(folder_.string(), file_system_, kFormat, kNames);
  EXPECT_EQ(files.RemoveFiles([](int64_t, bool temporary) { return temporary; }).value(), 2u);
  EXPECT_EQ(files.RemoveFiles([](int64_t day, bool) { return day < kDay; }).value(), 1u);
  EXPECT_EQ(Names(folder_),
            (std::vector<std::string>{"README", "day-2026-02-30.bin", "day-2026-11-26.bin",
                                      "other-2026-11-24.bin"}));
  EXPECT_EQ(files.RemoveFiles([](int64_t, bool) { return false; }).value(), 0u);
}

}  // namespace
}  // namespace minpanel
