// MergeSegments: a k-way merge of sorted segments, block by block, from
// columns to columns (see segment_merge.h).
#include "store/segment_merge.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

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

void PutCode(uint32_t code, size_t width, std::string* out) {
  for (size_t byte_idx = 0; byte_idx < width; ++byte_idx) {
    out->push_back(static_cast<char>(code >> (8 * byte_idx)));
  }
}

constexpr uint8_t kStringTags = TagBit(PropertyTag::kString) | TagBit(PropertyTag::kList);

// One property key of the output.
struct OutKey {
  std::string key;
  uint64_t row_count = 0;
  uint8_t tag_mask = 0;
  bool own_column = false;
  uint32_t index = 0;  // column index, or map key code
  // Own columns holding strings: what decides dictionary or plain.
  uint64_t occurrences = 0;
  uint64_t plain_bytes = 0;
  bool over_budget = false;                   // kMergeDistinctBytesMax reached: plain
  std::unordered_set<std::string> collected;  // values of plain or map inputs
  StringEncoding encoding = StringEncoding::kNone;
  std::vector<std::string_view> dictionary;              // sorted, kDictionary only
  std::unordered_map<std::string_view, uint32_t> codes;  // when some input has no dictionary
};

// One property key of one input (an entry of its property_keys()).
struct InputKey {
  uint32_t out_key = 0;
  std::shared_ptr<const SegmentDictionary> dictionary;  // the input's, when it has one
  std::vector<uint64_t> code_counts;                    // rows using each input code
  std::vector<uint32_t> code_remap;                     // input code -> output code
};

// One value of an input row, from an own column or a map entry.
struct ValueRef {
  PropertyTag tag = PropertyTag::kAbsent;
  int64_t int_value = 0;
  double double_value = 0;
  std::string_view text;
  uint32_t code = UINT32_MAX;  // the input dictionary's code of `text`
  std::span<const std::string_view> items;
  std::span<const uint32_t> item_codes;  // empty without an input dictionary
  std::string_view map_bytes;            // the encoded value, from a map entry
};

// One input's current block, decoded into columns: its own columns one
// PropertyColumn each, its map column as entries pointing into the chunk.
struct Cursor {
  size_t block_idx = 0;
  size_t row_idx = 0;
  size_t rows = 0;
  std::vector<int64_t> times;
  SubjectRuns runs;
  std::vector<Id128> subjects;  // per row
  // Per row when the block has stored subject runs (a folded input), else empty.
  std::vector<StoredSubjectRun> stored_runs;
  std::vector<Id128> stored;
  std::vector<Id128> insert_ids;
  std::vector<uint32_t> key_versions;
  std::vector<uint32_t> policy_versions;
  std::vector<uint32_t> name_codes;
  std::vector<uint32_t> own_keys;       // property_keys() indexes of the own columns
  std::vector<PropertyColumn> columns;  // per own_keys entry
  std::vector<uint32_t> present_begin;  // per row + 1, into present_keys
  std::vector<uint32_t> present_keys;   // own_keys indexes each row holds, in key order
  std::vector<uint32_t> map_key_idx;    // map key code -> property_keys() index
  std::string map_scratch;
  std::vector<SegmentReader::MapEntryView> map_entries;
  std::vector<uint32_t> map_begin;  // per row + 1, into map_entries
};

// One own column of the output block, filled row by row.
struct OutColumn {
  std::vector<PropertyTag> tags;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
  std::vector<uint32_t> string_codes;
  std::vector<uint32_t> string_lengths;
  std::string string_bytes;
  std::vector<uint32_t> list_counts;
  std::vector<uint32_t> item_codes;
  std::vector<uint32_t> item_lengths;
  std::string item_bytes;
  uint32_t present_count = 0;

  void Clear() {
    tags.clear();
    ints.clear();
    doubles.clear();
    string_codes.clear();
    string_lengths.clear();
    string_bytes.clear();
    list_counts.clear();
    item_codes.clear();
    item_lengths.clear();
    item_bytes.clear();
    present_count = 0;
  }
};

class SegmentMerger {
 public:
  // `fold_generation`: what the output footer records.
  SegmentMerger(std::span<const std::shared_ptr<const SegmentReader>> inputs,
                const SegmentWriteOptions& options, const MergeSink& sink,
                uint64_t fold_generation)
      : inputs_(inputs),
        options_(options),
        sink_(sink),
        compressor_(options.zstd_level),
        fold_generation_(fold_generation) {}

  Result<MergeResult> Merge();

 private:
  Status CheckOptions() const;
  Status PlanNames();
  Status PlanKeys();
  uint32_t InternKey(std::string_view key);
  void ChooseColumns();
  Status CollectStrings();
  Status CollectColumnStrings(size_t input_idx, size_t key_idx);
  void ChooseEncodings();
  Status LoadBlock(size_t input_idx);
  bool Less(size_t a, size_t b) const;
  Status AppendRow(size_t input_idx);
  void AppendValue(const InputKey& input_key, const ValueRef& value);
  void EncodeMapValue(const ValueRef& value);
  Status ParseMapValue(const SegmentReader::MapEntryView& entry, ValueRef* value);
  void FinishMapRow();
  // `uncompressed`: stored as is unless the options force a codec (packed times).
  Status AppendChunk(std::string_view raw, ChunkRef* ref, bool uncompressed = false);
  Status EncodeBlock();
  void EncodeColumn(size_t column_idx, std::string* raw);
  Status Emit();

  std::span<const std::shared_ptr<const SegmentReader>> inputs_;
  const SegmentWriteOptions& options_;
  const MergeSink& sink_;
  ChunkCompressor compressor_;
  uint64_t fold_generation_;

  uint64_t rows_total_ = 0;
  std::vector<std::vector<uint32_t>> name_remap_;  // per input: code -> output code
  std::vector<uint32_t> name_sizes_;               // per output code: name bytes
  std::vector<OutKey> keys_;
  std::unordered_map<std::string, uint32_t> key_ids_;
  std::vector<std::vector<InputKey>> input_keys_;  // per input, per property key
  uint64_t collected_bytes_ = 0;

  SegmentFooter footer_;
  std::vector<Cursor> cursors_;
  std::vector<size_t> heap_;

  // The output block being built.
  std::vector<int64_t> times_;
  std::vector<Id128> insert_ids_;
  std::vector<uint32_t> key_versions_;
  std::vector<uint32_t> policy_versions_;
  std::vector<uint32_t> name_codes_;
  std::vector<Id128> block_subjects_;
  std::vector<uint32_t> run_lengths_;
  std::vector<uint32_t> granule_ends_;
  std::vector<StoredSubjectRun> stored_runs_;
  std::vector<OutColumn> columns_;
  std::string map_raw_;  // entries of the rows so far, encoded
  std::string map_row_;  // the current row's entries
  struct MapRowEntry {
    uint32_t key_code = 0;
    size_t begin = 0;  // in map_row_
    size_t end = 0;
  };
  std::vector<MapRowEntry> map_row_entries_;
  std::vector<std::string_view> items_;  // a map entry's list items
  std::vector<uint32_t> fill_;
  uint32_t map_entries_ = 0;
  uint64_t block_bytes_ = 0;
  Id128 last_subject_;

  std::string out_;  // encoded bytes not yet sent
  std::string raw_;
  uint64_t file_bytes_ = 0;
};

Status SegmentMerger::CheckOptions() const {
  if (options_.block_rows_max == 0 || options_.block_rows_max > kSegmentBlockRowsMax) {
    return Status::InvalidArgument("block_rows_max must be 1 .. kSegmentBlockRowsMax");
  }
  if (options_.own_columns_max > kSegmentPropertyColumnsMax) {
    return Status::InvalidArgument("own_columns_max is over kSegmentPropertyColumnsMax");
  }
  if (!(options_.own_column_fraction_min >= 0.0 && options_.own_column_fraction_min <= 1.0)) {
    return Status::InvalidArgument("own_column_fraction_min must be in [0, 1]");
  }
  if (options_.zstd_level < 1 || options_.zstd_level > 19) {
    return Status::InvalidArgument("zstd_level must be 1 .. 19");
  }
  return Status::Ok();
}

bool IsView(const SegmentReader& reader) { return reader.hidden_rows_base() != nullptr; }

// Event names: exact row counts of the visible rows (a view's footer counts
// are its base's, so a view's name codes are counted), then one sorted
// dictionary of the names some visible row has.
Status SegmentMerger::PlanNames() {
  std::map<std::string_view, uint64_t> counts;
  std::vector<std::vector<uint64_t>> input_counts(inputs_.size());
  std::vector<uint32_t> codes;
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    const SegmentReader& reader = *inputs_[input_idx];
    rows_total_ += reader.summary().row_count;
    std::vector<uint64_t>& names = input_counts[input_idx];
    names.assign(reader.event_names().size(), 0);
    if (!IsView(reader)) {
      for (size_t code = 0; code < names.size(); ++code) {
        names[code] = reader.event_names()[code].row_count;
      }
    } else {
      for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
        if (reader.block(block_idx).row_count == 0) {
          continue;
        }
        MP_RETURN_IF_ERROR(reader.ReadNameCodes(block_idx, &codes));
        for (const uint32_t code : codes) {
          ++names[code];
        }
      }
    }
    for (size_t code = 0; code < names.size(); ++code) {
      if (names[code] > 0) {
        counts[reader.event_names()[code].name] += names[code];
      }
    }
  }
  if (rows_total_ > kSegmentRowsMax) {
    return Status::InvalidArgument("a merge holds at most kSegmentRowsMax rows");
  }
  std::map<std::string_view, uint32_t> output_codes;
  for (const auto& [name, count] : counts) {
    output_codes[name] = static_cast<uint32_t>(footer_.event_names.size());
    footer_.event_names.push_back(FooterEventName{std::string(name), count});
    name_sizes_.push_back(static_cast<uint32_t>(name.size()));
  }
  name_remap_.resize(inputs_.size());
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    const SegmentReader& reader = *inputs_[input_idx];
    std::vector<uint32_t>& remap = name_remap_[input_idx];
    remap.assign(reader.event_names().size(), UINT32_MAX);
    for (size_t code = 0; code < remap.size(); ++code) {
      const auto found = output_codes.find(reader.event_names()[code].name);
      if (found != output_codes.end()) {
        remap[code] = found->second;
      }
    }
  }
  return Status::Ok();
}

uint32_t SegmentMerger::InternKey(std::string_view key) {
  const auto [found, inserted] =
      key_ids_.try_emplace(std::string(key), static_cast<uint32_t>(keys_.size()));
  if (inserted) {
    keys_.emplace_back().key = std::string(key);
  }
  return found->second;
}

// A view's key statistics, counted from its visible rows: each own column
// alone, the map column's entries.
Status CountViewKeys(const SegmentReader& reader, std::vector<uint64_t>* row_counts,
                     std::vector<uint8_t>* tag_masks) {
  const std::vector<PropertyKeyInfo>& infos = reader.property_keys();
  std::vector<uint32_t> map_key_idx;
  for (uint32_t key_idx = 0; key_idx < infos.size(); ++key_idx) {
    if (infos[key_idx].storage == PropertyStorage::kMap) {
      map_key_idx.push_back(key_idx);
    }
  }
  PropertyColumn column;
  std::string scratch;
  std::vector<SegmentReader::MapEntryView> entries;
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    if (reader.block(block_idx).row_count == 0) {
      continue;
    }
    for (size_t key_idx = 0; key_idx < infos.size(); ++key_idx) {
      if (infos[key_idx].storage != PropertyStorage::kColumn) {
        continue;
      }
      MP_RETURN_IF_ERROR(reader.ReadProperty(block_idx, infos[key_idx].key, &column));
      for (const PropertyTag tag : column.tags) {
        if (tag != PropertyTag::kAbsent) {
          ++(*row_counts)[key_idx];
          (*tag_masks)[key_idx] |= TagBit(tag);
        }
      }
    }
    if (map_key_idx.empty()) {
      continue;
    }
    MP_RETURN_IF_ERROR(reader.ReadMapEntries(block_idx, &scratch, &entries));
    for (const SegmentReader::MapEntryView& entry : entries) {
      const uint32_t key_idx = map_key_idx[entry.key_code];
      ++(*row_counts)[key_idx];
      (*tag_masks)[key_idx] |= TagBit(entry.tag);
    }
  }
  return Status::Ok();
}

// Key statistics of the visible rows: a plain segment's footer has them
// exactly; a view's are counted from its rows.
Status SegmentMerger::PlanKeys() {
  input_keys_.resize(inputs_.size());
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    const SegmentReader& reader = *inputs_[input_idx];
    const std::vector<PropertyKeyInfo>& infos = reader.property_keys();
    std::vector<InputKey>& input_keys = input_keys_[input_idx];
    input_keys.resize(infos.size());
    std::vector<uint64_t> row_counts(infos.size(), 0);
    std::vector<uint8_t> tag_masks(infos.size(), 0);
    if (!IsView(reader)) {
      for (size_t key_idx = 0; key_idx < infos.size(); ++key_idx) {
        row_counts[key_idx] = infos[key_idx].row_count;
        tag_masks[key_idx] = infos[key_idx].tag_mask;
      }
    } else {
      MP_RETURN_IF_ERROR(CountViewKeys(reader, &row_counts, &tag_masks));
    }
    for (size_t key_idx = 0; key_idx < infos.size(); ++key_idx) {
      if (row_counts[key_idx] == 0) {
        input_keys[key_idx].out_key = UINT32_MAX;  // no visible row holds it
        continue;
      }
      const uint32_t out_key = InternKey(infos[key_idx].key);
      input_keys[key_idx].out_key = out_key;
      keys_[out_key].row_count += row_counts[key_idx];
      keys_[out_key].tag_mask |= tag_masks[key_idx];
    }
  }
  return Status::Ok();
}

// The same choice as EncodeSegment's: ChooseOwnColumns (segment.h).
void SegmentMerger::ChooseColumns() {
  std::vector<uint32_t> candidates;
  std::vector<uint32_t> map_keys;
  ChooseOwnColumns(
      static_cast<uint32_t>(keys_.size()), rows_total_, options_,
      [this](uint32_t id) { return keys_[id].row_count; },
      [this](uint32_t id) { return std::string_view(keys_[id].key); }, &candidates, &map_keys);
  for (const uint32_t id : candidates) {
    OutKey& entry = keys_[id];
    entry.own_column = true;
    entry.index = static_cast<uint32_t>(footer_.columns.size());
    FooterColumn& column = footer_.columns.emplace_back();
    column.key = entry.key;
    column.row_count = entry.row_count;
    column.tag_mask = entry.tag_mask;
  }
  for (const uint32_t id : map_keys) {
    OutKey& entry = keys_[id];
    entry.own_column = false;
    entry.index = static_cast<uint32_t>(footer_.map_keys.size());
    footer_.map_keys.push_back(FooterMapKey{entry.key, entry.row_count, entry.tag_mask});
  }
}

// Counts the strings of one input key that goes to an output own column:
// per dictionary code when the input has a dictionary, else the values
// themselves (up to kMergeDistinctBytesMax in all).
Status SegmentMerger::CollectColumnStrings(size_t input_idx, size_t key_idx) {
  const SegmentReader& reader = *inputs_[input_idx];
  const PropertyKeyInfo& info = reader.property_keys()[key_idx];
  InputKey& input_key = input_keys_[input_idx][key_idx];
  OutKey& out = keys_[input_key.out_key];
  const bool dictionary =
      info.storage == PropertyStorage::kColumn && info.encoding == StringEncoding::kDictionary;
  if (dictionary) {
    MP_ASSIGN_OR_RETURN(input_key.dictionary, reader.ReadDictionary(info.key));
    input_key.code_counts.assign(input_key.dictionary->entries.size(), 0);
  }
  PropertyColumn column;
  auto count_value = [&](std::string_view text, uint32_t code) {
    ++out.occurrences;
    out.plain_bytes += text.size() + VarintBytes(text.size());
    if (dictionary) {
      ++input_key.code_counts[code];
      return;
    }
    if (out.over_budget) {
      return;
    }
    if (out.collected.insert(std::string(text)).second) {
      collected_bytes_ += text.size() + 32;
      if (collected_bytes_ > kMergeDistinctBytesMax) {
        out.over_budget = true;
        out.collected.clear();
      }
    }
  };
  for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
    if (reader.block(block_idx).row_count == 0) {
      continue;
    }
    MP_RETURN_IF_ERROR(reader.ReadProperty(block_idx, info.key, &column));
    for (size_t row_idx = 0; row_idx < column.tags.size(); ++row_idx) {
      if (column.tags[row_idx] == PropertyTag::kString) {
        count_value(column.strings[row_idx], dictionary ? column.string_codes[row_idx] : 0);
      } else if (column.tags[row_idx] == PropertyTag::kList) {
        for (uint32_t item_idx = column.list_offsets[row_idx];
             item_idx < column.list_offsets[row_idx + 1]; ++item_idx) {
          count_value(column.list_items[item_idx],
                      dictionary ? column.list_item_codes[item_idx] : 0);
        }
      }
    }
  }
  return Status::Ok();
}

Status SegmentMerger::CollectStrings() {
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    for (size_t key_idx = 0; key_idx < input_keys_[input_idx].size(); ++key_idx) {
      const uint32_t out_key = input_keys_[input_idx][key_idx].out_key;
      if (out_key == UINT32_MAX || !keys_[out_key].own_column ||
          (keys_[out_key].tag_mask & kStringTags) == 0) {
        continue;
      }
      MP_RETURN_IF_ERROR(CollectColumnStrings(input_idx, key_idx));
    }
  }
  return Status::Ok();
}

// Dictionary or plain by the estimated raw sizes, as EncodeSegment decides
// (segment_writer.cc, BuildColumnDictionaries); the distinct values are the
// used entries of the inputs' dictionaries and the collected values.
void SegmentMerger::ChooseEncodings() {
  for (OutKey& out : keys_) {
    if (!out.own_column) {
      continue;
    }
    FooterColumn& column = footer_.columns[out.index];
    if ((out.tag_mask & kStringTags) == 0) {
      column.encoding = out.encoding = StringEncoding::kNone;
      continue;
    }
    out.encoding = StringEncoding::kPlain;
    if (out.occurrences > 0 && !out.over_budget) {
      std::vector<std::string_view> distinct(out.collected.begin(), out.collected.end());
      for (const std::vector<InputKey>& input_keys : input_keys_) {
        for (const InputKey& input_key : input_keys) {
          if (input_key.out_key != UINT32_MAX && &keys_[input_key.out_key] == &out &&
              input_key.dictionary) {
            for (size_t code = 0; code < input_key.code_counts.size(); ++code) {
              if (input_key.code_counts[code] > 0) {
                distinct.push_back(input_key.dictionary->entries[code]);
              }
            }
          }
        }
      }
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      uint64_t dictionary_bytes = out.occurrences * CodeWidth(distinct.size());
      for (const std::string_view text : distinct) {
        dictionary_bytes += text.size() + VarintBytes(text.size());
      }
      if (dictionary_bytes <= out.plain_bytes) {
        out.encoding = StringEncoding::kDictionary;
        out.dictionary = std::move(distinct);
      }
    }
    column.encoding = out.encoding;
    if (out.encoding != StringEncoding::kDictionary) {
      out.collected.clear();
      continue;
    }
    column.dictionary_size = static_cast<uint32_t>(out.dictionary.size());
    if (!out.collected.empty() || out.dictionary.empty()) {
      out.codes.reserve(out.dictionary.size());
      for (uint32_t code = 0; code < out.dictionary.size(); ++code) {
        out.codes.emplace(out.dictionary[code], code);
      }
    }
  }
  for (std::vector<InputKey>& input_keys : input_keys_) {
    for (InputKey& input_key : input_keys) {
      if (input_key.out_key == UINT32_MAX || !input_key.dictionary) {
        continue;
      }
      const OutKey& out = keys_[input_key.out_key];
      if (out.encoding != StringEncoding::kDictionary) {
        continue;
      }
      input_key.code_remap.assign(input_key.code_counts.size(), UINT32_MAX);
      for (size_t code = 0; code < input_key.code_counts.size(); ++code) {
        if (input_key.code_counts[code] == 0) {
          continue;
        }
        const auto found = std::lower_bound(out.dictionary.begin(), out.dictionary.end(),
                                            input_key.dictionary->entries[code]);
        input_key.code_remap[code] = static_cast<uint32_t>(found - out.dictionary.begin());
      }
    }
  }
}

// Reads the next non-empty block of an input; false in `*loaded` at its end.
Status SegmentMerger::LoadBlock(size_t input_idx) {
  const SegmentReader& reader = *inputs_[input_idx];
  Cursor& cursor = cursors_[input_idx];
  while (cursor.block_idx < reader.block_count() && reader.block(cursor.block_idx).row_count == 0) {
    ++cursor.block_idx;
  }
  cursor.row_idx = 0;
  cursor.rows = 0;
  if (cursor.block_idx >= reader.block_count()) {
    return Status::Ok();
  }
  const size_t block_idx = cursor.block_idx;
  MP_RETURN_IF_ERROR(reader.ReadTimes(block_idx, &cursor.times));
  MP_RETURN_IF_ERROR(reader.ReadSubjects(block_idx, &cursor.runs));
  MP_RETURN_IF_ERROR(reader.ReadInsertIds(block_idx, &cursor.insert_ids));
  MP_RETURN_IF_ERROR(reader.ReadKeyVersions(block_idx, &cursor.key_versions));
  MP_RETURN_IF_ERROR(reader.ReadPolicyVersions(block_idx, &cursor.policy_versions));
  MP_RETURN_IF_ERROR(reader.ReadNameCodes(block_idx, &cursor.name_codes));
  const size_t rows = cursor.times.size();
  cursor.subjects.clear();
  for (size_t run_idx = 0; run_idx < cursor.runs.subjects.size(); ++run_idx) {
    cursor.subjects.insert(cursor.subjects.end(), cursor.runs.run_lengths[run_idx],
                           cursor.runs.subjects[run_idx]);
  }
  MP_RETURN_IF_ERROR(reader.ReadStoredSubjects(block_idx, &cursor.stored_runs));
  cursor.stored.clear();
  if (!cursor.stored_runs.empty()) {
    cursor.stored = cursor.subjects;
    for (const StoredSubjectRun& run : cursor.stored_runs) {
      if (run.row_begin + run.row_count > rows) {
        return Status::Corruption(reader.name() + ": block " + std::to_string(block_idx) +
                                  " has stored subject runs past its rows");
      }
      std::fill_n(cursor.stored.begin() + run.row_begin, run.row_count, run.subject);
    }
  }
  if (cursor.subjects.size() != rows || cursor.insert_ids.size() != rows ||
      cursor.key_versions.size() != rows || cursor.policy_versions.size() != rows ||
      cursor.name_codes.size() != rows) {
    return Status::Corruption(reader.name() + ": block " + std::to_string(block_idx) +
                              " has columns of different row counts");
  }
  // Own columns one at a time, and which of them each row holds (in key
  // order), so that a row's properties are visited without testing every
  // column; the map column as entries, undecoded.
  cursor.present_begin.assign(rows + 1, 0);
  for (size_t own_idx = 0; own_idx < cursor.own_keys.size(); ++own_idx) {
    PropertyColumn& column = cursor.columns[own_idx];
    MP_RETURN_IF_ERROR(reader.ReadProperty(
        block_idx, reader.property_keys()[cursor.own_keys[own_idx]].key, &column));
    if (column.tags.size() != rows) {
      return Status::Corruption(reader.name() + ": block " + std::to_string(block_idx) +
                                " has columns of different row counts");
    }
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      cursor.present_begin[row_idx + 1] += column.tags[row_idx] != PropertyTag::kAbsent;
    }
  }
  std::partial_sum(cursor.present_begin.begin(), cursor.present_begin.end(),
                   cursor.present_begin.begin());
  cursor.present_keys.resize(cursor.present_begin[rows]);
  fill_.assign(cursor.present_begin.begin(), cursor.present_begin.end() - 1);
  for (uint32_t own_idx = 0; own_idx < cursor.own_keys.size(); ++own_idx) {
    const std::vector<PropertyTag>& tags = cursor.columns[own_idx].tags;
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (tags[row_idx] != PropertyTag::kAbsent) {
        cursor.present_keys[fill_[row_idx]++] = own_idx;
      }
    }
  }
  cursor.map_begin.assign(rows + 1, 0);
  cursor.map_entries.clear();
  if (!cursor.map_key_idx.empty()) {
    MP_RETURN_IF_ERROR(reader.ReadMapEntries(block_idx, &cursor.map_scratch, &cursor.map_entries));
    for (const SegmentReader::MapEntryView& entry : cursor.map_entries) {
      if (entry.row >= rows) {
        return Status::Corruption(reader.name() + ": block " + std::to_string(block_idx) +
                                  " has a map entry past its rows");
      }
      ++cursor.map_begin[entry.row + 1];
    }
    std::partial_sum(cursor.map_begin.begin(), cursor.map_begin.end(), cursor.map_begin.begin());
  }
  cursor.rows = rows;
  return Status::Ok();
}

// Heap order: the smallest (subject, time, insert id) first; ties go to the
// earlier input, as EncodeSegment's stable sort of the concatenated inputs.
bool SegmentMerger::Less(size_t a, size_t b) const {
  const Cursor& left = cursors_[a];
  const Cursor& right = cursors_[b];
  return std::tie(left.subjects[left.row_idx], left.times[left.row_idx],
                  left.insert_ids[left.row_idx],
                  a) < std::tie(right.subjects[right.row_idx], right.times[right.row_idx],
                                right.insert_ids[right.row_idx], b);
}

// The bytes of a map entry's value, as EncodeMapColumn writes them.
void SegmentMerger::EncodeMapValue(const ValueRef& value) {
  if (!value.map_bytes.empty() || value.tag == PropertyTag::kNull ||
      value.tag == PropertyTag::kFalse || value.tag == PropertyTag::kTrue) {
    map_row_.append(value.map_bytes);  // copied as stored (null, booleans: none)
    return;
  }
  switch (value.tag) {
    case PropertyTag::kInt:
      PutVarint64(ZigZagEncode(value.int_value), &map_row_);
      return;
    case PropertyTag::kDouble:
      PutFixed64(std::bit_cast<uint64_t>(value.double_value), &map_row_);
      return;
    case PropertyTag::kString:
      PutVarint64(value.text.size(), &map_row_);
      map_row_.append(value.text);
      return;
    case PropertyTag::kList:
      PutVarint64(value.items.size(), &map_row_);
      for (const std::string_view item : value.items) {
        PutVarint64(item.size(), &map_row_);
        map_row_.append(item);
      }
      return;
    default:
      return;
  }
}

// A map entry's value bytes (already checked by MapChunkReader) as a ValueRef.
Status SegmentMerger::ParseMapValue(const SegmentReader::MapEntryView& entry, ValueRef* value) {
  *value = ValueRef{};
  value->tag = entry.tag;
  value->map_bytes = entry.value_bytes;
  ByteReader reader(entry.value_bytes);
  switch (entry.tag) {
    case PropertyTag::kInt: {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(reader.ReadVarint64("map int", &bits));
      value->int_value = ZigZagDecode(bits);
      return Status::Ok();
    }
    case PropertyTag::kDouble: {
      uint64_t bits = 0;
      MP_RETURN_IF_ERROR(reader.ReadFixed64("map double", &bits));
      value->double_value = std::bit_cast<double>(bits);
      return Status::Ok();
    }
    case PropertyTag::kString:
      return reader.ReadString("map string", &value->text);
    case PropertyTag::kList: {
      uint64_t count = 0;
      MP_RETURN_IF_ERROR(reader.ReadCount("map list", 1, UINT32_MAX, &count));
      items_.resize(count);
      for (std::string_view& item : items_) {
        MP_RETURN_IF_ERROR(reader.ReadString("map list item", &item));
      }
      value->items = items_;
      return Status::Ok();
    }
    default:
      return Status::Ok();
  }
}

void SegmentMerger::AppendValue(const InputKey& input_key, const ValueRef& value) {
  OutKey& out = keys_[input_key.out_key];
  block_bytes_ += out.key.size() + 10;
  if (value.tag == PropertyTag::kString) {
    block_bytes_ += value.text.size();
  } else if (value.tag == PropertyTag::kList) {
    for (const std::string_view item : value.items) {
      block_bytes_ += item.size() + 2;
    }
  }
  if (!out.own_column) {
    const size_t begin = map_row_.size();
    PutVarint64(out.index, &map_row_);
    map_row_.push_back(static_cast<char>(value.tag));
    EncodeMapValue(value);
    map_row_entries_.push_back(MapRowEntry{out.index, begin, map_row_.size()});
    return;
  }
  OutColumn& target = columns_[out.index];
  target.tags.resize(times_.size() - 1, PropertyTag::kAbsent);
  target.tags.push_back(value.tag);
  ++target.present_count;
  const bool dictionary = out.encoding == StringEncoding::kDictionary;
  auto code_of = [&](std::string_view text, uint32_t input_code) {
    if (!input_key.code_remap.empty() && input_code != UINT32_MAX) {
      return input_key.code_remap[input_code];
    }
    return out.codes.find(text)->second;
  };
  switch (value.tag) {
    case PropertyTag::kInt:
      target.ints.push_back(value.int_value);
      return;
    case PropertyTag::kDouble:
      target.doubles.push_back(value.double_value);
      return;
    case PropertyTag::kString:
      if (dictionary) {
        target.string_codes.push_back(code_of(value.text, value.code));
      } else {
        target.string_lengths.push_back(static_cast<uint32_t>(value.text.size()));
        target.string_bytes.append(value.text);
      }
      return;
    case PropertyTag::kList:
      target.list_counts.push_back(static_cast<uint32_t>(value.items.size()));
      for (size_t item_idx = 0; item_idx < value.items.size(); ++item_idx) {
        const std::string_view text = value.items[item_idx];
        if (dictionary) {
          target.item_codes.push_back(
              code_of(text, value.item_codes.empty() ? UINT32_MAX : value.item_codes[item_idx]));
        } else {
          target.item_lengths.push_back(static_cast<uint32_t>(text.size()));
          target.item_bytes.append(text);
        }
      }
      return;
    default:
      return;
  }
}

ValueRef ColumnValue(const PropertyColumn& column, size_t row_idx) {
  ValueRef value;
  value.tag = column.tags[row_idx];
  switch (value.tag) {
    case PropertyTag::kInt:
      value.int_value = column.ints[row_idx];
      break;
    case PropertyTag::kDouble:
      value.double_value = column.doubles[row_idx];
      break;
    case PropertyTag::kString:
      value.text = column.strings[row_idx];
      if (!column.string_codes.empty()) {
        value.code = column.string_codes[row_idx];
      }
      break;
    case PropertyTag::kList: {
      const uint32_t begin = column.list_offsets[row_idx];
      const uint32_t count = column.list_offsets[row_idx + 1] - begin;
      value.items = std::span<const std::string_view>(column.list_items).subspan(begin, count);
      if (!column.list_item_codes.empty()) {
        value.item_codes = std::span<const uint32_t>(column.list_item_codes).subspan(begin, count);
      }
      break;
    }
    default:
      break;
  }
  return value;
}

// Appends the row's map entries in ascending key code (they come from the
// input's own columns and its map, each in key order, so they may interleave).
void SegmentMerger::FinishMapRow() {
  PutVarint64(map_row_entries_.size(), &map_raw_);
  map_entries_ += static_cast<uint32_t>(map_row_entries_.size());
  const bool sorted = std::is_sorted(
      map_row_entries_.begin(), map_row_entries_.end(),
      [](const MapRowEntry& a, const MapRowEntry& b) { return a.key_code < b.key_code; });
  if (sorted) {
    map_raw_ += map_row_;
    return;
  }
  std::sort(map_row_entries_.begin(), map_row_entries_.end(),
            [](const MapRowEntry& a, const MapRowEntry& b) { return a.key_code < b.key_code; });
  for (const MapRowEntry& entry : map_row_entries_) {
    map_raw_.append(map_row_, entry.begin, entry.end - entry.begin);
  }
}

Status SegmentMerger::AppendRow(size_t input_idx) {
  const Cursor& cursor = cursors_[input_idx];
  const size_t row_idx = cursor.row_idx;
  const Id128 subject = cursor.subjects[row_idx];
  if (footer_.row_count == 0) {
    footer_.subject_min = subject;
  }
  if (footer_.row_count == 0 || subject != last_subject_) {
    ++footer_.subject_count;
  }
  last_subject_ = subject;
  ++footer_.row_count;
  const int64_t time_ms = cursor.times[row_idx];
  footer_.time_min_ms = std::min(footer_.time_min_ms, time_ms);
  footer_.time_max_ms = std::max(footer_.time_max_ms, time_ms);
  times_.push_back(time_ms);
  insert_ids_.push_back(cursor.insert_ids[row_idx]);
  key_versions_.push_back(cursor.key_versions[row_idx]);
  policy_versions_.push_back(cursor.policy_versions[row_idx]);
  const uint32_t name_code = name_remap_[input_idx][cursor.name_codes[row_idx]];
  name_codes_.push_back(name_code);
  if (block_subjects_.empty() || block_subjects_.back() != subject) {
    block_subjects_.push_back(subject);
    run_lengths_.push_back(0);
  }
  ++run_lengths_.back();
  if (!cursor.stored.empty() && cursor.stored[row_idx] != subject) {
    const uint32_t out_row = static_cast<uint32_t>(times_.size() - 1);
    const Id128& stored = cursor.stored[row_idx];
    // A stored run lies within one subject run.
    if (run_lengths_.back() > 1 && !stored_runs_.empty() && stored_runs_.back().subject == stored &&
        stored_runs_.back().row_begin + stored_runs_.back().row_count == out_row) {
      ++stored_runs_.back().row_count;
    } else {
      stored_runs_.push_back(StoredSubjectRun{out_row, 1, stored});
    }
  }
  block_bytes_ += name_sizes_[name_code] + 44;
  map_row_.clear();
  map_row_entries_.clear();
  const std::vector<InputKey>& input_keys = input_keys_[input_idx];
  for (uint32_t present_idx = cursor.present_begin[row_idx];
       present_idx < cursor.present_begin[row_idx + 1]; ++present_idx) {
    const uint32_t own_idx = cursor.present_keys[present_idx];
    AppendValue(input_keys[cursor.own_keys[own_idx]],
                ColumnValue(cursor.columns[own_idx], row_idx));
  }
  ValueRef value;
  for (uint32_t entry_idx = cursor.map_begin[row_idx]; entry_idx < cursor.map_begin[row_idx + 1];
       ++entry_idx) {
    const SegmentReader::MapEntryView& entry = cursor.map_entries[entry_idx];
    MP_RETURN_IF_ERROR(ParseMapValue(entry, &value));
    AppendValue(input_keys[cursor.map_key_idx[entry.key_code]], value);
  }
  FinishMapRow();
  return Status::Ok();
}

Status SegmentMerger::AppendChunk(std::string_view raw, ChunkRef* ref, bool uncompressed) {
  if (raw.size() > kSegmentChunkBytesMax) {
    return Status::ResourceExhausted("a segment column chunk of " + std::to_string(raw.size()) +
                                     " bytes is over kSegmentChunkBytesMax");
  }
  const SegmentCodec* forced = options_.codec.has_value() ? &*options_.codec
                               : uncompressed                ? &kUncompressedCodec
                                                             : nullptr;
  compressor_.Compress(raw, forced, ref, &out_);
  return Status::Ok();
}

// The bytes EncodePropertyColumn (segment_format.cc) writes for the same
// values: tags (one when uniform), ints, doubles, strings (codes, or lengths
// then bytes), list counts, list items (codes, or lengths then bytes).
void SegmentMerger::EncodeColumn(size_t column_idx, std::string* raw) {
  OutColumn& column = columns_[column_idx];
  const size_t rows = times_.size();
  column.tags.resize(rows, PropertyTag::kAbsent);
  const bool uniform = std::all_of(column.tags.begin(), column.tags.end(),
                                   [&](PropertyTag tag) { return tag == column.tags[0]; });
  raw->push_back(uniform ? 0 : 1);
  raw->append(reinterpret_cast<const char*>(column.tags.data()), uniform ? 1 : rows);
  for (const int64_t value : column.ints) {
    PutVarint64(ZigZagEncode(value), raw);
  }
  for (const double value : column.doubles) {
    PutFixed64(std::bit_cast<uint64_t>(value), raw);
  }
  const size_t width = CodeWidth(footer_.columns[column_idx].dictionary_size);
  const bool dictionary = footer_.columns[column_idx].encoding == StringEncoding::kDictionary;
  if (dictionary) {
    for (const uint32_t code : column.string_codes) {
      PutCode(code, width, raw);
    }
  } else {
    for (const uint32_t length : column.string_lengths) {
      PutVarint64(length, raw);
    }
    raw->append(column.string_bytes);
  }
  for (const uint32_t count : column.list_counts) {
    PutVarint64(count, raw);
  }
  if (dictionary) {
    for (const uint32_t code : column.item_codes) {
      PutCode(code, width, raw);
    }
    return;
  }
  for (const uint32_t length : column.item_lengths) {
    PutVarint64(length, raw);
  }
  raw->append(column.item_bytes);
}

Status SegmentMerger::EncodeBlock() {
  FooterBlock& block = footer_.blocks.emplace_back();
  const size_t rows = times_.size();
  block.row_count = static_cast<uint32_t>(rows);
  block.time_min_ms = *std::min_element(times_.begin(), times_.end());
  block.time_max_ms = *std::max_element(times_.begin(), times_.end());
  block.subject_first = block_subjects_.front();
  block.subject_last = block_subjects_.back();
  block.subject_run_count = static_cast<uint32_t>(block_subjects_.size());
  block.name_bitmap.assign((footer_.event_names.size() + 7) / 8, '\0');
  for (const uint32_t code : name_codes_) {
    block.name_bitmap[code / 8] =
        static_cast<char>(block.name_bitmap[code / 8] | (1 << (code % 8)));
  }
  block.chunks.resize(kFixedColumnCount + footer_.columns.size() + 1);
  block.stored_runs = std::move(stored_runs_);
  stored_runs_.clear();
  auto chunk = [&](FixedColumn column) { return &block.chunks[static_cast<size_t>(column)]; };
  raw_.clear();
  const TimeEncoding time_encoding =
      TimeEncodingOf(kSegmentFormatVersion, block.time_min_ms, block.time_max_ms);
  EncodeTimes(times_, block.time_min_ms, block.time_max_ms, time_encoding, &raw_);
  MP_RETURN_IF_ERROR(
      AppendChunk(raw_, chunk(FixedColumn::kTime), time_encoding == TimeEncoding::kPackedOffsets));
  raw_.clear();
  EncodeSubjects(block_subjects_, run_lengths_, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, chunk(FixedColumn::kSubject)));
  raw_.clear();
  EncodeInsertIds(insert_ids_, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, chunk(FixedColumn::kInsertId)));
  raw_.clear();
  EncodeKeyVersions(key_versions_, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, chunk(FixedColumn::kKeyVersion)));
  raw_.clear();
  EncodeNameCodes(name_codes_, footer_.event_names.size(), &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, chunk(FixedColumn::kName)));
  ChooseGranuleEnds(run_lengths_, options_.granule_rows, &granule_ends_);
  const SegmentCodec* forced = options_.codec.has_value() ? &*options_.codec : nullptr;
  for (size_t column_idx = 0; column_idx < columns_.size(); ++column_idx) {
    ChunkRef& ref = block.chunks[kFixedColumnCount + column_idx];
    raw_.clear();
    if (columns_[column_idx].present_count > 0) {
      EncodeColumn(column_idx, &raw_);
    }
    MP_RETURN_IF_ERROR(CompressPropertyChunk(compressor_, raw_, rows, &footer_.columns[column_idx],
                                             0, granule_ends_, options_.granule_ratio_min,
                                             columns_[column_idx].present_count,
                                             forced, &ref, &out_));
    columns_[column_idx].Clear();
  }
  ChunkRef& map_ref = block.chunks.back();
  if (map_entries_ == 0) {
    map_raw_.clear();  // a block without map entries has an empty map chunk
  }
  MP_RETURN_IF_ERROR(CompressPropertyChunk(compressor_, map_raw_, rows, nullptr,
                                           footer_.map_keys.size(), granule_ends_,
                                           options_.granule_ratio_min, map_entries_,
                                           forced, &map_ref, &out_));
  raw_.clear();
  EncodePolicyVersions(policy_versions_, &raw_);
  MP_RETURN_IF_ERROR(AppendChunk(raw_, &block.policy_versions));
  times_.clear();
  insert_ids_.clear();
  key_versions_.clear();
  policy_versions_.clear();
  name_codes_.clear();
  block_subjects_.clear();
  run_lengths_.clear();
  map_raw_.clear();
  map_entries_ = 0;
  block_bytes_ = 0;
  return Emit();
}

Status SegmentMerger::Emit() {
  if (out_.empty()) {
    return Status::Ok();
  }
  file_bytes_ += out_.size();
  MP_RETURN_IF_ERROR(sink_(out_));
  out_.clear();
  return Status::Ok();
}

Result<MergeResult> SegmentMerger::Merge() {
  MP_RETURN_IF_ERROR(CheckOptions());
  MP_RETURN_IF_ERROR(PlanNames());
  MergeResult result;
  if (rows_total_ == 0) {
    return result;
  }
  MP_RETURN_IF_ERROR(PlanKeys());
  ChooseColumns();
  MP_RETURN_IF_ERROR(CollectStrings());
  ChooseEncodings();
  footer_.project_id = options_.project_id;
  footer_.block_rows_max = options_.block_rows_max;
  footer_.fold_generation = fold_generation_;
  footer_.time_min_ms = INT64_MAX;
  footer_.time_max_ms = INT64_MIN;
  out_ = EncodeSegmentHeader();
  for (size_t column_idx = 0; column_idx < footer_.columns.size(); ++column_idx) {
    if (footer_.columns[column_idx].encoding != StringEncoding::kDictionary) {
      continue;
    }
    const auto out = std::find_if(keys_.begin(), keys_.end(), [&](const OutKey& key) {
      return key.own_column && key.index == column_idx;
    });
    raw_.clear();
    EncodeDictionary(out->dictionary, &raw_);
    MP_RETURN_IF_ERROR(AppendChunk(raw_, &footer_.columns[column_idx].dictionary));
  }
  MP_RETURN_IF_ERROR(Emit());
  columns_.resize(footer_.columns.size());
  cursors_.resize(inputs_.size());
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    const std::vector<PropertyKeyInfo>& infos = inputs_[input_idx]->property_keys();
    Cursor& cursor = cursors_[input_idx];
    // Map key codes follow property_keys() order (both sorted by key).
    for (uint32_t key_idx = 0; key_idx < infos.size(); ++key_idx) {
      (infos[key_idx].storage == PropertyStorage::kColumn ? cursor.own_keys : cursor.map_key_idx)
          .push_back(key_idx);
    }
    cursor.columns.resize(cursor.own_keys.size());
  }
  auto heap_order = [&](size_t a, size_t b) { return Less(b, a); };
  for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
    MP_RETURN_IF_ERROR(LoadBlock(input_idx));
    if (cursors_[input_idx].rows > 0) {
      heap_.push_back(input_idx);
    }
  }
  std::make_heap(heap_.begin(), heap_.end(), heap_order);
  while (!heap_.empty()) {
    std::pop_heap(heap_.begin(), heap_.end(), heap_order);
    const size_t input_idx = heap_.back();
    MP_RETURN_IF_ERROR(AppendRow(input_idx));
    Cursor& cursor = cursors_[input_idx];
    if (++cursor.row_idx == cursor.rows) {
      ++cursor.block_idx;
      MP_RETURN_IF_ERROR(LoadBlock(input_idx));
    }
    if (cursor.rows > 0) {
      std::push_heap(heap_.begin(), heap_.end(), heap_order);
    } else {
      heap_.pop_back();
    }
    if (times_.size() == options_.block_rows_max || block_bytes_ >= options_.block_bytes_target) {
      MP_RETURN_IF_ERROR(EncodeBlock());
    }
  }
  if (!times_.empty()) {
    MP_RETURN_IF_ERROR(EncodeBlock());
  }
  if (footer_.row_count != rows_total_) {
    return Status::Corruption("merge read " + std::to_string(footer_.row_count) +
                              " rows of inputs that claim " + std::to_string(rows_total_));
  }
  footer_.subject_max = last_subject_;
  std::string footer_bytes;
  EncodeSegmentFooter(footer_, &footer_bytes);
  if (footer_bytes.size() > kSegmentFooterBytesMax) {
    return Status::ResourceExhausted("segment footer is over kSegmentFooterBytesMax");
  }
  out_ += footer_bytes;
  SegmentTrailer trailer;
  trailer.footer_bytes = footer_bytes.size();
  trailer.footer_crc32 = Crc32(0, footer_bytes);
  out_ += EncodeSegmentTrailer(trailer);
  MP_RETURN_IF_ERROR(Emit());
  result.row_count = footer_.row_count;
  result.file_bytes = file_bytes_;
  result.time_min_ms = footer_.time_min_ms;
  return result;
}

// Folding (docs/formats/segment.md, "Folded persons"): the rows whose person
// under the fold differs from the subject they are kept under now ("moved
// rows") are read as events, a batch at a time, and each batch is encoded
// with the fold into a segment in memory, sorted by person; the inputs are
// merged as views without their moved rows, beside those segments. The rows
// that stay are a subsequence of their input, so still sorted.
class FoldPlanner {
 public:
  FoldPlanner(std::span<const std::shared_ptr<const SegmentReader>> inputs,
              const SegmentWriteOptions& options)
      : inputs_(inputs), options_(options) {}

  // False in `*folded` (and no inputs) when the moved rows pass
  // kMergeFoldMovedRowsMax.
  Status Plan(std::vector<std::shared_ptr<const SegmentReader>>* merged, bool* folded) {
    *folded = false;
    std::vector<std::vector<std::vector<uint32_t>>> moved(inputs_.size());
    uint64_t moved_count = 0;
    for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
      MP_RETURN_IF_ERROR(FindMoved(*inputs_[input_idx], &moved[input_idx], &moved_count));
      if (moved_count > kMergeFoldMovedRowsMax) {
        return Status::Ok();
      }
    }
    std::vector<Event> events;
    for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
      const SegmentReader& reader = *inputs_[input_idx];
      for (size_t block_idx = 0; block_idx < moved[input_idx].size(); ++block_idx) {
        if (moved[input_idx][block_idx].empty()) {
          continue;
        }
        MP_RETURN_IF_ERROR(reader.ReadEvents(block_idx, &events));
        for (const uint32_t row_idx : moved[input_idx][block_idx]) {
          batch_.push_back(std::move(events[row_idx]));
          if (batch_.size() == kMergeFoldBatchRowsMax) {
            MP_RETURN_IF_ERROR(FlushBatch(merged));
          }
        }
      }
    }
    MP_RETURN_IF_ERROR(FlushBatch(merged));
    for (size_t input_idx = 0; input_idx < inputs_.size(); ++input_idx) {
      if (moved[input_idx].empty()) {
        merged->push_back(inputs_[input_idx]);
      } else {
        merged->push_back(
            SegmentReader::WithMoreHiddenRows(inputs_[input_idx], std::move(moved[input_idx])));
      }
    }
    *folded = true;
    return Status::Ok();
  }

 private:
  // The rows of `reader` whose person under the fold is not the subject they
  // are kept under, per block (empty when there is none).
  Status FindMoved(const SegmentReader& reader, std::vector<std::vector<uint32_t>>* moved,
                   uint64_t* moved_count) {
    const SubjectFold& fold = *options_.fold;
    SubjectRuns runs;
    std::vector<StoredSubjectRun> stored_runs;
    for (size_t block_idx = 0; block_idx < reader.block_count(); ++block_idx) {
      if (reader.block(block_idx).row_count == 0) {
        continue;
      }
      MP_RETURN_IF_ERROR(reader.ReadSubjects(block_idx, &runs));
      MP_RETURN_IF_ERROR(reader.ReadStoredSubjects(block_idx, &stored_runs));
      std::vector<uint32_t> rows;
      size_t stored_idx = 0;
      uint32_t run_begin = 0;
      for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
        const Id128& subject = runs.subjects[run_idx];
        const uint32_t run_end = run_begin + runs.run_lengths[run_idx];
        const bool own_rows_move = fold.PersonOf(subject) != subject;
        for (uint32_t row_idx = run_begin; row_idx < run_end;) {
          while (stored_idx < stored_runs.size() &&
                 stored_runs[stored_idx].row_begin + stored_runs[stored_idx].row_count <= row_idx) {
            ++stored_idx;
          }
          // Rows [row_idx, next) share one stored subject.
          uint32_t next = run_end;
          bool move = own_rows_move;
          if (stored_idx < stored_runs.size() && stored_runs[stored_idx].row_begin <= row_idx) {
            const StoredSubjectRun& run = stored_runs[stored_idx];
            next = std::min(run_end, run.row_begin + run.row_count);
            move = fold.PersonOf(run.subject) != subject;
          } else if (stored_idx < stored_runs.size()) {
            next = std::min(run_end, stored_runs[stored_idx].row_begin);
          }
          if (move) {
            for (uint32_t moved_row = row_idx; moved_row < next; ++moved_row) {
              rows.push_back(moved_row);
            }
          }
          row_idx = next;
        }
        run_begin = run_end;
      }
      if (!rows.empty()) {
        *moved_count += rows.size();
        moved->resize(reader.block_count());
        (*moved)[block_idx] = std::move(rows);
      }
    }
    return Status::Ok();
  }

  Status FlushBatch(std::vector<std::shared_ptr<const SegmentReader>>* merged) {
    if (batch_.empty()) {
      return Status::Ok();
    }
    MP_ASSIGN_OR_RETURN(std::string image, EncodeSegment(batch_, options_));
    batch_.clear();
    MP_ASSIGN_OR_RETURN(std::unique_ptr<SegmentReader> reader,
                        SegmentReader::Open(std::move(image), "folded rows"));
    merged->push_back(std::move(reader));
    return Status::Ok();
  }

  std::span<const std::shared_ptr<const SegmentReader>> inputs_;
  const SegmentWriteOptions& options_;
  std::vector<Event> batch_;
};

// Without a fold the output keeps its inputs' generation when they agree.
uint64_t InputsGeneration(std::span<const std::shared_ptr<const SegmentReader>> inputs) {
  uint64_t generation = 0;
  for (size_t input_idx = 0; input_idx < inputs.size(); ++input_idx) {
    const uint64_t input_generation = inputs[input_idx]->summary().fold_generation;
    if (input_idx > 0 && input_generation != generation) {
      return 0;
    }
    generation = input_generation;
  }
  return generation;
}

}  // namespace

Result<MergeResult> MergeSegments(std::span<const std::shared_ptr<const SegmentReader>> inputs,
                                  const SegmentWriteOptions& options, const MergeSink& sink) {
  if (options.fold == nullptr) {
    SegmentMerger merger(inputs, options, sink, InputsGeneration(inputs));
    return merger.Merge();
  }
  std::vector<std::shared_ptr<const SegmentReader>> folded_inputs;
  bool folded = false;
  FoldPlanner planner(inputs, options);
  MP_RETURN_IF_ERROR(planner.Plan(&folded_inputs, &folded));
  SegmentWriteOptions merge_options = options;
  merge_options.fold = nullptr;
  if (!folded) {
    SegmentMerger merger(inputs, merge_options, sink, InputsGeneration(inputs));
    return merger.Merge();
  }
  SegmentMerger merger(folded_inputs, merge_options, sink, options.fold->generation);
  MP_ASSIGN_OR_RETURN(MergeResult result, merger.Merge());
  result.folded = true;
  return result;
}


Result<std::string> MergeSegmentsToImage(
    std::span<const std::shared_ptr<const SegmentReader>> inputs,
    const SegmentWriteOptions& options) {
  std::string image;
  const MergeSink sink = [&](std::string_view bytes) {
    image.append(bytes);
    return Status::Ok();
  };
  MP_ASSIGN_OR_RETURN(const MergeResult result, MergeSegments(inputs, options, sink));
  (void)result;
  return image;
}

Result<MergeResult> MergeSegmentsToFile(
    FileSystem& file_system, const std::string& path,
    std::span<const std::shared_ptr<const SegmentReader>> inputs,
    const SegmentWriteOptions& options) {
  const std::string temporary = path + ".tmp";
  // OpenAppendable appends, so a .tmp left by a failed attempt must go first.
  MP_RETURN_IF_ERROR(file_system.Remove(temporary));
  std::unique_ptr<WritableFile> file;
  const MergeSink sink = [&](std::string_view bytes) -> Status {
    if (file == nullptr) {
      MP_ASSIGN_OR_RETURN(file, file_system.OpenAppendable(temporary, kSegmentFileMode));
    }
    return file->Append(bytes);
  };
  Result<MergeResult> result = MergeSegments(inputs, options, sink);
  Status status = result.ok() ? Status::Ok() : result.status();
  if (status.ok() && file != nullptr) {
    status = file->Sync();
    if (status.ok()) {
      status = file->Close();
    }
    if (status.ok()) {
      status = file_system.Rename(temporary, path);
    }
  }
  if (!status.ok()) {
    (void)file_system.Remove(temporary);  // best effort; the error above is what matters
    return status;
  }
  if (file == nullptr) {
    return result;  // no visible row: no file
  }
  std::string folder = std::filesystem::path(path).parent_path().string();
  MP_RETURN_IF_ERROR(file_system.SyncDirectory(folder.empty() ? "." : folder));
  return result;
}

}  // namespace minpanel::store
