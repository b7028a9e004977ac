#include "server/alerts.h"

#include <spdlog/spdlog.h>

#include "query/query.h"

namespace minpanel::server {

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

AlertSender::AlertSender(std::string webhook)
    : queue_(std::make_unique<WebhookQueue>("anomaly webhook", std::move(webhook), kAlertQueueMax,
                                            0)) {}

void AlertSender::SetWebhook(std::string webhook) { queue_->SetUrl(std::move(webhook)); }

AlertSender::~AlertSender() = default;

void AlertSender::Send(const service::AnomalyAlert& alert) {
  spdlog::warn("anomaly: key {} of project {} broke the rule '{}': {}{}", alert.key_id,
               alert.project_id, alert.rule, alert.detail,
               alert.suspended ? "; the key is suspended until an admin enables it" : "");
  queue_->Push(AlertJson(alert));
}

}  // namespace minpanel::server
