// Starting point 1: the blast radius of a key from the audit log
// (docs/incident.md, docs/formats/audit.md). The key's records come through
// the audit module's key index, each checked where it lies; with
// --verify-chain, or when anything of the index does not check, the whole
// log is walked through the audit module's reader from its first record
// (every chain hash recomputed and compared, every sequence number checked,
// every anchor matched) and the index made anew on the way. "What a blast
// radius verifies" in docs/formats/audit.md says what each way proves.
// Only the records of the key asked about are decoded.
#include <algorithm>
#include <deque>
#include <functional>
#include <set>
#include <unordered_map>

#include "audit/audit.h"
#include "audit/subjects_rewrite.h"
#include "core/text.h"
#include "incident/incident.h"
#include "incident/report_text.h"
#include "privacy/policy_file.h"

namespace minpanel::incident {
namespace {

// How a `subjects.rewrite` record is found: its act in the payload (as
// record.cc writes it), and the key it is recorded under.
constexpr std::string_view kRewriteNeedle = "\"act\":\"subjects.rewrite\"";
constexpr std::string_view kRewriteKey = audit::kSubjectsRewriteKey;

// The dashboard's live view (`GET /api/events/live`): the newest stored
// events, subjects included, recorded in one record with a subject file as
// an export's end is. It counts as an export: the subjects it showed left.
constexpr std::string_view kLiveReadAct = "events.live";
constexpr std::string_view kLiveReadNeedle = "\"act\":\"events.live\"";

// A query's closing record (`query.start` is not it: the needle ends with
// the act's closing quote). One whose answer listed subjects names its
// subject file, as an export's end does.
constexpr std::string_view kQueryAct = "query";
constexpr std::string_view kQueryNeedle = "\"act\":\"query\"";

// Whether a property names a subject's identity (as service's access
// control tells them): the distinct id, or a key the policy pseudonymises as
// a person's id. A query naming one may return subjects.
bool NamesSubject(std::string_view name) {
  return name == "distinct_id" || name == "$distinct_id" ||
         privacy::ClassifyKey(name) == privacy::ReservedKey::kSubjectId;
}

using RecordVisitor = std::function<Status(std::string_view payload)>;

// The chain check a report states, from the audit reader's.
ChainCheck ChainOf(const audit::VerifyReport& report) {
  ChainCheck chain;
  chain.ok = report.ok;
  chain.base_seq = report.base_seq;
  chain.records = report.base_seq + report.records;
  chain.records_walked = report.records;
  chain.anchors_checked = report.anchors;
  chain.torn_tail_bytes = report.torn_tail_bytes;
  chain.problem = report.problem;
  return chain;
}

audit::WalkOptions WalkOptionsOf(const std::optional<audit::PublicKey>& public_key) {
  audit::WalkOptions walk;
  walk.public_key = public_key.has_value() ? &*public_key : nullptr;
  // Without the key, an anchor naming a pruned log's base with its hash
  // vouches for it (with the key, only a signed checkpoint does).
  walk.pruned_needs_key = false;
  return walk;
}

// Walks every record of <folder>/log in order through the audit module's
// reader, checking the chain, the sequence numbers and the anchors (and the
// checkpoints' signatures given the key), and calls `visit` for each valid
// one. Stops at the first broken record: chain.ok false and chain.problem
// naming it. A short last record is a torn tail (reported, not a problem).
Result<ChainCheck> WalkLog(const std::string& folder, FileSystem& file_system,
                           const std::optional<audit::PublicKey>& public_key,
                           const RecordVisitor& visit) {
  const std::string path = folder + "/log";
  if (!file_system.Exists(path)) {
    return Status::NotFound("no audit log in " + folder + " (is --data the data folder?)");
  }
  std::string anchors;
  if (file_system.Exists(folder + "/anchors")) {
    MP_ASSIGN_OR_RETURN(anchors, file_system.ReadFile(folder + "/anchors"));
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, file_system.OpenRandomAccess(path));
  audit::LogReader reader(std::move(file), /*decode_payloads=*/false);
  MP_ASSIGN_OR_RETURN(
      const audit::VerifyReport report,
      audit::VerifyLog(reader, anchors, WalkOptionsOf(public_key),
                       [&](const audit::LogRecord& record) { return visit(record.payload); }));
  ChainCheck chain = ChainOf(report);
  chain.full_walk = true;
  return chain;
}

BlastRecord RecordOf(const audit::AuditEntry& entry) {
  BlastRecord record;
  record.seq = entry.seq;
  record.time_ms = entry.time_ms;
  record.act = entry.act;
  record.route = entry.route;
  record.projects = entry.projects;
  record.params_sha256 = entry.params_sha256;
  record.events = entry.events;
  record.properties = entry.properties;
  record.rows = entry.rows;
  record.subjects = entry.subjects;
  record.bytes = entry.bytes;
  record.subjects_file = entry.subjects_file;
  record.outcome = entry.outcome;
  record.names_subjects =
      std::any_of(entry.properties.begin(), entry.properties.end(), NamesSubject);
  return record;
}

// An export's subject file, checked against the SHA-256 its record
// carries, and parsed (either version: docs/formats/audit.md, "Subject
// files"). The name must be a plain file under subjects/.
// An erasure's rewrites of subject files (docs/formats/audit.md, "Rewritten
// subject files"): per file, each `subjects.rewrite` record's seq and the
// new SHA-256 it states, in seq order.
using SubjectRewrites =
    std::unordered_map<std::string, std::vector<std::pair<uint64_t, std::string>>>;

// Notes a `subjects.rewrite` record (any other is ignored).
void NoteRewrite(const audit::AuditEntry& entry, SubjectRewrites* rewrites) {
  if (entry.act == audit::kSubjectsRewriteAct && !entry.subjects_file.empty()) {
    (*rewrites)[entry.subjects_file].emplace_back(entry.seq, entry.subjects_sha256);
  }
}

Result<audit::SubjectsFile> ReadSubjectsFile(const std::string& folder, const BlastRecord& record,
                                             const std::string& expected_sha256,
                                             const SubjectRewrites& rewrites,
                                             std::vector<Warning>* warnings,
                                             FileSystem& file_system) {
  const std::string& name = record.subjects_file;
  if (!name.starts_with("subjects/") || name.find("..") != std::string::npos ||
      name.find('/', 9) != std::string::npos) {
    return Status::Corruption("audit record " + std::to_string(record.seq) + ": subjects_file '" +
                              name + "' is not a file under subjects/");
  }
  const std::string path = folder + "/" + name;
  if (!file_system.Exists(path)) {
    return Status::Corruption("audit record " + std::to_string(record.seq) + ": " + path +
                              " is missing");
  }
  MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
  if (size > kSubjectsFileBytesMax) {
    return Status::ResourceExhausted(path + ": over kSubjectsFileBytesMax (" +
                                     std::to_string(kSubjectsFileBytesMax) + " bytes)");
  }
  MP_ASSIGN_OR_RETURN(const std::string text, file_system.ReadFile(path));
  // Accepted: the newest hash the chain states for the file (its record's
  // own, or the last rewrite's); an earlier one of them with a warning (a
  // rewrite recorded, as intent, and not applied: a crash in between).
  const std::string sha256 = audit::Sha256Hex(text);
  const auto rewritten = rewrites.find(name);
  if (rewritten != rewrites.end() && !rewritten->second.empty()) {
    const auto& [newest_seq, newest_sha256] = rewritten->second.back();
    if (sha256 != newest_sha256) {
      const bool earlier =
          sha256 == expected_sha256 ||
          std::any_of(rewritten->second.begin(), rewritten->second.end(),
                      [&](const auto& rewrite) { return rewrite.second == sha256; });
      if (!earlier) {
        return Status::Corruption(
            "audit record " + std::to_string(record.seq) + ": " + path +
            " has neither the SHA-256 its record names nor one its rewrites (newest: record " +
            std::to_string(newest_seq) + ") state (edited or replaced)");
      }
      warnings->push_back(
          {"audit", 0,
           "audit record " + std::to_string(record.seq) + ": " + path +
               " is not yet rewritten as record " + std::to_string(newest_seq) +
               " states (an erasure interrupted before it replaced the file): it still lists "
               "subjects erased since; erase the same ids again to finish"});
    }
  } else if (sha256 != expected_sha256) {
    return Status::Corruption("audit record " + std::to_string(record.seq) + ": " + path +
                              " does not have the SHA-256 its record names (edited or replaced)");
  }
  auto parsed = audit::ParseSubjectsFile(text);
  if (!parsed.ok()) {
    return Status::Corruption("audit record " + std::to_string(record.seq) + ": " + path + ": " +
                              parsed.status().message());
  }
  // The file's keys are the record's (both come from one collector); one
  // the record does not list would be a file that is not this export's.
  for (const std::string& key : parsed->keys) {
    if (std::find(record.properties.begin(), record.properties.end(), key) ==
        record.properties.end()) {
      return Status::Corruption("audit record " + std::to_string(record.seq) + ": " + path +
                                " names the key '" + key + "', which its record does not");
    }
  }
  return parsed;
}

// A check that failed: Corruption, or with allow_broken a warning.
Status BrokenOrWarn(Status status, bool allow_broken, std::vector<Warning>* warnings) {
  if (status.ok() || !allow_broken || status.code() != StatusCode::kCorruption) {
    return status;
  }
  warnings->push_back({"audit", 0,
                       status.message() + " (--allow-broken: its subjects are not "
                                          "counted)"});
  return Status::Ok();
}

Status ChainStatus(const ChainCheck& chain, bool allow_broken, std::vector<Warning>* warnings) {
  if (chain.torn_tail_bytes > 0) {
    warnings->push_back({"audit", 0,
                         "the log ends in " + std::to_string(chain.torn_tail_bytes) +
                             " bytes of an interrupted append (never acknowledged)"});
  }
  if (chain.ok) {
    return Status::Ok();
  }
  const std::string message = "the audit log's chain is broken: " + chain.problem;
  if (!allow_broken) {
    return Status::Corruption(message +
                              "; run `minpanel audit verify`, or give --allow-broken to report "
                              "on the " +
                              std::to_string(chain.records) + " records before the break only");
  }
  warnings->push_back({"audit", 0,
                       message + ". THIS REPORT COVERS ONLY THE " + std::to_string(chain.records) +
                           " RECORDS BEFORE THE BREAK; what the key did after it is unknown"});
  return Status::Ok();
}

// The key's records, as the walk decodes them: exports are paired with
// their `export.start` (same key and parameters, first in first out).
class KeyCollector {
 public:
  KeyCollector(const BlastOptions& options, BlastRadius* blast) : options_(options), blast_(blast) {
    needle_ = "\"key\":\"" + options.key + "\"";
    escape_free_ = options.key.find_first_of("\"\\") == std::string::npos;
  }

  // A record from the whole log's walk: only the key's are decoded.
  Status Visit(std::string_view payload) {
    if (payload.find(kRewriteNeedle) != std::string_view::npos) {
      auto entry = audit::DecodeEntry(payload);
      if (!entry.ok()) {
        return Status::Corruption("audit record: " + entry.status().message());
      }
      NoteRewrite(*entry, &rewrites_);
    }
    if (escape_free_ && payload.find(needle_) == std::string_view::npos) {
      return Status::Ok();
    }
    auto entry = audit::DecodeEntry(payload);
    if (!entry.ok()) {
      return Status::Corruption("audit record: " + entry.status().message());
    }
    if (entry->key != options_.key) {
      return Status::Ok();
    }
    return VisitEntry(*entry);
  }

  // One of the key's records, in seq order.
  Status VisitEntry(const audit::AuditEntry& entry) {
    const bool in_window = entry.time_ms >= options_.from_ms && entry.time_ms < options_.to_ms;
    // Reads are recorded twice: `query.start` / `export.start` before the
    // answer leaves, then `query` / `export` with what left; a read counts
    // by its start, and a start with no end is listed as open. A query
    // answered within the log's deferred_start_ms is recorded once: its
    // `query` record carries the parameters (`params`, which a closing
    // record never has) and pairs with no start.
    if (entry.act == "export.start" || entry.act == "query.start") {
      const std::string act = entry.act.substr(0, entry.act.size() - 6);
      starts_[act + "\n" + entry.params_sha256].push_back({RecordOf(entry), in_window});
      blast_->records_of_key += in_window ? 1 : 0;
      return Status::Ok();
    }
    if (entry.act == "export" || entry.act == "query") {
      bool counted = in_window;
      int64_t started_ms = 0;
      const bool whole = entry.act == "query" && !entry.params.empty();
      auto pending = whole ? starts_.end() : starts_.find(entry.act + "\n" + entry.params_sha256);
      if (pending != starts_.end() && !pending->second.empty()) {
        counted = pending->second.front().in_window;
        started_ms = pending->second.front().record.time_ms;
        pending->second.pop_front();
      }
      if (!counted) {
        return Status::Ok();
      }
      ++blast_->records_of_key;
      if (entry.act == "query") {
        List(blast_->queries, entry).started_ms = started_ms;
        // An answer that listed subjects: its subject file is read as an
        // export's (every one, however many queries the list above shows).
        if (!entry.subjects_file.empty()) {
          subject_queries_.push_back(RecordOf(entry));
          subject_queries_.back().started_ms = started_ms;
          query_sha256_.push_back(entry.subjects_sha256);
        }
        return Status::Ok();
      }
      exports_.push_back(RecordOf(entry));
      exports_.back().started_ms = started_ms;
      sha256_.push_back(entry.subjects_sha256);
      return Status::Ok();
    }
    if (!in_window) {
      return Status::Ok();
    }
    ++blast_->records_of_key;
    if (entry.act == kLiveReadAct) {
      exports_.push_back(RecordOf(entry));
      sha256_.push_back(entry.subjects_sha256);
      return Status::Ok();
    }
    List(blast_->other_acts, entry);
    return Status::Ok();
  }

  // Starts with no end, of exports (`act` "export") or queries ("query"):
  // cut off by a crash, or still running.
  std::vector<BlastRecord> OpenReads(std::string_view act) const {
    std::vector<BlastRecord> open;
    for (const auto& [act_and_params, starts] : starts_) {
      if (!act_and_params.starts_with(std::string(act) + "\n")) {
        continue;
      }
      for (const Start& start : starts) {
        if (start.in_window) {
          open.push_back(start.record);
        }
      }
    }
    std::sort(open.begin(), open.end(), [](const BlastRecord& left, const BlastRecord& right) {
      return left.seq < right.seq;
    });
    return open;
  }

  std::vector<BlastRecord>& exports() { return exports_; }
  const std::vector<std::string>& sha256() const { return sha256_; }
  const std::vector<BlastRecord>& subject_queries() const { return subject_queries_; }
  const std::vector<std::string>& query_sha256() const { return query_sha256_; }
  SubjectRewrites& rewrites() { return rewrites_; }

 private:
  struct Start {
    BlastRecord record;
    bool in_window = false;
  };
  // Appends the record to `list`, or counts it past kBlastRecordsListedMax
  // (then the returned record is a scratch one).
  BlastRecord& List(std::vector<BlastRecord>& list, const audit::AuditEntry& entry) {
    if (list.size() >= kBlastRecordsListedMax) {
      ++blast_->records_not_listed;
      scratch_ = RecordOf(entry);
      return scratch_;
    }
    list.push_back(RecordOf(entry));
    return list.back();
  }
  const BlastOptions& options_;
  BlastRadius* blast_;
  std::string needle_;
  bool escape_free_ = true;
  std::unordered_map<std::string, std::deque<Start>> starts_;
  std::vector<BlastRecord> exports_;
  std::vector<std::string> sha256_;  // per export, its subject file's
  std::vector<BlastRecord> subject_queries_;  // `query` records with a subject file
  std::vector<std::string> query_sha256_;     // per such query, its subject file's
  SubjectRewrites rewrites_;
  BlastRecord scratch_;
};

uint32_t CategoriesOfProperties(const std::vector<std::string>& properties) {
  uint32_t bits = 1u << static_cast<uint32_t>(Category::kInternalIds);  // the pseudonym itself
  for (const std::string& property : properties) {
    const Category category = CategoryOf(KindOfName(property));
    if (category != Category::kNone) {
      bits |= 1u << static_cast<uint32_t>(category);
    }
  }
  return bits;
}

// Per subject, the exports that carried it (and the queries whose answers
// listed it) and the keys that left with its rows: from a version-2 subject
// file exactly, from a version-1 one every key of the export (an
// over-statement, said in a warning and per subject).
Status CollectSubjects(const BlastOptions& options, FileSystem& file_system,
                       const std::vector<std::string>& sha256,
                       const std::vector<BlastRecord>& queries,
                       const std::vector<std::string>& query_sha256,
                       const SubjectRewrites& rewrites, BlastRadius* blast) {
  // The reads with subject files: the exports, then the queries that listed
  // subjects, each with the SHA-256 its record states.
  std::vector<std::pair<const BlastRecord*, const std::string*>> reads;
  for (size_t export_idx = 0; export_idx < blast->exports.size(); ++export_idx) {
    reads.emplace_back(&blast->exports[export_idx], &sha256[export_idx]);
  }
  for (size_t query_idx = 0; query_idx < queries.size(); ++query_idx) {
    reads.emplace_back(&queries[query_idx], &query_sha256[query_idx]);
  }
  struct Carried {
    uint32_t read_idx = 0;
    const std::vector<uint32_t>* key_set = nullptr;  // nullptr: version 1, every key
  };
  std::vector<audit::SubjectsFile> files(reads.size());
  std::unordered_map<std::string, std::vector<Carried>> reads_of;
  for (size_t read_idx = 0; read_idx < reads.size(); ++read_idx) {
    const BlastRecord& record = *reads[read_idx].first;
    const std::string record_name = record.act + " record " + std::to_string(record.seq);
    if (record.subjects_file.empty()) {
      if (record.rows > 0) {
        blast->warnings.push_back(
            {"audit", 0, record_name + " returned rows but names no subject file"});
      }
      continue;
    }
    auto file = ReadSubjectsFile(options.audit_folder, record, *reads[read_idx].second, rewrites,
                                 &blast->warnings, file_system);
    if (!file.ok()) {
      MP_RETURN_IF_ERROR(BrokenOrWarn(file.status(), options.allow_broken, &blast->warnings));
      continue;
    }
    files[read_idx] = std::move(file).value();
    const audit::SubjectsFile& subjects = files[read_idx];
    if (subjects.version == 1) {
      blast->warnings.push_back(
          {"audit", 0,
           record_name +
               ": its subject file predates per-subject fields (version 1), so each of its " +
               std::to_string(subjects.subjects.size()) +
               " subjects is listed with every property key of the export: this can over-state "
               "a subject's fields, never under-state them"});
    }
    uint64_t erased = 0;
    for (const audit::SubjectsFile::Subject& subject : subjects.subjects) {
      if (subject.pseudonym == audit::kErasedSubject) {
        ++erased;
        continue;
      }
      const std::vector<uint32_t>* key_set =
          subjects.version == 1 ? nullptr : &subjects.key_sets[subject.key_set];
      reads_of[subject.pseudonym].push_back({static_cast<uint32_t>(read_idx), key_set});
      if (reads_of.size() > kBlastSubjectsMax) {
        return Status::ResourceExhausted("more subjects than kBlastSubjectsMax (" +
                                         std::to_string(kBlastSubjectsMax) + ")");
      }
    }
    if (erased > 0) {
      blast->warnings.push_back({"audit", 0,
                                 record_name + ": " + std::to_string(erased) +
                                     " of its subjects were erased since: they are not listed"});
    }
  }
  std::set<std::string> every_property;
  blast->subjects.reserve(reads_of.size());
  for (auto& [subject, carried] : reads_of) {
    SubjectExposure exposure;
    exposure.subject = subject;
    std::set<std::string> properties = {"distinct_id"};
    for (const Carried& by : carried) {
      const BlastRecord& record = *reads[by.read_idx].first;
      if (by.key_set == nullptr) {
        properties.insert(record.properties.begin(), record.properties.end());
        exposure.fields_exact = false;
      } else {
        for (const uint32_t key : *by.key_set) {
          properties.insert(files[by.read_idx].keys[key]);
        }
      }
      (record.act == "query" ? exposure.queries : exposure.exports).push_back(record.seq);
    }
    exposure.properties.assign(properties.begin(), properties.end());
    exposure.categories = CategoriesOfProperties(exposure.properties);
    blast->categories |= exposure.categories;
    every_property.insert(properties.begin(), properties.end());
    blast->subjects.push_back(std::move(exposure));
  }
  std::sort(blast->subjects.begin(), blast->subjects.end(),
            [](const SubjectExposure& left, const SubjectExposure& right) {
              return left.subject < right.subject;
            });
  blast->properties.assign(every_property.begin(), every_property.end());
  return Status::Ok();
}

// Feeds the key's records to `collector` through the audit log's key index
// (docs/formats/audit.md, "Key index"): the index is brought up to date by
// a verified walk of the records it does not cover, and each of the key's
// records is read at its offset and checked (its own hash link and its
// successor's, its seq, its key). False, with `*fallback` saying why, when
// the index cannot be used or a record does not check: the caller then
// walks the whole log, which names any break.
Result<bool> VisitIndexed(const BlastOptions& options, FileSystem& file_system,
                          KeyCollector& collector, ChainCheck* chain, std::string* fallback) {
  auto lookup = audit::LookupKey(options.audit_folder, options.key, file_system,
                                 WalkOptionsOf(options.audit_public_key));
  if (!lookup.ok()) {
    if (lookup.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("no audit log in " + options.audit_folder +
                              " (is --data the data folder?)");
    }
    *fallback = lookup.status().message();
    return false;
  }
  if (!lookup->walk.ok) {
    *fallback = "the records after the indexed ones do not verify: " + lookup->walk.problem;
    return false;
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> log,
                      file_system.OpenRandomAccess(options.audit_folder + "/log"));
  std::string header;
  MP_RETURN_IF_ERROR(log->ReadAt(0, audit::kFileHeaderBytesPruned, &header));
  const Result<audit::LogStart> start = audit::ReadLogStart(header);
  const audit::LogStart log_start = start.ok() ? *start : audit::LogStart{};
  for (const audit::KeyRecordRef& ref : lookup->records) {
    auto payload = audit::ReadIndexedRecord(*log, log_start, ref);
    if (!payload.ok()) {
      if (payload.status().code() != StatusCode::kCorruption) {
        return payload.status();
      }
      *fallback = payload.status().message();
      return false;
    }
    auto entry = audit::DecodeEntry(*payload);
    if (!entry.ok() || entry->key != options.key) {
      *fallback = "the index names record " + std::to_string(ref.seq) +
                  " as the key's, and the record does not say so";
      return false;
    }
    MP_RETURN_IF_ERROR(collector.VisitEntry(*entry));
  }
  // The erasures' rewrites of subject files: `local` records (the server's
  // own acts), found through the same index. One that does not check is
  // passed over, not a reason to walk the whole log (an indexed run checks
  // the key's records only): without it a rewritten file is refused, so a
  // damaged rewrite record can only make this run stricter.
  MP_ASSIGN_OR_RETURN(const audit::KeyLookup local,
                      audit::LookupKey(options.audit_folder, kRewriteKey, file_system,
                                       WalkOptionsOf(options.audit_public_key)));
  if (!local.walk.ok) {
    *fallback = "the records after the indexed ones do not verify: " + local.walk.problem;
    return false;
  }
  for (const audit::KeyRecordRef& ref : local.records) {
    auto payload = audit::ReadIndexedRecord(*log, log_start, ref);
    if (!payload.ok()) {
      if (payload.status().code() != StatusCode::kCorruption) {
        return payload.status();
      }
      continue;
    }
    if (payload->find(kRewriteNeedle) == std::string::npos) {
      continue;
    }
    auto entry = audit::DecodeEntry(*payload);
    if (entry.ok() && entry->key == kRewriteKey) {
      NoteRewrite(*entry, &collector.rewrites());
    }
  }
  *chain = ChainOf(lookup->walk);
  chain->base_seq = log_start.base_seq;
  chain->records = lookup->indexed_seq;
  chain->records_walked = lookup->records_walked;
  chain->full_walk = false;
  chain->index_rebuilt = lookup->rebuilt;
  chain->indexed_records_checked = lookup->records.size();
  chain->index_note = lookup->note;
  return true;
}

}  // namespace

Result<BlastRadius> ComputeBlastRadius(const BlastOptions& options, FileSystem& file_system) {
  if (options.key.empty()) {
    return Status::InvalidArgument("--key: name the key (mpk_…, secret:<project id> or local)");
  }
  if (options.from_ms >= options.to_ms) {
    return Status::InvalidArgument("--from must be before --to");
  }
  BlastRadius blast;
  blast.key = options.key;
  blast.from_ms = options.from_ms;
  blast.to_ms = options.to_ms;
  auto collector = std::make_unique<KeyCollector>(options, &blast);
  std::string fallback;
  bool walk_whole_log = options.verify_chain;
  if (!options.verify_chain) {
    MP_ASSIGN_OR_RETURN(const bool indexed,
                        VisitIndexed(options, file_system, *collector, &blast.chain, &fallback));
    if (!indexed) {
      // Whatever the index fed in is dropped: the whole log decides.
      walk_whole_log = true;
      blast = BlastRadius{};
      blast.key = options.key;
      blast.from_ms = options.from_ms;
      blast.to_ms = options.to_ms;
      collector = std::make_unique<KeyCollector>(options, &blast);
      blast.warnings.push_back(
          {"audit", 0, "the key index was not used (" + fallback + "): the whole log was read"});
    }
  }
  if (walk_whole_log) {
    // The whole chain, walked once: the key index is made anew on the way
    // (so that the next indexed run, and recording this one, need no walk).
    auto walked = audit::LookupKey(
        options.audit_folder, options.key, file_system, WalkOptionsOf(options.audit_public_key),
        [&](const audit::LogRecord& record) { return collector->Visit(record.payload); },
        /*rebuild=*/true);
    if (!walked.ok()) {
      return walked.status().code() == StatusCode::kNotFound
                 ? Status::NotFound("no audit log in " + options.audit_folder +
                                    " (is --data the data folder?)")
                 : walked.status();
    }
    blast.chain = ChainOf(walked->walk);
    blast.chain.full_walk = true;
    blast.chain.index_rebuilt = true;
    blast.chain.index_note = walked->note;
  }
  MP_RETURN_IF_ERROR(ChainStatus(blast.chain, options.allow_broken, &blast.warnings));
  blast.exports = std::move(collector->exports());
  blast.open_exports = collector->OpenReads("export");
  for (const BlastRecord& open : blast.open_exports) {
    blast.warnings.push_back(
        {"audit", 0,
         "export started at record " + std::to_string(open.seq) +
             " has no end record (the server stopped mid-export?): what it sent is unknown; "
             "treat every subject its parameters could reach as exposed"});
  }
  for (BlastRecord& open : collector->OpenReads("query")) {
    blast.warnings.push_back({"audit", 0,
                              "query started at record " + std::to_string(open.seq) +
                                  " has no closing record: it may have been answered"});
    open.outcome = "no closing record: the answer may have left";
    blast.queries.push_back(std::move(open));
  }
  for (const BlastRecord& query : blast.queries) {
    // One that listed subjects names them in its subject file (below); one
    // that only filtered by a subject, or was recorded before answers'
    // subjects were kept, does not say whom its answer was about.
    if (query.names_subjects && query.subjects_file.empty()) {
      blast.warnings.push_back(
          {"audit", 0,
           "query record " + std::to_string(query.seq) +
               " selected or broke down by a subject's identity: its answer may name subjects, "
               "which the log does not list"});
    }
  }
  MP_RETURN_IF_ERROR(CollectSubjects(options, file_system, collector->sha256(),
                                     collector->subject_queries(), collector->query_sha256(),
                                     collector->rewrites(), &blast));
  return blast;
}

// ---------------------------------------------------------------------------
// Tables for WriteOutputs

namespace {

// Kinds the cross-reference matches or groups by: a property of one of them
// is recognised as a kind of the same category and phrase that it does not
// use, since the cell holds a marker, not the value.
ColumnKind UnmatchedKind(ColumnKind kind) {
  switch (kind) {
    case ColumnKind::kUserId:
    case ColumnKind::kOrgId:
    case ColumnKind::kAdminUserId:
      return ColumnKind::kAnonymousId;
    case ColumnKind::kAdminEmail:
      return ColumnKind::kEmail;
    case ColumnKind::kCountry:
      return ColumnKind::kRegion;
    default:
      return kind;
  }
}

constexpr std::string_view kExportedMarker = "exported";

}  // namespace

Result<BlastTables> MakeBlastTables(const BlastRadius& blast,
                                    const std::map<std::string, std::string>& account_of_subject) {
  BlastTables tables;
  Table& table = tables.leaked;
  MP_ASSIGN_OR_RETURN(const size_t id_column, table.ColumnIndex("distinct_id"));
  ColumnRecognition id_recognition;
  id_recognition.name = "distinct_id";
  id_recognition.kind = ColumnKind::kUserId;
  id_recognition.source = RecognitionSource::kName;
  id_recognition.confidence = 1.0;
  id_recognition.name_kind = ColumnKind::kUserId;
  id_recognition.note = "the subject's pseudonym, or the accounts file's user id it maps to";
  tables.leaked_columns.columns.push_back(id_recognition);
  std::map<std::string, size_t, std::less<>> column_of;
  for (const std::string& property : blast.properties) {
    if (property == "distinct_id") {
      continue;
    }
    MP_ASSIGN_OR_RETURN(const size_t column, table.ColumnIndex(property));
    column_of.emplace(property, column);
    ColumnRecognition recognition;
    recognition.name = property;
    recognition.name_kind = KindOfName(property);
    recognition.kind = UnmatchedKind(recognition.name_kind);
    recognition.source = RecognitionSource::kName;
    recognition.confidence = recognition.kind == ColumnKind::kUnknown ? 0 : 0.7;
    recognition.note = "a property key the audit log says left; its values are not in the log";
    tables.leaked_columns.columns.push_back(recognition);
  }
  uint64_t line = 0;
  for (const SubjectExposure& subject : blast.subjects) {
    table.BeginRow(++line);
    const auto account = account_of_subject.find(subject.subject);
    table.AddCell(id_column,
                  account == account_of_subject.end() ? subject.subject : account->second);
    for (const std::string& property : subject.properties) {
      const auto column = column_of.find(property);
      if (column != column_of.end()) {
        table.AddCell(column->second, kExportedMarker);
        ++tables.leaked_columns.columns[column->second].values_non_empty;
      }
    }
    table.EndRow();
  }
  tables.leaked_columns.columns[id_column].values_non_empty = blast.subjects.size();
  return tables;
}

// ---------------------------------------------------------------------------
// Which keys could have read a subject

Result<WhoCouldRead> ComputeWhoCouldRead(const std::string& audit_folder, uint32_t project_id,
                                         const std::vector<std::string>& subjects,
                                         const std::vector<KeyReach>& keys, int64_t from_ms,
                                         int64_t to_ms, bool allow_broken,
                                         FileSystem& file_system) {
  WhoCouldRead who;
  who.subjects = subjects;
  who.project_id = project_id;
  for (const KeyReach& key : keys) {
    if (key.project_id != 0 && key.project_id != project_id) {
      continue;
    }
    const int64_t valid_to = key.valid_to_ms == 0 ? INT64_MAX : key.valid_to_ms;
    if (key.valid_from_ms >= to_ms || valid_to <= from_ms) {
      continue;
    }
    std::string reach;
    if (key.can_export && key.properties.empty()) {
      reach = "raw events";
    } else if (key.can_query_subjects) {
      reach = "rows by distinct id";
    } else if (key.can_query_aggregate || key.can_export) {
      reach = "aggregates only";
    } else {
      continue;  // ingest, admin, audit or metrics only: no event data
    }
    who.candidates.push_back({key, reach, {}, {}});
  }
  // Exports (and live-view reads) and query answers whose subject files
  // list one of the subject's pseudonyms.
  std::vector<audit::AuditEntry> exports;
  SubjectRewrites rewrites;
  MP_ASSIGN_OR_RETURN(
      who.chain,
      WalkLog(audit_folder, file_system, std::nullopt, [&](std::string_view payload) -> Status {
        if (payload.find("\"act\":\"export\"") == std::string_view::npos &&
            payload.find(kQueryNeedle) == std::string_view::npos &&
            payload.find(kLiveReadNeedle) == std::string_view::npos &&
            payload.find(kRewriteNeedle) == std::string_view::npos) {
          return Status::Ok();
        }
        auto entry = audit::DecodeEntry(payload);
        if (!entry.ok()) {
          return Status::Corruption("audit record: " + entry.status().message());
        }
        NoteRewrite(*entry, &rewrites);
        if ((entry->act == "export" || entry->act == kLiveReadAct || entry->act == kQueryAct) &&
            !entry->subjects_file.empty() && entry->time_ms >= from_ms && entry->time_ms < to_ms) {
          exports.push_back(std::move(*entry));
        }
        return Status::Ok();
      }));
  MP_RETURN_IF_ERROR(ChainStatus(who.chain, allow_broken, &who.warnings));
  const std::set<std::string> wanted(subjects.begin(), subjects.end());
  for (const audit::AuditEntry& entry : exports) {
    if (project_id != 0 && std::find(entry.projects.begin(), entry.projects.end(), project_id) ==
                               entry.projects.end()) {
      continue;
    }
    const BlastRecord record = RecordOf(entry);
    auto listed = ReadSubjectsFile(audit_folder, record, entry.subjects_sha256, rewrites,
                                   &who.warnings, file_system);
    if (!listed.ok()) {
      MP_RETURN_IF_ERROR(BrokenOrWarn(listed.status(), allow_broken, &who.warnings));
      continue;
    }
    const bool carried =
        std::any_of(listed->subjects.begin(), listed->subjects.end(),
                    [&](const audit::SubjectsFile::Subject& id) { return wanted.contains(id.pseudonym); });
    if (!carried) {
      continue;
    }
    auto candidate = std::find_if(
        who.candidates.begin(), who.candidates.end(),
        [&](const WhoCouldRead::Candidate& known) { return known.key.key == entry.key; });
    const bool query = entry.act == kQueryAct;
    if (candidate != who.candidates.end()) {
      (query ? candidate->queried_in : candidate->exported_in).push_back(entry.seq);
    } else {
      (query ? who.other_queries : who.other_exports).emplace_back(entry.key, entry.seq);
    }
  }
  return who;
}

// ---------------------------------------------------------------------------
// JSON

namespace {

void AppendStrings(const std::vector<std::string>& items, std::string* out) {
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    out->append(item_idx == 0 ? "" : ",");
    AppendJsonString(items[item_idx], out);
  }
  out->push_back(']');
}

template <typename Number>
void AppendNumbers(const std::vector<Number>& items, std::string* out) {
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    out->append(item_idx == 0 ? "" : ",");
    out->append(std::to_string(items[item_idx]));
  }
  out->push_back(']');
}

void AppendCategories(uint32_t bits, std::string* out) {
  out->push_back('[');
  bool first = true;
  for (const Category category : CategoriesOf(bits)) {
    out->append(first ? "" : ",");
    first = false;
    AppendJsonString(CategoryName(category), out);
  }
  out->push_back(']');
}

std::string IsoMs(int64_t ms) { return FormatIsoTime(ms / 1000); }

void AppendRecord(const BlastRecord& record, std::string* out) {
  out->append("{\"seq\":" + std::to_string(record.seq) +
              ",\"time_ms\":" + std::to_string(record.time_ms) + ",\"time\":");
  AppendJsonString(IsoMs(record.time_ms), out);
  if (record.started_ms != 0) {
    out->append(",\"started_ms\":" + std::to_string(record.started_ms));
  }
  out->append(",\"act\":");
  AppendJsonString(record.act, out);
  out->append(",\"route\":");
  AppendJsonString(record.route, out);
  out->append(",\"projects\":");
  AppendNumbers(record.projects, out);
  out->append(",\"params_sha256\":");
  AppendJsonString(record.params_sha256, out);
  out->append(",\"events\":");
  AppendStrings(record.events, out);
  out->append(",\"properties\":");
  AppendStrings(record.properties, out);
  out->append(",\"rows\":" + std::to_string(record.rows) +
              ",\"subjects\":" + std::to_string(record.subjects) +
              ",\"bytes\":" + std::to_string(record.bytes) + ",\"subjects_file\":");
  AppendJsonString(record.subjects_file, out);
  out->append(",\"names_subjects\":");
  out->append(record.names_subjects ? "true" : "false");
  out->append(",\"outcome\":");
  AppendJsonString(record.outcome, out);
  out->push_back('}');
}

void AppendRecords(std::string_view name, const std::vector<BlastRecord>& records,
                   std::string* out) {
  out->append(",\"");
  out->append(name);
  out->append("\":[");
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    out->append(record_idx == 0 ? "" : ",");
    AppendRecord(records[record_idx], out);
  }
  out->push_back(']');
}

void AppendChain(const ChainCheck& chain, std::string* out) {
  out->append(",\"chain\":{\"ok\":");
  out->append(chain.ok ? "true" : "false");
  out->append(chain.full_walk ? ",\"mode\":\"full\"" : ",\"mode\":\"index\"");
  out->append(",\"records_walked\":" + std::to_string(chain.records_walked) +
              ",\"index_rebuilt\":" + (chain.index_rebuilt ? "true" : "false") +
              ",\"indexed_records_checked\":" + std::to_string(chain.indexed_records_checked));
  out->append(",\"records\":" + std::to_string(chain.records) +
              ",\"anchors_checked\":" + std::to_string(chain.anchors_checked) +
              ",\"torn_tail_bytes\":" + std::to_string(chain.torn_tail_bytes) + ",\"problem\":");
  AppendJsonString(chain.problem, out);
  out->push_back('}');
}

void AppendStore(const SubjectInStore& store, std::string* out) {
  out->append(",\"store\":{\"consulted\":");
  out->append(store.consulted ? "true" : "false");
  if (!store.consulted) {
    out->append(",\"not_consulted\":");
    AppendJsonString(store.not_consulted, out);
    out->push_back('}');
    return;
  }
  out->append(",\"events\":" + std::to_string(store.events) + ",\"first_event\":");
  AppendJsonString(store.events == 0 ? "" : FormatIsoTime(store.first_event_ms / 1000), out);
  out->append(",\"last_event\":");
  AppendJsonString(store.events == 0 ? "" : FormatIsoTime(store.last_event_ms / 1000), out);
  out->append(",\"first_event_ms\":" + std::to_string(store.first_event_ms) +
              ",\"last_event_ms\":" + std::to_string(store.last_event_ms) +
              ",\"events_by_name\":{");
  bool first = true;
  for (const auto& [name, count] : store.events_by_name) {
    out->append(first ? "" : ",");
    first = false;
    AppendJsonString(name, out);
    out->append(":" + std::to_string(count));
  }
  out->append("},\"profile_updates\":" + std::to_string(store.profile_updates) + "}");
}

void AppendWarnings(const std::vector<Warning>& warnings, std::string* out) {
  out->append(",\"warnings\":[");
  for (size_t warning_idx = 0; warning_idx < warnings.size(); ++warning_idx) {
    out->append(warning_idx == 0 ? "" : ",");
    out->append("{\"file\":");
    AppendJsonString(warnings[warning_idx].file, out);
    out->append(",\"message\":");
    AppendJsonString(warnings[warning_idx].message, out);
    out->push_back('}');
  }
  out->push_back(']');
}

}  // namespace

std::string BlastRadiusJson(const BlastRadius& blast, int64_t now_s) {
  std::string out = "{\"format\":\"minpanel-incident-blast-radius\",\"version\":1,";
  out.append("\"generated_at\":");
  AppendJsonString(FormatIsoTime(now_s), &out);
  out.append(",\"key\":");
  AppendJsonString(blast.key, &out);
  out.append(",\"from_ms\":" + std::to_string(blast.from_ms) +
             ",\"to_ms\":" + std::to_string(blast.to_ms));
  AppendChain(blast.chain, &out);
  out.append(",\"counts\":{\"records_of_key\":" + std::to_string(blast.records_of_key) +
             ",\"exports\":" + std::to_string(blast.exports.size()) +
             ",\"open_exports\":" + std::to_string(blast.open_exports.size()) +
             ",\"queries\":" + std::to_string(blast.queries.size()) +
             ",\"other_acts\":" + std::to_string(blast.other_acts.size()) +
             ",\"records_not_listed\":" + std::to_string(blast.records_not_listed) +
             ",\"subjects\":" + std::to_string(blast.subjects.size()) + "}");
  out.append(",\"properties\":");
  AppendStrings(blast.properties, &out);
  out.append(",\"categories\":");
  AppendCategories(blast.categories, &out);
  out.append(",\"subjects\":[");
  for (size_t subject_idx = 0; subject_idx < blast.subjects.size(); ++subject_idx) {
    const SubjectExposure& subject = blast.subjects[subject_idx];
    out.append(subject_idx == 0 ? "{\"subject\":" : ",{\"subject\":");
    AppendJsonString(subject.subject, &out);
    out.append(",\"properties\":");
    AppendStrings(subject.properties, &out);
    out.append(subject.fields_exact ? ",\"fields_exact\":true" : ",\"fields_exact\":false");
    out.append(",\"categories\":");
    AppendCategories(subject.categories, &out);
    out.append(",\"exports\":");
    AppendNumbers(subject.exports, &out);
    out.append(",\"queries\":");
    AppendNumbers(subject.queries, &out);
    out.push_back('}');
  }
  out.push_back(']');
  AppendRecords("exports", blast.exports, &out);
  AppendRecords("open_exports", blast.open_exports, &out);
  AppendRecords("queries", blast.queries, &out);
  AppendRecords("other_acts", blast.other_acts, &out);
  AppendWarnings(blast.warnings, &out);
  out.append("}\n");
  return out;
}

void AddStoreToWhoCouldRead(SubjectInStore store, WhoCouldRead* who) {
  if (store.consulted) {
    for (WhoCouldRead::Candidate& candidate : who->candidates) {
      candidate.events_in_reach = 0;
      for (const auto& [name, count] : store.events_by_name) {
        const std::vector<std::string>& allowed = candidate.key.events;
        if (allowed.empty() || std::find(allowed.begin(), allowed.end(), name) != allowed.end()) {
          candidate.events_in_reach += count;
        }
      }
    }
    if (store.events == 0 && store.profile_updates == 0) {
      who->warnings.push_back(
          {"store", 0, "the store holds no event or profile update of this subject (never stored under "
              "these pseudonyms, erased, or past retention): the keys could reach it only while "
              "it was held, which the exports listed show"});
    }
  } else {
    who->warnings.push_back(
        {"store", 0, "the store was not consulted (" + store.not_consulted +
                "): whether it holds the subject, and which of its events each key's event "
                "limits reach, is not said"});
  }
  who->store = std::move(store);
}

namespace {

// ,"name":[{"key":…,"seq":…},…]
void AppendKeySeqs(std::string_view name,
                   const std::vector<std::pair<std::string, uint64_t>>& records,
                   std::string* out) {
  out->append(",\"");
  out->append(name);
  out->append("\":[");
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    out->append(record_idx == 0 ? "{\"key\":" : ",{\"key\":");
    AppendJsonString(records[record_idx].first, out);
    out->append(",\"seq\":" + std::to_string(records[record_idx].second) + "}");
  }
  out->push_back(']');
}

}  // namespace

std::string WhoCouldReadJson(const WhoCouldRead& who, int64_t now_s) {
  std::string out = "{\"format\":\"minpanel-incident-who-could-read\",\"version\":1,";
  out.append("\"generated_at\":");
  AppendJsonString(FormatIsoTime(now_s), &out);
  out.append(",\"project_id\":" + std::to_string(who.project_id) + ",\"subjects\":");
  AppendStrings(who.subjects, &out);
  AppendChain(who.chain, &out);
  AppendStore(who.store, &out);
  out.append(",\"keys\":[");
  for (size_t candidate_idx = 0; candidate_idx < who.candidates.size(); ++candidate_idx) {
    const WhoCouldRead::Candidate& candidate = who.candidates[candidate_idx];
    out.append(candidate_idx == 0 ? "{\"key\":" : ",{\"key\":");
    AppendJsonString(candidate.key.key, &out);
    out.append(",\"name\":");
    AppendJsonString(candidate.key.name, &out);
    out.append(",\"project_id\":" + std::to_string(candidate.key.project_id) + ",\"reach\":");
    AppendJsonString(candidate.reach, &out);
    out.append(",\"events\":");
    AppendStrings(candidate.key.events, &out);
    out.append(",\"properties\":");
    AppendStrings(candidate.key.properties, &out);
    out.append(",\"valid_from_ms\":" + std::to_string(candidate.key.valid_from_ms) +
               ",\"valid_to_ms\":" + std::to_string(candidate.key.valid_to_ms) +
               ",\"exported_in\":");
    AppendNumbers(candidate.exported_in, &out);
    out.append(",\"queried_in\":");
    AppendNumbers(candidate.queried_in, &out);
    if (who.store.consulted) {
      out.append(",\"events_in_reach\":" + std::to_string(candidate.events_in_reach));
    }
    out.push_back('}');
  }
  out.push_back(']');
  AppendKeySeqs("other_exports", who.other_exports, &out);
  AppendKeySeqs("other_queries", who.other_queries, &out);
  AppendWarnings(who.warnings, &out);
  out.append("}\n");
  return out;
}

}  // namespace minpanel::incident
