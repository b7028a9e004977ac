// Helpers shared by the store tests: a scratch folder per test, events with
// every value type, and an engine opened over a FaultFileSystem and a FakeClock.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/fault_file_system.h"
#include "core/test_folder.h"
#include "store/store.h"

namespace minpanel::store {

inline constexpr int64_t kTestNowMs = 1'700'000'000'000;

inline Event MakeEvent(std::string name, int64_t time_ms, uint64_t subject, uint64_t insert_id) {
  Event event;
  event.name = std::move(name);
  event.time_ms = time_ms;
  event.subject = Id128{0, subject};
  event.insert_id = Id128{0x1D, insert_id};
  event.key_version = 1;
  event.properties = {{"plan", Value::String("pro")}, {"seats", Value::Int(3)}};
  return event;
}

inline AppendBatch MakeBatch(uint32_t project_id, std::vector<Event> events) {
  AppendBatch batch;
  batch.project_id = project_id;
  batch.events = std::move(events);
  return batch;
}

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = TestFolder("store");
    std::filesystem::remove_all(folder_);
    options_.folder = folder_;
    options_.file_system = fault_file_system_;
    options_.clock = clock_;
    options_.on_recovery_note = [this](const std::string& note) { notes_.push_back(note); };
  }
  void TearDown() override {
    if (engine_) {
      EXPECT_TRUE(engine_->Close().ok());
    }
    engine_.reset();
    RemoveTestFolderUnlessFailed(folder_);
  }

  Status Open() {
    engine_.reset();
    auto engine = OpenEmbeddedEngine(options_);
    if (!engine.ok()) {
      return engine.status();
    }
    engine_ = std::move(engine).value();
    return Status::Ok();
  }
  void Reopen() {
    if (engine_) {
      ASSERT_TRUE(engine_->Close().ok());
    }
    const Status status = Open();
    ASSERT_TRUE(status.ok()) << status.ToString();
  }

  std::vector<Event> ScanAll(uint32_t project_id) {
    ScanRequest request;
    request.project_id = project_id;
    return ScanWith(request);
  }
  std::vector<Event> ScanWith(const ScanRequest& request) {
    std::vector<Event> events;
    const Status status = engine_->Scan(request, [&](const Event& event) {
      events.push_back(event);
      return true;
    });
    EXPECT_TRUE(status.ok()) << status.ToString();
    return events;
  }
  std::string LogPath(int number) const {
    std::string digits = std::to_string(number);
    return folder_ + "/wal/" + std::string(6 - digits.size(), '0') + digits + ".log";
  }

  std::string folder_;
  std::shared_ptr<FaultFileSystem> fault_file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kTestNowMs);
  Options options_;
  std::vector<std::string> notes_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace minpanel::store
