// The manifest of the embedded engine: which segment files are live and up
// to which log position every event is in one of them. Byte layout in
// docs/formats/manifest.md. The flush thread writes a new manifest with
// FileSystem::WriteFileAtomically (temporary file, fsync, rename, fsync of
// the folder) after the segments it lists are durable, so a reader sees the
// previous manifest or the new one, never a mix; a segment file not listed
// is an orphan of a flush that died and is deleted on open.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::store {

// "MPMAN\r\n\x1a", as the log and segment magics.
inline constexpr std::array<char, 8> kManifestMagic = {'M', 'P', 'M', 'A', 'N', '\r', '\n', '\x1a'};
// 2 adds each segment's log end and the deletions in force; 1 is still read.
inline constexpr uint32_t kManifestFormatVersion = 2;
inline constexpr uint64_t kManifestSegmentsMax = 1'000'000;
// Deletions in force at once; past it EraseSubjects waits for a purge (it is
// far above what a purge pass leaves: each pass retires what it rewrote).
inline constexpr uint64_t kManifestDeletionsMax = 1'000'000;

// A position in the log: records starting before it (in file number, then
// offset order) are wholly in segments; records at or after it are not.
struct LogPosition {
  uint64_t file_number = 0;
  uint64_t offset = 0;
  friend auto operator<=>(const LogPosition&, const LogPosition&) = default;
};

// One call of Engine::EraseSubjects, DropBefore, DropEventsBefore or
// PurgeProperty, or one record of Engine::ExpireProfiles
// (src/store/deletion.h).
struct Deletion {
  uint32_t project_id = 0;
  LogPosition position;  // of its log record: it applies to rows stored before
  int64_t stored_at_ms = 0;
  std::vector<Id128> subjects;            // sorted, unique; empty for a time bound
  std::optional<int64_t> drop_before_ms;  // events with time_ms < this; unset for subjects
  // With drop_before_ms: only events of this name (retention per event
  // name, Engine::DropEventsBefore); empty: every event. (`= {}` keeps
  // aggregate initialisations that stop before it free of warnings.)
  std::string event_name = {};
  // Set for a purge of one property key (Engine::PurgeProperty): every value
  // of this key stored before `position` is hidden — on the events named
  // `event_name` only when that is set, else on every event and every
  // profile update. No row is hidden; subjects empty, drop_before_ms unset.
  std::string property_key = {};
  // With subjects: only their profile updates are hidden, never their
  // events (profile expiry, Engine::ExpireProfiles); false: an erasure.
  bool profiles_only = {};
  friend bool operator==(const Deletion&, const Deletion&) = default;
};

struct ManifestSegment {
  uint32_t project_id = 0;
  std::string path;  // relative to <store>/segments/, e.g. "7/2026-11-26-000012.seg"
  uint64_t file_bytes = 0;
  uint64_t row_count = 0;
  int64_t flushed_at_ms = 0;  // store clock when the flush that wrote it began
  // Every row of the segment comes from a log record before this position
  // (the flush's log position; a rewrite or merge keeps the latest of its
  // inputs'). A deletion at or after it applies to the segment's rows.
  // Version 1 manifests: their log position.
  LogPosition log_end;
};

struct Manifest {
  LogPosition log_position;
  uint64_t next_segment_number = 1;
  std::vector<ManifestSegment> segments;
  // Deletions in force (in log order): logged, and not yet retired by a
  // purge, so that they outlive the log files they were written to.
  std::vector<Deletion> deletions;
};

std::string EncodeManifest(const Manifest& manifest);
// Corruption (naming `name`) on a bad magic, checksum, newer version or
// malformed body.
Result<Manifest> DecodeManifest(std::string_view bytes, const std::string& name);

}  // namespace minpanel::store
