// Deletions in the embedded engine: erasing subjects and dropping events
// before a time, logical first and physical later (src/store/README.md,
// "Erasure"; byte layouts in docs/formats/wal.md and docs/formats/manifest.md).
//
// A deletion is a durable record at a log position P. It hides every row
// that was stored before P: a memtable row is removed from the memtable when
// the record is applied (the log replays the record in order, so the same
// happens after a restart); a segment row is hidden by a per-block row mask
// while the segment holds only rows from before P (its `log_end` <= P),
// until a rewrite removes the rows from the file. Rows stored after P are
// kept. Internal to the store module; the functions here are pure and
// thread-compatible, and a DeletionState is immutable once published.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "store/manifest.h"
#include "store/segment.h"
#include "store/segment_format.h"

namespace minpanel::store {

class SegmentReader;

// (Deletion, one call of EraseSubjects or DropBefore: manifest.h.)

// The payload of a deletion log record (docs/formats/wal.md, type 2), and
// its place in the manifest (docs/formats/manifest.md, version 2): without
// the position, which the log gives by where the record lies.
void EncodeDeletionBody(const Deletion& deletion, std::string* out);
// Corruption naming the field on malformed bytes; subjects must be
// strictly ascending and at most kDeletionSubjectsMax.
Status DecodeDeletionBody(ByteReader* reader, Deletion* deletion);
std::string EncodeDeletionPayload(const Deletion& deletion);
Result<Deletion> DecodeDeletionPayload(std::string_view payload);

// A drop of one event name's events before a time (Engine::DropEventsBefore).
struct NamedTimeBound {
  std::string name;
  int64_t before_ms = 0;
  LogPosition position;
};

// A purge of one property key (Engine::PurgeProperty).
struct PropertyPurge {
  std::string key;
  std::string event_name;  // empty: every event and every profile update
  LogPosition position;
};

// The deletions in force for one project, indexed for reads.
struct ProjectDeletions {
  // Sorted by subject; per subject the latest position that erased it.
  std::vector<std::pair<Id128, LogPosition>> subjects;
  // Time bounds with the position of the drop that set each.
  std::vector<std::pair<int64_t, LogPosition>> time_bounds;
  // Time bounds of one event name each, in log order.
  std::vector<NamedTimeBound> named_time_bounds;
  // Property purges, in log order.
  std::vector<PropertyPurge> property_purges;
  // Sorted by subject; per subject the latest position that expired its
  // profile (Engine::ExpireProfiles): hides profile updates only.
  std::vector<std::pair<Id128, LogPosition>> profile_subjects;
};

// Every deletion in force, immutable: a new one is built on every change
// and readers hold the one they started with. `generation` changes with it.
struct DeletionState {
  uint64_t generation = 0;
  std::vector<Deletion> deletions;  // in log order
  // By project, rebuilt from `deletions`.
  std::vector<std::pair<uint32_t, ProjectDeletions>> by_project;
  const ProjectDeletions* Find(uint32_t project_id) const;
};

// A state holding `deletions` (in log order) with the given generation.
std::shared_ptr<const DeletionState> MakeDeletionState(std::vector<Deletion> deletions,
                                                       uint64_t generation);

// Whether a row of `subject` at `time_ms` named `event_name` (empty for a
// profile update) stored before `row_position` (a memtable or log row) is
// hidden by `deletions`.
bool RowHidden(const ProjectDeletions& deletions, const Id128& subject, int64_t time_ms,
               const LogPosition& row_position, std::string_view event_name = {});

// Removes from `properties` of an event named `event_name` stored before
// `row_position` the keys a property purge of `deletions` hides; true when
// it removed one.
bool StripPurgedEventProperties(const ProjectDeletions& deletions, const LogPosition& row_position,
                                std::string_view event_name, Properties* properties);
// The same for one deletion applied to a memtable event (stored before it).
bool StripPurgedEventProperties(const Deletion& deletion, Event* event);
// For one property purge applied to a memtable profile update (stored
// before it): removes the key when the purge names no event; true when it
// removed it. An update left with no property but a $delete is then hidden
// (EmptyProfileUpdate).
bool StripPurgedProfileProperties(const Deletion& deletion, ProfileUpdate* update);
bool EmptyProfileUpdate(const ProfileUpdate& update);
// Whether a profile update stored at `row_position` stays visible: not
// hidden by an erasure of its subject, and, once the keys property purges
// hide are removed from it (in place), left with a property or a $delete.
bool KeepProfileUpdate(const ProjectDeletions& deletions, const LogPosition& row_position,
                       ProfileUpdate* update);

// What a mask hides, counted.
struct MaskCounts {
  uint64_t rows = 0;    // rows hidden
  uint64_t values = 0;  // property values hidden (of rows not hidden whole, or an upper bound)
  bool empty() const { return rows == 0 && values == 0; }
};

// The mask of `segment` (whose rows were all stored before `log_end`):
// HiddenRows' rows, and the property keys that purges hide in it — in every
// row for a purge of the key, else in the rows of the purge's event name
// that hold the key (only blocks whose name bitmap holds the name read their
// name codes and the key's column). Empty (counts zero) when none.
Result<SegmentMask> MaskOf(const SegmentReader& segment, const ProjectDeletions& deletions,
                           const LogPosition& log_end, MaskCounts* counts);
// Whether a profile update of `subject` stored before `row_position` is
// hidden by `deletions`: by an erasure of its subject or an expiry of its
// profile (time bounds drop events only).
bool ProfileHidden(const ProjectDeletions& deletions, const Id128& subject,
                   const LogPosition& row_position);

// The rows of `segment` (whose rows were all stored before `log_end`) that
// `deletions` hide, per block, ascending ({kAllRowsHidden} for a whole block); blocks no deletion can touch (by
// their subject range and time range) are not read. Empty when none.
Result<std::vector<std::vector<uint32_t>>> HiddenRows(const SegmentReader& segment,
                                                      const ProjectDeletions& deletions,
                                                      const LogPosition& log_end,
                                                      uint64_t* hidden_count);

}  // namespace minpanel::store
