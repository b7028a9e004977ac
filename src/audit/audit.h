// The audit log: an append-only, hash-chained record of every read, export
// and admin act (docs/formats/audit.md, docs/security.md).
//
// Each record is a JSON object (AuditEntry) framed by its length and
// followed by SHA-256(previous record's hash || length || payload), so that
// an edited, dropped, reordered or inserted record breaks the chain at its
// position. Appends are group-committed: a flusher thread writes and syncs
// everything queued in one write and one fdatasync. Append returns once its
// record is durable; Enqueue returns at once, so that a caller can do its
// own work and WaitDurable before it answers. The flusher syncs at once
// when someone waits for a queued record, and holds records nobody waits
// for yet up to Options::unawaited_flush_ms, so that they ride along with
// the next awaited sync instead of costing one of their own; a sync
// someone waits for can be held briefly for the reads that opened and
// will wait soon (EnqueueOpening, Options::opening_wait_us). A
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
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/core.h"
#include "core/secret_files.h"

namespace minpanel::audit {

// Limits of one record, checked before it is written and after it is read.
inline constexpr size_t kRecordBytesMax = 256 * 1024;
inline constexpr size_t kRecordListItemsMax = 1000;  // event names or property keys
// The most bytes of a record's `params` text (service::kAuditParamsBytesMax
// keeps within it).
inline constexpr size_t kRecordParamsBytesMax = 4096;
inline constexpr size_t kHashBytes = 32;
// Records between two anchors.
inline constexpr uint64_t kAnchorInterval = 1024;
// How long the flusher holds queued records that nobody waits for yet
// (Options::unawaited_flush_ms): a query's records, queued before and after
// it runs, then share the one sync its answer waits for; a record never
// awaited (a query's closing record) is durable within this long.
inline constexpr uint32_t kUnawaitedFlushMsDefault = 5;
inline constexpr uint32_t kUnawaitedFlushMsMax = 1000;
// How long the flusher, woken by a waiter, holds that sync while other
// reads have queued their opening record and still run
// (Options::opening_wait_us, AuditLog::EnqueueOpening): each of them will
// wait for a sync soon, and rides on this one if it does within this long.
// A read alone is never held. Since a query's answer waits for its closing
// record too, a sync its start rode on early no longer covers it: with no
// hold, 8 clients' queries took 0.60 syncs a query and 8 % less
// throughput; held 500 us, 0.37 and about the throughput of before
// (bench/audit_syscalls.sh; docs/benchmarks.md, "Holding a sync for
// running reads").
inline constexpr uint32_t kOpeningWaitUsDefault = 500;
inline constexpr uint32_t kOpeningWaitUsMax = 1'000'000;
// How long a query runs before its opening record (`query.start`) is
// written (Options::deferred_start_ms, AuditLog::OpenRead): a query that
// answers sooner is recorded once, its `query` record carrying what it
// asked and what left; one still running then is recorded twice, as an
// export is, so that a query the process dies in is on the log. One record
// instead of two: half the records (encoding, chain hash, bytes written,
// key index) a cheap query costs (docs/benchmarks.md, "One record per
// cheap query").
inline constexpr uint32_t kDeferredStartMsDefault = 5;
inline constexpr uint32_t kDeferredStartMsMax = 60'000;
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
// Versions 3 and 4: the headers of versions 1 and 2, for a log whose space
// is written ahead with zeros (kLogPreallocateBytes): its records end at
// the first record length of zero (the zero tail), not only at the file's
// end (docs/formats/audit.md, "Space written ahead"). A version-1 or 2 log
// becomes version 3 or 4 in place when a log that writes ahead opens it.
inline constexpr uint32_t kFileVersionWrittenAhead = 3;
inline constexpr uint32_t kFileVersionPrunedWrittenAhead = 4;
// How far ahead of its last record the log writes zeros, in one step (the
// first steps smaller: 64 KiB, doubling), so
// that the fdatasync of a group commit overwrites space the file already
// has (data only) instead of growing the file (its size and extents, a
// journal commit each time): measured in docs/benchmarks.md, "Space
// written ahead". Zeros rather than fallocate(2), whose unwritten extents
// are converted, again through the journal, as each block is first
// written. A step's zeros go to disk with the next group commit's sync,
// once per step.
inline constexpr uint64_t kLogPreallocateBytes = 1 << 20;
// The most bytes that are not zero a written-ahead log may hold past its
// last record and still open (kept aside as a torn tail) or verify: a crash
// leaves at most the one batch it was writing. More is not a crash's doing
// (records hidden behind a zeroed length, or damage): Corruption.
inline constexpr uint64_t kTornTailBytesMax = 64 << 20;
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
// Key epochs (docs/formats/audit.md, "Key epochs"): a line "key
// PUBLIC_KEY_HEX TIME_MS" of the anchors file names the key that signs the
// checkpoints after it, up to the next such line. A log opened with a key
// its anchors do not name as their current one writes one: a new log, one
// from before key lines, and a restore without the old keys
// (Options::new_key_epoch); any other key is refused.
inline constexpr std::string_view kKeyLinePrefix = "key ";
std::string KeyLine(const PublicKey& key, int64_t time_ms);
// The key the last key line of `anchors_text` names; nullopt when none does.
// Corruption for a key line that does not parse.
Result<std::optional<PublicKey>> CurrentAnchorsKey(std::string_view anchors_text);
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
  // Where the request came from, sealed (AddressKeys::Seal): "YYYY-MM-DD:"
  // and the base64 of the address encrypted under that UTC day's address
  // key; empty: none (the command line). Readers that reveal it
  // (AddressKeys::RevealIn) put the address here, or kAddressExpired.
  std::string address;
  // The version of the project's privacy policy in force when a read ran
  // (0: the built-in default): set on the records of queries, exports and
  // the other reads of one project's data. nullopt: none (an admin act, or
  // a record written before reads carried it).
  std::optional<uint32_t> policy_version;
  // What a read asked for, masked (service/audit_params.h;
  // docs/formats/audit.md, "Parameters"): a compact JSON object, as text,
  // of at most kRecordParamsBytesMax bytes, on the records that open a read
  // (query.start, export.start). Empty: none (another act, or a record
  // written before reads carried it).
  std::string params;
  std::string outcome = "ok";  // "ok" or the error's message
  // The client address in clear, as the caller knows it: never encoded.
  // AuditLog::Enqueue (or SealAddress) seals it into `address`
  // (Options::address_keys) and clears it; without address keys it is
  // dropped.
  std::string client_address;
};

// Subject files (docs/formats/audit.md, "Subject files"): the subject
// pseudonyms one raw export or subject-level result returned, in
// <folder>/subjects/, named and hashed by its record. Version 2 also says,
// per subject, which of the read's property keys had a value in that
// subject's rows that left: the keys once, a small table of the distinct
// key sets, and per subject an index into it. Version 1 (no header line)
// lists the pseudonyms only: a reader knows the read's keys, not each
// subject's.
inline constexpr std::string_view kSubjectsFileHeader = "minpanel-subjects 2";
inline constexpr uint32_t kSubjectsFileVersion = 2;
inline constexpr size_t kSubjectsFileKeysMax = kRecordListItemsMax;
inline constexpr size_t kSubjectsFileKeyBytesMax = 1024;
// What an erasure leaves in place of an erased subject's pseudonym (its key
// set index stays: which fields left, linked to no one).
inline constexpr std::string_view kErasedSubject = "erased";

struct SubjectsFile {
  uint32_t version = kSubjectsFileVersion;  // 1: pseudonyms only, key sets unknown
  std::vector<std::string> keys;            // sorted bytewise, distinct
  // Distinct sets, each of ascending indices into `keys`; version 1: none.
  std::vector<std::vector<uint32_t>> key_sets;
  struct Subject {
    std::string pseudonym;  // or kErasedSubject
    uint32_t key_set = 0;   // index into key_sets (version 2)
  };
  std::vector<Subject> subjects;  // sorted by pseudonym (erased ones anywhere), distinct
};

// The version-2 text of `file` (which must be well formed: what
// SubjectKeySets::Finish and ParseSubjectsFile return).
std::string EncodeSubjectsFile(const SubjectsFile& file);
// Reads either version; Corruption naming the line and what is wrong.
// Never trusts a count before the bytes behind it are there.
Result<SubjectsFile> ParseSubjectsFile(std::string_view text);

// The queue (docs/formats/audit.md, "Queue"): a command that finds the log
// held by another process (a running server) leaves its record as a file in
// <folder>/queue/, and the log's holder appends it: the server within a
// quarter second, or the next AuditLog::Open. Only a command's own acts
// are queued (key "local"): its incident runs (act "incident.…") and the
// key and project changes it makes (key.create|rotate|revoke|enable,
// project.create|rotate-secret|set-domains|set-min-group-size|rotate-key);
// at most kQueueFilesMax wait at once.
inline constexpr std::string_view kQueueFolder = "queue";
inline constexpr std::string_view kQueuedActPrefix = "incident.";
inline constexpr size_t kQueueFilesMax = 1000;
// Writes `entry` durably (a whole file, synced, renamed into place) into
// <folder>/queue/ and returns the file's name. InvalidArgument for another
// key or act; ResourceExhausted past kQueueFilesMax waiting files.
Result<std::string> QueueEntry(const std::string& folder, AuditEntry entry,
                               FileSystem& file_system, int64_t now_ms);

// Collects, row by row, the subjects a read returns and the property keys
// each had a value for. Cheap per row: a row's key set is interned once and
// compared with the last row's, and a subject's set grows by a cached union.
// Keys past kSubjectsFileKeysMax distinct ones (or longer than
// kSubjectsFileKeyBytesMax) are not tracked, as a record's key list stops at
// kRecordListItemsMax. Not thread-safe.
class SubjectKeySets {
 public:
  // A property key of the current row; `has_value` is false for a null.
  void AddKey(std::string_view key, bool has_value);
  // A subject the current row names (a row may name two: a merged row).
  void AddSubject(std::string_view pseudonym);
  // Ends the row: each subject it named gains the row's keys.
  void EndRow();
  // Drops the subjects `drop` says are no one (an export's decoys).
  void EraseSubjectsIf(const std::function<bool(std::string_view pseudonym)>& drop);
  size_t subjects() const { return subjects_.size(); }
  // Every key seen (with a value or not), sorted: the record's `properties`.
  std::vector<std::string> Keys() const;
  // The subjects with their keys: keys sorted, only the sets some subject
  // has, subjects sorted.
  SubjectsFile Finish() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  uint32_t Intern(const std::vector<uint32_t>& set);
  uint32_t Union(uint32_t left, uint32_t right);

  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> key_index_;
  std::vector<std::string> keys_;  // in the order first seen
  std::map<std::vector<uint32_t>, uint32_t> set_index_;
  std::vector<const std::vector<uint32_t>*> sets_;  // into set_index_'s keys
  std::unordered_map<uint64_t, uint32_t> unions_;
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> subjects_;
  std::vector<uint32_t> row_keys_;
  std::vector<std::string> row_subjects_;
  std::vector<uint32_t> last_row_keys_;
  uint32_t last_row_set_ = UINT32_MAX;
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
  uint64_t signed_checkpoints = 0;  // anchors whose signature was checked under the given key
  // Anchors whose signature was checked under the key of their epoch, when
  // that is not the given key (a restore without the old keys started a
  // new epoch); and the highest record a checkpoint signed by the given key
  // names (it vouches for that record and, through the chain, all before).
  uint64_t other_key_checkpoints = 0;
  uint64_t trusted_seq = 0;
  // The keys the anchors file names, in order (hex; empty: no key lines).
  std::vector<std::string> key_epochs;
  uint64_t base_seq = 0;            // records 1..base_seq were pruned
  bool base_vouched = false;        // a signed checkpoint names record base_seq
  uint64_t end_offset = 0;          // where the valid records end (0: no header yet)
  std::array<uint8_t, kHashBytes> head{};
};

// Checks a log's bytes and its anchors' text (each "seq hash_hex time_ms"
// [signature]): VerifyLog over a LogReader of the bytes, every payload
// decoded. Stops at the first broken record and names it. Given a public
// key, every signed anchor's signature is checked; a pruned log verifies
// only with the key and a signed checkpoint of its base.
VerifyReport VerifyBytes(std::string_view log_bytes, std::string_view anchors_text,
                         const PublicKey* public_key = nullptr);
// The same over the files of a log folder (`log`, `anchors`), streamed.
Result<VerifyReport> VerifyFolder(const std::string& folder, FileSystem& file_system,
                                  const PublicKey* public_key = nullptr);

// Where a log's records start: after the header, following record base_seq
// (0 and zeros for a log never pruned). NotFound for a header not yet
// complete; Corruption for bytes that are not an audit log.
struct LogStart {
  size_t header_bytes = kFileHeaderBytes;
  uint64_t base_seq = 0;
  std::array<uint8_t, kHashBytes> base_hash{};
  // Versions 3 and 4: a record length of zero is the records' end.
  bool written_ahead = false;
  uint32_t version = kFileVersion;
};
Result<LogStart> ReadLogStart(std::string_view log_bytes);
// The header of a log pruned after record base_seq (version 2, or 4 when
// `written_ahead`).
std::string PrunedHeader(uint64_t base_seq, const std::array<uint8_t, kHashBytes>& base_hash,
                         bool written_ahead = false);
// How many bytes from `offset` to the last byte that is not zero in `file`
// (0 when every byte from there on is zero): what a crash left past a
// written-ahead log's last record. Reads in kReadChunkBytes pieces.
Result<uint64_t> NonZeroBytesFrom(const RandomAccessFile& file, uint64_t offset);
// The problem of a written-ahead log with more than kTornTailBytesMax such
// bytes past the last record `report` names.
std::string TornTailTooLong(const VerifyReport& report, uint64_t bytes);

// One record as a LogReader passes it: chain hash recomputed and matched,
// seq checked. `payload` points into the reader's buffer and stays valid
// until the reader's next call.
struct LogRecord {
  uint64_t seq = 0;
  uint64_t offset = 0;      // of its length prefix in the log
  uint64_t end_offset = 0;  // just after its chain hash
  std::string_view payload;
  std::array<uint8_t, kHashBytes> hash{};  // its chain hash
};

// The log is read in pieces this big; a reader's memory is one piece (or
// one record, when a record is bigger) whatever the log's size.
inline constexpr size_t kReadChunkBytes = 4 << 20;

// Reads an audit log one record at a time, from its header (Start) or from
// after a record whose position and hash are already vouched for (Resume),
// recomputing each record's chain hash from its predecessor's and checking
// its seq. It stops at the first record that is neither valid nor a torn
// tail (an incomplete last record), and in a written-ahead log (version 3
// or 4) at a record length of zero: the zero tail, a clean end. There, a
// record whose hash does not match is a torn tail only when the bytes after
// it are zero and it holds a zero byte where a written record has none (in
// its JSON payload, or as its last byte): what an append cut short leaves
// in zeroed space. Any other mismatch is a broken record, as before. The
// seq is read from the payload's leading `{"seq":N` (as EncodeEntry writes
// it) and the payload decoded in full (DecodeEntry) only when
// `decode_payloads` is set or it does not start so. One thread at a time.
class LogReader {
 public:
  // Over a whole log image in memory; `log_bytes` must outlive the reader.
  explicit LogReader(std::string_view log_bytes, bool decode_payloads = true);
  // Over a file, read in pieces of `chunk_bytes` (smaller in tests and fuzzing).
  explicit LogReader(std::unique_ptr<RandomAccessFile> file, bool decode_payloads = true,
                     size_t chunk_bytes = kReadChunkBytes);

  // Reads the header. NotFound for a header not yet complete (a new log);
  // Corruption for bytes that are not an audit log.
  Result<LogStart> Start();
  // Goes on after record `seq`, whose chain hash is `hash` and which ends at
  // byte `offset`, instead of Start; `start` is the log's header as read.
  void Resume(const LogStart& start, uint64_t offset, uint64_t seq,
              const std::array<uint8_t, kHashBytes>& hash);
  // The next valid record: true and `*record`; false at the end, where
  // `end()` says why. IoError only when a read fails.
  Result<bool> Next(LogRecord* record);

  enum class End { kReading, kClean, kTornTail, kBroken };
  End end() const { return end_; }
  bool started() const { return started_; }
  // The header, once Start read it or Resume was given it.
  const std::optional<LogStart>& log_start() const { return log_start_; }
  uint64_t seq() const { return seq_; }                // of the last valid record
  uint64_t end_offset() const { return end_offset_; }  // after the last valid record
  const std::array<uint8_t, kHashBytes>& head() const { return head_; }
  uint64_t torn_tail_bytes() const { return torn_tail_bytes_; }

 private:
  // The bytes at [offset, offset + length), fewer where the log ends.
  Result<std::string_view> Bytes(uint64_t offset, size_t length);

  std::string_view bytes_;  // the image, or the buffer's piece of the file
  std::unique_ptr<RandomAccessFile> file_;
  std::string buffer_;
  uint64_t buffer_offset_ = 0;
  size_t chunk_bytes_ = kReadChunkBytes;
  bool decode_payloads_ = true;
  bool started_ = false;
  std::optional<LogStart> log_start_;
  End end_ = End::kReading;
  uint64_t seq_ = 0;
  uint64_t end_offset_ = 0;
  std::array<uint8_t, kHashBytes> head_{};
  uint64_t torn_tail_bytes_ = 0;
};

// How VerifyLog checks a log.
struct WalkOptions {
  // Every signed anchor's signature is checked under this key, when set.
  const PublicKey* public_key = nullptr;
  // A pruned log's base must be named by a checkpoint whose signature was
  // checked (`audit verify`); false: an anchor naming the base with its
  // hash suffices when no key is given (the blast radius without the key).
  bool pruned_needs_key = true;
};
using RecordVisitor = std::function<Status(const LogRecord& record)>;

// Walks `reader` (started or resumed here when not yet: Start) to its end,
// matching the anchors (`anchors_text`, the anchors file) against the chain
// as the records pass, and calls `visit` (when set) with each valid record
// after its anchors matched. Stops at the first problem, which the report
// names (report.ok false); an error `visit` returns stops the walk and is
// returned. For a resumed reader the anchors naming records at or before
// where it resumed are parsed and their signatures checked but not matched
// (those records are not read), except a pruned log's base, which is
// checked as from the start. Memory: the reader's and the anchors'.
Result<VerifyReport> VerifyLog(LogReader& reader, std::string_view anchors_text,
                               const WalkOptions& options, const RecordVisitor& visit = {});

// The key index (docs/formats/audit.md, "Key index"): where each key's
// records are in the log, so that one key's records are found without
// reading the whole log. `<folder>/index/<n>.idx` covers records
// n * kIndexSegmentRecords + 1 to (n + 1) * kIndexSegmentRecords. It is
// derived data, never trusted over the chain: it is brought up to date by
// a verified walk of the records it does not cover yet (all of them when it
// is missing or stale), and each record found through it is checked again
// when it is read (ReadIndexedRecord).
inline constexpr uint64_t kIndexSegmentRecords = 65'536;
inline constexpr std::string_view kIndexMagic = "MPAIDX01";
inline constexpr uint32_t kIndexVersion = 1;
inline constexpr size_t kIndexHeaderBytes = 80;
inline constexpr size_t kIndexKeyBytesMax = 1024;  // a longer key is not a key a log holds

struct KeyRecordRef {
  uint64_t seq = 0;
  uint64_t offset = 0;  // of the record's length prefix in the log
  bool operator==(const KeyRecordRef&) const = default;
};

// One index file: what it covers, and the records of each key in it.
struct IndexSegment {
  uint64_t base_seq = 0;  // the log's header's base when it was written
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;                        // inclusive
  uint64_t last_end_offset = 0;                 // where record last_seq ends in the log
  std::array<uint8_t, kHashBytes> last_hash{};  // record last_seq's chain hash
  std::vector<std::pair<std::string, std::vector<KeyRecordRef>>> keys;  // sorted by key
};
std::string EncodeIndexSegment(const IndexSegment& segment);
// Decodes an index file; with `only_key`, the records of that key only.
// Corruption names what is wrong; never trusts a count or an offset.
Result<IndexSegment> DecodeIndexSegment(std::string_view bytes,
                                        std::optional<std::string_view> only_key = std::nullopt);

struct KeyLookup {
  std::vector<KeyRecordRef> records;  // every record of the key up to the log's end, by seq
  // The walk that brought the index up to date (VerifyLog's report over the
  // records it walked: only the new ones unless rebuilt). Not ok: the index
  // was not updated and `records` is empty.
  VerifyReport walk;
  bool rebuilt = false;         // made anew from the log's first record
  uint64_t records_walked = 0;  // records this call walked
  uint64_t indexed_seq = 0;     // the last record the index covers
  std::string note;             // why it was rebuilt, or why it could not be written
};
// Brings the index of the log folder `folder` up to date and returns the
// records of `key`. Writing the index may fail (a read-only folder): the
// records are still returned and `note` says so. `visit` (when set) is
// called with each record walked, as VerifyLog does; `rebuild` makes the
// index anew from the first record whatever its state (a full walk that
// leaves an index behind). Whoever brings the index up to date holds
// `<folder>/index/LOCK` (an flock) meanwhile, so that an appending server
// (AuditLog's indexer) and a command reading the same folder never write
// its files at once; LookupKey waits for it.
Result<KeyLookup> LookupKey(const std::string& folder, std::string_view key,
                            FileSystem& file_system, const WalkOptions& options,
                            const RecordVisitor& visit = {}, bool rebuild = false);
// Brings the index up to date as LookupKey does, for no key, unless another
// thread or process holds the index's lock: then Unavailable at once (the
// holder is bringing it up to date). What AuditLog's indexer calls.
Result<KeyLookup> TryUpdateIndex(const std::string& folder, FileSystem& file_system,
                                 const WalkOptions& options);
// The payload of the record `ref` names, checked without the chain walk:
// its seq, SHA-256(the hash stored before it, or the log's base, || length
// || payload) equal to the hash stored after it, and the same link from it
// to its successor when the log holds one. Corruption naming the record
// otherwise.
Result<std::string> ReadIndexedRecord(const RandomAccessFile& log, const LogStart& start,
                                      const KeyRecordRef& ref);

// Which records `audit show` and GET /api/audit return.
struct Filter {
  std::string key;                  // "": any
  std::string act;                  // prefix; "": any
  std::string route;                // "": any
  std::string target;               // exact; "": any
  std::string reason_prefix;        // "": any
  std::optional<uint32_t> project;  // only records naming this project
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;  // exclusive
  size_t limit = 100;         // the newest `limit` matching records
};
bool Matches(const Filter& filter, const AuditEntry& entry);

// The newest records of the log file at `path` matching `filter` (at most
// min(filter.limit, kShowRecordsMax)), oldest first, streamed: memory holds
// one read piece and those records. `broken`: the chain (or a record)
// breaks after record `last_seq`, and nothing after it is shown.
struct Shown {
  std::vector<AuditEntry> entries;
  bool broken = false;
  uint64_t last_seq = 0;
};
Result<Shown> ShowLog(const std::string& path, FileSystem& file_system, const Filter& filter);

// Client addresses (docs/formats/audit.md, "Client addresses"): the
// chain is append-only, so an address gets a retention of its own by
// crypto-shredding. Each record's address is sealed (XChaCha20-Poly1305,
// libsodium) under a random key of its UTC day, kept in the key folder
// (`audit-address/address-YYYY-MM-DD.key`, 0600), never in the data
// folder; a day's key is destroyed `retention_days` days after its day
// ends, after which that day's addresses cannot be read while the chain,
// which hashes the sealed text, still verifies.
inline constexpr size_t kAddressBytesMax = 64;  // an IPv6 address with a zone, and more
inline constexpr size_t kAddressKeyBytes = kSecretBytes;
inline constexpr uint32_t kAddressRetentionDaysDefault = 90;
inline constexpr std::string_view kAddressKeyFolder = "audit-address";
// What a reader shows for an address whose day key is gone.
inline constexpr std::string_view kAddressExpired = "expired";

// The day keys of a key folder's `audit-address` folder (core's
// DaySecretFiles reads, writes and keeps them). Thread-safe.
class AddressKeys {
 public:
  // Opens (creating, 0700) `folder` and destroys the expired keys.
  // `retention_days` 0: no address is kept (Seal gives "") and every key
  // goes; at most kAuditRetentionDaysMax.
  static Result<std::unique_ptr<AddressKeys>> Open(std::string folder,
                                                   std::shared_ptr<FileSystem> file_system,
                                                   std::shared_ptr<Clock> clock,
                                                   uint32_t retention_days);
  ~AddressKeys();

  // `address` sealed under the key of the UTC day of `time_ms` (made, and
  // written durably, on the day's first use). InvalidArgument over
  // kAddressBytesMax; IoError when the key cannot be written.
  Result<std::string> Seal(std::string_view address, int64_t time_ms);
  // The address a Seal gave, or nullopt when its day's key has expired or
  // is gone. Corruption for a malformed field or one that does not open
  // under its day's key (an edit).
  Result<std::optional<std::string>> Reveal(std::string_view sealed);
  // Replaces entry->address (when set) by the address or kAddressExpired.
  Status RevealIn(AuditEntry* entry);
  // Destroys (files, then the folder synced; and memory) the keys of days
  // that ended retention_days days ago or more. The server calls it every
  // minute. Returns how many files went.
  Result<size_t> DestroyExpired();
  std::string KeyPath(int64_t day) const;

 private:
  AddressKeys(std::string folder, std::shared_ptr<FileSystem> file_system,
              std::shared_ptr<Clock> clock, uint32_t retention_days);
  bool ExpiredLocked(int64_t day, int64_t now_ms) const;
  // The day's key, read or (with `create`) made; nullptr when absent.
  Result<const Secret*> KeyOfLocked(int64_t day, bool create);

  DaySecretFiles keys_;  // guarded by mutex_ (KeyPath only reads its folder)
  std::shared_ptr<Clock> clock_;
  uint32_t retention_days_;
  // Each seal's nonce: this random prefix and seals_ (mutex_'s), little-endian.
  std::array<uint8_t, 16> nonce_prefix_{};
  uint64_t seals_ = 0;
  std::mutex mutex_;
};

// An AuditLog keeps the key index current as it appends: a thread of its
// own brings it up to date (TryUpdateIndex) each time this many more
// records are durable, at Open and at Close, so that a blast radius walks at
// most about this many records past the index however long the server ran.
// Each update walks the new records (read back from the page cache) and
// rewrites the index's last file (at most kIndexSegmentRecords * 16 bytes).
inline constexpr uint64_t kIndexUpdateRecords = 4096;

struct Options {
  uint64_t anchor_interval = kAnchorInterval;
  // Records between two updates of the key index by the log's indexer
  // thread; 0: the log does not keep the index (LookupKey still does).
  uint64_t index_update_records = kIndexUpdateRecords;
  // Queued records nobody waits for are written and synced within this
  // many ms (at most kUnawaitedFlushMsMax), or with the next sync someone
  // waits for, whichever comes first; 0: at once, each in a sync of its own
  // when nothing else is queued.
  uint32_t unawaited_flush_ms = kUnawaitedFlushMsDefault;
  // A sync someone waits for is held up to this many µs (at most
  // kOpeningWaitUsMax) while other reads opened (EnqueueOpening) and have
  // not waited yet, or until the last of them waits; 0: synced at once.
  uint32_t opening_wait_us = kOpeningWaitUsDefault;
  // A read opened with OpenRead has its opening record written only when
  // it still runs this many ms after (at most kDeferredStartMsMax); 0: at
  // once, as EnqueueOpening's.
  uint32_t deferred_start_ms = kDeferredStartMsDefault;
  // Seals each record's client address when set; without, addresses are
  // dropped (not kept in clear).
  std::shared_ptr<AddressKeys> address_keys;
  // Signs every anchor (a checkpoint) when set.
  std::shared_ptr<const SigningKey> signing_key;
  // The log's checkpoints may be signed by another key than signing_key:
  // Open checks them under the keys their epochs name, then starts a new
  // epoch with signing_key (a key line and a `log.key` record). Only a
  // restore without the old keys sets it; without it, a log whose current
  // epoch is another key's is refused (Corruption naming both keys).
  bool new_key_epoch = false;
  // A file (on another volume) each anchor line is also appended to; empty: none.
  std::string checkpoint_sink;
  // How far ahead of its last record the log writes zeros (a version-3 or
  // 4 log; an older one is made so in place at Open); 0: the log grows
  // with each append, as before version 3, and an older log keeps its
  // version. Falls back to growing, until the log is opened again, when
  // writing ahead fails (a full disk): the batch that asked for the zeros
  // is written before them, so no record waits on them.
  uint64_t preallocate_bytes = kLogPreallocateBytes;
  // Open verifies only the records the key index does not cover yet (those
  // it covers were verified when it was written; LookupKey), and brings the
  // index up to date, instead of walking the whole chain: for a command
  // that appends one record to a long log (an incident run's). The server
  // walks the whole chain.
  bool open_from_index = false;
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
  // with the next group commit someone waits for, within
  // Options::unawaited_flush_ms, or at Close. A caller that answers a read
  // calls WaitDurable(seq) of the record naming it first.
  Result<uint64_t> Enqueue(AuditEntry entry);
  // Returns once record `seq` (from Enqueue) is durable; Unavailable when the
  // log failed or closed first. The flusher syncs at once for a waiter,
  // with every record queued before it (and those queued while a sync runs).
  Status WaitDurable(uint64_t seq);
  // A read's opening record (query.start, export.start), queued by
  // EnqueueOpening, or held back by OpenRead: the log counts the reads
  // between their opening and their wait, so that a sync someone else
  // waits for is held for them up to Options::opening_wait_us — one sync
  // then carries several reads' records instead of one each. Destroyed
  // without waiting (a read that failed first), it is no longer counted,
  // and a held-back opening record is queued then: an authorised read is
  // on the log whatever became of it.
  class Opening {
   public:
    Opening(Opening&& other) noexcept
        : log_(other.log_),
          seq_(other.seq_),
          held_(std::exchange(other.held_, 0)),
          running_(std::exchange(other.running_, false)) {}
    Opening(const Opening&) = delete;
    Opening& operator=(const Opening&) = delete;
    Opening& operator=(Opening&&) = delete;
    ~Opening();
    // The opening record's seq (EnqueueOpening's; 0 for OpenRead's).
    uint64_t seq() const { return seq_; }
    // WaitDurable(seq()), or WaitDurable(through) when that comes later (a
    // closing record the read queued since); the read is no longer counted
    // as running. For EnqueueOpening's.
    Status WaitDurable(uint64_t through = 0);
    // For OpenRead's: queues `end`, the closing record, and waits until it
    // is durable. When the opening record was not written (the read ended
    // within Options::deferred_start_ms), `end` is the read's one record
    // and takes the opening's `params`; else it closes the opening record
    // written before it. Returns the closing record's seq.
    Result<uint64_t> Close(AuditEntry end);

   private:
    friend class AuditLog;
    Opening(AuditLog* log, uint64_t seq, uint64_t held)
        : log_(log), seq_(seq), held_(held), running_(log != nullptr) {}
    AuditLog* log_;  // null in a benchmark build without the log
    uint64_t seq_;
    uint64_t held_;  // OpenRead's: its id among the held openings; else 0
    bool running_;   // counted as running: not waited yet
  };
  // Seals entry->client_address into entry->address now (Options::
  // address_keys; without them it is dropped) and clears it, as Enqueue
  // does with an entry whose client_address is set: the records of one
  // request, copied from the one entry, then share one seal.
  Status SealAddress(AuditEntry* entry);
  // Enqueue, counting the read as running until its Opening waits or goes.
  Result<Opening> EnqueueOpening(AuditEntry entry);
  // As EnqueueOpening, for a read whose answer is made whole before any of
  // it leaves (a query): the opening record `entry` is held back, and the
  // flusher queues it only if the read still runs
  // Options::deferred_start_ms after (or the Opening goes without Close,
  // or the log closes). A read that ends sooner is recorded once
  // (Opening::Close): half the records, and half the log's work, for a
  // cheap query.
  Result<Opening> OpenRead(AuditEntry entry);
  // Writes a subject file (version 2: the subjects and each one's keys,
  // `subjects` as SubjectKeySets::Finish makes it) named after a fresh id,
  // durable before it returns; sets entry->subjects, subjects_file and
  // subjects_sha256. Called before Append of that entry.
  Status WriteSubjects(const SubjectsFile& subjects, AuditEntry* entry);
  // The newest records matching `filter`, oldest first.
  Result<std::vector<AuditEntry>> Show(const Filter& filter);
  // Appends the records waiting in the queue (QueueEntry), oldest first,
  // each durable before its file is removed — a crash in between appends
  // it twice, never loses it. A file that is not a command's incident
  // record is renamed NAME.rejected and counted. Open drains once; the
  // server calls it every quarter second. Thread-safe.
  struct Drained {
    uint64_t appended = 0;
    uint64_t rejected = 0;
    std::string problem;  // the last rejected file's
  };
  Result<Drained> DrainQueue();
  // Writes an anchor of the head and closes. Idempotent.
  Status Close();
  // Receives each anchor line (without its newline) once it is durable in
  // the anchors file and the sink: an outside copy (a webhook). Called with
  // the log's lock held, on the thread that wrote the anchor: must be quick
  // and must not call the log. Empty: none. Thread-safe.
  void SetCheckpointObserver(std::function<void(std::string_view line)> observer);
  // Audit retention: cuts the records older than `before_ms` from the head,
  // behind a signed checkpoint of the last one cut (written first), and
  // records the cut (`log.prune`). Needs a signing key (InvalidArgument
  // without). Returns how many records were cut (0: none old enough).
  Result<uint64_t> PruneBefore(int64_t before_ms);

  const std::string& folder() const { return folder_; }

  // What the indexer thread did: the last record the index covered after
  // its last update, the updates made, and the last update's problem (the
  // index is a cache: a failed update is retried at the next interval and
  // never fails an append). For tests and the service's status.
  struct IndexState {
    uint64_t indexed_seq = 0;
    uint64_t updates = 0;
    uint64_t rebuilds = 0;
    std::string problem;
  };
  IndexState index_state();
  // Writing space ahead (Options::preallocate_bytes): the zero steps
  // written, whether the log still writes ahead, and the failure that made
  // it stop (each also a line on stderr). For tests and the service's status.
  struct PreallocateState {
    bool writing_ahead = false;
    uint64_t steps = 0;
    uint64_t failures = 0;
    std::string problem;
  };
  PreallocateState preallocate_state();

 private:
  AuditLog(std::string folder, std::shared_ptr<FileSystem> file_system,
           std::shared_ptr<Clock> clock, Options options, int lock_fd);
  Status WriteAnchorLocked();
  // Appends a (signed, when there is a key) anchor line of record `seq`,
  // to the anchors file and the sink.
  Status WriteAnchorLineLocked(uint64_t seq, const std::array<uint8_t, kHashBytes>& hash);
  // Appends `line` (with its newline) to the anchors file and the sink, synced.
  Status AppendAnchorsLine(const std::string& line);
  // The flusher thread: writes and syncs what is queued, in one batch.
  void FlushLoop();
  // Wakes every waiter of either batch (the log failed or closed).
  void WakeAllWaiters();
  // Writes `batch` at end_offset_ and syncs it (the flusher, outside
  // mutex_). In a written-ahead log the batch's first length is written
  // last, so that a reader beside the writer, or the next Open after a
  // kill, sees the batch whole or not at all; then, when less than half a
  // step of zeros is left after it, the next step (WriteAhead), synced with
  // the batch.
  Status WriteBatch(std::string_view batch);
  // Zeros from ahead_end_ to a step past `from`: AheadStepBytes, 64 KiB
  // at first, doubling with each step up to Options::preallocate_bytes.
  Status WriteAhead(uint64_t from);
  uint64_t AheadStepBytes() const;
  // The indexer thread: brings the key index up to date when asked
  // (index_wanted_seq_ past what it covers), outside mutex_, so that no
  // append or query waits for it.
  void IndexLoop();
  // Asks the indexer for an update once `index_update_records` more records
  // are durable (or at once when `now`). mutex_ held.
  void RequestIndexLocked(bool now);
  Result<uint64_t> EnqueueRecord(AuditEntry entry, bool opening);
  // Assigns `entry` its seq and time and queues its record; the checks
  // before (failed, closed, params) done. mutex_ held. Returns whether the
  // queue was empty before (the flusher may sleep: notify it).
  Result<bool> QueueLocked(AuditEntry* entry);
  // Queues the held openings (OpenRead) whose read has run
  // Options::deferred_start_ms, or every one when `all`. mutex_ held.
  void QueueHeldOpeningsLocked(bool all);
  // Opening::Close of an OpenRead's.
  Result<uint64_t> CloseRead(uint64_t held, AuditEntry end);
  // WaitDurable; `closes_opening`: an Opening's, no longer counted as running.
  Status WaitDurableRecord(uint64_t seq, bool closes_opening);
  // An Opening destroyed without waiting (`held`: OpenRead's id, or 0).
  void DropOpening(uint64_t held);
  // Unavailable when the log failed or closed. mutex_ held.
  Status WritableLocked() const;

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  Options options_;
  int lock_fd_;
  std::mutex mutex_;
  // Batch n (batches_taken_ when the flusher took it) became durable:
  // written_[n % 2]; the log failed or closed: both. A waiter sleeps on
  // its record's batch's, so that the end of the batch being written does
  // not wake the waiters of the next (at most these two are in play).
  std::array<std::condition_variable, 2> written_;
  std::condition_variable queued_;   // a record was queued, or the log closes
  std::unique_ptr<PositionalFile> file_;
  // Where the next batch goes (just after the last record written) and
  // where the file's zeros written ahead end; the flusher's while it
  // writes (writing_), else mutex_'s.
  uint64_t end_offset_ = 0;
  uint64_t ahead_end_ = 0;
  bool written_ahead_ = false;  // a version-3 or 4 log
  PreallocateState preallocate_state_;
  std::unique_ptr<WritableFile> anchors_;
  std::unique_ptr<WritableFile> sink_;              // Options::checkpoint_sink, when set
  std::function<void(std::string_view line)> checkpoint_observer_;
  std::array<uint8_t, kHashBytes> head_{};          // of the last record queued
  std::array<uint8_t, kHashBytes> durable_head_{};  // of record durable_seq_
  uint64_t next_seq_ = 1;
  uint64_t durable_seq_ = 0;
  uint64_t anchored_seq_ = 0;
  uint64_t subjects_files_ = 0;
  std::string pending_;
  // When pending_ last became non-empty: the flusher holds records nobody
  // waits for until Options::unawaited_flush_ms past it.
  std::chrono::steady_clock::time_point pending_since_;
  uint64_t awaited_seq_ = 0;  // the highest seq someone waits for (WaitDurable, PruneBefore)
  uint64_t openings_running_ = 0;  // Openings not yet waited or dropped
  // OpenRead's opening records not written yet, by id (ascending: oldest
  // first), with when each read opened.
  struct HeldOpening {
    AuditEntry entry;
    std::chrono::steady_clock::time_point since;
  };
  std::map<uint64_t, HeldOpening> held_openings_;
  // Those the flusher queued since, with how that went (an error: the
  // read is not answered).
  std::unordered_map<uint64_t, Status> held_queued_;
  uint64_t next_held_ = 1;
  bool holding_for_openings_ = false;  // the flusher holds a sync for them
  bool closed_ = false;    // no more appends
  bool stopping_ = false;  // the flusher exits once nothing is queued
  bool flusher_exited_ = false;
  bool writing_ = false;   // the flusher is writing a batch, the lock released
  uint64_t batches_taken_ = 0;      // batches the flusher took from pending_
  uint64_t writing_last_seq_ = 0;   // the last record of the batch taken last
  uint64_t base_seq_ = 0;  // records up to this one were pruned
  Status failed_;
  std::thread flusher_;
  // The indexer: asked for records up to index_wanted_seq_; mutex_ guards
  // these. index_round_ is held for each update and by PruneBefore, so that
  // no update reads a log being replaced.
  std::condition_variable index_wanted_;
  uint64_t index_wanted_seq_ = 0;
  uint64_t index_asked_at_seq_ = 0;  // durable_seq_ when last asked
  uint64_t index_done_seq_ = 0;      // index_wanted_seq_ of the last update made
  bool index_forced_ = false;        // an update asked for whatever the seqs (a prune, Close)
  bool index_stopping_ = false;
  IndexState index_state_;
  std::mutex index_round_;
  std::thread indexer_;
  std::mutex queue_mutex_;  // one drain at a time
};

// Helpers for callers that build entries.
std::string Sha256Hex(std::string_view text);

}  // namespace minpanel::audit
