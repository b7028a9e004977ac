#include "privacy/policy_store.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "core/fault_file_system.h"

namespace minpanel::privacy {
namespace {

constexpr int64_t kStartMs = 1'795'685'260'000;

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-policies-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(folder_ / name) << text;
  }

  std::string Read(const std::filesystem::path& path) {
    std::ifstream file(path);
    return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }

  std::filesystem::path folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kStartMs);
  PolicyStore Make() { return PolicyStore(folder_.string(), file_system_, clock_); }
};

TEST_F(PolicyStoreTest, ProjectWithoutAFileGetsTheDefault) {
  PolicyStore store = Make();
  auto refused = store.Load({"demo"});
  ASSERT_TRUE(refused.ok());
  EXPECT_TRUE(refused->empty());
  const VersionedPolicy policy = store.Get("demo");
  EXPECT_EQ(policy.version, 0U);
  EXPECT_EQ(policy.spec->ip, Action::kGeneralise);
}

TEST_F(PolicyStoreTest, EachDistinctTextGetsTheNextVersion) {
  PolicyStore store = Make();
  Write("demo.toml", "ip = \"drop\"\n");
  ASSERT_TRUE(store.Load({"demo"}).ok());
  EXPECT_EQ(store.Get("demo").version, 1U);
  EXPECT_EQ(store.Get("demo").spec->ip, Action::kDrop);
  ASSERT_TRUE(store.Load({"demo"}).ok());
  EXPECT_EQ(store.Get("demo").version, 1U) << "the same text is the same version";
  Write("demo.toml", "ip = \"keep\"\n");
  ASSERT_TRUE(store.Load({"demo"}).ok());
  EXPECT_EQ(store.Get("demo").version, 2U);
  EXPECT_TRUE(std::filesystem::exists(folder_ / "history" / "demo" / "1.toml"));
  EXPECT_TRUE(std::filesystem::exists(folder_ / "history" / "demo" / "2.toml"));
}

TEST_F(PolicyStoreTest, BrokenFileKeepsThePreviousPolicyAndSaysWhy) {
  PolicyStore store = Make();
  Write("demo.toml", "ip = \"drop\"\n");
  ASSERT_TRUE(store.Load({"demo"}).ok());
  Write("demo.toml", "ip = \"hide\"\n");
  auto refused = store.Load({"demo"});
  ASSERT_TRUE(refused.ok());
  ASSERT_EQ(refused->size(), 1U);
  EXPECT_NE((*refused)[0].find("demo.toml"), std::string::npos);
  EXPECT_NE((*refused)[0].find("'ip' must be one of"), std::string::npos);
  EXPECT_EQ(store.Get("demo").spec->ip, Action::kDrop);
  EXPECT_EQ(store.Get("demo").version, 1U);
}

TEST_F(PolicyStoreTest, PutRecordsAVersionWritesTheFileAndPutsItInForce) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Load({"demo"}).ok());
  const std::string text = "ip = \"drop\"\n";
  auto put = store.Put("demo", text);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->policy.version, 1U);
  EXPECT_TRUE(put->new_version);
  EXPECT_EQ(store.Get("demo").version, 1U);
  EXPECT_EQ(store.Get("demo").spec->ip, Action::kDrop);
  EXPECT_EQ(store.Get("demo").text, text);
  EXPECT_EQ(Read(folder_ / "demo.toml"), text);
  EXPECT_EQ(Read(folder_ / "history" / "demo" / "1.toml"), text);

  auto history = store.History("demo");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 1U);
  EXPECT_EQ((*history)[0].version, 1U);
  EXPECT_EQ((*history)[0].recorded_ms, kStartMs);
  EXPECT_EQ((*history)[0].bytes, text.size());
}

TEST_F(PolicyStoreTest, PutOfTheSameTextIsTheSameVersion) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  clock_->Advance(1000);
  auto again = store.Put("demo", "ip = \"drop\"\n");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->policy.version, 1U);
  EXPECT_FALSE(again->new_version);
  auto changed = store.Put("demo", "ip = \"keep\"\n");
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->policy.version, 2U);
  auto history = store.History("demo");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2U);
  EXPECT_EQ((*history)[0].recorded_ms, kStartMs) << "the first time, not the repeat's";
  EXPECT_EQ((*history)[1].recorded_ms, kStartMs + 1000);
}

TEST_F(PolicyStoreTest, RefusedPutChangesNothing) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  auto refused = store.Put("demo", "ip = \"drop\"\n[[rule]]\nmatch = \"x\"\naction = \"hide\"\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("action"), std::string::npos)
      << refused.status().message();
  auto unparsable = store.Put("demo", "ip = = 3\n");
  ASSERT_FALSE(unparsable.ok());
  EXPECT_NE(unparsable.status().message().find("line 1"), std::string::npos)
      << unparsable.status().message();
  auto oversize = store.Put("demo", std::string(kPolicyBytesMax + 1, '#'));
  EXPECT_EQ(oversize.status().code(), StatusCode::kResourceExhausted);

  EXPECT_EQ(store.Get("demo").version, 1U);
  EXPECT_EQ(Read(folder_ / "demo.toml"), "ip = \"drop\"\n");
  EXPECT_EQ(store.History("demo")->size(), 1U);
}

TEST_F(PolicyStoreTest, ReloadAfterPutKeepsThePutVersion) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Load({"demo"}).ok());
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  ASSERT_TRUE(store.Put("demo", "ip = \"keep\"\n").ok());
  auto refused = store.Load({"demo"});
  ASSERT_TRUE(refused.ok());
  EXPECT_TRUE(refused->empty());
  EXPECT_EQ(store.Get("demo").version, 2U);
  EXPECT_EQ(store.Get("demo").spec->ip, Action::kKeep);
  EXPECT_EQ(store.History("demo")->size(), 2U);

  // A new process sees the same.
  PolicyStore reopened = Make();
  ASSERT_TRUE(reopened.Load({"demo"}).ok());
  EXPECT_EQ(reopened.Get("demo").version, 2U);
}

TEST_F(PolicyStoreTest, FileChangeAfterPutIsTheNextVersionWithItsTime) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  Write("demo.toml", "ip = \"keep\"\n");
  clock_->Advance(5000);
  ASSERT_TRUE(store.Load({"demo"}).ok());
  EXPECT_EQ(store.Get("demo").version, 2U);
  auto history = store.History("demo");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2U);
  EXPECT_EQ((*history)[1].recorded_ms, kStartMs + 5000);
}

TEST_F(PolicyStoreTest, VersionTextIsEachRecordedTextOrNotFound) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  ASSERT_TRUE(store.Put("demo", "ip = \"keep\"\n").ok());
  EXPECT_EQ(*store.VersionText("demo", 1), "ip = \"drop\"\n");
  EXPECT_EQ(*store.VersionText("demo", 2), "ip = \"keep\"\n");
  EXPECT_EQ(store.VersionText("demo", 3).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.VersionText("demo", 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.VersionText("other", 1).status().code(), StatusCode::kNotFound);
  auto none = store.History("other");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(PolicyStoreTest, HistoryRecordedBeforeTimesWereKeptHasUnknownTimes) {
  std::filesystem::create_directories(folder_ / "history" / "demo");
  Write("history/demo/1.toml", "ip = \"drop\"\n");
  Write("demo.toml", "ip = \"keep\"\n");
  PolicyStore store = Make();
  ASSERT_TRUE(store.Load({"demo"}).ok());
  auto history = store.History("demo");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2U);
  EXPECT_EQ((*history)[0].recorded_ms, 0) << "unknown";
  EXPECT_EQ((*history)[1].recorded_ms, kStartMs);
}

TEST_F(PolicyStoreTest, DamagedVersionsFileIsCorruption) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  Write("history/demo/versions.tsv", "minpanel-policy-versions\t1\n1\tyesterday\n");
  auto history = store.History("demo");
  ASSERT_FALSE(history.ok());
  EXPECT_EQ(history.status().code(), StatusCode::kCorruption);
  EXPECT_NE(history.status().message().find("versions.tsv: line 2"), std::string::npos)
      << history.status().message();
  Write("history/demo/versions.tsv", "minpanel-policy-versions\t2\n");
  EXPECT_NE(store.History("demo").status().message().find("newer"), std::string::npos);
}

TEST_F(PolicyStoreTest, FailedWriteLeavesThePreviousPolicyInForce) {
  PolicyStore store = Make();
  ASSERT_TRUE(store.Put("demo", "ip = \"drop\"\n").ok());
  file_system_->FailWritesAfterBytes(0);
  auto put = store.Put("demo", "ip = \"keep\"\n");
  ASSERT_FALSE(put.ok());
  file_system_->Reset();
  EXPECT_EQ(store.Get("demo").version, 1U);
  EXPECT_EQ(store.Get("demo").spec->ip, Action::kDrop);
  EXPECT_EQ(Read(folder_ / "demo.toml"), "ip = \"drop\"\n");
  ASSERT_TRUE(store.Put("demo", "ip = \"keep\"\n").ok());
  EXPECT_EQ(store.Get("demo").version, 2U);
}

}  // namespace
}  // namespace minpanel::privacy
