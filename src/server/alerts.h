// AlertSender: delivers the service's anomaly alerts (service/anomaly.h;
// docs/security.md, "Anomaly rules"): a warning in the server's log —
// the key id, the rule and its numbers, never an address or a subject —
// and, when `[anomaly] webhook` is set, a JSON POST to that http:// or
// https:// URL (`webhook_ca_file`: the CAs its certificate must chain to;
// both replaced on SIGHUP: SetWebhook).
//
// Send only queues (it runs on the thread that ran the export) on a
// WebhookQueue (webhook.h) of at most kAlertQueueMax alerts: past it the
// oldest is dropped (and logged), so a dead webhook cannot grow memory. A
// failed POST is logged, counted and retried, in order, with the
// checkpoints' backoff; what is not yet accepted is kept in `spool_path`
// (the audit folder's anomaly-webhook.queue) across restarts, as the
// checkpoint webhook's is. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
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
  // `webhook`: empty (log only) or an http:// or https:// URL, and
  // `ca_file` its CAs (empty: the system's); checked by the config.
  // `spool_path`: where unsent alerts are kept (empty: nowhere, and a
  // failed POST is not retried).
  AlertSender(std::string webhook, std::string ca_file, std::string spool_path);
  ~AlertSender();
  AlertSender(const AlertSender&) = delete;
  AlertSender& operator=(const AlertSender&) = delete;

  void Send(const service::AnomalyAlert& alert);
  // Replaces the webhook and its CA file (SIGHUP; empty: log only); alerts
  // already queued go to the URL they were queued for, checked against the
  // CA file in force when each is sent.
  void SetWebhook(std::string webhook, std::string ca_file);
  // The webhook's queue, for /metrics (its counts stay across reloads).
  const WebhookQueue* queue() const { return queue_.get(); }

 private:
  std::string CaFile() const;

  mutable std::mutex ca_file_mutex_;
  std::string ca_file_;  // guarded by ca_file_mutex_
  // Last: its thread, which reads ca_file_, is joined first.
  std::unique_ptr<WebhookQueue> queue_;
};

}  // namespace minpanel::server
