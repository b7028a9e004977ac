#include "service/config.h"

#include <syslog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace minpanel::service {
namespace {

class ConfigFileTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(path_); }
  Result<Config> Load(const std::string& text) {
    std::ofstream(path_) << text;
    return LoadConfigFile(path_);
  }
  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("minpanel-config-" + std::to_string(::getpid()) + ".toml"))
                          .string();
};

TEST_F(ConfigFileTest, ValuesOverrideDefaults) {
  auto config = Load(R"(
listen = "0.0.0.0:9000"
data_folder = "/srv/minpanel/data"
key_folder = "/srv/minpanel/keys"
trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]
dedup_window_hours = 48
[tls]
cert_file = "cert.pem"
key_file = "key.pem"
[limits]
body_bytes_max = 2048
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen, "0.0.0.0:9000");
  EXPECT_EQ(config->trusted_proxies.size(), 2U);
  EXPECT_EQ(config->dedup_window_ms, 48LL * 3600 * 1000);
  EXPECT_EQ(config->limits.body_bytes_max, 2048U);
  EXPECT_EQ(config->tls.key_file, "key.pem");
  EXPECT_TRUE(ValidateConfig(*config).ok());
}

TEST_F(ConfigFileTest, ProjectSettingsAreReadAndChecked) {
  auto config = Load(R"(
[projects.shop]
retention_days = 400
event_retention_days = { "Page view" = 30, "Heartbeat" = 7 }
profile_expiry_days = 90
consent = "anonymous"
[projects.blog]
consent = "drop"
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const ProjectSettings shop = SettingsFor(*config, "shop");
  EXPECT_EQ(shop.retention_days, 400U);
  ASSERT_EQ(shop.event_retention_days.size(), 2U);
  EXPECT_EQ(shop.event_retention_days[1], (std::pair<std::string, uint32_t>("Page view", 30)));
  EXPECT_EQ(shop.profile_expiry_days, 90U);
  EXPECT_EQ(shop.consent, ConsentMode::kAnonymous);
  EXPECT_EQ(SettingsFor(*config, "blog").consent, ConsentMode::kDrop);
  EXPECT_EQ(SettingsFor(*config, "blog").profile_expiry_days, 0U);
  const ProjectSettings other = SettingsFor(*config, "other");
  EXPECT_EQ(other.retention_days, 0U);
  EXPECT_EQ(other.consent, ConsentMode::kIgnore);
  const std::pair<const char*, const char*> refused[] = {
      {"[projects.a]\nretention_days = -1\n", "projects.a.retention_days"},
      {"[projects.a]\nretention_days = 36501\n", "kRetentionDaysMax"},
      {"[projects.a]\nprofile_expiry_days = -1\n", "projects.a.profile_expiry_days"},
      {"[projects.a]\nprofile_expiry_days = 36501\n", "kRetentionDaysMax"},
      {"[projects.a]\nprofile_expiry_days = \"90\"\n", "projects.a.profile_expiry_days"},
      {"[projects.a]\nevent_retention_days = { x = \"y\" }\n",
       "projects.a.event_retention_days.x"},
      {"[projects.a]\nconsent = \"maybe\"\n", "projects.a.consent"},
      {"[projects.a]\nretention_days = 10\nevent_retention_days = { x = 11 }\n",
       "must be 1 to retention_days (10)"},
      {"[projects.a]\nretention = 3\n", "projects.a.retention"},
      {"projects = 3\n", "projects"},
  };
  for (const auto& [text, named] : refused) {
    auto bad = Load(text);
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_NE(bad.status().message().find(named), std::string::npos) << bad.status().message();
  }
}

TEST_F(ConfigFileTest, UnknownKeyIsNamed) {
  auto config = Load("[limits]\nbody_byte_max = 5\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("limits.body_byte_max"), std::string::npos);
}

TEST_F(ConfigFileTest, WrongTypeIsNamed) {
  auto config = Load("listen = 8080\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("'listen' must be a string"), std::string::npos);
}

TEST_F(ConfigFileTest, SyntaxErrorGivesTheLine) {
  auto config = Load("listen = \"a\"\n[limits\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("line 2"), std::string::npos);
}

TEST_F(ConfigFileTest, ErasurePurgeDeadlineIsReadAndRangeChecked) {
  auto config = Load("");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->erasure_purge_deadline_hours, kErasurePurgeDeadlineHoursDefault);
  config = Load("erasure_purge_deadline_hours = 0\n");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->erasure_purge_deadline_hours, 0U);
  EXPECT_TRUE(ValidateConfig(*config).ok());
  for (const char* text : {"erasure_purge_deadline_hours = 721\n",
                           "erasure_purge_deadline_hours = 4294967297\n"}) {
    config = Load(text);
    ASSERT_TRUE(config.ok());
    const Status status = ValidateConfig(*config);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(status.message().find("erasure_purge_deadline_hours"), std::string::npos);
    EXPECT_NE(status.message().find("kErasurePurgeDeadlineHoursMax"), std::string::npos);
  }
  config = Load("erasure_purge_deadline_hours = -1\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("erasure_purge_deadline_hours"), std::string::npos);
}

TEST_F(ConfigFileTest, AuditSyncHoldIsReadAndRangeChecked) {
  auto config = Load("");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->audit_sync_hold_us, audit::kOpeningWaitUsDefault);
  config = Load("audit_sync_hold_us = 250\n");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->audit_sync_hold_us, 250U);
  EXPECT_TRUE(ValidateConfig(*config).ok());
  config = Load("audit_sync_hold_us = 1000001\n");
  ASSERT_TRUE(config.ok());
  const Status status = ValidateConfig(*config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("audit_sync_hold_us"), std::string::npos);
  EXPECT_NE(status.message().find("kOpeningWaitUsMax"), std::string::npos);
  config = Load("audit_sync_hold_us = -1\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("audit_sync_hold_us"), std::string::npos);
}

TEST_F(ConfigFileTest, AuditQueryStartIsReadAndRangeChecked) {
  auto config = Load("");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->audit_query_start_ms, audit::kDeferredStartMsDefault);
  config = Load("audit_query_start_ms = 0\n");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->audit_query_start_ms, 0U);
  EXPECT_TRUE(ValidateConfig(*config).ok());
  config = Load("audit_query_start_ms = 60001\n");
  ASSERT_TRUE(config.ok());
  const Status status = ValidateConfig(*config);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("audit_query_start_ms"), std::string::npos);
  EXPECT_NE(status.message().find("kDeferredStartMsMax"), std::string::npos);
}

TEST(ConfigTest, KeyFolderInsideDataFolderIsRefused) {
  Config config;
  config.data_folder = "/srv/data";
  config.key_folder = "/srv/data/keys";
  EXPECT_FALSE(ValidateConfig(config).ok());
  config.key_folder = "/srv/data-keys";
  EXPECT_TRUE(ValidateConfig(config).ok());
}

TEST(ConfigTest, DefaultKeyFolderSitsBesideTheData) {
  Config config;
  config.data_folder = "var/data/";
  EXPECT_EQ(KeyFolder(config), "var/data.keys");
  EXPECT_TRUE(ValidateConfig(config).ok());
}

TEST_F(ConfigFileTest, SwitchesTakeOnlyTrueOrFalse) {
  auto config = Load("access_log = false\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_FALSE(config->access_log);
  // An integer is not a switch (toml++'s value<bool>() would take 1).
  EXPECT_EQ(Load("access_log = 1\n").status().message(),
            "config: 'access_log' must be true or false");
}

TEST_F(ConfigFileTest, ApiListenerIsReadAndChecked) {
  auto config = Load(R"(
listen = "0.0.0.0:8080"
listen_api = "10.0.0.5:8443"
[tls_api]
cert_file = "api-cert.pem"
key_file = "api-key.pem"
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->listen_api, "10.0.0.5:8443");
  EXPECT_EQ(config->tls_api.cert_file, "api-cert.pem");
  EXPECT_EQ(config->tls_api.key_file, "api-key.pem");
  EXPECT_TRUE(config->tls.cert_file.empty());
  EXPECT_TRUE(ValidateConfig(*config).ok());
  EXPECT_EQ(Load("[tls_api]\ncert = \"c.pem\"\n").status().message(),
            "config: unknown key 'tls_api.cert'");

  Config checked = *config;
  checked.tls_api.key_file.clear();
  EXPECT_EQ(ValidateConfig(checked).message(),
            "config: 'tls_api.cert_file' and 'tls_api.key_file' go together");
  checked = *config;
  checked.listen_api.clear();
  EXPECT_EQ(ValidateConfig(checked).message(),
            "config: '[tls_api]' is the API listener's certificate and needs 'listen_api'");
  checked = *config;
  checked.listen_api = checked.listen;
  EXPECT_NE(ValidateConfig(checked).message().find("'listen_api' must be another address than "
                                                   "'listen' (0.0.0.0:8080)"),
            std::string::npos);
}

TEST_F(ConfigFileTest, CheckpointSyslogIsReadAndChecked) {
  auto config = Load(R"(
audit_checkpoint_syslog = "local4"
audit_checkpoint_syslog_socket = "/run/test/log"
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->audit_checkpoint_syslog, "local4");
  EXPECT_EQ(config->audit_checkpoint_syslog_socket, "/run/test/log");
  EXPECT_TRUE(ValidateConfig(*config).ok());
  EXPECT_EQ(SyslogFacility("local4"), LOG_LOCAL4);
  EXPECT_EQ(SyslogFacility("authpriv"), LOG_AUTHPRIV);
  EXPECT_FALSE(SyslogFacility("off").has_value());
  const Config defaults;
  EXPECT_EQ(defaults.audit_checkpoint_syslog, "off");
  EXPECT_EQ(defaults.audit_checkpoint_syslog_socket, "/dev/log");

  Config checked = *config;
  checked.audit_checkpoint_syslog = "local9";
  EXPECT_NE(ValidateConfig(checked).message().find("'audit_checkpoint_syslog' must be \"off\""),
            std::string::npos);
  checked = *config;
  checked.audit_checkpoint_syslog_socket = "relative/log";
  EXPECT_NE(ValidateConfig(checked).message().find("'audit_checkpoint_syslog_socket'"),
            std::string::npos);
  checked.audit_checkpoint_syslog_socket = "/" + std::string(kSyslogSocketPathBytesMax, 'a');
  EXPECT_NE(ValidateConfig(checked).message().find("kSyslogSocketPathBytesMax"),
            std::string::npos);
}

TEST_F(ConfigFileTest, HttpsWebhooksAndTheirCaFilesAreReadAndChecked) {
  auto config = Load(R"(
audit_checkpoint_webhook = "https://audit.example.test/checkpoints"
audit_checkpoint_webhook_ca_file = "/etc/minpanel/audit-ca.pem"
[anomaly]
webhook = "https://alerts.example.test/hook"
webhook_ca_file = "/etc/minpanel/alerts-ca.pem"
)");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->audit_checkpoint_webhook_ca_file, "/etc/minpanel/audit-ca.pem");
  EXPECT_EQ(config->anomaly.webhook_ca_file, "/etc/minpanel/alerts-ca.pem");
  EXPECT_TRUE(ValidateConfig(*config).ok());

  Config checked = *config;
  checked.audit_checkpoint_webhook = "ftp://audit.example.test/checkpoints";
  EXPECT_EQ(ValidateConfig(checked).message(),
            "config: 'audit_checkpoint_webhook' must be an http:// or https:// URL of at most "
            "2048 bytes (kAnomalyWebhookBytesMax)");
  // A CA file says which CAs an https receiver's certificate must chain
  // to; with http:// it would protect nothing, so it is refused.
  checked = *config;
  checked.audit_checkpoint_webhook = "http://audit.example.test/checkpoints";
  EXPECT_EQ(ValidateConfig(checked).message(),
            "config: 'audit_checkpoint_webhook_ca_file' is for an https:// "
            "'audit_checkpoint_webhook' only");
  checked = *config;
  checked.audit_checkpoint_webhook.clear();
  EXPECT_FALSE(ValidateConfig(checked).ok());
  checked = *config;
  checked.audit_checkpoint_webhook_ca_file = "/" + std::string(kWebhookCaFileBytesMax, 'a');
  EXPECT_NE(ValidateConfig(checked).message().find(
                "'audit_checkpoint_webhook_ca_file' must be at most 4096 bytes"),
            std::string::npos);
  checked = *config;
  checked.anomaly.webhook = "http://alerts.example.test/hook";
  EXPECT_EQ(ValidateConfig(checked).message(),
            "config: 'anomaly.webhook_ca_file' is for an https:// 'anomaly.webhook' only");
  checked.anomaly.webhook_ca_file.clear();
  EXPECT_TRUE(ValidateConfig(checked).ok());
}

TEST(ConfigTest, LimitsAreRangeChecked) {
  Config config;
  config.limits.body_bytes_max = 10;
  EXPECT_NE(ValidateConfig(config).message().find("limits.body_bytes_max"), std::string::npos);
  config = Config();
  config.tls.cert_file = "cert.pem";
  EXPECT_NE(ValidateConfig(config).message().find("tls.key_file"), std::string::npos);
  config = Config();
  config.log_level = "loud";
  EXPECT_FALSE(ValidateConfig(config).ok());
}

}  // namespace
}  // namespace minpanel::service

namespace minpanel::service {
namespace {

Status PrefixCheck(std::vector<std::string> prefixes) {
  Config config;
  config.path_prefixes = std::move(prefixes);
  return ValidateConfig(config);
}

TEST_F(ConfigFileTest, PathPrefixesAreReadAndChecked) {
  auto config = Load("path_prefixes = [\"/mp\", \"/proxy/analytics\"]\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->path_prefixes, (std::vector<std::string>{"/mp", "/proxy/analytics"}));
  EXPECT_TRUE(ValidateConfig(*config).ok());
  EXPECT_EQ(Load("path_prefixes = \"/mp\"\n").status().message(),
            "config: 'path_prefixes' must be an array of strings");
}

TEST(PathPrefixConfigTest, RefusesPrefixesThatHideRoutesOrAreMalformed) {
  EXPECT_TRUE(PrefixCheck({}).ok());
  EXPECT_TRUE(PrefixCheck({"/mp", "/ingest", "/a.b_c~d-e/f"}).ok());
  const std::string shape =
      " must be '/' then 1 to 63 characters of [A-Za-z0-9._~/-], without a trailing '/' or '//' "
      "(kPathPrefixBytesMax)";
  for (const std::string bad : {"mp", "/", "/mp/", "/m//p", "/m p", "/m?p", "/m%20p"}) {
    EXPECT_EQ(PrefixCheck({bad}).message(), "config: 'path_prefixes' entry '" + bad + "'" + shape)
        << bad;
  }
  EXPECT_TRUE(PrefixCheck({"/" + std::string(kPathPrefixBytesMax - 1, 'p')}).ok());
  EXPECT_FALSE(PrefixCheck({"/" + std::string(kPathPrefixBytesMax, 'p')}).ok());
  EXPECT_EQ(PrefixCheck({"/api"}).message(),
            "config: 'path_prefixes' entry '/api' would hide minpanel's own /api routes: choose "
            "another first segment");
  EXPECT_EQ(PrefixCheck({"/v1/proxy"}).message(),
            "config: 'path_prefixes' entry '/v1/proxy' would hide minpanel's own /v1 routes: "
            "choose another first segment");
  EXPECT_TRUE(PrefixCheck({"/apis"}).ok()) << "a whole first segment, not its start";
  EXPECT_EQ(PrefixCheck(std::vector<std::string>(kPathPrefixesMax + 1, "/mp")).message(),
            "config: 'path_prefixes' holds at most 16 prefixes (kPathPrefixesMax)");
}

}  // namespace
}  // namespace minpanel::service
