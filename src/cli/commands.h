// The subcommands of `minpanel`, one function each, and what they share:
// where settings come from, how a failure is printed, the exit codes.
// Internal to the cli module; cli.cc declares the flags and dispatches.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "audit/audit.h"
#include "core/core.h"
#include "service/service.h"

namespace minpanel::cli {

// Exit codes (also in cli.h and `minpanel --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitSomeRejected = 3;  // import finished, some records refused

// Where the settings of a command come from: defaults, then --config, then
// the flags that were given.
struct ConfigSources {
  std::string config_file;
  std::string data_folder;
  std::string key_folder;
  std::string listen;
  std::string tls_cert;
  std::string tls_key;
  std::string listen_api;
  std::string tls_api_cert;
  std::string tls_api_key;
  std::vector<std::string> path_prefixes;  // --path-prefix, repeatable; replaces the file's

  void AddFlags(CLI::App* command, bool serving);
  Result<service::Config> Build() const;
};

// Prints "minpanel: <status>" to stderr and returns kExitFailure.
int Fail(const Status& status);

// Records an admin act of the command line (`key` "local", route "cli";
// `target` a key or project id, `project_id` 0 for none) in the audit log.
// While a running server holds the log, through its queue (RecordOrQueue);
// the server records the change again, route "reload", when it reloads.
void AuditLocally(const service::Config& config, std::string_view act, std::string target,
                  uint32_t project_id);

// Records `entry` of a command whose audit log did not open (`opened`):
// when a running server holds it (Unavailable), leaves the record in the
// log's queue (docs/formats/audit.md, "Queue"), which the server appends
// within a quarter second, and waits up to 10 s for that; says on stderr,
// naming `what` ("this run", "this change"), whether it was recorded,
// waits, or was not.
void RecordOrQueue(const service::Config& config, const Status& opened, audit::AuditEntry entry,
                   std::string_view what);

// Raw events live in this process's memory; a core dump would write them
// to disk, so there are none.
void DisableCoreDumps();

// Opens the service for a command that works in-process. When a running
// server holds the data folder the error says to stop it or to use
// `alternative` (the server's HTTP route for the same job) instead.
Result<std::unique_ptr<service::Service>> OpenServiceForCommand(const service::Config& config,
                                                                std::string_view alternative);

// The same, for a command that reads stored events or profiles (export,
// query, access-request): the configuration's retention rules are applied
// first (Service::ApplyRetention, as a server does before its first
// request), so that nothing past a rule is read from a folder the server
// left long ago, or that never ran with the rule. A failure to apply them
// is the command's failure: nothing is read.
Result<std::unique_ptr<service::Service>> OpenServiceToRead(const service::Config& config,
                                                            std::string_view alternative);

// The project called `name`, or NotFound naming `minpanel project list`.
Result<service::Project> FindProject(service::Service& service, const std::string& name);

struct ImportOptions {
  std::string file;
  std::string project;
  bool restart = false;
  size_t batch_records = service::kImportRecordsMax;
};
int Import(const ConfigSources& sources, const ImportOptions& options);

struct ExportCommandOptions {
  std::string project;
  std::string from_date;
  std::string to_date;
  std::vector<std::string> event_names;
  std::optional<std::string> distinct_id;
  // A file of distinct ids, one a line (at most query::kExportDistinctIdsMax):
  // only their events. Empty: not given.
  std::string distinct_ids_file;
  uint64_t limit = 0;
  std::string out_file;  // empty: stdout
  // --no-watermark: no decoys in an export of a time range (the audit
  // records' route says "cli --no-watermark").
  bool no_watermark = false;
};
int Export(const ConfigSources& sources, const ExportCommandOptions& options);

// `minpanel query FILE --project NAME`: answers the query in FILE ("-":
// stdin) in-process and prints the answer body of POST /api/query.
struct QueryCommandOptions {
  std::string file;
  std::string project;
  // --no-k: every cell raw, not held to the project's minimum group size
  // (the audit records' route says "cli --no-k").
  bool raw_cells = false;
};
int Query(const ConfigSources& sources, const QueryCommandOptions& options);

// `minpanel datamap` (datamap_command.cc): the data map of one project or of
// every project, as Markdown, JSON or HTML (service/datamap.h).
struct DataMapCommandOptions {
  std::string project;  // empty: every project
  std::string format = "markdown";
  std::string out_file;  // empty: stdout
};
CLI::App* AddDataMapCommand(CLI::App& app, ConfigSources* sources, DataMapCommandOptions* options);
int DataMap(const ConfigSources& sources, const DataMapCommandOptions& options);

// `minpanel keys create|list|rotate|revoke` and `minpanel audit
// verify|show` (access_command.cc): declares the subcommands and flags on
// `app`; Run() once one of them was parsed.
class AccessCommands {
 public:
  explicit AccessCommands(CLI::App& app);
  ~AccessCommands();
  bool parsed() const;
  int Run() const;

 private:
  struct Flags;
  int CreateKey(const service::Config& config, service::AccessKeyStore& keys) const;
  int RunAudit(const service::Config& config) const;
  int RunAuditKeyCommand(const service::Config& config) const;
  std::unique_ptr<Flags> flags_;
  CLI::App* create_ = nullptr;
  CLI::App* list_ = nullptr;
  CLI::App* rotate_ = nullptr;
  CLI::App* revoke_ = nullptr;
  CLI::App* enable_ = nullptr;  // lifts an anomaly rule's suspension
  CLI::App* verify_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* public_key_ = nullptr;
  CLI::App* prune_ = nullptr;
};

// `minpanel debug dump FILE`: one write-ahead log file in readable form.
int DebugDump(const std::string& path);

// `minpanel debug rewrite-segments [--all]`: opens the stopped server's
// store so that it rewrites every segment of an older format into the newest
// one (store::Options::rewrite_older_segments) — with `all`, every segment
// (store::Options::rewrite_every_segment) — then closes it.
int DebugRewriteSegments(const ConfigSources& sources, bool all);

// `minpanel incident crossref ...` (incident_command.cc): declares its
// subcommands and flags on `app`; Run() once one of them was parsed.
class IncidentCommand {
 public:
  explicit IncidentCommand(CLI::App& app);
  ~IncidentCommand();
  bool parsed() const;
  int Run() const;

 private:
  struct Flags;
  std::unique_ptr<Flags> flags_;
  CLI::App* crossref_ = nullptr;
};

// `minpanel erase`, `minpanel access-request` and `minpanel purge-property`
// (erasure_command.cc):
// declares the subcommands and flags on `app`; Run() once one was parsed.
class ErasureCommands {
 public:
  explicit ErasureCommands(CLI::App& app);
  ~ErasureCommands();
  bool parsed() const;
  int Run() const;

 private:
  struct Flags;
  std::unique_ptr<Flags> flags_;
  CLI::App* erase_ = nullptr;
  CLI::App* access_request_ = nullptr;
  CLI::App* purge_property_ = nullptr;
  int RunPurgeProperty() const;
};

// `minpanel backup` and `minpanel restore` (backup_command.cc).
class BackupCommands {
 public:
  explicit BackupCommands(CLI::App& app);
  ~BackupCommands();
  bool parsed() const;
  int Run() const;

 private:
  struct Flags;
  std::unique_ptr<Flags> flags_;
  CLI::App* backup_ = nullptr;
  CLI::App* restore_ = nullptr;
};

}  // namespace minpanel::cli
