// AlertSender: delivers the service's anomaly alerts (service/anomaly.h;
// docs/security.md, "Anomaly rules"): a warning in the server's log —
// the key id, the rule and its numbers, never an address or a subject —
// and, when `[anomaly] webhook` is set, a JSON POST to that http:// URL.
//
// Send only queues (it runs on the thread that ran the export); one thread
// of its own posts, each with a timeout of kAlertPostTimeoutMs, in order.
// The queue holds at most kAlertQueueMax alerts: past it the oldest is
// dropped (and logged), so a dead webhook cannot grow memory. A failed
// POST is logged and not retried. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "service/anomaly.h"

namespace minpanel::server {

inline constexpr size_t kAlertQueueMax = 1000;
inline constexpr int64_t kAlertPostTimeoutMs = 5000;

// The alert as the webhook receives it: {"alert":"anomaly","key","project_id",
// "rule","detail","time_ms","suspended"}.
std::string AlertJson(const service::AnomalyAlert& alert);

class AlertSender {
 public:
  // `webhook`: empty (log only) or an http:// URL (checked by the config).
  explicit AlertSender(std::string webhook);
  ~AlertSender();
  AlertSender(const AlertSender&) = delete;
  AlertSender& operator=(const AlertSender&) = delete;

  void Send(const service::AnomalyAlert& alert);
  // Replaces the webhook (SIGHUP); alerts already queued go to the one
  // they were queued for.
  void SetWebhook(std::string webhook);

 private:
  void Loop();

  std::mutex mutex_;
  std::string webhook_;  // guarded by mutex_
  std::condition_variable wake_;
  std::deque<std::pair<std::string, std::string>> queue_;  // webhook, body
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace minpanel::server
