#include "privacy/policy_store.h"

#include <cstdlib>
#include <mutex>

namespace minpanel::privacy {
namespace {

constexpr uint32_t kFolderMode = 0700;
constexpr uint32_t kHistoryFileMode = 0600;
constexpr std::string_view kHistoryExtension = ".toml";

}  // namespace

PolicyStore::PolicyStore(std::string folder, std::shared_ptr<FileSystem> file_system)
    : folder_(std::move(folder)), file_system_(std::move(file_system)) {}

Result<uint32_t> PolicyStore::RecordVersion(const std::string& project_name,
                                            const std::string& text) {
  const std::string history = folder_ + "/history/" + project_name;
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(history, kFolderMode));
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(history));
  uint32_t latest = 0;
  for (const std::string& name : names) {
    if (!name.ends_with(kHistoryExtension)) {
      continue;
    }
    const std::string number = name.substr(0, name.size() - kHistoryExtension.size());
    const uint32_t version = static_cast<uint32_t>(std::strtoul(number.c_str(), nullptr, 10));
    if (version > latest) {
      latest = version;
    }
  }
  // The same text as the latest version is that version, not a new one.
  if (latest > 0) {
    auto previous = file_system_->ReadFile(history + "/" + std::to_string(latest) + ".toml");
    if (previous.ok() && *previous == text) {
      return latest;
    }
  }
  const uint32_t version = latest + 1;
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(
      history + "/" + std::to_string(version) + ".toml", text, kHistoryFileMode));
  return version;
}

Result<std::vector<std::string>> PolicyStore::Load(const std::vector<std::string>& project_names) {
  std::vector<std::string> refused;
  std::map<std::string, VersionedPolicy> loaded;
  for (const std::string& name : project_names) {
    const std::string path = folder_ + "/" + name + ".toml";
    if (!file_system_->Exists(path)) {
      loaded[name] = VersionedPolicy{std::make_shared<const PolicySpec>(DefaultPolicy()), 0, ""};
      continue;
    }
    MP_ASSIGN_OR_RETURN(std::string text, file_system_->ReadFile(path));
    auto spec = ParsePolicy(text);
    if (!spec.ok()) {
      refused.push_back(path + ": " + spec.status().message());
      loaded[name] = Get(name);  // the previous policy stays in force
      continue;
    }
    MP_ASSIGN_OR_RETURN(const uint32_t version, RecordVersion(name, text));
    loaded[name] = VersionedPolicy{std::make_shared<const PolicySpec>(std::move(spec).value()),
                                   version, std::move(text)};
  }
  std::unique_lock lock(mutex_);
  policies_ = std::move(loaded);
  return refused;
}

VersionedPolicy PolicyStore::Get(const std::string& project_name) const {
  {
    std::shared_lock lock(mutex_);
    const auto found = policies_.find(project_name);
    if (found != policies_.end()) {
      return found->second;
    }
  }
  static const std::shared_ptr<const PolicySpec> kDefault =
      std::make_shared<const PolicySpec>(DefaultPolicy());
  return VersionedPolicy{kDefault, 0, ""};
}

}  // namespace minpanel::privacy
