#include "cli/cli.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "query/query.h"
#include "server/server.h"
#include "service/service.h"

namespace minpanel::cli {
namespace {

constexpr std::string_view kDemoProject = "demo";

// Where the settings of a command come from: defaults, then --config, then
// the flags that were given.
struct ConfigSources {
  std::string config_file;
  std::string data_folder;
  std::string key_folder;
  std::string listen;
  std::string tls_cert;
  std::string tls_key;

  void AddFlags(CLI::App* command, bool serving) {
    command->add_option("--config", config_file, "TOML configuration file");
    command->add_option("--data", data_folder, "data folder (default var/data)");
    command->add_option("--keys", key_folder, "key folder, outside the data folder");
    if (serving) {
      command->add_option("--listen", listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
      command->add_option("--tls-cert", tls_cert, "PEM certificate chain: serve HTTPS");
      command->add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
    }
  }

  Result<service::Config> Build() const {
    service::Config config;
    if (!config_file.empty()) {
      MP_ASSIGN_OR_RETURN(config, service::LoadConfigFile(config_file));
    }
    if (!data_folder.empty()) config.data_folder = data_folder;
    if (!key_folder.empty()) config.key_folder = key_folder;
    if (!listen.empty()) config.listen = listen;
    if (!tls_cert.empty()) config.tls.cert_file = tls_cert;
    if (!tls_key.empty()) config.tls.key_file = tls_key;
    MP_RETURN_IF_ERROR(service::ValidateConfig(config));
    return config;
  }
};

int Fail(const Status& status) {
  std::cerr << "minpanel: " << status.ToString() << "\n";
  return 1;
}

// Raw events live in this process's memory; a core dump would write them
// to disk, so there are none.
void DisableCoreDumps() {
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

std::string ProjectJson(const service::Project& project, const std::string* secret) {
  std::string json = "{\"id\":" + std::to_string(project.id) + ",\"name\":";
  query::AppendJsonString(project.name, &json);
  json += ",\"token\":\"" + project.token + "\"";
  if (secret != nullptr) {
    json += ",\"secret\":\"" + *secret + "\"";
  }
  json += ",\"time_zone\":";
  query::AppendJsonString(project.time_zone, &json);
  return json + "}";
}

// `serve --demo`: the demo project exists after this; its secret, shown
// once, is written to a 0600 file beside the data folder.
Status EnsureDemoProject(service::Service& service, const service::Config& config,
                         std::string* token, std::string* secret_path) {
  *secret_path = config.data_folder + ".demo-secret";
  if (auto existing = service.projects().FindByName(kDemoProject)) {
    *token = existing->token;
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(service::ProjectWithSecret created,
                      service.projects().Create(kDemoProject, "UTC"));
  MP_RETURN_IF_ERROR(NewPosixFileSystem()->WriteFileAtomically(*secret_path,
                                                               created.secret + "\n", 0600));
  *token = created.project.token;
  std::cout << "Created the demo project. Its secret (shown this once): " << created.secret
            << "\n";
  return Status::Ok();
}

void PrintWelcome(const service::Config& config, uint16_t port, const std::string& token,
                  const std::string& secret_path) {
  const bool tls = !config.tls.cert_file.empty();
  std::string host = config.listen.substr(0, config.listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host == "::") {
    host = "127.0.0.1";
  }
  const std::string url = (tls ? "https://" : "http://") + host + ":" + std::to_string(port);
  std::cout << "minpanel is listening on " << url << "\n"
            << "  demo project token: " << token << "\n"
            << "  demo project secret: in " << secret_path << " (0600)\n"
            << "  send an event:\n"
            << "    curl -s '" << url << "/track?verbose=1' --data-urlencode "
            << "'data={\"event\":\"Signed Up\",\"properties\":{\"token\":\"" << token
            << "\",\"distinct_id\":\"user-1\",\"plan\":\"pro\"}}'\n"
            << "  read it back:\n"
            << "    curl -s -u \"$(cat " << secret_path << "):\" '" << url
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
  auto server = server::Server::Start(*config, service->get(), [sources] { return sources.Build(); });
  if (!server.ok()) {
    return Fail(server.status());
  }
  if (demo) {
    PrintWelcome(*config, (*server)->port(), token, secret_path);
  }
  spdlog::info("listening on {} (data {}, keys {})", config->listen, config->data_folder,
               service::KeyFolder(*config));
  const Status ran = (*server)->Run();
  if (!ran.ok()) {
    return Fail(ran);
  }
  spdlog::info("stopped cleanly");
  return 0;
}

int ProjectCreate(const ConfigSources& sources, const std::string& name,
                  const std::string& time_zone, bool json) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto projects = service::OpenProjects(*config, NewPosixFileSystem(), NewSystemClock());
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto created = (*projects)->Create(name, time_zone);
  if (!created.ok()) {
    return Fail(created.status());
  }
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
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto projects = service::OpenProjects(*config, NewPosixFileSystem(), NewSystemClock());
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  for (const service::Project& project : (*projects)->List()) {
    if (json) {
      std::cout << ProjectJson(project, nullptr) << "\n";
    } else {
      std::cout << project.id << "\t" << project.name << "\t" << project.token << "\t"
                << project.time_zone << "\n";
    }
  }
  return 0;
}

int ProjectRotate(const ConfigSources& sources, const std::string& name, bool json) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto projects = service::OpenProjects(*config, NewPosixFileSystem(), NewSystemClock());
  if (!projects.ok()) {
    return Fail(projects.status());
  }
  auto rotated = (*projects)->RotateSecret(name);
  if (!rotated.ok()) {
    return Fail(rotated.status());
  }
  if (json) {
    std::cout << ProjectJson(rotated->project, &rotated->secret) << "\n";
  } else {
    std::cout << "new secret for " << name << ": " << rotated->secret
              << "\nThe old secret stops working when a running server reloads (SIGHUP).\n";
  }
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"minpanel: self-hosted product analytics that never becomes someone else's breach"};
  app.require_subcommand(1);

  ConfigSources serve_sources;
  bool demo = false;
  CLI::App* serve = app.add_subcommand("serve", "run the HTTP server");
  serve_sources.AddFlags(serve, true);
  serve->add_flag("--demo", demo, "create the demo project on first start and print how to use it");

  CLI::App* project = app.add_subcommand("project", "manage projects");
  project->require_subcommand(1);
  ConfigSources project_sources;
  std::string name;
  std::string time_zone = "UTC";
  bool json = false;
  CLI::App* create = project->add_subcommand("create", "create a project; prints its secret once");
  project_sources.AddFlags(create, false);
  create->add_option("NAME", name, "project name")->required();
  create->add_option("--time-zone", time_zone, "IANA time zone for queries (default UTC)");
  create->add_flag("--json", json, "print {\"name\",\"token\",\"secret\",...} as JSON");
  CLI::App* list = project->add_subcommand("list", "list projects");
  project_sources.AddFlags(list, false);
  list->add_flag("--json", json, "one JSON object per line");
  CLI::App* rotate = project->add_subcommand("rotate-secret", "replace a project's secret");
  project_sources.AddFlags(rotate, false);
  rotate->add_option("NAME", name, "project name")->required();
  rotate->add_flag("--json", json, "print the project and its new secret as JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("minpanel", sink));

  if (serve->parsed()) {
    return Serve(serve_sources, demo);
  }
  if (create->parsed()) {
    return ProjectCreate(project_sources, name, time_zone, json);
  }
  if (list->parsed()) {
    return ProjectList(project_sources, json);
  }
  if (rotate->parsed()) {
    return ProjectRotate(project_sources, name, json);
  }
  return 2;
}

}  // namespace minpanel::cli
