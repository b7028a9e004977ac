#include "server/alerts.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "query/query.h"

namespace minpanel::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct Target {
  std::string host;
  std::string port = "80";
  std::string path = "/";
};

// "http://host[:port][/path]"; the config checked the scheme.
Target ParseWebhook(std::string_view url) {
  Target target;
  std::string_view rest = url.substr(std::string_view("http://").size());
  const size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    target.path = std::string(rest.substr(slash));
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && rest.find(']', colon) == std::string_view::npos) {
    target.port = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
  }
  if (rest.size() >= 2 && rest.front() == '[' && rest.back() == ']') {
    rest = rest.substr(1, rest.size() - 2);
  }
  target.host = std::string(rest);
  return target;
}

// One POST within kAlertPostTimeoutMs (asynchronous operations, since a
// tcp_stream's expiry covers only those); the error's message, or empty.
std::string Post(const std::string& url, const std::string& body) {
  const Target target = ParseWebhook(url);
  const auto timeout = std::chrono::milliseconds(kAlertPostTimeoutMs);
  net::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  http::request<http::string_body> request{http::verb::post, target.path, 11};
  request.set(http::field::host, target.host);
  request.set(http::field::user_agent, "minpanel");
  request.set(http::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  beast::error_code failure;
  bool answered = false;
  resolver.async_resolve(
      target.host, target.port, [&](beast::error_code error, tcp::resolver::results_type results) {
        if (error) {
          failure = error;
          return;
        }
        stream.expires_after(timeout);
        stream.async_connect(results, [&](beast::error_code error, const tcp::endpoint&) {
          if (error) {
            failure = error;
            return;
          }
          http::async_write(stream, request, [&](beast::error_code error, size_t) {
            if (error) {
              failure = error;
              return;
            }
            http::async_read(stream, buffer, response, [&](beast::error_code error, size_t) {
              failure = error;
              answered = !error;
            });
          });
        });
      });
  // The resolver is not under the stream's expiry: bound the whole.
  io.run_for(2 * timeout);
  if (failure) {
    return failure.message();
  }
  if (!answered) {
    return "no answer within " + std::to_string(kAlertPostTimeoutMs) + " ms";
  }
  if (response.result_int() / 100 != 2) {
    return "answered " + std::to_string(response.result_int());
  }
  return "";
}

}  // namespace

std::string AlertJson(const service::AnomalyAlert& alert) {
  std::string json = "{\"alert\":\"anomaly\",\"key\":";
  query::AppendJsonString(alert.key_id, &json);
  json += ",\"project_id\":" + std::to_string(alert.project_id) + ",\"rule\":";
  query::AppendJsonString(alert.rule, &json);
  json += ",\"detail\":";
  query::AppendJsonString(alert.detail, &json);
  json += ",\"time_ms\":" + std::to_string(alert.time_ms) +
          ",\"suspended\":" + (alert.suspended ? "true" : "false") + "}";
  return json;
}

AlertSender::AlertSender(std::string webhook) { SetWebhook(std::move(webhook)); }

void AlertSender::SetWebhook(std::string webhook) {
  std::lock_guard lock(mutex_);
  webhook_ = std::move(webhook);
  // The thread starts with the first webhook and stays until destruction.
  if (!webhook_.empty() && !thread_.joinable()) {
    thread_ = std::thread([this] { Loop(); });
  }
}

AlertSender::~AlertSender() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void AlertSender::Send(const service::AnomalyAlert& alert) {
  spdlog::warn("anomaly: key {} of project {} broke the rule '{}': {}{}", alert.key_id,
               alert.project_id, alert.rule, alert.detail,
               alert.suspended ? "; the key is suspended until an admin enables it" : "");
  {
    std::lock_guard lock(mutex_);
    if (webhook_.empty()) {
      return;
    }
    if (queue_.size() >= kAlertQueueMax) {
      queue_.pop_front();
      spdlog::error("anomaly webhook: {} alerts queued; the oldest dropped", kAlertQueueMax);
    }
    queue_.emplace_back(webhook_, AlertJson(alert));
  }
  wake_.notify_one();
}

void AlertSender::Loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      // Each alert queued is in the log already; a dead webhook must not
      // hold up the shutdown.
      return;
    }
    const auto [webhook, body] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    const std::string error = Post(webhook, body);
    if (!error.empty()) {
      spdlog::error("anomaly webhook: the POST failed: {}", error);
    }
    lock.lock();
  }
}

}  // namespace minpanel::server
