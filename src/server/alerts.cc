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

AlertSender::AlertSender(std::string webhook, std::string ca_file, std::string spool_path)
    : ca_file_(std::move(ca_file)),
      queue_(std::make_unique<WebhookQueue>(
          "anomaly webhook", std::move(webhook), kAlertQueueMax, 0,
          [this](const std::string& url, const std::string& body) {
            return PostJson(url, body, CaFile());
          },
          std::move(spool_path))) {}

void AlertSender::SetWebhook(std::string webhook, std::string ca_file) {
  {
    std::lock_guard lock(ca_file_mutex_);
    ca_file_ = std::move(ca_file);
  }
  queue_->SetUrl(std::move(webhook));
}

std::string AlertSender::CaFile() const {
  std::lock_guard lock(ca_file_mutex_);
  return ca_file_;
}

AlertSender::~AlertSender() = default;

void AlertSender::Send(const service::AnomalyAlert& alert) {
  spdlog::warn("anomaly: key {} of project {} broke the rule '{}': {}{}", alert.key_id,
               alert.project_id, alert.rule, alert.detail,
               alert.suspended ? "; the key is suspended until an admin enables it" : "");
  queue_->Push(AlertJson(alert));
}

}  // namespace minpanel::server
