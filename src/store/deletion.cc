#include "store/deletion.h"

#include <algorithm>
#include <iterator>

#include "store/bytes.h"
#include "store/segment.h"
#include "store/store.h"

namespace minpanel::store {
namespace {

enum class DeletionKind : uint8_t {
  kSubjects = 1,
  kDropBefore = 2,
  kDropNamedBefore = 3,
  kPurgeProperty = 4,
  kProfileSubjects = 5,  // profile expiry: the subjects' profile updates only
};

using SubjectPositions = std::vector<std::pair<Id128, LogPosition>>;

// Sorted by subject, then position; keeps the latest position per subject.
void KeepLatestPerSubject(SubjectPositions* subjects) {
  std::sort(subjects->begin(), subjects->end());
  SubjectPositions latest;
  latest.reserve(subjects->size());
  for (const auto& entry : *subjects) {
    if (!latest.empty() && latest.back().first == entry.first) {
      latest.back().second = entry.second;
    } else {
      latest.push_back(entry);
    }
  }
  *subjects = std::move(latest);
}

bool SubjectHidden(const SubjectPositions& subjects, const Id128& subject,
                   const LogPosition& row_position) {
  const auto found = std::lower_bound(
      subjects.begin(), subjects.end(), subject,
      [](const std::pair<Id128, LogPosition>& entry, const Id128& key) { return entry.first < key; });
  return found != subjects.end() && found->first == subject && row_position < found->second;
}

// stored_at (8) + project (1) + kind (1) + count or time (1).
constexpr size_t kDeletionBodyBytesMin = 11;

// Adds to `rows` (ascending) the rows of block `block_idx` that a named
// bound in `named` (name code, before_ms) hides; reads the block's name
// codes and times only when a bound can touch it.
Status NamedRows(const SegmentReader& segment, size_t block_idx,
                 const std::vector<std::pair<uint32_t, int64_t>>& named,
                 std::vector<int64_t>* times, std::vector<uint32_t>* name_codes,
                 std::vector<uint32_t>* rows) {
  const SegmentBlockInfo& block = segment.block(block_idx);
  const bool touched = std::any_of(named.begin(), named.end(), [&](const auto& bound) {
    return block.time_min_ms < bound.second && segment.BlockHoldsName(block_idx, bound.first);
  });
  if (!touched) {
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, times));
  MP_RETURN_IF_ERROR(segment.ReadNameCodes(block_idx, name_codes));
  std::vector<uint32_t> named_rows;
  for (uint32_t row_idx = 0; row_idx < times->size(); ++row_idx) {
    for (const auto& [code, before_ms] : named) {
      if ((*name_codes)[row_idx] == code && (*times)[row_idx] < before_ms) {
        named_rows.push_back(row_idx);
        break;
      }
    }
  }
  if (named_rows.empty()) {
    return Status::Ok();
  }
  std::vector<uint32_t> merged;
  merged.reserve(rows->size() + named_rows.size());
  std::set_union(rows->begin(), rows->end(), named_rows.begin(), named_rows.end(),
                 std::back_inserter(merged));
  *rows = std::move(merged);
  return Status::Ok();
}

}  // namespace

void EncodeDeletionBody(const Deletion& deletion, std::string* out) {
  PutFixed64(static_cast<uint64_t>(deletion.stored_at_ms), out);
  PutVarint64(deletion.project_id, out);
  if (!deletion.property_key.empty()) {
    out->push_back(static_cast<char>(DeletionKind::kPurgeProperty));
    PutVarint64(deletion.property_key.size(), out);
    out->append(deletion.property_key);
    PutVarint64(deletion.event_name.size(), out);
    out->append(deletion.event_name);
    return;
  }
  if (deletion.drop_before_ms.has_value() && !deletion.event_name.empty()) {
    out->push_back(static_cast<char>(DeletionKind::kDropNamedBefore));
    PutVarint64(ZigZagEncode(*deletion.drop_before_ms), out);
    PutVarint64(deletion.event_name.size(), out);
    out->append(deletion.event_name);
    return;
  }
  if (deletion.drop_before_ms.has_value()) {
    out->push_back(static_cast<char>(DeletionKind::kDropBefore));
    PutVarint64(ZigZagEncode(*deletion.drop_before_ms), out);
    return;
  }
  out->push_back(static_cast<char>(deletion.profiles_only ? DeletionKind::kProfileSubjects
                                                           : DeletionKind::kSubjects));
  PutVarint64(deletion.subjects.size(), out);
  for (const Id128& subject : deletion.subjects) {
    PutId(subject, out);
  }
}

Status DecodeDeletionBody(ByteReader* reader, Deletion* deletion) {
  uint64_t stored_at = 0;
  MP_RETURN_IF_ERROR(reader->ReadFixed64("deletion stored_at_ms", &stored_at));
  deletion->stored_at_ms = static_cast<int64_t>(stored_at);
  MP_RETURN_IF_ERROR(reader->ReadVarint32("deletion project_id", &deletion->project_id));
  uint8_t kind = 0;
  MP_RETURN_IF_ERROR(reader->ReadByte("deletion kind", &kind));
  deletion->subjects.clear();
  deletion->drop_before_ms.reset();
  deletion->event_name.clear();
  deletion->property_key.clear();
  deletion->profiles_only = false;
  if (kind == static_cast<uint8_t>(DeletionKind::kPurgeProperty)) {
    std::string_view key;
    MP_RETURN_IF_ERROR(reader->ReadString("deletion property_key", &key));
    if (key.empty() || key.size() > kDeletionPropertyKeyBytesMax) {
      return Status::Corruption("deletion property_key of " + std::to_string(key.size()) +
                                " bytes is outside 1 .. kDeletionPropertyKeyBytesMax");
    }
    std::string_view name;
    MP_RETURN_IF_ERROR(reader->ReadString("deletion event_name", &name));
    if (name.size() > kDeletionEventNameBytesMax) {
      return Status::Corruption("deletion event_name of " + std::to_string(name.size()) +
                                " bytes is over kDeletionEventNameBytesMax");
    }
    deletion->property_key = std::string(key);
    deletion->event_name = std::string(name);
    return Status::Ok();
  }
  if (kind == static_cast<uint8_t>(DeletionKind::kDropBefore) ||
      kind == static_cast<uint8_t>(DeletionKind::kDropNamedBefore)) {
    int64_t time_ms = 0;
    MP_RETURN_IF_ERROR(reader->ReadZigZag("deletion drop_before_ms", &time_ms));
    deletion->drop_before_ms = time_ms;
    if (kind == static_cast<uint8_t>(DeletionKind::kDropBefore)) {
      return Status::Ok();
    }
    std::string_view name;
    MP_RETURN_IF_ERROR(reader->ReadString("deletion event_name", &name));
    if (name.empty() || name.size() > kDeletionEventNameBytesMax) {
      return Status::Corruption("deletion event_name of " + std::to_string(name.size()) +
                                " bytes is outside 1 .. kDeletionEventNameBytesMax");
    }
    deletion->event_name = std::string(name);
    return Status::Ok();
  }
  if (kind != static_cast<uint8_t>(DeletionKind::kSubjects) &&
      kind != static_cast<uint8_t>(DeletionKind::kProfileSubjects)) {
    return Status::Corruption("deletion kind " + std::to_string(kind) + " is unknown");
  }
  deletion->profiles_only = kind == static_cast<uint8_t>(DeletionKind::kProfileSubjects);
  uint64_t count = 0;
  MP_RETURN_IF_ERROR(reader->ReadCount("deletion subject count", 16, kDeletionSubjectsMax, &count));
  deletion->subjects.resize(count);
  for (size_t subject_idx = 0; subject_idx < count; ++subject_idx) {
    MP_RETURN_IF_ERROR(reader->ReadId("deletion subject", &deletion->subjects[subject_idx]));
    if (subject_idx > 0 &&
        !(deletion->subjects[subject_idx - 1] < deletion->subjects[subject_idx])) {
      return Status::Corruption("deletion subjects are not strictly ascending");
    }
  }
  return Status::Ok();
}

std::string EncodeDeletionPayload(const Deletion& deletion) {
  std::string out;
  EncodeDeletionBody(deletion, &out);
  return out;
}

Result<Deletion> DecodeDeletionPayload(std::string_view payload) {
  if (payload.size() < kDeletionBodyBytesMin) {
    return Status::Corruption("deletion record of " + std::to_string(payload.size()) +
                              " bytes is too short");
  }
  ByteReader reader(payload);
  Deletion deletion;
  MP_RETURN_IF_ERROR(DecodeDeletionBody(&reader, &deletion));
  MP_RETURN_IF_ERROR(reader.ExpectEnd("deletion record"));
  return deletion;
}

const ProjectDeletions* DeletionState::Find(uint32_t project_id) const {
  for (const auto& [id, deletions] : by_project) {
    if (id == project_id) {
      return &deletions;
    }
  }
  return nullptr;
}

std::shared_ptr<const DeletionState> MakeDeletionState(std::vector<Deletion> deletions,
                                                       uint64_t generation) {
  auto state = std::make_shared<DeletionState>();
  state->generation = generation;
  state->deletions = std::move(deletions);
  for (const Deletion& deletion : state->deletions) {
    auto found =
        std::find_if(state->by_project.begin(), state->by_project.end(),
                     [&](const auto& entry) { return entry.first == deletion.project_id; });
    if (found == state->by_project.end()) {
      state->by_project.emplace_back(deletion.project_id, ProjectDeletions{});
      found = std::prev(state->by_project.end());
    }
    ProjectDeletions& project = found->second;
    if (!deletion.property_key.empty()) {
      project.property_purges.push_back(
          {deletion.property_key, deletion.event_name, deletion.position});
    } else if (deletion.drop_before_ms.has_value() && !deletion.event_name.empty()) {
      project.named_time_bounds.push_back(
          {deletion.event_name, *deletion.drop_before_ms, deletion.position});
    } else if (deletion.drop_before_ms.has_value()) {
      project.time_bounds.emplace_back(*deletion.drop_before_ms, deletion.position);
    }
    SubjectPositions& subjects = deletion.profiles_only ? project.profile_subjects
                                                        : project.subjects;
    for (const Id128& subject : deletion.subjects) {
      subjects.emplace_back(subject, deletion.position);
    }
  }
  for (auto& [project_id, project] : state->by_project) {
    KeepLatestPerSubject(&project.subjects);
    KeepLatestPerSubject(&project.profile_subjects);
  }
  return state;
}

bool RowHidden(const ProjectDeletions& deletions, const Id128& subject, int64_t time_ms,
               const LogPosition& row_position, std::string_view event_name) {
  for (const auto& [bound_ms, position] : deletions.time_bounds) {
    if (time_ms < bound_ms && row_position < position) {
      return true;
    }
  }
  for (const NamedTimeBound& bound : deletions.named_time_bounds) {
    if (time_ms < bound.before_ms && row_position < bound.position && event_name == bound.name) {
      return true;
    }
  }
  return SubjectHidden(deletions.subjects, subject, row_position);
}

bool ProfileHidden(const ProjectDeletions& deletions, const Id128& subject,
                   const LogPosition& row_position) {
  return SubjectHidden(deletions.subjects, subject, row_position) ||
         SubjectHidden(deletions.profile_subjects, subject, row_position);
}

namespace {

bool EraseKey(std::string_view key, Properties* properties) {
  const size_t before = properties->size();
  std::erase_if(*properties, [key](const Property& property) { return property.key == key; });
  return properties->size() != before;
}

}  // namespace

bool StripPurgedEventProperties(const ProjectDeletions& deletions, const LogPosition& row_position,
                                std::string_view event_name, Properties* properties) {
  bool stripped = false;
  for (const PropertyPurge& purge : deletions.property_purges) {
    if (row_position < purge.position &&
        (purge.event_name.empty() || purge.event_name == event_name)) {
      stripped |= EraseKey(purge.key, properties);
    }
  }
  return stripped;
}

bool StripPurgedEventProperties(const Deletion& deletion, Event* event) {
  if (deletion.property_key.empty() ||
      (!deletion.event_name.empty() && deletion.event_name != event->name)) {
    return false;
  }
  return EraseKey(deletion.property_key, &event->properties);
}

bool StripPurgedProfileProperties(const Deletion& deletion, ProfileUpdate* update) {
  if (deletion.property_key.empty() || !deletion.event_name.empty()) {
    return false;
  }
  return EraseKey(deletion.property_key, &update->properties);
}

bool EmptyProfileUpdate(const ProfileUpdate& update) {
  return update.properties.empty() && update.operation != ProfileOperation::kDelete;
}

bool KeepProfileUpdate(const ProjectDeletions& deletions, const LogPosition& row_position,
                       ProfileUpdate* update) {
  if (ProfileHidden(deletions, update->subject, row_position)) {
    return false;
  }
  bool stripped = false;
  for (const PropertyPurge& purge : deletions.property_purges) {
    if (row_position < purge.position && purge.event_name.empty()) {
      stripped |= EraseKey(purge.key, &update->properties);
    }
  }
  return !stripped || !update->properties.empty() ||
         update->operation == ProfileOperation::kDelete;
}

Result<SegmentMask> MaskOf(const SegmentReader& segment, const ProjectDeletions& deletions,
                           const LogPosition& log_end, MaskCounts* counts) {
  *counts = MaskCounts{};
  SegmentMask mask;
  MP_ASSIGN_OR_RETURN(mask.rows, HiddenRows(segment, deletions, log_end, &counts->rows));
  std::vector<uint32_t> name_codes;
  PropertyColumn column;
  for (const PropertyPurge& purge : deletions.property_purges) {
    // A purge before the segment's log end hides nothing in it: the memtable
    // lost the values when the purge was applied.
    if (purge.position < log_end) {
      continue;
    }
    const PropertyKeyInfo* info = segment.FindPropertyKey(purge.key);
    if (info == nullptr || info->row_count == 0) {
      continue;
    }
    auto key = std::find_if(mask.keys.begin(), mask.keys.end(),
                            [&](const SegmentMask::Key& entry) { return entry.key == purge.key; });
    if (key == mask.keys.end()) {
      key = mask.keys.insert(mask.keys.end(), SegmentMask::Key{purge.key, false, {}});
    }
    if (key->every_row) {
      continue;
    }
    if (purge.event_name.empty()) {
      key->every_row = true;
      key->rows.clear();
      continue;
    }
    const std::optional<uint32_t> code = segment.FindEventName(purge.event_name);
    if (!code.has_value()) {
      continue;
    }
    key->rows.resize(segment.block_count());
    for (size_t block_idx = 0; block_idx < segment.block_count(); ++block_idx) {
      if (!segment.BlockHoldsName(block_idx, *code)) {
        continue;
      }
      MP_RETURN_IF_ERROR(segment.ReadNameCodes(block_idx, &name_codes));
      MP_RETURN_IF_ERROR(segment.ReadProperty(block_idx, purge.key, &column));
      std::vector<uint32_t> rows;
      for (uint32_t row_idx = 0; row_idx < name_codes.size() && row_idx < column.tags.size();
           ++row_idx) {
        if (name_codes[row_idx] == *code && column.tags[row_idx] != PropertyTag::kAbsent) {
          rows.push_back(row_idx);
        }
      }
      std::vector<uint32_t>& block_rows = key->rows[block_idx];
      std::vector<uint32_t> merged;
      std::set_union(block_rows.begin(), block_rows.end(), rows.begin(), rows.end(),
                     std::back_inserter(merged));
      block_rows = std::move(merged);
    }
  }
  for (SegmentMask::Key& key : mask.keys) {
    if (key.every_row) {
      counts->values += segment.FindPropertyKey(key.key)->row_count;
      continue;
    }
    for (const std::vector<uint32_t>& rows : key.rows) {
      counts->values += rows.size();
    }
  }
  std::erase_if(mask.keys, [](const SegmentMask::Key& key) {
    return !key.every_row && std::all_of(key.rows.begin(), key.rows.end(),
                                         [](const auto& rows) { return rows.empty(); });
  });
  return mask;
}

Result<std::vector<std::vector<uint32_t>>> HiddenRows(const SegmentReader& segment,
                                                      const ProjectDeletions& deletions,
                                                      const LogPosition& log_end,
                                                      uint64_t* hidden_count) {
  *hidden_count = 0;
  // Every row of the segment was stored before log_end, so a deletion at or
  // after it applies to all of them, and one before it to none: a deletion
  // removes its rows from the memtable at once, so segments flushed after it
  // never hold them.
  const auto position_applies = [&log_end](const LogPosition& position) {
    return !(position < log_end);
  };
  int64_t drop_before_ms = INT64_MIN;
  for (const auto& [bound_ms, position] : deletions.time_bounds) {
    if (position_applies(position)) {
      drop_before_ms = std::max(drop_before_ms, bound_ms);
    }
  }
  const auto applies = [&log_end](const std::pair<Id128, LogPosition>& entry) {
    return !(entry.second < log_end);
  };
  std::vector<std::vector<uint32_t>> hidden;
  const SegmentSummary& summary = segment.summary();
  const bool any_time = drop_before_ms > summary.time_min_ms;
  const auto by_subject = [](const std::pair<Id128, LogPosition>& entry, const Id128& key) {
    return entry.first < key;
  };
  const auto first_subject = std::lower_bound(deletions.subjects.begin(), deletions.subjects.end(),
                                              summary.subject_min, by_subject);
  // A folded segment keeps rows under their person: a row's own (stored)
  // subject may lie outside the segment's subject range.
  const bool folded = summary.stored_subject_runs > 0 && !deletions.subjects.empty();
  const bool any_subject =
      folded ||
      (first_subject != deletions.subjects.end() && !(summary.subject_max < first_subject->first));
  const auto erased_now = [&](const Id128& subject) {
    const auto found = std::lower_bound(deletions.subjects.begin(), deletions.subjects.end(),
                                        subject, by_subject);
    return found != deletions.subjects.end() && found->first == subject && applies(*found);
  };
  // Named bounds that apply, as this segment's name codes (a name the
  // segment does not hold hides nothing in it).
  std::vector<std::pair<uint32_t, int64_t>> named;
  for (const NamedTimeBound& bound : deletions.named_time_bounds) {
    if (position_applies(bound.position) && bound.before_ms > summary.time_min_ms) {
      if (const std::optional<uint32_t> code = segment.FindEventName(bound.name)) {
        named.emplace_back(*code, bound.before_ms);
      }
    }
  }
  if (!any_time && !any_subject && named.empty()) {
    return hidden;
  }
  std::vector<int64_t> times;
  std::vector<uint32_t> name_codes;
  SubjectRuns runs;
  std::vector<StoredSubjectRun> stored_runs;
  for (size_t block_idx = 0; block_idx < segment.block_count(); ++block_idx) {
    const SegmentBlockInfo& block = segment.block(block_idx);
    std::vector<uint32_t> rows;
    bool all = false;
    if (any_time && block.time_min_ms < drop_before_ms) {
      if (block.time_max_ms < drop_before_ms) {
        rows.assign(1, kAllRowsHidden);  // the whole block, without a list of its rows
        all = true;
      } else {
        MP_RETURN_IF_ERROR(segment.ReadTimes(block_idx, &times));
        for (uint32_t row_idx = 0; row_idx < times.size(); ++row_idx) {
          if (times[row_idx] < drop_before_ms) {
            rows.push_back(row_idx);
          }
        }
      }
    }
    if (!all && !named.empty()) {
      MP_RETURN_IF_ERROR(NamedRows(segment, block_idx, named, &times, &name_codes, &rows));
    }
    // Only blocks whose subject range holds an erased subject read their
    // subject runs; each run is then matched by one walk over both sorted
    // lists.
    auto erased =
        std::lower_bound(first_subject, deletions.subjects.end(), block.subject_first, by_subject);
    // A row is its stored subject's: the rows of a folded block's stored
    // subject runs belong to those subjects, not to the person they are
    // kept under.
    stored_runs.clear();
    bool stored_erased = false;
    if (folded && !all) {
      MP_RETURN_IF_ERROR(segment.ReadStoredSubjects(block_idx, &stored_runs));
      for (const StoredSubjectRun& run : stored_runs) {
        stored_erased = stored_erased || erased_now(run.subject);
      }
    }
    const bool block_subjects =
        !all && (stored_erased || (erased != deletions.subjects.end() &&
                                   !(block.subject_last < erased->first)));
    if (block_subjects) {
      MP_RETURN_IF_ERROR(segment.ReadSubjects(block_idx, &runs));
      std::vector<uint32_t> subject_rows;
      uint32_t run_start = 0;
      size_t stored_idx = 0;
      for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
        const Id128& subject = runs.subjects[run_idx];
        while (erased != deletions.subjects.end() && erased->first < subject) {
          ++erased;
        }
        const bool run_erased =
            erased != deletions.subjects.end() && erased->first == subject && applies(*erased);
        if (!run_erased && stored_runs.empty()) {
          run_start += runs.run_lengths[run_idx];
          continue;
        }
        for (uint32_t row_idx = run_start; row_idx < run_start + runs.run_lengths[run_idx];
             ++row_idx) {
          while (stored_idx < stored_runs.size() &&
                 stored_runs[stored_idx].row_begin + stored_runs[stored_idx].row_count <= row_idx) {
            ++stored_idx;
          }
          const bool stored_elsewhere =
              stored_idx < stored_runs.size() && stored_runs[stored_idx].row_begin <= row_idx;
          if (stored_elsewhere ? erased_now(stored_runs[stored_idx].subject) : run_erased) {
            subject_rows.push_back(row_idx);
          }
        }
        run_start += runs.run_lengths[run_idx];
      }
      if (!subject_rows.empty()) {
        std::vector<uint32_t> merged;
        merged.reserve(rows.size() + subject_rows.size());
        std::set_union(rows.begin(), rows.end(), subject_rows.begin(), subject_rows.end(),
                       std::back_inserter(merged));
        rows = std::move(merged);
      }
    }
    if (!rows.empty()) {
      hidden.resize(segment.block_count());
      *hidden_count += all ? block.row_count : rows.size();
      hidden[block_idx] = std::move(rows);
    }
  }
  return hidden;
}

}  // namespace minpanel::store
