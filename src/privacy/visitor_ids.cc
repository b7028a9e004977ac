#include "privacy/visitor_ids.h"

#include <sodium.h>

#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

namespace minpanel::privacy {
namespace {

constexpr std::string_view kSaltFileMagic("MPSALT\0\0", 8);
constexpr uint32_t kSaltFileFormatVersion = 1;
constexpr size_t kSaltFileBytes = 8 + 4 + 4 + kVisitorSaltBytes;
constexpr uint32_t kSaltFolderMode = 0700;
constexpr uint32_t kSaltFileMode = 0600;
constexpr std::string_view kSaltFilePrefix = "salt-";
constexpr std::string_view kSaltFileExtension = ".salt";
// What FileSystem::WriteFileAtomically appends to its temporary file.
constexpr std::string_view kTemporarySuffix = ".tmp";
constexpr uint8_t kDomainVisitor = 'v';

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

// Days from 1970-01-01 of a proleptic Gregorian date, and back (H. Hinnant's
// days_from_civil and civil_from_days).
int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

void CivilFromDays(int64_t days, int64_t* year, int64_t* month, int64_t* day) {
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t day_of_era = days - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t month_index = (5 * day_of_year + 2) / 153;
  *day = day_of_year - (153 * month_index + 2) / 5 + 1;
  *month = month_index < 10 ? month_index + 3 : month_index - 9;
  *year = year_of_era + era * 400 + (*month <= 2 ? 1 : 0);
}

bool ParseNumber(std::string_view text, int64_t* value) {
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), *value);
  return parsed.ec == std::errc() && parsed.ptr == text.data() + text.size();
}

// The day of a salt file name "salt-YYYY-MM-DD.salt" (or its temporary
// file, when `temporary`), or nullopt for any other name.
std::optional<int64_t> DayOfName(std::string_view name, bool* temporary) {
  *temporary = name.ends_with(kTemporarySuffix);
  if (*temporary) {
    name.remove_suffix(kTemporarySuffix.size());
  }
  if (!name.starts_with(kSaltFilePrefix) || !name.ends_with(kSaltFileExtension)) {
    return std::nullopt;
  }
  name.remove_prefix(kSaltFilePrefix.size());
  name.remove_suffix(kSaltFileExtension.size());
  int64_t year = 0;
  int64_t month = 0;
  int64_t day = 0;
  if (name.size() != 10 || name[4] != '-' || name[7] != '-' ||
      !ParseNumber(name.substr(0, 4), &year) || !ParseNumber(name.substr(5, 2), &month) ||
      !ParseNumber(name.substr(8, 2), &day) || month < 1 || month > 12 || day < 1 || day > 31) {
    return std::nullopt;
  }
  const int64_t days = DaysFromCivil(year, month, day);
  if (DayName(days) != name) {
    return std::nullopt;  // 2026-02-30 and the like
  }
  return days;
}

Id128 Hash(const std::array<uint8_t, kVisitorSaltBytes>& salt, std::string_view site_domain,
           std::string_view client_ip, std::string_view user_agent) {
  std::array<uint8_t, 16> digest{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, salt.data(), salt.size(), digest.size());
  const uint8_t separator = 0;
  crypto_generichash_update(&state, &kDomainVisitor, 1);
  for (const std::string_view part : {site_domain, client_ip, user_agent}) {
    crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(part.data()), part.size());
    crypto_generichash_update(&state, &separator, 1);
  }
  crypto_generichash_final(&state, digest.data(), digest.size());
  sodium_memzero(&state, sizeof(state));
  return Id128::FromBytes(digest);
}

}  // namespace

int64_t DayOf(int64_t time_ms) {
  return time_ms >= 0 ? time_ms / kDayMs : (time_ms - kDayMs + 1) / kDayMs;
}

std::string DayName(int64_t day) {
  int64_t year = 0;
  int64_t month = 0;
  int64_t day_of_month = 0;
  CivilFromDays(day, &year, &month, &day_of_month);
  const auto two_digits = [](int64_t value) {
    return std::string(1, static_cast<char>('0' + value / 10)) +
           static_cast<char>('0' + value % 10);
  };
  std::string year_text = std::to_string(year);
  if (year_text.size() < 4) {
    year_text.insert(0, 4 - year_text.size(), '0');
  }
  return year_text + "-" + two_digits(month) + "-" + two_digits(day_of_month);
}

VisitorIds::VisitorIds(std::string folder, std::shared_ptr<FileSystem> file_system,
                       std::shared_ptr<Clock> clock)
    : folder_(std::move(folder)), file_system_(std::move(file_system)), clock_(std::move(clock)) {}

VisitorIds::~VisitorIds() { Forget(); }

Result<std::unique_ptr<VisitorIds>> VisitorIds::Open(std::string folder,
                                                     std::shared_ptr<FileSystem> file_system,
                                                     std::shared_ptr<Clock> clock) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kSaltFolderMode));
  std::unique_ptr<VisitorIds> ids(
      new VisitorIds(std::move(folder), std::move(file_system), std::move(clock)));
  // No salt is being written before Open returns: every temporary file is
  // what a crash left, and holds salt bytes.
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names,
                      ids->file_system_->ListDirectory(ids->folder_));
  bool removed = false;
  for (const std::string& name : names) {
    bool temporary = false;
    if (DayOfName(name, &temporary).has_value() && temporary) {
      MP_RETURN_IF_ERROR(ids->file_system_->Remove(ids->folder_ + "/" + name));
      removed = true;
    }
  }
  if (removed) {
    MP_RETURN_IF_ERROR(ids->file_system_->SyncDirectory(ids->folder_));
  }
  MP_RETURN_IF_ERROR(ids->DestroyExpired().status());
  return ids;
}

std::string VisitorIds::SaltPath(int64_t day) const {
  return folder_ + "/" + std::string(kSaltFilePrefix) + DayName(day) +
         std::string(kSaltFileExtension);
}

Result<VisitorIds::Salt> VisitorIds::Load(int64_t day) {
  const std::string path = SaltPath(day);
  MP_ASSIGN_OR_RETURN(std::string contents, file_system_->ReadFile(path));
  Salt salt{};
  Status status = Status::Ok();
  if (contents.size() != kSaltFileBytes || contents.compare(0, 8, kSaltFileMagic) != 0) {
    status = Status::Corruption("salt file " + path + ": wrong size or magic");
  } else if (GetU32(std::string_view(contents).substr(8, 4)) > kSaltFileFormatVersion) {
    status = Status::Corruption("salt file " + path + ": format version is newer than this binary");
  } else if (GetU32(std::string_view(contents).substr(12, 4)) != static_cast<uint32_t>(day)) {
    status = Status::Corruption("salt file " + path + ": holds the salt of another day");
  } else {
    std::memcpy(salt.data(), contents.data() + 16, kVisitorSaltBytes);
  }
  sodium_memzero(contents.data(), contents.size());
  if (!status.ok()) {
    return status;
  }
  return salt;
}

Result<const VisitorIds::Salt*> VisitorIds::SaltOf(int64_t day, bool create) {
  if (const auto cached = salts_.find(day); cached != salts_.end()) {
    return &cached->second;
  }
  const std::string path = SaltPath(day);
  Salt salt{};
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(salt, Load(day));
  } else if (!create) {
    return static_cast<const Salt*>(nullptr);
  } else {
    randombytes_buf(salt.data(), salt.size());
    std::string contents(kSaltFileMagic);
    PutU32(&contents, kSaltFileFormatVersion);
    PutU32(&contents, static_cast<uint32_t>(day));
    contents.append(reinterpret_cast<const char*>(salt.data()), salt.size());
    const Status written = file_system_->WriteFileAtomically(path, contents, kSaltFileMode);
    sodium_memzero(contents.data(), contents.size());
    if (!written.ok()) {
      sodium_memzero(salt.data(), salt.size());
      // A temporary file may hold the bytes: never leave it behind.
      (void)file_system_->Remove(path + std::string(kTemporarySuffix));
      return Status::IoError("salt file " + path + " not written: " + written.message());
    }
  }
  Salt& kept = salts_[day];
  kept = salt;
  sodium_memzero(salt.data(), salt.size());
  return &kept;
}

Result<size_t> VisitorIds::DestroyExpired() {
  std::lock_guard lock(mutex_);
  return DestroyExpiredLocked(clock_->NowMs());
}

Result<size_t> VisitorIds::DestroyExpiredLocked(int64_t now_ms) {
  // Day D's salt goes at the start of day D + 2.
  const int64_t oldest_kept_day = DayOf(now_ms) - 1;
  for (auto salt = salts_.begin(); salt != salts_.end() && salt->first < oldest_kept_day;) {
    sodium_memzero(salt->second.data(), salt->second.size());
    salt = salts_.erase(salt);
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(folder_));
  size_t removed = 0;
  for (const std::string& name : names) {
    bool temporary = false;
    const std::optional<int64_t> day = DayOfName(name, &temporary);
    if (day.has_value() && *day < oldest_kept_day) {
      MP_RETURN_IF_ERROR(file_system_->Remove(folder_ + "/" + name));
      ++removed;
    }
  }
  if (removed > 0) {
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(folder_));
  }
  swept_day_ = DayOf(now_ms);
  return removed;
}

void VisitorIds::Forget() {
  std::lock_guard lock(mutex_);
  for (auto& [day, salt] : salts_) {
    sodium_memzero(salt.data(), salt.size());
  }
  salts_.clear();
}

bool VisitorIds::SeenRecently(const Id128& visitor) const {
  return current_window_.contains(visitor) || previous_window_.contains(visitor);
}

void VisitorIds::Remember(const Id128& visitor, int64_t now_ms) {
  if (now_ms - window_start_ms_ >= kVisitorSessionMs) {
    // A visitor is remembered for one to two windows: at least a session.
    previous_window_ = std::move(current_window_);
    current_window_ = std::unordered_set<Id128, Id128Hash>();
    window_start_ms_ = now_ms;
  }
  if (current_window_.size() < kRecentVisitorsMax) {
    current_window_.insert(visitor);
  }
}

Result<Id128> VisitorIds::VisitorId(std::string_view site_domain, std::string_view client_ip,
                                    std::string_view user_agent) {
  std::lock_guard lock(mutex_);
  const int64_t now_ms = clock_->NowMs();
  const int64_t today = DayOf(now_ms);
  if (today != swept_day_) {
    MP_RETURN_IF_ERROR(DestroyExpiredLocked(now_ms).status());
  }
  if (!has_window_ || now_ms < window_start_ms_ ||
      now_ms - window_start_ms_ >= 2 * kVisitorSessionMs) {
    // Both windows are stale (or the clock went back): nobody in them was
    // seen within a session.
    previous_window_.clear();
    current_window_.clear();
    window_start_ms_ = now_ms;
    has_window_ = true;
  }
  MP_ASSIGN_OR_RETURN(const Salt* current, SaltOf(today, true));
  Id128 visitor = Hash(*current, site_domain, client_ip, user_agent);
  MP_ASSIGN_OR_RETURN(const Salt* previous, SaltOf(today - 1, false));
  if (previous != nullptr) {
    const Id128 yesterday = Hash(*previous, site_domain, client_ip, user_agent);
    if (SeenRecently(yesterday)) {
      visitor = yesterday;  // a visit that crossed midnight
    }
  }
  Remember(visitor, now_ms);
  return visitor;
}

}  // namespace minpanel::privacy
