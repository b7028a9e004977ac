#include "service/access_keys.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/test_folder.h"
#include "core/time_units.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

class AccessKeyStoreTest : public ::testing::Test {
 protected:
  void TearDown() override { RemoveTestFolderUnlessFailed(folder_); }
  void SetUp() override {
    folder_ = TestFolder("access_keys");
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
    auto store = AccessKeyStore::Open(folder_, file_system_, clock_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  AccessKeySpec Spec() {
    AccessKeySpec spec;
    spec.name = "analyst";
    spec.scopes = static_cast<uint32_t>(Scope::kQueryAggregate);
    spec.project_id = 1;
    return spec;
  }

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_ = NewPosixFileSystem();
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
  std::unique_ptr<AccessKeyStore> store_;
};

TEST_F(AccessKeyStoreTest, CreatedKeyIsFoundByItsSecretOnlyAndSurvivesReopen) {
  auto created = store_->Create(Spec());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE(created->secret.starts_with(created->key.id + "_"));
  EXPECT_EQ(created->secret.size(), 4 + 16 + 1 + 64u);
  auto found = store_->FindBySecret(created->secret);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, created->key.id);
  std::string wrong = created->secret;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  EXPECT_FALSE(store_->FindBySecret(wrong).has_value());
  EXPECT_FALSE(store_->FindBySecret(created->key.id).has_value());
  // Only the hash is on disk.
  const std::string file = *file_system_->ReadFile(folder_ + "/access_keys.json");
  EXPECT_EQ(file.find(created->secret.substr(21)), std::string::npos);
  EXPECT_NE(file.find(internal::Sha256Hex(created->secret)), std::string::npos);
  auto reopened = AccessKeyStore::Open(folder_, file_system_, clock_);
  ASSERT_TRUE(reopened.ok());
  ASSERT_TRUE((*reopened)->FindBySecret(created->secret).has_value());
  EXPECT_EQ((*reopened)->FindBySecret(created->secret)->scopes, Spec().scopes);
}

TEST_F(AccessKeyStoreTest, RotationReplacesTheSecret) {
  auto created = store_->Create(Spec());
  ASSERT_TRUE(created.ok());
  auto rotated = store_->Rotate(created->key.id);
  ASSERT_TRUE(rotated.ok());
  EXPECT_EQ(rotated->key.id, created->key.id);
  EXPECT_FALSE(store_->FindBySecret(created->secret).has_value());
  EXPECT_TRUE(store_->FindBySecret(rotated->secret).has_value());
}

TEST_F(AccessKeyStoreTest, RevocationIsKeptAndARevokedKeyCannotRotate) {
  auto created = store_->Create(Spec());
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(store_->Revoke(created->key.id).ok());
  EXPECT_NE(store_->FindBySecret(created->secret)->revoked_ms, 0);
  EXPECT_EQ(store_->Rotate(created->key.id).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Revoke("mpk_0000000000000000").status().code(), StatusCode::kNotFound);
}

TEST_F(AccessKeyStoreTest, RefusesBadSpecsNamingTheField) {
  AccessKeySpec spec = Spec();
  spec.scopes = 0;
  EXPECT_NE(store_->Create(spec).status().message().find("scopes"), std::string::npos);
  spec = Spec();
  spec.name = "";
  EXPECT_NE(store_->Create(spec).status().message().find("name"), std::string::npos);
  spec = Spec();
  spec.expires_ms = clock_->NowMs() - 1;
  EXPECT_NE(store_->Create(spec).status().message().find("expires_ms"), std::string::npos);
  spec = Spec();
  spec.events.assign(kAccessKeyListItemsMax + 1, "e");
  EXPECT_EQ(store_->Create(spec).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(store_->List().empty());
}

TEST(ScopeTest, NamesRoundTrip) {
  for (size_t scope_idx = 0; scope_idx < kScopeCount; ++scope_idx) {
    const auto scope = static_cast<Scope>(1u << scope_idx);
    EXPECT_EQ(ParseScope(ScopeName(scope)), scope);
  }
  EXPECT_FALSE(ParseScope("root").has_value());
  EXPECT_EQ(
      ScopeList(static_cast<uint32_t>(Scope::kExport) | static_cast<uint32_t>(Scope::kIngest)),
      "ingest,export");
}

TEST_F(AccessKeyStoreTest, LimitsAreKeptAndAFileWithoutThemReadsAsNone) {
  AccessKeySpec spec = Spec();
  spec.limits = KeyLimits{5, 1000, 20};
  auto created = store_->Create(spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto reopened = AccessKeyStore::Open(folder_, file_system_, clock_);
  ASSERT_TRUE(reopened.ok());
  const auto key = (*reopened)->FindById(created->key.id);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->limits.requests_per_second, 5u);
  EXPECT_EQ(key->limits.export_rows_per_day, 1000u);
  EXPECT_EQ(key->limits.export_subjects_per_day, 20u);
  spec.limits.requests_per_second = kKeyRequestsPerSecondMax + 1;
  const auto refused = store_->Create(spec);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("rate"), std::string::npos);
}

TEST(KeyLimiterTest, ATokenBucketRefusesWithRetryAfterAndRefills) {
  auto clock = std::make_shared<FakeClock>(1'700'000'000'000);
  KeyLimiter limiter(clock);
  for (int request_idx = 0; request_idx < 3; ++request_idx) {
    EXPECT_TRUE(limiter.Admit("mpk_a", 3).ok());
  }
  const Status refused = limiter.Admit("mpk_a", 3);
  EXPECT_EQ(RetryAfterSeconds(refused), 1u);
  EXPECT_NE(refused.message().find("3 requests per second (rate)"), std::string::npos);
  EXPECT_TRUE(limiter.Admit("mpk_b", 3).ok());  // another key has its own bucket
  clock->Advance(400);                          // 1.2 tokens back
  EXPECT_TRUE(limiter.Admit("mpk_a", 3).ok());
  EXPECT_FALSE(limiter.Admit("mpk_a", 3).ok());
  EXPECT_TRUE(limiter.Admit("mpk_a", 0).ok());  // no limit
}

TEST(KeyLimiterTest, ExportQuotasCountTheDayAndResetAtMidnightUtc) {
  auto clock = std::make_shared<FakeClock>(20'000 * kDayMs + 1000);
  KeyLimiter limiter(clock);
  const KeyLimits limits{0, 100, 10};
  auto left = limiter.ExportRowsLeft("mpk_a", limits);
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, 100u);
  limiter.CountExport("mpk_a", 60, 4);
  EXPECT_EQ(*limiter.ExportRowsLeft("mpk_a", limits), 40u);
  limiter.CountExport("mpk_a", 40, 4);
  const auto rows_out = limiter.ExportRowsLeft("mpk_a", limits);
  EXPECT_NE(rows_out.status().message().find("export_rows_per_day"), std::string::npos);
  EXPECT_EQ(RetryAfterSeconds(rows_out.status()), 86'399u);
  EXPECT_EQ(*limiter.ExportRowsLeft("mpk_a", KeyLimits{0, 0, 0}), UINT64_MAX);
  const auto subjects_out = limiter.ExportRowsLeft("mpk_a", KeyLimits{0, 1000, 8});
  EXPECT_NE(subjects_out.status().message().find("export_subjects_per_day"), std::string::npos);
  clock->Advance(kDayMs);
  EXPECT_EQ(*limiter.ExportRowsLeft("mpk_a", limits), 100u);
}

TEST(KeyLimiterTest, RetryAfterIsReadOnlyFromARateLimit) {
  EXPECT_EQ(RetryAfterSeconds(RateLimited("x", 7)), 7u);
  EXPECT_EQ(RetryAfterSeconds(Status::ResourceExhausted("body: too big (retry after 3 s)")),
            std::nullopt);
  EXPECT_EQ(RetryAfterSeconds(Status::InvalidArgument("rate limit: x (retry after 3 s)")),
            std::nullopt);
  EXPECT_EQ(EffectiveLimits(KeyLimits{0, 5, 0}, KeyLimits{9, 9, 9}).requests_per_second, 9u);
  EXPECT_EQ(EffectiveLimits(KeyLimits{0, 5, 0}, KeyLimits{9, 9, 9}).export_rows_per_day, 5u);
}

}  // namespace
}  // namespace minpanel::service
