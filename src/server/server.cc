#include "server/server.h"

#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/alerts.h"
#include "server/webhook.h"
#include "server/dashboard_routes.h"
#include "server/erasure_routes.h"
#include "server/http_util.h"
#include "server/path_prefix.h"
#include "server/static_files.h"
#include "server/routes.h"
#include "server/syslog.h"

namespace minpanel::server {
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

namespace {

constexpr auto kShutdownDeadline = std::chrono::seconds(30);
constexpr auto kShutdownPoll = std::chrono::milliseconds(20);
// How often a replaced IP geolocation database is looked for.
constexpr auto kGeoReloadInterval = std::chrono::seconds(60);
// How often the audit queue is looked at (docs/formats/audit.md, "Queue"):
// a command's incident run waits at most this long to be recorded.
constexpr auto kAuditQueueInterval = std::chrono::milliseconds(250);
// After refusing an oversized request: how much of its body to read and
// discard, and for how long, before closing.
constexpr uint64_t kDrainBytesMax = 64ULL << 20;
constexpr auto kDrainTimeout = std::chrono::seconds(5);
// Ingest requests up to this size are decoded on the I/O thread (about
// 50 µs of work for a 50-event /track batch).
constexpr size_t kInlineDecodeBytesMax = 64 * 1024;
// The audit checkpoint webhook (audit_checkpoint_webhook): checkpoints
// queued at most (one per 1,024 audit records, so a dead receiver has to
// miss a million records' worth to drop one), and how long a stopping
// server keeps posting the ones left, its closing checkpoint among them.
constexpr size_t kCheckpointQueueMax = 1000;
constexpr int64_t kCheckpointDrainMs = 10'000;
// Where the checkpoint sinks keep what their receiver has not accepted yet,
// retried until it is and across restarts (webhook.h; in the audit folder,
// docs/formats/audit.md, "Checkpoint sink queues").
constexpr std::string_view kCheckpointWebhookSpool = "checkpoint-webhook.queue";
constexpr std::string_view kCheckpointSyslogSpool = "checkpoint-syslog.queue";
// The anomaly alerts' webhook keeps its unsent alerts the same way.
constexpr std::string_view kAnomalyWebhookSpool = "anomaly-webhook.queue";
// Read buffer per connection (memory: this times limits.connections_max).
constexpr size_t kReadBufferBytes = 64 * 1024;
// A streamed (chunked) response is written in pieces of at least this many
// bytes, but its last: the status line and headers go with the first data,
// the terminating chunk with the last. Accepted sockets send without delay
// (TCP_NODELAY), so every write is a packet (and, over TLS, a record) of its
// own; one of 64 KiB is some 45 full-sized packets.
constexpr size_t kStreamWriteBytesMin = 64 * 1024;
// Every HTTPS response carries Strict-Transport-Security with this max-age
// (365 days, the floor browsers' preload lists ask for), so that a browser
// that has once reached minpanel over TLS refuses plain HTTP to that host
// for a year. Not includeSubDomains: other services may share the domain.
constexpr int64_t kHstsMaxAgeSeconds = 365LL * 24 * 3600;

const std::string& StrictTransportSecurity() {
  static const std::string value = "max-age=" + std::to_string(kHstsMaxAgeSeconds);
  return value;
}

Result<std::shared_ptr<ssl::context>> LoadTls(const service::TlsConfig& tls) {
  if (tls.cert_file.empty()) {
    return std::shared_ptr<ssl::context>();
  }
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code error;
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                       error);
  if (!error) {
    context->use_certificate_chain_file(tls.cert_file, error);
  }
  if (error) {
    return Status::InvalidArgument("tls.cert_file " + tls.cert_file + ": " + error.message());
  }
  context->use_private_key_file(tls.key_file, ssl::context::pem, error);
  if (error) {
    return Status::InvalidArgument("tls.key_file " + tls.key_file + ": " + error.message());
  }
  return context;
}

// `key`: the configuration key, for the message ("listen", "listen_api").
Result<tcp::endpoint> ParseListen(std::string_view key, const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument(std::string(key) + ": expected HOST:PORT, got '" + listen +
                                   "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  boost::system::error_code error;
  const auto address = net::ip::make_address(host, error);
  int port = -1;
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (const std::exception&) {
  }
  if (error || port <= 0 || port > 65535) {
    return Status::InvalidArgument(std::string(key) +
                                   ": expected an IP address and a port 1-65535, got '" + listen +
                                   "'");
  }
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

// Two listeners on one port whose addresses are equal, or one of them the
// wildcard, would take each other's connections (or fail to bind).
Status CheckListenersApart(const tcp::endpoint& ingest, const tcp::endpoint& api) {
  if (ingest.port() != api.port()) {
    return Status::Ok();
  }
  if (ingest.address() == api.address() || ingest.address().is_unspecified() ||
      api.address().is_unspecified()) {
    return Status::InvalidArgument(
        "listen_api: " + api.address().to_string() + ":" + std::to_string(api.port()) +
        " overlaps listen " + ingest.address().to_string() + ":" +
        std::to_string(ingest.port()) +
        ": the API listener needs another port, or another address than the ingestion one");
  }
  return Status::Ok();
}

// The audit checkpoint webhook's body: {"checkpoint": the anchor line, as
// the anchors file and audit_checkpoint_sink hold it, "seq": its record}.
std::string CheckpointJson(std::string_view line) {
  const std::string_view seq = line.substr(0, line.find(' '));
  return "{\"checkpoint\":\"" + std::string(line) + "\",\"seq\":" + std::string(seq) + "}";
}

// Which routes a listener serves (docs/security.md, "Separate listeners").
enum class ListenerRole {
  kEvery,   // `listen` without `listen_api`: every route
  kIngest,  // `listen` with `listen_api`: ingestion and /healthz
  kApi,     // `listen_api`: everything but ingestion
};

// A route that `role` does not serve: NotFound naming the configuration key
// of the listener that does — never its address, which the public side has
// no need to learn. It is answered before the method, a credential or a
// rate limit is looked at, so it is the same whoever asks.
std::optional<Status> WrongListener(ListenerRole role, Route route) {
  if (role == ListenerRole::kEvery || route == Route::kHealth || route == Route::kUnknown) {
    return std::nullopt;
  }
  const bool ingest = IsIngestRoute(route);
  if (role == ListenerRole::kIngest && !ingest) {
    return Status::NotFound(std::string(RouteLabel(route)) +
                            " is not served on this listener: the read and admin API is on "
                            "the API listener (listen_api)");
  }
  if (role == ListenerRole::kApi && ingest) {
    return Status::NotFound(std::string(RouteLabel(route)) +
                            " is not served on this listener: ingestion is on the ingestion "
                            "listener (listen)");
  }
  return std::nullopt;
}

// A webhook's CA file must hold a certificate OpenSSL reads: refused at
// start, and a reload refused, rather than every send failing later.
Status CheckCaFile(std::string_view key, const std::string& ca_file) {
  if (ca_file.empty()) {
    return Status::Ok();
  }
  ssl::context context(ssl::context::tls_client);
  boost::system::error_code error;
  context.load_verify_file(ca_file, error);
  if (error) {
    return Status::InvalidArgument("config: '" + std::string(key) + "' " + ca_file +
                                   ": no CA certificate read (" + error.message() + ")");
  }
  return Status::Ok();
}

Result<std::shared_ptr<const Settings>> MakeSettings(const service::Config& config) {
  MP_RETURN_IF_ERROR(service::ValidateConfig(config));
  MP_RETURN_IF_ERROR(
      CheckCaFile("audit_checkpoint_webhook_ca_file", config.audit_checkpoint_webhook_ca_file));
  MP_RETURN_IF_ERROR(CheckCaFile("anomaly.webhook_ca_file", config.anomaly.webhook_ca_file));
  MP_ASSIGN_OR_RETURN(TrustedProxies proxies, TrustedProxies::Parse(config.trusted_proxies));
  return std::shared_ptr<const Settings>(new Settings{config, std::move(proxies)});
}

}  // namespace

// One listening socket and its role.
struct Listener {
  Listener(net::io_context& io, ListenerRole listener_role)
      : role(listener_role), acceptor(io) {}
  const ListenerRole role;
  tcp::acceptor acceptor;
  uint16_t port = 0;
};

// Live sessions, so that shutdown can close the idle ones.
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void CloseIfIdle() = 0;
};

class Server::Impl {
 public:
  Impl(service::Service* service, ConfigLoader reload, std::shared_ptr<const Settings> settings,
       std::shared_ptr<ssl::context> tls, std::shared_ptr<ssl::context> tls_api)
      : service_(service),
        reload_(std::move(reload)),
        settings_(std::move(settings)),
        tls_(std::move(tls)),
        tls_api_(std::move(tls_api)),
        signals_(io_, SIGINT, SIGTERM, SIGHUP),
        workers_(settings_->config.worker_threads),
        exporters_(settings_->config.export_threads),
        alerts_(std::make_unique<AlertSender>(
            settings_->config.anomaly.webhook, settings_->config.anomaly.webhook_ca_file,
            settings_->config.data_folder + "/audit/" + std::string(kAnomalyWebhookSpool))) {
    // The anomaly rules' alerts: a log line and the webhook (alerts.h).
    service_->SetAlertHandler(
        [alerts = alerts_.get()](const service::AnomalyAlert& alert) { alerts->Send(alert); });
    if (alerts_->queue() != nullptr) {
      metrics_.AddWebhook("anomaly", alerts_->queue());
    }
    const service::Config& config = settings_->config;
    if (!config.audit_checkpoint_webhook.empty()) {
      checkpoints_ = std::make_unique<WebhookQueue>(
          "audit checkpoint webhook", config.audit_checkpoint_webhook, kCheckpointQueueMax,
          kCheckpointDrainMs, JsonPoster(config.audit_checkpoint_webhook_ca_file),
          config.data_folder + "/audit/" + std::string(kCheckpointWebhookSpool));
      metrics_.AddWebhook("audit_checkpoint", checkpoints_.get());
    }
    if (const std::optional<int> facility = service::SyslogFacility(config.audit_checkpoint_syslog);
        facility.has_value()) {
      checkpoint_syslog_ = std::make_unique<WebhookQueue>(
          "audit checkpoint syslog", config.audit_checkpoint_syslog_socket, kCheckpointQueueMax,
          kCheckpointDrainMs, SendSyslog,
          config.data_folder + "/audit/" + std::string(kCheckpointSyslogSpool));
      metrics_.AddWebhook("audit_checkpoint_syslog", checkpoint_syslog_.get());
      syslog_facility_ = *facility;
    }
    if (checkpoints_ != nullptr || checkpoint_syslog_ != nullptr) {
      // Each checkpoint is queued under the audit log's lock and sent from
      // the queues' threads: an append never waits for a receiver.
      service_->SetCheckpointHandler([this](std::string_view line) {
        if (checkpoints_ != nullptr) {
          checkpoints_->Push(CheckpointJson(line));
        }
        if (checkpoint_syslog_ != nullptr) {
          const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count();
          checkpoint_syslog_->Push(SyslogMessage(syslog_facility_, now_ms, line));
        }
      });
    }
  }
  ~Impl() {
    // The service outlives the server: it must not call into a queue that
    // is gone. The queues send what is left (the closing checkpoint) first.
    if (checkpoints_ != nullptr || checkpoint_syslog_ != nullptr) {
      service_->SetCheckpointHandler(nullptr);
    }
  }

  Status Listen(const tcp::endpoint& endpoint, ListenerRole role);
  Status Run();
  void Stop() {
    net::post(io_, [this] { BeginShutdown(); });
  }
  uint16_t port() const { return listeners_.empty() ? 0 : listeners_.front()->port; }
  uint16_t api_port() const {
    return listeners_.size() < 2 ? 0 : listeners_.back()->port;
  }

  std::shared_ptr<const Settings> settings() const {
    std::lock_guard lock(settings_mutex_);
    return settings_;
  }
  // The TLS context of a listener; null: plain HTTP there.
  std::shared_ptr<ssl::context> tls(ListenerRole role) const {
    std::lock_guard lock(settings_mutex_);
    return role == ListenerRole::kApi ? tls_api_ : tls_;
  }
  service::Service& service() { return *service_; }
  Metrics& metrics() { return metrics_; }
  net::thread_pool& workers() { return workers_; }
  net::thread_pool& exporters() { return exporters_; }
  bool stopping() const { return stopping_.load(); }

  // The open connections of a listener: each has limits.connections_max of
  // its own, so that a flood of connections to the public one cannot lock
  // operators out of the private one.
  std::atomic<int64_t>& connections_open(ListenerRole role) {
    return role == ListenerRole::kApi ? api_connections_open_ : connections_open_;
  }

  void Register(SessionBase* session, std::weak_ptr<SessionBase> weak) {
    std::lock_guard lock(sessions_mutex_);
    sessions_[session] = std::move(weak);
  }
  void Unregister(SessionBase* session) {
    std::lock_guard lock(sessions_mutex_);
    sessions_.erase(session);
  }

 private:
  void Accept(Listener& listener);
  void StartSession(ListenerRole role, tcp::socket socket);
  void ScheduleGeoReload();
  // Destroys the keys past their time and applies retention (drops,
  // profile expiries): once before the first connection is served, then
  // every minute.
  void ApplyTimeLimits();
  void ScheduleAuditQueue();
  void OnSignal(int signal_number);
  void Reload();
  void BeginShutdown();
  void CloseIdleSessions();
  void WaitForSessions(std::chrono::steady_clock::time_point deadline);

  // Declared first, destroyed last: handlers still queued in io_ own
  // sessions, whose destructors unregister here and count in metrics_.
  std::mutex sessions_mutex_;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions_;
  Metrics metrics_;
  std::atomic<int64_t> connections_open_{0};      // of `listen`
  std::atomic<int64_t> api_connections_open_{0};  // of `listen_api`
  service::Service* service_;
  ConfigLoader reload_;
  mutable std::mutex settings_mutex_;
  std::shared_ptr<const Settings> settings_;
  std::shared_ptr<ssl::context> tls_;      // of `listen`
  std::shared_ptr<ssl::context> tls_api_;  // of `listen_api`
  net::io_context io_;
  // `listen` first, then `listen_api` when set. Destroyed before io_.
  std::vector<std::unique_ptr<Listener>> listeners_;
  net::signal_set signals_;
  net::thread_pool workers_;    // decoding and policy: CPU work
  net::thread_pool exporters_;  // exports: block on the client's socket
  std::unique_ptr<AlertSender> alerts_;
  std::unique_ptr<WebhookQueue> checkpoints_;  // audit_checkpoint_webhook, when set
  std::unique_ptr<WebhookQueue> checkpoint_syslog_;  // audit_checkpoint_syslog, unless "off"
  int syslog_facility_ = 0;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<net::steady_timer> shutdown_timer_;
  std::unique_ptr<net::steady_timer> geo_timer_;
  std::unique_ptr<net::steady_timer> queue_timer_;
};

// One client connection. Reads one request at a time (so pipelined requests
// are answered in order), hands ingest and export to the worker pool, and
// writes the response from the connection's strand.
template <class Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  Session(Server::Impl& server, ListenerRole role, tcp::socket socket)
    requires(!kTls)
      : server_(server), role_(role), stream_(std::move(socket)) {}
  Session(Server::Impl& server, ListenerRole role, tcp::socket socket, ssl::context& context)
    requires kTls
      : server_(server), role_(role), stream_(std::move(socket), context) {}

  ~Session() override {
    server_.Unregister(this);
    server_.metrics().ConnectionClosed();
    --server_.connections_open(role_);
  }

  void Start() {
    server_.metrics().ConnectionOpened();
    ++server_.connections_open(role_);
    server_.Register(this, this->weak_from_this());
    boost::system::error_code error;
    const auto remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(error);
    peer_ = error ? std::string() : remote.address().to_string();
    // Beast reads at most the buffer's free capacity per recvmsg; a small
    // buffer made a 1 MB /import body cost some 400 system calls.
    buffer_.reserve(kReadBufferBytes);
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        self->Read();
      } else {
        self->Handshake();
      }
    });
  }

  void CloseIfIdle() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      // Idle: waiting for a next request of which no byte has arrived.
      if (self->idle_ && self->buffer_.size() == 0 &&
          !(self->parser_.has_value() && self->parser_->got_some())) {
        boost::system::error_code error;
        beast::get_lowest_layer(self->stream_).socket().close(error);
      }
    });
  }

 private:
  void Handshake() {
    const auto limits = server_.settings()->config.limits;
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(limits.request_timeout_ms));
    stream_.async_handshake(ssl::stream_base::server,
                            [self = this->shared_from_this()](boost::system::error_code error) {
                              if (!error) {
                                self->Read();
                              }
                            });
  }

  void Read() {
    if (server_.stopping()) {
      Close();
      return;
    }
    const auto limits = server_.settings()->config.limits;
    parser_.emplace();
    parser_->body_limit(limits.body_bytes_max);
    parser_->header_limit(static_cast<uint32_t>(limits.header_bytes_max));
    idle_ = buffer_.size() == 0;
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(limits.idle_timeout_ms));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](boost::system::error_code error, size_t) {
                       self->OnRead(error);
                     });
  }

  void OnRead(boost::system::error_code error) {
    idle_ = false;
    if (error == http::error::body_limit || error == http::error::header_limit) {
      const bool body = error == http::error::body_limit;
      const auto limits = server_.settings()->config.limits;
      Request request;
      request.version(11);
      request.keep_alive(false);
      const std::string message =
          body ? "body: over the limit of " + std::to_string(limits.body_bytes_max) + " bytes"
               : "headers: over the limit of " + std::to_string(limits.header_bytes_max) +
                     " bytes";
      Response response = ErrorResponse(request, Status::ResourceExhausted(message));
      if (!body) {
        response.result(http::status::request_header_fields_too_large);
      }
      // The client is likely still sending; drain what it sends after the
      // reply so that it reads the 413 instead of a connection reset.
      drain_on_close_ = true;
      Write(std::move(response));
      return;
    }
    if (error) {
      Close();
      return;
    }
    request_ = parser_->release();
    // The one stripping step before routing: /mp/track is served as /track.
    if (auto stripped = StripPathPrefix(request_.target(),
                                        server_.settings()->config.path_prefixes)) {
      request_.target(*stripped);
    }
    Dispatch();
  }

  void Dispatch() {
    // Where the request came from, for the audit records of what it reads
    // or changes (CredentialsOf): never the client's own say.
    request_.set(kClientAddressField, ClientIp());
    const Route route = ClassifyRequest(request_);
    if (const std::optional<Status> wrong = WrongListener(role_, route)) {
      Write(ErrorResponse(request_, *wrong));
      return;
    }
    const auto method = request_.method();
    if (route == Route::kHealth || route == Route::kRoot || route == Route::kUnknown ||
        method == http::verb::options) {
      Write(HandleInline(route));
      return;
    }
    // GET everywhere (Mixpanel's GET /track carries data= in the query),
    // POST on the ingest routes, PUT on /api/policy; a HEAD must not ingest
    // anything.
    if (!AllowsMethod(route, method)) {
      Response response = ErrorResponse(
          request_, Status::InvalidArgument("method: " + std::string(request_.method_string()) +
                                            " is not allowed on " +
                                            std::string(RouteLabel(route))));
      response.result(http::status::method_not_allowed);
      response.set(http::field::allow, AllowedMethods(route));
      Write(std::move(response));
      return;
    }
    if (route == Route::kMetrics) {  // cheap: answered here, after its method check
      Write(HandleInline(route));
      return;
    }
    beast::get_lowest_layer(stream_).expires_never();
    if (route == Route::kExport) {
      net::post(server_.exporters(),
                [self = this->shared_from_this()] { self->StreamExport(); });
      return;
    }
    if (route == Route::kQuery) {
      // A query may scan millions of events: on the export pool, so that
      // ingestion keeps its workers.
      net::post(server_.exporters(), [self = this->shared_from_this()] {
        auto response = std::make_shared<Response>(HandleQuery(
            self->request_, *self->server_.settings(), self->server_.service()));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      });
      return;
    }
    if (route == Route::kPolicyPreview || IsPolicyAdminRoute(route)) {
      // A PUT writes and fsyncs the policy and its history: off the I/O
      // thread, as a preview's policy work is.
      net::post(server_.workers(), [self = this->shared_from_this(), route] {
        auto response = std::make_shared<Response>(
            route == Route::kPolicyPreview
                ? HandlePolicyPreview(self->request_, *self->server_.settings(),
                                      self->server_.service())
                : HandlePolicyAdmin(route, self->request_, self->server_.service()));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      });
      return;
    }
    if (IsErasureRoute(route)) {
      // An erasure fsyncs its deletion record and may rewrite segments: on a worker.
      net::post(server_.workers(), [self = this->shared_from_this(), route] {
        auto response = std::make_shared<Response>(
            HandleErasure(route, self->request_, self->server_.service()));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      });
      return;
    }
    if (route == Route::kKeys || route == Route::kKeyAction || route == Route::kAudit ||
        route == Route::kProjectAction) {
      // Key changes and audit records are written and fsynced: on a worker.
      net::post(server_.workers(), [self = this->shared_from_this(), route] {
        auto response = std::make_shared<Response>(
            route == Route::kAudit ? HandleAudit(self->request_, self->server_.service())
                                   : HandleKeys(route, self->request_, self->server_.service()));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      });
      return;
    }
    if (IsDashboardRoute(route)) {
      // Each answer's audit record is fsynced; saving a report writes a file.
      net::post(server_.workers(), [self = this->shared_from_this(), route] {
        auto response = std::make_shared<Response>(
            HandleDashboardApi(route, self->request_, self->server_.service()));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      });
      return;
    }
    if (route == Route::kPlausibleEvent) {
      // On a worker: the first event of a day writes and fsyncs its salt.
      net::post(server_.workers(), [self = this->shared_from_this()] {
        HandlePlausible(self->request_, self->ClientIp(), *self->server_.settings(),
                        self->server_.service(), [self](Response reply) {
                          auto response = std::make_shared<Response>(std::move(reply));
                          net::post(self->stream_.get_executor(),
                                    [self, response] { self->Write(std::move(*response)); });
                        });
      });
      return;
    }
    auto handle = [self = this->shared_from_this(), route] {
      // request_ stays untouched until the reply is written.
      auto reply = [self](Response reply) {
        auto response = std::make_shared<Response>(std::move(reply));
        net::post(self->stream_.get_executor(),
                  [self, response] { self->Write(std::move(*response)); });
      };
      if (IsSegmentRoute(route)) {
        HandleSegment(route, self->request_, *self->server_.settings(), self->server_.service(),
                      std::move(reply));
        return;
      }
      const auto handler = IsPostHogRoute(route) ? HandlePostHog : HandleMixpanel;
      handler(route, self->request_, self->ClientIp(), *self->server_.settings(),
              self->server_.service(), std::move(reply));
    };
    // A small request decodes faster than two thread hand-offs take; a large
    // one goes to the worker pool so that this I/O thread stays responsive.
    if (request_.body().size() + request_.target().size() <= kInlineDecodeBytesMax) {
      handle();
    } else {
      net::post(server_.workers(), std::move(handle));
    }
  }

  Response HandleInline(Route route) {
    if (request_.method() == http::verb::options) {
      if (IsIngestRoute(route)) {
        return PreflightResponse(request_);
      }
      return ErrorResponse(request_,
                           Status::NotFound("OPTIONS: no cross-origin access to this route"));
    }
    switch (route) {
      case Route::kHealth:
        return HandleHealth(request_, server_.stopping());
      case Route::kMetrics:
        return HandleMetrics(request_, server_.metrics(), server_.service());
      case Route::kRoot:
        return HandleStatic(request_, EmbeddedWebFiles());
      default:
        return ErrorResponse(
            request_,
            Status::NotFound("no route for " + std::string(TargetPath(request_.target()))));
    }
  }

  std::string ClientIp() const {
    return ClientAddress(peer_, request_["X-Forwarded-For"],
                         request_["Forwarded"], server_.settings()->trusted_proxies);
  }

  // Runs on a worker: the connection has no other operation pending while
  // the export streams with synchronous chunked writes.
  void StreamExport() {
    auto parsed = ParseExport(request_, *server_.settings(), server_.service());
    if (!parsed.ok()) {
      auto response = std::make_shared<Response>(ErrorResponse(request_, parsed.status()));
      net::post(stream_.get_executor(),
                [self = this->shared_from_this(), response] { self->Write(std::move(*response)); });
      return;
    }
    boost::system::error_code error;
    // What is formatted but not yet written: the header, chunk frames and
    // data, in kStreamWriteBytesMin pieces (a copy of each byte, a few µs
    // per 64 KiB against the hundreds it took to format).
    std::string pending;
    bool header_sent = false;
    const auto send_header = [&] {
      http::response<http::empty_body> header{http::status::ok, request_.version()};
      header.set(http::field::server, "minpanel");
      header.set(http::field::content_type, "application/x-ndjson; charset=utf-8");
      header.keep_alive(request_.keep_alive());
      header.chunked(true);
      if constexpr (kTls) {
        header.set(http::field::strict_transport_security, StrictTransportSecurity());
      }
      std::ostringstream formatted;
      formatted << header.base();
      pending = std::move(formatted).str();
      pending.reserve(kStreamWriteBytesMin + kStreamWriteBytesMin / 2);
      header_sent = true;
    };
    const auto flush = [&] {
      if (!error && !pending.empty()) {
        net::write(stream_, net::buffer(pending), error);
      }
      pending.clear();
    };
    const auto sink = [&](std::string_view chunk) {
      if (!header_sent) {
        send_header();
      }
      if (chunk.empty()) {
        return !error;  // a chunk of 0 bytes would end the body
      }
      pending += fmt::format("{:x}\r\n", chunk.size());
      pending += chunk;
      pending += "\r\n";
      if (pending.size() >= kStreamWriteBytesMin) {
        flush();
      }
      return !error;
    };
    auto summary = server_.service().Export(parsed->first, parsed->second, sink);
    if (!summary.ok() && !header_sent) {
      auto response = std::make_shared<Response>(ErrorResponse(request_, summary.status()));
      net::post(stream_.get_executor(),
                [self = this->shared_from_this(), response] { self->Write(std::move(*response)); });
      return;
    }
    if (!summary.ok()) {
      // The status line has gone out (or is about to): only an unterminated
      // body can say so.
      spdlog::error("export failed mid-stream: {}", summary.status().ToString());
      flush();
      error = net::error::connection_aborted;
    }
    if (!header_sent && !error) {
      send_header();
    }
    if (!error) {
      pending += "0\r\n\r\n";  // the last chunk, with the last data
      flush();
    }
    server_.metrics().CountRequest(RouteLabel(Route::kExport), error ? 500 : 200, 0);
    const bool keep_alive = !error && request_.keep_alive();
    net::post(stream_.get_executor(), [self = this->shared_from_this(), keep_alive] {
      keep_alive ? self->Read() : self->Close();
    });
  }

  void Write(Response response) {
    if (server_.stopping()) {
      response.keep_alive(false);
    }
    if constexpr (kTls) {
      response.set(http::field::strict_transport_security, StrictTransportSecurity());
    }
    const Route route = ClassifyTarget(request_.target());
    server_.metrics().CountRequest(RouteLabel(route), response.result_int(),
                                   request_.body().size());
    if (server_.settings()->config.access_log) {
      // The route, never the path or query: both can carry personal data
      // (distinct_id=…, /users/a@b.test) as well as secrets.
      spdlog::info("{} {} {} {} bytes", std::string(request_.method_string()),
                   RouteLabel(route), response.result_int(), request_.body().size());
    }
    response_ = std::move(response);
    const auto limits = server_.settings()->config.limits;
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(limits.request_timeout_ms));
    http::async_write(stream_, response_,
                      [self = this->shared_from_this()](boost::system::error_code error, size_t) {
                        self->OnWrite(error);
                      });
  }

  void OnWrite(boost::system::error_code error) {
    const bool keep_alive = response_.keep_alive();
    response_ = {};
    request_ = {};
    if (!error && drain_on_close_) {
      DrainThenClose();
      return;
    }
    if (error || !keep_alive) {
      Close();
      return;
    }
    Read();
  }

  // Half-closes, then reads and discards what the client still sends, up to
  // kDrainBytesMax or kDrainTimeout, then closes.
  void DrainThenClose() {
    boost::system::error_code error;
    auto& layer = beast::get_lowest_layer(stream_);
    layer.socket().shutdown(tcp::socket::shutdown_send, error);
    layer.expires_after(kDrainTimeout);
    drain_buffer_.resize(64 * 1024);
    layer.async_read_some(net::buffer(drain_buffer_),
                          [self = this->shared_from_this()](boost::system::error_code read_error,
                                                            size_t bytes) {
                            self->drained_bytes_ += bytes;
                            if (read_error || self->drained_bytes_ > kDrainBytesMax) {
                              self->Close();
                              return;
                            }
                            self->DrainThenClose();
                          });
  }

  void Close() {
    boost::system::error_code error;
    auto& socket = beast::get_lowest_layer(stream_).socket();
    socket.shutdown(tcp::socket::shutdown_send, error);
    socket.close(error);
  }

  Server::Impl& server_;
  const ListenerRole role_;  // of the listener that accepted the connection
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Request request_;
  Response response_;
  std::string peer_;
  bool idle_ = false;
  bool drain_on_close_ = false;
  std::vector<char> drain_buffer_;
  uint64_t drained_bytes_ = 0;
};

Status Server::Impl::Listen(const tcp::endpoint& endpoint, ListenerRole role) {
  auto listener = std::make_unique<Listener>(io_, role);
  tcp::acceptor& acceptor = listener->acceptor;
  boost::system::error_code error;
  acceptor.open(endpoint.protocol(), error);
  if (!error) {
    acceptor.set_option(net::socket_base::reuse_address(true), error);
  }
  if (!error) {
    acceptor.bind(endpoint, error);
  }
  if (!error) {
    acceptor.listen(net::socket_base::max_listen_connections, error);
  }
  if (error) {
    return Status::Unavailable(std::string(role == ListenerRole::kApi ? "listen_api" : "listen") +
                               " on " + endpoint.address().to_string() + ":" +
                               std::to_string(endpoint.port()) + ": " + error.message());
  }
  listener->port = acceptor.local_endpoint().port();
  listeners_.push_back(std::move(listener));
  return Status::Ok();
}

void Server::Impl::Accept(Listener& listener) {
  listener.acceptor.async_accept(net::make_strand(io_), [this, &listener](
                                                            boost::system::error_code error,
                                                            tcp::socket socket) {
    if (error) {
      if (error != net::error::operation_aborted) {
        spdlog::warn("accept: {}", error.message());
        Accept(listener);
      }
      return;
    }
    const auto current = settings();
    if (connections_open(listener.role) >=
        static_cast<int64_t>(current->config.limits.connections_max)) {
      spdlog::warn("connection refused: limits.connections_max ({}) reached on {}",
                   current->config.limits.connections_max,
                   listener.role == ListenerRole::kApi ? "listen_api" : "listen");
      socket.close(error);
    } else {
      // Every response leaves in as few writes as it can (a string body
      // with its header, an export in kStreamWriteBytesMin pieces), so
      // there is nothing for Nagle's algorithm to coalesce; with it, a
      // write's short tail waited for the client's delayed ACK (about 40
      // ms: every export took 52 ms; docs/benchmarks.md, "TCP_NODELAY").
      socket.set_option(tcp::no_delay(true), error);
      if (error) {
        spdlog::warn("TCP_NODELAY not set on an accepted connection: {}", error.message());
      }
      StartSession(listener.role, std::move(socket));
    }
    Accept(listener);
  });
}

void Server::Impl::StartSession(ListenerRole role, tcp::socket socket) {
  if (auto context = tls(role)) {
    std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
        *this, role, std::move(socket), *context)
        ->Start();
  } else {
    std::make_shared<Session<beast::tcp_stream>>(*this, role, std::move(socket))->Start();
  }
}

void Server::Impl::ScheduleGeoReload() {
  if (!geo_timer_) {
    geo_timer_ = std::make_unique<net::steady_timer>(io_);
  }
  geo_timer_->expires_after(kGeoReloadInterval);
  geo_timer_->async_wait([this](boost::system::error_code error) {
    if (error || stopping_) {
      return;
    }
    // Cheap when nothing changed (a stat per file); runs on an I/O thread
    // only when it did, to map the new files.
    const Status reloaded = service_->ReloadGeoDatabase();
    if (!reloaded.ok()) {
      spdlog::warn("geolocation database kept: {}", reloaded.message());
    }
    ApplyTimeLimits();
    ScheduleGeoReload();
  });
}

void Server::Impl::ApplyTimeLimits() {
  // Visitor salts go 48 hours after their day starts, the audit
  // records' address keys after audit_address_retention_days, traffic or
  // not.
  const Status salts = service_->DestroyExpiredKeys();
  if (!salts.ok()) {
    spdlog::error("expired visitor salts or audit address keys not destroyed: {}",
                  salts.message());
  }
  // Retention logs a drop per rule at most once an hour (one fsync each).
  const Status retention = service_->ApplyRetention();
  if (!retention.ok()) {
    spdlog::error("retention not applied, retried in a minute: {}", retention.message());
  }
}

void Server::Impl::ScheduleAuditQueue() {
  if (!queue_timer_) {
    queue_timer_ = std::make_unique<net::steady_timer>(io_);
  }
  queue_timer_->expires_after(kAuditQueueInterval);
  queue_timer_->async_wait([this](boost::system::error_code error) {
    if (error || stopping_) {
      return;
    }
    // The server holds the audit log: a command's incident run (`minpanel
    // incident …` while it runs) is left in the queue for it to append.
    const auto drained = service_->DrainAuditQueue();
    if (!drained.ok()) {
      spdlog::error("audit queue not drained, retried: {}", drained.status().message());
    } else if (drained->rejected > 0) {
      spdlog::warn("audit queue: {} file(s) set aside as *.rejected, not recorded ({})",
                   drained->rejected, drained->problem);
    }
    ScheduleAuditQueue();
  });
}

void Server::Impl::OnSignal(int signal_number) {
  if (signal_number == SIGHUP) {
    Reload();
    signals_.async_wait([this](boost::system::error_code error, int number) {
      if (!error) {
        OnSignal(number);
      }
    });
    return;
  }
  spdlog::info("signal {}: stopping (finishing in-flight requests)", signal_number);
  BeginShutdown();
}

void Server::Impl::Reload() {
  auto config = reload_ ? reload_() : Result<service::Config>(settings()->config);
  Result<std::shared_ptr<const Settings>> settings =
      config.ok() ? MakeSettings(*config) : Result<std::shared_ptr<const Settings>>(config.status());
  Result<std::shared_ptr<ssl::context>> tls =
      settings.ok() ? LoadTls((*settings)->config.tls) : settings.status();
  Result<std::shared_ptr<ssl::context>> tls_api =
      tls.ok() ? LoadTls((*settings)->config.tls_api) : tls.status();
  if (!tls_api.ok()) {
    spdlog::error("reload refused, keeping the running configuration: {}",
                  tls_api.status().message());
    return;
  }
  const std::shared_ptr<const Settings> running_settings = this->settings();
  const service::Config& running = running_settings->config;
  if ((*settings)->config.listen != running.listen ||
      (*settings)->config.listen_api != running.listen_api ||
      (*settings)->config.data_folder != running.data_folder) {
    spdlog::warn("reload: listen, listen_api and data_folder change only on restart");
  }
  {
    std::lock_guard lock(settings_mutex_);
    // A new certificate applies to new connections; a configuration
    // without one leaves the running one in force (TLS is never turned off
    // by a reload).
    settings_ = *settings;
    if (*tls != nullptr) {
      tls_ = *tls;
    }
    if (*tls_api != nullptr) {
      tls_api_ = *tls_api;
    }
  }
  service_->SetProjectSettings((*settings)->config.project_settings);
  service_->SetAnomalyRules((*settings)->config.anomaly);
  alerts_->SetWebhook((*settings)->config.anomaly.webhook,
                      (*settings)->config.anomaly.webhook_ca_file);
  service_->SetErasurePurgeDeadline((*settings)->config.erasure_purge_deadline_hours);
  const auto notes = service_->Reload();
  if (!notes.ok()) {
    spdlog::error("reload of projects and policies failed: {}", notes.status().ToString());
    return;
  }
  for (const std::string& note : *notes) {
    spdlog::warn("reload: {}", note);
  }
  spdlog::info("reloaded configuration, certificates and projects");
}

void Server::Impl::BeginShutdown() {
  if (stopping_.exchange(true)) {
    return;
  }
  boost::system::error_code error;
  for (const auto& listener : listeners_) {
    listener->acceptor.close(error);
  }
  signals_.cancel(error);
  CloseIdleSessions();
  shutdown_timer_ = std::make_unique<net::steady_timer>(io_);
  WaitForSessions(std::chrono::steady_clock::now() + kShutdownDeadline);
}

// The sessions are locked out of the map first and closed after the map's
// mutex is released: the last reference to a session may be the one taken
// here, and its destructor unregisters it, which takes the same mutex (a
// self-deadlock at shutdown, seen under the audit benchmark).
void Server::Impl::CloseIdleSessions() {
  std::vector<std::shared_ptr<SessionBase>> sessions;
  {
    std::lock_guard lock(sessions_mutex_);
    sessions.reserve(sessions_.size());
    for (auto& [raw, weak] : sessions_) {
      if (auto session = weak.lock()) {
        sessions.push_back(std::move(session));
      }
    }
  }
  for (const auto& session : sessions) {
    session->CloseIfIdle();
  }
}

void Server::Impl::WaitForSessions(std::chrono::steady_clock::time_point deadline) {
  if (metrics_.connections_open() == 0 || std::chrono::steady_clock::now() >= deadline) {
    io_.stop();
    return;
  }
  CloseIdleSessions();  // those that became idle since the last look
  shutdown_timer_->expires_after(kShutdownPoll);
  shutdown_timer_->async_wait([this, deadline](boost::system::error_code) {
    WaitForSessions(deadline);
  });
}

Status Server::Impl::Run() {
  // Before the first request: a folder opened after days stopped, or
  // restored from a backup older than the source's last drops and profile
  // expiries, shows nothing retention hides (else it would until the
  // timer's first pass, a minute on). Connections wait in the backlog.
  ApplyTimeLimits();
  signals_.async_wait([this](boost::system::error_code error, int number) {
    if (!error) {
      OnSignal(number);
    }
  });
  for (const auto& listener : listeners_) {
    Accept(*listener);
  }
  ScheduleGeoReload();
  ScheduleAuditQueue();
  const uint32_t thread_count = settings()->config.io_threads;
  std::vector<std::thread> threads;
  for (uint32_t thread_idx = 1; thread_idx < thread_count; ++thread_idx) {
    threads.emplace_back([this] { io_.run(); });
  }
  io_.run();
  for (std::thread& thread : threads) {
    thread.join();
  }
  workers_.join();
  exporters_.join();
  return service_->Close();
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Start(const service::Config& config,
                                              service::Service* service, ConfigLoader reload) {
  MP_ASSIGN_OR_RETURN(std::shared_ptr<const Settings> settings, MakeSettings(config));
  MP_ASSIGN_OR_RETURN(std::shared_ptr<ssl::context> tls, LoadTls(config.tls));
  MP_ASSIGN_OR_RETURN(std::shared_ptr<ssl::context> tls_api, LoadTls(config.tls_api));
  MP_ASSIGN_OR_RETURN(const tcp::endpoint endpoint, ParseListen("listen", config.listen));
  std::optional<tcp::endpoint> api_endpoint;
  if (!config.listen_api.empty()) {
    MP_ASSIGN_OR_RETURN(api_endpoint, ParseListen("listen_api", config.listen_api));
    MP_RETURN_IF_ERROR(CheckListenersApart(endpoint, *api_endpoint));
  }
  // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, which
  // the store reports, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(service, std::move(reload), settings, std::move(tls),
                                     std::move(tls_api));
  if (api_endpoint.has_value()) {
    MP_RETURN_IF_ERROR(impl->Listen(endpoint, ListenerRole::kIngest));
    MP_RETURN_IF_ERROR(impl->Listen(*api_endpoint, ListenerRole::kApi));
  } else {
    MP_RETURN_IF_ERROR(impl->Listen(endpoint, ListenerRole::kEvery));
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::Run() { return impl_->Run(); }
void Server::Stop() { impl_->Stop(); }
uint16_t Server::port() const { return impl_->port(); }
uint16_t Server::api_port() const { return impl_->api_port(); }

}  // namespace minpanel::server
