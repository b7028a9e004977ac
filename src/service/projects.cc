#include "service/projects.h"

#include <sodium.h>

#include <date/tz.h>
#include <simdjson.h>

#include <algorithm>
#include <mutex>

#include "ingest/plausible_events.h"
#include "query/query.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kFileFormat = "minpanel-projects";
constexpr int64_t kFileFormatVersion = 1;
constexpr uint32_t kProjectsFileMode = 0600;
constexpr size_t kTokenBytes = 16;
constexpr size_t kSecretBytes = 32;

bool IsValidProjectName(std::string_view name) {
  if (name.empty() || name.size() > kProjectNameBytesMax) {
    return false;
  }
  for (const char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
    if (!allowed) {
      return false;
    }
  }
  return true;
}


Result<Project> ParseProject(simdjson::dom::element element) {
  Project project;
  uint64_t id = 0;
  std::string_view name, token, secret_hash, time_zone;
  int64_t created_ms = 0;
  if (element["id"].get(id) || element["name"].get(name) || element["token"].get(token) ||
      element["secret_sha256"].get(secret_hash) || element["time_zone"].get(time_zone) ||
      element["created_ms"].get(created_ms) || id == 0 || id > UINT32_MAX) {
    return Status::Corruption("projects.json: a project entry lacks a field or has a wrong type");
  }
  project.id = static_cast<uint32_t>(id);
  project.name = name;
  project.token = token;
  project.secret_sha256_hex = secret_hash;
  project.time_zone = time_zone;
  project.created_ms = created_ms;
  // Optional: files written before projects had sites lack it.
  simdjson::dom::array domains;
  if (element["domains"].get(domains) == simdjson::SUCCESS) {
    for (simdjson::dom::element domain : domains) {
      std::string_view text;
      if (domain.get(text)) {
        return Status::Corruption("projects.json: a project's domains must be strings");
      }
      project.domains.emplace_back(text);
    }
  }
  // Optional: files written before k-suppression lack it.
  uint64_t min_group_size = 0;
  if (element["min_group_size"].get(min_group_size) == simdjson::SUCCESS) {
    project.min_group_size =
        static_cast<uint32_t>(std::min<uint64_t>(min_group_size, query::kMinGroupSizeMax));
  }
  // Optional: only a deleted project's entry has it.
  if (element["deleted_ms"].get(project.deleted_ms) != simdjson::SUCCESS) {
    project.deleted_ms = 0;
  }
  return project;
}

}  // namespace

bool IsKnownTimeZone(std::string_view name) {
  try {
    return date::locate_zone(name) != nullptr;
  } catch (const std::exception&) {
    return false;
  }
}

ProjectRegistry::ProjectRegistry(std::string data_folder, std::shared_ptr<FileSystem> file_system,
                                 std::shared_ptr<Clock> clock)
    : path_(data_folder + "/projects.json"),
      lock_path_(data_folder + "/projects.lock"),
      file_system_(std::move(file_system)),
      clock_(std::move(clock)) {}

Result<std::unique_ptr<ProjectRegistry>> ProjectRegistry::Open(
    std::string data_folder, std::shared_ptr<FileSystem> file_system,
    std::shared_ptr<Clock> clock) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  std::unique_ptr<ProjectRegistry> registry(
      new ProjectRegistry(std::move(data_folder), std::move(file_system), std::move(clock)));
  MP_RETURN_IF_ERROR(registry->Reload());
  return registry;
}

Result<std::vector<Project>> ProjectRegistry::ReadFile() const {
  return internal::ReadListFile<Project>(
      *file_system_, path_, kFileFormat, kFileFormatVersion, "projects", "projects", ParseProject);
}

Status ProjectRegistry::WriteFile(const std::vector<Project>& projects) const {
  std::string text = "{\"format\":\"minpanel-projects\",\"version\":1,\"projects\":[\n";
  for (size_t project_idx = 0; project_idx < projects.size(); ++project_idx) {
    const Project& project = projects[project_idx];
    text += "{\"id\":" + std::to_string(project.id) + ",\"name\":";
    query::AppendJsonString(project.name, &text);
    text += ",\"token\":\"" + project.token + "\",\"secret_sha256\":\"" +
            project.secret_sha256_hex + "\",\"time_zone\":";
    query::AppendJsonString(project.time_zone, &text);
    text += ",\"created_ms\":" + std::to_string(project.created_ms);
    if (!project.domains.empty()) {
      text += ",\"domains\":[";
      for (size_t domain_idx = 0; domain_idx < project.domains.size(); ++domain_idx) {
        text += domain_idx == 0 ? "" : ",";
        query::AppendJsonString(project.domains[domain_idx], &text);
      }
      text += "]";
    }
    if (project.min_group_size != 0) {
      text += ",\"min_group_size\":" + std::to_string(project.min_group_size);
    }
    if (project.deleted_ms != 0) {
      text += ",\"deleted_ms\":" + std::to_string(project.deleted_ms);
    }
    text += "}";
    text += project_idx + 1 < projects.size() ? ",\n" : "\n";
  }
  text += "]}\n";
  return file_system_->WriteFileAtomically(path_, text, kProjectsFileMode);
}

void ProjectRegistry::Install(std::vector<Project> projects) {
  std::erase_if(projects, [](const Project& project) { return project.deleted_ms != 0; });
  std::unique_lock lock(mutex_);
  projects_ = std::move(projects);
  by_token_.clear();
  by_secret_hash_.clear();
  by_domain_.clear();
  for (size_t project_idx = 0; project_idx < projects_.size(); ++project_idx) {
    by_token_[projects_[project_idx].token] = project_idx;
    by_secret_hash_[projects_[project_idx].secret_sha256_hex] = project_idx;
    for (const std::string& domain : projects_[project_idx].domains) {
      by_domain_.emplace(domain, project_idx);
    }
  }
}

Status ProjectRegistry::Reload() {
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  Install(std::move(projects));
  return Status::Ok();
}

Result<ProjectWithSecret> ProjectRegistry::Create(std::string_view name,
                                                  std::string_view time_zone) {
  if (!IsValidProjectName(name)) {
    return Status::InvalidArgument("project name: 1 to " + std::to_string(kProjectNameBytesMax) +
                                   " characters of A-Z, a-z, 0-9, '-', '_' or '.'");
  }
  if (!IsKnownTimeZone(time_zone)) {
    return Status::InvalidArgument("time zone: '" + std::string(time_zone) +
                                   "' is not an IANA time zone known to this machine");
  }
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  uint32_t next_id = 1;
  for (const Project& existing : projects) {
    if (existing.name == name) {
      return Status::InvalidArgument("project name: '" + std::string(name) + "' exists already");
    }
    next_id = std::max(next_id, existing.id + 1);
  }
  if (projects.size() >= kProjectsMax) {
    return Status::ResourceExhausted("projects: the limit is " + std::to_string(kProjectsMax));
  }
  ProjectWithSecret created;
  created.secret = internal::RandomHex(kSecretBytes);
  created.project = Project{next_id, std::string(name), internal::RandomHex(kTokenBytes),
                            internal::Sha256Hex(created.secret), std::string(time_zone),
                            clock_->NowMs(), {}};
  projects.push_back(created.project);
  MP_RETURN_IF_ERROR(WriteFile(projects));
  Install(std::move(projects));
  return created;
}

Result<Project> ProjectRegistry::MarkDeleted(uint32_t id) {
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  for (Project& project : projects) {
    if (project.id == id && project.deleted_ms == 0) {
      const Project deleted = project;
      project.deleted_ms = clock_->NowMs();
      project.token.clear();
      project.secret_sha256_hex.clear();
      project.domains.clear();
      MP_RETURN_IF_ERROR(WriteFile(projects));
      Install(std::move(projects));
      return deleted;
    }
  }
  return Status::NotFound("project_id: no project " + std::to_string(id));
}

Result<ProjectWithSecret> ProjectRegistry::RotateSecret(std::string_view name) {
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  for (Project& project : projects) {
    if (project.name == name) {
      ProjectWithSecret rotated;
      rotated.secret = internal::RandomHex(kSecretBytes);
      project.secret_sha256_hex = internal::Sha256Hex(rotated.secret);
      rotated.project = project;
      MP_RETURN_IF_ERROR(WriteFile(projects));
      Install(std::move(projects));
      return rotated;
    }
  }
  return Status::NotFound("project '" + std::string(name) + "' does not exist");
}

Result<Project> ProjectRegistry::SetDomains(std::string_view name,
                                            const std::vector<std::string>& domains) {
  if (domains.size() > kProjectDomainsMax) {
    return Status::ResourceExhausted("domains: " + std::to_string(domains.size()) +
                                     " sites, over the limit of " +
                                     std::to_string(kProjectDomainsMax) + " (kProjectDomainsMax)");
  }
  std::vector<std::string> normalised;
  for (const std::string& domain : domains) {
    auto one = ingest::NormalisePlausibleDomain(domain);
    if (!one.ok()) {
      return Status::InvalidArgument("'" + domain + "': " + one.status().message());
    }
    if (std::find(normalised.begin(), normalised.end(), *one) == normalised.end()) {
      normalised.push_back(std::move(*one));
    }
  }
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  Project* target = nullptr;
  for (Project& project : projects) {
    if (project.name == name) {
      target = &project;
    }
  }
  if (target == nullptr) {
    return Status::NotFound("project '" + std::string(name) + "' does not exist");
  }
  for (const Project& project : projects) {
    for (const std::string& domain : normalised) {
      if (&project != target && std::find(project.domains.begin(), project.domains.end(), domain) !=
                                    project.domains.end()) {
        return Status::InvalidArgument("domain: '" + domain + "' belongs to project '" +
                                       project.name + "' already");
      }
    }
  }
  target->domains = std::move(normalised);
  const Project updated = *target;
  MP_RETURN_IF_ERROR(WriteFile(projects));
  Install(std::move(projects));
  return updated;
}

Result<Project> ProjectRegistry::SetMinGroupSize(std::string_view name, uint32_t min_group_size) {
  if (min_group_size > query::kMinGroupSizeMax) {
    return Status::InvalidArgument("min_group_size: at most " +
                                   std::to_string(query::kMinGroupSizeMax) +
                                   " (kMinGroupSizeMax)");
  }
  internal::FileLock lock(lock_path_);
  if (!lock.ok()) {
    return Status::IoError("cannot lock " + lock_path_);
  }
  MP_ASSIGN_OR_RETURN(std::vector<Project> projects, ReadFile());
  for (Project& project : projects) {
    if (project.name == name) {
      project.min_group_size = min_group_size;
      const Project updated = project;
      MP_RETURN_IF_ERROR(WriteFile(projects));
      Install(std::move(projects));
      return updated;
    }
  }
  return Status::NotFound("project '" + std::string(name) + "' does not exist");
}

std::optional<Project> ProjectRegistry::FindByDomain(std::string_view domain) const {
  std::shared_lock lock(mutex_);
  const auto found = by_domain_.find(std::string(domain));
  if (found == by_domain_.end()) {
    return std::nullopt;
  }
  return projects_[found->second];
}

std::vector<Project> ProjectRegistry::List() const {
  std::shared_lock lock(mutex_);
  return projects_;
}

std::optional<Project> ProjectRegistry::FindByName(std::string_view name) const {
  std::shared_lock lock(mutex_);
  for (const Project& project : projects_) {
    if (project.name == name) {
      return project;
    }
  }
  return std::nullopt;
}

std::optional<Project> ProjectRegistry::FindById(uint32_t id) const {
  std::shared_lock lock(mutex_);
  for (const Project& project : projects_) {
    if (project.id == id) {
      return project;
    }
  }
  return std::nullopt;
}

std::optional<Project> ProjectRegistry::FindByToken(std::string_view token) const {
  std::shared_lock lock(mutex_);
  const auto found = by_token_.find(std::string(token));
  if (found == by_token_.end()) {
    return std::nullopt;
  }
  return projects_[found->second];
}

std::optional<Project> ProjectRegistry::FindBySecret(std::string_view secret) const {
  // The map is keyed by the secret's hash, so a lookup's timing says nothing
  // about the secret; the final comparison is constant-time anyway.
  const std::string hash = internal::Sha256Hex(secret);
  std::shared_lock lock(mutex_);
  const auto found = by_secret_hash_.find(hash);
  if (found == by_secret_hash_.end()) {
    return std::nullopt;
  }
  const Project& project = projects_[found->second];
  if (sodium_memcmp(project.secret_sha256_hex.data(), hash.data(), hash.size()) != 0) {
    return std::nullopt;
  }
  return project;
}

}  // namespace minpanel::service
