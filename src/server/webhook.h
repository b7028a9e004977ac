// WebhookQueue: sends messages to one destination, in order, from a thread
// of its own: by default POSTs JSON bodies to an http:// or https:// URL
// (PostJson), each within kWebhookPostTimeoutMs; given another sender,
// datagrams to the syslog socket (syslog.h). Shared by the anomaly alerts
// (alerts.h) and the audit checkpoints' webhook and syslog sinks
// (docs/security.md, "The audit log").
//
// Push only queues and never blocks (and does nothing while the
// destination is empty; SetUrl replaces it, on SIGHUP, for the messages
// pushed after): past `queue_max` messages the oldest is dropped (and
// logged), so a dead or slow receiver can neither grow memory nor hold up
// the caller. Without a spool file a failed send is logged, counted and not
// retried. With one (the audit checkpoint sinks, the anomaly alerts), a
// failed message stays at
// the head of the queue and is retried, in order, with a backoff doubling
// from kWebhookRetryFirstMs to kWebhookRetryMaxMs until it is accepted; the
// queue is written to the spool file (docs/formats/audit.md, "Checkpoint
// sink queues") before a message's first send, after each failure and at
// shutdown, and read back by the next start, so it survives restarts and
// kills (a file it cannot read is renamed aside, never overwritten).
// Delivery is at least once: a crash between an accepted send and the
// spool's rewrite sends it again. At
// destruction what is still queued is sent for at most `drain_ms` (0: none)
// — a last message written at shutdown leaves — and the rest is dropped, or
// kept in the spool file. Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace minpanel::server {

inline constexpr int64_t kWebhookPostTimeoutMs = 5000;
// The retries of a queue with a spool file: the first after this long,
// each next one twice as late, at most kWebhookRetryMaxMs apart.
inline constexpr int64_t kWebhookRetryFirstMs = 500;
inline constexpr int64_t kWebhookRetryMaxMs = 60'000;
// The spool file's first line (a magic and a version).
inline constexpr std::string_view kWebhookSpoolMagic = "minpanel-webhook-queue 1";

// Sends one message to a destination: the error's message, or empty.
using QueueSender =
    std::function<std::string(const std::string& destination, const std::string& message)>;
// A POST of the JSON `body` to the http:// or https:// `url` within
// kWebhookPostTimeoutMs, through libcurl, with no proxy and no redirect
// followed; 2xx is accepted. Over https the receiver's certificate must
// chain to a CA of `ca_file` (a PEM file; empty: the system's CAs) and name
// the URL's host, or nothing is sent (the error says why). Thread-safe.
std::string PostJson(const std::string& url, const std::string& body,
                     const std::string& ca_file = "");
// PostJson with `ca_file`, as a WebhookQueue's sender.
QueueSender JsonPoster(std::string ca_file);

class WebhookQueue {
 public:
  struct Counts {
    uint64_t sent = 0;     // answered 2xx
    uint64_t failed = 0;   // no connection, no answer in time, or not 2xx
    uint64_t dropped = 0;  // pushed out of a full queue, or left at shutdown
    uint64_t queued = 0;   // waiting now (a failed one at the head included)
  };

  // `what` names the webhook in log lines ("anomaly webhook"); `url` is
  // what `send` takes as its destination (for JsonPoster, an http:// or
  // https:// URL checked by the config), or empty: none yet. `spool_path`,
  // when not empty, makes the queue retry and keep its messages across
  // restarts there (above); messages the file holds are queued first, for
  // the current `url` (or dropped, and the file removed, when it is empty).
  // A message must then hold no newline (one a line in the file; Push
  // refuses and logs it).
  WebhookQueue(std::string what, std::string url, size_t queue_max, int64_t drain_ms,
               QueueSender send = JsonPoster(""), std::string spool_path = "");
  ~WebhookQueue();
  WebhookQueue(const WebhookQueue&) = delete;
  WebhookQueue& operator=(const WebhookQueue&) = delete;

  void Push(std::string body);
  // Bodies already queued still go to the URL they were pushed for.
  void SetUrl(std::string url);
  Counts counts() const;

 private:
  struct Message {
    uint64_t id = 0;
    std::string url;
    std::string body;
  };

  void Loop();
  void LoadSpool();
  // Rewrites the spool file with `bodies` (removes it when empty), durably.
  void WriteSpool(const std::vector<std::string>& bodies);
  std::vector<std::string> BodiesLocked() const;
  // WriteSpool(BodiesLocked()) without the lock, which it takes back.
  void SpoolLocked(std::unique_lock<std::mutex>& lock);

  const std::string what_;
  const size_t queue_max_;
  const int64_t drain_ms_;
  const QueueSender send_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::string url_;                                        // guarded by mutex_
  const std::string spool_path_;
  std::deque<Message> queue_;  // guarded by mutex_
  uint64_t next_id_ = 0;       // guarded by mutex_
  bool stopping_ = false;
  bool spool_written_ = false;  // the loop's thread only: the file may hold messages
  // The loop's thread only (and LoadSpool's): messages of a lower id were
  // in the queue when the spool file was last written.
  uint64_t spooled_end_id_ = 0;
  // An unreadable spool file that could not be set aside: never written.
  bool spool_unusable_ = false;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace minpanel::server
