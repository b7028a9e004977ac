// PolicyStore: the policy files of a data folder and their history.
//
// A project's policy is <folder>/<project name>.toml; a project without one
// gets DefaultPolicy(). Every distinct text a project's policy has had is
// kept as <folder>/history/<project name>/<version>.toml, numbered from 1 in
// the order first seen, so that any stored event can be explained by the
// policy in force when it arrived. Load() re-reads the files (start-up and
// SIGHUP); a file that fails its checks keeps the previous policy in force
// and is reported.
//
// Thread-safe: lookups take a shared lock; Load an exclusive one.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/core.h"
#include "privacy/policy_file.h"

namespace minpanel::privacy {

struct VersionedPolicy {
  std::shared_ptr<const PolicySpec> spec;
  uint32_t version = 0;  // 0: the built-in default
  std::string text;      // the file as read ("" for the default)
};

class PolicyStore {
 public:
  PolicyStore(std::string folder, std::shared_ptr<FileSystem> file_system);

  // Reads the policies of these projects. Returns one message per policy
  // file that was refused (the previous one stays); an I/O error otherwise.
  Result<std::vector<std::string>> Load(const std::vector<std::string>& project_names);

  // The policy in force for a project (the default until Load saw a file).
  VersionedPolicy Get(const std::string& project_name) const;

 private:
  Result<uint32_t> RecordVersion(const std::string& project_name, const std::string& text);

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  mutable std::shared_mutex mutex_;
  std::map<std::string, VersionedPolicy> policies_;
};

}  // namespace minpanel::privacy
