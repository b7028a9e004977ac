// KeyStore: the current key per project, explicit rotation, the replaced
// keys kept beside it (or destroyed), and what a damaged or failed write
// leaves in force.
#include "privacy/keys.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/fault_file_system.h"

namespace minpanel::privacy {
namespace {

constexpr size_t kKeyFileBytes = 48;

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A key file in format version 1 (docs/formats/keys.md).
std::string KeyFile(uint32_t version, uint8_t fill) {
  std::string bytes("MPKEY\0\0\0", 8);
  for (const uint32_t field : {1U, version}) {
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      bytes.push_back(static_cast<char>((field >> (8 * byte_idx)) & 0xFF));
    }
  }
  bytes.append(kKeyBytes, static_cast<char>(fill));
  return bytes;
}

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-keystore-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
    store_ = OpenStore();
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::unique_ptr<KeyStore> OpenStore() {
    auto store = KeyStore::Open(folder_.string(), file_system_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  ProjectKey Current(KeyStore& store, uint32_t project_id) {
    auto key = store.GetOrCreate(project_id);
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    return key.ok() ? *key : ProjectKey{};
  }

  std::vector<uint32_t> Versions(uint32_t project_id) {
    auto keys = store_->AllVersions(project_id);
    EXPECT_TRUE(keys.ok()) << keys.status().ToString();
    std::vector<uint32_t> versions;
    for (const ProjectKey& key : keys.ok() ? *keys : std::vector<ProjectKey>{}) {
      versions.push_back(key.version);
    }
    return versions;
  }

  std::filesystem::path folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::unique_ptr<KeyStore> store_;
};

TEST_F(KeyStoreTest, RotationIncrementsTheVersionAndKeepsTheOldKeyFile) {
  const ProjectKey first = Current(*store_, 7);
  const std::string first_file = ReadBytes(folder_ / "project-7.key");
  ASSERT_EQ(first_file.size(), kKeyFileBytes);

  auto rotated = store_->Rotate(7, false);
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ(rotated->old_version, 1U);
  EXPECT_EQ(rotated->new_version, 2U);
  EXPECT_EQ(rotated->old_keys_destroyed, 0U);

  const ProjectKey second = Current(*store_, 7);
  EXPECT_EQ(second.version, 2U);
  EXPECT_NE(second.bytes, first.bytes);
  EXPECT_EQ(ReadBytes(folder_ / "project-7.v1.key"), first_file)
      << "the kept file is the old key file, byte for byte";
  struct stat info {};
  ASSERT_EQ(::stat((folder_ / "project-7.v1.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600U);

  // A new process reads the new key.
  EXPECT_EQ(Current(*OpenStore(), 7).bytes, second.bytes);
}

TEST_F(KeyStoreTest, AllVersionsListsEveryKeyNewestFirst) {
  EXPECT_TRUE(Versions(7).empty()) << "no key yet: no pseudonyms to compute";
  const ProjectKey first = Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  const ProjectKey second = Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  const ProjectKey third = Current(*store_, 7);

  auto keys = store_->AllVersions(7);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  ASSERT_EQ(keys->size(), 3U);
  EXPECT_EQ((*keys)[0].version, 3U);
  EXPECT_EQ((*keys)[0].bytes, third.bytes);
  EXPECT_EQ((*keys)[1].version, 2U);
  EXPECT_EQ((*keys)[1].bytes, second.bytes);
  EXPECT_EQ((*keys)[2].version, 1U);
  EXPECT_EQ((*keys)[2].bytes, first.bytes);
}

TEST_F(KeyStoreTest, DestroyOldRemovesEveryReplacedKeyOfThatProjectOnly) {
  Current(*store_, 7);
  Current(*store_, 71);  // project-71.* must not be taken for project-7.*
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  ASSERT_TRUE(store_->Rotate(71, false).ok());

  auto rotated = store_->Rotate(7, true);
  ASSERT_TRUE(rotated.ok()) << rotated.status().ToString();
  EXPECT_EQ(rotated->new_version, 4U);
  EXPECT_EQ(rotated->old_keys_destroyed, 2U);
  EXPECT_EQ(Versions(7), std::vector<uint32_t>{4});
  EXPECT_FALSE(std::filesystem::exists(folder_ / "project-7.v1.key"));
  EXPECT_FALSE(std::filesystem::exists(folder_ / "project-7.v2.key"));
  EXPECT_FALSE(std::filesystem::exists(folder_ / "project-7.v3.key"))
      << "the key just replaced is not kept either";
  EXPECT_EQ(Versions(71), (std::vector<uint32_t>{2, 1}));
}

TEST_F(KeyStoreTest, RotatingAProjectWithoutAKeyIsNotFound) {
  auto rotated = store_->Rotate(9, false);
  ASSERT_FALSE(rotated.ok());
  EXPECT_EQ(rotated.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(folder_ / "project-9.key"));
}

TEST_F(KeyStoreTest, DamagedOldVersionFileIsCorruption) {
  Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  WriteBytes(folder_ / "project-7.v1.key", "not a key");
  auto keys = store_->AllVersions(7);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), StatusCode::kCorruption);
  EXPECT_NE(keys.status().message().find("project-7.v1.key"), std::string::npos);
}

TEST_F(KeyStoreTest, OldVersionFileHoldingAnotherVersionIsCorruption) {
  Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  WriteBytes(folder_ / "project-7.v1.key", KeyFile(5, 0xAB));
  auto keys = store_->AllVersions(7);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), StatusCode::kCorruption);
}

TEST_F(KeyStoreTest, KeptFileNewerThanTheCurrentKeyIsCorruption) {
  Current(*store_, 7);
  WriteBytes(folder_ / "project-7.v4.key", KeyFile(4, 0xAB));
  auto keys = store_->AllVersions(7);
  ASSERT_FALSE(keys.ok());
  EXPECT_EQ(keys.status().code(), StatusCode::kCorruption);
}

TEST_F(KeyStoreTest, KeptFileThatDiffersFromTheCurrentKeyIsNeverOverwritten) {
  Current(*store_, 7);
  const std::string current_file = ReadBytes(folder_ / "project-7.key");
  WriteBytes(folder_ / "project-7.v1.key", KeyFile(1, 0xAB));
  auto rotated = store_->Rotate(7, false);
  ASSERT_FALSE(rotated.ok());
  EXPECT_EQ(rotated.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(ReadBytes(folder_ / "project-7.key"), current_file);
  EXPECT_EQ(ReadBytes(folder_ / "project-7.v1.key"), KeyFile(1, 0xAB));
}

TEST_F(KeyStoreTest, FailedWriteOfTheNewKeyLeavesThePreviousKeyInForce) {
  const ProjectKey first = Current(*store_, 7);
  // The kept copy (one key file) fits; the new current key does not.
  file_system_->FailWritesAfterBytes(kKeyFileBytes);
  auto rotated = store_->Rotate(7, false);
  ASSERT_FALSE(rotated.ok());
  EXPECT_EQ(rotated.status().code(), StatusCode::kResourceExhausted);
  file_system_->Reset();

  EXPECT_EQ(Current(*store_, 7).bytes, first.bytes);
  const ProjectKey reread = Current(*OpenStore(), 7);
  EXPECT_EQ(reread.version, 1U);
  EXPECT_EQ(reread.bytes, first.bytes);
  EXPECT_EQ(Versions(7), std::vector<uint32_t>{1}) << "the kept copy is the current key";

  // Trying again completes the rotation over the copy left behind.
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  EXPECT_EQ(Versions(7), (std::vector<uint32_t>{2, 1}));
}

TEST_F(KeyStoreTest, FailedWriteOfTheKeptCopyChangesNothing) {
  const ProjectKey first = Current(*store_, 7);
  file_system_->FailWritesAfterBytes(0);
  auto rotated = store_->Rotate(7, false);
  ASSERT_FALSE(rotated.ok());
  file_system_->Reset();
  EXPECT_FALSE(std::filesystem::exists(folder_ / "project-7.v1.key"));
  EXPECT_EQ(Current(*OpenStore(), 7).bytes, first.bytes);
}

TEST_F(KeyStoreTest, FailedDestroyingRotationLeavesThePreviousKeysInForce) {
  Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  const ProjectKey second = Current(*store_, 7);
  file_system_->FailWritesAfterBytes(0);
  ASSERT_FALSE(store_->Rotate(7, true).ok());
  file_system_->Reset();
  EXPECT_EQ(Current(*store_, 7).bytes, second.bytes);
  EXPECT_EQ(Versions(7), (std::vector<uint32_t>{2, 1})) << "nothing is destroyed";
}

TEST_F(KeyStoreTest, KeyRotatedByAnotherProcessIsSeenAfterForget) {
  const ProjectKey first = Current(*store_, 7);
  std::unique_ptr<KeyStore> other = OpenStore();
  ASSERT_TRUE(other->Rotate(7, false).ok());
  EXPECT_EQ(Current(*store_, 7).bytes, first.bytes) << "cached until Forget";
  store_->Forget();
  const ProjectKey now = Current(*store_, 7);
  EXPECT_EQ(now.version, 2U);
  EXPECT_NE(now.bytes, first.bytes);
}

TEST_F(KeyStoreTest, LostCurrentKeyIsReplacedUnderTheNextVersion) {
  Current(*store_, 7);
  ASSERT_TRUE(store_->Rotate(7, false).ok());
  std::filesystem::remove(folder_ / "project-7.key");
  std::unique_ptr<KeyStore> reopened = OpenStore();
  EXPECT_EQ(Current(*reopened, 7).version, 2U) << "never a second version 1 beside the kept one";
}

TEST_F(KeyStoreTest, RotationStopsAtTheVersionLimit) {
  std::filesystem::create_directories(folder_);
  WriteBytes(folder_ / "project-7.key", KeyFile(kKeyVersionsMax, 0x11));
  auto rotated = store_->Rotate(7, false);
  ASSERT_FALSE(rotated.ok());
  EXPECT_EQ(rotated.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(rotated.status().message().find("kKeyVersionsMax"), std::string::npos);
}

TEST_F(KeyStoreTest, KeyVersionZeroIsCorruption) {
  std::filesystem::create_directories(folder_);
  WriteBytes(folder_ / "project-7.key", KeyFile(0, 0x11));
  auto key = store_->GetOrCreate(7);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace minpanel::privacy
