// The audit log: an append-only, hash-chained record of every read, export
// and admin act (docs/formats/audit.md, docs/security.md).
//
// Each record is a JSON object (AuditEntry) framed by its length and
// followed by SHA-256(previous record's hash || length || payload), so that
// an edited, dropped, reordered or inserted record breaks the chain at its
// position. Appends are group-committed: concurrent callers share one write
// and one fdatasync, and Append returns only once its record is durable. A
// failed write poisons the log: every later Append fails (Unavailable), so
// that no read is answered without its record. Every kAnchorInterval records,
// and on Close, the head (position and hash) is appended to the anchors file;
// a copy of the anchors kept elsewhere is what makes a rewrite of the whole
// chain detectable (docs/security.md).
//
// An AuditLog is thread-safe. One process at a time holds a log folder (an
// flock on <folder>/LOCK); Open fails with Unavailable when another does.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::audit {

// Limits of one record, checked before it is written and after it is read.
inline constexpr size_t kRecordBytesMax = 256 * 1024;
inline constexpr size_t kRecordListItemsMax = 1000;  // event names or property keys
inline constexpr size_t kHashBytes = 32;
// Records between two anchors.
inline constexpr uint64_t kAnchorInterval = 1024;
// Records one GET /api/audit or `audit show` returns at most.
inline constexpr size_t kShowRecordsMax = 10000;

inline constexpr std::string_view kFileMagic = "MPAUDIT1";
inline constexpr uint32_t kFileVersion = 1;
inline constexpr size_t kFileHeaderBytes = 16;  // magic, version (u32 LE), reserved (u32)
inline constexpr size_t kRecordFrameBytes = 4 + kHashBytes;  // length before, hash after

// One audit record. Never raw personal data: queries are kept as their
// SHA-256, subjects as pseudonyms (in a side file named by subjects_file).
struct AuditEntry {
  uint64_t seq = 0;     // position in the chain, from 1; set by Append
  int64_t time_ms = 0;  // set by Append
  std::string key;      // key id: "mpk_…", "secret:<project>", "token:<project>", "local"
  std::string act;      // "query", "export.start", "export", "policy.put", "key.create", …
  std::string route;    // "/api/query", "cli", …
  std::vector<uint32_t> projects;
  std::string params_sha256;            // of the query JSON or export parameters
  std::vector<std::string> events;      // event names asked for or returned
  std::vector<std::string> properties;  // property keys asked for or returned
  uint64_t rows = 0;
  uint64_t subjects = 0;
  uint64_t bytes = 0;
  std::string subjects_file;    // side file of the subject pseudonyms returned
  std::string subjects_sha256;  // of that file's contents
  std::string target;           // what an admin act changed (key id, project)
  std::string outcome = "ok";   // "ok" or the error's message
};

// Encodes `entry` as its JSON payload (the seq and time included).
std::string EncodeEntry(const AuditEntry& entry);
// Decodes a payload; Corruption names what is wrong. Never trusts sizes.
Result<AuditEntry> DecodeEntry(std::string_view payload);
// SHA-256(previous || length (u32 LE) || payload).
std::array<uint8_t, kHashBytes> ChainHash(const std::array<uint8_t, kHashBytes>& previous,
                                          std::string_view payload);
std::string HexOf(const std::array<uint8_t, kHashBytes>& hash);

// The result of checking a log folder.
struct VerifyReport {
  bool ok = false;
  uint64_t records = 0;          // valid records, in order, from the start
  uint64_t anchors = 0;          // anchors checked
  uint64_t torn_tail_bytes = 0;  // an incomplete last record (a crash mid-append)
  std::string problem;           // the first problem, naming the record's position
  std::string head_hash_hex;
};

// Checks a log's bytes and its anchors' text (each "seq hash_hex time_ms").
// Stops at the first broken record and names it.
VerifyReport VerifyBytes(std::string_view log_bytes, std::string_view anchors_text);

// Decodes every valid record of a log's bytes, stopping at the first broken
// or incomplete one (`end_offset`: where the valid prefix ends).
struct Decoded {
  std::vector<AuditEntry> entries;
  uint64_t end_offset = 0;
  std::array<uint8_t, kHashBytes> head{};
  bool broken = false;  // stopped at a record that is neither valid nor a torn tail
};
Decoded DecodeLog(std::string_view log_bytes);

// Which records `audit show` and GET /api/audit return.
struct Filter {
  std::string key;                  // "": any
  std::string act;                  // prefix; "": any
  std::string route;                // "": any
  std::optional<uint32_t> project;  // only records naming this project
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;  // exclusive
  size_t limit = 100;         // the newest `limit` matching records
};
bool Matches(const Filter& filter, const AuditEntry& entry);

struct Options {
  uint64_t anchor_interval = kAnchorInterval;
};

class AuditLog {
 public:
  // Opens (creating) the log in `folder` (<data>/audit): log, anchors, LOCK
  // and subjects/. A torn tail (an append a crash interrupted, never
  // acknowledged) is cut off; a broken chain is Corruption naming the
  // record, and the log is not opened.
  static Result<std::unique_ptr<AuditLog>> Open(std::string folder,
                                                std::shared_ptr<FileSystem> file_system,
                                                std::shared_ptr<Clock> clock, Options options = {});
  ~AuditLog();

  // Appends `entry` (its seq and time are set here) and returns once it is
  // durable, with its seq. Unavailable when the log failed earlier.
  Result<uint64_t> Append(AuditEntry entry);
  // Writes a side file of subject pseudonyms (sorted, one per line) named
  // after a fresh id, durable before it returns; sets entry->subjects_file
  // and subjects_sha256. Called before Append of that entry.
  Status WriteSubjects(const std::vector<std::string>& pseudonyms, AuditEntry* entry);
  // The newest records matching `filter`, oldest first.
  Result<std::vector<AuditEntry>> Show(const Filter& filter);
  // Writes an anchor of the head and closes. Idempotent.
  Status Close();

  const std::string& folder() const { return folder_; }

 private:
  AuditLog(std::string folder, std::shared_ptr<FileSystem> file_system,
           std::shared_ptr<Clock> clock, Options options, int lock_fd);
  Status WriteAnchorLocked();

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  Options options_;
  int lock_fd_;
  std::mutex mutex_;
  std::condition_variable written_;
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<WritableFile> anchors_;
  std::array<uint8_t, kHashBytes> head_{};          // of the last record queued
  std::array<uint8_t, kHashBytes> durable_head_{};  // of record durable_seq_
  uint64_t next_seq_ = 1;
  uint64_t durable_seq_ = 0;
  uint64_t anchored_seq_ = 0;
  uint64_t subjects_files_ = 0;
  std::string pending_;
  bool writing_ = false;
  bool closed_ = false;
  Status failed_;
};

// Helpers for callers that build entries.
std::string Sha256Hex(std::string_view text);

}  // namespace minpanel::audit
