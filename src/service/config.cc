#include "service/config.h"

#include <arpa/inet.h>
#include <syslog.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <string_view>

#include <toml++/toml.h>

#include "audit/audit.h"
#include "core/time_units.h"
#include "service/access_keys_limits.h"
#include "service/project_quotas.h"

namespace minpanel::service {
namespace {

constexpr int64_t kDedupWindowMsMax = 90LL * 24 * 3600 * 1000;
constexpr uint64_t kBodyBytesLimit = 1ULL << 30;
// First path segments of minpanel's own routes: a prefix that is one would
// hide a route (with "/api", /api/query would be served as /query).
constexpr std::string_view kRouteSegments[] = {
    "track", "engage", "groups",  "import",  "batch",    "e",    "i",      "capture",
    "flags", "decide", "array",   "v1",      "identify", "page", "screen", "group",
    "alias", "api",    "healthz", "metrics", "static",   "js"};

bool IsPathPrefixChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~' || c == '/';
}

Status ValidatePathPrefixes(const std::vector<std::string>& prefixes) {
  if (prefixes.size() > kPathPrefixesMax) {
    return Status::InvalidArgument("config: 'path_prefixes' holds at most " +
                                   std::to_string(kPathPrefixesMax) +
                                   " prefixes (kPathPrefixesMax)");
  }
  for (const std::string& prefix : prefixes) {
    const std::string rule =
        "config: 'path_prefixes' entry '" + prefix + "' must be '/' then 1 to " +
        std::to_string(kPathPrefixBytesMax - 1) +
        " characters of [A-Za-z0-9._~/-], without a trailing '/' or '//' (kPathPrefixBytesMax)";
    if (prefix.size() < 2 || prefix.size() > kPathPrefixBytesMax || prefix.front() != '/' ||
        prefix.back() == '/' || prefix.find("//") != std::string::npos ||
        !std::all_of(prefix.begin(), prefix.end(), IsPathPrefixChar)) {
      return Status::InvalidArgument(rule);
    }
    const std::string_view first_segment =
        std::string_view(prefix).substr(1, prefix.find('/', 1) - 1);
    if (std::find(std::begin(kRouteSegments), std::end(kRouteSegments), first_segment) !=
        std::end(kRouteSegments)) {
      return Status::InvalidArgument("config: 'path_prefixes' entry '" + prefix +
                                     "' would hide minpanel's own /" + std::string(first_segment) +
                                     " routes: choose another first segment");
    }
  }
  return Status::Ok();
}

Status UnknownKeys(const toml::table& table, const std::set<std::string>& known,
                   const std::string& section) {
  for (const auto& [key, value] : table) {
    if (!known.contains(std::string(key.str()))) {
      return Status::InvalidArgument("config: unknown key '" + section + std::string(key.str()) +
                                     "'");
    }
  }
  return Status::Ok();
}

template <typename T>
Status ReadInteger(const toml::table& table, const char* key, const std::string& section,
                   T* out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return Status::Ok();
  }
  const auto value = node->value<int64_t>();
  if (!value.has_value() || *value < 0) {
    return Status::InvalidArgument("config: '" + section + key + "' must be a non-negative integer");
  }
  *out = static_cast<T>(*value);
  return Status::Ok();
}

Status ReadString(const toml::table& table, const char* key, const std::string& section,
                  std::string* out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return Status::Ok();
  }
  const auto value = node->value<std::string>();
  if (!value.has_value()) {
    return Status::InvalidArgument("config: '" + section + key + "' must be a string");
  }
  *out = *value;
  return Status::Ok();
}

Status ReadStringList(const toml::table& table, const char* key, std::vector<std::string>* out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return Status::Ok();
  }
  const toml::array* array = node->as_array();
  const std::string message = std::string("config: '") + key + "' must be an array of strings";
  if (array == nullptr) {
    return Status::InvalidArgument(message);
  }
  out->clear();
  for (const toml::node& item : *array) {
    const auto text = item.value<std::string>();
    if (!text.has_value()) {
      return Status::InvalidArgument(message);
    }
    out->push_back(*text);
  }
  return Status::Ok();
}

Status ReadLimits(const toml::table& table, Limits* limits) {
  MP_RETURN_IF_ERROR(UnknownKeys(table,
                                 {"body_bytes_max", "decompressed_bytes_max",
                                  "decompression_ratio_max", "header_bytes_max", "connections_max",
                                  "request_timeout_ms", "idle_timeout_ms", "export_rows_max",
                                  "key_requests_per_second", "key_export_rows_per_day",
                                  "key_export_subjects_per_day", "export_reason_rows"},
                                 "limits."));
  const std::string section = "limits.";
  MP_RETURN_IF_ERROR(ReadInteger(table, "body_bytes_max", section, &limits->body_bytes_max));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "decompressed_bytes_max", section, &limits->decompressed_bytes_max));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "decompression_ratio_max", section, &limits->decompression_ratio_max));
  MP_RETURN_IF_ERROR(ReadInteger(table, "header_bytes_max", section, &limits->header_bytes_max));
  MP_RETURN_IF_ERROR(ReadInteger(table, "connections_max", section, &limits->connections_max));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "request_timeout_ms", section, &limits->request_timeout_ms));
  MP_RETURN_IF_ERROR(ReadInteger(table, "idle_timeout_ms", section, &limits->idle_timeout_ms));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "key_requests_per_second", section, &limits->key_requests_per_second));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "key_export_rows_per_day", section, &limits->key_export_rows_per_day));
  MP_RETURN_IF_ERROR(ReadInteger(table, "key_export_subjects_per_day", section,
                                 &limits->key_export_subjects_per_day));
  MP_RETURN_IF_ERROR(
      ReadInteger(table, "export_reason_rows", section, &limits->export_reason_rows));
  return ReadInteger(table, "export_rows_max", section, &limits->export_rows_max);
}

Status ReadBool(const toml::table& table, const char* key, const std::string& section,
                bool* out) {
  if (const toml::node* node = table.get(key)) {
    // value<bool>() would take an integer too; only true or false will do.
    const toml::value<bool>* value = node->as_boolean();
    if (value == nullptr) {
      return Status::InvalidArgument("config: '" + section + key + "' must be true or false");
    }
    *out = value->get();
  }
  return Status::Ok();
}

Status ReadAnomaly(const toml::table& table, AnomalyRules* rules) {
  const std::string section = "anomaly.";
  MP_RETURN_IF_ERROR(
      UnknownKeys(table,
                  {"volume_factor", "window_hours", "volume_rows_min", "window_rows_max",
                   "unusual_hours", "new_address", "burst_exports", "burst_window_s",
                   "burst_rows_max", "warmup_days", "suspend", "webhook", "webhook_ca_file"},
                  section));
  if (const toml::node* node = table.get("volume_factor")) {
    const auto value = node->value<double>();
    if (!value.has_value()) {
      return Status::InvalidArgument("config: 'anomaly.volume_factor' must be a number");
    }
    rules->volume_factor = *value;
  }
  MP_RETURN_IF_ERROR(ReadInteger(table, "window_hours", section, &rules->window_hours));
  MP_RETURN_IF_ERROR(ReadInteger(table, "volume_rows_min", section, &rules->volume_rows_min));
  MP_RETURN_IF_ERROR(ReadInteger(table, "window_rows_max", section, &rules->window_rows_max));
  MP_RETURN_IF_ERROR(ReadBool(table, "unusual_hours", section, &rules->unusual_hours));
  MP_RETURN_IF_ERROR(ReadBool(table, "new_address", section, &rules->new_address));
  MP_RETURN_IF_ERROR(ReadInteger(table, "burst_exports", section, &rules->burst_exports));
  MP_RETURN_IF_ERROR(ReadInteger(table, "burst_window_s", section, &rules->burst_window_s));
  MP_RETURN_IF_ERROR(ReadInteger(table, "burst_rows_max", section, &rules->burst_rows_max));
  MP_RETURN_IF_ERROR(ReadInteger(table, "warmup_days", section, &rules->warmup_days));
  MP_RETURN_IF_ERROR(ReadBool(table, "suspend", section, &rules->suspend));
  MP_RETURN_IF_ERROR(ReadString(table, "webhook", section, &rules->webhook));
  return ReadString(table, "webhook_ca_file", section, &rules->webhook_ca_file);
}

Status ReadDays(const toml::node& node, const std::string& key, uint32_t* days) {
  const auto value = node.value<int64_t>();
  if (!value.has_value() || *value < 0 || *value > kRetentionDaysMax) {
    return Status::InvalidArgument("config: '" + key + "' must be an integer of days, 0 to " +
                                   std::to_string(kRetentionDaysMax) + " (kRetentionDaysMax)");
  }
  *days = static_cast<uint32_t>(*value);
  return Status::Ok();
}

Status ReadConsent(const toml::table& table, const std::string& section, ConsentMode* mode) {
  const toml::node* node = table.get("consent");
  if (node == nullptr) {
    return Status::Ok();
  }
  const std::string message =
      "config: '" + section + "consent' must be \"ignore\", \"drop\" or \"anonymous\"";
  const auto text = node->value<std::string>();
  if (!text.has_value()) {
    return Status::InvalidArgument(message);
  }
  if (*text == "ignore") {
    *mode = ConsentMode::kIgnore;
  } else if (*text == "drop") {
    *mode = ConsentMode::kDrop;
  } else if (*text == "anonymous") {
    *mode = ConsentMode::kAnonymous;
  } else {
    return Status::InvalidArgument(message);
  }
  return Status::Ok();
}

// [projects.NAME] tables: retention_days, event_retention_days,
// profile_expiry_days, consent, quotas.
Status ReadProjectSettings(const toml::table& projects, std::vector<ProjectSettings>* out) {
  if (projects.size() > kProjectSettingsMax) {
    return Status::InvalidArgument("config: 'projects' holds at most " +
                                   std::to_string(kProjectSettingsMax) +
                                   " tables (kProjectSettingsMax)");
  }
  for (const auto& [name, node] : projects) {
    const std::string section = "projects." + std::string(name.str()) + ".";
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      return Status::InvalidArgument("config: 'projects." + std::string(name.str()) +
                                     "' must be a table");
    }
    MP_RETURN_IF_ERROR(
        UnknownKeys(*table,
                    {"retention_days", "event_retention_days", "profile_expiry_days",
                     "consent", "ingest_events_per_second", "disk_bytes_max"},
                    section));
    ProjectSettings settings;
    settings.project = std::string(name.str());
    if (const toml::node* days = table->get("retention_days")) {
      MP_RETURN_IF_ERROR(ReadDays(*days, section + "retention_days", &settings.retention_days));
    }
    if (const toml::node* rules = table->get("event_retention_days")) {
      const toml::table* by_name = rules->as_table();
      if (by_name == nullptr || by_name->size() > kEventRetentionRulesMax) {
        return Status::InvalidArgument("config: '" + section +
                                       "event_retention_days' must be a table of event name = "
                                       "days, at most " +
                                       std::to_string(kEventRetentionRulesMax) +
                                       " (kEventRetentionRulesMax)");
      }
      for (const auto& [event_name, days_node] : *by_name) {
        uint32_t days = 0;
        MP_RETURN_IF_ERROR(ReadDays(days_node,
                                    section + "event_retention_days." + std::string(event_name.str()),
                                    &days));
        // The project-wide drop hides every name, so a name's rule can
        // only be shorter (a longer one would need a drop of every other
        // name, which the store does not have).
        if (settings.retention_days > 0 && (days == 0 || days > settings.retention_days)) {
          return Status::InvalidArgument(
              "config: '" + section + "event_retention_days." + std::string(event_name.str()) +
              "' must be 1 to retention_days (" + std::to_string(settings.retention_days) +
              "): the project's retention drops every event older");
        }
        settings.event_retention_days.emplace_back(std::string(event_name.str()), days);
      }
    }
    if (const toml::node* days = table->get("profile_expiry_days")) {
      MP_RETURN_IF_ERROR(
          ReadDays(*days, section + "profile_expiry_days", &settings.profile_expiry_days));
    }
    MP_RETURN_IF_ERROR(ReadConsent(*table, section, &settings.consent));
    MP_RETURN_IF_ERROR(ReadInteger(*table, "ingest_events_per_second", section,
                                   &settings.ingest_events_per_second));
    if (settings.ingest_events_per_second > kProjectEventsPerSecondMax) {
      return Status::InvalidArgument("config: '" + section +
                                     "ingest_events_per_second' must be 0 to " +
                                     std::to_string(kProjectEventsPerSecondMax) +
                                     " (kProjectEventsPerSecondMax)");
    }
    MP_RETURN_IF_ERROR(
        ReadInteger(*table, "disk_bytes_max", section, &settings.disk_bytes_max));
    out->push_back(std::move(settings));
  }
  return Status::Ok();
}

Status ReadTop(const toml::table& root, Config* config) {
  MP_RETURN_IF_ERROR(UnknownKeys(root,
                                 {"listen",
                                  "listen_api",
                                  "data_folder",
                                  "key_folder",
                                  "trusted_proxies",
                                  "tls",
                                  "tls_api",
                                  "limits",
                                  "dedup_window_hours",
                                  "dedup_entries_max",
                                  "store_memtable_rows_max",
                                  "erasure_purge_deadline_hours",
                                  "io_threads",
                                  "worker_threads",
                                  "export_threads",
                                  "log_level",
                                  "access_log",
                                  "user_agent_regexes",
                                  "geoip_files",
                                  "path_prefixes",
                                  "projects",
                                  "audit_retention_days",
                                  "audit_address_retention_days",
                                  "audit_sync_hold_us",
                                  "audit_query_start_ms",
                                  "audit_checkpoint_sink",
                                  "audit_checkpoint_webhook",
                                  "audit_checkpoint_webhook_ca_file",
                                  "audit_checkpoint_syslog",
                                  "audit_checkpoint_syslog_socket",
                                  "anomaly"},
                                 ""));
  MP_RETURN_IF_ERROR(ReadString(root, "listen", "", &config->listen));
  MP_RETURN_IF_ERROR(ReadString(root, "listen_api", "", &config->listen_api));
  MP_RETURN_IF_ERROR(ReadString(root, "data_folder", "", &config->data_folder));
  MP_RETURN_IF_ERROR(ReadString(root, "key_folder", "", &config->key_folder));
  MP_RETURN_IF_ERROR(ReadString(root, "log_level", "", &config->log_level));
  MP_RETURN_IF_ERROR(
      ReadString(root, "user_agent_regexes", "", &config->user_agent_regexes));
  MP_RETURN_IF_ERROR(ReadStringList(root, "geoip_files", &config->geoip_files));
  MP_RETURN_IF_ERROR(
      ReadString(root, "audit_checkpoint_sink", "", &config->audit_checkpoint_sink));
  MP_RETURN_IF_ERROR(
      ReadString(root, "audit_checkpoint_webhook", "", &config->audit_checkpoint_webhook));
  MP_RETURN_IF_ERROR(ReadString(root, "audit_checkpoint_webhook_ca_file", "",
                                &config->audit_checkpoint_webhook_ca_file));
  MP_RETURN_IF_ERROR(
      ReadString(root, "audit_checkpoint_syslog", "", &config->audit_checkpoint_syslog));
  MP_RETURN_IF_ERROR(ReadString(root, "audit_checkpoint_syslog_socket", "",
                                &config->audit_checkpoint_syslog_socket));
  MP_RETURN_IF_ERROR(
      ReadInteger(root, "audit_retention_days", "", &config->audit_retention_days));
  MP_RETURN_IF_ERROR(ReadInteger(root, "audit_address_retention_days", "",
                                 &config->audit_address_retention_days));
  MP_RETURN_IF_ERROR(ReadInteger(root, "audit_sync_hold_us", "", &config->audit_sync_hold_us));
  MP_RETURN_IF_ERROR(
      ReadInteger(root, "audit_query_start_ms", "", &config->audit_query_start_ms));
  int64_t dedup_window_hours = config->dedup_window_ms / 3'600'000;
  MP_RETURN_IF_ERROR(ReadInteger(root, "dedup_window_hours", "", &dedup_window_hours));
  config->dedup_window_ms = dedup_window_hours * 3'600'000;
  MP_RETURN_IF_ERROR(ReadInteger(root, "dedup_entries_max", "", &config->dedup_entries_max));
  MP_RETURN_IF_ERROR(
      ReadInteger(root, "store_memtable_rows_max", "", &config->store_memtable_rows_max));
  // Read wide so that a value past 32 bits fails ValidateConfig's range
  // check instead of wrapping into it.
  uint64_t purge_deadline_hours = config->erasure_purge_deadline_hours;
  MP_RETURN_IF_ERROR(
      ReadInteger(root, "erasure_purge_deadline_hours", "", &purge_deadline_hours));
  config->erasure_purge_deadline_hours =
      static_cast<uint32_t>(std::min<uint64_t>(purge_deadline_hours, UINT32_MAX));
  MP_RETURN_IF_ERROR(ReadInteger(root, "io_threads", "", &config->io_threads));
  MP_RETURN_IF_ERROR(ReadInteger(root, "worker_threads", "", &config->worker_threads));
  MP_RETURN_IF_ERROR(ReadInteger(root, "export_threads", "", &config->export_threads));
  MP_RETURN_IF_ERROR(ReadBool(root, "access_log", "", &config->access_log));
  MP_RETURN_IF_ERROR(ReadStringList(root, "path_prefixes", &config->path_prefixes));
  return ReadStringList(root, "trusted_proxies", &config->trusted_proxies);
}

}  // namespace

Result<Config> LoadConfigFile(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    return Status::InvalidArgument("config " + path + ": " + std::string(error.description()) +
                                   " at line " + std::to_string(error.source().begin.line));
  }
  Config config;
  MP_RETURN_IF_ERROR(ReadTop(root, &config));
  for (const auto& [name, tls_config] :
       {std::pair<std::string, TlsConfig*>{"tls", &config.tls}, {"tls_api", &config.tls_api}}) {
    if (const toml::table* tls = root[name].as_table()) {
      const std::string section = name + ".";
      MP_RETURN_IF_ERROR(UnknownKeys(*tls, {"cert_file", "key_file"}, section));
      MP_RETURN_IF_ERROR(ReadString(*tls, "cert_file", section, &tls_config->cert_file));
      MP_RETURN_IF_ERROR(ReadString(*tls, "key_file", section, &tls_config->key_file));
    }
  }
  if (const toml::table* limits = root["limits"].as_table()) {
    MP_RETURN_IF_ERROR(ReadLimits(*limits, &config.limits));
  }
  if (const toml::table* anomaly = root["anomaly"].as_table()) {
    MP_RETURN_IF_ERROR(ReadAnomaly(*anomaly, &config.anomaly));
  }
  if (const toml::node* projects = root.get("projects")) {
    if (projects->as_table() == nullptr) {
      return Status::InvalidArgument("config: 'projects' must hold [projects.NAME] tables");
    }
    MP_RETURN_IF_ERROR(ReadProjectSettings(*projects->as_table(), &config.project_settings));
  }
  return config;
}

ProjectSettings SettingsFor(const Config& config, std::string_view name) {
  for (const ProjectSettings& settings : config.project_settings) {
    if (settings.project == name) {
      return settings;
    }
  }
  ProjectSettings defaults;
  defaults.project = std::string(name);
  return defaults;
}

std::optional<int> SyslogFacility(std::string_view name) {
  static constexpr std::pair<std::string_view, int> kFacilities[] = {
      {"user", LOG_USER},       {"daemon", LOG_DAEMON}, {"auth", LOG_AUTH},
      {"authpriv", LOG_AUTHPRIV}, {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1},
      {"local2", LOG_LOCAL2},   {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
      {"local5", LOG_LOCAL5},   {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
  };
  for (const auto& [facility_name, code] : kFacilities) {
    if (name == facility_name) {
      return code;
    }
  }
  return std::nullopt;
}

std::string KeyFolder(const Config& config) {
  if (!config.key_folder.empty()) {
    return config.key_folder;
  }
  std::string folder = config.data_folder;
  while (folder.size() > 1 && folder.back() == '/') {
    folder.pop_back();
  }
  return folder + ".keys";
}

int64_t ErasurePurgeDelayMs(uint32_t deadline_hours) {
  const int64_t start_hours = static_cast<int64_t>(deadline_hours) - kErasurePurgeMarginHours;
  return start_hours > 0 ? start_hours * kHourMs : 0;
}

std::string ErasureJournalFolder(const Config& config) { return KeyFolder(config) + "/erasures"; }

Status ValidateConfig(const Config& config) {
  if (config.data_folder.empty()) {
    return Status::InvalidArgument("config: 'data_folder' must not be empty");
  }
  const std::string keys = KeyFolder(config);
  const std::string data = config.data_folder + "/";
  if ((keys + "/").starts_with(data)) {
    return Status::InvalidArgument("config: 'key_folder' must be outside 'data_folder', so that a "
                                   "copy of the data alone cannot be reversed");
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    return Status::InvalidArgument("config: 'tls.cert_file' and 'tls.key_file' go together");
  }
  if (config.tls_api.cert_file.empty() != config.tls_api.key_file.empty()) {
    return Status::InvalidArgument(
        "config: 'tls_api.cert_file' and 'tls_api.key_file' go together");
  }
  if (!config.tls_api.cert_file.empty() && config.listen_api.empty()) {
    return Status::InvalidArgument(
        "config: '[tls_api]' is the API listener's certificate and needs 'listen_api'");
  }
  // The addresses themselves (0.0.0.0:P against 127.0.0.1:P, say) are
  // compared by the server, which parses them.
  if (!config.listen_api.empty() && config.listen_api == config.listen) {
    return Status::InvalidArgument("config: 'listen_api' must be another address than 'listen' (" +
                                   config.listen + "): the two listeners serve different routes");
  }
  MP_RETURN_IF_ERROR(CheckWebhook("audit_checkpoint_webhook", config.audit_checkpoint_webhook,
                                  "audit_checkpoint_webhook_ca_file",
                                  config.audit_checkpoint_webhook_ca_file));
  if (config.audit_checkpoint_syslog != "off" &&
      !SyslogFacility(config.audit_checkpoint_syslog).has_value()) {
    return Status::InvalidArgument(
        "config: 'audit_checkpoint_syslog' must be \"off\" or a syslog facility: user, daemon, "
        "auth, authpriv, local0 to local7");
  }
  if (!config.audit_checkpoint_syslog_socket.starts_with("/") ||
      config.audit_checkpoint_syslog_socket.size() > kSyslogSocketPathBytesMax) {
    return Status::InvalidArgument(
        "config: 'audit_checkpoint_syslog_socket' must be an absolute path of at most " +
        std::to_string(kSyslogSocketPathBytesMax) + " bytes (kSyslogSocketPathBytesMax)");
  }
  if (config.audit_retention_days > audit::kAuditRetentionDaysMax) {
    return Status::InvalidArgument("config: 'audit_retention_days' must be 0 to " +
                                   std::to_string(audit::kAuditRetentionDaysMax) +
                                   " (kAuditRetentionDaysMax)");
  }
  if (config.audit_address_retention_days > audit::kAuditRetentionDaysMax) {
    return Status::InvalidArgument("config: 'audit_address_retention_days' must be 0 to " +
                                   std::to_string(audit::kAuditRetentionDaysMax) +
                                   " (kAuditRetentionDaysMax)");
  }
  if (config.audit_sync_hold_us > audit::kOpeningWaitUsMax) {
    return Status::InvalidArgument("config: 'audit_sync_hold_us' must be 0 to " +
                                   std::to_string(audit::kOpeningWaitUsMax) +
                                   " (kOpeningWaitUsMax)");
  }
  if (config.audit_query_start_ms > audit::kDeferredStartMsMax) {
    return Status::InvalidArgument("config: 'audit_query_start_ms' must be 0 to " +
                                   std::to_string(audit::kDeferredStartMsMax) +
                                   " (kDeferredStartMsMax)");
  }
  if (const Status limits = CheckKeyLimits(KeyLimits{config.limits.key_requests_per_second,
                                                     config.limits.key_export_rows_per_day,
                                                     config.limits.key_export_subjects_per_day});
      !limits.ok()) {
    return Status::InvalidArgument("config: limits.key_…: " + limits.message());
  }
  MP_RETURN_IF_ERROR(CheckAnomalyRules(config.anomaly));
  const Limits& limits = config.limits;
  if (limits.body_bytes_max < 1024 || limits.body_bytes_max > kBodyBytesLimit) {
    return Status::InvalidArgument("config: 'limits.body_bytes_max' must be 1 KiB to 1 GiB");
  }
  if (limits.decompressed_bytes_max < 1024 || limits.decompressed_bytes_max > kBodyBytesLimit) {
    return Status::InvalidArgument(
        "config: 'limits.decompressed_bytes_max' must be 1 KiB to 1 GiB");
  }
  if (limits.decompression_ratio_max < 2) {
    return Status::InvalidArgument("config: 'limits.decompression_ratio_max' must be at least 2");
  }
  if (limits.header_bytes_max < 1024 || limits.connections_max == 0 ||
      limits.request_timeout_ms == 0 || limits.idle_timeout_ms == 0) {
    return Status::InvalidArgument(
        "config: 'limits.header_bytes_max' must be at least 1 KiB and the connection and timeout "
        "limits above zero");
  }
  if (config.erasure_purge_deadline_hours > kErasurePurgeDeadlineHoursMax) {
    return Status::InvalidArgument("config: 'erasure_purge_deadline_hours' must be 0 to " +
                                   std::to_string(kErasurePurgeDeadlineHoursMax) +
                                   " (kErasurePurgeDeadlineHoursMax)");
  }
  if (config.store_memtable_rows_max == 0 || config.store_memtable_rows_max > 10'000'000) {
    return Status::InvalidArgument("config: 'store_memtable_rows_max' must be 1 to 10000000");
  }
  if (config.dedup_window_ms <= 0 || config.dedup_window_ms > kDedupWindowMsMax) {
    return Status::InvalidArgument("config: 'dedup_window_hours' must be 1 to 2160 (90 days)");
  }
  if (config.io_threads == 0 || config.io_threads > 64 || config.worker_threads == 0 ||
      config.worker_threads > 64 || config.export_threads == 0 || config.export_threads > 256) {
    return Status::InvalidArgument(
        "config: 'io_threads' and 'worker_threads' must be 1 to 64, 'export_threads' 1 to 256");
  }
  MP_RETURN_IF_ERROR(ValidatePathPrefixes(config.path_prefixes));
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "off"};
  if (!kLevels.contains(config.log_level)) {
    return Status::InvalidArgument(
        "config: 'log_level' must be one of trace, debug, info, warn, error, off");
  }
  return Status::Ok();
}

}  // namespace minpanel::service
