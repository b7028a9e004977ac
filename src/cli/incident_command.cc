// `minpanel incident crossref|blast-radius|who-could-read|send`: incident
// response (docs/incident.md, docs/formats/incident.md). `crossref`
// cross-references a leaked file against the accounts export; `blast-radius`
// reads the audit log for what a key took out in a window; `who-could-read`
// lists the keys that could reach one subject. Each writes the impact file,
// summaries, regulator report draft and notices where it has them, and
// records its run in the audit log when it has a data folder. `send`
// delivers the notices an earlier run wrote over SMTP.
//
// These read files and the audit log, which a running server keeps
// appending to, so they call the incident module directly rather than open
// a Service (which would need the server stopped) — except who-could-read,
// which asks the service (a Service of its own when no server holds the
// data folder, else the service's answer without the store).
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "audit/audit.h"
#include "cli/commands.h"
#include "incident/incident.h"
#include "privacy/detectors.h"
#include "privacy/keys.h"
#include "privacy/privacy.h"

namespace minpanel::cli {

// The flags of every incident subcommand, in a struct of its own so that the
// helpers below (outside the class) can take them.
struct IncidentFlags {
  std::string leaked;
  std::string accounts;
  std::string orgs;
  std::vector<std::string> maps;
  std::string out;
  std::string detected;
  std::string contained;
  std::string notified;
  incident::ReportOptions report;
  bool no_notices = false;
  // blast-radius and who-could-read
  CLI::App* blast = nullptr;
  CLI::App* who = nullptr;
  ConfigSources sources;
  std::string key;
  std::string from;
  std::string to;
  std::string subject;
  std::string project;
  bool allow_broken = false;
  bool verify_chain = false;
  // send
  CLI::App* send = nullptr;
  incident::SendOptions send_options;
  std::string auth_file;
};

struct IncidentCommand::Flags : IncidentFlags {};

namespace {

void AddSendFlags(CLI::App* incident, IncidentFlags& flags) {
  incident::SendOptions& options = flags.send_options;
  flags.send = incident->add_subcommand(
      "send",
      "deliver the notices an earlier crossref or blast-radius wrote into --out over SMTP, "
      "rate-limited and resumable (the state file --out/send-state records each one sent)");
  flags.send->add_option("--out", options.folder, "the output folder holding notices/")
      ->required();
  flags.send
      ->add_option("--smtp", options.url,
                   "the server: smtp://host:587 (STARTTLS required) or smtps://host:465")
      ->required();
  flags.send->add_option("--sender", options.sender, "the envelope sender (MAIL FROM)")
      ->required();
  flags.send->add_option("--auth-file", flags.auth_file,
                         "a file (not readable by group or others) holding USER:PASSWORD; or "
                         "set MINPANEL_SMTP_USER and MINPANEL_SMTP_PASSWORD");
  flags.send->add_option("--ca-file", options.ca_file,
                         "PEM file of the CA that signed the server's certificate (a private "
                         "CA)");
  flags.send->add_flag("--insecure-localhost", options.insecure_localhost,
                       "no STARTTLS: only to a relay on 127.0.0.1, ::1 or localhost");
  flags.send
      ->add_option("--per-minute", options.per_minute,
                   "at most this many messages a minute (default " +
                       std::to_string(incident::kSendPerMinuteDefault) + ", at most " +
                       std::to_string(incident::kSendPerMinuteMax) + ")")
      ->capture_default_str();
  flags.send->add_flag("--dry-run", options.dry_run,
                       "list what would be sent (on stdout) and send nothing");
  flags.send->add_flag("--resend-uncertain", options.resend_uncertain,
                       "send again the notices a crash left `uncertain` (the server may "
                       "already have them)");
  flags.send->add_option("--data", flags.sources.data_folder,
                         "data folder: record the run in its audit log");
  flags.send->add_option("--config", flags.sources.config_file, "TOML configuration file");
}

}  // namespace

IncidentCommand::IncidentCommand(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  CLI::App* incident = app.add_subcommand(
      "incident",
      "incident response: a leaked file against your accounts, or a key's blast radius from the "
      "audit log");
  incident->require_subcommand(1);
  crossref_ = incident->add_subcommand(
      "crossref",
      "match a leaked file (CSV, JSON, JSON lines) to the accounts file; write the impact, "
      "summaries, regulator report draft and notices into --out (docs/incident.md)");
  Flags& flags = *flags_;
  // The report flags crossref and blast-radius share; blast-radius names
  // the From: address --from-address, since its --from opens the window.
  const auto add_report_flags = [&flags](CLI::App* command, const std::string& from_flag) {
    command->add_option("--company", flags.report.company, "the company's name")->required();
    command
        ->add_option("--domain", flags.report.domain,
                     "bare domain people are told to type by hand (example.com)")
        ->required();
    command->add_option("--contact", flags.report.contact,
                        "contact point (DPO email or phone; no links)");
    command->add_option(from_flag, flags.report.from_address,
                        "From: address of the notices (default security@DOMAIN)");
    command->add_option("--description", flags.report.description,
                        "nature of the breach, for the regulator report");
    command->add_option("--measure", flags.report.measures,
                        "a measure taken or proposed, repeatable");
    command->add_option("--detected", flags.detected, "when the breach was detected (ISO-8601)");
    command->add_option("--contained", flags.contained, "when it was contained (ISO-8601)");
    command->add_option("--notified", flags.notified, "when the regulator was notified (ISO-8601)");
    command->add_option("--templates", flags.report.templates_folder,
                        "folder of edited notice templates: en/user.txt, en/admin.txt, "
                        "es/user.txt, es/admin.txt");
    command->add_flag("--no-notices", flags.no_notices, "write no notices");
    command
        ->add_option("--out", flags.out,
                     "output folder, created 0700 (must not exist or be empty); outside the data "
                     "folder: it holds personal data")
        ->required();
  };
  crossref_->add_option("--leaked", flags.leaked, "the leaked file")->required();
  crossref_->add_option("--accounts", flags.accounts, "the accounts export")->required();
  crossref_->add_option("--orgs", flags.orgs, "the organisations export (ids, names, admins)");
  crossref_->add_option("--map", flags.maps,
                        "FILE.COLUMN=KIND, repeatable: what a column holds (FILE leaked, "
                        "accounts or orgs; KIND e.g. user_id, email, org_id, ignore)");
  add_report_flags(crossref_, "--from");
  crossref_->add_option("--data", flags.sources.data_folder,
                        "data folder: record the run in its audit log, and refuse an --out "
                        "inside it");
  crossref_->add_option("--config", flags.sources.config_file, "TOML configuration file");

  flags.blast = incident->add_subcommand(
      "blast-radius",
      "what a key read and exported between --from and --to, from the audit log (chain "
      "verified): every record, the exact subjects whose data left and their property keys; "
      "the impact, summaries, regulator report draft and, with --accounts, notices into --out");
  flags.sources.AddFlags(flags.blast, false);
  flags.blast->add_option("--key", flags.key, "the key: mpk_..., secret:<project id> or local")
      ->required();
  flags.blast->add_option("--from", flags.from, "start of the window, ISO-8601 (inclusive)")
      ->required();
  flags.blast->add_option("--to", flags.to, "end of the window, ISO-8601 (exclusive)")->required();
  flags.blast->add_option("--accounts", flags.accounts,
                          "your accounts export: its user ids (the distinct ids your SDKs "
                          "send) are pseudonymised with the project's key to find the people");
  flags.blast->add_option("--orgs", flags.orgs, "the organisations export (ids, names, admins)");
  flags.blast->add_option("--map", flags.maps, "accounts.COLUMN=KIND or orgs.COLUMN=KIND");
  flags.blast->add_flag("--allow-broken", flags.allow_broken,
                        "report on the records before a broken chain instead of refusing");
  flags.blast->add_flag("--verify-chain", flags.verify_chain,
                        "walk and verify the whole audit chain (every record, every anchor) "
                        "instead of reading the key's records through the key index");
  add_report_flags(flags.blast, "--from-address");

  flags.who = incident->add_subcommand(
      "who-could-read",
      "the keys whose project, scopes, limits and validity reach one subject, and the exports "
      "that carried it (JSON on stdout)");
  flags.sources.AddFlags(flags.who, false);
  flags.who->add_option("--subject", flags.subject, "the person's distinct id (raw, or psn_...)")
      ->required();
  flags.who->add_option("--project", flags.project, "project name")->required();
  flags.who->add_option("--from", flags.from, "only keys valid after, ISO-8601");
  flags.who->add_option("--to", flags.to, "only keys valid before, ISO-8601");
  flags.who->add_flag("--allow-broken", flags.allow_broken,
                      "report on the records before a broken chain instead of refusing");
  AddSendFlags(incident, flags);
}

IncidentCommand::~IncidentCommand() = default;

bool IncidentCommand::parsed() const {
  return crossref_->parsed() || flags_->blast->parsed() || flags_->who->parsed() ||
         flags_->send->parsed();
}

namespace {

std::optional<std::string> Given(const std::string& text) {
  return text.empty() ? std::nullopt : std::optional<std::string>(text);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Result<incident::Table> ReadInput(const std::string& path, std::string_view name) {
  const auto start = std::chrono::steady_clock::now();
  Result<incident::Table> table = incident::ReadTable(path);
  if (table.ok()) {
    std::fprintf(stderr, "%s: %zu rows read, %zu rejected, %zu columns (%s, %.2f s)\n",
                 std::string(name).c_str(), table->row_count(), table->rejected().size(),
                 table->columns().size(), std::string(FileFormatName(table->format())).c_str(),
                 SecondsSince(start));
  }
  return table;
}

void PrintRecognition(std::string_view name, const incident::Recognition& recognition) {
  for (const incident::ColumnRecognition& column : recognition.columns) {
    std::fprintf(stderr, "  %s.%s: %s (%s, %.2f)%s%s\n", std::string(name).c_str(),
                 column.name.c_str(), std::string(ColumnKindName(column.kind)).c_str(),
                 std::string(RecognitionSourceName(column.source)).c_str(), column.confidence,
                 column.note.empty() ? "" : "; ", column.note.c_str());
  }
}

Result<std::vector<incident::ColumnOverride>> ParseOverrides(const IncidentFlags& flags) {
  if (flags.maps.size() > incident::kMapOverridesMax) {
    return Status::ResourceExhausted("more --map flags than kMapOverridesMax (" +
                                     std::to_string(incident::kMapOverridesMax) + ")");
  }
  std::vector<incident::ColumnOverride> overrides;
  for (const std::string& map : flags.maps) {
    MP_ASSIGN_OR_RETURN(incident::ColumnOverride parsed_map, incident::ParseColumnOverride(map));
    overrides.push_back(std::move(parsed_map));
  }
  return overrides;
}

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<incident::ReportOptions> MakeReportOptions(const IncidentFlags& flags) {
  incident::ReportOptions report = flags.report;
  report.notices = !flags.no_notices;
  report.now_s = NowSeconds();
  MP_ASSIGN_OR_RETURN(
      report.timeline,
      incident::MakeTimeline(Given(flags.detected), Given(flags.contained), Given(flags.notified)));
  if (report.from_address.empty()) {
    report.from_address = "security@" + report.domain;
  }
  MP_RETURN_IF_ERROR(incident::ValidateReportOptions(report));
  return report;
}

// The output holds personal data: never inside the data folder, which
// backups copy and the server's users can read.
Status CheckOutsideData(const std::string& out, const std::string& data_folder) {
  std::error_code error;
  const std::filesystem::path data = std::filesystem::weakly_canonical(data_folder, error);
  const std::filesystem::path folder = std::filesystem::weakly_canonical(out, error);
  const std::string data_text = data.string() + "/";
  if (!data.empty() && (folder.string() + "/").starts_with(data_text)) {
    return Status::InvalidArgument("--out " + out + ": inside the data folder " + data_folder +
                                   "; write the incident's personal data elsewhere");
  }
  return Status::Ok();
}

// Records an incident run in the audit log (what was run and its counts,
// never the personal data); while a running server holds the log, through
// its queue (RecordOrQueue).
void RecordRun(const service::Config& config, audit::AuditEntry entry) {
  entry.key = "local";
  entry.route = "cli";
  // The run just read the log through its key index: opening it walks only
  // what the index does not cover (docs/formats/audit.md, "Key index").
  audit::Options options;
  options.open_from_index = true;
  auto log = audit::AuditLog::Open(config.data_folder + "/audit", NewPosixFileSystem(),
                                   NewSystemClock(), options);
  if (!log.ok()) {
    RecordOrQueue(config, log.status(), std::move(entry), "this run");
    return;
  }
  const auto appended = (*log)->Append(std::move(entry));
  if (!appended.ok()) {
    std::fprintf(stderr, "minpanel: WARNING: audit log: %s\n",
                 appended.status().ToString().c_str());
  }
}

Result<int64_t> ParseWindowEdge(const std::string& text, std::string_view flag, int64_t absent) {
  if (text.empty()) {
    return absent;
  }
  MP_ASSIGN_OR_RETURN(const int64_t seconds, incident::ParseIsoTime(text, flag));
  return seconds * 1000;
}

// Subject pseudonym -> the accounts file's user id, for every account and
// every key version of the projects the exports came from.
Result<std::map<std::string, std::string>> AccountsBySubject(const service::Config& config,
                                                             const incident::Table& accounts,
                                                             const incident::Recognition& columns,
                                                             const std::set<uint32_t>& projects) {
  std::map<std::string, std::string> by_subject;
  const std::vector<size_t> id_columns = columns.ColumnsOf(incident::ColumnKind::kUserId);
  if (id_columns.empty()) {
    return Status::InvalidArgument(
        "--accounts: no column recognised as the user id (the distinct id your SDKs send); "
        "name it with --map accounts.COLUMN=user_id");
  }
  MP_ASSIGN_OR_RETURN(std::unique_ptr<privacy::KeyStore> keys,
                      privacy::KeyStore::Open(service::KeyFolder(config), NewPosixFileSystem()));
  for (const uint32_t project_id : projects) {
    MP_ASSIGN_OR_RETURN(const std::vector<privacy::ProjectKey> versions,
                        keys->AllVersions(project_id));
    std::vector<privacy::Policy> policies;
    for (const privacy::ProjectKey& version : versions) {
      policies.emplace_back(version);
    }
    for (size_t row = 0; row < accounts.row_count(); ++row) {
      const std::string_view user_id = accounts.Cell(row, id_columns.front());
      if (user_id.empty()) {
        continue;
      }
      for (const privacy::Policy& policy : policies) {
        by_subject.emplace(FormatPseudonym(policy.Pseudonym(user_id)), std::string(user_id));
      }
    }
  }
  return by_subject;
}

void PrintBlast(const incident::BlastRadius& blast) {
  std::fprintf(stderr,
               "audit log: %llu records, chain %s (%s: %llu records walked, %llu anchors "
               "checked, %llu of the key's records checked where they lie%s)%s%s\n"
               "key %s: %llu records in the window: %zu exports (%zu without an end), %zu "
               "queries, %zu other acts; %zu subjects, %zu property keys\n",
               static_cast<unsigned long long>(blast.chain.records),
               blast.chain.ok ? "verified" : "BROKEN",
               blast.chain.full_walk ? "whole chain walked" : "key index",
               static_cast<unsigned long long>(blast.chain.records_walked),
               static_cast<unsigned long long>(blast.chain.anchors_checked),
               static_cast<unsigned long long>(blast.chain.indexed_records_checked),
               blast.chain.index_rebuilt ? "; index rebuilt" : "", blast.chain.ok ? "" : ": ",
               blast.chain.problem.c_str(), blast.key.c_str(),
               static_cast<unsigned long long>(blast.records_of_key), blast.exports.size(),
               blast.open_exports.size(), blast.queries.size(), blast.other_acts.size(),
               blast.subjects.size(), blast.properties.size());
  for (const incident::Warning& warning : blast.warnings) {
    std::fprintf(stderr, "WARNING: %s\n", warning.message.c_str());
  }
}

int RunBlastRadius(const IncidentFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  auto config = flags.sources.Build();
  auto overrides = ParseOverrides(flags);
  auto report = MakeReportOptions(flags);
  auto from_ms = ParseWindowEdge(flags.from, "--from", 0);
  auto to_ms = ParseWindowEdge(flags.to, "--to", 0);
  for (const Status& status :
       {config.status(), overrides.status(), report.status(), from_ms.status(), to_ms.status()}) {
    if (!status.ok()) {
      return Fail(status);
    }
  }
  if (Status outside = CheckOutsideData(flags.out, config->data_folder); !outside.ok()) {
    return Fail(outside);
  }
  auto file_system = NewPosixFileSystem();
  incident::BlastOptions options;
  options.audit_folder = config->data_folder + "/audit";
  options.key = flags.key;
  options.from_ms = *from_ms;
  options.to_ms = *to_ms;
  options.allow_broken = flags.allow_broken;
  options.verify_chain = flags.verify_chain;
  if (auto key = service::AuditSigningKey(*config, false); key.ok()) {
    options.audit_public_key = key->public_key;  // the checkpoints' signatures are checked
  }
  auto blast = incident::ComputeBlastRadius(options, *file_system);
  if (!blast.ok()) {
    return Fail(blast.status());
  }
  std::fprintf(stderr, "audit log read (%.2f s)\n", SecondsSince(start));
  PrintBlast(*blast);
  std::set<uint32_t> projects;
  for (const incident::BlastRecord& record : blast->exports) {
    projects.insert(record.projects.begin(), record.projects.end());
  }
  auto accounts = flags.accounts.empty() ? incident::ParseTable("user_id\n")
                                         : ReadInput(flags.accounts, "accounts");
  if (!accounts.ok()) {
    return Fail(accounts.status());
  }
  const privacy::Detectors detectors;
  auto account_columns = incident::RecognizeColumns(*accounts, "accounts", *overrides, detectors);
  if (!account_columns.ok()) {
    return Fail(account_columns.status());
  }
  auto by_subject =
      flags.accounts.empty()
          ? Result<std::map<std::string, std::string>>(std::map<std::string, std::string>{})
          : AccountsBySubject(*config, *accounts, *account_columns, projects);
  if (!by_subject.ok()) {
    return Fail(by_subject.status());
  }
  std::optional<incident::Table> orgs;
  std::optional<incident::Recognition> org_columns;
  if (!flags.orgs.empty()) {
    auto read = ReadInput(flags.orgs, "orgs");
    auto recognised = read.ok() ? incident::RecognizeColumns(*read, "orgs", *overrides, detectors)
                                : Result<incident::Recognition>(read.status());
    if (!recognised.ok()) {
      return Fail(recognised.status());
    }
    orgs = std::move(*read);
    org_columns = std::move(*recognised);
  }
  auto tables = incident::MakeBlastTables(*blast, *by_subject);
  if (!tables.ok()) {
    return Fail(tables.status());
  }
  incident::CrossrefInput input{
      &tables->leaked,   &tables->leaked_columns, &*accounts,
      &*account_columns, orgs ? &*orgs : nullptr, org_columns ? &*org_columns : nullptr};
  auto impact = incident::Crossref(input);
  if (!impact.ok()) {
    return Fail(impact.status());
  }
  report->extra_files.emplace_back("blast-radius.json",
                                   incident::BlastRadiusJson(*blast, report->now_s));
  auto files = incident::WriteOutputs(flags.out, input, *impact, *report);
  if (!files.ok()) {
    return Fail(files.status());
  }
  std::fprintf(stderr,
               "%zu subjects, %zu of them accounts in --accounts; wrote %zu files to %s: %llu "
               "user notices, %llu admin notices; total %.2f s\n",
               blast->subjects.size(), impact->accounts.size(), files->written.size(),
               flags.out.c_str(), static_cast<unsigned long long>(files->user_notices),
               static_cast<unsigned long long>(files->admin_notices), SecondsSince(start));
  audit::AuditEntry entry;
  entry.act = "incident.blast_radius";
  entry.target = flags.key;
  entry.projects.assign(projects.begin(), projects.end());
  entry.rows = blast->records_of_key;
  entry.subjects = blast->subjects.size();
  entry.outcome = blast->chain.ok ? "ok" : "chain broken: " + blast->chain.problem;
  RecordRun(*config, std::move(entry));
  return kExitOk;
}

// With no server on the data folder, a Service opened for the moment
// answers (the store consulted) and records the run itself; while a server
// holds the folder, the answer comes from the files it keeps current,
// without the store, and the run is recorded through the log's queue. The
// running server answers in full: POST /api/incident/who-could-read.
int RunWhoCouldRead(const IncidentFlags& flags) {
  auto config = flags.sources.Build();
  auto from_ms = ParseWindowEdge(flags.from, "--from", 0);
  auto to_ms = ParseWindowEdge(flags.to, "--to", INT64_MAX);
  for (const Status& status : {config.status(), from_ms.status(), to_ms.status()}) {
    if (!status.ok()) {
      return Fail(status);
    }
  }
  if (*from_ms >= *to_ms) {
    return Fail(Status::InvalidArgument("--from must be before --to"));
  }
  service::WhoCouldReadRequest request;
  request.distinct_id = flags.subject;
  request.from_ms = *from_ms;
  request.to_ms = *to_ms;
  request.allow_broken = flags.allow_broken;
  auto file_system = NewPosixFileSystem();
  auto clock = NewSystemClock();
  const auto no_project = [&] {
    return Fail(Status::NotFound("--project: no project '" + flags.project +
                                 "' (see minpanel project list)"));
  };
  std::optional<Result<service::WhoCouldReadAnswer>> answer;
  auto service = service::Service::Open(*config, file_system, clock);
  if (service.ok()) {
    const std::optional<service::Project> project =
        (*service)->projects().FindByName(flags.project);
    if (!project.has_value()) {
      return no_project();
    }
    // What the store holds is what its retention rules leave (as
    // OpenServiceToRead does for the other reads of a stopped folder).
    if (Status retention = (*service)->ApplyRetention(); !retention.ok()) {
      return Fail(Status(retention.code(),
                         "retention rules could not be applied before reading the store: " +
                             retention.message()));
    }
    answer = (*service)->WhoCouldRead(service::LocalAccess(*project), request);
    if (Status closed = (*service)->Close(); !closed.ok() && answer->ok()) {
      return Fail(closed);
    }
  } else if (service.status().code() != StatusCode::kUnavailable) {
    return Fail(service.status());
  }
  std::optional<service::Project> held_project;
  if (!answer.has_value()) {
    auto projects = service::OpenProjects(*config, file_system, clock);
    if (!projects.ok()) {
      return Fail(projects.status());
    }
    held_project = (*projects)->FindByName(flags.project);
    if (!held_project.has_value()) {
      return no_project();
    }
    answer = service::WhoCouldReadWithoutStore(
        *config, *held_project, request,
        "the server holds the data folder: ask it (POST /api/incident/who-could-read, an admin "
        "key) or stop it and run again",
        file_system, clock);
  }
  if (!answer->ok()) {
    return Fail(answer->status());
  }
  const service::WhoCouldReadAnswer& who = answer->value();
  if (who.no_pseudonym_key) {
    std::fprintf(stderr,
                 "the project has no pseudonym key yet: no event of anyone was stored in it\n");
  }
  for (const std::string& warning : who.warnings) {
    std::fprintf(stderr, "WARNING: %s\n", warning.c_str());
  }
  std::fputs(who.json.c_str(), stdout);
  if (held_project.has_value()) {
    audit::AuditEntry entry;
    entry.act = "incident.who_could_read";
    entry.projects = {held_project->id};
    entry.rows = who.keys;
    RecordRun(*config, std::move(entry));
  }
  return kExitOk;
}

int RunCrossref(const IncidentFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  auto overrides = ParseOverrides(flags);
  if (!overrides.ok()) {
    return Fail(overrides.status());
  }
  auto report = MakeReportOptions(flags);
  if (!report.ok()) {
    return Fail(report.status());
  }
  std::optional<service::Config> config;
  if (!flags.sources.data_folder.empty() || !flags.sources.config_file.empty()) {
    auto built = flags.sources.Build();
    if (!built.ok()) {
      return Fail(built.status());
    }
    config = std::move(*built);
    if (Status outside = CheckOutsideData(flags.out, config->data_folder); !outside.ok()) {
      return Fail(outside);
    }
  }
  const privacy::Detectors detectors;
  // The leaked file's first reading (the recognition sample) needs nothing
  // of the accounts: it runs on its own thread while they are read,
  // recognised and indexed; its outcome is looked at where it was before.
  std::optional<Result<incident::Recognition>> leaked_recognition;
  double leaked_recognise_s = 0;
  std::thread leaked_reader([&] {
    const auto leaked_start = std::chrono::steady_clock::now();
    leaked_recognition = incident::RecogniseLeakedFile(flags.leaked, *overrides, detectors);
    leaked_recognise_s = SecondsSince(leaked_start);
  });
  struct Joiner {
    std::thread& thread;
    ~Joiner() {
      if (thread.joinable()) {
        thread.join();
      }
    }
  };
  Joiner join_leaked_reader{leaked_reader};
  auto accounts = ReadInput(flags.accounts, "accounts");
  if (!accounts.ok()) {
    return Fail(accounts.status());
  }
  std::optional<incident::Table> orgs;
  if (!flags.orgs.empty()) {
    auto read = ReadInput(flags.orgs, "orgs");
    if (!read.ok()) {
      return Fail(read.status());
    }
    orgs = std::move(*read);
  }
  const auto recognise_start = std::chrono::steady_clock::now();
  auto account_columns =
      incident::RecognizeColumnKinds(*accounts, "accounts", *overrides, detectors);
  if (!account_columns.ok()) {
    return Fail(account_columns.status());
  }
  std::optional<incident::Recognition> org_columns;
  if (orgs.has_value()) {
    auto recognised = incident::RecognizeColumnKinds(*orgs, "orgs", *overrides, detectors);
    if (!recognised.ok()) {
      return Fail(recognised.status());
    }
    org_columns = std::move(*recognised);
  }
  std::fprintf(stderr, "accounts and orgs columns recognised (%.2f s)\n",
               SecondsSince(recognise_start));
  // Their every-cell scan (cards, IBANs, credentials: what the reports say
  // of these files) runs beside the cross-reference, which looks at their
  // columns' kinds only: it fills the core that making the index and
  // Finish leave idle. Its counts are added once both are done.
  incident::Recognition account_scan;
  incident::Recognition org_scan;
  double scan_s = 0;
  std::thread scanner([&] {
    const auto scan_start = std::chrono::steady_clock::now();
    incident::ScanTable(*accounts, detectors, &account_scan);
    if (orgs.has_value()) {
      incident::ScanTable(*orgs, detectors, &org_scan);
    }
    scan_s = SecondsSince(scan_start);
  });
  Joiner join_scanner{scanner};
  // The leaked file is streamed, twice: its memory does not grow with it.
  incident::CrossrefInput input{
      nullptr, nullptr, &*accounts, &*account_columns, orgs ? &*orgs : nullptr,
      org_columns ? &*org_columns : nullptr};
  leaked_reader.join();
  if (!leaked_recognition->ok()) {
    return Fail(leaked_recognition->status());
  }
  auto streamed = incident::CrossrefRecognisedLeakedFile(
      flags.leaked, &input, std::move(**leaked_recognition), detectors);
  if (!streamed.ok()) {
    return Fail(streamed.status());
  }
  (*streamed)->recognise_s = leaked_recognise_s;
  scanner.join();
  incident::AddScan(std::move(account_scan), &*account_columns);
  if (org_columns.has_value()) {
    incident::AddScan(std::move(org_scan), &*org_columns);
  }
  std::fprintf(stderr,
               "accounts and orgs scanned for cards, IBANs and credentials (beside the "
               "cross-reference, %.2f s)\n",
               scan_s);
  const incident::Table& leaked = (*streamed)->leaked;
  std::fprintf(stderr, "leaked: %llu rows read, %zu rejected, %zu columns (%s, streamed)\n",
               static_cast<unsigned long long>(leaked.rows_kept()), leaked.rejected().size(),
               leaked.columns().size(), std::string(FileFormatName(leaked.format())).c_str());
  std::fprintf(stderr,
               "columns recognised (leaked file's first reading, beside the accounts', %.2f s):\n",
               (*streamed)->recognise_s);
  PrintRecognition("leaked", (*streamed)->leaked_columns);
  PrintRecognition("accounts", *account_columns);
  if (org_columns.has_value()) {
    PrintRecognition("orgs", *org_columns);
  }
  const incident::Impact* impact = &(*streamed)->impact;
  std::fprintf(stderr,
               "matched (leaked file's second reading, %.2f s): %zu affected accounts, %zu "
               "organisations; leaked rows %llu = "
               "%llu matched + %llu org only + %llu unmatched + %llu rejected\n",
               (*streamed)->match_s, impact->accounts.size(), impact->orgs.size(),
               static_cast<unsigned long long>(impact->leaked_rows_seen),
               static_cast<unsigned long long>(impact->leaked_rows_matched_account),
               static_cast<unsigned long long>(impact->leaked_rows_matched_org_only),
               static_cast<unsigned long long>(impact->leaked_rows_unmatched),
               static_cast<unsigned long long>(impact->leaked_rows_rejected));
  std::fprintf(stderr, "  of which the accounts' index %.2f s, the totals and file order %.2f s\n",
               (*streamed)->index_s, (*streamed)->finish_s);
  const auto write_start = std::chrono::steady_clock::now();
  auto files = incident::WriteOutputs(flags.out, input, *impact, *report);
  if (!files.ok()) {
    return Fail(files.status());
  }
  std::fprintf(stderr,
               "wrote %zu files to %s (%.2f s): %llu user notices, %llu admin notices, "
               "%llu accounts with no usable address; total %.2f s\n",
               files->written.size(), flags.out.c_str(), SecondsSince(write_start),
               static_cast<unsigned long long>(files->user_notices),
               static_cast<unsigned long long>(files->admin_notices),
               static_cast<unsigned long long>(files->accounts_without_address),
               SecondsSince(start));
  if (impact->warnings.size() + impact->warnings_not_listed > 0) {
    std::fprintf(stderr, "%zu warnings (listed in impact.json)\n",
                 impact->warnings.size() + static_cast<size_t>(impact->warnings_not_listed));
  }
  if (config.has_value()) {
    audit::AuditEntry entry;
    entry.act = "incident.crossref";
    entry.rows = impact->leaked_rows_seen;
    entry.subjects = impact->accounts.size();
    RecordRun(*config, std::move(entry));
  }
  return kExitOk;
}

// The login, from a file only its owner can read or from the environment:
// never from the command line (other users see it in the process list).
Result<std::optional<incident::SmtpAuth>> ReadSmtpAuth(const std::string& auth_file) {
  const char* user = std::getenv("MINPANEL_SMTP_USER");
  const char* password = std::getenv("MINPANEL_SMTP_PASSWORD");
  const bool from_environment = user != nullptr || password != nullptr;
  if (!auth_file.empty() && from_environment) {
    return Status::InvalidArgument(
        "--auth-file and MINPANEL_SMTP_USER / MINPANEL_SMTP_PASSWORD: give the login one way");
  }
  if (from_environment) {
    if (user == nullptr || password == nullptr || *user == '\0' || *password == '\0') {
      return Status::InvalidArgument(
          "MINPANEL_SMTP_USER and MINPANEL_SMTP_PASSWORD: set both, or neither");
    }
    return std::optional<incident::SmtpAuth>(incident::SmtpAuth{user, password});
  }
  if (auth_file.empty()) {
    return std::optional<incident::SmtpAuth>();
  }
  struct stat info {};
  if (::stat(auth_file.c_str(), &info) != 0) {
    return Status::IoError("--auth-file " + auth_file + ": " + std::strerror(errno));
  }
  if ((info.st_mode & 077) != 0) {
    return Status::PermissionDenied("--auth-file " + auth_file +
                                    ": readable by group or others; chmod 600 it");
  }
  std::ifstream file(auth_file, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto auth = incident::ParseSmtpAuth(text);
  if (!auth.ok()) {
    return Status::InvalidArgument("--auth-file " + auth_file + ": " + auth.status().message());
  }
  return std::optional<incident::SmtpAuth>(std::move(*auth));
}

std::string SendCounts(const incident::SendReport& report) {
  const auto count = [](uint64_t value) { return std::to_string(value); };
  return "sent " + count(report.sent) + ", refused " + count(report.refused) + ", unsent " +
         count(report.unsent) + ", uncertain " + count(report.uncertain) + ", already sent " +
         count(report.already_sent) + ", already refused " + count(report.already_refused) +
         ", changed after sent " + count(report.changed_after_sent) + ", would send " +
         count(report.would_send) + " (of " + count(report.notices) + " notices)";
}

int RunSend(const IncidentFlags& flags) {
  std::optional<service::Config> config;
  if (!flags.sources.data_folder.empty() || !flags.sources.config_file.empty()) {
    auto built = flags.sources.Build();
    if (!built.ok()) {
      return Fail(built.status());
    }
    config = std::move(*built);
  }
  incident::SendOptions options = flags.send_options;
  auto auth = ReadSmtpAuth(flags.auth_file);
  if (!auth.ok()) {
    return Fail(auth.status());
  }
  options.auth = std::move(*auth);
  options.progress = [](std::string_view line) {
    std::fprintf(stdout, "%.*s\n", static_cast<int>(line.size()), line.data());
    std::fflush(stdout);
  };
  auto report = incident::SendNotices(options);
  if (!report.ok()) {
    return Fail(report.status());
  }
  const std::string counts = SendCounts(*report);
  std::fprintf(stderr, "%s%s\n", options.dry_run ? "dry run, nothing sent: " : "", counts.c_str());
  if (report->state_torn_tail_bytes > 0) {
    std::fprintf(stderr, "the state file ended in a torn line (%llu bytes, a crash while it was "
                 "written): cut off\n",
                 static_cast<unsigned long long>(report->state_torn_tail_bytes));
  }
  if (report->uncertain > 0) {
    std::fprintf(stderr,
                 "WARNING: %llu notices are uncertain (a run stopped between handing them to the "
                 "server and recording the outcome): look for their Message-ID in the server's "
                 "log; --resend-uncertain sends them again\n",
                 static_cast<unsigned long long>(report->uncertain));
  }
  if (report->changed_after_sent > 0) {
    std::fprintf(stderr,
                 "WARNING: %llu notices were edited after they were sent: not sent again\n",
                 static_cast<unsigned long long>(report->changed_after_sent));
  }
  if (config.has_value()) {
    audit::AuditEntry entry;
    entry.act = options.dry_run ? "incident.send_dry_run" : "incident.send";
    entry.rows = report->sent;
    entry.bytes = report->bytes_sent;
    entry.outcome = report->stopped.ok() ? counts
                                         : "stopped: " + report->stopped.ToString() + "; " + counts;
    RecordRun(*config, std::move(entry));
  }
  if (!report->stopped.ok()) {
    return Fail(report->stopped);
  }
  return report->refused + report->unsent > 0 ? kExitSomeRejected : kExitOk;
}

}  // namespace

int IncidentCommand::Run() const {
  if (flags_->send->parsed()) {
    return RunSend(*flags_);
  }
  if (flags_->blast->parsed()) {
    return RunBlastRadius(*flags_);
  }
  if (flags_->who->parsed()) {
    return RunWhoCouldRead(*flags_);
  }
  return RunCrossref(*flags_);
}

}  // namespace minpanel::cli
