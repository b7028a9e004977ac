// Export watermarks: decoy ids (keyed BLAKE2b, libsodium's
// crypto_generichash) and the mixer that places decoys among an export's
// rows. See watermark.h and docs/security.md, "Watermarked exports".
#include "query/watermark.h"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

#include "query/query.h"

namespace minpanel::query {
namespace {

// What each keyed hash is for: one byte first, so no two uses collide.
constexpr uint8_t kDomainKey = 'K';
constexpr uint8_t kDomainSubject = 'S';
constexpr uint8_t kDomainSubjectTag = 's';
constexpr uint8_t kDomainInsertId = 'I';
constexpr uint8_t kDomainInsertIdTag = 'i';
constexpr uint8_t kDomainSeed = 'R';
// Tries to find another real row of the same name that has a property key.
constexpr int kValueDraws = 8;

uint64_t KeyedHash64(const WatermarkKey& key, uint8_t domain, const uint64_t* words,
                     size_t word_count) {
  uint8_t message[1 + 4 * 8] = {domain};
  for (size_t word_idx = 0; word_idx < word_count; ++word_idx) {
    for (size_t byte_idx = 0; byte_idx < 8; ++byte_idx) {
      message[1 + word_idx * 8 + byte_idx] =
          static_cast<uint8_t>(words[word_idx] >> (56 - 8 * byte_idx));
    }
  }
  uint8_t digest[8];
  crypto_generichash(digest, sizeof(digest), message, 1 + word_count * 8, key.data(), key.size());
  uint64_t value = 0;
  for (const uint8_t byte : digest) {
    value = (value << 8) | byte;
  }
  return value;
}

// An id whose low half is the keyed hash of its high half.
Id128 Tagged(const WatermarkKey& key, uint8_t tag_domain, uint64_t high) {
  return Id128{high, KeyedHash64(key, tag_domain, &high, 1)};
}

}  // namespace

WatermarkKey DeriveWatermarkKey(const std::array<uint8_t, 32>& pseudonym_key) {
  static constexpr char kLabel[] = "minpanel export watermark v1";
  WatermarkKey key{};
  uint8_t message[sizeof(kLabel)] = {kDomainKey};
  std::memcpy(message + 1, kLabel, sizeof(kLabel) - 1);
  crypto_generichash(key.data(), key.size(), message, sizeof(message), pseudonym_key.data(),
                     pseudonym_key.size());
  return key;
}

Id128 DecoySubject(const WatermarkKey& key, const Id128& nonce, uint64_t decoy_idx) {
  const uint64_t words[3] = {nonce.high, nonce.low, decoy_idx};
  return Tagged(key, kDomainSubjectTag, KeyedHash64(key, kDomainSubject, words, 3));
}

Id128 DecoyInsertId(const WatermarkKey& key, const Id128& nonce, uint64_t decoy_idx,
                    uint64_t row_idx) {
  const uint64_t words[4] = {nonce.high, nonce.low, decoy_idx, row_idx};
  return Tagged(key, kDomainInsertIdTag, KeyedHash64(key, kDomainInsertId, words, 4));
}

bool IsDecoySubject(const WatermarkKey& key, const Id128& id) {
  return Tagged(key, kDomainSubjectTag, id.high) == id;
}

bool IsDecoyInsertId(const WatermarkKey& key, const Id128& id) {
  return Tagged(key, kDomainInsertIdTag, id.high) == id;
}

namespace {

constexpr size_t kIdHexChars = 32;

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::unordered_set<Id128, Id128Hash> LeakedIds(std::string_view text) {
  std::unordered_set<Id128, Id128Hash> ids;
  size_t run_start = 0;
  for (size_t pos = 0; pos <= text.size(); ++pos) {
    if (pos < text.size() && IsHex(text[pos])) {
      continue;
    }
    if (pos - run_start == kIdHexChars) {
      if (const auto id = Id128::FromHex(text.substr(run_start, kIdHexChars))) {
        ids.insert(*id);
      }
    }
    run_start = pos + 1;
  }
  return ids;
}

bool ParseWatermarkField(std::string_view text, Id128* nonce, uint64_t* decoys) {
  const auto parsed = Id128::FromHex(text.substr(0, kIdHexChars));
  if (!parsed.has_value()) {
    return false;
  }
  *nonce = *parsed;
  if (text.size() > kIdHexChars + 1 && text[kIdHexChars] == ':') {
    const std::string_view count = text.substr(kIdHexChars + 1);
    uint64_t value = 0;
    const auto [end, error] = std::from_chars(count.data(), count.data() + count.size(), value);
    if (error == std::errc::result_out_of_range) {
      value = kDecoySubjectsMax;
    }
    if (error == std::errc() || error == std::errc::result_out_of_range) {
      *decoys = std::min<uint64_t>(value, kDecoySubjectsMax);
    }
  }
  return true;
}

uint64_t DecoySubjectCount(uint64_t rows_expected, double rows_per_subject) {
  const double decoy_rows =
      static_cast<double>(rows_expected) * static_cast<double>(kDecoyRowsPerMille) / 1000.0;
  const double subjects = std::ceil(decoy_rows / std::max(rows_per_subject, 1.0));
  return std::clamp<uint64_t>(static_cast<uint64_t>(subjects), kDecoySubjectsMin,
                              kDecoySubjectsMax);
}

DecoyMixer::DecoyMixer(const ExportWatermark& watermark, uint64_t rows_expected, Emit emit)
    : watermark_(watermark), rows_expected_(rows_expected), emit_(std::move(emit)) {
  pool_.reserve(kDecoyPoolRows);
}

bool DecoyMixer::Add(const Event& event) {
  if (!open_) {
    return false;
  }
  if (!primed_) {
    pool_.push_back(event);
    if (pool_.size() < kDecoyPoolRows) {
      return true;
    }
    MakeDecoys();
    for (const Event& held : pool_) {
      if (!Pass(held)) {
        return false;
      }
    }
    return open_;
  }
  return Pass(event);
}

bool DecoyMixer::Finish() {
  if (!primed_) {
    if (pool_.empty()) {
      primed_ = true;  // nothing to model decoys on, nothing to hide them among
      return open_;
    }
    MakeDecoys();
    for (const Event& held : pool_) {
      if (!Pass(held)) {
        return false;
      }
    }
  }
  while (open_ && next_decoy_ < decoys_.size()) {
    EmitDecoy(decoys_[next_decoy_++]);
  }
  return open_;
}

void DecoyMixer::MakeDecoys() {
  primed_ = true;
  // Rows per subject among the held-back rows (one run of each subject).
  std::vector<uint64_t> runs;
  for (size_t row_idx = 0; row_idx < pool_.size(); ++row_idx) {
    if (row_idx == 0 || !(pool_[row_idx].subject == pool_[row_idx - 1].subject)) {
      runs.push_back(0);
    }
    runs.back() += 1;
  }
  const double rows_per_subject =
      static_cast<double>(pool_.size()) / static_cast<double>(runs.size());
  const uint64_t count =
      DecoySubjectCount(std::max<uint64_t>(rows_expected_, pool_.size()), rows_per_subject);
  const uint64_t seed_words[2] = {watermark_.nonce.high, watermark_.nonce.low};
  std::mt19937_64 random(KeyedHash64(watermark_.key, kDomainSeed, seed_words, 2));
  for (uint64_t decoy_idx = 0; decoy_idx < count; ++decoy_idx) {
    Decoy decoy;
    decoy.index = decoy_idx;
    decoy.subject = DecoySubject(watermark_.key, watermark_.nonce, decoy_idx);
    decoy.rows = std::min(runs[random() % runs.size()], kDecoyRowsPerSubjectMax);
    decoys_.push_back(decoy);
  }
  std::sort(decoys_.begin(), decoys_.end(),
            [](const Decoy& left, const Decoy& right) { return left.subject < right.subject; });
}

bool DecoyMixer::Pass(const Event& event) {
  while (open_ && next_decoy_ < decoys_.size() && decoys_[next_decoy_].subject < event.subject) {
    EmitDecoy(decoys_[next_decoy_++]);
  }
  if (open_) {
    open_ = emit_(event, /*decoy=*/false);
  }
  return open_;
}

// A decoy's rows, made from the pool with a generator seeded by the decoy:
// the same export nonce gives the same decoys.
bool DecoyMixer::EmitDecoy(const Decoy& decoy) {
  const uint64_t seed_words[3] = {watermark_.nonce.high, watermark_.nonce.low, decoy.index};
  std::mt19937_64 random(KeyedHash64(watermark_.key, kDomainSeed, seed_words, 3));
  std::vector<Event> rows;
  for (uint64_t row_idx = 0; row_idx < decoy.rows; ++row_idx) {
    const Event& model = pool_[random() % pool_.size()];
    Event row;
    row.key_version = model.key_version;
    row.name = model.name;
    row.time_ms = model.time_ms;
    row.subject = decoy.subject;
    row.insert_id = DecoyInsertId(watermark_.key, watermark_.nonce, decoy.index, row_idx);
    for (const Property& property : model.properties) {
      // A decoy is a person of its own: it never names the id it had
      // before an identity merge (the export writes that field for merged
      // rows only; a stored property of that name is not copied either).
      if (property.key == kDistinctIdBeforeIdentityKey) {
        continue;
      }
      Property copy = property;
      for (int draw = 0; draw < kValueDraws; ++draw) {
        const Event& other = pool_[random() % pool_.size()];
        const Value* value =
            other.name == model.name ? FindProperty(other.properties, property.key) : nullptr;
        if (value != nullptr) {
          copy.value = *value;
          break;
        }
      }
      row.properties.push_back(std::move(copy));
    }
    rows.push_back(std::move(row));
  }
  // A subject's rows come in time order, as the store keeps them.
  std::stable_sort(rows.begin(), rows.end(), [](const Event& left, const Event& right) {
    return left.time_ms < right.time_ms;
  });
  for (const Event& row : rows) {
    if (!open_) {
      break;
    }
    ++decoy_rows_;
    open_ = emit_(row, /*decoy=*/true);
  }
  return open_;
}

}  // namespace minpanel::query
