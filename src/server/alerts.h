// AlertSender: delivers the service's anomaly alerts (service/anomaly.h;
// docs/security.md, "Anomaly rules"): a warning in the server's log —
// the key id, the rule and its numbers, never an address or a subject —
// and, when `[anomaly] webhook` is set, a JSON POST to that http:// URL
// (replaced on SIGHUP: SetWebhook).
//
// Send only queues (it runs on the thread that ran the export) on a
// WebhookQueue (webhook.h) of at most kAlertQueueMax alerts: past it the
// oldest is dropped (and logged), so a dead webhook cannot grow memory. A
// failed POST is logged, counted and not retried; alerts still queued at
// shutdown are dropped (each is in the log already). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "server/webhook.h"
#include "service/anomaly.h"

namespace minpanel::server {

inline constexpr size_t kAlertQueueMax = 1000;

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
  // Replaces the webhook (SIGHUP; empty: log only); alerts already queued
  // go to the one they were queued for.
  void SetWebhook(std::string webhook);
  // The webhook's queue, for /metrics (its counts stay across reloads).
  const WebhookQueue* queue() const { return queue_.get(); }

 private:
  std::unique_ptr<WebhookQueue> queue_;
};

}  // namespace minpanel::server
