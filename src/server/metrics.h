// Metrics: request counters of the HTTP face, rendered with the service's
// and the store's counters in the Prometheus text format. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "server/webhook.h"
#include "service/service.h"

namespace minpanel::server {

class Metrics {
 public:
  void CountRequest(std::string_view route, unsigned status, uint64_t body_bytes);
  void ConnectionOpened() { ++connections_open_; }
  void ConnectionClosed() { --connections_open_; }
  int64_t connections_open() const { return connections_open_.load(); }

  // Counts the posts of a webhook as minpanel_webhook_posts_total{webhook=
  // `name`}. Called before serving; `queue` outlives the serving.
  void AddWebhook(std::string name, const WebhookQueue* queue) {
    webhooks_.emplace_back(std::move(name), queue);
  }

  // The whole /metrics page.
  std::string Render(const service::ServiceMetrics& service, const store::Stats& store) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, unsigned>, uint64_t> requests_;
  std::atomic<uint64_t> request_bytes_{0};
  std::atomic<int64_t> connections_open_{0};
  std::vector<std::pair<std::string, const WebhookQueue*>> webhooks_;
};

}  // namespace minpanel::server
