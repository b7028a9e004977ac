#include "privacy/policy_store.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace minpanel::privacy {
namespace {

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

  std::filesystem::path folder_;
  PolicyStore Make() { return PolicyStore(folder_.string(), NewPosixFileSystem()); }
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

}  // namespace
}  // namespace minpanel::privacy
