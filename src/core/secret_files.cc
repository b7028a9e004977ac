#include "core/secret_files.h"

#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/time_units.h"

namespace minpanel {
namespace {

constexpr size_t kDayNameBytes = 10;  // YYYY-MM-DD
constexpr size_t kFormatVersionOffset = kSecretFileMagicBytes;
constexpr size_t kLabelOffset = kFormatVersionOffset + 4;
constexpr size_t kSecretOffset = kLabelOffset + 4;
static_assert(kSecretOffset + kSecretBytes == kSecretFileBytes);

void PutU32(std::string* out, uint32_t value) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    out->push_back(static_cast<char>((value >> (8 * byte_idx)) & 0xFF));
  }
}

uint32_t GetU32(std::string_view data) {
  uint32_t value = 0;
  for (int byte_idx = 3; byte_idx >= 0; --byte_idx) {
    value = (value << 8) | static_cast<uint8_t>(data[byte_idx]);
  }
  return value;
}

}  // namespace

void WipeBytes(void* bytes, size_t size) {
  // glibc's explicit_bzero: a memset the optimiser may not drop as dead.
  ::explicit_bzero(bytes, size);
}

Result<uint32_t> ReadSecretFile(FileSystem& file_system, const std::string& path,
                                const SecretFileFormat& format, Secret* secret) {
  MP_ASSIGN_OR_RETURN(std::string contents, file_system.ReadFile(path));
  const std::string_view bytes(contents);
  Status status = Status::Ok();
  uint32_t label = 0;
  if (bytes.size() != kSecretFileBytes || bytes.substr(0, kSecretFileMagicBytes) != format.magic) {
    status = Status::Corruption(std::string(format.kind) + " " + path + ": wrong size or magic");
  } else if (const uint32_t version = GetU32(bytes.substr(kFormatVersionOffset, 4));
             version > format.format_version) {
    status = Status::Corruption(std::string(format.kind) + " " + path + ": format version " +
                                std::to_string(version) + " is newer than this binary");
  } else {
    label = GetU32(bytes.substr(kLabelOffset, 4));
    std::memcpy(secret->data(), bytes.data() + kSecretOffset, kSecretBytes);
  }
  WipeBytes(contents.data(), contents.size());
  MP_RETURN_IF_ERROR(status);
  return label;
}

Status WriteSecretFile(FileSystem& file_system, const std::string& path,
                       const SecretFileFormat& format, uint32_t label, const Secret& secret) {
  std::string contents(format.magic);
  contents.reserve(kSecretFileBytes);
  PutU32(&contents, format.format_version);
  PutU32(&contents, label);
  contents.append(reinterpret_cast<const char*>(secret.data()), secret.size());
  const Status written = file_system.WriteFileAtomically(path, contents, kSecretFileMode);
  WipeBytes(contents.data(), contents.size());
  if (!written.ok()) {
    // The temporary file may hold the secret: never leave it behind.
    (void)file_system.Remove(path + std::string(kTemporaryFileSuffix));
  }
  return written;
}

int64_t UtcDayOf(int64_t time_ms) {
  return time_ms >= 0 ? time_ms / kDayMs : (time_ms - kDayMs + 1) / kDayMs;
}

std::string UtcDayName(int64_t day) {
  const std::chrono::year_month_day date{std::chrono::sys_days(std::chrono::days(day))};
  char text[16];
  std::snprintf(text, sizeof(text), "%04d-%02u-%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return text;
}

std::optional<int64_t> ParseUtcDayName(std::string_view name) {
  if (name.size() != kDayNameBytes || name[4] != '-' || name[7] != '-') {
    return std::nullopt;
  }
  int values[3] = {0, 0, 0};
  const std::string_view parts[3] = {name.substr(0, 4), name.substr(5, 2), name.substr(8, 2)};
  for (size_t part_idx = 0; part_idx < 3; ++part_idx) {
    for (const char c : parts[part_idx]) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      values[part_idx] = values[part_idx] * 10 + (c - '0');
    }
  }
  const std::chrono::year_month_day date{std::chrono::year(values[0]),
                                         std::chrono::month(static_cast<unsigned>(values[1])),
                                         std::chrono::day(static_cast<unsigned>(values[2]))};
  if (!date.ok()) {
    return std::nullopt;  // 2026-02-30 and the like
  }
  return std::chrono::sys_days(date).time_since_epoch().count();
}

DaySecretFiles::DaySecretFiles(std::string folder, std::shared_ptr<FileSystem> file_system,
                               SecretFileFormat format, Names names)
    : folder_(std::move(folder)),
      file_system_(std::move(file_system)),
      format_(format),
      names_(names) {}

DaySecretFiles::~DaySecretFiles() {
  Drop([](int64_t) { return true; });
}

std::string DaySecretFiles::PathOf(int64_t day) const {
  return folder_ + "/" + std::string(names_.prefix) + UtcDayName(day) +
         std::string(names_.extension);
}

Result<const Secret*> DaySecretFiles::Get(int64_t day, bool create,
                                          const std::function<void(Secret*)>& make) {
  if (const auto kept = secrets_.find(day); kept != secrets_.end()) {
    return &kept->second;
  }
  const std::string path = PathOf(day);
  Secret secret{};
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(const uint32_t label,
                        ReadSecretFile(*file_system_, path, format_, &secret));
    if (label != static_cast<uint32_t>(day)) {
      WipeBytes(secret.data(), secret.size());
      return Status::Corruption(std::string(format_.kind) + " " + path + ": holds the " +
                                std::string(names_.secret) + " of another day");
    }
  } else if (!create) {
    return static_cast<const Secret*>(nullptr);
  } else {
    make(&secret);
    const Status written =
        WriteSecretFile(*file_system_, path, format_, static_cast<uint32_t>(day), secret);
    if (!written.ok()) {
      WipeBytes(secret.data(), secret.size());
      return Status::IoError(std::string(format_.kind) + " " + path +
                             " not written: " + written.message());
    }
  }
  Secret& kept = secrets_[day];
  kept = secret;
  WipeBytes(secret.data(), secret.size());
  return &kept;
}

void DaySecretFiles::Drop(const std::function<bool(int64_t day)>& drop) {
  for (auto secret = secrets_.begin(); secret != secrets_.end();) {
    if (drop(secret->first)) {
      WipeBytes(secret->second.data(), secret->second.size());
      secret = secrets_.erase(secret);
    } else {
      ++secret;
    }
  }
}

Result<size_t> DaySecretFiles::RemoveFiles(
    const std::function<bool(int64_t day, bool temporary)>& remove) {
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(folder_));
  size_t removed = 0;
  for (const std::string& name : names) {
    bool temporary = false;
    const std::optional<int64_t> day = DayOfName(name, &temporary);
    if (day.has_value() && remove(*day, temporary)) {
      MP_RETURN_IF_ERROR(file_system_->Remove(folder_ + "/" + name));
      ++removed;
    }
  }
  if (removed > 0) {
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(folder_));
  }
  return removed;
}

std::optional<int64_t> DaySecretFiles::DayOfName(std::string_view name, bool* temporary) const {
  *temporary = name.ends_with(kTemporaryFileSuffix);
  if (*temporary) {
    name.remove_suffix(kTemporaryFileSuffix.size());
  }
  if (!name.starts_with(names_.prefix) || !name.ends_with(names_.extension)) {
    return std::nullopt;
  }
  name.remove_prefix(names_.prefix.size());
  name.remove_suffix(names_.extension.size());
  return ParseUtcDayName(name);
}

}  // namespace minpanel
