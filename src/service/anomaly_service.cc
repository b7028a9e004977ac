// The Service's anomaly rules (anomaly.h; docs/security.md, "Anomaly
// rules"): with `suspend` on, an access key's export is first judged by the
// rules that do not need its size (hours, address, and a burst when it is
// provably small) and refused before it starts when one fires; after the
// export its history is updated and the rules evaluated. Each alert is
// counted, audited (`anomaly`, the rule and its numbers in `reason`),
// suspends the key when the rules say so
// (`key.suspend`) and goes to the server's handler (a log line and the
// webhook). An admin lifts a suspension (`key.enable`, Service::EnableAccessKey
// in access.cc). A project secret is watched too, after its exports only,
// and never suspended (watched_credentials.h says why).
#include <sodium.h>

#include <algorithm>

#include "service/service.h"
#include "service/watched_credentials.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kAddressKeyFile = "/anomaly-address.key";
static_assert(kProjectSecretKeyPrefix == "secret:", "IsProjectSecretId reads this prefix");
constexpr size_t kAddressHashBytes = 16;

size_t RuleIndex(std::string_view rule) {
  for (size_t rule_idx = 0; rule_idx < std::size(kAnomalyRuleNames); ++rule_idx) {
    if (kAnomalyRuleNames[rule_idx] == rule) {
      return rule_idx;
    }
  }
  return 0;
}

}  // namespace

Result<std::array<uint8_t, 32>> LoadAddressKey(FileSystem& file_system,
                                               const std::string& key_folder) {
  const std::string path = key_folder + std::string(kAddressKeyFile);
  std::array<uint8_t, 32> key{};
  if (file_system.Exists(path)) {
    MP_ASSIGN_OR_RETURN(const std::string bytes, file_system.ReadFile(path));
    if (bytes.size() != key.size()) {
      return Status::Corruption(path + ": not a 32-byte key");
    }
    std::copy(bytes.begin(), bytes.end(), key.begin());
    return key;
  }
  randombytes_buf(key.data(), key.size());
  MP_RETURN_IF_ERROR(file_system.CreateDirectories(key_folder, 0700));
  MP_RETURN_IF_ERROR(file_system.WriteFileAtomically(
      path, std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), 0600));
  return key;
}

Result<std::vector<ListedAlert>> Service::ReadAlerts(const Access& access,
                                                     const AlertFilter& filter) {
  MP_RETURN_IF_ERROR(CheckAlertFilter(filter));
  audit::Filter audit_filter = AuditFilterOfAlerts(filter);
  if (access.principal.project_id != 0) {
    audit_filter.project = access.principal.project_id;
  }
  MP_ASSIGN_OR_RETURN(const std::vector<audit::AuditEntry> records, audit_->Show(audit_filter));
  std::vector<ListedAlert> alerts = AlertsOfRecords(records, filter.limit);
  const int64_t now_ms = clock_->NowMs();
  for (ListedAlert& listed : alerts) {
    if (IsProjectSecretId(listed.alert.key_id)) {
      // Never suspended: active while its project is.
      listed.key_state = projects_->FindById(listed.alert.project_id).has_value() ? "active"
                                                                                  : "deleted";
      continue;
    }
    const std::optional<AccessKey> key = access_keys_->FindById(listed.alert.key_id);
    listed.key_state = !key.has_value()                               ? "deleted"
                       : key->revoked_ms != 0                         ? "revoked"
                       : key->suspended_ms != 0                       ? "suspended"
                       : key->expires_ms != 0 && key->expires_ms <= now_ms ? "expired"
                                                                           : "active";
  }
  audit::AuditEntry entry;
  entry.act = "audit.read";
  entry.rows = alerts.size();
  MP_RETURN_IF_ERROR(Audit(access, std::move(entry)));
  return alerts;
}

void Service::SetAnomalyRules(const AnomalyRules& rules) {
  auto replacement = std::make_shared<const AnomalyRules>(rules);
  std::lock_guard lock(anomaly_rules_mutex_);
  anomaly_rules_ = std::move(replacement);
}

std::shared_ptr<const AnomalyRules> Service::AnomalyRulesNow() const {
  std::lock_guard lock(anomaly_rules_mutex_);
  return anomaly_rules_;
}

void Service::SetAlertHandler(std::function<void(const AnomalyAlert&)> handler) {
  alert_handler_ = std::move(handler);
}

void Service::SetCheckpointHandler(std::function<void(std::string_view line)> handler) {
  audit_->SetCheckpointObserver(std::move(handler));
}

ExportObservation Service::ObservationOf(const Access& access, uint64_t rows,
                                         uint64_t subjects) const {
  ExportObservation observation;
  observation.key_id = access.principal.key_id;
  observation.project_id = access.project.id;
  observation.time_ms = clock_->NowMs();
  observation.rows = rows;
  observation.subjects = subjects;
  if (!access.client_address.empty()) {
    std::array<uint8_t, kAddressHashBytes> hash{};
    crypto_generichash(hash.data(), hash.size(),
                       reinterpret_cast<const uint8_t*>(access.client_address.data()),
                       access.client_address.size(), address_key_.data(), address_key_.size());
    observation.address_hash = Id128::FromBytes(hash).ToHex();
  }
  return observation;
}

void Service::RaiseAlerts(const Access& access, const AnomalyRules& rules,
                          std::vector<AnomalyAlert>* alerts) {
  Access anomaly = access;
  anomaly.principal.key_id = std::string(kAnomalyAuditKey);
  for (AnomalyAlert& alert : *alerts) {
    anomaly_alerts_[RuleIndex(alert.rule)].fetch_add(1, std::memory_order_relaxed);
    audit::AuditEntry entry;
    entry.act = "anomaly";
    entry.target = alert.key_id;
    entry.reason = alert.rule + ": " + alert.detail;
    // Best effort: a failed log refuses every later read anyway.
    (void)Audit(anomaly, entry);
    // A project secret is never suspended (watched_credentials.h).
    if (rules.suspend && IsAccessKeyId(alert.key_id) &&
        access_keys_->Suspend(alert.key_id, alert.rule).ok()) {
      alert.suspended = true;
      keys_suspended_.fetch_add(1, std::memory_order_relaxed);
      entry.act = "key.suspend";
      (void)Audit(anomaly, std::move(entry));
    }
    if (alert_handler_) {
      alert_handler_(alert);
    }
  }
}

void Service::ObserveExport(const Access& access, uint64_t rows, uint64_t subjects) {
  if (key_usage_ == nullptr || !IsWatchedCredentialId(access.principal.key_id)) {
    return;
  }
  const std::shared_ptr<const AnomalyRules> rules = AnomalyRulesNow();
  KeyUsage::Observed observed =
      key_usage_->Observe(*rules, ObservationOf(access, rows, subjects));
  if (!observed.written.ok()) {
    key_usage_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  RaiseAlerts(access, *rules, &observed.alerts);
}

Status Service::JudgeBeforeExport(const Access& access, const ExportOptions& options) {
  // Only an access key's export may be refused before it starts: a
  // project secret's is judged after it ends and never refused.
  if (key_usage_ == nullptr || !IsAccessKeyId(access.principal.key_id)) {
    return Status::Ok();
  }
  const std::shared_ptr<const AnomalyRules> rules = AnomalyRulesNow();
  // Without `suspend` an alert changes nothing for the export: the rules
  // judge it once it has ended, knowing its size.
  if (!rules->suspend) {
    return Status::Ok();
  }
  const ExportObservation observation = ObservationOf(access, 0, 0);
  MP_ASSIGN_OR_RETURN(BeforeExport judged, key_usage_->Judge(*rules, observation));
  if (judged.burst_alert.has_value()) {
    // The burst counts small exports: this one completes it only if it
    // returns at most burst_rows_max rows, which its limit or the zone
    // maps' bound (an upper bound, export_reason.cc) can prove before it
    // starts. Otherwise it is judged at its end, as the volume rules are.
    bool small = options.limit != 0 && options.limit <= rules->burst_rows_max;
    if (!small) {
      MP_ASSIGN_OR_RETURN(const uint64_t bound, EstimateExportRows(access.project, options));
      small = bound <= rules->burst_rows_max;
    }
    if (small) {
      judged.alerts.push_back(std::move(*judged.burst_alert));
    } else {
      judged.burst_alert.reset();
    }
  }
  if (judged.alerts.empty()) {
    return Status::Ok();
  }
  // The hour and the address become the key's, the burst is crossed: once
  // an admin has looked and enabled the key, the same export is not
  // refused again.
  if (!key_usage_->Vet(*rules, observation, judged.burst_alert.has_value()).ok()) {
    key_usage_failures_.fetch_add(1, std::memory_order_relaxed);
  }
  RaiseAlerts(access, *rules, &judged.alerts);
  std::string rules_broken;
  for (const AnomalyAlert& alert : judged.alerts) {
    rules_broken += (rules_broken.empty() ? "'" : ", '") + alert.rule + "' (" + alert.detail + ")";
  }
  return Status::PermissionDenied(
      "anomaly: this export breaks the rule " + rules_broken +
      "; it was refused before anything was sent, and the key is suspended until an admin "
      "enables it");
}

}  // namespace minpanel::service
