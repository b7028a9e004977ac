// PolicyStore: the policy files of a data folder and their history
// (docs/formats/policies.md).
//
// A project's policy is <folder>/<project name>.toml; a project without one
// gets DefaultPolicy(). Every distinct text a project's policy has had is
// kept as <folder>/history/<project name>/<version>.toml, numbered from 1 in
// the order first seen, so that any stored event can be explained by the
// policy in force when it arrived; when each version was recorded is kept in
// <folder>/history/<project name>/versions.tsv. Load() re-reads the files
// (start-up and SIGHUP); a file that fails its checks keeps the previous
// policy in force and is reported. Put() is the same change made through
// the admin API: it writes the file, records the version and puts it in
// force at once.
//
// Thread-safe: lookups take a shared lock. Load and Put, which write the
// history, run one at a time and swap what is in force under an exclusive
// lock, so a lookup never waits for a disk write.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "privacy/policy_file.h"

namespace minpanel::privacy {

// How many versions History() lists (the newest): a history only grows by
// deliberate changes, but an answer still has a bound.
inline constexpr size_t kPolicyVersionsListedMax = 1000;

struct VersionedPolicy {
  std::shared_ptr<const PolicySpec> spec;
  uint32_t version = 0;  // 0: the built-in default
  std::string text;      // the file as read ("" for the default)
};

// One recorded version of a project's policy.
struct PolicyVersionInfo {
  uint32_t version = 0;
  int64_t recorded_ms = 0;  // 0: recorded before the history kept times
  uint64_t bytes = 0;
};

struct PolicyPut {
  VersionedPolicy policy;    // now in force
  bool new_version = false;  // false: the same text as the latest version
};

class PolicyStore {
 public:
  // `clock` dates the versions recorded from now on.
  PolicyStore(std::string folder, std::shared_ptr<FileSystem> file_system,
              std::shared_ptr<Clock> clock);

  // Reads the policies of these projects. Returns one message per policy
  // file that was refused (the previous one stays); an I/O error otherwise.
  Result<std::vector<std::string>> Load(const std::vector<std::string>& project_names);

  // Checks `text` as ParsePolicy does, records it in the history (a text
  // equal to the latest version is that version again), replaces the
  // project's policy file with it atomically and puts it in force. On a
  // refused text (InvalidArgument naming the key or line, ResourceExhausted
  // over kPolicyBytesMax) nothing changes. An I/O error after the history
  // was written leaves a version that never came into force, and the
  // previous policy in force.
  Result<PolicyPut> Put(const std::string& project_name, std::string_view text);

  // The policy in force for a project (the default until Load saw a file).
  VersionedPolicy Get(const std::string& project_name) const;
  // The version of that policy (0: the built-in default), without copying
  // its text: what each read's audit record names.
  uint32_t VersionOf(const std::string& project_name) const;

  // The project's recorded versions, oldest first (at most the newest
  // kPolicyVersionsListedMax); empty when it never had a policy file.
  // Corruption names a damaged versions.tsv.
  Result<std::vector<PolicyVersionInfo>> History(const std::string& project_name) const;

  // The text of one recorded version; NotFound when there is no such
  // version.
  Result<std::string> VersionText(const std::string& project_name, uint32_t version) const;

 private:
  struct Recorded {
    uint32_t version = 0;
    bool new_version = false;
  };
  Result<Recorded> RecordVersion(const std::string& project_name, const std::string& text);
  std::string HistoryFolder(const std::string& project_name) const;
  // The recorded version numbers, ascending.
  Result<std::vector<uint32_t>> Versions(const std::string& history) const;

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  std::mutex write_mutex_;           // held by Load and Put, which write the history
  mutable std::shared_mutex mutex_;  // guards policies_
  std::map<std::string, VersionedPolicy> policies_;
};

}  // namespace minpanel::privacy
