#include "cli/commands.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <iostream>

namespace minpanel::cli {

void ConfigSources::AddFlags(CLI::App* command, bool serving) {
  command->add_option("--config", config_file, "TOML configuration file");
  command->add_option("--data", data_folder, "data folder (default var/data)");
  command->add_option("--keys", key_folder, "key folder, outside the data folder");
  if (serving) {
    command->add_option("--listen", listen, "HOST:PORT to listen on (default 127.0.0.1:8080)");
    command->add_option("--tls-cert", tls_cert, "PEM certificate chain: serve HTTPS");
    command->add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
    command->add_option("--listen-api", listen_api,
                        "HOST:PORT of a second listener for the read and admin API; --listen "
                        "then serves ingestion and /healthz only (docs/security.md)");
    command->add_option("--tls-api-cert", tls_api_cert,
                        "PEM certificate chain of the --listen-api listener: HTTPS there");
    command->add_option("--tls-api-key", tls_api_key, "PEM private key for --tls-api-cert");
    command->add_option("--path-prefix", path_prefixes,
                        "serve every route under this path prefix too (e.g. /mp: /mp/track is "
                        "/track); repeatable; replaces the config file's path_prefixes");
  }
}

Result<service::Config> ConfigSources::Build() const {
  service::Config config;
  if (!config_file.empty()) {
    MP_ASSIGN_OR_RETURN(config, service::LoadConfigFile(config_file));
  }
  if (!data_folder.empty()) {
    config.data_folder = data_folder;
  }
  if (!key_folder.empty()) {
    config.key_folder = key_folder;
  }
  if (!listen.empty()) {
    config.listen = listen;
  }
  if (!tls_cert.empty()) {
    config.tls.cert_file = tls_cert;
  }
  if (!tls_key.empty()) {
    config.tls.key_file = tls_key;
  }
  if (!listen_api.empty()) {
    config.listen_api = listen_api;
  }
  if (!tls_api_cert.empty()) {
    config.tls_api.cert_file = tls_api_cert;
  }
  if (!tls_api_key.empty()) {
    config.tls_api.key_file = tls_api_key;
  }
  if (!path_prefixes.empty()) {
    config.path_prefixes = path_prefixes;
  }
  MP_RETURN_IF_ERROR(service::ValidateConfig(config));
  return config;
}

void AuditLocally(const service::Config& config, std::string_view act, std::string target,
                  uint32_t project_id) {
  auto log = service::OpenAuditLog(config, NewPosixFileSystem(), NewSystemClock());
  if (!log.ok() && log.status().code() == StatusCode::kUnavailable) {
    std::cerr << "minpanel: the audit log is held by a running server, which records this "
                 "change when it reloads (kill -HUP)\n";
    return;
  }
  if (!log.ok()) {
    std::cerr << "minpanel: audit log: " << log.status().ToString()
              << "; this change is not recorded in it\n";
    return;
  }
  audit::AuditEntry entry;
  entry.key = "local";
  entry.route = "cli";
  entry.act = std::string(act);
  entry.target = std::move(target);
  if (project_id != 0) {
    entry.projects = {project_id};
  }
  const auto appended = (*log)->Append(std::move(entry));
  if (!appended.ok()) {
    std::cerr << "minpanel: audit log: " << appended.status().ToString() << "\n";
  }
}

int Fail(const Status& status) {
  std::cerr << "minpanel: " << status.ToString() << "\n";
  return kExitFailure;
}

void DisableCoreDumps() {
  const rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

Result<std::unique_ptr<service::Service>> OpenServiceForCommand(const service::Config& config,
                                                                std::string_view alternative) {
  auto service = service::Service::Open(config, NewPosixFileSystem(), NewSystemClock());
  if (!service.ok() && service.status().code() == StatusCode::kUnavailable) {
    // Open's only Unavailable is the data folder's lock.
    return Status::Unavailable(service.status().message() +
                               ". Stop the server (minpanel serve) first, or " +
                               std::string(alternative) + ".");
  }
  return service;
}

Result<service::Project> FindProject(service::Service& service, const std::string& name) {
  std::optional<service::Project> project = service.projects().FindByName(name);
  if (!project.has_value()) {
    return Status::NotFound("no project named '" + name + "' (see minpanel project list)");
  }
  return *project;
}

}  // namespace minpanel::cli
