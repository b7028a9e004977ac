#include "service/anomaly.h"

#include "core/time_units.h"
#include "service/watched_credentials.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <optional>

namespace minpanel::service {
namespace {

constexpr int64_t kHistoryHours = int64_t{kUsageHistoryDays} * 24;
constexpr std::string_view kUsageFormat = "minpanel-key-usage";
constexpr int64_t kUsageFormatVersion = 1;
constexpr uint32_t kUsageFileMode = 0600;
// Times in a history file are milliseconds since the epoch, at most this
// (about 35,000 years): what the rules subtract from them cannot overflow.
constexpr int64_t kUsageTimeMsMax = int64_t{1} << 50;

bool IsHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// What the key's exports took in the hours (from, to], this export included.
UsageBucket WindowTotals(const KeyHistory& before, int64_t from_hour, int64_t to_hour,
                         const ExportObservation& observation) {
  UsageBucket total{1, observation.rows, observation.subjects};
  for (auto it = before.hours.upper_bound(from_hour);
       it != before.hours.end() && it->first <= to_hour; ++it) {
    total.exports += it->second.exports;
    total.rows += it->second.rows;
    total.subjects += it->second.subjects;
  }
  return total;
}

AnomalyAlert Alert(const ExportObservation& observation, std::string_view rule,
                   std::string detail) {
  AnomalyAlert alert;
  alert.key_id = observation.key_id;
  alert.project_id = observation.project_id;
  alert.rule = rule;
  alert.detail = std::move(detail);
  alert.time_ms = observation.time_ms;
  return alert;
}

// Whether `now` is over factor × usual (and the floor) while `previous` (the
// window before this export) was not: a rule fires once as it is crossed.
bool Crosses(double factor, double usual, uint64_t floor, uint64_t previous, uint64_t now) {
  const double bound = factor * std::max(usual, 1.0);
  const auto over = [&](uint64_t value) {
    return value >= floor && static_cast<double>(value) > bound;
  };
  return over(now) && !over(previous);
}

// The relative volume rule: the window's rows or subjects against the
// key's mean over the same length of window in its history before it.
std::optional<AnomalyAlert> VolumeAlert(const AnomalyRules& rules, const KeyHistory& before,
                                        const ExportObservation& observation,
                                        const UsageBucket& window) {
  const int64_t now_hour = observation.time_ms / kHourMs;
  const int64_t window_start = now_hour - rules.window_hours;  // exclusive
  const int64_t history_start = std::max(before.first_ms / kHourMs, now_hour - kHistoryHours + 1);
  const int64_t span_hours = window_start + 1 - history_start;
  if (rules.volume_factor <= 0 || span_hours < static_cast<int64_t>(rules.window_hours)) {
    return std::nullopt;
  }
  UsageBucket older;
  for (auto it = before.hours.lower_bound(history_start);
       it != before.hours.end() && it->first <= window_start; ++it) {
    older.rows += it->second.rows;
    older.subjects += it->second.subjects;
  }
  const double windows = static_cast<double>(span_hours) / rules.window_hours;
  const double usual_rows = static_cast<double>(older.rows) / windows;
  const double usual_subjects = static_cast<double>(older.subjects) / windows;
  const bool rows = Crosses(rules.volume_factor, usual_rows, rules.volume_rows_min,
                            window.rows - observation.rows, window.rows);
  const bool subjects = Crosses(rules.volume_factor, usual_subjects, rules.volume_rows_min,
                                window.subjects - observation.subjects, window.subjects);
  if (!rows && !subjects) {
    return std::nullopt;
  }
  return Alert(observation, "volume",
               std::to_string(window.rows) + " rows and " + std::to_string(window.subjects) +
                   " subjects in " + std::to_string(rules.window_hours) + " h; usual " +
                   std::to_string(std::llround(usual_rows)) + " rows and " +
                   std::to_string(std::llround(usual_subjects)) + " subjects (factor " +
                   std::to_string(static_cast<int64_t>(rules.volume_factor)) + ")");
}

bool Warm(const AnomalyRules& rules, const KeyHistory& before,
          const ExportObservation& observation) {
  return before.first_ms != 0 &&
         observation.time_ms - before.first_ms >= int64_t{rules.warmup_days} * kDayMs;
}

std::optional<AnomalyAlert> HoursAlert(const AnomalyRules& rules, const KeyHistory& before,
                                       const ExportObservation& observation) {
  if (!rules.unusual_hours) {
    return std::nullopt;
  }
  const int64_t hour_of_day = observation.time_ms / kHourMs % 24;
  const bool usual = std::any_of(before.hours.begin(), before.hours.end(), [&](const auto& hour) {
    return hour.first % 24 == hour_of_day;
  });
  if (usual) {
    return std::nullopt;
  }
  return Alert(observation, "hours",
               "an export at " + std::to_string(hour_of_day) +
                   ":00 UTC, an hour of the day this key has not exported in for " +
                   std::to_string(kUsageHistoryDays) + " days");
}

std::optional<AnomalyAlert> AddressAlert(const AnomalyRules& rules, const KeyHistory& before,
                                         const ExportObservation& observation) {
  if (!rules.new_address || observation.address_hash.empty() ||
      before.addresses.contains(observation.address_hash)) {
    return std::nullopt;
  }
  return Alert(observation, "address",
               "an export from a client address this key has not exported from in " +
                   std::to_string(kUsageHistoryDays) + " days");
}

// Whether one more small export at observation.time_ms is the
// burst_exports-th within the burst window: the rule fires as it is
// crossed.
bool CompletesBurst(const AnomalyRules& rules, const KeyHistory& before,
                    const ExportObservation& observation) {
  if (rules.burst_exports == 0) {
    return false;
  }
  const int64_t since_ms = observation.time_ms - int64_t{rules.burst_window_s} * 1000;
  const auto recent = std::count_if(before.small_exports_ms.begin(), before.small_exports_ms.end(),
                                    [&](int64_t time_ms) { return time_ms > since_ms; });
  return static_cast<uint64_t>(recent) + 1 == rules.burst_exports;
}

AnomalyAlert BurstAlert(const AnomalyRules& rules, const ExportObservation& observation) {
  return Alert(observation, "burst",
               std::to_string(rules.burst_exports) + " exports of at most " +
                   std::to_string(rules.burst_rows_max) + " rows within " +
                   std::to_string(rules.burst_window_s) + " s");
}

}  // namespace

Status CheckAnomalyRules(const AnomalyRules& rules) {
  if (!(rules.volume_factor >= 0) || rules.volume_factor > 1e6) {
    return Status::InvalidArgument("config: 'anomaly.volume_factor' must be 0 to 1000000");
  }
  if (rules.window_hours < 1 || rules.window_hours > kAnomalyWindowHoursMax) {
    return Status::InvalidArgument("config: 'anomaly.window_hours' must be 1 to " +
                                   std::to_string(kAnomalyWindowHoursMax) +
                                   " (kAnomalyWindowHoursMax)");
  }
  if (rules.warmup_days > kUsageHistoryDays) {
    return Status::InvalidArgument("config: 'anomaly.warmup_days' must be 0 to " +
                                   std::to_string(kUsageHistoryDays) + " (kUsageHistoryDays)");
  }
  if (rules.burst_exports > kAnomalyBurstExportsMax) {
    return Status::InvalidArgument("config: 'anomaly.burst_exports' must be 0 to " +
                                   std::to_string(kAnomalyBurstExportsMax) +
                                   " (kAnomalyBurstExportsMax)");
  }
  if (rules.burst_window_s < 1 || rules.burst_window_s > kAnomalyBurstWindowSecondsMax) {
    return Status::InvalidArgument("config: 'anomaly.burst_window_s' must be 1 to " +
                                   std::to_string(kAnomalyBurstWindowSecondsMax) +
                                   " (kAnomalyBurstWindowSecondsMax)");
  }
  return CheckWebhook("anomaly.webhook", rules.webhook, "anomaly.webhook_ca_file",
                      rules.webhook_ca_file);
}

Status CheckWebhook(std::string_view url_key, std::string_view url, std::string_view ca_file_key,
                    std::string_view ca_file) {
  if (!url.empty() && ((!url.starts_with("http://") && !url.starts_with("https://")) ||
                       url.size() > kAnomalyWebhookBytesMax)) {
    return Status::InvalidArgument(
        "config: '" + std::string(url_key) + "' must be an http:// or https:// URL of at most " +
        std::to_string(kAnomalyWebhookBytesMax) + " bytes (kAnomalyWebhookBytesMax)");
  }
  if (ca_file.empty()) {
    return Status::Ok();
  }
  if (!url.starts_with("https://")) {
    return Status::InvalidArgument("config: '" + std::string(ca_file_key) +
                                   "' is for an https:// '" + std::string(url_key) + "' only");
  }
  if (ca_file.size() > kWebhookCaFileBytesMax) {
    return Status::InvalidArgument("config: '" + std::string(ca_file_key) + "' must be at most " +
                                   std::to_string(kWebhookCaFileBytesMax) +
                                   " bytes (kWebhookCaFileBytesMax)");
  }
  return Status::Ok();
}

std::vector<AnomalyAlert> EvaluateAnomalies(const AnomalyRules& rules, const KeyHistory& before,
                                            const ExportObservation& observation) {
  std::vector<AnomalyAlert> alerts;
  const int64_t now_hour = observation.time_ms / kHourMs;
  const UsageBucket window =
      WindowTotals(before, now_hour - rules.window_hours, now_hour, observation);
  const bool warm = Warm(rules, before, observation);
  if (warm) {
    if (auto volume = VolumeAlert(rules, before, observation, window)) {
      alerts.push_back(std::move(*volume));
    }
  }
  if (rules.window_rows_max != 0 && window.rows > rules.window_rows_max &&
      window.rows - observation.rows <= rules.window_rows_max) {
    alerts.push_back(Alert(observation, "window_rows",
                           std::to_string(window.rows) + " rows in " +
                               std::to_string(rules.window_hours) + " h, over " +
                               std::to_string(rules.window_rows_max)));
  }
  if (warm) {
    for (auto alert : {HoursAlert(rules, before, observation),
                       AddressAlert(rules, before, observation)}) {
      if (alert.has_value()) {
        alerts.push_back(std::move(*alert));
      }
    }
  }
  if (observation.rows <= rules.burst_rows_max && CompletesBurst(rules, before, observation)) {
    alerts.push_back(BurstAlert(rules, observation));
  }
  return alerts;
}

BeforeExport EvaluateBeforeExport(const AnomalyRules& rules, const KeyHistory& before,
                                  const ExportObservation& observation) {
  BeforeExport judged;
  if (Warm(rules, before, observation)) {
    for (auto alert : {HoursAlert(rules, before, observation),
                       AddressAlert(rules, before, observation)}) {
      if (alert.has_value()) {
        judged.alerts.push_back(std::move(*alert));
      }
    }
  }
  if (CompletesBurst(rules, before, observation)) {
    judged.burst_alert = BurstAlert(rules, observation);
  }
  return judged;
}

void VetExport(const AnomalyRules& rules, const ExportObservation& observation, bool burst,
               KeyHistory* history) {
  const int64_t now_hour = observation.time_ms / kHourMs;
  history->hours.try_emplace(now_hour);
  if (burst) {
    // The burst was crossed by this refusal: the next small export is not
    // its N-th again.
    history->small_exports_ms.push_back(observation.time_ms);
    while (history->small_exports_ms.size() > rules.burst_exports) {
      history->small_exports_ms.pop_front();
    }
  }
  if (!observation.address_hash.empty()) {
    history->addresses[observation.address_hash] = now_hour;
  }
  while (history->addresses.size() > kKnownAddressesMax) {
    history->addresses.erase(std::min_element(
        history->addresses.begin(), history->addresses.end(),
        [](const auto& left, const auto& right) { return left.second < right.second; }));
  }
}

void AddExport(const AnomalyRules& rules, const ExportObservation& observation,
               KeyHistory* history) {
  const int64_t now_hour = observation.time_ms / kHourMs;
  if (history->first_ms == 0) {
    history->first_ms = observation.time_ms;
  }
  UsageBucket& bucket = history->hours[now_hour];
  bucket.exports += 1;
  bucket.rows += observation.rows;
  bucket.subjects += observation.subjects;
  const int64_t oldest_hour = now_hour - kHistoryHours + 1;
  history->hours.erase(history->hours.begin(), history->hours.lower_bound(oldest_hour));
  if (!observation.address_hash.empty()) {
    history->addresses[observation.address_hash] = now_hour;
  }
  std::erase_if(history->addresses, [&](const auto& seen) { return seen.second < oldest_hour; });
  while (history->addresses.size() > kKnownAddressesMax) {
    history->addresses.erase(std::min_element(
        history->addresses.begin(), history->addresses.end(),
        [](const auto& left, const auto& right) { return left.second < right.second; }));
  }
  if (observation.rows <= rules.burst_rows_max) {
    history->small_exports_ms.push_back(observation.time_ms);
  }
  const int64_t since_ms = observation.time_ms - int64_t{rules.burst_window_s} * 1000;
  while (!history->small_exports_ms.empty() &&
         (history->small_exports_ms.front() <= since_ms ||
          history->small_exports_ms.size() > rules.burst_exports)) {
    history->small_exports_ms.pop_front();
  }
}

std::string KeyHistoryJson(std::string_view key_id, const KeyHistory& history) {
  std::string text = "{\"format\":\"" + std::string(kUsageFormat) +
                     "\",\"version\":" + std::to_string(kUsageFormatVersion) + ",\"key\":\"" +
                     std::string(key_id) + "\",\"first_ms\":" + std::to_string(history.first_ms) +
                     ",\"hours\":[";
  bool first = true;
  for (const auto& [hour, bucket] : history.hours) {
    text += first ? "[" : ",[";
    first = false;
    text += std::to_string(hour) + "," + std::to_string(bucket.exports) + "," +
            std::to_string(bucket.rows) + "," + std::to_string(bucket.subjects) + "]";
  }
  text += "],\"addresses\":[";
  first = true;
  for (const auto& [hash, hour] : history.addresses) {
    text += first ? "[\"" : ",[\"";
    first = false;
    text += hash + "\"," + std::to_string(hour) + "]";
  }
  return text + "]}\n";
}

Result<KeyHistory> ParseKeyHistory(std::string_view text, std::string_view path) {
  const auto corrupt = [&](std::string_view what) {
    return Status::Corruption(std::string(path) + ": not a minpanel key usage file (" +
                              std::string(what) + ")");
  };
  if (text.size() > kUsageFileBytesMax) {
    return corrupt("over kUsageFileBytesMax");
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view format;
  int64_t version = 0;
  KeyHistory history;
  simdjson::dom::array hours;
  simdjson::dom::array addresses;
  if (parser.parse(text.data(), text.size()).get(root) || root["format"].get(format) ||
      format != kUsageFormat || root["version"].get(version) ||
      root["first_ms"].get(history.first_ms) || root["hours"].get(hours) ||
      root["addresses"].get(addresses)) {
    return corrupt("a field is missing or has a wrong type");
  }
  if (history.first_ms < 0 || history.first_ms > kUsageTimeMsMax) {
    return corrupt("first_ms is not a time");
  }
  if (version > kUsageFormatVersion) {
    return corrupt("format version " + std::to_string(version) + " is newer than this binary");
  }
  for (simdjson::dom::element item : hours) {
    simdjson::dom::array fields;
    int64_t hour = 0;
    UsageBucket bucket;
    if (item.get(fields) || fields.size() != 4 || fields.at(0).get(hour) ||
        fields.at(1).get(bucket.exports) || fields.at(2).get(bucket.rows) ||
        fields.at(3).get(bucket.subjects) || hour < 0 || hour > kUsageTimeMsMax / kHourMs) {
      return corrupt("an hour is not [hour, exports, rows, subjects]");
    }
    history.hours[hour] = bucket;
  }
  for (simdjson::dom::element item : addresses) {
    simdjson::dom::array fields;
    std::string_view hash;
    int64_t hour = 0;
    if (item.get(fields) || fields.size() != 2 || fields.at(0).get(hash) || !IsHex(hash) ||
        fields.at(1).get(hour) || hour < 0 || hour > kUsageTimeMsMax / kHourMs ||
        history.addresses.size() >= kKnownAddressesMax) {
      return corrupt("an address is not [hash, hour]");
    }
    history.addresses[std::string(hash)] = hour;
  }
  return history;
}

bool IsAccessKeyId(std::string_view id) {
  constexpr std::string_view kPrefix = "mpk_";
  constexpr size_t kIdHexDigits = 16;
  return id.size() == kPrefix.size() + kIdHexDigits && id.starts_with(kPrefix) &&
         IsHex(id.substr(kPrefix.size()));
}

bool IsProjectSecretId(std::string_view id) {
  constexpr std::string_view kPrefix = "secret:";
  if (!id.starts_with(kPrefix)) {
    return false;
  }
  const std::string_view digits = id.substr(kPrefix.size());
  return !digits.empty() && digits.size() <= kProjectIdDigitsMax &&
         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool IsWatchedCredentialId(std::string_view id) {
  return IsAccessKeyId(id) || IsProjectSecretId(id);
}

std::string UsageFileNameOf(std::string_view id) {
  std::string name(id);
  std::replace(name.begin(), name.end(), ':', '-');
  return name;
}

Status CheckAlertFilter(const AlertFilter& filter) {
  if (!filter.key_id.empty() && !IsWatchedCredentialId(filter.key_id)) {
    return Status::InvalidArgument(
        "key: expected an access key id (mpk_ and 16 hex digits) or a project secret "
        "(secret:N)");
  }
  if (!filter.rule.empty() && std::find(std::begin(kAnomalyRuleNames), std::end(kAnomalyRuleNames),
                                        filter.rule) == std::end(kAnomalyRuleNames)) {
    return Status::InvalidArgument(
        "rule: expected one of volume, window_rows, hours, address, burst");
  }
  if (filter.limit == 0 || filter.limit > kAlertsListedMax) {
    return Status::InvalidArgument("limit: 1 to " + std::to_string(kAlertsListedMax) +
                                   " (kAlertsListedMax)");
  }
  if (filter.from_ms > filter.to_ms) {
    return Status::InvalidArgument("from_ms: after to_ms");
  }
  return Status::Ok();
}

audit::Filter AuditFilterOfAlerts(const AlertFilter& filter) {
  audit::Filter audit_filter;
  audit_filter.key = std::string(kAnomalyAuditKey);
  audit_filter.target = filter.key_id;
  audit_filter.reason_prefix = filter.rule.empty() ? "" : filter.rule + ": ";
  audit_filter.from_ms = filter.from_ms;
  audit_filter.to_ms = filter.to_ms;
  audit_filter.limit = 2 * filter.limit;
  return audit_filter;
}

std::vector<ListedAlert> AlertsOfRecords(const std::vector<audit::AuditEntry>& records,
                                         size_t limit) {
  std::vector<ListedAlert> alerts;
  for (const audit::AuditEntry& record : records) {
    if (record.key != kAnomalyAuditKey) {
      continue;
    }
    if (record.act == "key.suspend") {
      // The alert it follows: the newest of the same key and reason.
      for (auto it = alerts.rbegin(); it != alerts.rend(); ++it) {
        if (!it->alert.suspended && it->alert.key_id == record.target &&
            it->alert.rule + ": " + it->alert.detail == record.reason) {
          it->alert.suspended = true;
          break;
        }
      }
      continue;
    }
    if (record.act != "anomaly") {
      continue;
    }
    ListedAlert listed;
    listed.seq = record.seq;
    listed.alert.key_id = record.target;
    listed.alert.project_id = record.projects.empty() ? 0 : record.projects.front();
    listed.alert.time_ms = record.time_ms;
    const size_t colon = record.reason.find(": ");
    listed.alert.rule = record.reason.substr(0, colon);
    listed.alert.detail = colon == std::string::npos ? "" : record.reason.substr(colon + 2);
    alerts.push_back(std::move(listed));
  }
  if (alerts.size() > limit) {
    alerts.erase(alerts.begin(), alerts.end() - static_cast<std::ptrdiff_t>(limit));
  }
  std::reverse(alerts.begin(), alerts.end());
  return alerts;
}

KeyUsage::KeyUsage(std::string folder, std::shared_ptr<FileSystem> file_system)
    : folder_(std::move(folder)), file_system_(std::move(file_system)) {}

std::string KeyUsage::PathOf(const std::string& key_id) const {
  return folder_ + "/" + UsageFileNameOf(key_id) + ".json";
}

Result<KeyHistory*> KeyUsage::LoadLocked(const std::string& key_id) {
  if (!IsWatchedCredentialId(key_id)) {
    return Status::InvalidArgument("key usage: '" + key_id +
                                   "' is not an access key id or a project secret");
  }
  if (auto found = histories_.find(key_id); found != histories_.end()) {
    return &found->second;
  }
  KeyHistory history;
  const std::string path = PathOf(key_id);
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(const std::string text, file_system_->ReadFile(path));
    MP_ASSIGN_OR_RETURN(history, ParseKeyHistory(text, path));
  }
  return &histories_.emplace(key_id, std::move(history)).first->second;
}

KeyUsage::Observed KeyUsage::Observe(const AnomalyRules& rules,
                                     const ExportObservation& observation) {
  Observed observed;
  std::lock_guard lock(mutex_);
  auto history = LoadLocked(observation.key_id);
  if (!history.ok()) {
    observed.written = history.status();
    return observed;
  }
  observed.alerts = EvaluateAnomalies(rules, **history, observation);
  AddExport(rules, observation, *history);
  observed.written = file_system_->CreateDirectories(folder_, 0700);
  if (observed.written.ok()) {
    observed.written = file_system_->WriteFileAtomically(
        PathOf(observation.key_id), KeyHistoryJson(observation.key_id, **history), kUsageFileMode);
  }
  return observed;
}

Result<BeforeExport> KeyUsage::Judge(const AnomalyRules& rules,
                                     const ExportObservation& observation) {
  std::lock_guard lock(mutex_);
  MP_ASSIGN_OR_RETURN(KeyHistory * history, LoadLocked(observation.key_id));
  return EvaluateBeforeExport(rules, *history, observation);
}

Status KeyUsage::Vet(const AnomalyRules& rules, const ExportObservation& observation,
                     bool burst) {
  std::lock_guard lock(mutex_);
  MP_ASSIGN_OR_RETURN(KeyHistory * history, LoadLocked(observation.key_id));
  VetExport(rules, observation, burst, history);
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(folder_, 0700));
  return file_system_->WriteFileAtomically(
      PathOf(observation.key_id), KeyHistoryJson(observation.key_id, *history), kUsageFileMode);
}

Result<UsageBucket> KeyUsage::DayTotals(const std::string& key_id, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  MP_ASSIGN_OR_RETURN(KeyHistory * history, LoadLocked(key_id));
  const int64_t first_hour = now_ms / kDayMs * 24;
  UsageBucket total;
  for (auto it = history->hours.lower_bound(first_hour);
       it != history->hours.end() && it->first < first_hour + 24; ++it) {
    total.exports += it->second.exports;
    total.rows += it->second.rows;
    total.subjects += it->second.subjects;
  }
  return total;
}

Status KeyUsage::Forget(const std::string& key_id) {
  std::lock_guard lock(mutex_);
  if (!IsWatchedCredentialId(key_id)) {
    return Status::Ok();
  }
  histories_.erase(key_id);
  const std::string path = PathOf(key_id);
  return file_system_->Exists(path) ? file_system_->Remove(path) : Status::Ok();
}

}  // namespace minpanel::service
