// WebhookQueue: sends messages to one destination, in order, from a thread
// of its own: by default POSTs JSON bodies to an http:// URL, each within
// kWebhookPostTimeoutMs; given another sender, datagrams to the syslog
// socket (syslog.h). Shared by the anomaly alerts (alerts.h) and the audit
// checkpoints' webhook and syslog sinks (docs/security.md, "The audit log").
//
// Push only queues and never blocks (and does nothing while the
// destination is empty; SetUrl replaces it, on SIGHUP, for the messages
// pushed after): past `queue_max` messages the oldest is dropped (and
// logged), so a dead or slow receiver can neither grow memory nor hold up
// the caller. A failed send is logged, counted and not retried. At
// destruction what is still queued is sent for at most `drain_ms` (0:
// dropped), so that a last message written at shutdown leaves. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace minpanel::server {

inline constexpr int64_t kWebhookPostTimeoutMs = 5000;

// Sends one message to a destination: the error's message, or empty.
using QueueSender =
    std::function<std::string(const std::string& destination, const std::string& message)>;
// A POST of the JSON `body` to the http:// `url` within
// kWebhookPostTimeoutMs: a WebhookQueue's default sender.
std::string PostJson(const std::string& url, const std::string& body);

class WebhookQueue {
 public:
  struct Counts {
    uint64_t sent = 0;     // answered 2xx
    uint64_t failed = 0;   // no connection, no answer in time, or not 2xx
    uint64_t dropped = 0;  // pushed out of a full queue, or left at shutdown
  };

  // `what` names the webhook in log lines ("anomaly webhook"); `url` is an
  // http:// URL (checked by the config), or empty: none yet; or what `send`
  // takes as its destination.
  WebhookQueue(std::string what, std::string url, size_t queue_max, int64_t drain_ms,
               QueueSender send = PostJson);
  ~WebhookQueue();
  WebhookQueue(const WebhookQueue&) = delete;
  WebhookQueue& operator=(const WebhookQueue&) = delete;

  void Push(std::string body);
  // Bodies already queued still go to the URL they were pushed for.
  void SetUrl(std::string url);
  Counts counts() const;

 private:
  void Loop();

  const std::string what_;
  const size_t queue_max_;
  const int64_t drain_ms_;
  const QueueSender send_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::string url_;                                        // guarded by mutex_
  std::deque<std::pair<std::string, std::string>> queue_;  // url, body
  bool stopping_ = false;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace minpanel::server
