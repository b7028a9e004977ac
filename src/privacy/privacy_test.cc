#include "privacy/privacy.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace minpanel::privacy {
namespace {

class KeyFolder : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-keys-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::filesystem::path folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
};

ProjectKey FixedKey(uint8_t fill) {
  ProjectKey key;
  key.version = 1;
  key.bytes.fill(fill);
  return key;
}

RawEvent SampleEvent() {
  RawEvent raw;
  raw.name = "Signed Up";
  raw.time_ms = 1'700'000'000'000;
  raw.distinct_id = "user-0042";
  raw.client_ip = "203.0.113.7";
  raw.user_agent = "Mozilla/5.0";
  raw.properties = {{"plan", Value::String("pro")},
                    {"$email", Value::String("someone@example.test")},
                    {"$name", Value::String("Test Person")},
                    {"seats", Value::Int(3)}};
  return raw;
}

TEST_F(KeyFolder, KeyIsCreatedOnceWithPrivateModeAndReloaded) {
  ProjectKey first;
  {
    auto store = KeyStore::Open(folder_.string(), file_system_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto key = (*store)->GetOrCreate(7);
    ASSERT_TRUE(key.ok());
    first = *key;
  }
  struct stat info {};
  ASSERT_EQ(::stat((folder_ / "project-7.key").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600U);
  ASSERT_EQ(::stat(folder_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0700U);

  auto reopened = KeyStore::Open(folder_.string(), file_system_);
  ASSERT_TRUE(reopened.ok());
  auto again = (*reopened)->GetOrCreate(7);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->bytes, first.bytes);
  EXPECT_EQ(again->version, 1U);
  auto other = (*reopened)->GetOrCreate(8);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->bytes, first.bytes);
}

TEST_F(KeyFolder, DamagedKeyFileIsCorruption) {
  std::filesystem::create_directories(folder_);
  std::ofstream(folder_ / "project-3.key") << "not a key";
  auto store = KeyStore::Open(folder_.string(), file_system_);
  ASSERT_TRUE(store.ok());
  auto key = (*store)->GetOrCreate(3);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kCorruption);
}

TEST(PolicyTest, PseudonymIsStableAndDependsOnTheKey) {
  const Policy policy(FixedKey(1));
  const Policy other(FixedKey(2));
  EXPECT_EQ(policy.Pseudonym("user-0042"), policy.Pseudonym("user-0042"));
  EXPECT_NE(policy.Pseudonym("user-0042"), policy.Pseudonym("user-0043"));
  EXPECT_NE(policy.Pseudonym("user-0042"), other.Pseudonym("user-0042"));
}

TEST(PolicyTest, ExportedPseudonymIsTakenAsIs) {
  const Policy policy(FixedKey(1));
  const Id128 subject = policy.Pseudonym("user-0042");
  EXPECT_EQ(policy.Pseudonym(FormatPseudonym(subject)), subject);
  // A malformed marker is just a distinct id like any other.
  EXPECT_NE(policy.Pseudonym("psn_xyz"), Id128{});
}

TEST(PolicyTest, EventKeepsNoRawIdentifierAndDropsPersonProperties) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  const Event event = policy.Apply(SampleEvent(), &counters);
  EXPECT_EQ(event.name, "Signed Up");
  EXPECT_EQ(event.time_ms, 1'700'000'000'000);
  EXPECT_EQ(event.subject, policy.Pseudonym("user-0042"));
  ASSERT_EQ(event.properties.size(), 2U);
  EXPECT_EQ(event.properties[0].key, "plan");
  EXPECT_EQ(event.properties[1].key, "seats");
  EXPECT_EQ(counters.properties_dropped, 2U);
  EXPECT_EQ(counters.context_fields_discarded, 2U);  // IP and user agent
}

TEST(PolicyTest, InsertIdFromClientHexOrHashOrContent) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  RawEvent hex = SampleEvent();
  hex.insert_id = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(policy.Apply(std::move(hex), &counters).insert_id.ToHex(),
            "0123456789abcdef0123456789abcdef");

  RawEvent named = SampleEvent();
  named.insert_id = "cd16pr1nfsj5dggc";
  RawEvent named_again = SampleEvent();
  named_again.insert_id = "cd16pr1nfsj5dggc";
  named_again.time_ms += 1;  // the client's id wins over content
  EXPECT_EQ(policy.Apply(std::move(named), &counters).insert_id,
            policy.Apply(std::move(named_again), &counters).insert_id);

  RawEvent content = SampleEvent();
  RawEvent same_content = SampleEvent();
  RawEvent later = SampleEvent();
  later.time_ms += 1;
  const Id128 content_id = policy.Apply(std::move(content), &counters).insert_id;
  EXPECT_EQ(content_id, policy.Apply(std::move(same_content), &counters).insert_id);
  EXPECT_NE(content_id, policy.Apply(std::move(later), &counters).insert_id);
}

TEST(PolicyTest, GroupSubjectsAreSeparateFromUserSubjects) {
  const Policy policy(FixedKey(1));
  PolicyCounters counters;
  RawProfileUpdate group;
  group.group_key = "company";
  group.distinct_id = "user-0042";
  group.properties = {{"name", Value::String("Acme")}};
  const ProfileUpdate update = policy.Apply(std::move(group), &counters);
  EXPECT_NE(update.subject, policy.Pseudonym("user-0042"));
  EXPECT_EQ(update.group_key, "company");
  ASSERT_EQ(update.properties.size(), 1U);  // a company's name is not a person's
}

}  // namespace
}  // namespace minpanel::privacy
