// `minpanel export` and `minpanel debug dump`: reads, in-process.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/progress.h"
#include "query/query.h"
#include "store/store.h"

namespace minpanel::cli {
namespace {

std::string EventNamesJson(const std::vector<std::string>& names) {
  if (names.empty()) {
    return "";
  }
  std::string json = "[";
  for (const std::string& name : names) {
    if (json.size() > 1) {
      json += ',';
    }
    query::AppendJsonString(name, &json);
  }
  return json + "]";
}

// --distinct-ids FILE: one id a line (blank lines skipped) as the JSON array
// that distinct_ids= carries; the service checks the count.
Result<std::string> DistinctIdsJson(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return Status::IoError("--distinct-ids: cannot read " + path + ": " + std::strerror(errno));
  }
  std::string json = "[";
  std::string line;
  while (std::getline(file, line)) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty()) {
      continue;
    }
    if (json.size() > 1) {
      json += ',';
    }
    query::AppendJsonString(line, &json);
  }
  if (file.bad()) {
    return Status::IoError("--distinct-ids: read of " + path + " failed");
  }
  return json + "]";
}

// Where export lines go: stdout, or a file made durable when done.
class ExportOutput {
 public:
  ~ExportOutput() {
    if (file_ != nullptr && file_ != stdout) {
      std::fclose(file_);
    }
  }

  Status Open(const std::string& path) {
    path_ = path.empty() ? "stdout" : path;
    file_ = path.empty() ? stdout : std::fopen(path.c_str(), "wb");
    if (file_ == nullptr) {
      return Status::IoError(path + ": cannot create: " + std::strerror(errno));
    }
    return Status::Ok();
  }

  // False on a write error, which stops the export; Finish reports it.
  bool Write(std::string_view bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
      error_ = errno;
      return false;
    }
    return true;
  }

  Status Finish() {
    if (error_ == 0 && std::fflush(file_) != 0) {
      error_ = errno;
    }
    if (error_ == 0 && file_ != stdout && ::fsync(::fileno(file_)) != 0) {
      error_ = errno;
    }
    if (error_ != 0) {
      return Status::IoError(path_ + ": write failed: " + std::strerror(error_));
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  FILE* file_ = nullptr;
  int error_ = 0;
};

std::string ExportProgressText(uint64_t rows, uint64_t bytes, double elapsed_s) {
  const double megabytes_per_s = static_cast<double>(bytes) / 1e6 / std::max(elapsed_s, 1e-3);
  char text[128];
  std::snprintf(text, sizeof(text), "%llu rows, %s, %.1f MB/s",
                static_cast<unsigned long long>(rows), FormatBytes(bytes).c_str(), megabytes_per_s);
  return text;
}

}  // namespace

int Export(const ConfigSources& sources, const ExportCommandOptions& options) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service =
      OpenServiceToRead(*config, "read from the running server's GET /api/2.0/export");
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, options.project);
  if (!project.ok()) {
    return Fail(project.status());
  }
  service::ExportOptions export_options;
  export_options.from_date = options.from_date;
  export_options.to_date = options.to_date;
  export_options.event_names_json = EventNamesJson(options.event_names);
  export_options.distinct_id = options.distinct_id;
  if (!options.distinct_ids_file.empty()) {
    auto distinct_ids = DistinctIdsJson(options.distinct_ids_file);
    if (!distinct_ids.ok()) {
      return Fail(distinct_ids.status());
    }
    export_options.distinct_ids_json = std::move(distinct_ids).value();
  }
  export_options.limit = options.limit;
  ExportOutput output;
  if (const Status opened = output.Open(options.out_file); !opened.ok()) {
    return Fail(opened);
  }
  const bool show_progress = !options.out_file.empty();
  ProgressReporter progress;
  uint64_t rows = 0;
  uint64_t bytes = 0;
  service::Access local = service::LocalAccess(*project);
  if (options.no_watermark) {
    local.route = std::string(service::kRouteCliNoWatermark);
  }
  auto summary = (*service)->Export(local, export_options, [&](std::string_view chunk) {
    // A chunk holds whole lines, so counting newlines counts rows.
    rows += static_cast<uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    bytes += chunk.size();
    if (show_progress && progress.Due()) {
      progress.Report(ExportProgressText(rows, bytes, progress.ElapsedSeconds()));
    }
    return output.Write(chunk);
  });
  progress.Finish();
  if (const Status written = output.Finish(); !written.ok()) {
    return Fail(written);
  }
  if (!summary.ok()) {
    return Fail(summary.status());
  }
  if (show_progress) {
    std::cerr << "exported " << summary->rows << " rows (" << FormatBytes(summary->bytes) << ") to "
              << options.out_file << "\n";
  }
  return kExitOk;
}

int DebugDump(const std::string& path) {
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  const Status dumped = store::DumpStoreFile(*file_system, path, std::cout);
  std::cout << std::flush;
  if (!dumped.ok()) {
    return Fail(dumped);
  }
  return kExitOk;
}

int DebugRewriteSegments(const ConfigSources& sources, bool all) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  config->store_rewrite_older_segments = true;
  config->store_rewrite_every_segment = all;
  auto service = OpenServiceForCommand(*config, "there is no server route for it");
  if (!service.ok()) {
    return Fail(service.status());
  }
  const Status closed = (*service)->Close();
  if (!closed.ok()) {
    return Fail(closed);
  }
  std::cerr << (all ? "every segment is rewritten in the newest format\n"
                    : "every segment is in the newest format\n");
  return kExitOk;
}

}  // namespace minpanel::cli
