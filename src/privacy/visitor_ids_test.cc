// VisitorIds: daily salts created when first needed, rotated at UTC
// midnight, destroyed 48 hours after their day starts; a visit across
// midnight stays one visitor; and what a crash or a failed write leaves.
#include "privacy/visitor_ids.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/fault_file_system.h"
#include "core/time_units.h"

namespace minpanel::privacy {
namespace {

// 2026-11-26T00:00:00Z.
constexpr int64_t kDay0Ms = 1795651200000;
constexpr std::string_view kUserAgent =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/156.0.0.0 Safari/537.36";

std::string ReadBytes(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

void WriteBytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint32_t ModeOf(const std::filesystem::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 0777;
}

class VisitorIdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = std::filesystem::temp_directory_path() /
              ("minpanel-salts-" + std::to_string(::getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name()) /
              "salts";
    std::filesystem::remove_all(folder_.parent_path());
    ids_ = OpenIds();
  }
  void TearDown() override { std::filesystem::remove_all(folder_.parent_path()); }

  std::unique_ptr<VisitorIds> OpenIds() {
    auto ids = VisitorIds::Open(folder_.string(), file_system_, clock_);
    EXPECT_TRUE(ids.ok()) << ids.status().ToString();
    return ids.ok() ? std::move(ids).value() : nullptr;
  }

  Id128 Visitor(std::string_view ip = "198.51.100.7", std::string_view domain = "example.test") {
    auto id = ids_->VisitorId(domain, ip, kUserAgent);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : Id128{};
  }

  std::filesystem::path SaltFile(int64_t day) const {
    return folder_ / ("salt-" + UtcDayName(day) + ".salt");
  }

  std::vector<std::string> Files() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(folder_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path folder_;
  std::shared_ptr<FaultFileSystem> file_system_ =
      std::make_shared<FaultFileSystem>(NewPosixFileSystem());
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>(kDay0Ms + 12 * kHourMs);
  std::unique_ptr<VisitorIds> ids_;
};

const int64_t kDay0 = UtcDayOf(kDay0Ms);

TEST(VisitorDayTest, DaysAreUtcDates) {
  EXPECT_EQ(UtcDayName(UtcDayOf(kDay0Ms)), "2026-11-26");
  EXPECT_EQ(UtcDayName(UtcDayOf(kDay0Ms - 1)), "2026-11-25");
  EXPECT_EQ(UtcDayName(UtcDayOf(kDay0Ms + kDayMs - 1)), "2026-11-26");
  EXPECT_EQ(UtcDayName(0), "1970-01-01");
  EXPECT_EQ(UtcDayOf(-1), -1);
  EXPECT_EQ(UtcDayName(UtcDayOf(kDay0Ms + 96 * kDayMs)), "2027-03-02");  // across February
}

TEST_F(VisitorIdsTest, SaltIsCreatedOnFirstUseAs0600FileOfTheDay) {
  EXPECT_TRUE(Files().empty());  // nothing until an id is needed
  EXPECT_EQ(ModeOf(folder_), 0700u);
  const Id128 first = Visitor();
  EXPECT_EQ(Files(), std::vector<std::string>{"salt-2026-11-26.salt"});
  EXPECT_EQ(ModeOf(SaltFile(kDay0)), 0600u);
  const std::string bytes = ReadBytes(SaltFile(kDay0));
  ASSERT_EQ(bytes.size(), 48u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("MPSALT\0\0", 8));
  EXPECT_EQ(ids_->SaltPath(kDay0), SaltFile(kDay0).string());
  // The same request gets the same id all day; each input changes it.
  clock_->Advance(6 * kHourMs);
  EXPECT_EQ(Visitor(), first);
  EXPECT_NE(Visitor("198.51.100.8"), first);
  EXPECT_NE(Visitor("198.51.100.7", "other.test"), first);
  auto other_agent = ids_->VisitorId("example.test", "198.51.100.7", "curl/8.0");
  ASSERT_TRUE(other_agent.ok());
  EXPECT_NE(*other_agent, first);
}

TEST_F(VisitorIdsTest, SaltIsRandomNotDerived) {
  Visitor();
  const std::string first = ReadBytes(SaltFile(kDay0));
  std::filesystem::remove_all(folder_.parent_path());
  ids_ = OpenIds();
  Visitor();
  EXPECT_NE(ReadBytes(SaltFile(kDay0)).substr(16), first.substr(16));
}

TEST_F(VisitorIdsTest, SaltSurvivesARestartWithinItsDay) {
  const Id128 before = Visitor();
  ids_ = OpenIds();
  clock_->Advance(kHourMs);
  EXPECT_EQ(Visitor(), before);
}

TEST_F(VisitorIdsTest, RotatesAtUtcMidnightAndDaysAreUnlinkable) {
  const Id128 day0 = Visitor();
  clock_->Set(kDay0Ms + kDayMs + 12 * kHourMs);  // the next noon, not seen since
  const Id128 day1 = Visitor();
  EXPECT_NE(day1, day0);
  EXPECT_EQ(Files(), (std::vector<std::string>{"salt-2026-11-26.salt", "salt-2026-11-27.salt"}));
  EXPECT_NE(ReadBytes(SaltFile(kDay0)).substr(16), ReadBytes(SaltFile(kDay0 + 1)).substr(16));
  // Every visitor changes id with the day: none of day 1's ids is a day 0 id.
  std::vector<Id128> day1_ids;
  for (int visitor_idx = 0; visitor_idx < 20; ++visitor_idx) {
    day1_ids.push_back(Visitor("203.0.113." + std::to_string(visitor_idx)));
  }
  clock_->Set(kDay0Ms + 12 * kHourMs);  // back to day 0's noon (the salt is still kept)
  ids_ = OpenIds();
  for (int visitor_idx = 0; visitor_idx < 20; ++visitor_idx) {
    const Id128 day0_id = Visitor("203.0.113." + std::to_string(visitor_idx));
    EXPECT_EQ(std::count(day1_ids.begin(), day1_ids.end(), day0_id), 0) << visitor_idx;
  }
}

TEST_F(VisitorIdsTest, SameVisitorAcrossMidnightStaysOneVisitor) {
  clock_->Set(kDay0Ms + kDayMs - 10 * kMinuteMs);  // 23:50
  const Id128 evening = Visitor();
  const Id128 other_evening = Visitor("198.51.100.99");
  clock_->Set(kDay0Ms + kDayMs + 10 * kMinuteMs);  // 00:10 the next day
  EXPECT_EQ(Visitor(), evening);
  clock_->Advance(20 * kMinuteMs);  // 00:30, still in the visit
  EXPECT_EQ(Visitor(), evening);
  // A visitor first seen after midnight gets the new day's id, which is not
  // the one yesterday's salt would have given.
  const Id128 newcomer = Visitor("198.51.100.50");
  clock_->Set(kDay0Ms + kDayMs - kMinuteMs);
  // (A fresh store at 23:59 of day 0 with day 0's salt: the yesterday id.)
  auto yesterday_ids = VisitorIds::Open(folder_.string(), file_system_, clock_);
  ASSERT_TRUE(yesterday_ids.ok());
  auto newcomer_yesterday =
      (*yesterday_ids)->VisitorId("example.test", "198.51.100.50", kUserAgent);
  ASSERT_TRUE(newcomer_yesterday.ok());
  EXPECT_NE(*newcomer_yesterday, newcomer);
  // Back on day 1: after a pause longer than a session, a new visit starts
  // with the new day's id; the other evening visitor, not seen since, too.
  clock_->Set(kDay0Ms + kDayMs + 3 * kHourMs);
  const Id128 later = Visitor();
  EXPECT_NE(later, evening);
  EXPECT_NE(Visitor("198.51.100.99"), other_evening);
  clock_->Advance(5 * kMinuteMs);
  EXPECT_EQ(Visitor(), later);
}

TEST_F(VisitorIdsTest, SaltIsDestroyed48HoursAfterItsDayStarts) {
  Visitor();                              // day 0's salt
  clock_->Set(kDay0Ms + 2 * kDayMs - 1);  // the last millisecond of day 1
  auto kept = ids_->DestroyExpired();
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, 0u);
  EXPECT_TRUE(std::filesystem::exists(SaltFile(kDay0)));
  clock_->Set(kDay0Ms + 2 * kDayMs);  // day 2 starts: 48 h after day 0 started
  auto destroyed = ids_->DestroyExpired();
  ASSERT_TRUE(destroyed.ok()) << destroyed.status().ToString();
  EXPECT_EQ(*destroyed, 1u);
  EXPECT_FALSE(std::filesystem::exists(SaltFile(kDay0)));
  EXPECT_TRUE(Files().empty());
}

TEST_F(VisitorIdsTest, FirstRequestOfADayDestroysExpiredSalts) {
  const Id128 day0 = Visitor();
  clock_->Set(kDay0Ms + kDayMs + kHourMs);
  Visitor();
  clock_->Set(kDay0Ms + 2 * kDayMs + kHourMs);
  const Id128 day2 = Visitor();
  EXPECT_NE(day2, day0);
  EXPECT_EQ(Files(), (std::vector<std::string>{"salt-2026-11-27.salt", "salt-2026-11-28.salt"}));
}

TEST_F(VisitorIdsTest, OpenDestroysSaltsThatExpiredWhileStopped) {
  Visitor();
  clock_->Set(kDay0Ms + kDayMs + kHourMs);
  Visitor();
  ids_.reset();
  clock_->Set(kDay0Ms + 5 * kDayMs);
  ids_ = OpenIds();
  EXPECT_TRUE(Files().empty());
}

TEST_F(VisitorIdsTest, DestroyedSaltIsNotUsedFromMemory) {
  clock_->Set(kDay0Ms + kDayMs - kMinuteMs);
  const Id128 before = Visitor();
  // Two days on, within what would be a session by the clock's jumps: the
  // day 0 salt is gone from memory too, so the id cannot be made again.
  clock_->Set(kDay0Ms + 2 * kDayMs + kMinuteMs);
  EXPECT_NE(Visitor(), before);
}

// A salt file as docs/formats/plausible.md lays it out, made by hand.
std::string SaltFileBytes(int64_t day, char fill) {
  std::string bytes("MPSALT\0\0", 8);
  for (const uint32_t field : {1U, static_cast<uint32_t>(day)}) {
    for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
      bytes.push_back(static_cast<char>((field >> (8 * byte_idx)) & 0xFF));
    }
  }
  bytes.append(32, fill);
  return bytes;
}

TEST_F(VisitorIdsTest, AHandMadeSaltFileIsReadNotReplaced) {
  ids_.reset();
  WriteBytes(SaltFile(kDay0), SaltFileBytes(kDay0, 's'));
  ids_ = OpenIds();
  const Id128 under_s = Visitor();
  EXPECT_EQ(ReadBytes(SaltFile(kDay0)), SaltFileBytes(kDay0, 's'));
  ids_.reset();
  WriteBytes(SaltFile(kDay0), SaltFileBytes(kDay0, 't'));
  ids_ = OpenIds();
  EXPECT_NE(Visitor(), under_s);  // the id follows the file's salt
  ids_.reset();
  WriteBytes(SaltFile(kDay0), SaltFileBytes(kDay0, 's'));
  ids_ = OpenIds();
  EXPECT_EQ(Visitor(), under_s);
  // What the code writes has the same layout (its 32 bytes random).
  clock_->Advance(kDayMs);
  Visitor();
  const std::string made = ReadBytes(SaltFile(kDay0 + 1));
  ASSERT_EQ(made.size(), 48u);
  EXPECT_EQ(made.substr(0, 16), SaltFileBytes(kDay0 + 1, 'x').substr(0, 16));
}

TEST_F(VisitorIdsTest, TemporaryFileLeftByACrashIsRemovedAtOpen) {
  ids_.reset();
  // A crash between writing the temporary file and renaming it.
  std::filesystem::create_directories(folder_);
  WriteBytes(folder_ / "salt-2026-11-26.salt.tmp", std::string("MPSALT\0\0", 8) + "torn");
  ids_ = OpenIds();
  EXPECT_TRUE(Files().empty());
  Visitor();
  EXPECT_EQ(Files(), std::vector<std::string>{"salt-2026-11-26.salt"});
  EXPECT_EQ(ReadBytes(SaltFile(kDay0)).size(), 48u);
}

TEST_F(VisitorIdsTest, DamagedSaltFileIsCorruptionNamingIt) {
  Visitor();
  ids_.reset();
  const std::string bytes = ReadBytes(SaltFile(kDay0));
  WriteBytes(SaltFile(kDay0), bytes.substr(0, 30));  // torn by something else
  ids_ = OpenIds();
  auto id = ids_->VisitorId("example.test", "198.51.100.7", kUserAgent);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(id.status().message(),
            "salt file " + SaltFile(kDay0).string() + ": wrong size or magic");
}

TEST_F(VisitorIdsTest, SaltFileOfAnotherDayIsCorruption) {
  Visitor();
  ids_.reset();
  std::filesystem::rename(SaltFile(kDay0), SaltFile(kDay0 + 1));
  clock_->Set(kDay0Ms + kDayMs + kHourMs);
  ids_ = OpenIds();
  auto id = ids_->VisitorId("example.test", "198.51.100.7", kUserAgent);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().message(),
            "salt file " + SaltFile(kDay0 + 1).string() + ": holds the salt of another day");
}

TEST_F(VisitorIdsTest, NewerFormatIsRefused) {
  Visitor();
  ids_.reset();
  std::string bytes = ReadBytes(SaltFile(kDay0));
  bytes[8] = 2;
  WriteBytes(SaltFile(kDay0), bytes);
  ids_ = OpenIds();
  auto id = ids_->VisitorId("example.test", "198.51.100.7", kUserAgent);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().message(), "salt file " + SaltFile(kDay0).string() +
                                       ": format version 2 is newer than this binary");
}

TEST_F(VisitorIdsTest, FailedSaltWriteGivesNoIdAndLeavesNoFile) {
  file_system_->FailWritesAfterBytes(0);
  auto id = ids_->VisitorId("example.test", "198.51.100.7", kUserAgent);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(
      id.status().message().starts_with("salt file " + SaltFile(kDay0).string() + " not written: "))
      << id.status().message();
  EXPECT_TRUE(Files().empty());
  file_system_->Reset();
  const Id128 recovered = Visitor();
  ids_ = OpenIds();
  EXPECT_EQ(Visitor(), recovered);  // the salt written after the failure is durable
}

TEST_F(VisitorIdsTest, ForeignFilesInTheFolderAreLeftAlone) {
  Visitor();
  WriteBytes(folder_ / "README", "operator notes");
  clock_->Set(kDay0Ms + 3 * kDayMs);
  ASSERT_TRUE(ids_->DestroyExpired().ok());
  EXPECT_EQ(Files(), std::vector<std::string>{"README"});
}

}  // namespace
}  // namespace minpanel::privacy
