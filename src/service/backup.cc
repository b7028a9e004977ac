// Backup and restore (backup.h; docs/privacy.md, "Backup and restore").
#include "service/backup.h"

#include <simdjson.h>
#include <sodium.h>

#include <array>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <system_error>

#include "audit/subjects_rewrite.h"
#include "query/query.h"
#include "service/gdpr_tasks.h"
#include "service/service.h"
#include "store/online_copy.h"
#include "store/store.h"

namespace minpanel::service {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFileMode = 0600;
constexpr uint32_t kFolderMode = 0700;
// The route of the subjects.rewrite records a restore appends.
constexpr std::string_view kSubjectsRewriteRestoreRoute = "restore";

bool IsEmptyOrAbsent(const std::string& folder) {
  std::error_code error;
  return !fs::exists(folder, error) || fs::is_empty(folder, error);
}

std::string Canonical(const std::string& path) {
  std::error_code error;
  const fs::path canonical = fs::weakly_canonical(path, error);
  return (error ? fs::path(path) : canonical).string() + "/";
}

// Copies every regular file under `from` that `keep` accepts (given its
// path relative to `from`) to the same place under `to`, each synced; the
// count and bytes copied are added to the summary's.
template <typename Keep>
Status CopyTree(FileSystem& file_system, const std::string& from, const std::string& to, Keep keep,
                uint64_t* files, uint64_t* bytes) {
  std::error_code error;
  if (!fs::exists(from, error)) {
    return Status::Ok();
  }
  for (auto it = fs::recursive_directory_iterator(from, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    const std::string relative = fs::relative(it->path(), from, error).string();
    if (it->is_directory(error)) {
      if (!keep(relative + "/")) {
        it.disable_recursion_pending();
      }
      continue;
    }
    if (!it->is_regular_file(error) || !keep(relative)) {
      continue;
    }
    const std::string target = to + "/" + relative;
    MP_RETURN_IF_ERROR(
        file_system.CreateDirectories(fs::path(target).parent_path().string(), kFolderMode));
    fs::copy_file(it->path(), target, fs::copy_options::overwrite_existing, error);
    if (error) {
      if (!fs::exists(it->path())) {
        error.clear();
        continue;  // removed meanwhile (a temporary, an expired result)
      }
      return Status::IoError("backup: copy " + it->path().string() + ": " + error.message());
    }
    fs::permissions(target, fs::perms(kFileMode), error);
    MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> synced,
                        file_system.OpenAppendable(target, kFileMode));
    MP_RETURN_IF_ERROR(synced->Sync());
    MP_RETURN_IF_ERROR(synced->Close());
    ++*files;
    *bytes += fs::file_size(target, error);
  }
  if (error) {
    return Status::IoError("backup: reading " + from + ": " + error.message());
  }
  return Status::Ok();
}

// What a data backup leaves out of the plain file copy.
bool KeptInDataBackup(const std::string& relative) {
  return relative != "store/" && relative != "LOCK" && relative != kAccessKeysFile &&
         relative != kBackupInfoFile && !relative.ends_with(".tmp") && !relative.ends_with(".lock");
}

std::string InfoJson(const BackupSummary& summary) {
  std::string source;
  query::AppendJsonString(summary.source_data_folder, &source);
  std::string source_keys;
  query::AppendJsonString(summary.source_key_folder, &source_keys);
  return "{\"format\":" + std::to_string(kBackupFormatVersion) +
         ",\"taken_ms\":" + std::to_string(summary.taken_ms) +
         ",\"files\":" + std::to_string(summary.files) +
         ",\"bytes\":" + std::to_string(summary.bytes) +
         ",\"segments\":" + std::to_string(summary.segments) +
         ",\"log_files\":" + std::to_string(summary.log_files) +
         ",\"store_bytes\":" + std::to_string(summary.store_bytes) +
         ",\"end_log_file\":" + std::to_string(summary.end_log_file) +
         ",\"end_log_offset\":" + std::to_string(summary.end_log_offset) +
         ",\"source_data_folder\":" + source + ",\"source_key_folder\":" + source_keys + "}\n";
}

Result<BackupSummary> ReadInfo(FileSystem& file_system, const std::string& from) {
  const std::string path = from + "/" + std::string(kBackupInfoFile);
  if (!file_system.Exists(path)) {
    return Status::InvalidArgument("--from: " + from + " has no " + std::string(kBackupInfoFile) +
                                   ": not a finished minpanel backup");
  }
  MP_ASSIGN_OR_RETURN(const std::string text, file_system.ReadFile(path));
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(text).get(root) != simdjson::SUCCESS) {
    return Status::InvalidArgument("--from: " + path + " is not JSON");
  }
  BackupSummary summary;
  uint64_t format = 0;
  int64_t taken_ms = 0;
  if (root["format"].get(format) != simdjson::SUCCESS ||
      root["taken_ms"].get(taken_ms) != simdjson::SUCCESS ||
      root["end_log_file"].get(summary.end_log_file) != simdjson::SUCCESS ||
      root["end_log_offset"].get(summary.end_log_offset) != simdjson::SUCCESS) {
    return Status::InvalidArgument("--from: " + path + " lacks format, taken_ms or the log end");
  }
  if (format > kBackupFormatVersion) {
    return Status::InvalidArgument("--from: backup format " + std::to_string(format) +
                                   " is newer than this binary's (" +
                                   std::to_string(kBackupFormatVersion) + ")");
  }
  summary.taken_ms = taken_ms;
  std::string_view source;
  if (root["source_data_folder"].get(source) == simdjson::SUCCESS) {
    summary.source_data_folder = std::string(source);
  }
  if (root["source_key_folder"].get(source) == simdjson::SUCCESS) {
    summary.source_key_folder = std::string(source);
  }
  return summary;
}

// Erases again, in the restored store, the subjects of every erasure made
// after the backup and the property of every property purge, in log order,
// and purges them from its files.
Status Reerase(const Config& config, const std::vector<store::Erasure>& erasures,
               const std::shared_ptr<Clock>& clock, BackupSummary* summary) {
  if (erasures.empty()) {
    return Status::Ok();
  }
  store::Options options;
  options.folder = config.data_folder + "/store";
  options.file_system = NewPosixFileSystem();
  options.clock = clock;
  options.dedup_window_ms = config.dedup_window_ms;
  options.dedup_entries_max = config.dedup_entries_max;
  options.erasure_journal_folder = ErasureJournalFolder(config);
  MP_ASSIGN_OR_RETURN(std::unique_ptr<store::Engine> engine, store::OpenEmbeddedEngine(options));
  for (const store::Erasure& erasure : erasures) {
    if (!erasure.property_key.empty()) {
      MP_RETURN_IF_ERROR(
          engine->PurgeProperty(erasure.project_id, erasure.property_key, erasure.event_name));
      ++summary->property_purges_reapplied;
      continue;
    }
    MP_RETURN_IF_ERROR(engine->EraseSubjects(erasure.project_id, erasure.subjects));
    ++summary->erasures_reapplied;
    summary->subjects_reerased += erasure.subjects.size();
  }
  MP_RETURN_IF_ERROR(engine->PurgeDeleted());
  return engine->Close();
}

// A retrieval's result kept through Mixpanel's GDPR API shapes (gdpr/, for
// a week) may hold a person erased, or a property purged, since the backup:
// as the erasure and the purge do on the live folder, every result of a
// project with such a later change goes (its task says so).
Status RemoveGdprResults(const Config& config, const std::vector<store::Erasure>& erasures,
                         const std::shared_ptr<FileSystem>& file_system,
                         const std::shared_ptr<Clock>& clock, BackupSummary* summary) {
  std::set<uint32_t> projects;
  for (const store::Erasure& erasure : erasures) {
    projects.insert(erasure.project_id);
  }
  if (projects.empty()) {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<GdprTasks> tasks,
                      GdprTasks::Open(config.data_folder, file_system, clock));
  for (const uint32_t project_id : projects) {
    MP_ASSIGN_OR_RETURN(const size_t removed, tasks->RemoveResults(project_id));
    summary->gdpr_results_removed += removed;
  }
  return Status::Ok();
}

// The backup's audit subject files still list the subjects erased since
// it was taken (the live log's were rewritten by the erasure itself): each
// is rewritten the same way, a `subjects.rewrite` record (key `local`,
// route `restore`) durable before the file is replaced. Its params_sha256
// is a fresh random reference: the erasure's own keyed reference is in the
// live log, not in the backup's. One pass per project (pseudonyms are keyed
// per project).
Status ReeraseSubjectFiles(const Config& config, const std::vector<store::Erasure>& erasures,
                           const std::shared_ptr<FileSystem>& file_system,
                           const std::shared_ptr<Clock>& clock, BackupSummary* summary) {
  std::map<uint32_t, std::vector<Id128>> by_project;
  for (const store::Erasure& erasure : erasures) {
    if (erasure.property_key.empty()) {
      std::vector<Id128>& subjects = by_project[erasure.project_id];
      subjects.insert(subjects.end(), erasure.subjects.begin(), erasure.subjects.end());
    }
  }
  const std::string folder = config.data_folder + "/audit";
  if (by_project.empty() || !file_system->Exists(folder + "/log")) {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<audit::AuditLog> log,
                      OpenAuditLog(config, file_system, clock, nullptr));
  for (const auto& [project_id, subjects] : by_project) {
    std::array<uint8_t, audit::kHashBytes> random{};
    randombytes_buf(random.data(), random.size());
    const auto rewritten = EraseFromSubjectFiles(
        folder, *file_system, subjects, audit::HexOf(random),
        [&, project = project_id](audit::AuditEntry record) {
          record.key = std::string(audit::kSubjectsRewriteKey);
          record.route = std::string(kSubjectsRewriteRestoreRoute);
          record.projects = {project};
          return log->Append(std::move(record)).status();
        });
    if (!rewritten.ok()) {
      (void)log->Close();
      return rewritten.status();
    }
    summary->subject_files_rewritten += *rewritten;
  }
  return log->Close();
}

}  // namespace

Result<BackupSummary> BackupDataFolder(const Config& config, const std::string& to,
                                       const Clock& clock) {
  if (!IsEmptyOrAbsent(to)) {
    return Status::InvalidArgument("--to: " + to +
                                   " is not empty; a backup goes into a new folder");
  }
  if (Canonical(to).starts_with(Canonical(config.data_folder))) {
    return Status::InvalidArgument("--to: " + to + " is inside the data folder");
  }
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  BackupSummary summary;
  summary.taken_ms = clock.NowMs();
  summary.source_data_folder = fs::absolute(config.data_folder).lexically_normal().string();
  summary.source_key_folder = fs::absolute(KeyFolder(config)).lexically_normal().string();
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(to, kFolderMode));
  MP_ASSIGN_OR_RETURN(const store::StoreCopy copy,
                      store::CopyStoreOnline(config.data_folder + "/store", to + "/store"));
  summary.segments = copy.segments;
  summary.log_files = copy.log_files;
  summary.store_bytes = copy.segment_bytes + copy.log_bytes + copy.profile_bytes;
  summary.end_log_file = copy.end_log_file;
  summary.end_log_offset = copy.end_log_offset;
  MP_RETURN_IF_ERROR(CopyTree(*file_system, config.data_folder, to, KeptInDataBackup,
                              &summary.files, &summary.bytes));
  // Last: a backup without it is unfinished.
  MP_RETURN_IF_ERROR(file_system->WriteFileAtomically(to + "/" + std::string(kBackupInfoFile),
                                                      InfoJson(summary), kFileMode));
  return summary;
}

Result<uint64_t> BackupKeys(const Config& config, const std::string& to) {
  if (!IsEmptyOrAbsent(to)) {
    return Status::InvalidArgument("--keys-to: " + to +
                                   " is not empty; a backup goes into a new folder");
  }
  const std::string keys = KeyFolder(config);
  if (Canonical(to).starts_with(Canonical(config.data_folder))) {
    return Status::InvalidArgument("--keys-to: " + to +
                                   " is inside the data folder; keys are kept apart from it");
  }
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(to + "/keys", kFolderMode));
  uint64_t files = 0;
  uint64_t bytes = 0;
  const auto not_temporary = [](const std::string& relative) {
    return !relative.ends_with(".tmp") && !relative.ends_with(".lock");
  };
  MP_RETURN_IF_ERROR(CopyTree(*file_system, keys, to + "/keys", not_temporary, &files, &bytes));
  const auto access_keys = [](const std::string& relative) { return relative == kAccessKeysFile; };
  MP_RETURN_IF_ERROR(
      CopyTree(*file_system, config.data_folder, to + "/data", access_keys, &files, &bytes));
  return files;
}

Result<BackupSummary> RestoreDataFolder(const Config& config, const RestoreOptions& options,
                                        std::shared_ptr<Clock> clock) {
  const std::string& from = options.from;
  const std::string& keys_from = options.keys_from;
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  MP_ASSIGN_OR_RETURN(BackupSummary summary, ReadInfo(*file_system, from));
  // The erasures since the backup, read before anything is written.
  const std::string erasures_from =
      options.erasures_from.empty() ? summary.source_data_folder : options.erasures_from;
  std::string journal_keys = options.erasures_keys_from;
  if (journal_keys.empty()) {
    journal_keys =
        options.erasures_from.empty() ? summary.source_key_folder : options.erasures_from + ".keys";
  }
  std::vector<store::Erasure> erasures;
  if (!erasures_from.empty() && fs::exists(erasures_from + "/store")) {
    Config journal_config;
    journal_config.data_folder = erasures_from;
    journal_config.key_folder = journal_keys;
    MP_ASSIGN_OR_RETURN(
        erasures,
        store::ErasuresSince(erasures_from + "/store", ErasureJournalFolder(journal_config),
                             summary.end_log_file, summary.end_log_offset));
  } else if (!options.no_later_erasures) {
    return Status::InvalidArgument(
        "--erasures-from: " + (erasures_from.empty() ? std::string("(none)") : erasures_from) +
        " holds no store, so the erasures made after the backup cannot be re-applied; name the "
        "live data folder or a later backup, or confirm none was made with --no-later-erasures");
  }
  if (!IsEmptyOrAbsent(config.data_folder)) {
    return Status::InvalidArgument("--data: " + config.data_folder +
                                   " is not empty; restore into a new folder");
  }
  const std::string keys = KeyFolder(config);
  if (!keys_from.empty() && !IsEmptyOrAbsent(keys)) {
    return Status::InvalidArgument("--keys: " + keys +
                                   " is not empty; restore keys into a new folder");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(config.data_folder, kFolderMode));
  summary.files = 0;
  summary.bytes = 0;
  const auto all_but_info = [](const std::string& relative) { return relative != kBackupInfoFile; };
  MP_RETURN_IF_ERROR(CopyTree(*file_system, from, config.data_folder, all_but_info, &summary.files,
                              &summary.bytes));
  if (!keys_from.empty()) {
    const auto all = [](const std::string&) { return true; };
    MP_RETURN_IF_ERROR(file_system->CreateDirectories(keys, kFolderMode));
    MP_RETURN_IF_ERROR(
        CopyTree(*file_system, keys_from + "/keys", keys, all, &summary.files, &summary.bytes));
    MP_RETURN_IF_ERROR(CopyTree(*file_system, keys_from + "/data", config.data_folder, all,
                                &summary.files, &summary.bytes));
  }
  MP_RETURN_IF_ERROR(Reerase(config, erasures, clock, &summary));
  MP_RETURN_IF_ERROR(RemoveGdprResults(config, erasures, file_system, clock, &summary));
  if (keys_from.empty()) {
    // The audit log's checkpoints are signed by a key that did not come
    // along (kept apart on purpose): they go on under the new key folder's.
    MP_ASSIGN_OR_RETURN(const std::optional<audit::PublicKey> previous, StartAuditKeyEpoch(config));
    if (previous.has_value()) {
      summary.audit_previous_key = audit::PublicKeyHex(*previous);
    }
  }
  MP_RETURN_IF_ERROR(ReeraseSubjectFiles(config, erasures, file_system, clock, &summary));
  // Recovery runs once here, so that a damaged backup is found now.
  MP_ASSIGN_OR_RETURN(std::unique_ptr<Service> service, Service::Open(config, file_system, clock));
  // Time drops and profile expiries the source logged after the backup
  // are not in the erasure journal: the rules make them again, now, so that
  // the first read of the restored folder (a command line's, or a server's
  // before its retention timer) does not show what the source had hidden.
  // A failure is reported, not fatal: the folder is whole, and a server
  // applies its retention when it starts.
  const Status retention = service->ApplyRetention();
  if (!retention.ok()) {
    summary.retention_failure = retention.message();
  }
  const ServiceMetrics metrics = service->GetMetrics();
  summary.retention_drops = metrics.retention_drops;
  summary.profiles_expired = metrics.profiles_expired;
  MP_RETURN_IF_ERROR(service->Close());
  return summary;
}

}  // namespace minpanel::service
