// SegmentReader::WithHiddenRows and WithMask (segment.h): a view of a
// segment reader without some rows and some property values, which erasure,
// time-based dropping and property purges use until a rewrite removes them
// from the file (src/store/deletion.h). Each read goes to the base reader and
// drops the hidden values and rows from what it returns.
#include <algorithm>
#include <cassert>
#include <iterator>

#include "store/segment.h"

namespace minpanel::store {
namespace {

bool AllHidden(const std::vector<uint32_t>& hidden) {
  return hidden.size() == 1 && hidden.front() == kAllRowsHidden;
}

// Removes the entries at `hidden` (ascending indexes, or every one) from
// `values`, keeping order.
template <typename T>
void EraseHidden(const std::vector<uint32_t>& hidden, std::vector<T>* values) {
  if (AllHidden(hidden)) {
    values->clear();
    return;
  }
  if (hidden.empty() || values->empty()) {
    return;
  }
  size_t out = hidden.front();
  size_t hidden_idx = 0;
  for (size_t row_idx = hidden.front(); row_idx < values->size(); ++row_idx) {
    if (hidden_idx < hidden.size() && hidden[hidden_idx] == row_idx) {
      ++hidden_idx;
      continue;
    }
    (*values)[out++] = std::move((*values)[row_idx]);
  }
  values->resize(out);
}

// What CompactListItems does with the list offsets of a row it does not keep.
enum class UnkeptRows {
  kStayWithoutItems,  // The row stays, with no items.
  kRemoved,           // The row goes: the offsets lose its entry.
};

// Moves the list items of the rows of `column` that `keep_row` keeps down over
// the items of those it does not, in place, and rebuilds the offsets.
// `keep_row` is called once per row, in ascending order, so it may walk a
// sorted list as it goes.
template <typename KeepRow>
void CompactListItems(KeepRow keep_row, UnkeptRows unkept, PropertyColumn* column) {
  std::vector<uint32_t> offsets = {0};
  size_t out_items = 0;
  for (size_t row_idx = 0; row_idx + 1 < column->list_offsets.size(); ++row_idx) {
    if (!keep_row(row_idx)) {
      if (unkept == UnkeptRows::kStayWithoutItems) {
        offsets.push_back(static_cast<uint32_t>(out_items));
      }
      continue;
    }
    for (uint32_t item_idx = column->list_offsets[row_idx];
         item_idx < column->list_offsets[row_idx + 1]; ++item_idx) {
      column->list_items[out_items] = column->list_items[item_idx];
      if (!column->list_item_codes.empty()) {
        column->list_item_codes[out_items] = column->list_item_codes[item_idx];
      }
      ++out_items;
    }
    offsets.push_back(static_cast<uint32_t>(out_items));
  }
  column->list_items.resize(out_items);
  if (!column->list_item_codes.empty()) {
    column->list_item_codes.resize(out_items);
  }
  column->list_offsets = std::move(offsets);
}

// Makes the rows flagged in `blank` (one flag per row of `column`) absent,
// their values cleared and their list items removed.
void BlankRows(const std::vector<uint8_t>& blank, PropertyColumn* column) {
  bool lists = false;
  for (size_t row_idx = 0; row_idx < column->tags.size() && row_idx < blank.size(); ++row_idx) {
    if (blank[row_idx] == 0) {
      continue;
    }
    switch (column->tags[row_idx]) {
      case PropertyTag::kInt:
        column->ints[row_idx] = 0;
        break;
      case PropertyTag::kDouble:
        column->doubles[row_idx] = 0;
        break;
      case PropertyTag::kString:
        if (!column->strings.empty()) {  // empty: codes only (dictionary_string_views)
          column->strings[row_idx] = std::string_view();
        }
        break;
      case PropertyTag::kList:
        lists = true;
        break;
      default:
        break;
    }
    column->tags[row_idx] = PropertyTag::kAbsent;
  }
  if (!lists || column->list_offsets.empty()) {
    return;
  }
  CompactListItems(
      [&blank](size_t row_idx) { return row_idx >= blank.size() || blank[row_idx] == 0; },
      UnkeptRows::kStayWithoutItems, column);
}

// The same for rows listed ascending ({kAllRowsHidden}: every row).
void BlankListedRows(const std::vector<uint32_t>& rows, PropertyColumn* column) {
  std::vector<uint8_t> blank(column->tags.size(), AllHidden(rows) ? 1 : 0);
  if (!AllHidden(rows)) {
    for (const uint32_t row_idx : rows) {
      if (row_idx < blank.size()) {
        blank[row_idx] = 1;
      }
    }
  }
  BlankRows(blank, column);
}

}  // namespace

std::shared_ptr<const SegmentReader> SegmentReader::WithHiddenRows(
    std::shared_ptr<const SegmentReader> base, std::vector<std::vector<uint32_t>> hidden_rows) {
  SegmentMask mask;
  mask.rows = std::move(hidden_rows);
  return WithMask(std::move(base), std::move(mask));
}

std::shared_ptr<const SegmentReader> SegmentReader::WithMask(
    std::shared_ptr<const SegmentReader> base, SegmentMask mask) {
  // The engine makes views of file-backed readers only; a view of a view
  // would number its rows without the base's hidden rows.
  assert(base->masked_base_ == nullptr);
  std::vector<std::vector<uint32_t>> hidden_rows = std::move(mask.rows);
  std::shared_ptr<SegmentReader> view(new SegmentReader());
  view->name_ = base->name_;
  view->footer_ = base->footer_;
  view->summary_ = base->summary_;
  view->blocks_ = base->blocks_;
  view->event_names_ = base->event_names_;
  view->property_keys_ = base->property_keys_;
  view->map_tag_masks_ = base->map_tag_masks_;
  view->key_positions_ = base->key_positions_;
  hidden_rows.resize(base->block_count());
  uint64_t first_row = 0;
  for (size_t block_idx = 0; block_idx < view->blocks_.size(); ++block_idx) {
    SegmentBlockInfo& block = view->blocks_[block_idx];
    const uint64_t hidden =
        AllHidden(hidden_rows[block_idx]) ? block.row_count : hidden_rows[block_idx].size();
    view->summary_.row_count -= hidden;
    block.row_count -= static_cast<uint32_t>(hidden);
    block.first_row = first_row;
    first_row += block.row_count;
  }
  for (SegmentMask::Key& key : mask.keys) {
    const PropertyKeyInfo* info = base->FindPropertyKey(key.key);
    if (info == nullptr) {
      continue;
    }
    const size_t key_idx = static_cast<size_t>(info - base->property_keys_.data());
    if (key.every_row) {
      // Kept in the list (map key codes are positions in it), as a key no
      // row holds.
      PropertyKeyInfo& hidden = view->property_keys_[key_idx];
      hidden.row_count = 0;
      hidden.tag_mask = 0;
      hidden.encoding = StringEncoding::kNone;
      hidden.dictionary_size = 0;
      key.rows.clear();
    } else {
      key.rows.resize(base->block_count());
    }
    view->hidden_keys_.push_back(std::move(key));
    view->hidden_key_indexes_.push_back(key_idx);
  }
  view->hidden_rows_ = std::move(hidden_rows);
  view->masked_base_ = std::move(base);
  return view;
}

std::shared_ptr<const SegmentReader> SegmentReader::WithMoreHiddenRows(
    std::shared_ptr<const SegmentReader> reader, std::vector<std::vector<uint32_t>> more_hidden) {
  if (reader->masked_base_ == nullptr) {
    return WithHiddenRows(std::move(reader), std::move(more_hidden));
  }
  // Number the view's rows as its base does, then join both lists.
  std::vector<std::vector<uint32_t>> hidden = reader->hidden_rows_;
  hidden.resize(reader->block_count());
  more_hidden.resize(reader->block_count());
  for (size_t block_idx = 0; block_idx < hidden.size(); ++block_idx) {
    if (more_hidden[block_idx].empty() || AllHidden(hidden[block_idx])) {
      continue;
    }
    if (AllHidden(more_hidden[block_idx])) {
      hidden[block_idx] = {kAllRowsHidden};
      continue;
    }
    const std::vector<uint32_t> base_rows = reader->BaseRows(block_idx, more_hidden[block_idx]);
    std::vector<uint32_t> joined;
    std::set_union(hidden[block_idx].begin(), hidden[block_idx].end(), base_rows.begin(),
                   base_rows.end(), std::back_inserter(joined));
    hidden[block_idx] = std::move(joined);
  }
  // The property values `reader` hides stay hidden (a purged key must not
  // come back through a merge of this view).
  SegmentMask mask;
  mask.rows = std::move(hidden);
  mask.keys = reader->hidden_keys_;
  return WithMask(reader->masked_base_, std::move(mask));
}

Status SegmentReader::MaskedReadStoredSubjects(size_t block_idx,
                                               std::vector<StoredSubjectRun>* runs) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadStoredSubjects(block_idx, runs));
  const std::vector<uint32_t>& hidden = hidden_rows_[block_idx];
  if (hidden.empty() || runs->empty()) {
    return Status::Ok();
  }
  if (AllHidden(hidden)) {
    runs->clear();
    return Status::Ok();
  }
  // Each run keeps its rows that are not hidden, renumbered without the
  // hidden rows before them.
  size_t hidden_idx = 0;
  size_t out = 0;
  for (size_t run_idx = 0; run_idx < runs->size(); ++run_idx) {
    const StoredSubjectRun run = (*runs)[run_idx];
    while (hidden_idx < hidden.size() && hidden[hidden_idx] < run.row_begin) {
      ++hidden_idx;
    }
    const uint32_t hidden_before = static_cast<uint32_t>(hidden_idx);
    while (hidden_idx < hidden.size() && hidden[hidden_idx] < run.row_begin + run.row_count) {
      ++hidden_idx;
    }
    const uint32_t kept = run.row_count - static_cast<uint32_t>(hidden_idx - hidden_before);
    if (kept > 0) {
      (*runs)[out++] = StoredSubjectRun{run.row_begin - hidden_before, kept, run.subject};
    }
  }
  runs->resize(out);
  return Status::Ok();
}

size_t SegmentReader::HiddenKeyIndex(std::string_view key) const {
  for (size_t hidden_idx = 0; hidden_idx < hidden_keys_.size(); ++hidden_idx) {
    if (hidden_keys_[hidden_idx].key == key) {
      return hidden_idx;
    }
  }
  return SIZE_MAX;
}

const std::vector<uint32_t>* SegmentReader::HiddenKeyRows(size_t hidden_idx,
                                                          size_t block_idx) const {
  static const std::vector<uint32_t> kEveryRow = {kAllRowsHidden};
  const SegmentMask::Key& key = hidden_keys_[hidden_idx];
  if (key.every_row) {
    return &kEveryRow;
  }
  const std::vector<uint32_t>& rows = key.rows[block_idx];
  return rows.empty() ? nullptr : &rows;
}

void SegmentReader::StripHiddenKeys(size_t block_idx, std::vector<Event>* events) const {
  for (size_t hidden_idx = 0; hidden_idx < hidden_keys_.size(); ++hidden_idx) {
    const std::vector<uint32_t>* rows = HiddenKeyRows(hidden_idx, block_idx);
    if (rows == nullptr) {
      continue;
    }
    const std::string& key = hidden_keys_[hidden_idx].key;
    const auto strip = [&key](Event& event) {
      std::erase_if(event.properties, [&key](const Property& property) { return property.key == key; });
    };
    if (AllHidden(*rows)) {
      std::for_each(events->begin(), events->end(), strip);
      continue;
    }
    for (const uint32_t row_idx : *rows) {
      if (row_idx < events->size()) {
        strip((*events)[row_idx]);
      }
    }
  }
}

void SegmentReader::StripHiddenMapEntries(size_t block_idx,
                                          std::vector<MapEntryView>* entries) const {
  for (size_t hidden_idx = 0; hidden_idx < hidden_keys_.size(); ++hidden_idx) {
    const size_t key_idx = hidden_key_indexes_[hidden_idx];
    const std::vector<uint32_t>* rows = HiddenKeyRows(hidden_idx, block_idx);
    if (rows == nullptr || property_keys_[key_idx].storage != PropertyStorage::kMap) {
      continue;
    }
    const uint32_t key_code = key_positions_[key_idx];
    const bool all = AllHidden(*rows);
    size_t row_pos = 0;  // entries come in row order
    std::erase_if(*entries, [&](const MapEntryView& entry) {
      if (entry.key_code != key_code) {
        return false;
      }
      if (all) {
        return true;
      }
      while (row_pos < rows->size() && (*rows)[row_pos] < entry.row) {
        ++row_pos;
      }
      return row_pos < rows->size() && (*rows)[row_pos] == entry.row;
    });
  }
}

void SegmentReader::StripHiddenKeysOfRows(size_t block_idx, std::span<const uint32_t> base_rows,
                                          std::vector<PropertyColumn>* columns) const {
  std::vector<uint8_t> blank;
  for (size_t hidden_idx = 0; hidden_idx < hidden_keys_.size(); ++hidden_idx) {
    const std::vector<uint32_t>* rows = HiddenKeyRows(hidden_idx, block_idx);
    const size_t key_idx = hidden_key_indexes_[hidden_idx];
    if (rows == nullptr || key_idx >= columns->size()) {
      continue;
    }
    blank.assign(base_rows.size(), AllHidden(*rows) ? 1 : 0);
    if (!AllHidden(*rows)) {
      size_t row_pos = 0;
      for (size_t slot = 0; slot < base_rows.size(); ++slot) {
        while (row_pos < rows->size() && (*rows)[row_pos] < base_rows[slot]) {
          ++row_pos;
        }
        blank[slot] = row_pos < rows->size() && (*rows)[row_pos] == base_rows[slot];
      }
    }
    BlankRows(blank, &(*columns)[key_idx]);
  }
}

Status SegmentReader::MaskedReadTimes(size_t block_idx, std::vector<int64_t>* times) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadTimes(block_idx, times));
  EraseHidden(hidden_rows_[block_idx], times);
  return Status::Ok();
}

Status SegmentReader::MaskedReadSubjects(size_t block_idx, SubjectRuns* runs) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadSubjects(block_idx, runs));
  const std::vector<uint32_t>& hidden = hidden_rows_[block_idx];
  if (hidden.empty()) {
    return Status::Ok();
  }
  if (AllHidden(hidden)) {
    runs->subjects.clear();
    runs->run_lengths.clear();
    return Status::Ok();
  }
  size_t hidden_idx = 0;
  uint32_t run_start = 0;
  size_t out = 0;
  for (size_t run_idx = 0; run_idx < runs->subjects.size(); ++run_idx) {
    const uint32_t length = runs->run_lengths[run_idx];
    uint32_t kept = length;
    while (hidden_idx < hidden.size() && hidden[hidden_idx] < run_start + length) {
      --kept;
      ++hidden_idx;
    }
    run_start += length;
    if (kept > 0) {
      runs->subjects[out] = runs->subjects[run_idx];
      runs->run_lengths[out] = kept;
      ++out;
    }
  }
  runs->subjects.resize(out);
  runs->run_lengths.resize(out);
  return Status::Ok();
}

Status SegmentReader::MaskedReadInsertIds(size_t block_idx, std::vector<Id128>* insert_ids) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadInsertIds(block_idx, insert_ids));
  EraseHidden(hidden_rows_[block_idx], insert_ids);
  return Status::Ok();
}

Status SegmentReader::MaskedReadKeyVersions(size_t block_idx,
                                            std::vector<uint32_t>* key_versions) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadKeyVersions(block_idx, key_versions));
  EraseHidden(hidden_rows_[block_idx], key_versions);
  return Status::Ok();
}

Status SegmentReader::MaskedReadPolicyVersions(size_t block_idx,
                                               std::vector<uint32_t>* policy_versions) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadPolicyVersions(block_idx, policy_versions));
  EraseHidden(hidden_rows_[block_idx], policy_versions);
  return Status::Ok();
}

Status SegmentReader::MaskedReadNameCodes(size_t block_idx,
                                          std::vector<uint32_t>* name_codes) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadNameCodes(block_idx, name_codes));
  EraseHidden(hidden_rows_[block_idx], name_codes);
  return Status::Ok();
}

Status SegmentReader::MaskedReadProperty(size_t block_idx, std::string_view key,
                                         PropertyColumn* column) const {
  const size_t hidden_key = HiddenKeyIndex(key);
  if (hidden_key != SIZE_MAX && hidden_keys_[hidden_key].every_row) {
    // As a key the segment does not hold: absent in each of the view's rows.
    column->dictionary_.reset();
    return DecodePropertyColumn(std::string_view(), blocks_[block_idx].row_count,
                                PropertyColumnFormat{}, column->Output());
  }
  MP_RETURN_IF_ERROR(masked_base_->ReadProperty(block_idx, key, column));
  if (hidden_key != SIZE_MAX) {
    if (const std::vector<uint32_t>* rows = HiddenKeyRows(hidden_key, block_idx)) {
      BlankListedRows(*rows, column);
    }
  }
  const std::vector<uint32_t>& hidden = hidden_rows_[block_idx];
  if (hidden.empty()) {
    return Status::Ok();
  }
  if (AllHidden(hidden)) {
    // Offsets stay rows + 1 = 1 when the block had lists; every other array empty.
    if (!column->list_offsets.empty()) {
      column->list_offsets.assign(1, 0);
    }
    column->list_items.clear();
    column->list_item_codes.clear();
    EraseHidden(hidden, &column->tags);
    EraseHidden(hidden, &column->ints);
    EraseHidden(hidden, &column->doubles);
    EraseHidden(hidden, &column->strings);
    EraseHidden(hidden, &column->string_codes);
    return Status::Ok();
  }
  // Lists first: their items are found through the offsets of all rows.
  if (!column->list_offsets.empty()) {
    size_t hidden_idx = 0;
    CompactListItems(
        [&hidden, &hidden_idx](size_t row_idx) {
          if (hidden_idx < hidden.size() && hidden[hidden_idx] == row_idx) {
            ++hidden_idx;
            return false;
          }
          return true;
        },
        UnkeptRows::kRemoved, column);
  }
  EraseHidden(hidden, &column->tags);
  EraseHidden(hidden, &column->ints);
  EraseHidden(hidden, &column->doubles);
  EraseHidden(hidden, &column->strings);
  EraseHidden(hidden, &column->string_codes);
  return Status::Ok();
}

Status SegmentReader::MaskedReadEvents(size_t block_idx, std::vector<Event>* events) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadEvents(block_idx, events));
  StripHiddenKeys(block_idx, events);
  EraseHidden(hidden_rows_[block_idx], events);
  return Status::Ok();
}

}  // namespace minpanel::store
