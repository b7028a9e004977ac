#include "privacy/policy_store.h"

#include <algorithm>
#include <charconv>
#include <mutex>

namespace minpanel::privacy {
namespace {

constexpr uint32_t kFolderMode = 0700;
constexpr uint32_t kPolicyFileMode = 0600;
constexpr uint32_t kHistoryFileMode = 0600;
constexpr std::string_view kHistoryExtension = ".toml";
constexpr std::string_view kIndexName = "versions.tsv";
constexpr std::string_view kIndexMagic = "minpanel-policy-versions";
constexpr uint32_t kIndexFormatVersion = 1;

// A whole field as a decimal number, without sign or leading spaces.
template <typename Number>
bool ParseNumber(std::string_view text, Number* number) {
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), *number);
  return !text.empty() && parsed.ec == std::errc() && parsed.ptr == text.data() + text.size();
}

// When each version was recorded, by version (docs/formats/policies.md).
using RecordedTimes = std::map<uint32_t, int64_t>;

Result<RecordedTimes> ReadIndex(FileSystem& file_system, const std::string& path) {
  RecordedTimes recorded;
  if (!file_system.Exists(path)) {
    return recorded;  // a history begun before times were kept
  }
  MP_ASSIGN_OR_RETURN(const std::string text, file_system.ReadFile(path));
  size_t line_start = 0;
  int64_t line_number = 0;
  while (line_start < text.size()) {
    const size_t line_end = text.find('\n', line_start);
    ++line_number;
    const std::string where = path + ": line " + std::to_string(line_number);
    if (line_end == std::string::npos) {
      return Status::Corruption(where + ": not terminated");
    }
    const std::string_view line(text.data() + line_start, line_end - line_start);
    line_start = line_end + 1;
    const size_t tab = line.find('\t');
    if (tab == std::string_view::npos) {
      return Status::Corruption(where + ": expected two fields separated by a tab");
    }
    const std::string_view first = line.substr(0, tab);
    const std::string_view second = line.substr(tab + 1);
    if (line_number == 1) {
      uint32_t format_version = 0;
      if (first != kIndexMagic || !ParseNumber(second, &format_version)) {
        return Status::Corruption(where + ": not a policy versions file");
      }
      if (format_version > kIndexFormatVersion) {
        return Status::Corruption(where + ": format version " + std::to_string(format_version) +
                                  " is newer than this binary");
      }
      continue;
    }
    uint32_t version = 0;
    int64_t recorded_ms = 0;
    if (!ParseNumber(first, &version) || !ParseNumber(second, &recorded_ms)) {
      return Status::Corruption(where + ": expected a version and a time in ms");
    }
    recorded[version] = recorded_ms;
  }
  if (line_number == 0) {
    return Status::Corruption(path + ": empty");
  }
  return recorded;
}

std::string FormatIndex(const RecordedTimes& recorded) {
  std::string text = std::string(kIndexMagic) + "\t" + std::to_string(kIndexFormatVersion) + "\n";
  for (const auto& [version, recorded_ms] : recorded) {
    text += std::to_string(version) + "\t" + std::to_string(recorded_ms) + "\n";
  }
  return text;
}

std::string VersionFileName(uint32_t version) {
  return std::to_string(version) + std::string(kHistoryExtension);
}

}  // namespace

PolicyStore::PolicyStore(std::string folder, std::shared_ptr<FileSystem> file_system,
                         std::shared_ptr<Clock> clock)
    : folder_(std::move(folder)), file_system_(std::move(file_system)), clock_(std::move(clock)) {}

std::string PolicyStore::HistoryFolder(const std::string& project_name) const {
  return folder_ + "/history/" + project_name;
}

Result<std::vector<uint32_t>> PolicyStore::Versions(const std::string& history) const {
  std::vector<uint32_t> versions;
  if (!file_system_->Exists(history)) {
    return versions;
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(history));
  for (const std::string& name : names) {
    uint32_t version = 0;
    if (name.ends_with(kHistoryExtension) &&
        ParseNumber(std::string_view(name).substr(0, name.size() - kHistoryExtension.size()),
                    &version) &&
        version > 0) {
      versions.push_back(version);
    }
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

Result<PolicyStore::Recorded> PolicyStore::RecordVersion(const std::string& project_name,
                                                         const std::string& text) {
  const std::string history = HistoryFolder(project_name);
  MP_RETURN_IF_ERROR(file_system_->CreateDirectories(history, kFolderMode));
  MP_ASSIGN_OR_RETURN(const std::vector<uint32_t> versions, Versions(history));
  const uint32_t latest = versions.empty() ? 0 : versions.back();
  // The same text as the latest version is that version, not a new one.
  if (latest > 0) {
    auto previous = file_system_->ReadFile(history + "/" + VersionFileName(latest));
    if (previous.ok() && *previous == text) {
      return Recorded{latest, false};
    }
  }
  const uint32_t version = latest + 1;
  // The time first: a failure in between leaves a time for a version that
  // does not exist (ignored, and replaced by the next attempt) rather than a
  // version whose time is lost.
  const std::string index_path = history + "/" + std::string(kIndexName);
  MP_ASSIGN_OR_RETURN(RecordedTimes recorded, ReadIndex(*file_system_, index_path));
  recorded[version] = clock_->NowMs();
  MP_RETURN_IF_ERROR(
      file_system_->WriteFileAtomically(index_path, FormatIndex(recorded), kHistoryFileMode));
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(history + "/" + VersionFileName(version),
                                                       text, kHistoryFileMode));
  return Recorded{version, true};
}

Result<std::vector<std::string>> PolicyStore::Load(const std::vector<std::string>& project_names) {
  std::lock_guard write_lock(write_mutex_);
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
    MP_ASSIGN_OR_RETURN(const Recorded recorded, RecordVersion(name, text));
    loaded[name] = VersionedPolicy{std::make_shared<const PolicySpec>(std::move(spec).value()),
                                   recorded.version, std::move(text)};
  }
  std::unique_lock lock(mutex_);
  policies_ = std::move(loaded);
  return refused;
}

Result<PolicyPut> PolicyStore::Put(const std::string& project_name, std::string_view text) {
  MP_ASSIGN_OR_RETURN(PolicySpec spec, ParsePolicy(text));
  std::string owned(text);
  std::lock_guard write_lock(write_mutex_);
  // The history before the file: what a failure leaves behind is a version
  // that was never in force, not a file in force on the next SIGHUP that the
  // caller was told had failed.
  MP_ASSIGN_OR_RETURN(const Recorded recorded, RecordVersion(project_name, owned));
  MP_RETURN_IF_ERROR(file_system_->WriteFileAtomically(folder_ + "/" + project_name + ".toml",
                                                       owned, kPolicyFileMode));
  PolicyPut put;
  put.policy = VersionedPolicy{std::make_shared<const PolicySpec>(std::move(spec)),
                               recorded.version, std::move(owned)};
  put.new_version = recorded.new_version;
  std::unique_lock lock(mutex_);
  policies_[project_name] = put.policy;
  return put;
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

uint32_t PolicyStore::VersionOf(const std::string& project_name) const {
  std::shared_lock lock(mutex_);
  const auto found = policies_.find(project_name);
  return found == policies_.end() ? 0 : found->second.version;
}

Result<std::vector<PolicyVersionInfo>> PolicyStore::History(const std::string& project_name) const {
  const std::string history = HistoryFolder(project_name);
  MP_ASSIGN_OR_RETURN(std::vector<uint32_t> versions, Versions(history));
  if (versions.size() > kPolicyVersionsListedMax) {
    versions.erase(versions.begin(), versions.end() - kPolicyVersionsListedMax);
  }
  MP_ASSIGN_OR_RETURN(const RecordedTimes recorded,
                      ReadIndex(*file_system_, history + "/" + std::string(kIndexName)));
  std::vector<PolicyVersionInfo> infos;
  infos.reserve(versions.size());
  for (const uint32_t version : versions) {
    PolicyVersionInfo info;
    info.version = version;
    if (const auto found = recorded.find(version); found != recorded.end()) {
      info.recorded_ms = found->second;
    }
    MP_ASSIGN_OR_RETURN(info.bytes,
                        file_system_->FileSize(history + "/" + VersionFileName(version)));
    infos.push_back(info);
  }
  return infos;
}

Result<std::string> PolicyStore::VersionText(const std::string& project_name,
                                             uint32_t version) const {
  const std::string path = HistoryFolder(project_name) + "/" + VersionFileName(version);
  if (version == 0 || !file_system_->Exists(path)) {
    return Status::NotFound("policy version " + std::to_string(version) + " of project '" +
                            project_name + "' does not exist");
  }
  return file_system_->ReadFile(path);
}

}  // namespace minpanel::privacy
