// The server module: the HTTP face of minpanel. Boost.Beast HTTP/1.1 (and
// HTTPS) with keep-alive, request limits, CORS for the browser SDKs, the
// Mixpanel ingestion routes, the export, /healthz and /metrics. It parses
// requests and formats responses; everything else it asks the Service.
//
// A Server runs its own I/O threads and a pool of worker threads (ingest
// waits for fsync there, never on an I/O thread). Start, then Run from one
// thread; Stop may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "core/core.h"
#include "service/config.h"
#include "service/service.h"

namespace minpanel::server {

// Reads the configuration anew (on SIGHUP); the server applies what can
// change without a restart: limits, TLS certificates, projects.
using ConfigLoader = std::function<Result<service::Config>()>;

class Server {
 public:
  // Binds the listening socket (two, with `listen_api`: ingestion on one,
  // the read and admin API on the other) and loads TLS material. The service must
  // outlive the server.
  static Result<std::unique_ptr<Server>> Start(const service::Config& config,
                                               service::Service* service, ConfigLoader reload);
  ~Server();

  // Serves until SIGINT/SIGTERM or Stop(); then stops accepting, finishes
  // in-flight requests (within a deadline) and returns.
  Status Run();
  void Stop();
  // The port of `listen`, and of `listen_api` (0 when it is not set).
  uint16_t port() const;
  uint16_t api_port() const;

  class Impl;  // internal: the I/O machinery, in server.cc

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace minpanel::server
