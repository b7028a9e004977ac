#include "server/metrics.h"

#include <fmt/format.h>

namespace minpanel::server {
namespace {

void Counter(std::string* out, std::string_view name, std::string_view help, uint64_t value) {
  *out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
}

void Gauge(std::string* out, std::string_view name, std::string_view help, int64_t value) {
  *out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, value);
}

// Prometheus label values escape backslash, double quote and newline.
std::string LabelValue(std::string_view text) {
  std::string escaped;
  for (const char c : text) {
    if (c == '\\' || c == '"') {
      escaped.push_back('\\');
      escaped.push_back(c);
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

void SyncHistogram(std::string* out, const store::Stats& store) {
  const std::string_view name = "minpanel_log_fsync_seconds";
  *out += fmt::format("# HELP {0} Write-ahead log fsync latency.\n# TYPE {0} histogram\n", name);
  uint64_t cumulative = 0;
  for (size_t bucket_idx = 0; bucket_idx < store::kSyncLatencyBoundsUs.size(); ++bucket_idx) {
    cumulative += store.sync_latency_counts[bucket_idx];
    *out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name,
                        static_cast<double>(store::kSyncLatencyBoundsUs[bucket_idx]) / 1e6,
                        cumulative);
  }
  cumulative += store.sync_latency_counts.back();
  *out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, cumulative);
  *out += fmt::format("{}_sum {}\n{}_count {}\n", name,
                      static_cast<double>(store.sync_latency_sum_us) / 1e6, name, cumulative);
}

}  // namespace

void Metrics::CountRequest(std::string_view route, unsigned status, uint64_t body_bytes) {
  request_bytes_ += body_bytes;
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(route), status}];
}

std::string Metrics::Render(const service::ServiceMetrics& service,
                            const store::Stats& store) const {
  std::string out;
  out += "# HELP minpanel_http_requests_total HTTP requests by route and status.\n"
         "# TYPE minpanel_http_requests_total counter\n";
  {
    std::lock_guard lock(mutex_);
    for (const auto& [key, count] : requests_) {
      out += fmt::format("minpanel_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                         key.first, key.second, count);
    }
  }
  Counter(&out, "minpanel_http_request_body_bytes_total", "Request body bytes received.",
          request_bytes_.load());
  Gauge(&out, "minpanel_http_connections_open", "Open client connections.",
        connections_open_.load());
  Counter(&out, "minpanel_events_accepted_total", "Events stored.", service.events_accepted);
  Counter(&out, "minpanel_events_rejected_total", "Events refused as invalid.",
          service.events_rejected);
  Counter(&out, "minpanel_events_duplicate_total", "Events dropped as duplicates.",
          service.events_duplicate);
  Counter(&out, "minpanel_profile_updates_accepted_total", "Profile updates stored.",
          service.profile_updates_accepted);
  Counter(&out, "minpanel_policy_properties_dropped_total",
          "Properties the privacy policy dropped.", service.properties_dropped);
  Counter(&out, "minpanel_policy_properties_pseudonymised_total",
          "Property values the privacy policy replaced with keyed pseudonyms.",
          service.properties_pseudonymised);
  Counter(&out, "minpanel_policy_values_redacted_total",
          "Values in which the PII detectors redacted something.", service.values_redacted);
  Counter(&out, "minpanel_policy_context_fields_generalised_total",
          "Locations, browsers, URLs and referrer hosts derived by the policy.",
          service.context_fields_generalised);
  out += "# HELP minpanel_policy_detections_total PII found and redacted, by detector.\n"
         "# TYPE minpanel_policy_detections_total counter\n";
  for (const auto& [detector, count] : service.detections) {
    out += fmt::format("minpanel_policy_detections_total{{detector=\"{}\"}} {}\n", detector,
                       count);
  }
  out += "# HELP minpanel_policy_rule_matches_total Properties matched, by policy rule.\n"
         "# TYPE minpanel_policy_rule_matches_total counter\n";
  for (const service::RuleMatches& rule : service.rule_matches) {
    out += fmt::format(
        "minpanel_policy_rule_matches_total{{project=\"{}\",line=\"{}\",match=\"{}\","
        "action=\"{}\"}} {}\n",
        LabelValue(rule.project), rule.line, LabelValue(rule.pattern), rule.action, rule.matches);
  }
  Counter(&out, "minpanel_policy_context_fields_discarded_total",
          "IP addresses, user agents, URLs and referrers the policy discarded.",
          service.context_fields_discarded);
  Counter(&out, "minpanel_export_rows_total", "Events exported.", service.export_rows);
  Counter(&out, "minpanel_queries_total", "Queries answered (POST /api/query).", service.queries);
  // Identity links per project (docs/identity.md, "Counters"): gauges of the
  // identity map the project's last query or export resolved.
  const auto identity_gauge = [&](std::string_view name, std::string_view help,
                                  uint64_t query::IdentityStats::*field) {
    out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n", name, help);
    for (const auto& [project, stats] : service.identity) {
      out += fmt::format("{}{{project=\"{}\"}} {}\n", name, LabelValue(project), stats.*field);
    }
  };
  identity_gauge(
      "minpanel_identity_links",
      "Identity links read from the stored events (each distinct link once per segment).",
      &query::IdentityStats::links);
  identity_gauge("minpanel_identity_merges", "Identity links that joined two persons.",
                 &query::IdentityStats::merges);
  identity_gauge("minpanel_identity_persons", "Persons of more than one id.",
                 &query::IdentityStats::persons);
  identity_gauge("minpanel_identity_person_ids_max",
                 "Ids in the largest person: the longest merge chain (at most 500).",
                 &query::IdentityStats::person_ids_max);
  out +=
      "# HELP minpanel_identity_links_refused Identity links ignored, by reason: identified (two "
      "identified ids), limit (past 500 ids in one person).\n"
      "# TYPE minpanel_identity_links_refused gauge\n";
  for (const auto& [project, stats] : service.identity) {
    out += fmt::format(
        "minpanel_identity_links_refused{{project=\"{0}\",reason=\"identified\"}} {1}\n"
        "minpanel_identity_links_refused{{project=\"{0}\",reason=\"limit\"}} {2}\n",
        LabelValue(project), stats.refused_identified, stats.refused_limit);
  }
  Counter(&out, "minpanel_retention_drops_total",
          "Retention drops logged (each hides a rule's old events at once).",
          service.retention_drops);
  Counter(&out, "minpanel_retention_failures_total",
          "Retention drops and profile expiries that failed (retried).",
          service.retention_failures);
  Counter(&out, "minpanel_profiles_expired_total",
          "Profiles hidden by profile_expiry_days (subjects not seen for that many days).",
          service.profiles_expired);
  Counter(&out, "minpanel_consent_events_dropped_total",
          "Events not stored for Sec-GPC: 1 or DNT: 1 (consent = \"drop\").",
          service.consent_dropped);
  Counter(&out, "minpanel_consent_events_anonymous_total",
          "Events stored without a subject for Sec-GPC: 1 or DNT: 1 (consent = \"anonymous\").",
          service.consent_anonymous);
  Counter(&out, "minpanel_datamap_personal_keys_total",
          "Property keys that looked personal when the data map first saw them.",
          service.datamap_personal_keys);
  Counter(&out, "minpanel_datamap_uncatalogued_sightings_total",
          "Keys seen past the data map's limit of keys per project, not catalogued.",
          service.datamap_uncatalogued_sightings);
  Counter(&out, "minpanel_datamap_save_failures_total",
          "Failed writes of the data map's catalogue (retried).", service.datamap_save_failures);
  out += "# HELP minpanel_anomaly_alerts_total Anomaly alerts raised, by rule.\n"
         "# TYPE minpanel_anomaly_alerts_total counter\n";
  for (const auto& [rule, alerts] : service.anomaly_alerts) {
    out += fmt::format("minpanel_anomaly_alerts_total{{rule=\"{}\"}} {}\n", rule, alerts);
  }
  Counter(&out, "minpanel_keys_suspended_total", "Access keys an anomaly rule suspended.",
          service.keys_suspended);
  out += "# HELP minpanel_webhook_posts_total Messages of the outbound queues (the anomaly alerts' "
         "and audit checkpoints' webhooks, the audit checkpoint syslog sink) by result: sent, "
         "failed (logged; the audit checkpoint sinks retry it) or dropped (a full queue, or "
         "shutdown).\n"
         "# TYPE minpanel_webhook_posts_total counter\n";
  for (const auto& [name, queue] : webhooks_) {
    const WebhookQueue::Counts counts = queue->counts();
    for (const auto& [result, value] : {std::pair<std::string_view, uint64_t>{"sent", counts.sent},
                                        {"failed", counts.failed},
                                        {"dropped", counts.dropped}}) {
      out += fmt::format("minpanel_webhook_posts_total{{webhook=\"{}\",result=\"{}\"}} {}\n",
                         name, result, value);
    }
  }
  out += "# HELP minpanel_webhook_queue_depth Messages waiting in each outbound queue, a failed "
         "one being retried included.\n"
         "# TYPE minpanel_webhook_queue_depth gauge\n";
  for (const auto& [name, queue] : webhooks_) {
    out += fmt::format("minpanel_webhook_queue_depth{{webhook=\"{}\"}} {}\n", name,
                       queue->counts().queued);
  }
  Counter(&out, "minpanel_key_usage_write_failures_total",
          "Failed writes of an access key's export history (key_usage/).",
          service.key_usage_failures);
  Gauge(&out, "minpanel_store_deletions_active",
        "Erasures and retention drops hiding rows not yet purged from the files.",
        static_cast<int64_t>(store.deletions_active));
  Gauge(&out, "minpanel_store_deletion_oldest_age_seconds",
        "Age of the oldest erasure or drop not yet purged from the files (0: none); the "
        "purge starts an hour before erasure_purge_deadline_hours.",
        static_cast<int64_t>(store.deletion_oldest_age_ms / 1000));
  Counter(&out, "minpanel_store_purge_rows_removed_total",
          "Rows a purge or compaction left out of the segment files.", store.purge_rows_removed);
  Gauge(&out, "minpanel_store_property_purges_active",
        "Property purges hiding values of a key not yet purged from the files.",
        static_cast<int64_t>(store.property_purges_active));
  Counter(&out, "minpanel_store_purge_property_values_removed_total",
          "Values of purged property keys a purge rewrite left out of the segment files.",
          store.purge_property_values_removed);
  Counter(&out, "minpanel_store_purge_segments_dropped_total",
          "Segment files a purge removed whole (every row erased or past retention).",
          store.purge_segments_dropped);
  Counter(&out, "minpanel_store_purge_bytes_reclaimed_total",
          "Segment bytes a purge freed (files removed or replaced, less the rewrites).",
          store.purge_bytes_removed > store.purge_bytes_written
              ? store.purge_bytes_removed - store.purge_bytes_written
              : 0);
  Gauge(&out, "minpanel_store_events", "Events held by the store.",
        static_cast<int64_t>(store.events));
  Gauge(&out, "minpanel_store_log_bytes", "Bytes in the write-ahead log.",
        static_cast<int64_t>(store.log_bytes));
  Gauge(&out, "minpanel_store_profile_bytes",
        "Bytes of the profile files (profile updates moved out of the log at each flush).",
        static_cast<int64_t>(store.profile_bytes));
  Gauge(&out, "minpanel_store_dedup_entries", "Insert ids remembered for de-duplication.",
        static_cast<int64_t>(store.dedup_entries));
  Counter(&out, "minpanel_log_fsyncs_total", "Write-ahead log fsyncs.", store.fsyncs);
  Gauge(&out, "minpanel_store_segments", "Live segment files.",
        static_cast<int64_t>(store.segments));
  Gauge(&out, "minpanel_store_segment_bytes", "Bytes in live segment files.",
        static_cast<int64_t>(store.segment_bytes));
  Gauge(&out, "minpanel_store_memtable_rows", "Events not yet flushed into segment files.",
        static_cast<int64_t>(store.memtable_rows));
  Counter(&out, "minpanel_store_flushes_total", "Memtable flushes into segment files.",
          store.flushes);
  Counter(&out, "minpanel_store_flush_failures_total", "Flush attempts that failed (retried).",
          store.flush_failures);
  Counter(&out, "minpanel_store_appends_refused_memtable_full_total",
          "Batches refused because flushes fell behind.", store.appends_refused_memtable_full);
  SyncHistogram(&out, store);
  return out;
}

}  // namespace minpanel::server
