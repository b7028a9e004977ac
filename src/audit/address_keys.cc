// The client address of an audit record, sealed under a key of its UTC day
// kept in the key folder, so that destroying old day keys gives addresses a
// retention of their own in an append-only chain (docs/formats/audit.md,
// "Client addresses").
#include <sodium.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>

#include "audit/audit.h"

namespace minpanel::audit {
namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr std::string_view kKeyFileMagic("MPADDRK\0", 8);
constexpr uint32_t kKeyFileFormatVersion = 1;
constexpr size_t kKeyFileBytes = 8 + 4 + 4 + kAddressKeyBytes;
constexpr uint32_t kKeyFolderMode = 0700;
constexpr uint32_t kKeyFileMode = 0600;
constexpr std::string_view kKeyFilePrefix = "address-";
constexpr std::string_view kKeyFileExtension = ".key";
// What FileSystem::WriteFileAtomically appends to its temporary file.
constexpr std::string_view kTemporarySuffix = ".tmp";
// The associated data of every sealed address: the format and the day, so
// that a sealed address names the one key that opens it.
constexpr std::string_view kSealDomain = "minpanel-audit-address-v1 ";
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kDayNameBytes = 10;  // YYYY-MM-DD
constexpr int kBase64Variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;

static_assert(kAddressKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

int64_t DayOf(int64_t time_ms) {
  return time_ms >= 0 ? time_ms / kDayMs : (time_ms - kDayMs + 1) / kDayMs;
}

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

// The day (days since 1970-01-01) of "YYYY-MM-DD", or nullopt.
std::optional<int64_t> ParseDayName(std::string_view name) {
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

// The day of a key file name "address-YYYY-MM-DD.key" (or its temporary
// file, when `temporary`), or nullopt for any other name.
std::optional<int64_t> DayOfFileName(std::string_view name, bool* temporary) {
  *temporary = name.ends_with(kTemporarySuffix);
  if (*temporary) {
    name.remove_suffix(kTemporarySuffix.size());
  }
  if (!name.starts_with(kKeyFilePrefix) || !name.ends_with(kKeyFileExtension)) {
    return std::nullopt;
  }
  name.remove_prefix(kKeyFilePrefix.size());
  name.remove_suffix(kKeyFileExtension.size());
  return ParseDayName(name);
}

std::string AssociatedData(std::string_view day_name) {
  return std::string(kSealDomain) + std::string(day_name);
}

}  // namespace

std::string AddressDayName(int64_t day) {
  const std::chrono::year_month_day date{std::chrono::sys_days(std::chrono::days(day))};
  char text[16];
  std::snprintf(text, sizeof(text), "%04d-%02u-%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return text;
}

AddressKeys::AddressKeys(std::string folder, std::shared_ptr<FileSystem> file_system,
                         std::shared_ptr<Clock> clock, uint32_t retention_days)
    : folder_(std::move(folder)),
      file_system_(std::move(file_system)),
      clock_(std::move(clock)),
      retention_days_(retention_days) {}

AddressKeys::~AddressKeys() {
  std::lock_guard lock(mutex_);
  for (auto& [day, key] : keys_) {
    sodium_memzero(key.data(), key.size());
  }
}

Result<std::unique_ptr<AddressKeys>> AddressKeys::Open(std::string folder,
                                                       std::shared_ptr<FileSystem> file_system,
                                                       std::shared_ptr<Clock> clock,
                                                       uint32_t retention_days) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  if (retention_days > kAuditRetentionDaysMax) {
    return Status::InvalidArgument("audit_address_retention_days: at most " +
                                   std::to_string(kAuditRetentionDaysMax) +
                                   " (kAuditRetentionDaysMax)");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kKeyFolderMode));
  std::unique_ptr<AddressKeys> keys(
      new AddressKeys(std::move(folder), std::move(file_system), std::move(clock), retention_days));
  MP_RETURN_IF_ERROR(keys->DestroyExpired().status());
  return keys;
}

std::string AddressKeys::KeyPath(int64_t day) const {
  return folder_ + "/" + std::string(kKeyFilePrefix) + AddressDayName(day) +
         std::string(kKeyFileExtension);
}

bool AddressKeys::ExpiredLocked(int64_t day, int64_t now_ms) const {
  // Day D's key is kept through day D + retention_days: every address stays
  // readable for at least retention_days days.
  return retention_days_ == 0 || day + int64_t{retention_days_} < DayOf(now_ms);
}

Result<const AddressKeys::Key*> AddressKeys::KeyOfLocked(int64_t day, bool create) {
  if (const auto cached = keys_.find(day); cached != keys_.end()) {
    return &cached->second;
  }
  const std::string path = KeyPath(day);
  Key key{};
  if (file_system_->Exists(path)) {
    MP_ASSIGN_OR_RETURN(std::string contents, file_system_->ReadFile(path));
    Status status = Status::Ok();
    if (contents.size() != kKeyFileBytes || contents.compare(0, 8, kKeyFileMagic) != 0) {
      status = Status::Corruption("address key file " + path + ": wrong size or magic");
    } else if (GetU32(std::string_view(contents).substr(8, 4)) > kKeyFileFormatVersion) {
      status = Status::Corruption("address key file " + path +
                                  ": format version is newer than this binary");
    } else if (GetU32(std::string_view(contents).substr(12, 4)) != static_cast<uint32_t>(day)) {
      status = Status::Corruption("address key file " + path + ": holds the key of another day");
    } else {
      std::memcpy(key.data(), contents.data() + 16, kAddressKeyBytes);
    }
    sodium_memzero(contents.data(), contents.size());
    MP_RETURN_IF_ERROR(status);
  } else if (!create) {
    return static_cast<const Key*>(nullptr);
  } else {
    crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
    std::string contents(kKeyFileMagic);
    PutU32(&contents, kKeyFileFormatVersion);
    PutU32(&contents, static_cast<uint32_t>(day));
    contents.append(reinterpret_cast<const char*>(key.data()), key.size());
    const Status written = file_system_->WriteFileAtomically(path, contents, kKeyFileMode);
    sodium_memzero(contents.data(), contents.size());
    if (!written.ok()) {
      sodium_memzero(key.data(), key.size());
      // A temporary file may hold the key: never leave it behind.
      (void)file_system_->Remove(path + std::string(kTemporarySuffix));
      return Status::IoError("address key file " + path + " not written: " + written.message());
    }
  }
  Key& kept = keys_[day];
  kept = key;
  sodium_memzero(key.data(), key.size());
  return &kept;
}

Result<std::string> AddressKeys::Seal(std::string_view address, int64_t time_ms) {
  if (address.size() > kAddressBytesMax) {
    return Status::InvalidArgument("client address: over " + std::to_string(kAddressBytesMax) +
                                   " bytes (kAddressBytesMax)");
  }
  std::lock_guard lock(mutex_);
  const int64_t day = DayOf(time_ms);
  if (ExpiredLocked(day, clock_->NowMs())) {
    return std::string();  // not kept at all (retention 0)
  }
  MP_ASSIGN_OR_RETURN(const Key* key, KeyOfLocked(day, true));
  const std::string day_name = AddressDayName(day);
  const std::string associated = AssociatedData(day_name);
  std::string sealed(kNonceBytes + address.size() + kTagBytes, '\0');
  auto* bytes = reinterpret_cast<uint8_t*>(sealed.data());
  randombytes_buf(bytes, kNonceBytes);
  unsigned long long sealed_bytes = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      bytes + kNonceBytes, &sealed_bytes, reinterpret_cast<const uint8_t*>(address.data()),
      address.size(), reinterpret_cast<const uint8_t*>(associated.data()), associated.size(),
      nullptr, bytes, key->data());
  std::string text(sodium_base64_ENCODED_LEN(sealed.size(), kBase64Variant), '\0');
  sodium_bin2base64(text.data(), text.size(), bytes, sealed.size(), kBase64Variant);
  text.resize(std::strlen(text.c_str()));
  return day_name + ":" + text;
}

Result<std::optional<std::string>> AddressKeys::Reveal(std::string_view sealed) {
  const auto corrupt = [] {
    return Status::Corruption("audit record: 'address' is not a sealed client address");
  };
  if (sealed.size() < kDayNameBytes + 1 || sealed[kDayNameBytes] != ':' ||
      sealed.size() > kDayNameBytes + 1 +
                          sodium_base64_ENCODED_LEN(kNonceBytes + kAddressBytesMax + kTagBytes,
                                                    kBase64Variant)) {
    return corrupt();
  }
  const std::string_view day_name = sealed.substr(0, kDayNameBytes);
  const std::optional<int64_t> day = ParseDayName(day_name);
  if (!day.has_value()) {
    return corrupt();
  }
  const std::string_view text = sealed.substr(kDayNameBytes + 1);
  std::string bytes(text.size(), '\0');
  size_t decoded = 0;
  if (sodium_base642bin(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size(), text.data(),
                        text.size(), nullptr, &decoded, nullptr, kBase64Variant) != 0 ||
      decoded < kNonceBytes + kTagBytes) {
    return corrupt();
  }
  std::lock_guard lock(mutex_);
  if (ExpiredLocked(*day, clock_->NowMs())) {
    return std::optional<std::string>();
  }
  MP_ASSIGN_OR_RETURN(const Key* key, KeyOfLocked(*day, false));
  if (key == nullptr) {
    return std::optional<std::string>();  // destroyed (or made on another host)
  }
  const std::string associated = AssociatedData(day_name);
  const auto* sealed_bytes = reinterpret_cast<const uint8_t*>(bytes.data());
  std::string address(decoded - kNonceBytes - kTagBytes, '\0');
  unsigned long long address_bytes = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<uint8_t*>(address.data()), &address_bytes, nullptr,
          sealed_bytes + kNonceBytes, decoded - kNonceBytes,
          reinterpret_cast<const uint8_t*>(associated.data()), associated.size(), sealed_bytes,
          key->data()) != 0) {
    return Status::Corruption("audit record: the sealed client address of " +
                              std::string(day_name) + " does not open under its day's key");
  }
  return std::optional<std::string>(std::move(address));
}

Status AddressKeys::RevealIn(AuditEntry* entry) {
  if (entry->address.empty()) {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(const std::optional<std::string> address, Reveal(entry->address));
  entry->address = address.has_value() ? *address : std::string(kAddressExpired);
  return Status::Ok();
}

Result<size_t> AddressKeys::DestroyExpired() {
  std::lock_guard lock(mutex_);
  const int64_t now_ms = clock_->NowMs();
  for (auto key = keys_.begin(); key != keys_.end();) {
    if (ExpiredLocked(key->first, now_ms)) {
      sodium_memzero(key->second.data(), key->second.size());
      key = keys_.erase(key);
    } else {
      ++key;
    }
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> names, file_system_->ListDirectory(folder_));
  size_t removed = 0;
  for (const std::string& name : names) {
    bool temporary = false;
    const std::optional<int64_t> day = DayOfFileName(name, &temporary);
    // A temporary file of a day still kept may be a key being written now
    // by another process (the command line while the server runs).
    if (day.has_value() && ExpiredLocked(*day, now_ms)) {
      MP_RETURN_IF_ERROR(file_system_->Remove(folder_ + "/" + name));
      ++removed;
    }
  }
  if (removed > 0) {
    MP_RETURN_IF_ERROR(file_system_->SyncDirectory(folder_));
  }
  return removed;
}

}  // namespace minpanel::audit
