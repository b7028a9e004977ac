// The one reader of the audit log (docs/formats/audit.md): the header, the
// records one at a time with the chain recomputed as they pass, and the
// anchors matched against it. AuditLog::Open, `audit verify`, `audit show`,
// GET /api/audit, the key index and the blast radius all read through it.
#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>

#include "audit/audit.h"
#include "audit/log_format.h"
#include "audit/verify_folder.h"

namespace minpanel::audit {
namespace {

using Hash = std::array<uint8_t, kHashBytes>;

using internal::LeadingSeq;
using internal::ReadU32;

}  // namespace

Result<LogStart> ReadLogStart(std::string_view log_bytes) {
  if (log_bytes.size() < kFileHeaderBytes) {
    if (log_bytes != kFileMagic.substr(0, std::min(log_bytes.size(), kFileMagic.size()))) {
      return Status::Corruption("not an audit log header");
    }
    return Status::NotFound("the header is incomplete");
  }
  const uint32_t version = ReadU32(log_bytes, kFileMagic.size());
  if (log_bytes.substr(0, kFileMagic.size()) != kFileMagic || version == 0 ||
      version > kFileVersionPrunedWrittenAhead) {
    return Status::Corruption("not an audit log header");
  }
  LogStart start;
  start.version = version;
  start.written_ahead =
      version == kFileVersionWrittenAhead || version == kFileVersionPrunedWrittenAhead;
  if (version == kFileVersion || version == kFileVersionWrittenAhead) {
    return start;
  }
  if (log_bytes.size() < kFileHeaderBytesPruned) {
    return Status::NotFound("the header is incomplete");
  }
  start.header_bytes = kFileHeaderBytesPruned;
  start.base_seq = internal::ReadU64(log_bytes, 16);
  std::memcpy(start.base_hash.data(), log_bytes.data() + 24, kHashBytes);
  if (start.base_seq == 0) {
    return Status::Corruption("a pruned log's header names no record");
  }
  return start;
}

std::string PrunedHeader(uint64_t base_seq, const std::array<uint8_t, kHashBytes>& base_hash,
                         bool written_ahead) {
  std::string header(kFileMagic);
  internal::AppendU32(written_ahead ? kFileVersionPrunedWrittenAhead : kFileVersionPruned, &header);
  header.append(4, '\0');
  internal::AppendU64(base_seq, &header);
  header.append(reinterpret_cast<const char*>(base_hash.data()), kHashBytes);
  return header;
}

std::string TornTailTooLong(const VerifyReport& report, uint64_t bytes) {
  return std::to_string(bytes) + " bytes that are not zero lie past record " +
         std::to_string(report.base_seq + report.records) + "'s end (byte " +
         std::to_string(report.end_offset) + "), more than a crash leaves (kTornTailBytesMax, " +
         std::to_string(kTornTailBytesMax) +
         "): records hidden behind a record length set to zero, or damage";
}

Result<uint64_t> NonZeroBytesFrom(const RandomAccessFile& file, uint64_t offset) {
  uint64_t nonzero_end = offset;
  std::string piece;
  for (uint64_t at = offset;; at += piece.size()) {
    MP_RETURN_IF_ERROR(file.ReadAt(at, kReadChunkBytes, &piece));
    if (piece.empty()) {
      break;
    }
    const size_t last = piece.find_last_not_of('\0');
    if (last != std::string::npos) {
      nonzero_end = at + last + 1;
    }
  }
  return nonzero_end - offset;
}

LogReader::LogReader(std::string_view log_bytes, bool decode_payloads)
    : bytes_(log_bytes), decode_payloads_(decode_payloads) {}

LogReader::LogReader(std::unique_ptr<RandomAccessFile> file, bool decode_payloads,
                     size_t chunk_bytes)
    : file_(std::move(file)),
      chunk_bytes_(std::max<size_t>(chunk_bytes, 1)),
      decode_payloads_(decode_payloads) {}

Result<std::string_view> LogReader::Bytes(uint64_t offset, size_t length) {
  if (file_ == nullptr) {
    if (offset >= bytes_.size()) {
      return std::string_view();
    }
    return bytes_.substr(offset, length);
  }
  const bool inside = offset >= buffer_offset_ && offset - buffer_offset_ <= buffer_.size() &&
                      buffer_.size() - (offset - buffer_offset_) >= length;
  if (!inside) {
    MP_RETURN_IF_ERROR(file_->ReadAt(offset, std::max(length, chunk_bytes_), &buffer_));
    buffer_offset_ = offset;
  }
  const std::string_view view(buffer_);
  return view.substr(std::min<uint64_t>(offset - buffer_offset_, view.size()), length);
}

Result<LogStart> LogReader::Start() {
  started_ = true;
  MP_ASSIGN_OR_RETURN(const std::string_view header, Bytes(0, kFileHeaderBytesPruned));
  auto start = ReadLogStart(header);
  if (!start.ok()) {
    end_ = start.status().code() == StatusCode::kCorruption ? End::kBroken : End::kClean;
    return start.status();
  }
  log_start_ = *start;
  seq_ = start->base_seq;
  head_ = start->base_hash;
  end_offset_ = start->header_bytes;
  return start;
}

void LogReader::Resume(const LogStart& start, uint64_t offset, uint64_t seq,
                       const std::array<uint8_t, kHashBytes>& hash) {
  started_ = true;
  log_start_ = start;
  end_ = End::kReading;
  end_offset_ = offset;
  seq_ = seq;
  head_ = hash;
}

Result<bool> LogReader::Next(LogRecord* record) {
  if (end_ != End::kReading || !started_) {
    return false;
  }
  MP_ASSIGN_OR_RETURN(std::string_view frame, Bytes(end_offset_, 4));
  if (frame.empty()) {
    end_ = End::kClean;
    return false;
  }
  if (frame.size() < 4) {
    end_ = End::kTornTail;
    torn_tail_bytes_ = frame.size();
    return false;
  }
  const bool written_ahead = log_start_.has_value() && log_start_->written_ahead;
  const uint32_t length = ReadU32(frame, 0);
  if (length == 0 && written_ahead) {
    end_ = End::kClean;  // the zero tail: space written ahead, no record yet
    return false;
  }
  if (length > kRecordBytesMax) {
    end_ = End::kBroken;
    return false;
  }
  const size_t frame_bytes = size_t{length} + kRecordFrameBytes;
  // In a written-ahead log, with the 4 bytes after it: TornInZeros.
  MP_ASSIGN_OR_RETURN(frame, Bytes(end_offset_, frame_bytes + (written_ahead ? 4 : 0)));
  if (frame.size() < frame_bytes) {
    end_ = End::kTornTail;
    torn_tail_bytes_ = frame.size();
    return false;
  }
  const std::string_view after = frame.substr(frame_bytes);
  frame = frame.substr(0, frame_bytes);
  const std::string_view payload = frame.substr(4, length);
  const Hash hash = ChainHash(head_, payload);
  if (std::memcmp(hash.data(), frame.data() + 4 + length, kHashBytes) != 0) {
    if (written_ahead && internal::TornInZeros(frame, after)) {
      end_ = End::kTornTail;
      torn_tail_bytes_ = frame.find_last_not_of('\0') + 1;
      return false;
    }
    end_ = End::kBroken;
    return false;
  }
  std::optional<uint64_t> seq = decode_payloads_ ? std::nullopt : LeadingSeq(payload);
  if (!seq.has_value()) {
    auto entry = DecodeEntry(payload);
    if (entry.ok()) {
      seq = entry->seq;
    }
  }
  if (seq != seq_ + 1) {
    end_ = End::kBroken;
    return false;
  }
  record->seq = *seq;
  record->offset = end_offset_;
  record->end_offset = end_offset_ + frame_bytes;
  record->payload = payload;
  record->hash = hash;
  seq_ = *seq;
  head_ = hash;
  end_offset_ = record->end_offset;
  return true;
}

Result<AnchorLine> ParseAnchorLine(std::string_view line) {
  AnchorLine anchor;
  const size_t first_space = line.find(' ');
  // npos first: line.data() + npos would overflow the pointer.
  if (first_space == std::string_view::npos || line.size() < first_space + 1 + kHashBytes * 2) {
    return Status::Corruption("malformed");
  }
  const auto parsed = std::from_chars(line.data(), line.data() + first_space, anchor.seq);
  if (parsed.ec != std::errc() || parsed.ptr != line.data() + first_space) {
    return Status::Corruption("malformed");
  }
  anchor.hash_hex = line.substr(first_space + 1, kHashBytes * 2);
  // "SEQ HASH TIME" is what a signature covers; a fourth field is the signature.
  const size_t signature_space = line.find(' ', first_space + 1 + kHashBytes * 2 + 1);
  anchor.signed_text = line.substr(0, signature_space);
  if (signature_space != std::string_view::npos) {
    anchor.signature_hex = line.substr(signature_space + 1);
  }
  return anchor;
}

std::string KeyLine(const PublicKey& key, int64_t time_ms) {
  return std::string(kKeyLinePrefix) + PublicKeyHex(key) + " " + std::to_string(time_ms);
}

namespace {

// "key PUBLIC_KEY_HEX TIME_MS": the key.
Result<PublicKey> ParseKeyLine(std::string_view line) {
  const std::string_view rest = line.substr(kKeyLinePrefix.size());
  const size_t space = rest.find(' ');
  if (space != kPublicKeyBytes * 2 || rest.size() == space + 1) {
    return Status::Corruption("malformed key line");
  }
  auto key = ParsePublicKey(rest.substr(0, space));
  int64_t time_ms = 0;
  const std::string_view time = rest.substr(space + 1);
  const auto parsed = std::from_chars(time.data(), time.data() + time.size(), time_ms);
  if (!key.ok() || parsed.ec != std::errc() || parsed.ptr != time.data() + time.size()) {
    return Status::Corruption("malformed key line");
  }
  return *key;
}

// The first 16 hex digits of a key, for messages.
std::string KeyPrefix(const PublicKey& key) { return PublicKeyHex(key).substr(0, 16) + "…"; }

// The key the first (or the last) key line of `anchors_text` names; nullopt
// when none does.
Result<std::optional<PublicKey>> AnchorsKey(std::string_view anchors_text, bool last) {
  std::optional<PublicKey> found;
  size_t line_start = 0;
  while (line_start < anchors_text.size()) {
    const size_t line_end = anchors_text.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      break;  // a torn last line is no line
    }
    const std::string_view line = anchors_text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.starts_with(kKeyLinePrefix)) {
      MP_ASSIGN_OR_RETURN(found, ParseKeyLine(line));
      if (!last) {
        break;
      }
    }
  }
  return found;
}

}  // namespace

Result<std::optional<PublicKey>> CurrentAnchorsKey(std::string_view anchors_text) {
  return AnchorsKey(anchors_text, /*last=*/true);
}

namespace {

struct PendingAnchor {
  AnchorLine line;
  uint64_t line_number = 0;
};

std::string AnchorName(const PendingAnchor& anchor) {
  return "anchor " + std::to_string(anchor.line_number);
}

// Parses every complete anchor line (a torn last line, written by a crashed
// process, is left out) and, given a key, checks each signature under the
// key of its epoch (the last key line above it; above the first key line,
// the first one's key; with no key lines, the given key); the anchors to
// match come back sorted by seq. With key lines, the given key must be one
// of theirs. Empty problem when every line holds.
std::string ParseAnchors(std::string_view anchors_text, const PublicKey* public_key,
                         std::vector<PendingAnchor>* anchors, VerifyReport* report) {
  // Above the first key line (a log from before key lines), its key; a
  // malformed key line is named below, at its line.
  std::optional<PublicKey> epoch_key;
  if (auto first = AnchorsKey(anchors_text, /*last=*/false); first.ok()) {
    epoch_key = *first;
  }
  bool given_key_named = false;
  size_t line_start = 0;
  uint64_t line_number = 0;
  while (line_start < anchors_text.size()) {
    const size_t line_end = anchors_text.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      break;
    }
    const std::string_view line = anchors_text.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_number;
    if (line.starts_with(kKeyLinePrefix)) {
      const auto key = ParseKeyLine(line);
      if (!key.ok()) {
        return "anchors line " + std::to_string(line_number) + " is malformed";
      }
      epoch_key = *key;
      report->key_epochs.push_back(PublicKeyHex(*key));
      given_key_named = given_key_named || (public_key != nullptr && *key == *public_key);
      continue;
    }
    const auto anchor = ParseAnchorLine(line);
    if (!anchor.ok()) {
      return "anchors line " + std::to_string(line_number) + " is malformed";
    }
    const PendingAnchor pending{*anchor, line_number};
    if (!anchor->signature_hex.empty() && public_key != nullptr) {
      const PublicKey& key = epoch_key.has_value() ? *epoch_key : *public_key;
      if (!AnchorSignatureValid(key, anchor->signed_text, anchor->signature_hex)) {
        return AnchorName(pending) + " (record " + std::to_string(anchor->seq) +
               "): its signature does not verify under " +
               (epoch_key.has_value() ? "the key of its epoch (" + KeyPrefix(key) + ")"
                                      : std::string("the audit public key")) +
               " (a forged checkpoint, or another key)";
      }
      if (key == *public_key) {
        ++report->signed_checkpoints;
        report->trusted_seq = std::max(report->trusted_seq, anchor->seq);
      } else {
        ++report->other_key_checkpoints;
      }
    }
    if (anchor->seq > 0) {
      anchors->push_back(pending);
    }
  }
  if (public_key != nullptr && !report->key_epochs.empty() && !given_key_named) {
    std::string named;
    for (const std::string& hex : report->key_epochs) {
      named += (named.empty() ? "" : ", ") + hex.substr(0, 16) + "…";
    }
    return "the given audit public key (" + KeyPrefix(*public_key) +
           ") signed none of the checkpoints: the anchors file names only other keys (" + named +
           "): another key folder's key, or a forgery";
  }
  std::stable_sort(anchors->begin(), anchors->end(),
                   [](const PendingAnchor& left, const PendingAnchor& right) {
                     return left.line.seq < right.line.seq;
                   });
  return "";
}

// Checks the anchors naming a log's base (a pruned log) or records before
// it; advances `next` past them. `base_named`: an anchor names the base
// with its hash (signed or not).
std::string CheckBaseAnchors(const std::vector<PendingAnchor>& anchors, const LogStart& start,
                             size_t* next, bool* base_named, VerifyReport* report) {
  for (; *next < anchors.size() && anchors[*next].line.seq <= start.base_seq; ++*next) {
    const PendingAnchor& anchor = anchors[*next];
    if (anchor.line.seq < start.base_seq) {
      continue;  // of a pruned record
    }
    if (HexOf(start.base_hash) != anchor.line.hash_hex) {
      return AnchorName(anchor) + ": record " + std::to_string(anchor.line.seq) +
             "'s hash differs from the one the pruned log starts after";
    }
    *base_named = true;
    report->base_vouched = report->base_vouched || !anchor.line.signature_hex.empty();
    ++report->anchors;
  }
  return "";
}

std::string BrokenProblem(uint64_t last_good, uint64_t offset) {
  return "record " + std::to_string(last_good + 1) + " (at byte " + std::to_string(offset) +
         ") is broken: its hash, sequence number or contents do not follow record " +
         std::to_string(last_good) + " (edited, dropped, inserted or reordered records)";
}

void Finish(const LogReader& reader, VerifyReport* report) {
  report->records = reader.seq() - report->base_seq;
  report->head = reader.head();
  report->head_hash_hex = HexOf(reader.head());
  report->end_offset = reader.end_offset();
  report->torn_tail_bytes = reader.torn_tail_bytes();
}

}  // namespace

Result<VerifyReport> VerifyLog(LogReader& reader, std::string_view anchors_text,
                               const WalkOptions& options, const RecordVisitor& visit) {
  VerifyReport report;
  std::vector<PendingAnchor> anchors;
  size_t next_anchor = 0;
  const bool resumed = reader.started();
  bool base_named = false;
  if (!resumed) {
    auto started = reader.Start();
    if (!started.ok() && started.status().code() != StatusCode::kNotFound) {
      if (started.status().code() != StatusCode::kCorruption) {
        return started.status();
      }
      report.problem = "the log does not start with the audit log header (" +
                       std::string(kFileMagic) +
                       ", version <= " + std::to_string(kFileVersionPruned) + ")";
      return report;
    }
  }
  const std::optional<LogStart>& start = reader.log_start();
  if (start.has_value()) {
    report.base_seq = start->base_seq;
  }
  report.problem = ParseAnchors(anchors_text, options.public_key, &anchors, &report);
  if (!report.problem.empty()) {
    Finish(reader, &report);
    return report;
  }
  if (start.has_value()) {
    report.problem = CheckBaseAnchors(anchors, *start, &next_anchor, &base_named, &report);
  }
  while (resumed && next_anchor < anchors.size() && anchors[next_anchor].line.seq <= reader.seq()) {
    ++next_anchor;
  }
  LogRecord record;
  while (report.problem.empty()) {
    MP_ASSIGN_OR_RETURN(const bool more, reader.Next(&record));
    if (!more) {
      break;
    }
    for (; next_anchor < anchors.size() && anchors[next_anchor].line.seq == record.seq;
         ++next_anchor) {
      if (HexOf(record.hash) != anchors[next_anchor].line.hash_hex) {
        report.problem = AnchorName(anchors[next_anchor]) + ": record " +
                         std::to_string(record.seq) +
                         "'s chain hash differs from the anchored one (the chain was rewritten)";
        break;
      }
      ++report.anchors;
    }
    if (report.problem.empty() && visit) {
      MP_RETURN_IF_ERROR(visit(record));
    }
  }
  Finish(reader, &report);
  if (!report.problem.empty()) {
    return report;
  }
  if (reader.end() == LogReader::End::kBroken) {
    report.problem = BrokenProblem(reader.seq(), reader.end_offset());
    report.torn_tail_bytes = 0;
    return report;
  }
  if (next_anchor < anchors.size()) {
    const auto first_line =
        std::min_element(anchors.begin() + static_cast<std::ptrdiff_t>(next_anchor), anchors.end(),
                         [](const PendingAnchor& left, const PendingAnchor& right) {
                           return left.line_number < right.line_number;
                         });
    report.problem = AnchorName(*first_line) + " names record " +
                     std::to_string(first_line->line.seq) + " but the log ends at record " +
                     std::to_string(reader.seq()) + " (truncated or records dropped)";
    return report;
  }
  if (report.base_seq > 0) {
    const bool anchored = report.base_vouched || (!options.pruned_needs_key && base_named);
    if (!anchored || (options.pruned_needs_key && options.public_key == nullptr)) {
      report.problem =
          !anchored || options.public_key != nullptr
              ? "the log starts after record " + std::to_string(report.base_seq) +
                    " but no signed checkpoint names that record (records cut from the head)"
              : "the log was pruned after record " + std::to_string(report.base_seq) +
                    ": its checkpoint's signature needs the audit public key to be checked";
      return report;
    }
  }
  report.ok = true;
  return report;
}

VerifyReport VerifyBytes(std::string_view log_bytes, std::string_view anchors_text,
                         const PublicKey* public_key) {
  LogReader reader(log_bytes);
  WalkOptions options;
  options.public_key = public_key;
  auto report = VerifyLog(reader, anchors_text, options);
  if (!report.ok()) {
    VerifyReport failed;  // not reached: bytes in memory never fail to read
    failed.problem = report.status().message();
    return failed;
  }
  return std::move(report).value();
}

Result<VerifyReport> internal::VerifyFolderVisiting(const std::string& folder,
                                                    FileSystem& file_system,
                                                    const PublicKey* public_key,
                                                    const RecordVisitor& visit) {
  const std::string path = folder + "/log";
  if (!file_system.Exists(path)) {
    return Status::NotFound("no audit log in " + folder);
  }
  std::string anchors;
  if (file_system.Exists(folder + "/anchors")) {
    MP_ASSIGN_OR_RETURN(anchors, file_system.ReadFile(folder + "/anchors"));
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, file_system.OpenRandomAccess(path));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> tail, file_system.OpenRandomAccess(path));
  LogReader reader(std::move(file));
  WalkOptions options;
  options.public_key = public_key;
  MP_ASSIGN_OR_RETURN(VerifyReport report, VerifyLog(reader, anchors, options, visit));
  if (report.ok && reader.end() == LogReader::End::kClean && reader.log_start().has_value() &&
      reader.log_start()->written_ahead) {
    // Bytes past the zero tail's start: a batch a crash interrupted before
    // its first length was written (the next Open keeps them aside and cuts
    // them), reported as a torn tail is.
    MP_ASSIGN_OR_RETURN(report.torn_tail_bytes, NonZeroBytesFrom(*tail, report.end_offset));
    if (report.torn_tail_bytes > kTornTailBytesMax) {
      report.ok = false;
      report.problem = TornTailTooLong(report, report.torn_tail_bytes);
    }
  }
  return report;
}

Result<VerifyReport> VerifyFolder(const std::string& folder, FileSystem& file_system,
                                  const PublicKey* public_key) {
  return internal::VerifyFolderVisiting(folder, file_system, public_key, {});
}

Result<Shown> ShowLog(const std::string& path, FileSystem& file_system, const Filter& filter) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, file_system.OpenRandomAccess(path));
  LogReader reader(std::move(file), /*decode_payloads=*/false);
  const size_t limit = std::min(filter.limit, kShowRecordsMax);
  std::deque<AuditEntry> matching;
  bool undecodable = false;
  const auto walked = VerifyLog(reader, "", WalkOptions{}, [&](const LogRecord& record) -> Status {
    auto entry = DecodeEntry(record.payload);
    if (!entry.ok()) {
      undecodable = true;  // chained but not a record: shown as a break
      return entry.status();
    }
    if (limit > 0 && Matches(filter, *entry)) {
      if (matching.size() == limit) {
        matching.pop_front();
      }
      matching.push_back(std::move(entry).value());
    }
    return Status::Ok();
  });
  if (!walked.ok() && !undecodable) {
    return walked.status();
  }
  Shown shown;
  shown.entries.assign(std::make_move_iterator(matching.begin()),
                       std::make_move_iterator(matching.end()));
  shown.broken = undecodable || reader.end() == LogReader::End::kBroken;
  shown.last_seq = reader.seq() - (undecodable ? 1 : 0);
  return shown;
}

}  // namespace minpanel::audit
