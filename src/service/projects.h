// ProjectRegistry: the projects of a data folder, kept in
// <data>/projects.json (docs/formats/projects.md). Each project has a public
// token (ingest only), a secret stored only as its SHA-256, and an IANA time
// zone. The file is replaced atomically; a lock file serialises writers
// across processes (the CLI may create a project while a server runs, which
// then picks it up on SIGHUP).
//
// Thread-safe: lookups take a shared lock, changes an exclusive one.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/core.h"

namespace minpanel::service {

inline constexpr size_t kProjectNameBytesMax = 64;
inline constexpr size_t kProjectsMax = 10000;
// Plausible sites (domains) per project.
inline constexpr size_t kProjectDomainsMax = 100;

struct Project {
  uint32_t id = 0;
  std::string name;
  std::string token;
  std::string secret_sha256_hex;
  std::string time_zone = "UTC";
  int64_t created_ms = 0;
  // The sites whose Plausible events (POST /api/event) go to this project,
  // normalised (ingest::NormalisePlausibleDomain); a domain belongs to at
  // most one project.
  std::vector<std::string> domains;
  // k-suppression of the project's aggregate queries (docs/queries.md,
  // "Small groups"); 0: none. At most query::kMinGroupSizeMax.
  uint32_t min_group_size = 0;
  // Deleted (Service::DeleteProject): the file keeps the entry, without its
  // token, secret or sites, so that no new project takes its id (the audit
  // log names projects by id) or its name; every lookup and List skip it.
  int64_t deleted_ms = 0;
};

struct ProjectWithSecret {
  Project project;
  std::string secret;  // shown once, never stored
};

class ProjectRegistry {
 public:
  static Result<std::unique_ptr<ProjectRegistry>> Open(std::string data_folder,
                                                       std::shared_ptr<FileSystem> file_system,
                                                       std::shared_ptr<Clock> clock);

  // Re-reads the file (SIGHUP).
  Status Reload();
  Result<ProjectWithSecret> Create(std::string_view name, std::string_view time_zone);
  Result<ProjectWithSecret> RotateSecret(std::string_view name);
  // Replaces the project's list of Plausible sites (empty: none). Each is
  // normalised; InvalidArgument names a malformed domain or one that
  // belongs to another project, ResourceExhausted over kProjectDomainsMax,
  // NotFound for an unknown project. A refused list changes nothing.
  Result<Project> SetDomains(std::string_view name, const std::vector<std::string>& domains);
  // Sets the project's minimum group size k (0: none). InvalidArgument over
  // query::kMinGroupSizeMax, NotFound for an unknown project.
  Result<Project> SetMinGroupSize(std::string_view name, uint32_t min_group_size);
  // Marks the project deleted (its token and secret stop working at once).
  // NotFound for an unknown or already deleted project.
  Result<Project> MarkDeleted(uint32_t id);

  std::vector<Project> List() const;
  std::optional<Project> FindByName(std::string_view name) const;
  std::optional<Project> FindById(uint32_t id) const;
  std::optional<Project> FindByToken(std::string_view token) const;
  // The project that lists this (normalised) site domain.
  std::optional<Project> FindByDomain(std::string_view domain) const;
  // The project whose secret this is, compared in constant time.
  std::optional<Project> FindBySecret(std::string_view secret) const;

 private:
  ProjectRegistry(std::string data_folder, std::shared_ptr<FileSystem> file_system,
                  std::shared_ptr<Clock> clock);
  Result<std::vector<Project>> ReadFile() const;
  Status WriteFile(const std::vector<Project>& projects) const;
  void Install(std::vector<Project> projects);

  std::string path_;
  std::string lock_path_;
  std::shared_ptr<FileSystem> file_system_;
  std::shared_ptr<Clock> clock_;
  mutable std::shared_mutex mutex_;
  std::vector<Project> projects_;
  std::unordered_map<std::string, size_t> by_token_;
  std::unordered_map<std::string, size_t> by_secret_hash_;
  std::unordered_map<std::string, size_t> by_domain_;
};

// Whether `name` is a valid IANA time zone known to this machine.
bool IsKnownTimeZone(std::string_view name);

}  // namespace minpanel::service
