// The audit log: an append-only, hash-chained record of every read, export
// and admin act (docs/formats/audit.md, docs/security.md).
//
// Each record is a JSON object (AuditEntry) framed by its length and
// followed by SHA-256(previous record's hash || length || payload), so that
// an edited, dropped, reordered or inserted record breaks the chain at its
// position. Appends are group-committed: a flusher thread writes and syncs
// everything queued in one write and one fdatasync. Append returns once its
// record is durable; Enqueue returns at once, so that a caller can overlap
// the record's fsync with its own work and WaitDurable before it answers. A
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
#include <thread>
#include <vector>

#include "core/core.h"

namespace minpanel::audit {

// Limits of one record, checked before it is written and after it is read.
inline constexpr size_t kRecordBytesMax = 256 * 1024;
inline constexpr size_t kRecordListItemsMax = 1000;  // event names or property keys
inline constexpr size_t kHashBytes = 32;
// Records between two anchors.
inline constexpr uint64_t kAnchorInterval = 1024;
// The longest audit retention a config may set (Config::audit_retention_days).
inline constexpr uint32_t kAuditRetentionDaysMax = 36'500;
// Records one GET /api/audit or `audit show` returns at most.
inline constexpr size_t kShowRecordsMax = 10000;

inline constexpr std::string_view kFileMagic = "MPAUDIT1";
inline constexpr uint32_t kFileVersion = 1;
inline constexpr size_t kFileHeaderBytes = 16;  // magic, version (u32 LE), reserved (u32)
// A log whose head was pruned behind a signed checkpoint: the version-1
// header, then the seq (u64 LE) and chain hash of the last pruned record.
inline constexpr uint32_t kFileVersionPruned = 2;
inline constexpr size_t kFileHeaderBytesPruned = kFileHeaderBytes + 8 + kHashBytes;
inline constexpr size_t kRecordFrameBytes = 4 + kHashBytes;  // length before, hash after

// Signed checkpoints (checkpoint.cc): an Ed25519 key, kept in the key
// folder (outside the data folder), signs each anchor line's
// "SEQ HASH_HEX TIME_MS", appended to the line as a fourth field.
inline constexpr size_t kSeedBytes = 32;
inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSecretKeyBytes = 64;
inline constexpr size_t kSignatureBytes = 64;
inline constexpr std::string_view kSigningKeyFile = "audit-signing.key";
using PublicKey = std::array<uint8_t, kPublicKeyBytes>;
struct SigningKey {
  PublicKey public_key{};
  std::array<uint8_t, kSecretKeyBytes> secret_key{};
};
// Reads the key (its 32-byte seed in hex, mode 0600) from `path`; creates
// one when there is none and `create` (else NotFound).
Result<SigningKey> LoadSigningKey(FileSystem& file_system, const std::string& path, bool create);
Result<PublicKey> ParsePublicKey(std::string_view hex);
std::string PublicKeyHex(const PublicKey& key);
// The signature (hex) of an anchor line's "SEQ HASH_HEX TIME_MS".
std::string SignAnchor(const SigningKey& key, std::string_view anchor_text);
bool AnchorSignatureValid(const PublicKey& key, std::string_view anchor_text,
                          std::string_view signature_hex);
// One line of the anchors file.
struct AnchorLine {
  uint64_t seq = 0;
  std::string_view hash_hex;
  std::string_view signed_text;    // "SEQ HASH_HEX TIME_MS"
  std::string_view signature_hex;  // empty: unsigned
};
Result<AnchorLine> ParseAnchorLine(std::string_view line);

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
  // An export's watermark nonce, 32 hex (query/watermark.h): what `audit
  // trace` needs to recompute its decoys. Never shown to audit:read keys.
  std::string watermark;
  // Why an export was asked for (the `reason` parameter of a large export;
  // docs/security.md), as the caller gave it: UTF-8 without control
  // characters, at most 256 bytes, checked by the service.
  std::string reason;
  std::string outcome = "ok";  // "ok" or the error's message
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
  uint64_t signed_checkpoints = 0;  // anchors whose signature was checked
  uint64_t base_seq = 0;            // records 1..base_seq were pruned
  bool base_vouched = false;        // a signed checkpoint names record base_seq
};

// Checks a log's bytes and its anchors' text (each "seq hash_hex time_ms"
// [signature]). Stops at the first broken record and names it. Given a
// public key, every signed anchor's signature is checked; a pruned log
// verifies only with the key and a signed checkpoint of its base.
VerifyReport VerifyBytes(std::string_view log_bytes, std::string_view anchors_text,
                         const PublicKey* public_key = nullptr);

// Where a log's records start: after the header, following record base_seq
// (0 and zeros for a log never pruned). NotFound for a header not yet
// complete; Corruption for bytes that are not an audit log.
struct LogStart {
  size_t header_bytes = kFileHeaderBytes;
  uint64_t base_seq = 0;
  std::array<uint8_t, kHashBytes> base_hash{};
};
Result<LogStart> ReadLogStart(std::string_view log_bytes);
// The header of a log pruned after record base_seq.
std::string PrunedHeader(uint64_t base_seq, const std::array<uint8_t, kHashBytes>& base_hash);

// Decodes every valid record of a log's bytes, stopping at the first broken
// or incomplete one (`end_offset`: where the valid prefix ends).
struct Decoded {
  uint64_t base_seq = 0;  // the records start after this one (a pruned log)
  std::array<uint8_t, kHashBytes> base_hash{};
  std::vector<AuditEntry> entries;
  std::vector<uint64_t> record_ends;  // the byte offset after each entry's record
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
  // Signs every anchor (a checkpoint) when set.
  std::shared_ptr<const SigningKey> signing_key;
  // A file (on another volume) each anchor line is also appended to; empty: none.
  std::string checkpoint_sink;
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
  // Queues `entry` (its seq and time are set here) for the flusher and
  // returns its seq at once, before it is durable: the record becomes durable
  // with the next group commit, or at Close. A caller that answers a read
  // calls WaitDurable(seq) of the record naming it first.
  Result<uint64_t> Enqueue(AuditEntry entry);
  // Returns once record `seq` (from Enqueue) is durable; Unavailable when the
  // log failed or closed first.
  Status WaitDurable(uint64_t seq);
  // Writes a side file of subject pseudonyms (sorted, one per line) named
  // after a fresh id, durable before it returns; sets entry->subjects_file
  // and subjects_sha256. Called before Append of that entry.
  Status WriteSubjects(const std::vector<std::string>& pseudonyms, AuditEntry* entry);
  // The newest records matching `filter`, oldest first.
  Result<std::vector<AuditEntry>> Show(const Filter& filter);
  // Writes an anchor of the head and closes. Idempotent.
  Status Close();
  // Audit retention: cuts the records older than `before_ms` from the head,
  // behind a signed checkpoint of the last one cut (written first), and
  // records the cut (`log.prune`). Needs a signing key (InvalidArgument
  // without). Returns how many records were cut (0: none old enough).
  Result<uint64_t> PruneBefore(int64_t before_ms);

  const std::string& folder() const { return folder_; }

 private:
  AuditLog(std::string folder, std::shared_ptr<FileSystem> file_system,
           std::shared_ptr<Clock> clock, Options options, int lock_fd);
  Status WriteAnchorLocked();
  // Appends a (signed, when there is a key) anchor line of record `seq`,
  // to the anchors file and the sink.
  Status WriteAnchorLineLocked(uint64_t seq, const std::array<uint8_t, kHashBytes>& hash);
  // The flusher thread: writes and syncs what is queued, in one batch.
  void FlushLoop();

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  Options options_;
  int lock_fd_;
  std::mutex mutex_;
  std::condition_variable written_;  // a batch became durable, or the log failed
  std::condition_variable queued_;   // a record was queued, or the log closes
  std::unique_ptr<WritableFile> file_;
  std::unique_ptr<WritableFile> anchors_;
  std::unique_ptr<WritableFile> sink_;              // Options::checkpoint_sink, when set
  std::array<uint8_t, kHashBytes> head_{};          // of the last record queued
  std::array<uint8_t, kHashBytes> durable_head_{};  // of record durable_seq_
  uint64_t next_seq_ = 1;
  uint64_t durable_seq_ = 0;
  uint64_t anchored_seq_ = 0;
  uint64_t subjects_files_ = 0;
  std::string pending_;
  bool closed_ = false;    // no more appends
  bool stopping_ = false;  // the flusher exits once nothing is queued
  bool flusher_exited_ = false;
  bool writing_ = false;   // the flusher is writing a batch, the lock released
  uint64_t base_seq_ = 0;  // records up to this one were pruned
  Status failed_;
  std::thread flusher_;
};

// Helpers for callers that build entries.
std::string Sha256Hex(std::string_view text);

}  // namespace minpanel::audit
