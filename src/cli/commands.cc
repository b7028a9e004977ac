#include "cli/commands.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <chrono>
#include <iostream>
#include <thread>

#include "audit/audit.h"

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

void RecordOrQueue(const service::Config& config, const Status& opened, audit::AuditEntry entry,
                   std::string_view what) {
  constexpr int64_t kQueueWaitMs = 10'000;
  Status status = opened;
  if (status.code() == StatusCode::kUnavailable) {
    const std::string folder = config.data_folder + "/audit";
    auto file_system = NewPosixFileSystem();
    auto clock = NewSystemClock();
    auto queued = audit::QueueEntry(folder, std::move(entry), *file_system, clock->NowMs());
    if (!queued.ok()) {
      status = queued.status();
    } else {
      const std::string path = folder + "/" + std::string(audit::kQueueFolder) + "/" + *queued;
      const int64_t deadline_ms = clock->NowMs() + kQueueWaitMs;
      while (file_system->Exists(path) && clock->NowMs() < deadline_ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (file_system->Exists(path + ".rejected")) {
        status = Status::Corruption("the server set the queued record aside (" + path +
                                    ".rejected)");
      } else if (!file_system->Exists(path)) {
        std::cerr << "minpanel: " << what
                  << " is recorded in the audit log (appended by the running server)\n";
        return;
      } else {
        std::cerr << "minpanel: WARNING: " << what << " waits in " << path
                  << " to be recorded: the process holding the audit log has not appended it "
                     "within "
                  << kQueueWaitMs / 1000
                  << " s (a running server does within a second; otherwise the next command or "
                     "start that opens the log does)\n";
        return;
      }
    }
  }
  std::cerr << "minpanel: WARNING: " << what << " is NOT recorded in the audit log ("
            << status.ToString() << ")\n";
}

void AuditLocally(const service::Config& config, std::string_view act, std::string target,
                  uint32_t project_id) {
  audit::AuditEntry entry;
  entry.key = "local";
  entry.route = "cli";
  entry.act = std::string(act);
  entry.target = std::move(target);
  if (project_id != 0) {
    entry.projects = {project_id};
  }
  auto log = service::OpenAuditLog(config, NewPosixFileSystem(), NewSystemClock());
  if (!log.ok()) {
    RecordOrQueue(config, log.status(), std::move(entry), "this change");
    return;
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

Result<std::unique_ptr<service::Service>> OpenServiceToRead(const service::Config& config,
                                                            std::string_view alternative) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<service::Service> service,
                      OpenServiceForCommand(config, alternative));
  const Status retention = service->ApplyRetention();
  if (!retention.ok()) {
    return Status(retention.code(), "retention rules could not be applied before reading, so "
                                    "nothing was read: " + retention.message());
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
