#include "service/project_quotas.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/test_folder.h"
#include "service/config.h"

namespace minpanel::service {
namespace {

constexpr int64_t kNowMs = 1'795'685'260'831;

class ProjectQuotasTest : public ::testing::Test {
 protected:
  Status Admit(uint64_t records, uint64_t rate, uint64_t disk_max = 0) {
    return quotas_.Admit(7, "shop", records, rate, disk_max, [this]() -> Result<uint64_t> {
      ++measurements_;
      return disk_bytes_;
    });
  }

  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kNowMs);
  ProjectQuotas quotas_{clock_};
  uint64_t disk_bytes_ = 0;
  int measurements_ = 0;
};

TEST_F(ProjectQuotasTest, ABatchMayTakeTheBucketIntoDebtThenWaits) {
  EXPECT_TRUE(Admit(25, 10).ok());  // larger than the rate: admitted once
  const Status refused = Admit(1, 10);
  ASSERT_EQ(RetryAfterSeconds(refused), 2u) << refused.ToString();
  EXPECT_NE(refused.message().find("projects.shop.ingest_events_per_second"), std::string::npos);
  clock_->Advance(1000);
  EXPECT_FALSE(Admit(1, 10).ok());  // still 5 in debt
  clock_->Advance(1000);
  EXPECT_TRUE(Admit(1, 10).ok());
  EXPECT_TRUE(Admit(1000, 0).ok());  // no rate: never refused
}

TEST_F(ProjectQuotasTest, TheDiskQuotaRefusesWith507sMarkerAndIsMeasuredOncePerSecond) {
  disk_bytes_ = 500;
  EXPECT_TRUE(Admit(1, 0, 1000).ok());
  disk_bytes_ = 1000;
  EXPECT_TRUE(Admit(1, 0, 1000).ok());  // the cached 500, measured under a second ago
  EXPECT_EQ(measurements_, 1);
  clock_->Advance(kDiskUsageRefreshMs);
  const Status refused = Admit(1, 0, 1000);
  EXPECT_TRUE(IsDiskQuotaExceeded(refused)) << refused.ToString();
  EXPECT_FALSE(RetryAfterSeconds(refused).has_value());
  EXPECT_NE(refused.message().find("projects.shop.disk_bytes_max"), std::string::npos);
  EXPECT_NE(refused.message().find("Nothing stored was dropped"), std::string::npos);
  EXPECT_EQ(measurements_, 2);
}

TEST_F(ProjectQuotasTest, WhatIsStoredBetweenMeasurementsCountsAtOnce) {
  disk_bytes_ = 600;
  EXPECT_TRUE(Admit(1, 0, 1000).ok());
  // A burst stores 500 bytes of log records within the second: the quota
  // refuses the next batch without waiting for the next measurement.
  quotas_.CountStored(7, 300);
  quotas_.CountStored(8, 5000);  // another project's
  EXPECT_TRUE(Admit(1, 0, 1000).ok());
  quotas_.CountStored(7, 200);
  EXPECT_TRUE(IsDiskQuotaExceeded(Admit(1, 0, 1000)));
  EXPECT_EQ(measurements_, 1);
  // The next measurement replaces the running figure (say a flush trimmed
  // the log).
  disk_bytes_ = 700;
  clock_->Advance(kDiskUsageRefreshMs);
  EXPECT_TRUE(Admit(1, 0, 1000).ok());
  EXPECT_EQ(measurements_, 2);
}

TEST(QuotaConfigTest, AnomalyAndProjectQuotasAreReadAndChecked) {
  const std::string path = TestFolder("quota_config") + ".toml";
  const auto load = [&](const std::string& text) {
    std::ofstream(path) << text;
    auto config = LoadConfigFile(path);
    return config.ok() ? ValidateConfig(*config) : config.status();
  };
  std::ofstream(path) << "[limits]\nexport_reason_rows = 5\n[anomaly]\nvolume_factor = 3\n"
                         "burst_exports = 0\nsuspend = true\nwebhook = \"http://127.0.0.1:9/h\"\n"
                         "[projects.shop]\ningest_events_per_second = 50\ndisk_bytes_max = 9\n";
  auto config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->limits.export_reason_rows, 5u);
  EXPECT_EQ(config->anomaly.volume_factor, 3.0);
  EXPECT_EQ(config->anomaly.burst_exports, 0u);
  EXPECT_TRUE(config->anomaly.suspend);
  ASSERT_EQ(config->project_settings.size(), 1u);
  EXPECT_EQ(config->project_settings[0].ingest_events_per_second, 50u);
  EXPECT_EQ(config->project_settings[0].disk_bytes_max, 9u);
  EXPECT_NE(load("[anomaly]\nsuspend = 1\n").message().find("anomaly.suspend"), std::string::npos);
  EXPECT_NE(load("[anomaly]\nwarmup_days = 99\n").message().find("anomaly.warmup_days"),
            std::string::npos);
  EXPECT_NE(load("[anomaly]\nrule = 1\n").message().find("anomaly.rule"), std::string::npos);
  EXPECT_NE(load("[projects.shop]\ningest_events_per_second = 99999999\n")
                .message()
                .find("kProjectEventsPerSecondMax"),
            std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace minpanel::service
