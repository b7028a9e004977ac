// `minpanel import FILE --project NAME`: imports Mixpanel-shaped events
// in-process, in batches, resumably.
//
// Beside FILE it keeps two files:
//   FILE.import-state   where to resume: written atomically after each
//                       acknowledged batch, removed when the import is done;
//   FILE.rejected.jsonl one JSON object per refused record: line, record
//                       number, field and reason (never the record itself,
//                       which may hold personal data).
// The state also records how long the rejected file was, so a resumed
// import cuts what an interrupted batch wrote there and reports each refused
// record exactly once. A batch stored but not acknowledged in the state is
// stored again on resume and de-duplicated by its insert id.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/record_reader.h"
#include "query/query.h"

namespace minpanel::cli {
namespace {

// One batch's text stays near one /import request's bound.
constexpr size_t kImportBatchBytesMax = 10 * 1000 * 1000;
constexpr std::string_view kStateMagic = "minpanel-import-state";
constexpr uint32_t kStateVersion = 1;
constexpr size_t kStateBytesMax = 4096;
// The store refuses a batch with Unavailable (nothing stored) while its
// flushes fall behind the writers (the memtable's hard limit, src/store);
// /import answers 503 then and the client retries. The import waits and
// retries the same batch too, backing off to kImportRetryDelayMax, and gives
// up only after kImportUnavailableWaitMax of refusals in a row.
constexpr std::chrono::milliseconds kImportRetryDelayMin{10};
constexpr std::chrono::milliseconds kImportRetryDelayMax{1000};
constexpr std::chrono::milliseconds kImportUnavailableWaitMax{5 * 60 * 1000};

struct ImportState {
  std::string project;
  uint64_t input_bytes = 0;  // FILE's size: a different size means a different file
  ReadPosition position;
  uint64_t imported = 0;
  uint64_t duplicates = 0;
  uint64_t rejected = 0;
  uint64_t rejected_file_bytes = 0;
};

std::string EncodeState(const ImportState& state) {
  std::ostringstream out;
  out << kStateMagic << " " << kStateVersion << "\n"
      << "project " << state.project << "\n"
      << "input_bytes " << state.input_bytes << "\n"
      << "format " << FileFormatName(state.position.format) << "\n"
      << "offset " << state.position.offset << "\n"
      << "line " << state.position.line << "\n"
      << "record " << state.position.record << "\n"
      << "array_closed " << (state.position.array_closed ? 1 : 0) << "\n"
      << "imported " << state.imported << "\n"
      << "duplicates " << state.duplicates << "\n"
      << "rejected " << state.rejected << "\n"
      << "rejected_file_bytes " << state.rejected_file_bytes << "\n";
  return out.str();
}

Status SetStateField(const std::string& key, std::istringstream& value, ImportState* state) {
  uint64_t* const numbers[] = {&state->input_bytes,   &state->position.offset,
                               &state->position.line, &state->position.record,
                               &state->imported,      &state->duplicates,
                               &state->rejected,      &state->rejected_file_bytes};
  const char* const names[] = {"input_bytes", "offset",     "line",     "record",
                               "imported",    "duplicates", "rejected", "rejected_file_bytes"};
  for (size_t field_idx = 0; field_idx < std::size(names); ++field_idx) {
    if (key == names[field_idx]) {
      return value >> *numbers[field_idx] ? Status::Ok()
                                          : Status::Corruption(key + ": not a number");
    }
  }
  std::string text;
  std::getline(value >> std::ws, text);
  if (key == "project") {
    state->project = text;
  } else if (key == "format") {
    MP_ASSIGN_OR_RETURN(state->position.format, ParseFileFormat(text));
  } else if (key == "array_closed") {
    state->position.array_closed = text == "1";
  }
  // Unknown keys are skipped: a newer minpanel may add some.
  return Status::Ok();
}

Result<ImportState> DecodeState(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) ||
      line != std::string(kStateMagic) + " " + std::to_string(kStateVersion)) {
    return Status::Corruption("not a minpanel import state (version " +
                              std::to_string(kStateVersion) + ")");
  }
  ImportState state;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string key;
    if (!(fields >> key)) {
      continue;
    }
    MP_RETURN_IF_ERROR(SetStateField(key, fields, &state));
  }
  return state;
}

// Where the import starts: a fresh state, or the saved one after checks.
Result<ImportState> LoadState(FileSystem& file_system, const std::string& state_path,
                              const ImportOptions& options, uint64_t input_bytes) {
  ImportState fresh;
  fresh.project = options.project;
  fresh.input_bytes = input_bytes;
  if (options.restart || !file_system.Exists(state_path)) {
    return fresh;
  }
  MP_ASSIGN_OR_RETURN(const std::string text, file_system.ReadFile(state_path));
  if (text.size() > kStateBytesMax) {
    return Status::Corruption(state_path + ": over kStateBytesMax; rerun with --restart");
  }
  auto state = DecodeState(text);
  if (!state.ok()) {
    return Status::Corruption(state_path + ": " + state.status().message() +
                              "; rerun with --restart");
  }
  if (state->project != options.project) {
    return Status::InvalidArgument(state_path + " resumes an import into project '" +
                                   state->project + "'; rerun with --restart to start over");
  }
  if (state->input_bytes != input_bytes) {
    return Status::InvalidArgument(state_path + " was saved for a file of " +
                                   std::to_string(state->input_bytes) + " bytes, but " +
                                   options.file + " now has " + std::to_string(input_bytes) +
                                   "; rerun with --restart to start over");
  }
  return state;
}

// FILE.rejected.jsonl, opened on the first refusal.
class RejectedFile {
 public:
  explicit RejectedFile(std::string path) : path_(std::move(path)) {}
  ~RejectedFile() {
    if (file_ != nullptr) {
      std::fclose(file_);
    }
  }
  RejectedFile(const RejectedFile&) = delete;
  RejectedFile& operator=(const RejectedFile&) = delete;

  // Cuts the file to `bytes` (removing it at zero), dropping what a batch
  // that was never acknowledged wrote.
  Status Reset(uint64_t bytes) {
    bytes_ = bytes;
    if (bytes == 0) {
      if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
        return Status::IoError(path_ + ": cannot remove: " + std::strerror(errno));
      }
      return Status::Ok();
    }
    if (::truncate(path_.c_str(), static_cast<off_t>(bytes)) != 0) {
      return Status::IoError(path_ + ": cannot truncate: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  Status Write(const Record& record, std::string_view field, std::string_view reason,
               std::string_view insert_id) {
    if (file_ == nullptr) {
      file_ = std::fopen(path_.c_str(), "ab");
      if (file_ == nullptr) {
        return Status::IoError(path_ + ": cannot open: " + std::strerror(errno));
      }
    }
    std::string line = "{\"line\":" + std::to_string(record.line) +
                       ",\"record\":" + std::to_string(record.number) + ",\"field\":";
    query::AppendJsonString(field, &line);
    line += ",\"reason\":";
    query::AppendJsonString(reason, &line);
    if (!insert_id.empty()) {
      line += ",\"insert_id\":";
      query::AppendJsonString(insert_id, &line);
    }
    line += "}\n";
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) {
      return Status::IoError(path_ + ": write failed: " + std::strerror(errno));
    }
    bytes_ += line.size();
    return Status::Ok();
  }

  // Makes the lines written durable before the state that counts them.
  Status Sync() {
    if (file_ == nullptr) {
      return Status::Ok();
    }
    if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
      return Status::IoError(path_ + ": sync failed: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  uint64_t bytes() const { return bytes_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* file_ = nullptr;
  uint64_t bytes_ = 0;
};

struct ImportRun {
  service::Service* service = nullptr;
  service::Project project;
  RecordReader* reader = nullptr;
  RejectedFile* rejected = nullptr;
  FileSystem* file_system = nullptr;
  std::string state_path;
  ImportState state;
  uint64_t records_this_run = 0;
  uint64_t store_waits = 0;  // batches the store refused for a while (Unavailable)
  std::chrono::milliseconds store_waited{0};
};

// Imports `texts`, waiting while the store answers Unavailable (see
// kImportUnavailableWaitMax).
Result<service::IngestOutcome> ImportWaitingForStore(const std::vector<std::string_view>& texts,
                                                     ImportRun* run) {
  std::chrono::milliseconds delay = kImportRetryDelayMin;
  std::chrono::milliseconds waited{0};
  while (true) {
    Result<service::IngestOutcome> outcome = run->service->ImportEvents(run->project, texts);
    if (outcome.ok() || outcome.status().code() != StatusCode::kUnavailable) {
      return outcome;
    }
    if (waited >= kImportUnavailableWaitMax) {
      return Status::Unavailable(outcome.status().message() + " (refused for " +
                                 std::to_string(waited.count() / 1000) +
                                 " s in a row, kImportUnavailableWaitMax)");
    }
    if (waited.count() == 0) {
      ++run->store_waits;
    }
    std::this_thread::sleep_for(delay);
    waited += delay;
    run->store_waited += delay;
    delay = std::min(delay * 2, kImportRetryDelayMax);
  }
}

// Reads up to `batch_records` records (fewer when their text passes
// kImportBatchBytesMax); empty at the end of the file.
Result<std::vector<Record>> ReadBatch(RecordReader& reader, size_t batch_records) {
  std::vector<Record> batch;
  size_t batch_bytes = 0;
  Record record;
  while (batch.size() < batch_records && batch_bytes < kImportBatchBytesMax) {
    MP_ASSIGN_OR_RETURN(const bool found, reader.Next(&record));
    if (!found) {
      break;
    }
    batch_bytes += record.text.size();
    batch.push_back(std::move(record));
  }
  return batch;
}

// Stores one batch, writes its refusals in file order, then saves the
// state after it.
Status ImportBatch(std::vector<Record> batch, ImportRun* run) {
  std::vector<std::string_view> texts;
  std::vector<size_t> record_of_text;
  std::vector<std::pair<size_t, service::RecordError>> refusals;
  for (size_t record_idx = 0; record_idx < batch.size(); ++record_idx) {
    const Record& record = batch[record_idx];
    if (record.too_long()) {
      refusals.push_back({record_idx,
                          {record_idx, "", "record",
                           std::to_string(record.text_bytes) + " bytes, over kRecordTextBytesMax (" +
                               std::to_string(kRecordTextBytesMax) + ")"}});
      continue;
    }
    texts.push_back(record.text);
    record_of_text.push_back(record_idx);
  }
  MP_ASSIGN_OR_RETURN(service::IngestOutcome outcome, ImportWaitingForStore(texts, run));
  for (service::RecordError& error : outcome.errors) {
    refusals.push_back({record_of_text[error.index], std::move(error)});
  }
  std::stable_sort(refusals.begin(), refusals.end(),
                   [](const auto& left, const auto& right) { return left.first < right.first; });
  for (const auto& [record_idx, error] : refusals) {
    MP_RETURN_IF_ERROR(
        run->rejected->Write(batch[record_idx], error.field, error.message, error.insert_id));
  }
  run->state.imported += outcome.stored;
  run->state.duplicates += outcome.duplicates;
  run->state.rejected += refusals.size();
  run->records_this_run += batch.size();
  MP_RETURN_IF_ERROR(run->rejected->Sync());
  run->state.rejected_file_bytes = run->rejected->bytes();
  run->state.position = batch.back().after;
  return run->file_system->WriteFileAtomically(run->state_path, EncodeState(run->state), 0600);
}

std::string ProgressText(const ImportRun& run, const ProgressReporter& progress) {
  const double elapsed_s = std::max(progress.ElapsedSeconds(), 1e-3);
  const double rate = static_cast<double>(run.records_this_run) / elapsed_s;
  const double fraction =
      run.state.input_bytes == 0
          ? 1.0
          : std::min(1.0,
                     static_cast<double>(run.reader->compressed() ? run.reader->compressed_offset()
                                                                  : run.state.position.offset) /
                         static_cast<double>(run.state.input_bytes));
  char text[160];
  std::snprintf(
      text, sizeof(text), "%llu lines (%.1f%% of %s), %.0f events/s, ETA %s",
      static_cast<unsigned long long>(run.state.position.line), fraction * 100.0,
      FormatBytes(run.state.input_bytes).c_str(), rate,
      fraction > 0 ? FormatDuration(elapsed_s * (1.0 - fraction) / fraction).c_str() : "?");
  return text;
}

Status RunBatches(ImportRun* run, size_t batch_records) {
  ProgressReporter progress;
  while (true) {
    MP_ASSIGN_OR_RETURN(std::vector<Record> batch, ReadBatch(*run->reader, batch_records));
    if (batch.empty()) {
      break;
    }
    const Status imported = ImportBatch(std::move(batch), run);
    if (!imported.ok()) {
      progress.Finish();
      return imported;
    }
    if (progress.Due()) {
      progress.Report(ProgressText(*run, progress));
    }
  }
  progress.Finish();
  return Status::Ok();
}

Result<uint64_t> InputBytes(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return Status::IoError(path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(info.st_mode)) {
    return Status::InvalidArgument(path + ": not a regular file");
  }
  return static_cast<uint64_t>(info.st_size);
}

void PrintSummary(const ImportRun& run) {
  std::cout << "imported " << run.state.imported << ", duplicates " << run.state.duplicates
            << ", rejected " << run.state.rejected;
  if (run.state.rejected > 0) {
    std::cout << " (see " << run.rejected->path() << ")";
  }
  if (run.store_waits > 0) {
    std::cout << "; waited " << run.store_waited.count() / 1000.0 << " s for the store ("
              << run.store_waits << " batches refused while flushes caught up)";
  }
  std::cout << "\n" << std::flush;
}

}  // namespace

int Import(const ConfigSources& sources, const ImportOptions& options) {
  DisableCoreDumps();
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto input_bytes = InputBytes(options.file);
  if (!input_bytes.ok()) {
    return Fail(input_bytes.status());
  }
  auto service = OpenServiceForCommand(
      *config, "send the file to the running server's /import in batches of up to " +
                   std::to_string(service::kImportRecordsMax) + " events");
  if (!service.ok()) {
    return Fail(service.status());
  }
  ImportRun run;
  run.service = service->get();
  auto project = FindProject(*run.service, options.project);
  if (!project.ok()) {
    return Fail(project.status());
  }
  run.project = *project;
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  run.file_system = file_system.get();
  run.state_path = options.file + ".import-state";
  auto state = LoadState(*file_system, run.state_path, options, *input_bytes);
  if (!state.ok()) {
    return Fail(state.status());
  }
  run.state = *state;
  RejectedFile rejected(options.file + ".rejected.jsonl");
  run.rejected = &rejected;
  if (const Status reset = rejected.Reset(run.state.rejected_file_bytes); !reset.ok()) {
    return Fail(reset);
  }
  auto reader = RecordReader::Open(options.file, run.state.position);
  if (!reader.ok()) {
    return Fail(reader.status());
  }
  run.reader = reader->get();
  if (run.state.position.record > 0) {
    std::cerr << "resuming " << options.file << " after record " << run.state.position.record
              << " (line " << run.state.position.line << "), from " << run.state_path << "\n";
  }
  if (const Status ran = RunBatches(&run, options.batch_records); !ran.ok()) {
    PrintSummary(run);
    std::cerr << "progress is saved in " << run.state_path << "; rerun to resume\n";
    return Fail(ran);
  }
  if (const Status removed = file_system->Remove(run.state_path);
      !removed.ok() && file_system->Exists(run.state_path)) {
    return Fail(removed);
  }
  PrintSummary(run);
  const Status closed = run.service->Close();
  if (!closed.ok()) {
    return Fail(closed);
  }
  return run.state.rejected > 0 ? kExitSomeRejected : kExitOk;
}

}  // namespace minpanel::cli
