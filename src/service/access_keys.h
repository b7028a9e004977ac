// Access keys and scopes (issue 6): who may do what to which project.
//
// Three kinds of credential unlock the API. A project token (public,
// ingest only), a project secret (every scope of its project;
// projects.h) and service keys kept here, in <data>/access_keys.json
// (docs/formats/access-keys.md): explicit scopes, limited to one project or
// to all (a server-wide key), optionally to event names and property keys,
// optionally expiring. A key's secret is `mpk_<16 hex id>_<64 hex>` — 256
// random bits shown once; the file keeps only its SHA-256 and the id, the
// public prefix by which it is found. Comparison is constant-time.
//
// The file is replaced atomically; a lock file serialises writers across
// processes (`minpanel keys …` works while a server runs, which picks the
// change up on SIGHUP). Thread-safe: lookups take a shared lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/core.h"
#include "service/access_keys_limits.h"

namespace minpanel::service {

// The scopes, as bits. Their names are the API's spelling.
enum class Scope : uint32_t {
  kIngest = 1u << 0,
  kQueryAggregate = 1u << 1,  // counts, funnels, retention: no per-subject rows
  kQuerySubjects = 1u << 2,   // results that list or select subjects by distinct id
  kExport = 1u << 3,          // raw events
  kAdmin = 1u << 4,           // keys, policy, projects
  kAuditRead = 1u << 5,       // GET /api/audit
  kMetrics = 1u << 6,         // GET /metrics (server-wide counters)
};
inline constexpr uint32_t kAllScopes = (1u << 7) - 1;
inline constexpr size_t kScopeCount = 7;

std::string_view ScopeName(Scope scope);
std::optional<Scope> ParseScope(std::string_view name);
// "ingest,export" for a set of scope bits, in the order of Scope.
std::string ScopeList(uint32_t scopes);

inline constexpr size_t kAccessKeysMax = 10000;
inline constexpr size_t kAccessKeyNameBytesMax = 64;
inline constexpr size_t kAccessKeyListItemsMax = 100;  // event names or property keys
inline constexpr size_t kAccessKeyItemBytesMax = 255;
inline constexpr std::string_view kAccessKeyPrefix = "mpk_";

struct AccessKey {
  std::string id;    // "mpk_" and 16 hex: the public prefix of the secret
  std::string name;  // a label for people
  uint32_t scopes = 0;
  uint32_t project_id = 0;              // 0: every project (a server-wide key)
  std::vector<std::string> events;      // empty: every event
  std::vector<std::string> properties;  // empty: every property
  int64_t expires_ms = 0;               // 0: never
  // k-suppression of its queries (docs/queries.md, "Small groups"): may
  // only raise its project's; 0: the project's.
  uint32_t min_group_size = 0;
  int64_t created_ms = 0;
  int64_t revoked_ms = 0;  // 0: in force
  std::string created_by;  // the key id that created it, or "local"
  std::string secret_sha256_hex;
  KeyLimits limits;  // 0 each: the server's default (access_keys_limits.h)
  // Suspended by an anomaly rule (anomaly.h) until an admin enables it; 0:
  // not suspended.
  int64_t suspended_ms = 0;
  std::string suspended_rule;
};

struct AccessKeyWithSecret {
  AccessKey key;
  std::string secret;  // shown once, never stored
};

// What a new key may do; checked by Create.
struct AccessKeySpec {
  std::string name;
  uint32_t scopes = 0;
  uint32_t project_id = 0;
  std::vector<std::string> events;
  std::vector<std::string> properties;
  int64_t expires_ms = 0;
  uint32_t min_group_size = 0;  // at most query::kMinGroupSizeMax
  KeyLimits limits;
  std::string created_by = "local";
};

class AccessKeyStore {
 public:
  static Result<std::unique_ptr<AccessKeyStore>> Open(std::string data_folder,
                                                      std::shared_ptr<FileSystem> file_system,
                                                      std::shared_ptr<Clock> clock);
  // Re-reads the file (SIGHUP).
  Status Reload();
  // InvalidArgument names a bad field (no scope, a bad name, an expiry in
  // the past); ResourceExhausted over a limit.
  Result<AccessKeyWithSecret> Create(const AccessKeySpec& spec);
  // A new secret for the same key; the old one stops working at once.
  // NotFound for an unknown id, InvalidArgument for a revoked key.
  Result<AccessKeyWithSecret> Rotate(std::string_view id);
  Result<AccessKey> Revoke(std::string_view id);
  // Suspends a key for an anomaly rule (kept when already suspended), and
  // enables it again (InvalidArgument for a revoked key). NotFound for an
  // unknown id.
  Result<AccessKey> Suspend(std::string_view id, std::string_view rule);
  Result<AccessKey> Enable(std::string_view id);
  // Removes every key limited to the project (project deletion); returns
  // them.
  Result<std::vector<AccessKey>> RemoveProject(uint32_t project_id);
  std::vector<AccessKey> List() const;
  std::optional<AccessKey> FindById(std::string_view id) const;
  // The key this secret is, revoked and expired ones included (the caller
  // says which); nullopt when no key has it. Constant-time comparison.
  std::optional<AccessKey> FindBySecret(std::string_view secret) const;

 private:
  AccessKeyStore(std::string data_folder, std::shared_ptr<FileSystem> file_system,
                 std::shared_ptr<Clock> clock);
  Result<std::vector<AccessKey>> ReadFile() const;
  Status WriteFile(const std::vector<AccessKey>& keys) const;
  void Install(std::vector<AccessKey> keys);
  // Applies `change` to the key `id` under the file lock and writes the file.
  Result<AccessKey> Change(std::string_view id, const std::function<Status(AccessKey&)>& change);

  std::string path_;
  std::string lock_path_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  mutable std::shared_mutex mutex_;
  std::vector<AccessKey> keys_;
  std::unordered_map<std::string, size_t> by_id_;
};

// Whether a credential looks like an access key's secret (so that it is
// looked up here and not as a project secret).
bool IsAccessKeySecret(std::string_view secret);

}  // namespace minpanel::service
