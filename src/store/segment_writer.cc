// EncodeSegment and WriteSegmentFile: sorting, choosing columns and
// dictionaries, cutting blocks and encoding every chunk.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "store/segment.h"
#include "store/wal_format.h"

namespace minpanel::store {
namespace {

size_t VarintBytes(uint64_t value) {
  size_t bytes = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++bytes;
  }
  return bytes;
}

// Roughly what an event weighs in raw column bytes, to close big blocks early.
uint64_t ApproximateBytes(const Event& event) {
  uint64_t bytes = event.name.size() + 44;
  for (const Property& property : event.properties) {
    bytes += property.key.size() + 10;
    if (property.value.type() == Value::Type::kString) {
      bytes += property.value.as_string().size();
    } else if (property.value.type() == Value::Type::kList) {
      for (const std::string& item : property.value.as_list()) {
        bytes += item.size() + 2;
      }
    }
  }
  return bytes;
}

Status CheckOptions(std::span<const Event> events, const SegmentWriteOptions& options) {
  if (events.empty()) {
    return Status::InvalidArgument("a segment holds at least one event");
  }
  if (events.size() > kSegmentRowsMax) {
    return Status::InvalidArgument("a segment holds at most kSegmentRowsMax events");
  }
  if (options.block_rows_max == 0 || options.block_rows_max > kSegmentBlockRowsMax) {
    return Status::InvalidArgument("block_rows_max must be 1 .. kSegmentBlockRowsMax");
  }
  if (options.own_columns_max > kSegmentPropertyColumnsMax) {
    return Status::InvalidArgument("own_columns_max is over kSegmentPropertyColumnsMax");
  }
  if (!(options.own_column_fraction_min >= 0.0 && options.own_column_fraction_min <= 1.0)) {
    return Status::InvalidArgument("own_column_fraction_min must be in [0, 1]");
  }
  if (options.zstd_level < 1 || options.zstd_level > 19) {
    return Status::InvalidArgument("zstd_level must be 1 .. 19");
  }
  return Status::Ok();
}

// Where a property key goes: its own column (index into the columns) or the
// map (index into the map keys).
struct KeySlot {
  bool own_column = false;
  uint32_t index = 0;
};

struct KeyEntry {
  std::string_view key;
  uint64_t row_count = 0;
  uint8_t tag_mask = 0;
  size_t last_event = SIZE_MAX;  // catches a key repeated within one event
  KeySlot slot;
};

// Interns strings as dense ids in first-seen order. Events of one source
// tend to list the same keys in the same order, so the id seen last at a
// property position is tried (one comparison) before the hash table.
class Interner {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  uint32_t Intern(std::string_view text, size_t position) {
    if (position < guesses_.size() && guesses_[position] != kNone &&
        strings_[guesses_[position]] == text) {
      return guesses_[position];
    }
    const auto [found, inserted] = ids_.try_emplace(text, static_cast<uint32_t>(strings_.size()));
    if (inserted) {
      strings_.push_back(text);
    }
    if (position >= guesses_.size()) {
      guesses_.resize(position + 1, kNone);
    }
    guesses_[position] = found->second;
    return found->second;
  }
  size_t size() const { return strings_.size(); }
  std::string_view operator[](uint32_t id) const { return strings_[id]; }

 private:
  std::unordered_map<std::string_view, uint32_t> ids_;
  std::vector<std::string_view> strings_;
  std::vector<uint32_t> guesses_;
};

// A column's dictionary while encoding; the code of the value looked up last
// is remembered, since rows sorted by subject repeat per-user values.
class ColumnDictionary {
 public:
  std::vector<std::string_view> entries;

  void Index() {
    codes_.reserve(entries.size());
    for (uint32_t code = 0; code < entries.size(); ++code) {
      codes_[entries[code]] = code;
    }
  }
  uint32_t Code(std::string_view text) {
    if (last_code_ == Interner::kNone || entries[last_code_] != text) {
      last_code_ = codes_.find(text)->second;
    }
    return last_code_;
  }

 private:
  std::unordered_map<std::string_view, uint32_t> codes_;
  uint32_t last_code_ = Interner::kNone;
};

template <typename Visit>
void ForEachString(const Value& value, Visit&& visit) {
  if (value.type() == Value::Type::kString) {
    visit(std::string_view(value.as_string()));
  } else if (value.type() == Value::Type::kList) {
    for (const std::string& item : value.as_list()) {
      visit(std::string_view(item));
    }
  }
}

// What the fixed columns need of one event, copied out in input order so
// that sorting and the fixed columns never touch the (scattered) events.
struct RowKey {
  Id128 subject;  // the person, in a folded segment
  Id128 stored;   // the event's own subject
  int64_t time_ms = 0;
  Id128 insert_id;
  uint32_t key_version = 0;
  uint32_t policy_version = 0;
  uint32_t event_idx = 0;

  friend bool operator<(const RowKey& a, const RowKey& b) {
    // event_idx last: equal keys keep their input order.
    return std::tie(a.subject, a.time_ms, a.insert_id, a.event_idx) <
           std::tie(b.subject, b.time_ms, b.insert_id, b.event_idx);
  }
};

class SegmentEncoder {
 public:
  SegmentEncoder(std::span<const Event> events, const SegmentWriteOptions& options)
      : events_(events), options_(options), compressor_(options.zstd_level) {}

  Result<std::string> Encode();

 private:
  Status CollectKeys();
  void SortRows();
  void FillSummary();
  void BuildNameDictionary();
  void ChooseColumns();
  void BuildColumnDictionaries();
  // `uncompressed`: stored as is unless the options force a codec (packed times).
  Status AppendChunk(std::string_view raw, ChunkRef* ref, bool uncompressed = false);
  const SegmentCodec* ForcedCodec() const {
    return options_.codec.has_value() ? &*options_.codec : nullptr;
  }
  Status EncodeBlock(size_t row_begin, size_t row_end);
  Status EncodeFixedColumns(size_t row_begin, size_t row_end, FooterBlock* block);
  Status EncodeProperties(size_t row_begin, size_t row_end, FooterBlock* block);

  const Event& Row(size_t row_idx) const { return events_[rows_[row_idx].event_idx]; }
  // Rows are visited in sorted order, a random walk over the events: fetch
  // the properties of a row a few rows ahead (and the event before that).
  void Prefetch(size_t row_idx) const;
  // The interned key of property `property_idx` of the event at sorted row `row_idx`.
  const KeyEntry& KeyOf(size_t row_idx, size_t property_idx) const {
    return keys_[key_ids_[property_begin_[rows_[row_idx].event_idx] + property_idx]];
  }

  std::span<const Event> events_;
  const SegmentWriteOptions& options_;
  ChunkCompressor compressor_;
  std::vector<RowKey> rows_;                 // sorted
  std::vector<uint32_t> approximate_bytes_;  // per event
  Interner key_interner_;
  std::vector<KeyEntry> keys_;                  // by interned id
  std::vector<uint32_t> key_ids_;               // per property of every event, in input order
  std::vector<size_t> property_begin_;          // per event: its first entry in key_ids_
  std::vector<uint32_t> name_ids_;              // per event, interned
  std::vector<uint32_t> name_code_of_id_;       // interned name id -> dictionary code
  std::vector<ColumnDictionary> dictionaries_;  // per column; empty unless kDictionary
  SegmentFooter footer_;
  std::string image_;
  std::string raw_;  // scratch for one chunk
  std::vector<uint32_t> granule_ends_;  // of the block being encoded
};

Status SegmentEncoder::CollectKeys() {
  property_begin_.resize(events_.size() + 1);
  rows_.resize(events_.size());
  approximate_bytes_.resize(events_.size());
  for (size_t event_idx = 0; event_idx < events_.size(); ++event_idx) {
    const Event& event = events_[event_idx];
    const Id128& subject =
        options_.fold != nullptr ? options_.fold->PersonOf(event.subject) : event.subject;
    rows_[event_idx] = RowKey{subject,           event.subject,        event.time_ms,
                              event.insert_id,   event.key_version,    event.policy_version,
                              static_cast<uint32_t>(event_idx)};
    approximate_bytes_[event_idx] =
        static_cast<uint32_t>(std::min<uint64_t>(ApproximateBytes(event), UINT32_MAX));
    property_begin_[event_idx] = key_ids_.size();
    const Properties& properties = event.properties;
    for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
      const uint32_t id = key_interner_.Intern(properties[property_idx].key, property_idx);
      if (id == keys_.size()) {
        keys_.emplace_back().key = key_interner_[id];
      }
      KeyEntry& entry = keys_[id];
      if (entry.last_event == event_idx) {
        return Status::InvalidArgument("event " + std::to_string(event_idx) +
                                       " repeats property key \"" + properties[property_idx].key +
                                       "\"");
      }
      entry.last_event = event_idx;
      ++entry.row_count;
      entry.tag_mask |= TagBit(TagOf(properties[property_idx].value));
      key_ids_.push_back(id);
    }
  }
  property_begin_[events_.size()] = key_ids_.size();
  return Status::Ok();
}

void SegmentEncoder::SortRows() { std::sort(rows_.begin(), rows_.end()); }

void SegmentEncoder::Prefetch(size_t row_idx) const {
  constexpr size_t kEventDistance = 16;
  constexpr size_t kPropertiesDistance = 8;
  constexpr size_t kCacheLineBytes = 64;
  if (row_idx + kEventDistance < rows_.size()) {
    __builtin_prefetch(&events_[rows_[row_idx + kEventDistance].event_idx].properties);
  }
  if (row_idx + kPropertiesDistance < rows_.size()) {
    const Properties& properties = Row(row_idx + kPropertiesDistance).properties;
    const char* begin = reinterpret_cast<const char*>(properties.data());
    const size_t bytes = properties.size() * sizeof(Property);
    for (size_t offset = 0; offset < bytes; offset += kCacheLineBytes) {
      __builtin_prefetch(begin + offset);
    }
  }
}

void SegmentEncoder::ChooseColumns() {
  std::vector<uint32_t> candidates;
  std::vector<uint32_t> map_keys;
  ChooseOwnColumns(
      static_cast<uint32_t>(keys_.size()), events_.size(), options_,
      [this](uint32_t id) { return keys_[id].row_count; },
      [this](uint32_t id) { return std::string_view(keys_[id].key); }, &candidates, &map_keys);
  for (const uint32_t id : candidates) {
    KeyEntry& entry = keys_[id];
    entry.slot = KeySlot{true, static_cast<uint32_t>(footer_.columns.size())};
    FooterColumn& column = footer_.columns.emplace_back();
    column.key = entry.key;
    column.row_count = entry.row_count;
    column.tag_mask = entry.tag_mask;
  }
  for (const uint32_t id : map_keys) {
    KeyEntry& entry = keys_[id];
    entry.slot = KeySlot{false, static_cast<uint32_t>(footer_.map_keys.size())};
    footer_.map_keys.push_back(
        FooterMapKey{std::string(entry.key), entry.row_count, entry.tag_mask});
  }
}

void SegmentEncoder::BuildNameDictionary() {
  Interner names;
  name_ids_.resize(events_.size());
  std::vector<uint64_t> counts;
  for (size_t event_idx = 0; event_idx < events_.size(); ++event_idx) {
    const uint32_t id = names.Intern(events_[event_idx].name, 0);
    if (id == counts.size()) {
      counts.push_back(0);
    }
    ++counts[id];
    name_ids_[event_idx] = id;
  }
  std::vector<uint32_t> sorted_ids(names.size());
  std::iota(sorted_ids.begin(), sorted_ids.end(), 0);
  std::sort(sorted_ids.begin(), sorted_ids.end(),
            [&](uint32_t a, uint32_t b) { return names[a] < names[b]; });
  name_code_of_id_.resize(names.size());
  for (const uint32_t id : sorted_ids) {
    name_code_of_id_[id] = static_cast<uint32_t>(footer_.event_names.size());
    footer_.event_names.push_back(FooterEventName{std::string(names[id]), counts[id]});
  }
}

// Picks, per column holding strings, a dictionary or plain strings by their
// estimated raw sizes (the dictionary wins ties: it makes filters cheaper).
void SegmentEncoder::BuildColumnDictionaries() {
  const size_t column_count = footer_.columns.size();
  struct StringStats {
    std::unordered_set<std::string_view> distinct;
    std::string_view last;  // skips the set for a value repeated row after row
    uint64_t occurrences = 0;
    uint64_t plain_bytes = 0;
  };
  std::vector<StringStats> stats(column_count);
  // In input order: the events are read front to back, not in a random walk.
  for (size_t event_idx = 0; event_idx < events_.size(); ++event_idx) {
    const Properties& properties = events_[event_idx].properties;
    for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
      const KeySlot slot = keys_[key_ids_[property_begin_[event_idx] + property_idx]].slot;
      if (!slot.own_column) {
        continue;
      }
      StringStats& column_stats = stats[slot.index];
      ForEachString(properties[property_idx].value, [&](std::string_view text) {
        ++column_stats.occurrences;
        column_stats.plain_bytes += text.size() + VarintBytes(text.size());
        if (column_stats.occurrences == 1 || text != column_stats.last) {
          column_stats.distinct.insert(text);
          column_stats.last = text;
        }
      });
    }
  }
  dictionaries_.resize(column_count);
  for (size_t column_idx = 0; column_idx < column_count; ++column_idx) {
    FooterColumn& column = footer_.columns[column_idx];
    const StringStats& column_stats = stats[column_idx];
    constexpr uint8_t kStringTags = TagBit(PropertyTag::kString) | TagBit(PropertyTag::kList);
    if ((column.tag_mask & kStringTags) == 0) {
      column.encoding = StringEncoding::kNone;
      continue;
    }
    if (column_stats.occurrences == 0) {
      column.encoding = StringEncoding::kPlain;  // only empty lists
      continue;
    }
    uint64_t dictionary_bytes = column_stats.occurrences * CodeWidth(column_stats.distinct.size());
    for (const std::string_view text : column_stats.distinct) {
      dictionary_bytes += text.size() + VarintBytes(text.size());
    }
    if (dictionary_bytes > column_stats.plain_bytes) {
      column.encoding = StringEncoding::kPlain;
      continue;
    }
    column.encoding = StringEncoding::kDictionary;
    ColumnDictionary& dictionary = dictionaries_[column_idx];
    dictionary.entries.assign(column_stats.distinct.begin(), column_stats.distinct.end());
    std::sort(dictionary.entries.begin(), dictionary.entries.end());
    dictionary.Index();
    column.dictionary_size = static_cast<uint32_t>(dictionary.entries.size());
  }
}

Status SegmentEncoder::AppendChunk(std::string_view raw, ChunkRef* ref, bool uncompressed) {
  if (raw.size() > kSegmentChunkBytesMax) {
    return Status::ResourceExhausted("a segment column chunk of " + std::to_string(raw.size()) +
                                     " bytes is over kSegmentChunkBytesMax");
  }
  const SegmentCodec* forced = options_.codec.has_value() ? &*options_.codec
                               : uncompressed                ? &kUncompressedCodec
                                                             : nullptr;
  compressor_.Compress(raw, forced, ref, &image_);
  return Status::Ok();
}

Status SegmentEncoder::EncodeFixedColumns(size_t row_begin, size_t row_end, FooterBlock* block) {
  const size_t rows = row_end - row_begin;
  std::vector<int64_t> times(rows);
  std::vector<Id128> insert_ids(rows);
  std::vector<uint32_t> key_versions(rows);
  std::vector<uint32_t> name_codes(rows);
  std::vector<Id128> subjects;
  std::vector<uint32_t> run_lengths;
  block->name_bitmap.assign((footer_.event_names.size() + 7) / 8, '\0');
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    const RowKey& event = rows_[row_begin + row_idx];
    times[row_idx] = event.time_ms;
    insert_ids[row_idx] = event.insert_id;
    key_versions[row_idx] = event.key_version;
    const uint32_t code = name_code_of_id_[name_ids_[event.event_idx]];
    name_codes[row_idx] = code;
    block->name_bitmap[code / 8] =
        static_cast<char>(block->name_bitmap[code / 8] | (1 << (code % 8)));
    if (subjects.empty() || subjects.back() != event.subject) {
      subjects.push_back(event.subject);
      run_lengths.push_back(0);
    }
    ++run_lengths.back();
    if (event.stored != event.subject) {
      std::vector<StoredSubjectRun>& stored = block->stored_runs;
      const uint32_t row = static_cast<uint32_t>(row_idx);
      // A stored run lies within one subject run.
      if (run_lengths.back() > 1 && !stored.empty() && stored.back().subject == event.stored &&
          stored.back().row_begin + stored.back().row_count == row) {
        ++stored.back().row_count;
      } else {
        stored.push_back(StoredSubjectRun{row, 1, event.stored});
      }
    }
  }
  block->time_min_ms = *std::min_element(times.begin(), times.end());
  block->time_max_ms = *std::max_element(times.begin(), times.end());
  block->subject_first = subjects.front();
  block->subject_last = subjects.back();
  block->subject_run_count = static_cast<uint32_t>(subjects.size());
  block->chunks.resize(kFixedColumnCount + footer_.columns.size() + 1);
  ChooseGranuleEnds(run_lengths, options_.granule_rows, &granule_ends_);

  raw_.clear();
  const TimeEncoding time_encoding =
      TimeEncodingOf(kSegmentFormatVersion, block->time_min_ms, block->time_max_ms);
  EncodeTimes(times, block->time_min_ms, block->time_max_ms, time_encoding, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, &block->chunks[static_cast<size_t>(FixedColumn::kTime)],
                                 time_encoding == TimeEncoding::kPackedOffsets));
  raw_.clear();
  EncodeSubjects(subjects, run_lengths, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, &block->chunks[static_cast<size_t>(FixedColumn::kSubject)]));
  raw_.clear();
  EncodeInsertIds(insert_ids, &raw_);
  MP_RETURN_IF_ERROR(
      AppendChunk(raw_, &block->chunks[static_cast<size_t>(FixedColumn::kInsertId)]));
  raw_.clear();
  EncodeKeyVersions(key_versions, &raw_);
  MP_RETURN_IF_ERROR(
      AppendChunk(raw_, &block->chunks[static_cast<size_t>(FixedColumn::kKeyVersion)]));
  raw_.clear();
  EncodeNameCodes(name_codes, footer_.event_names.size(), &raw_);
  return AppendChunk(raw_, &block->chunks[static_cast<size_t>(FixedColumn::kName)]);
}

Status SegmentEncoder::EncodeProperties(size_t row_begin, size_t row_end, FooterBlock* block) {
  const size_t rows = row_end - row_begin;
  const size_t column_count = footer_.columns.size();
  // Own columns: a value pointer per row; the map: entries in row order.
  std::vector<std::vector<const Value*>> column_values(column_count,
                                                       std::vector<const Value*>(rows, nullptr));
  std::vector<uint32_t> present_counts(column_count, 0);
  std::vector<MapEntryInput> map_entries;
  std::vector<uint32_t> map_entry_ends(rows);
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    const size_t row_entries_begin = map_entries.size();
    Prefetch(row_begin + row_idx);
    const Properties& properties = Row(row_begin + row_idx).properties;
    for (size_t property_idx = 0; property_idx < properties.size(); ++property_idx) {
      const KeySlot slot = KeyOf(row_begin + row_idx, property_idx).slot;
      if (slot.own_column) {
        column_values[slot.index][row_idx] = &properties[property_idx].value;
        ++present_counts[slot.index];
      } else {
        map_entries.push_back(MapEntryInput{slot.index, &properties[property_idx].value});
      }
    }
    std::sort(
        map_entries.begin() + static_cast<ptrdiff_t>(row_entries_begin), map_entries.end(),
        [](const MapEntryInput& a, const MapEntryInput& b) { return a.key_code < b.key_code; });
    map_entry_ends[row_idx] = static_cast<uint32_t>(map_entries.size());
  }
  std::vector<uint32_t> string_codes;
  std::vector<uint32_t> list_codes;
  for (size_t column_idx = 0; column_idx < column_count; ++column_idx) {
    ChunkRef& ref = block->chunks[kFixedColumnCount + column_idx];
    raw_.clear();
    if (present_counts[column_idx] > 0) {
      const FooterColumn& column = footer_.columns[column_idx];
      PropertyColumnInput input;
      input.values = column_values[column_idx];
      input.encoding = column.encoding;
      input.dictionary_size = column.dictionary_size;
      string_codes.clear();
      list_codes.clear();
      if (column.encoding == StringEncoding::kDictionary) {
        ColumnDictionary& dictionary = dictionaries_[column_idx];
        for (const Value* value : column_values[column_idx]) {
          if (value != nullptr && value->type() == Value::Type::kString) {
            string_codes.push_back(dictionary.Code(value->as_string()));
          } else if (value != nullptr && value->type() == Value::Type::kList) {
            for (const std::string& item : value->as_list()) {
              list_codes.push_back(dictionary.Code(item));
            }
          }
        }
      }
      input.string_codes = string_codes;
      input.list_codes = list_codes;
      EncodePropertyColumn(input, &raw_);
    }
    MP_RETURN_IF_ERROR(CompressPropertyChunk(compressor_, raw_, rows, &footer_.columns[column_idx],
                                             0, granule_ends_, options_.granule_ratio_min,
                                             present_counts[column_idx],
                                             ForcedCodec(), &ref, &image_));
  }
  ChunkRef& map_ref = block->chunks.back();
  raw_.clear();
  if (!map_entries.empty()) {
    EncodeMapColumn(map_entries, map_entry_ends, &raw_);
  }
  return CompressPropertyChunk(compressor_, raw_, rows, nullptr, footer_.map_keys.size(),
                               granule_ends_, options_.granule_ratio_min,
                               static_cast<uint32_t>(map_entries.size()),
                               ForcedCodec(), &map_ref, &image_);
}

Status SegmentEncoder::EncodeBlock(size_t row_begin, size_t row_end) {
  FooterBlock& block = footer_.blocks.emplace_back();
  block.row_count = static_cast<uint32_t>(row_end - row_begin);
  MP_RETURN_IF_ERROR(EncodeFixedColumns(row_begin, row_end, &block));
  MP_RETURN_IF_ERROR(EncodeProperties(row_begin, row_end, &block));
  // Version 4: the policy versions, after the map chunk.
  std::vector<uint32_t> policy_versions(row_end - row_begin);
  for (size_t row_idx = row_begin; row_idx < row_end; ++row_idx) {
    policy_versions[row_idx - row_begin] = rows_[row_idx].policy_version;
  }
  raw_.clear();
  EncodePolicyVersions(policy_versions, &raw_);
  return AppendChunk(raw_, &block.policy_versions);
}

void SegmentEncoder::FillSummary() {
  footer_.project_id = options_.project_id;
  footer_.row_count = events_.size();
  footer_.block_rows_max = options_.block_rows_max;
  footer_.fold_generation = options_.fold != nullptr ? options_.fold->generation : 0;
  footer_.subject_min = rows_.front().subject;
  footer_.subject_max = rows_.back().subject;
  footer_.time_min_ms = INT64_MAX;
  footer_.time_max_ms = INT64_MIN;
  footer_.subject_count = 0;
  for (size_t row_idx = 0; row_idx < rows_.size(); ++row_idx) {
    const RowKey& row = rows_[row_idx];
    footer_.time_min_ms = std::min(footer_.time_min_ms, row.time_ms);
    footer_.time_max_ms = std::max(footer_.time_max_ms, row.time_ms);
    if (row_idx == 0 || rows_[row_idx - 1].subject != row.subject) {
      ++footer_.subject_count;
    }
  }
}

Result<std::string> SegmentEncoder::Encode() {
  MP_RETURN_IF_ERROR(CheckOptions(events_, options_));
  MP_RETURN_IF_ERROR(CollectKeys());
  SortRows();
  FillSummary();
  BuildNameDictionary();
  ChooseColumns();
  BuildColumnDictionaries();
  image_ = EncodeSegmentHeader();
  for (size_t column_idx = 0; column_idx < footer_.columns.size(); ++column_idx) {
    if (footer_.columns[column_idx].encoding == StringEncoding::kDictionary) {
      raw_.clear();
      EncodeDictionary(dictionaries_[column_idx].entries, &raw_);
      MP_RETURN_IF_ERROR(AppendChunk(raw_, &footer_.columns[column_idx].dictionary));
    }
  }
  size_t row_begin = 0;
  uint64_t block_bytes = 0;
  for (size_t row_idx = 0; row_idx < events_.size(); ++row_idx) {
    block_bytes += approximate_bytes_[rows_[row_idx].event_idx];
    const size_t rows = row_idx + 1 - row_begin;
    if (rows == options_.block_rows_max || block_bytes >= options_.block_bytes_target ||
        row_idx + 1 == events_.size()) {
      MP_RETURN_IF_ERROR(EncodeBlock(row_begin, row_idx + 1));
      row_begin = row_idx + 1;
      block_bytes = 0;
    }
  }
  std::string footer_bytes;
  EncodeSegmentFooter(footer_, &footer_bytes);
  if (footer_bytes.size() > kSegmentFooterBytesMax) {
    return Status::ResourceExhausted("segment footer is over kSegmentFooterBytesMax");
  }
  image_ += footer_bytes;
  SegmentTrailer trailer;
  trailer.footer_bytes = footer_bytes.size();
  trailer.footer_crc32 = Crc32(0, footer_bytes);
  image_ += EncodeSegmentTrailer(trailer);
  return std::move(image_);
}

}  // namespace

Result<std::string> EncodeSegment(std::span<const Event> events,
                                  const SegmentWriteOptions& options) {
  SegmentEncoder encoder(events, options);
  return encoder.Encode();
}

Status WriteSegmentImage(FileSystem& file_system, const std::string& path, std::string_view image) {
  const std::string temporary = path + ".tmp";
  // OpenAppendable appends, so a .tmp left by a failed attempt must go first.
  MP_RETURN_IF_ERROR(file_system.Remove(temporary));
  Status status = [&]() -> Status {
    MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file,
                        file_system.OpenAppendable(temporary, kSegmentFileMode));
    MP_RETURN_IF_ERROR(file->Append(image));
    MP_RETURN_IF_ERROR(file->Sync());
    return file->Close();
  }();
  if (status.ok()) {
    status = file_system.Rename(temporary, path);
  }
  if (!status.ok()) {
    (void)file_system.Remove(temporary);  // best effort; the error above is what matters
    return status;
  }
  std::string folder = std::filesystem::path(path).parent_path().string();
  return file_system.SyncDirectory(folder.empty() ? "." : folder);
}

Status WriteSegmentFile(FileSystem& file_system, const std::string& path,
                        std::span<const Event> events, const SegmentWriteOptions& options) {
  MP_ASSIGN_OR_RETURN(const std::string image, EncodeSegment(events, options));
  return WriteSegmentImage(file_system, path, image);
}

}  // namespace minpanel::store
