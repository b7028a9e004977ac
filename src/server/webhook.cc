#include "server/webhook.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>

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

}  // namespace

// One POST within kWebhookPostTimeoutMs (asynchronous operations, since a
// tcp_stream's expiry covers only those); the error's message, or empty.
std::string PostJson(const std::string& url, const std::string& body) {
  const Target target = ParseWebhook(url);
  const auto timeout = std::chrono::milliseconds(kWebhookPostTimeoutMs);
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
    return "no answer within " + std::to_string(kWebhookPostTimeoutMs) + " ms";
  }
  if (response.result_int() / 100 != 2) {
    return "answered " + std::to_string(response.result_int());
  }
  return "";
}

WebhookQueue::WebhookQueue(std::string what, std::string url, size_t queue_max, int64_t drain_ms,
                           QueueSender send)
    : what_(std::move(what)),
      queue_max_(queue_max),
      drain_ms_(drain_ms),
      send_(std::move(send)),
      url_(std::move(url)) {
  thread_ = std::thread([this] { Loop(); });
}

WebhookQueue::~WebhookQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void WebhookQueue::Push(std::string body) {
  {
    std::lock_guard lock(mutex_);
    if (url_.empty()) {
      return;
    }
    if (queue_.size() >= queue_max_) {
      queue_.pop_front();
      ++dropped_;
      spdlog::error("{}: {} messages queued; the oldest dropped", what_, queue_max_);
    }
    queue_.emplace_back(url_, std::move(body));
  }
  wake_.notify_one();
}

void WebhookQueue::SetUrl(std::string url) {
  std::lock_guard lock(mutex_);
  url_ = std::move(url);
}

WebhookQueue::Counts WebhookQueue::counts() const {
  return Counts{sent_.load(), failed_.load(), dropped_.load()};
}

void WebhookQueue::Loop() {
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_ && !deadline.has_value()) {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms_);
    }
    if (queue_.empty() || (deadline.has_value() && std::chrono::steady_clock::now() >= *deadline)) {
      if (stopping_) {
        // What is left has been logged where it arose; a dead receiver
        // must not hold up the shutdown past the drain time.
        dropped_ += queue_.size();
        if (!queue_.empty()) {
          spdlog::error("{}: {} messages not sent at shutdown", what_, queue_.size());
        }
        return;
      }
      continue;
    }
    const auto [url, body] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    const std::string error = send_(url, body);
    if (error.empty()) {
      ++sent_;
    } else {
      ++failed_;
      spdlog::error("{}: sending failed: {}", what_, error);
    }
    lock.lock();
  }
}

}  // namespace minpanel::server
