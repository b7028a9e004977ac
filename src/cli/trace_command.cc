// `minpanel audit trace LEAKED_FILE`: finds decoy ids in a leaked file and
// names the watermarked export they belong to (docs/security.md,
// "Watermarked exports"). The file's format does not matter: every
// "psn_" + 32 hex digits and every run of exactly 32 hex digits is a
// candidate subject or insert id, wherever it stands, so a fragment with
// columns removed, reordered or renamed still traces while one id column
// survives.
#include "cli/trace_command.h"

#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "audit/audit.h"
#include "cli/commands.h"
#include "privacy/keys.h"
#include "query/query.h"
#include "query/watermark.h"

namespace minpanel::cli {
namespace {

// The largest leaked file `audit trace` reads whole.
constexpr size_t kTraceFileBytesMax = size_t{1} << 30;

// A watermarked export: its export.start record, the closing record (if
// any), and its nonce and decoy count.
struct Watermarked {
  const audit::AuditEntry* start = nullptr;
  const audit::AuditEntry* end = nullptr;
  Id128 nonce;
  uint64_t decoys = query::kDecoySubjectsMax;  // until the close says
  uint64_t subjects_found = 0;
  uint64_t insert_ids_found = 0;
};

std::vector<Watermarked> WatermarkedExports(const std::vector<audit::AuditEntry>& entries) {
  std::vector<Watermarked> exports;
  std::map<std::string, size_t> by_nonce;
  for (const audit::AuditEntry& entry : entries) {
    if (entry.watermark.empty()) {
      continue;
    }
    Watermarked found;
    uint64_t decoys = query::kDecoySubjectsMax;
    if (!query::ParseWatermarkField(entry.watermark, &found.nonce, &decoys)) {
      continue;
    }
    const std::string nonce_hex = found.nonce.ToHex();
    if (entry.act == "export.start") {
      found.start = &entry;
      by_nonce[nonce_hex] = exports.size();
      exports.push_back(found);
    } else if (const auto known = by_nonce.find(nonce_hex); known != by_nonce.end()) {
      exports[known->second].end = &entry;
      exports[known->second].decoys = decoys;
    }
  }
  return exports;
}

std::string UtcText(int64_t time_ms) {
  const std::time_t seconds = static_cast<std::time_t>(time_ms / 1000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string ExportJson(const Watermarked& found) {
  const audit::AuditEntry& start = *found.start;
  std::string json = "{\"seq\":" + std::to_string(start.seq) +
                     ",\"time_ms\":" + std::to_string(start.time_ms) + ",\"time\":";
  query::AppendJsonString(UtcText(start.time_ms), &json);
  json += ",\"key\":";
  query::AppendJsonString(start.key, &json);
  json += ",\"route\":";
  query::AppendJsonString(start.route, &json);
  json += ",\"projects\":[";
  for (size_t project_idx = 0; project_idx < start.projects.size(); ++project_idx) {
    json += (project_idx == 0 ? "" : ",") + std::to_string(start.projects[project_idx]);
  }
  json += "],\"params_sha256\":\"" + start.params_sha256 + "\"";
  // What the export asked, masked (docs/formats/audit.md, "Parameters");
  // records from before it have none.
  if (!start.params.empty()) {
    json += ",\"params\":";
    query::AppendJsonString(start.params, &json);
  }
  if (found.end != nullptr) {
    json += ",\"end_seq\":" + std::to_string(found.end->seq) +
            ",\"rows\":" + std::to_string(found.end->rows) +
            ",\"subjects\":" + std::to_string(found.end->subjects) + ",\"events\":[";
    for (size_t event_idx = 0; event_idx < found.end->events.size(); ++event_idx) {
      json += event_idx == 0 ? "" : ",";
      query::AppendJsonString(found.end->events[event_idx], &json);
    }
    json += "]";
  }
  json += ",\"decoy_subjects_found\":" + std::to_string(found.subjects_found) +
          ",\"decoy_insert_ids_found\":" + std::to_string(found.insert_ids_found) + "}";
  return json;
}

// The decoys of one export found among the file's decoy ids.
void Match(const query::WatermarkKey& key, const std::unordered_set<Id128, Id128Hash>& subjects,
           const std::unordered_set<Id128, Id128Hash>& insert_ids, Watermarked* found) {
  for (uint64_t decoy_idx = 0; decoy_idx < found->decoys; ++decoy_idx) {
    if (subjects.contains(query::DecoySubject(key, found->nonce, decoy_idx))) {
      ++found->subjects_found;
    }
    for (uint64_t row_idx = 0; !insert_ids.empty() && row_idx < query::kDecoyRowsPerSubjectMax;
         ++row_idx) {
      if (insert_ids.contains(query::DecoyInsertId(key, found->nonce, decoy_idx, row_idx))) {
        ++found->insert_ids_found;
      }
    }
  }
}

// Every watermark key of every version of the project's pseudonym key.
Result<std::vector<query::WatermarkKey>> KeysOf(privacy::KeyStore& keys, uint32_t project_id) {
  MP_ASSIGN_OR_RETURN(const std::vector<privacy::ProjectKey> versions,
                      keys.AllVersions(project_id));
  std::vector<query::WatermarkKey> watermark_keys;
  for (const privacy::ProjectKey& version : versions) {
    watermark_keys.push_back(query::DeriveWatermarkKey(version.bytes));
  }
  return watermark_keys;
}

int Trace(const ConfigSources& sources, const std::string& file, bool json) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto file_system = NewPosixFileSystem();
  auto leaked = file_system->ReadFile(file);
  if (!leaked.ok()) {
    return Fail(leaked.status());
  }
  if (leaked->size() > kTraceFileBytesMax) {
    return Fail(Status::ResourceExhausted(file + ": over " + std::to_string(kTraceFileBytesMax) +
                                          " bytes (kTraceFileBytesMax)"));
  }
  auto log = file_system->OpenRandomAccess(config->data_folder + "/audit/log");
  if (!log.ok()) {
    return Fail(log.status());
  }
  // Streamed: only the watermarked exports' records are kept.
  std::vector<audit::AuditEntry> watermarked;
  audit::LogReader reader(std::move(log).value(), /*decode_payloads=*/false);
  const auto walked = audit::VerifyLog(
      reader, "", audit::WalkOptions{}, [&](const audit::LogRecord& record) -> Status {
        if (record.payload.find("\"watermark\":") == std::string_view::npos) {
          return Status::Ok();
        }
        auto entry = audit::DecodeEntry(record.payload);
        if (entry.ok() && !entry->watermark.empty()) {
          watermarked.push_back(std::move(entry).value());
        }
        return Status::Ok();
      });
  if (!walked.ok()) {
    return Fail(walked.status());
  }
  std::vector<Watermarked> exports = WatermarkedExports(watermarked);
  auto keys = privacy::KeyStore::Open(service::KeyFolder(*config), file_system);
  if (!keys.ok()) {
    return Fail(keys.status());
  }
  const std::unordered_set<Id128, Id128Hash> candidates = query::LeakedIds(*leaked);
  std::map<uint32_t, std::vector<query::WatermarkKey>> keys_by_project;
  for (Watermarked& found : exports) {
    if (found.start->projects.empty()) {
      continue;
    }
    const uint32_t project_id = found.start->projects[0];
    if (!keys_by_project.contains(project_id)) {
      auto project_keys = KeysOf(**keys, project_id);
      if (!project_keys.ok()) {
        return Fail(project_keys.status());
      }
      keys_by_project[project_id] = std::move(project_keys).value();
    }
    for (const query::WatermarkKey& key : keys_by_project[project_id]) {
      std::unordered_set<Id128, Id128Hash> subjects;
      std::unordered_set<Id128, Id128Hash> insert_ids;
      for (const Id128& id : candidates) {
        if (query::IsDecoySubject(key, id)) {
          subjects.insert(id);
        } else if (query::IsDecoyInsertId(key, id)) {
          insert_ids.insert(id);
        }
      }
      if (!subjects.empty() || !insert_ids.empty()) {
        Match(key, subjects, insert_ids, &found);
      }
    }
  }
  std::erase_if(exports, [](const Watermarked& found) {
    return found.subjects_found == 0 && found.insert_ids_found == 0;
  });
  std::stable_sort(exports.begin(), exports.end(),
                   [](const Watermarked& left, const Watermarked& right) {
                     return left.subjects_found + left.insert_ids_found >
                            right.subjects_found + right.insert_ids_found;
                   });
  if (exports.empty()) {
    std::fprintf(stderr, "minpanel: no decoy of a watermarked export in %s (%zu ids looked at)\n",
                 file.c_str(), candidates.size());
    return kExitFailure;
  }
  for (const Watermarked& found : exports) {
    if (json) {
      std::printf("%s\n", ExportJson(found).c_str());
      continue;
    }
    const audit::AuditEntry& start = *found.start;
    const std::string asked = start.params.empty() ? "" : start.params + " ";
    std::printf(
        "export at %s (audit record %llu) by key %s on %s, parameters %ssha256 %s: %llu decoy "
        "subjects and %llu decoy insert ids of it are in the file\n",
        UtcText(start.time_ms).c_str(), static_cast<unsigned long long>(start.seq),
        start.key.c_str(), start.route.c_str(), asked.c_str(), start.params_sha256.c_str(),
        static_cast<unsigned long long>(found.subjects_found),
        static_cast<unsigned long long>(found.insert_ids_found));
  }
  return kExitOk;
}

}  // namespace

struct TraceCommand::Flags {
  ConfigSources sources;
  std::string file;
  bool json = false;
};

TraceCommand::TraceCommand(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  CLI::App* audit = app.get_subcommand("audit");
  trace_ = audit->add_subcommand(
      "trace", "name the watermarked export a leaked file, or a fragment of it, came from");
  flags_->sources.AddFlags(trace_, false);
  trace_->add_option("LEAKED_FILE", flags_->file, "the leaked file (JSON lines, CSV, any text)")
      ->required();
  trace_->add_flag("--json", flags_->json, "one JSON object per export found, best match first");
}

TraceCommand::~TraceCommand() = default;

bool TraceCommand::parsed() const { return trace_->parsed(); }

int TraceCommand::Run() const { return Trace(flags_->sources, flags_->file, flags_->json); }

}  // namespace minpanel::cli
