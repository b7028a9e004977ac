// SegmentReader::WithHiddenRows (segment.h): a view of a segment reader
// without some rows, which erasure and time-based dropping use until a
// rewrite removes the rows from the file (src/store/deletion.h). Each read
// goes to the base reader and drops the hidden rows from what it returns.
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

}  // namespace

std::shared_ptr<const SegmentReader> SegmentReader::WithHiddenRows(
    std::shared_ptr<const SegmentReader> base, std::vector<std::vector<uint32_t>> hidden_rows) {
  // The engine makes views of file-backed readers only; a view of a view
  // would number its rows without the base's hidden rows.
  assert(base->masked_base_ == nullptr);
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
  return WithHiddenRows(reader->masked_base_, std::move(hidden));
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

Status SegmentReader::MaskedReadNameCodes(size_t block_idx,
                                          std::vector<uint32_t>* name_codes) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadNameCodes(block_idx, name_codes));
  EraseHidden(hidden_rows_[block_idx], name_codes);
  return Status::Ok();
}

Status SegmentReader::MaskedReadProperty(size_t block_idx, std::string_view key,
                                         PropertyColumn* column) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadProperty(block_idx, key, column));
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
    std::vector<uint32_t> offsets = {0};
    size_t out_items = 0;
    size_t hidden_idx = 0;
    const size_t rows = column->list_offsets.size() - 1;
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (hidden_idx < hidden.size() && hidden[hidden_idx] == row_idx) {
        ++hidden_idx;
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
  EraseHidden(hidden, &column->tags);
  EraseHidden(hidden, &column->ints);
  EraseHidden(hidden, &column->doubles);
  EraseHidden(hidden, &column->strings);
  EraseHidden(hidden, &column->string_codes);
  return Status::Ok();
}

Status SegmentReader::MaskedReadEvents(size_t block_idx, std::vector<Event>* events) const {
  MP_RETURN_IF_ERROR(masked_base_->ReadEvents(block_idx, events));
  EraseHidden(hidden_rows_[block_idx], events);
  return Status::Ok();
}

}  // namespace minpanel::store
