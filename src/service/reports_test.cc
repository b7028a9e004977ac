#include "service/reports.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/fault_file_system.h"

namespace minpanel::service {
namespace {

class ReportStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = (std::filesystem::temp_directory_path() /
               ("minpanel-reports-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name()))
                  .string();
    std::filesystem::remove_all(folder_);
    std::filesystem::create_directories(folder_);
  }
  void TearDown() override { std::filesystem::remove_all(folder_); }

  std::unique_ptr<ReportStore> Open() {
    auto store = ReportStore::Open(folder_, file_system_, clock_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return std::move(store).value();
  }

  SavedItem Report(std::string_view json) {
    auto item = ParseSavedItem(SavedKind::kReport, json);
    EXPECT_TRUE(item.ok()) << item.status().ToString();
    return std::move(item).value();
  }

  std::string folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(1'700'000'000'000);
};

TEST_F(ReportStoreTest, SavedReportAndDashboardSurviveReopenPerProject) {
  auto store = Open();
  auto report =
      store->Put(1, 0, Report(R"({"name":"Signups","view":"funnels","state":{"a": [1, 2]}})"));
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->id, 1U);
  EXPECT_EQ(report->state_json, R"({"a":[1,2]})");
  auto dashboard = ParseSavedItem(SavedKind::kDashboard, R"({"name":"Home","reports":[1]})");
  ASSERT_TRUE(dashboard.ok());
  ASSERT_TRUE(store->Put(1, 0, *dashboard).ok());
  store.reset();
  store = Open();
  ASSERT_EQ(store->List(1, SavedKind::kReport).size(), 1U);
  EXPECT_EQ(store->List(1, SavedKind::kReport)[0].name, "Signups");
  EXPECT_EQ(store->List(1, SavedKind::kDashboard)[0].reports, std::vector<uint64_t>{1});
  EXPECT_TRUE(store->List(2, SavedKind::kReport).empty());
  EXPECT_EQ(store->Get(2, SavedKind::kReport, 1).status().code(), StatusCode::kNotFound);
  // A new item never takes an id already given.
  auto second = store->Put(1, 0, Report(R"({"name":"B","view":"insights","state":{}})"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->id, 3U);
}

TEST_F(ReportStoreTest, UpdateKeepsCreationTimeAndUnknownIdIsNotFound) {
  auto store = Open();
  auto report = store->Put(1, 0, Report(R"({"name":"A","view":"insights","state":{}})"));
  ASSERT_TRUE(report.ok());
  clock_->Advance(5000);
  auto updated = store->Put(1, report->id, Report(R"({"name":"B","view":"retention","state":{}})"));
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->name, "B");
  EXPECT_EQ(updated->created_ms, report->created_ms);
  EXPECT_EQ(updated->updated_ms, report->created_ms + 5000);
  EXPECT_EQ(
      store->Put(1, 99, Report(R"({"name":"C","view":"insights","state":{}})")).status().code(),
      StatusCode::kNotFound);
  EXPECT_EQ(store->Put(2, report->id, Report(R"({"name":"C","view":"insights","state":{}})"))
                .status()
                .code(),
            StatusCode::kNotFound);
}

TEST_F(ReportStoreTest, DashboardTakesOnlyTheProjectsReportsAndLosesDeletedOnes) {
  auto store = Open();
  ASSERT_TRUE(store->Put(1, 0, Report(R"({"name":"A","view":"insights","state":{}})")).ok());
  ASSERT_TRUE(store->Put(2, 0, Report(R"({"name":"B","view":"insights","state":{}})")).ok());
  auto other = ParseSavedItem(SavedKind::kDashboard, R"({"name":"D","reports":[1,2]})");
  ASSERT_TRUE(other.ok());
  const auto refused = store->Put(1, 0, *other);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("reports: 2"), std::string::npos);
  auto dashboard = ParseSavedItem(SavedKind::kDashboard, R"({"name":"D","reports":[1]})");
  ASSERT_TRUE(store->Put(1, 0, *dashboard).ok());
  ASSERT_TRUE(store->Delete(1, SavedKind::kReport, 1).ok());
  EXPECT_TRUE(store->List(1, SavedKind::kDashboard)[0].reports.empty());
  EXPECT_EQ(store->Delete(1, SavedKind::kReport, 1).code(), StatusCode::kNotFound);
}

TEST_F(ReportStoreTest, FailedWriteChangesNothing) {
  auto store = Open();
  file_system_->FailWritesAfterBytes(10);  // a full disk
  EXPECT_FALSE(store->Put(1, 0, Report(R"({"name":"A","view":"insights","state":{}})")).ok());
  file_system_->Reset();
  EXPECT_TRUE(store->List(1, SavedKind::kReport).empty());
  store.reset();
  EXPECT_TRUE(Open()->List(1, SavedKind::kReport).empty());
}

TEST_F(ReportStoreTest, BadBodiesNameTheFieldAndLimit) {
  const auto code = [](SavedKind kind, std::string_view json) {
    return ParseSavedItem(kind, json).status().code();
  };
  EXPECT_EQ(code(SavedKind::kReport, "[]"), StatusCode::kInvalidArgument);
  EXPECT_EQ(code(SavedKind::kReport, R"({"view":"insights","state":{}})"),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(SavedKind::kReport, R"({"name":"a","view":"sql","state":{}})"),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(SavedKind::kReport, R"({"name":"a","view":"insights","state":[]})"),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(SavedKind::kReport, R"({"name":"a","view":"insights"})"),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(code(SavedKind::kReport, R"({"name":"a","view":"insights","state":{},"x":1})"),
            StatusCode::kInvalidArgument);
  const std::string long_name(kSavedNameBytesMax + 1, 'n');
  const auto too_long = ParseSavedItem(
      SavedKind::kReport, R"({"name":")" + long_name + R"(","view":"insights","state":{}})");
  EXPECT_EQ(too_long.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(too_long.status().message().find("kSavedNameBytesMax"), std::string::npos);
  const std::string big_state = R"({"name":"a","view":"insights","state":{"s":")" +
                                std::string(kReportStateBytesMax, 'x') + R"("}})";
  EXPECT_EQ(code(SavedKind::kReport, big_state), StatusCode::kResourceExhausted);
  std::string many = R"({"name":"d","reports":[1)";
  for (size_t report_idx = 0; report_idx < kDashboardReportsMax; ++report_idx) {
    many += ",1";
  }
  EXPECT_EQ(code(SavedKind::kDashboard, many + "]}"), StatusCode::kResourceExhausted);
  EXPECT_EQ(code(SavedKind::kDashboard, R"({"name":"d","reports":["x"]})"),
            StatusCode::kInvalidArgument);
  // What a GET answered may be sent back as it is.
  EXPECT_TRUE(ParseSavedItem(SavedKind::kDashboard,
                             R"({"id":3,"kind":"dashboard","project_id":1,"name":"d","reports":[],)"
                             R"("created_ms":1,"updated_ms":2})")
                  .ok());
}

TEST_F(ReportStoreTest, DamagedFileIsCorruption) {
  std::ofstream(folder_ + "/reports.json")
      << R"({"format":"minpanel-reports","version":1,"items":[{"id":1}]})";
  EXPECT_EQ(ReportStore::Open(folder_, file_system_, clock_).status().code(),
            StatusCode::kCorruption);
  std::ofstream(folder_ + "/reports.json")
      << R"({"format":"minpanel-reports","version":9,"items":[]})";
  EXPECT_EQ(ReportStore::Open(folder_, file_system_, clock_).status().code(),
            StatusCode::kCorruption);
}

}  // namespace
}  // namespace minpanel::service
