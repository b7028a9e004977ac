// The profile file of one project (docs/formats/profiles.md): the durable
// home of its profile updates ($set and the like) once the write-ahead log
// that first held them is trimmed. Internal to the store module.
//
// `<store>/profiles/<project id>.prof` is append-only: each flush that
// carries profile updates of the project appends one group — the updates
// as batch records (the log's own payload, with each record's store time),
// then an end record naming the log position the group covers. A group is
// whole once its end record is durable; open cuts anything after the last
// one. A purge rewrites the file whole (FileSystem::WriteFileAtomically).
// The functions here are pure or take the file system; thread-compatible.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "core/core.h"
#include "store/manifest.h"

namespace minpanel::store {

// "MPPRF\r\n\x1a", as the log's magic.
inline constexpr std::array<char, 8> kProfileFileMagic = {'M', 'P', 'P', 'R', 'F', '\r', '\n', '\x1a'};
// Version 2 adds each profile update's policy version (docs/formats/profiles.md);
// a file of version 1 is still read, its updates' policy version unknown,
// and is rewritten at the newest version on open before anything is
// appended to it (RewriteProfileFileAtNewestVersion).
inline constexpr uint32_t kProfileFileFormatVersion = 2;
inline constexpr uint32_t kProfileFilePolicyVersionFormatVersion = 2;  // the first with it
// magic (8) | format version (u32) | project id (u64) | crc32 of the first 20 bytes (u32)
inline constexpr size_t kProfileFileHeaderBytes = 24;
// The encoded updates of one batch record of a group stay under this (a
// larger run of one store time is split); far under kLogRecordBytesMax.
inline constexpr size_t kProfileRecordBodyBytesMax = 16u << 20;

// A profile update and the store time of the log record that brought it.
struct StoredProfileUpdate {
  int64_t stored_at_ms = 0;
  ProfileUpdate update;
};

std::string EncodeProfileFileHeader(uint32_t project_id);

// Appends one group to `out`: `updates` (in store order) as batch records,
// one per run of equal store times, then the end record for `log_end`.
void EncodeProfileGroup(uint32_t project_id, std::span<const StoredProfileUpdate> updates,
                        const LogPosition& log_end, std::string* out);

// What a scan of a profile file found.
struct ProfileFileScan {
  uint32_t format_version = 0;  // of the header; 0 when the header is cut short
  uint64_t valid_bytes = 0;  // the header and every whole group
  LogPosition log_end;       // of the last whole group; {0, 0} when none
  uint64_t updates = 0;      // in whole groups
  uint64_t groups = 0;
  // Set when bytes after valid_bytes are not a whole group (a flush cut
  // short by a crash or a full disk, or damage): why, for a recovery note.
  std::string tail_reason;
};

// Receives each update of a whole group and the group's log end (so after
// the group's end record has been read). Returns false to stop.
using ProfileVisitor =
    std::function<bool(const StoredProfileUpdate& update, const LogPosition& group_log_end)>;

// Reads the profile file of `project_id` at `path` up to `limit_bytes`.
// Corruption (naming the file) for a bad header, another project's file or
// a newer version; a torn or damaged tail is not an error but ends the
// scan (ProfileFileScan::tail_reason). `visit` may be empty.
Result<ProfileFileScan> ScanProfileFile(FileSystem& file_system, const std::string& path,
                                        uint64_t limit_bytes, uint32_t project_id,
                                        const ProfileVisitor& visit);
// The same over a file already open (read from its start); `path` names it
// in messages.
Result<ProfileFileScan> ScanProfileFile(SequentialFile* file, const std::string& path,
                                        uint64_t limit_bytes, uint32_t project_id,
                                        const ProfileVisitor& visit);

// Writes the whole groups of the file at `path` (its first `valid_bytes`,
// as a scan found them) anew at kProfileFileFormatVersion, each group with
// its own log end so that the deletions in force apply as before: to
// `path` + ".tmp", synced, renamed over `path`, the folder synced (a `.tmp`
// left by a crash is the caller's to remove; the old file is whole). One
// group is held in memory at a time. Returns the new file's size.
Result<uint64_t> RewriteProfileFileAtNewestVersion(FileSystem& file_system,
                                                   const std::string& path, uint64_t valid_bytes,
                                                   uint32_t project_id, uint32_t mode);

// Writes the file readably (groups, their updates, their log ends) for
// `minpanel debug dump`; Corruption after what came before at damage.
Status DumpProfileFile(FileSystem& file_system, const std::string& path, std::ostream& out);

}  // namespace minpanel::store
