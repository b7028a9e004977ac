// Export watermarks (watermark.cc): decoy ids are recognisable only with
// their key, the mixer keeps the real rows in order and places each decoy
// where its subject sorts, and the decoys look like the real rows.
#include "query/watermark.h"

#include <gtest/gtest.h>

#include <set>

namespace minpanel::query {
namespace {

WatermarkKey KeyOf(uint8_t seed) {
  std::array<uint8_t, 32> pseudonym_key{};
  pseudonym_key.fill(seed);
  return DeriveWatermarkKey(pseudonym_key);
}

std::vector<Event> RealEvents(size_t subjects, size_t rows_per_subject) {
  std::vector<Event> events;
  for (size_t subject_idx = 0; subject_idx < subjects; ++subject_idx) {
    // Subjects spread over the id space, in order.
    const Id128 subject{(UINT64_MAX / subjects) * subject_idx + 12345, subject_idx};
    for (size_t row_idx = 0; row_idx < rows_per_subject; ++row_idx) {
      Event event;
      event.name = row_idx % 2 == 0 ? "view" : "buy";
      event.time_ms = 1'700'000'000'000 + static_cast<int64_t>(row_idx) * 1000;
      event.subject = subject;
      event.insert_id = Id128{subject_idx, row_idx};
      event.properties.push_back({"plan", Value::String(subject_idx % 3 == 0 ? "pro" : "free")});
      if (event.name == "buy") {
        event.properties.push_back({"price", Value::Int(static_cast<int64_t>(subject_idx % 50))});
      }
      events.push_back(std::move(event));
    }
  }
  return events;
}

TEST(WatermarkTest, DecoyIdsAreRecognisedOnlyWithTheirKey) {
  const WatermarkKey key = KeyOf(1);
  const WatermarkKey other = KeyOf(2);
  const Id128 nonce{7, 8};
  for (uint64_t decoy_idx = 0; decoy_idx < 100; ++decoy_idx) {
    const Id128 subject = DecoySubject(key, nonce, decoy_idx);
    const Id128 insert_id = DecoyInsertId(key, nonce, decoy_idx, 3);
    EXPECT_TRUE(IsDecoySubject(key, subject));
    EXPECT_TRUE(IsDecoyInsertId(key, insert_id));
    EXPECT_FALSE(IsDecoyInsertId(key, subject));  // the two kinds are tagged apart
    EXPECT_FALSE(IsDecoySubject(other, subject));
    EXPECT_FALSE(IsDecoySubject(key, Id128{subject.high, subject.low ^ 1}));
  }
  EXPECT_NE(DecoySubject(key, nonce, 0), DecoySubject(key, Id128{7, 9}, 0));
}

TEST(WatermarkTest, DecoyCountFollowsTheRowsWithinItsBounds) {
  EXPECT_EQ(DecoySubjectCount(10, 5), kDecoySubjectsMin);
  EXPECT_EQ(DecoySubjectCount(100'000, 10), 200u);  // 2 % of the rows, 10 rows each
  EXPECT_EQ(DecoySubjectCount(1'000'000'000, 10), kDecoySubjectsMax);
}

TEST(WatermarkTest, MixerKeepsRealRowsInOrderAndPlacesDecoysBySubject) {
  const std::vector<Event> real = RealEvents(500, 6);
  const ExportWatermark watermark{KeyOf(3), Id128{1, 2}};
  std::vector<Event> out;
  uint64_t flagged_decoys = 0;
  DecoyMixer mixer(watermark, real.size(), [&](const Event& event, bool decoy) {
    // The flag says which rows are decoys, exactly.
    EXPECT_EQ(decoy, IsDecoySubject(watermark.key, event.subject)) << out.size();
    flagged_decoys += decoy ? 1 : 0;
    out.push_back(event);
    return true;
  });
  for (const Event& event : real) {
    ASSERT_TRUE(mixer.Add(event));
  }
  ASSERT_TRUE(mixer.Finish());
  std::vector<Event> kept;
  std::set<Id128> decoys;
  for (const Event& event : out) {
    if (IsDecoySubject(watermark.key, event.subject)) {
      decoys.insert(event.subject);
      EXPECT_TRUE(IsDecoyInsertId(watermark.key, event.insert_id));
      EXPECT_TRUE(event.name == "view" || event.name == "buy");
      EXPECT_NE(FindProperty(event.properties, "plan"), nullptr);
    } else {
      kept.push_back(event);
    }
  }
  EXPECT_EQ(kept, real);
  EXPECT_EQ(decoys.size(), mixer.decoy_subjects());
  EXPECT_EQ(out.size() - real.size(), mixer.decoy_rows());
  EXPECT_EQ(flagged_decoys, mixer.decoy_rows());
  // 2 % of 3,000 rows at about 6 rows a subject (the held-back rows end
  // inside a subject, so the mean is a little under 6).
  EXPECT_GE(mixer.decoy_subjects(), 10u);
  EXPECT_LE(mixer.decoy_subjects(), 11u);
  // One sorted run: the decoys sit where their subjects sort.
  for (size_t row_idx = 1; row_idx < out.size(); ++row_idx) {
    EXPECT_LE(out[row_idx - 1].subject, out[row_idx].subject) << row_idx;
  }
}

TEST(WatermarkTest, TheSameNonceGivesTheSameDecoys) {
  const std::vector<Event> real = RealEvents(50, 4);
  auto run = [&](Id128 nonce) {
    std::vector<Event> out;
    DecoyMixer mixer(ExportWatermark{KeyOf(4), nonce}, real.size(), [&](const Event& event, bool) {
      out.push_back(event);
      return true;
    });
    for (const Event& event : real) {
      mixer.Add(event);
    }
    mixer.Finish();
    return out;
  };
  EXPECT_EQ(run(Id128{5, 5}), run(Id128{5, 5}));
  EXPECT_NE(run(Id128{5, 5}), run(Id128{5, 6}));
}

TEST(WatermarkTest, AnEmptyExportGetsNoDecoys) {
  size_t emitted = 0;
  DecoyMixer mixer(ExportWatermark{KeyOf(5), Id128{1, 1}}, 0, [&](const Event&, bool) {
    ++emitted;
    return true;
  });
  EXPECT_TRUE(mixer.Finish());
  EXPECT_EQ(emitted, 0u);
}

TEST(WatermarkTest, LeakedIdsAreRunsOfExactly32HexDigitsAnywhere) {
  const std::string hex = "0123456789abcdef0123456789ABCDEF";
  const Id128 id = *Id128::FromHex(hex);
  EXPECT_EQ(LeakedIds("{\"distinct_id\":\"psn_" + hex + "\"}"),
            (std::unordered_set<Id128, Id128Hash>{id}));
  EXPECT_EQ(LeakedIds(hex), (std::unordered_set<Id128, Id128Hash>{id}));
  EXPECT_TRUE(LeakedIds(hex.substr(1)).empty());   // 31 digits
  EXPECT_TRUE(LeakedIds(hex + "0").empty());       // 33 digits
  EXPECT_TRUE(LeakedIds("").empty());
  EXPECT_EQ(LeakedIds(hex + "," + hex + "\n" + hex).size(), 1U);
}

TEST(WatermarkTest, WatermarkFieldGivesTheNonceAndACappedCount) {
  const std::string hex = "0123456789abcdef0123456789abcdef";
  Id128 nonce;
  uint64_t decoys = 7;
  ASSERT_TRUE(ParseWatermarkField(hex, &nonce, &decoys));
  EXPECT_EQ(nonce.ToHex(), hex);
  EXPECT_EQ(decoys, 7U);
  ASSERT_TRUE(ParseWatermarkField(hex + ":12", &nonce, &decoys));
  EXPECT_EQ(decoys, 12U);
  ASSERT_TRUE(ParseWatermarkField(hex + ":99999999999999999999999", &nonce, &decoys));
  EXPECT_EQ(decoys, kDecoySubjectsMax);
  EXPECT_FALSE(ParseWatermarkField("off", &nonce, &decoys));
  EXPECT_FALSE(ParseWatermarkField(hex.substr(1), &nonce, &decoys));
}

}  // namespace
}  // namespace minpanel::query
