// Purging one property key from history (Engine::PurgeProperty;
// src/store/README.md, "Erasure"): the key's values disappear from every
// read at once — memtable, flushing memtable and segments, through Scan,
// Snapshot's column reads and ScanProfiles — the rows and every other key
// stay; it holds through a flush, a compaction, a restart with and without a
// flush (log replay) and the purge, after which no file of the folder holds
// a value (decoded dumps); a purge failing at any write keeps it in force and
// loses nothing; a purge of one event name's key leaves the other names and
// the profiles alone; values stored after it are kept; and the record codec.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>

#include "core/time_units.h"
#include "store/deletion.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/store_test_util.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

constexpr uint32_t kProject = 4;

// A generated marker value per event, never a real person's data.
std::string Marker(uint64_t id) { return "mrk-" + std::to_string(id * 7919 + 13) + "-zq"; }

class PropertyPurgeTest : public StoreTest {
 protected:
  // Event `id`: "view" when even, else "buy"; id % 3 days old; properties
  // plan, seats, and `secret` (the marker) on all but every fifth event,
  // as a string, a list or an int.
  static Event EventNumber(uint64_t id) {
    Event event = MakeEvent(id % 2 == 0 ? "view" : "buy",
                            kTestNowMs - static_cast<int64_t>(id % 3) * kDayMs +
                                static_cast<int64_t>(id),
                            id % 11, id);
    if (id % 5 != 0) {
      Value value = id % 7 == 0   ? Value::List({Marker(id), "x"})
                    : id % 13 == 0 ? Value::Int(static_cast<int64_t>(id) * 1000003)
                                   : Value::String(Marker(id));
      event.properties.push_back({"secret", std::move(value)});
      std::sort(event.properties.begin(), event.properties.end(),
                [](const Property& a, const Property& b) { return a.key < b.key; });
    }
    return event;
  }
  void AppendRange(uint64_t first, uint64_t count) {
    for (uint64_t begin = first; begin < first + count; begin += 100) {
      std::vector<Event> events;
      for (uint64_t id = begin; id < std::min(first + count, begin + 100); ++id) {
        events.push_back(EventNumber(id));
      }
      const auto result = engine_->Append(MakeBatch(kProject, std::move(events)));
      ASSERT_TRUE(result.ok()) << result.status().ToString();
    }
  }
  void AppendProfile(uint64_t subject, Properties properties,
                     ProfileOperation operation = ProfileOperation::kSet) {
    AppendBatch batch;
    batch.project_id = kProject;
    ProfileUpdate update;
    update.subject = Id128{0, subject};
    update.time_ms = kTestNowMs;
    update.key_version = 1;
    update.operation = operation;
    update.properties = std::move(properties);
    batch.profile_updates.push_back(std::move(update));
    ASSERT_TRUE(engine_->Append(std::move(batch)).ok());
  }
  void Purge(const std::string& key, const std::string& event_name = "") {
    const Status status = engine_->PurgeProperty(kProject, key, event_name);
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  void PurgeNow() {
    const Status status = engine_->PurgeDeleted();
    ASSERT_TRUE(status.ok()) << status.ToString();
  }
  // What a purge of `key` (of `event_name` only, when set) stored after
  // event `purged_before` leaves of the first `count` events.
  static std::map<uint64_t, Event> Expected(uint64_t count, uint64_t purged_before,
                                            const std::string& event_name = "") {
    std::map<uint64_t, Event> expected;
    for (uint64_t id = 0; id < count; ++id) {
      Event event = EventNumber(id);
      if (id < purged_before && (event_name.empty() || event.name == event_name)) {
        std::erase_if(event.properties,
                      [](const Property& property) { return property.key == "secret"; });
      }
      expected.emplace(id, std::move(event));
    }
    return expected;
  }
  std::map<uint64_t, Event> Scanned() {
    std::map<uint64_t, Event> events;
    for (Event& event : ScanAll(kProject)) {
      events.emplace(event.insert_id.low, std::move(event));
    }
    return events;
  }
  // Every row through Snapshot's column reads, as the query engine reads:
  // insert id -> the `secret` value (absent: no entry), and the row count.
  std::map<uint64_t, Value> SnapshotSecrets(uint64_t* rows) {
    *rows = 0;
    std::map<uint64_t, Value> secrets;
    auto snapshot = engine_->Snapshot(kProject);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status().ToString();
    std::vector<Id128> insert_ids;
    PropertyColumn column;
    PropertyColumn codes_only;  // as the query engine reads: no view per row
    codes_only.dictionary_string_views = false;
    std::vector<PropertyColumn> columns;
    for (const auto& segment : *snapshot) {
      *rows += segment->summary().row_count;
      for (size_t block_idx = 0; block_idx < segment->block_count(); ++block_idx) {
        EXPECT_TRUE(segment->ReadInsertIds(block_idx, &insert_ids).ok());
        EXPECT_TRUE(segment->ReadProperty(block_idx, "secret", &column).ok());
        EXPECT_TRUE(segment->ReadProperty(block_idx, "secret", &codes_only).ok());
        EXPECT_EQ(column.tags.size(), insert_ids.size());
        EXPECT_EQ(codes_only.tags, column.tags);
        std::vector<uint32_t> all(insert_ids.size());
        std::iota(all.begin(), all.end(), 0);
        EXPECT_TRUE(segment->ReadPropertiesOfRows(block_idx, all, &columns).ok());
        const PropertyKeyInfo* info = segment->FindPropertyKey("secret");
        for (size_t row_idx = 0; row_idx < insert_ids.size(); ++row_idx) {
          if (column.tags[row_idx] != PropertyTag::kAbsent) {
            secrets.emplace(insert_ids[row_idx].low, column.ValueAt(row_idx));
            EXPECT_EQ(codes_only.ValueAt(row_idx), column.ValueAt(row_idx));
          }
          // The per-row read agrees with the column read.
          if (info != nullptr) {
            const PropertyColumn& of_rows =
                columns[static_cast<size_t>(info - segment->property_keys().data())];
            EXPECT_EQ(of_rows.tags[row_idx], column.tags[row_idx]);
          }
        }
      }
    }
    return secrets;
  }
  void ExpectEverywhere(const std::map<uint64_t, Event>& expected) {
    EXPECT_EQ(Scanned(), expected);
    uint64_t rows = 0;
    std::map<uint64_t, Value> want;
    for (const auto& [id, event] : expected) {
      for (const Property& property : event.properties) {
        if (property.key == "secret") {
          want.emplace(id, property.value);
        }
      }
    }
    EXPECT_EQ(SnapshotSecrets(&rows), want);
    EXPECT_EQ(rows, expected.size());
  }
  std::vector<ProfileUpdate> Profiles() {
    std::vector<ProfileUpdate> updates;
    EXPECT_TRUE(engine_->ScanProfiles(kProject, [&](const ProfileUpdate& update) {
                          updates.push_back(update);
                          return true;
                        }).ok());
    return updates;
  }
  // Every file of the store dumped readably (segments decoded, log records,
  // manifest): what `minpanel debug dump` shows.
  std::string DumpFolder() {
    std::ostringstream out;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(folder_)) {
      if (entry.is_regular_file()) {
        (void)DumpStoreFile(*fault_file_system_, entry.path().string(), out);
      }
    }
    return out.str();
  }
};

TEST_F(PropertyPurgeTest, HidesTheKeyFromEveryReadAtOnceAndThePurgeRemovesIt) {
  options_.purge_delay_ms = 3'600'000;  // the physical stage only when asked
  ASSERT_TRUE(Open().ok());
  AppendRange(0, 600);
  Reopen();  // into segments
  AppendRange(600, 200);  // in the memtable
  AppendProfile(1, {{"plan", Value::String("team")}, {"secret", Value::String(Marker(9001))}});
  AppendProfile(2, {{"secret", Value::String(Marker(9002))}});
  AppendProfile(3, {}, ProfileOperation::kDelete);
  ASSERT_NE(DumpFolder().find(Marker(3)), std::string::npos);
  Purge("secret");
  AppendRange(800, 50);  // after the purge: kept whole
  const auto expected = Expected(850, 800);
  ExpectEverywhere(expected);
  std::vector<ProfileUpdate> profiles = Profiles();
  ASSERT_EQ(profiles.size(), 2u);  // subject 2's update held only the key
  EXPECT_EQ(profiles[0].properties, (Properties{{"plan", Value::String("team")}}));
  EXPECT_EQ(profiles[1].operation, ProfileOperation::kDelete);
  EXPECT_EQ(engine_->GetStats().property_purges_active, 1u);

  options_.flush_on_close = false;
  Reopen();  // log replay
  ExpectEverywhere(expected);
  EXPECT_EQ(Profiles().size(), 2u);
  options_.flush_on_close = true;
  Reopen();  // a flush: the memtable's rows are segments now
  ExpectEverywhere(expected);

  PurgeNow();
  const Stats stats = engine_->GetStats();
  EXPECT_EQ(stats.property_purges_active, 0u);
  EXPECT_EQ(stats.deletions_active, 0u);
  EXPECT_GT(stats.purge_property_values_removed, 0u);
  EXPECT_EQ(stats.purge_rows_removed, 0u);
  ExpectEverywhere(expected);
  profiles = Profiles();
  ASSERT_EQ(profiles.size(), 2u);
  EXPECT_EQ(profiles[0].properties, (Properties{{"plan", Value::String("team")}}));
  const std::string dump = DumpFolder();
  for (uint64_t id = 0; id < 800; ++id) {
    ASSERT_EQ(dump.find(Marker(id)), std::string::npos) << id;
  }
  EXPECT_EQ(dump.find(Marker(9001)), std::string::npos);
  EXPECT_EQ(dump.find(Marker(9002)), std::string::npos);
  EXPECT_EQ(dump.find(std::to_string(13 * 1000003)), std::string::npos);
  EXPECT_NE(dump.find(Marker(801)), std::string::npos);  // stored after: kept
  EXPECT_NE(dump.find("team"), std::string::npos);
  Reopen();
  ExpectEverywhere(expected);
  EXPECT_EQ(Profiles().size(), 2u);
}

TEST_F(PropertyPurgeTest, APurgeOfOneEventNameLeavesTheOthersAndTheProfiles) {
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendRange(0, 400);
  Reopen();
  AppendRange(400, 100);
  AppendProfile(1, {{"secret", Value::String(Marker(9001))}});
  Purge("secret", "buy");
  const auto expected = Expected(500, 500, "buy");
  ExpectEverywhere(expected);
  EXPECT_EQ(Profiles().size(), 1u);
  options_.flush_on_close = false;
  Reopen();
  ExpectEverywhere(expected);
  options_.flush_on_close = true;
  PurgeNow();
  EXPECT_EQ(engine_->GetStats().deletions_active, 0u);
  ExpectEverywhere(expected);
  Reopen();
  ExpectEverywhere(expected);
  const std::string dump = DumpFolder();
  EXPECT_EQ(dump.find(Marker(3)), std::string::npos);   // a buy
  EXPECT_NE(dump.find(Marker(4)), std::string::npos);   // a view
  EXPECT_NE(dump.find(Marker(9001)), std::string::npos);  // a profile
}

TEST_F(PropertyPurgeTest, CompactionLeavesTheKeyOut) {
  options_.purge_delay_ms = 3'600'000;
  options_.memtable_rows_max = 100;  // a flush per batch below
  ASSERT_TRUE(Open().ok());
  const auto wait_for = [&](auto done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };
  for (uint64_t round = 0; round < 8; ++round) {
    AppendRange(round * 100, 100);
    wait_for([&] { return engine_->GetStats().flushes >= round + 1; });
    if (round == 2) {
      Purge("secret");  // three flushes' segments per day hold the key
    }
  }
  wait_for([&] { return engine_->GetStats().compactions >= 1; });
  const auto expected = Expected(800, 300);
  ExpectEverywhere(expected);
  PurgeNow();
  ExpectEverywhere(expected);
  Reopen();
  ExpectEverywhere(expected);
  const std::string dump = DumpFolder();
  for (uint64_t id = 0; id < 300; ++id) {
    ASSERT_EQ(dump.find(Marker(id)), std::string::npos) << id;
  }
  EXPECT_NE(dump.find(Marker(301)), std::string::npos);
}

TEST_F(PropertyPurgeTest, APurgeFailingAtAnyWriteLosesNothingAndHidesStill) {
  options_.flush_on_close = false;  // a crash: nothing more is written at Close
  options_.purge_delay_ms = 3'600'000;
  ASSERT_TRUE(Open().ok());
  AppendRange(0, 1500);
  AppendProfile(1, {{"kq", Value::Int(1)}, {"plan", Value::String("team")}});
  options_.flush_on_close = true;
  Reopen();
  options_.flush_on_close = false;
  Reopen();
  AppendRange(1500, 100);
  ASSERT_NE(DumpFolder().find("kq: 1"), std::string::npos);
  Purge("secret");
  Purge("kq");
  const auto expected = Expected(1600, 1600);
  bool succeeded = false;
  for (uint64_t budget = 0; !succeeded && budget < 4'000'000; budget = budget * 2 + 997) {
    fault_file_system_->FailWritesAfterBytes(budget);
    const Status purged = engine_->PurgeDeleted();
    fault_file_system_->Reset();
    succeeded = purged.ok() && engine_->GetStats().deletions_active == 0;
    ExpectEverywhere(expected);
    Reopen();  // as after a crash at that write
    ExpectEverywhere(expected);
    const std::vector<ProfileUpdate> profiles = Profiles();
    ASSERT_EQ(profiles.size(), 1u);
    EXPECT_EQ(profiles[0].properties, (Properties{{"plan", Value::String("team")}}));
  }
  EXPECT_TRUE(succeeded);
  PurgeNow();
  const std::string dump = DumpFolder();
  for (uint64_t id = 0; id < 1600; ++id) {
    ASSERT_EQ(dump.find(Marker(id)), std::string::npos) << id;
  }
  EXPECT_EQ(dump.find("kq: 1"), std::string::npos);  // shrunk by 5 bytes: padded varints
  ExpectEverywhere(expected);
}

TEST_F(PropertyPurgeTest, BadKeysAreRefusedByName) {
  ASSERT_TRUE(Open().ok());
  Status status = engine_->PurgeProperty(kProject, "", "");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("kDeletionPropertyKeyBytesMax"), std::string::npos);
  status = engine_->PurgeProperty(kProject, std::string(kDeletionPropertyKeyBytesMax + 1, 'k'), "");
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  status = engine_->PurgeProperty(kProject, "k", std::string(kDeletionEventNameBytesMax + 1, 'e'));
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("kDeletionEventNameBytesMax"), std::string::npos);
  EXPECT_EQ(engine_->GetStats().deletions_logged, 0u);
}

TEST(PropertyPurgeCodecTest, RoundTripsAndRefusesBadKeys) {
  Deletion deletion;
  deletion.project_id = 9;
  deletion.stored_at_ms = kTestNowMs;
  deletion.property_key = "secret";
  deletion.event_name = "buy";
  auto decoded = DecodeDeletionPayload(EncodeDeletionPayload(deletion));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, deletion);
  deletion.event_name.clear();
  decoded = DecodeDeletionPayload(EncodeDeletionPayload(deletion));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, deletion);
  Manifest manifest;
  manifest.deletions.push_back(deletion);
  manifest.deletions.back().position = LogPosition{3, 24};
  auto manifest_back = DecodeManifest(EncodeManifest(manifest), "MANIFEST");
  ASSERT_TRUE(manifest_back.ok()) << manifest_back.status().ToString();
  EXPECT_EQ(manifest_back->deletions, manifest.deletions);
  deletion.property_key = std::string(kDeletionPropertyKeyBytesMax + 1, 'k');
  decoded = DecodeDeletionPayload(EncodeDeletionPayload(deletion));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  EXPECT_NE(decoded.status().message().find("property_key"), std::string::npos);
}

TEST(PropertyPurgeCodecTest, APayloadHeaderWrittenLongReadsTheSame) {
  for (const WalPayloadHeader header :
       {WalPayloadHeader{kTestNowMs, 1, 2, 3}, WalPayloadHeader{kTestNowMs, UINT32_MAX, 70'000, 0}}) {
    std::string shortest;
    EncodePayloadHeader(header, &shortest);
    for (size_t extra = 0; extra <= kPayloadHeaderExtraBytesMax; ++extra) {
      std::string long_form;
      EncodePayloadHeader(header, &long_form, extra);
      ASSERT_EQ(long_form.size(), shortest.size() + extra) << extra;
      WalDecoder decoder(long_form);
      WalPayloadHeader back;
      ASSERT_TRUE(decoder.ReadPayloadHeader(&back).ok()) << extra;
      EXPECT_TRUE(decoder.empty());
      EXPECT_EQ(back.stored_at_ms, header.stored_at_ms);
      EXPECT_EQ(back.project_id, header.project_id);
      EXPECT_EQ(back.event_count, header.event_count);
      EXPECT_EQ(back.profile_update_count, header.profile_update_count);
    }
  }
}

}  // namespace
}  // namespace minpanel::store
