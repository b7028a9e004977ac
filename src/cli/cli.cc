#include "cli/cli.h"

#include <cstdio>
#include <iostream>
#include <iterator>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/trace_command.h"
#include "query/query.h"
#include "server/server.h"
#include "service/service.h"

namespace minpanel::cli {
namespace {

constexpr std::string_view kDemoProject = "demo";

std::string ProjectJson(const service::Project& project, const std::string* secret) {
  std::string json = "{\"id\":" + std::to_string(project.id) + ",\"name\":";
  query::AppendJsonString(project.name, &json);
  json += ",\"token\":\"" + project.token + "\"";
  if (secret != nullptr) {
    json += ",\"secret\":\"" + *secret + "\"";
  }
  json += ",\"time_zone\":";
  query::AppendJsonString(project.time_zone, &json);
  json += ",\"domains\":[";
  for (size_t domain_idx = 0; domain_idx < project.domains.size(); ++domain_idx) {
    json += domain_idx == 0 ? "" : ",";
    query::AppendJsonString(project.domains[domain_idx], &json);
  }
  return json + "],\"min_group_size\":" + std::to_string(project.min_group_size) + "}";
}

// `serve --demo`: the demo project exists after this (its creation
// recorded in the audit log); its secret, shown once, is written to a 0600
// file beside the data folder.
Status EnsureDemoProject(service::Service& service, const service::Config& config,
                         std::string* token, std::string* secret_path) {
  *secret_path = config.data_folder + ".demo-secret";
  if (auto existing = service.projects().FindByName(kDemoProject)) {
    *token = existing->token;
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(service::ProjectWithSecret created,
                      service.projects().Create(kDemoProject, "UTC"));
  // Recorded as `minpanel project create` records its act (the service
  // holds the log here, so it appends directly).
  audit::AuditEntry entry;
  entry.act = "project.create";
  entry.target = std::to_string(created.project.id);
  entry.projects = {created.project.id};
  MP_RETURN_IF_ERROR(service.Audit(service::LocalAccess(created.project), std::move(entry)));
  MP_RETURN_IF_ERROR(
      NewPosixFileSystem()->WriteFileAtomically(*secret_path, created.secret + "\n", 0600));
  *token = created.project.token;
  std::cout << "Created the demo project. Its secret (shown this once): " << created.secret << "\n";
  return Status::Ok();
}

// The URL a local client reaches a listener at.
std::string LocalUrl(const std::string& listen, bool tls, uint16_t port) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host == "::") {
    host = "127.0.0.1";
  }
  return (tls ? "https://" : "http://") + host + ":" + std::to_string(port);
}

void PrintWelcome(const service::Config& config, const server::Server& server,
                  const std::string& token, const std::string& secret_path) {
  const std::string url = LocalUrl(config.listen, !config.tls.cert_file.empty(), server.port());
  // With listen_api, reads and the dashboard are on the API listener.
  const std::string api_url =
      config.listen_api.empty()
          ? url
          : LocalUrl(config.listen_api, !config.tls_api.cert_file.empty(), server.api_port());
  std::cout << "minpanel is listening on " << url << "\n"
            << "  demo project token: " << token << "\n"
            << "  demo project secret: in " << secret_path << " (0600)\n"
            << "  send an event:\n"
            << "    curl -s '" << url << "/track?verbose=1' --data-urlencode "
            << "'data={\"event\":\"Signed Up\",\"properties\":{\"token\":\"" << token
            << "\",\"distinct_id\":\"user-1\",\"plan\":\"pro\"}}'\n"
            << "  read it back:\n"
            << "    curl -s -u \"$(cat " << secret_path << "):\" '" << api_url
            << "/api/2.0/export?from_date=2020-01-01&to_date=2030-12-31'\n"
            << std::flush;
}

int Serve(const ConfigSources& sources, bool demo) {
  DisableCoreDumps();
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  auto service = service::Service::Open(*config, NewPosixFileSystem(), NewSystemClock());
  if (!service.ok()) {
    return Fail(service.status());
  }
  std::string token;
  std::string secret_path;
  if (demo) {
    const Status created = EnsureDemoProject(**service, *config, &token, &secret_path);
    if (!created.ok()) {
      return Fail(created);
    }
  }
  auto server =
      server::Server::Start(*config, service->get(), [sources] { return sources.Build(); });
  if (!server.ok()) {
    return Fail(server.status());
  }
  if (demo) {
    PrintWelcome(*config, **server, token, secret_path);
  }
  if (config->listen_api.empty()) {
    spdlog::info("listening on {} (data {}, keys {})", config->listen, config->data_folder,
                 service::KeyFolder(*config));
  } else {
    spdlog::info("listening on {} for ingestion and on {} for the read and admin API (data {}, "
                 "keys {})",
                 config->listen, config->listen_api, config->data_folder,
                 service::KeyFolder(*config));
  }
  const Status ran = (*server)->Run();
  if (!ran.ok()) {
    return Fail(ran);
  }
  spdlog::info("stopped cleanly");
  return 0;
}

// Records a `minpanel project …` act in the audit log, or leaves it to the
// running server's next reload (AuditLocally).
void AuditProjectAct(const ConfigSources& sources, std::string_view act, uint32_t project_id) {
  auto config = sources.Build();
  if (config.ok()) {
    AuditLocally(*config, act, std::to_string(project_id), project_id);
  }
}

// The project registry of the configured data folder; it works whether or
// not a server is running on it.
Result<std::unique_ptr<service::ProjectRegistry>> OpenRegistry(const ConfigSources& sources) {
  MP_ASSIGN_OR_RETURN(const service::Config config, sources.Build());
  return service::OpenProjects(config, NewPosixFileSystem(), NewSystemClock());
}

int ProjectCreate(const ConfigSources& sources, const std::string& name,
                  const std::string& time_zone, bool json) {
  auto projects = OpenRegistry(sources);
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto created = (*projects)->Create(name, time_zone);
  if (!created.ok()) {
    return Fail(created.status());
  }
  AuditProjectAct(sources, "project.create", created->project.id);
  if (json) {
    std::cout << ProjectJson(created->project, &created->secret) << "\n";
  } else {
    std::cout << "project " << created->project.name << " (id " << created->project.id << ")\n"
              << "  token:  " << created->project.token << "   (public, for SDKs)\n"
              << "  secret: " << created->secret << "   (shown once; for /import and reads)\n"
              << "A running server picks the project up on SIGHUP.\n";
  }
  return 0;
}

int ProjectList(const ConfigSources& sources, bool json) {
  auto projects = OpenRegistry(sources);
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  for (const service::Project& project : (*projects)->List()) {
    if (json) {
      std::cout << ProjectJson(project, nullptr) << "\n";
    } else {
      std::string domains;
      for (const std::string& domain : project.domains) {
        domains += (domains.empty() ? "" : ",") + domain;
      }
      std::cout << project.id << "\t" << project.name << "\t" << project.token << "\t"
                << project.time_zone << "\t" << (domains.empty() ? "-" : domains) << "\n";
    }
  }
  return 0;
}

// `project set-min-group-size NAME K`: k-suppression of the project's
// aggregate queries (docs/queries.md, "Small groups"); 0: none.
int ProjectSetMinGroupSize(const ConfigSources& sources, const std::string& name,
                           uint32_t min_group_size, bool json) {
  auto projects = OpenRegistry(sources);
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto updated = (*projects)->SetMinGroupSize(name, min_group_size);
  if (!updated.ok()) {
    return Fail(updated.status());
  }
  AuditProjectAct(sources, "project.set-min-group-size", updated->id);
  if (json) {
    std::cout << ProjectJson(*updated, nullptr) << "\n";
  } else {
    std::cout << "project " << name << ": minimum group size " << updated->min_group_size
              << "\nA running server picks the change up on SIGHUP.\n";
  }
  return 0;
}

// `project set-domains NAME [DOMAIN...]`: the sites whose Plausible events
// go to the project (none: no site).
int ProjectSetDomains(const ConfigSources& sources, const std::string& name,
                      const std::vector<std::string>& domains, bool json) {
  auto projects = OpenRegistry(sources);
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto updated = (*projects)->SetDomains(name, domains);
  if (!updated.ok()) {
    return Fail(updated.status());
  }
  AuditProjectAct(sources, "project.set-domains", updated->id);
  if (json) {
    std::cout << ProjectJson(*updated, nullptr) << "\n";
  } else {
    std::cout << "project " << name << ": " << updated->domains.size() << " Plausible site(s)";
    for (const std::string& domain : updated->domains) {
      std::cout << " " << domain;
    }
    std::cout << "\nA running server picks the change up on SIGHUP.\n";
  }
  return 0;
}

int ProjectRotate(const ConfigSources& sources, const std::string& name, bool json) {
  auto projects = OpenRegistry(sources);
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto rotated = (*projects)->RotateSecret(name);
  if (!rotated.ok()) {
    return Fail(rotated.status());
  }
  AuditProjectAct(sources, "project.rotate-secret", rotated->project.id);
  if (json) {
    std::cout << ProjectJson(rotated->project, &rotated->secret) << "\n";
  } else {
    std::cout << "new secret for " << name << ": " << rotated->secret
              << "\nThe old secret stops working when a running server reloads (SIGHUP).\n";
  }
  return 0;
}

// Printed when `project rotate-key` lacks --yes: the consequence, in full.
std::string RotateKeyConsequence(const std::string& name) {
  return "Replacing the pseudonym key of project '" + name +
         "' is an anonymisation step, not routine hygiene. Every person's new events get a "
         "different subject from their old ones: funnels, retention and unique counts across "
         "the rotation count each person twice, and an event retried across it without a "
         "32-hex insert id of the client's own may be stored twice. Events stored so far stay "
         "linkable to a person only through the old key, which is kept in the key folder as "
         "project-<id>.v<N>.key; with --destroy-old it and every older kept key are deleted "
         "instead, and those events can never again be tied to anyone, not even to erase them "
         "or to answer an access request. A running server uses the new key after SIGHUP. Run "
         "again with --yes to proceed.\n";
}

int ProjectRotateKey(const ConfigSources& sources, const std::string& name, bool destroy_old,
                     bool yes) {
  if (!yes) {
    std::cerr << RotateKeyConsequence(name);
    return kExitUsage;
  }
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto rotated =
      service::RotateProjectKey(*config, NewPosixFileSystem(), NewSystemClock(), name, destroy_old);
  if (!rotated.ok()) {
    return Fail(rotated.status());
  }
  AuditLocally(*config, "project.rotate-key", std::to_string(rotated->project.id),
               rotated->project.id);
  const auto& rotation = rotated->rotation;
  std::cout << "project " << name << ": pseudonym key replaced, version " << rotation.old_version
            << " -> " << rotation.new_version << "\n";
  if (destroy_old) {
    std::cout << "The replaced keys were destroyed (" << rotation.old_keys_destroyed
              << " kept before this one): events stored under them can no longer be linked "
                 "to anyone.\n";
  } else {
    std::cout << "The replaced key is kept as " << service::KeyFolder(*config) << "/project-"
              << rotated->project.id << ".v" << rotation.old_version
              << ".key: events stored under it stay linkable only through that file.\n";
  }
  std::cout << "A running server uses the new key after SIGHUP.\n";
  return 0;
}

// `minpanel project delete NAME --yes` (docs/security.md, "Project
// deletion"), in-process with the server stopped: the same deletion as
// POST /api/projects/<id>/delete, audited as the command line's.
int ProjectDelete(const ConfigSources& sources, const std::string& name, bool yes) {
  if (!yes) {
    std::cerr << "minpanel: project delete removes project " << name
              << "'s access keys, token, secret, events, profiles and saved reports for good "
                 "(its audit records stay). Run again with --yes to proceed.\n";
    return kExitUsage;
  }
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service =
      OpenServiceForCommand(*config, "ask the running server: POST /api/projects/<id>/delete");
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, name);
  if (!project.ok()) {
    return Fail(project.status());
  }
  auto deletion = (*service)->DeleteProject(service::LocalAccess(*project), name);
  const Status closed = (*service)->Close();
  if (!deletion.ok()) {
    return Fail(deletion.status());
  }
  if (!closed.ok()) {
    return Fail(closed);
  }
  std::cout << service::ProjectDeletionJson(*deletion) << "\n";
  return 0;
}

constexpr std::string_view kExitCodesHelp =
    "Exit codes: 0 success; 1 failure (an interrupted import can be resumed);\n"
    "2 usage error; 3 import finished but some records were rejected (see\n"
    "FILE.rejected.jsonl).";

constexpr std::string_view kImportHelp =
    "FILE is a JSON array of events or JSON lines ({\"event\":...,\"properties\":{...}}\n"
    "per line, as Mixpanel and minpanel export), optionally gzip-compressed.\n"
    "Progress is saved after each batch in FILE.import-state; a rerun resumes there\n"
    "(unless --restart) and the state is removed when done. Refused records are\n"
    "listed by line and reason in FILE.rejected.jsonl. A minpanel export re-imports\n"
    "as is: its psn_ ids and insert ids are kept, so nothing is pseudonymised twice\n"
    "or duplicated.";

// The flag values of every subcommand; only the parsed one is used.
struct Flags {
  ConfigSources sources;
  bool demo = false;
  bool destroy_old = false;
  bool yes = false;
  std::string name;
  std::string time_zone = "UTC";
  std::vector<std::string> domains;
  uint32_t min_group_size = 0;
  bool json = false;
  ImportOptions import;
  ExportCommandOptions export_options;
  std::string distinct_id;
  std::string dump_path;
  bool rewrite_all = false;
  std::string policy_path;
  std::string preview_project;
  QueryCommandOptions query;
  DataMapCommandOptions datamap;
};

struct Commands {
  CLI::App* serve = nullptr;
  CLI::App* create = nullptr;
  CLI::App* list = nullptr;
  CLI::App* rotate = nullptr;
  CLI::App* set_domains = nullptr;
  CLI::App* set_min_group_size = nullptr;
  CLI::App* rotate_key = nullptr;
  CLI::App* delete_project = nullptr;
  CLI::App* import = nullptr;
  CLI::App* export_command = nullptr;
  CLI::App* dump = nullptr;
  CLI::App* rewrite_segments = nullptr;
  CLI::App* policy_check = nullptr;
  CLI::App* policy_preview = nullptr;
  CLI::App* query = nullptr;
  CLI::App* datamap = nullptr;
  const AccessCommands* access = nullptr;
  const IncidentCommand* incident = nullptr;
  const TraceCommand* trace = nullptr;
  const ErasureCommands* erasure = nullptr;
  const BackupCommands* backup = nullptr;
};

void AddProjectCommands(CLI::App& app, Flags& flags, Commands& commands) {
  CLI::App* project = app.add_subcommand("project", "manage projects");
  project->require_subcommand(1);
  commands.create = project->add_subcommand("create", "create a project; prints its secret once");
  flags.sources.AddFlags(commands.create, false);
  commands.create->add_option("NAME", flags.name, "project name")->required();
  commands.create->add_option("--time-zone", flags.time_zone,
                              "IANA time zone for queries (default UTC)");
  commands.create->add_flag("--json", flags.json,
                            "print {\"name\",\"token\",\"secret\",...} as JSON");
  commands.list = project->add_subcommand("list", "list projects");
  flags.sources.AddFlags(commands.list, false);
  commands.list->add_flag("--json", flags.json, "one JSON object per line");
  commands.set_domains = project->add_subcommand(
      "set-domains",
      "set the sites (domains) whose Plausible events (POST /api/event) go to a project");
  flags.sources.AddFlags(commands.set_domains, false);
  commands.set_domains->add_option("NAME", flags.name, "project name")->required();
  commands.set_domains->add_option("DOMAIN", flags.domains,
                                   "site domains, e.g. example.com (none: remove every site)");
  commands.set_domains->add_flag("--json", flags.json, "print the project as JSON");
  commands.set_min_group_size = project->add_subcommand(
      "set-min-group-size",
      "withhold query cells with fewer than K distinct subjects (k-suppression; 0: none)");
  flags.sources.AddFlags(commands.set_min_group_size, false);
  commands.set_min_group_size->add_option("NAME", flags.name, "project name")->required();
  commands.set_min_group_size->add_option("K", flags.min_group_size, "minimum group size")
      ->required();
  commands.set_min_group_size->add_flag("--json", flags.json, "print the project as JSON");
  commands.rotate = project->add_subcommand("rotate-secret", "replace a project's secret");
  flags.sources.AddFlags(commands.rotate, false);
  commands.rotate->add_option("NAME", flags.name, "project name")->required();
  commands.rotate->add_flag("--json", flags.json, "print the project and its new secret as JSON");
  commands.rotate_key = project->add_subcommand(
      "rotate-key",
      "replace a project's pseudonym key: an anonymisation step (new subjects for everyone)");
  flags.sources.AddFlags(commands.rotate_key, false);
  commands.rotate_key->add_option("NAME", flags.name, "project name")->required();
  commands.rotate_key->add_flag(
      "--destroy-old", flags.destroy_old,
      "delete the replaced keys: events stored under them become permanently unlinkable");
  commands.rotate_key->add_flag("--yes", flags.yes,
                                "confirm; without it the command explains what it would do");
  commands.delete_project = project->add_subcommand(
      "delete",
      "delete a project: its keys, token, secret, events and profiles (its audit records stay)");
  flags.sources.AddFlags(commands.delete_project, false);
  commands.delete_project->add_option("NAME", flags.name, "project name")->required();
  commands.delete_project->add_flag("--yes", flags.yes,
                                    "confirm; without it the command says what it would remove");
}

void AddDataCommands(CLI::App& app, Flags& flags, Commands& commands) {
  commands.import = app.add_subcommand(
      "import", "import Mixpanel events from a file in-process (server stopped); resumable");
  commands.import->footer(std::string(kImportHelp) + "\n\n" + std::string(kExitCodesHelp));
  flags.sources.AddFlags(commands.import, false);
  commands.import->add_option("FILE", flags.import.file, "events file (JSON, JSON lines, gzip)")
      ->required();
  commands.import->add_option("--project", flags.import.project, "project name")->required();
  commands.import->add_flag("--restart", flags.import.restart,
                            "ignore FILE.import-state and start from the beginning");
  commands.import
      ->add_option("--batch", flags.import.batch_records,
                   "events per batch (default and maximum " +
                       std::to_string(service::kImportRecordsMax) + ")")
      ->check(CLI::Range(size_t{1}, service::kImportRecordsMax));

  ExportCommandOptions& exported = flags.export_options;
  commands.export_command = app.add_subcommand(
      "export", "write a project's events as JSON lines (as GET /api/2.0/export), in-process");
  flags.sources.AddFlags(commands.export_command, false);
  commands.export_command->add_option("--project", exported.project, "project name")->required();
  commands.export_command->add_option("--from", exported.from_date, "first day, YYYY-MM-DD")
      ->required();
  commands.export_command->add_option("--to", exported.to_date, "last day, YYYY-MM-DD")->required();
  commands.export_command->add_option("--event", exported.event_names,
                                      "only this event (repeatable)");
  commands.export_command->add_option("--distinct-id", flags.distinct_id,
                                      "only this user (raw id or psn_ pseudonym)");
  commands.export_command->add_option(
      "--distinct-ids", exported.distinct_ids_file,
      "only these users: FILE holds one id a line (raw or psn_), at most " +
          std::to_string(query::kExportDistinctIdsMax) +
          "; output is segment by segment, each in (user, time) order");
  commands.export_command->add_option("--limit", exported.limit, "at most N events");
  commands.export_command->add_option("--out", exported.out_file, "write to FILE, not stdout");
  commands.export_command->add_flag(
      "--no-watermark", exported.no_watermark,
      "mix no decoy subjects into an export of a time range (docs/security.md, \"Watermarked "
      "exports\"); the audit log records it");

  CLI::App* debug = app.add_subcommand("debug", "inspect files for debugging");
  debug->require_subcommand(1);
  commands.dump =
      debug->add_subcommand("dump", "print a write-ahead log, segment or manifest file readably");
  commands.dump->add_option("FILE", flags.dump_path,
                            "e.g. DATA/store/wal/000001.log, DATA/store/MANIFEST or "
                            "DATA/store/segments/1/2026-11-26-000001.seg")
      ->required();
  commands.rewrite_segments = debug->add_subcommand(
      "rewrite-segments",
      "with the server stopped, rewrite every segment of an older format into the newest one "
      "(crash-safe, one segment at a time, as compaction)");
  flags.sources.AddFlags(commands.rewrite_segments, false);
  commands.rewrite_segments->add_flag(
      "--all", flags.rewrite_all,
      "rewrite every segment, the newest format's too, with this binary's writer rules (which "
      "chunks are granules, the codecs): for a store written before such a change");

  CLI::App* policy = app.add_subcommand("policy", "privacy policies (docs/privacy.md)");
  policy->require_subcommand(1);
  commands.policy_check =
      policy->add_subcommand("check", "validate a policy file and print every rule");
  commands.policy_check->add_option("FILE", flags.policy_path, "a policy TOML file")->required();
  commands.policy_preview = policy->add_subcommand(
      "preview",
      "read Mixpanel events (JSON, array or JSON lines) on stdin and show what the project's "
      "policy would store and why; stores nothing (in-process: the server must be stopped, or "
      "use POST /api/policy/preview)");
  flags.sources.AddFlags(commands.policy_preview, false);
  commands.policy_preview->add_option("--project", flags.preview_project, "project name")
      ->required();

  commands.query = app.add_subcommand(
      "query",
      "answer a segmentation, funnel or retention query (JSON, docs/queries.md) and print the "
      "answer as POST /api/query does (in-process: the server must be stopped, or use POST "
      "/api/query)");
  flags.sources.AddFlags(commands.query, false);
  commands.query->add_option("FILE", flags.query.file, "the query JSON file, or - for stdin")
      ->required();
  commands.query->add_option("--project", flags.query.project, "project name")->required();
  commands.query->add_flag("--no-k", flags.query.raw_cells,
                           "answer every cell raw, not held to the project's minimum group size "
                           "(docs/queries.md, \"Small groups\"); the audit log records it");
}

int PolicyPreview(const ConfigSources& sources, const std::string& project_name) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service = OpenServiceForCommand(*config, "send the events to POST /api/policy/preview");
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, project_name);
  if (!project.ok()) {
    return Fail(project.status());
  }
  const std::string input{std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>()};
  auto preview = (*service)->PreviewPolicy(*project, input);
  if (!preview.ok()) {
    return Fail(preview.status());
  }
  std::cout << *preview;
  return 0;
}

// `minpanel policy check FILE`: exit 0 and the rules, or 1 and the error.
int PolicyCheck(const std::string& path) {
  auto text = NewPosixFileSystem()->ReadFile(path);
  if (!text.ok()) {
    return Fail(text.status());
  }
  auto description = service::CheckPolicyText(*text);
  if (!description.ok()) {
    return Fail(description.status());
  }
  std::cout << path << ": valid\n" << *description;
  return 0;
}

int Dispatch(Flags& flags, const Commands& commands) {
  if (commands.serve->parsed()) {
    return Serve(flags.sources, flags.demo);
  }
  if (commands.create->parsed()) {
    return ProjectCreate(flags.sources, flags.name, flags.time_zone, flags.json);
  }
  if (commands.list->parsed()) {
    return ProjectList(flags.sources, flags.json);
  }
  if (commands.set_min_group_size->parsed()) {
    return ProjectSetMinGroupSize(flags.sources, flags.name, flags.min_group_size, flags.json);
  }
  if (commands.set_domains->parsed()) {
    return ProjectSetDomains(flags.sources, flags.name, flags.domains, flags.json);
  }
  if (commands.rotate->parsed()) {
    return ProjectRotate(flags.sources, flags.name, flags.json);
  }
  if (commands.rotate_key->parsed()) {
    return ProjectRotateKey(flags.sources, flags.name, flags.destroy_old, flags.yes);
  }
  if (commands.delete_project->parsed()) {
    return ProjectDelete(flags.sources, flags.name, flags.yes);
  }
  if (commands.import->parsed()) {
    return Import(flags.sources, flags.import);
  }
  if (commands.export_command->parsed()) {
    if (commands.export_command->count("--distinct-id") > 0) {
      flags.export_options.distinct_id = flags.distinct_id;
    }
    return Export(flags.sources, flags.export_options);
  }
  if (commands.dump->parsed()) {
    return DebugDump(flags.dump_path);
  }
  if (commands.rewrite_segments->parsed()) {
    return DebugRewriteSegments(flags.sources, flags.rewrite_all);
  }
  if (commands.policy_check->parsed()) {
    return PolicyCheck(flags.policy_path);
  }
  if (commands.policy_preview->parsed()) {
    return PolicyPreview(flags.sources, flags.preview_project);
  }
  if (commands.query->parsed()) {
    return Query(flags.sources, flags.query);
  }
  if (commands.datamap->parsed()) {
    return DataMap(flags.sources, flags.datamap);
  }
  if (commands.access->parsed()) {
    return commands.access->Run();
  }
  if (commands.incident->parsed()) {
    return commands.incident->Run();
  }
  if (commands.trace->parsed()) {
    return commands.trace->Run();
  }
  if (commands.erasure->parsed()) {
    return commands.erasure->Run();
  }
  if (commands.backup->parsed()) {
    return commands.backup->Run();
  }
  return kExitUsage;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"minpanel: self-hosted product analytics that never becomes someone else's breach"};
  app.require_subcommand(1);
  app.footer(std::string(kExitCodesHelp));
  Flags flags;
  Commands commands;
  commands.serve = app.add_subcommand("serve", "run the HTTP server");
  flags.sources.AddFlags(commands.serve, true);
  commands.serve->add_flag("--demo", flags.demo,
                           "create the demo project on first start and print how to use it");
  AddProjectCommands(app, flags, commands);
  AddDataCommands(app, flags, commands);
  commands.datamap = AddDataMapCommand(app, &flags.sources, &flags.datamap);
  const AccessCommands access(app);
  commands.access = &access;
  const IncidentCommand incident(app);
  commands.incident = &incident;
  const TraceCommand trace(app);
  commands.trace = &trace;
  const ErasureCommands erasure(app);
  commands.erasure = &erasure;
  const BackupCommands backup(app);
  commands.backup = &backup;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? kExitOk : kExitUsage;
  }
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("minpanel", sink));
  return Dispatch(flags, commands);
}

}  // namespace minpanel::cli
