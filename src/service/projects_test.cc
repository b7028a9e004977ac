#include "service/projects.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "query/query.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

class ProjectsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = (std::filesystem::temp_directory_path() /
               ("minpanel-projects-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                  .string();
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::unique_ptr<ProjectRegistry> Open() {
    auto registry = ProjectRegistry::Open(folder_, NewPosixFileSystem(), clock_);
    EXPECT_TRUE(registry.ok()) << registry.status().ToString();
    return std::move(registry).value();
  }

  std::string folder_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
};

TEST_F(ProjectsTest, CreatedProjectIsFoundByTokenAndSecretAfterReopen) {
  auto registry = Open();
  auto created = registry->Create("demo", "Europe/Berlin");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->project.id, 1U);
  EXPECT_EQ(created->secret.size(), 64U);
  EXPECT_EQ(created->project.token.size(), 32U);

  auto reopened = Open();
  auto by_token = reopened->FindByToken(created->project.token);
  ASSERT_TRUE(by_token.has_value());
  EXPECT_EQ(by_token->name, "demo");
  EXPECT_EQ(by_token->time_zone, "Europe/Berlin");
  EXPECT_TRUE(reopened->FindBySecret(created->secret).has_value());
  EXPECT_FALSE(reopened->FindBySecret(created->project.token).has_value());
  EXPECT_FALSE(reopened->FindByToken(created->secret).has_value());
}

TEST_F(ProjectsTest, SecretIsNotStoredInClear) {
  auto registry = Open();
  auto created = registry->Create("demo", "UTC");
  ASSERT_TRUE(created.ok());
  auto contents = NewPosixFileSystem()->ReadFile(folder_ + "/projects.json");
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(contents->find(created->secret), std::string::npos);
  EXPECT_NE(contents->find(created->project.secret_sha256_hex), std::string::npos);
  EXPECT_EQ(created->project.secret_sha256_hex, internal::Sha256Hex(created->secret));
  EXPECT_EQ(created->secret.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(created->project.token.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST_F(ProjectsTest, RotatedSecretReplacesTheOldOne) {
  auto registry = Open();
  auto created = registry->Create("demo", "UTC");
  ASSERT_TRUE(created.ok());
  auto rotated = registry->RotateSecret("demo");
  ASSERT_TRUE(rotated.ok());
  EXPECT_FALSE(registry->FindBySecret(created->secret).has_value());
  EXPECT_TRUE(registry->FindBySecret(rotated->secret).has_value());
  EXPECT_EQ(registry->RotateSecret("missing").status().code(), StatusCode::kNotFound);
}

TEST_F(ProjectsTest, BadNamesZonesAndDuplicatesAreRefused) {
  auto registry = Open();
  EXPECT_FALSE(registry->Create("", "UTC").ok());
  EXPECT_FALSE(registry->Create("has space", "UTC").ok());
  EXPECT_FALSE(registry->Create(std::string(65, 'a'), "UTC").ok());
  EXPECT_NE(registry->Create("demo", "Mars/Olympus").status().message().find("time zone"),
            std::string::npos);
  ASSERT_TRUE(registry->Create("demo", "UTC").ok());
  EXPECT_FALSE(registry->Create("demo", "UTC").ok());
  auto second = registry->Create("other", "UTC");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->project.id, 2U);
}

TEST_F(ProjectsTest, ReloadSeesProjectsCreatedByAnotherProcess) {
  auto server = Open();
  auto cli = Open();
  auto created = cli->Create("late", "UTC");
  ASSERT_TRUE(created.ok());
  EXPECT_FALSE(server->FindByToken(created->project.token).has_value());
  ASSERT_TRUE(server->Reload().ok());
  EXPECT_TRUE(server->FindByToken(created->project.token).has_value());
}

TEST_F(ProjectsTest, DamagedFileIsCorruption) {
  ASSERT_TRUE(NewPosixFileSystem()->WriteFileAtomically(folder_ + "/projects.json", "{]", 0600).ok());
  auto registry = ProjectRegistry::Open(folder_, NewPosixFileSystem(), clock_);
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(registry.status().code(), StatusCode::kCorruption);
}

TEST_F(ProjectsTest, DomainsMapSitesToProjectsAndSurviveReopen) {
  auto registry = Open();
  ASSERT_TRUE(registry->Create("shop", "UTC").ok());
  ASSERT_TRUE(registry->Create("blog", "UTC").ok());
  auto set = registry->SetDomains("shop", {"Shop.Example", "www.shop.example", "app.shop.example"});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->domains, (std::vector<std::string>{"shop.example", "app.shop.example"}));
  EXPECT_EQ(registry->FindByDomain("shop.example")->name, "shop");
  EXPECT_FALSE(registry->FindByDomain("blog.example").has_value());
  // A domain belongs to one project; a refused list changes nothing.
  auto taken = registry->SetDomains("blog", {"blog.example", "shop.example"});
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().message(), "domain: 'shop.example' belongs to project 'shop' already");
  EXPECT_TRUE(registry->FindByName("blog")->domains.empty());
  auto bad = registry->SetDomains("blog", {"blog.example/path"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "'blog.example/path': domain: must be a site's domain name such as example.com: "
            "letters, digits, '-' and '.', with an optional :port, at most 253 bytes "
            "(kPlausibleDomainBytesMax)");
  EXPECT_EQ(registry->SetDomains("nope", {}).status().code(), StatusCode::kNotFound);
  std::vector<std::string> many(kProjectDomainsMax + 1, "a.example");
  EXPECT_EQ(registry->SetDomains("blog", many).status().message(),
            "domains: 101 sites, over the limit of 100 (kProjectDomainsMax)");
  auto reopened = Open();
  EXPECT_EQ(reopened->FindByDomain("app.shop.example")->name, "shop");
  EXPECT_EQ(reopened->FindByName("shop")->domains,
            (std::vector<std::string>{"shop.example", "app.shop.example"}));
  // An empty list removes the sites.
  ASSERT_TRUE(reopened->SetDomains("shop", {}).ok());
  EXPECT_FALSE(Open()->FindByDomain("shop.example").has_value());
}

}  // namespace
}  // namespace minpanel::service

namespace minpanel::service {
namespace {

TEST_F(ProjectsTest, MinGroupSizeIsKeptAndBounded) {
  auto registry = Open();
  ASSERT_TRUE(registry->Create("shop", "UTC").ok());
  EXPECT_EQ(registry->FindByName("shop")->min_group_size, 0U);  // none until set
  auto set = registry->SetMinGroupSize("shop", 5);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->min_group_size, 5U);
  EXPECT_EQ(Open()->FindByName("shop")->min_group_size, 5U);
  auto over = registry->SetMinGroupSize("shop", query::kMinGroupSizeMax + 1);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("kMinGroupSizeMax"), std::string::npos);
  EXPECT_EQ(registry->FindByName("shop")->min_group_size, 5U);
  EXPECT_EQ(registry->SetMinGroupSize("nope", 5).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace minpanel::service
