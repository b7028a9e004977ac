// The client address of an audit record, sealed under a key of its UTC day
// kept in the key folder, so that destroying old day keys gives addresses a
// retention of their own in an append-only chain (docs/formats/audit.md,
// "Client addresses").
#include <sodium.h>

#include <cstring>
#include <optional>

#include "audit/audit.h"

namespace minpanel::audit {
namespace {

constexpr SecretFileFormat kKeyFileFormat{
    .magic = std::string_view("MPADDRK\0", 8), .format_version = 1, .kind = "address key file"};
constexpr DaySecretFiles::Names kKeyFileNames{
    .prefix = "address-", .extension = ".key", .secret = "key"};
// The associated data of every sealed address: the format and the day, so
// that a sealed address names the one key that opens it.
constexpr std::string_view kSealDomain = "minpanel-audit-address-v1 ";
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kDayNameBytes = 10;  // YYYY-MM-DD
constexpr int kBase64Variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;

static_assert(kAddressKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

std::string AssociatedData(std::string_view day_name) {
  return std::string(kSealDomain) + std::string(day_name);
}

}  // namespace

AddressKeys::AddressKeys(std::string folder, std::shared_ptr<FileSystem> file_system,
                         std::shared_ptr<Clock> clock, uint32_t retention_days)
    : keys_(std::move(folder), std::move(file_system), kKeyFileFormat, kKeyFileNames),
      clock_(std::move(clock)),
      retention_days_(retention_days) {
  randombytes_buf(nonce_prefix_.data(), nonce_prefix_.size());
}

AddressKeys::~AddressKeys() = default;

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
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kSecretFolderMode));
  std::unique_ptr<AddressKeys> keys(
      new AddressKeys(std::move(folder), std::move(file_system), std::move(clock), retention_days));
  MP_RETURN_IF_ERROR(keys->DestroyExpired().status());
  return keys;
}

std::string AddressKeys::KeyPath(int64_t day) const { return keys_.PathOf(day); }

bool AddressKeys::ExpiredLocked(int64_t day, int64_t now_ms) const {
  // Day D's key is kept through day D + retention_days: every address stays
  // readable for at least retention_days days.
  return retention_days_ == 0 || day + int64_t{retention_days_} < UtcDayOf(now_ms);
}

Result<const Secret*> AddressKeys::KeyOfLocked(int64_t day, bool create) {
  return keys_.Get(day, create,
                   [](Secret* key) { crypto_aead_xchacha20poly1305_ietf_keygen(key->data()); });
}

Result<std::string> AddressKeys::Seal(std::string_view address, int64_t time_ms) {
  if (address.size() > kAddressBytesMax) {
    return Status::InvalidArgument("client address: over " + std::to_string(kAddressBytesMax) +
                                   " bytes (kAddressBytesMax)");
  }
  std::lock_guard lock(mutex_);
  const int64_t day = UtcDayOf(time_ms);
  if (ExpiredLocked(day, clock_->NowMs())) {
    return std::string();  // not kept at all (retention 0)
  }
  MP_ASSIGN_OR_RETURN(const Secret* key, KeyOfLocked(day, true));
  const std::string day_name = UtcDayName(day);
  const std::string associated = AssociatedData(day_name);
  std::string sealed(kNonceBytes + address.size() + kTagBytes, '\0');
  auto* bytes = reinterpret_cast<uint8_t*>(sealed.data());
  // The nonce: this process's random 16 bytes and a count of its seals
  // (XChaCha20's 24-byte nonce leaves room for both), unique under the key
  // without a getrandom(2) per record.
  std::memcpy(bytes, nonce_prefix_.data(), nonce_prefix_.size());
  const uint64_t count = seals_++;
  for (size_t byte_idx = 0; byte_idx < sizeof(count); ++byte_idx) {
    bytes[nonce_prefix_.size() + byte_idx] = static_cast<uint8_t>(count >> (8 * byte_idx));
  }
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
  const std::optional<int64_t> day = ParseUtcDayName(day_name);
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
  MP_ASSIGN_OR_RETURN(const Secret* key, KeyOfLocked(*day, false));
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
  keys_.Drop([this, now_ms](int64_t day) { return ExpiredLocked(day, now_ms); });
  // A temporary file of a day still kept may be a key being written now
  // by another process (the command line while the server runs).
  return keys_.RemoveFiles(
      [this, now_ms](int64_t day, bool) { return ExpiredLocked(day, now_ms); });
}

}  // namespace minpanel::audit
