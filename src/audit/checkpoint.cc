// Signed checkpoints of the audit log: an Ed25519 key kept outside the data
// folder signs the head that each anchor line names (docs/formats/audit.md,
// "Checkpoints").
#include <sodium.h>

#include "audit/audit.h"

namespace minpanel::audit {
namespace {

constexpr uint32_t kKeyFileMode = 0600;
constexpr std::string_view kCheckpointDomain = "minpanel-audit-checkpoint-v1\n";

template <size_t kBytes>
Result<std::array<uint8_t, kBytes>> FromHex(std::string_view hex, std::string_view what) {
  std::array<uint8_t, kBytes> bytes{};
  size_t written = 0;
  if (hex.size() != kBytes * 2 ||
      sodium_hex2bin(bytes.data(), bytes.size(), hex.data(), hex.size(), nullptr, &written,
                     nullptr) != 0 ||
      written != kBytes) {
    return Status::InvalidArgument(std::string(what) + ": expected " + std::to_string(kBytes * 2) +
                                   " hex digits");
  }
  return bytes;
}

template <size_t kBytes>
std::string ToHex(const std::array<uint8_t, kBytes>& bytes) {
  std::string hex(kBytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), bytes.data(), bytes.size());
  hex.pop_back();
  return hex;
}

std::string SignedText(std::string_view anchor_text) {
  return std::string(kCheckpointDomain) + std::string(anchor_text);
}

}  // namespace

std::string PublicKeyHex(const PublicKey& key) { return ToHex(key); }

Result<PublicKey> ParsePublicKey(std::string_view hex) {
  while (!hex.empty() && (hex.back() == '\n' || hex.back() == ' ')) {
    hex.remove_suffix(1);
  }
  return FromHex<kPublicKeyBytes>(hex, "audit public key");
}

Result<SigningKey> LoadSigningKey(FileSystem& file_system, const std::string& path, bool create) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  std::array<uint8_t, kSeedBytes> seed{};
  if (file_system.Exists(path)) {
    MP_ASSIGN_OR_RETURN(std::string text, file_system.ReadFile(path));
    while (!text.empty() && text.back() == '\n') {
      text.pop_back();
    }
    auto parsed = FromHex<kSeedBytes>(text, path);
    sodium_memzero(text.data(), text.size());
    if (!parsed.ok()) {
      return Status::Corruption(parsed.status().message());
    }
    seed = *parsed;
  } else if (create) {
    randombytes_buf(seed.data(), seed.size());
    std::string text = ToHex(seed) + "\n";
    const Status written = file_system.WriteFileAtomically(path, text, kKeyFileMode);
    sodium_memzero(text.data(), text.size());
    MP_RETURN_IF_ERROR(written);
  } else {
    return Status::NotFound("no audit signing key at " + path);
  }
  SigningKey key;
  crypto_sign_seed_keypair(key.public_key.data(), key.secret_key.data(), seed.data());
  sodium_memzero(seed.data(), seed.size());
  return key;
}

std::string SignAnchor(const SigningKey& key, std::string_view anchor_text) {
  const std::string text = SignedText(anchor_text);
  std::array<uint8_t, kSignatureBytes> signature{};
  crypto_sign_detached(signature.data(), nullptr, reinterpret_cast<const uint8_t*>(text.data()),
                       text.size(), key.secret_key.data());
  return ToHex(signature);
}

bool AnchorSignatureValid(const PublicKey& key, std::string_view anchor_text,
                          std::string_view signature_hex) {
  auto signature = FromHex<kSignatureBytes>(signature_hex, "signature");
  if (!signature.ok()) {
    return false;
  }
  const std::string text = SignedText(anchor_text);
  return crypto_sign_verify_detached(signature->data(),
                                     reinterpret_cast<const uint8_t*>(text.data()), text.size(),
                                     key.data()) == 0;
}

}  // namespace minpanel::audit
