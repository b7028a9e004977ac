// Finding Mixpanel's `data` payload in a request and undoing its base64.
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "ingest/ingest.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

constexpr std::string_view kDataField = "data";

bool StartsLikeJson(std::string_view text) {
  const std::string_view trimmed = internal::TrimAsciiWhitespace(text);
  return !trimmed.empty() && (trimmed.front() == '{' || trimmed.front() == '[');
}

Status NotBase64OrJson() {
  return Status::InvalidArgument("data: not valid base64 or JSON");
}

// Per byte: what it becomes on the standard alphabet (0: dropped), and
// which alphabet it belongs to (1 standard, 2 URL-safe, 0 either).
struct Base64Tables {
  std::array<char, 256> map{};
  std::array<uint8_t, 256> alphabet{};
};

constexpr Base64Tables MakeBase64Tables() {
  Base64Tables tables;
  for (int byte = 0; byte < 256; ++byte) {
    tables.map[byte] = static_cast<char>(byte);  // EVP_DecodeBlock refuses what is not base64
  }
  tables.map[' '] = '+';
  tables.map['-'] = '+';
  tables.map['_'] = '/';
  tables.map['\r'] = 0;
  tables.map['\n'] = 0;
  tables.map[0] = '!';  // a NUL is not base64, not a byte to drop
  tables.alphabet[' '] = 1;
  tables.alphabet['+'] = 1;
  tables.alphabet['/'] = 1;
  tables.alphabet['-'] = 2;
  tables.alphabet['_'] = 2;
  return tables;
}
constexpr Base64Tables kBase64Tables = MakeBase64Tables();

// Decodes standard or URL-safe base64, with or without padding, ignoring
// line breaks. Spaces are '+' signs that a form decoder turned into spaces:
// mixpanel-node posts `data=<base64>` without URL-encoding it. One pass
// maps everything onto the standard alphabet, then OpenSSL decodes (fast;
// libsodium's decoder is constant-time, made for secrets, and several
// times slower on the tens of kilobytes a batch carries).
Result<std::string> DecodeBase64(std::string encoded) {
  uint8_t alphabets = 0;
  size_t kept = 0;
  for (const char c : encoded) {
    const auto byte = static_cast<uint8_t>(c);
    alphabets |= kBase64Tables.alphabet[byte];
    const char mapped = kBase64Tables.map[byte];
    encoded[kept] = mapped;
    kept += mapped != 0 ? 1 : 0;
  }
  encoded.resize(kept);
  if (alphabets == 3) {  // standard and URL-safe characters mixed
    return NotBase64OrJson();
  }
  size_t padding = 0;
  while (!encoded.empty() && encoded.back() == '=' && padding < 2) {
    encoded.pop_back();
    ++padding;
  }
  // OpenSSL would read a '=' inside the text as zero bits; it may only pad.
  if (encoded.size() % 4 == 1 || encoded.find('=') != std::string::npos) {
    return NotBase64OrJson();
  }
  padding = (4 - encoded.size() % 4) % 4;
  encoded.append(padding, '=');
  std::string decoded(encoded.size() / 4 * 3, '\0');
  const int decoded_bytes =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                      reinterpret_cast<const unsigned char*>(encoded.data()),
                      static_cast<int>(encoded.size()));
  if (decoded_bytes < 0 || static_cast<size_t>(decoded_bytes) < padding) {
    return NotBase64OrJson();
  }
  // EVP_DecodeBlock counts the bytes the padding stands for.
  decoded.resize(static_cast<size_t>(decoded_bytes) - padding);
  if (!StartsLikeJson(decoded)) {
    return NotBase64OrJson();
  }
  return decoded;
}

// A `data` value is JSON when it starts like JSON ('{' and '[' are not in
// either base64 alphabet, so the test is exact), else base64.
Result<std::string> DecodeDataValue(std::string value) {
  if (StartsLikeJson(value)) {
    return value;
  }
  return DecodeBase64(std::move(value));
}

}  // namespace

Result<std::string_view> ExtractMixpanelPayload(std::string_view query, std::string_view body,
                                                std::string* storage) {
  MP_ASSIGN_OR_RETURN(std::optional<std::string> query_data,
                      internal::FindFormField(query, kDataField));
  if (query_data.has_value()) {
    MP_ASSIGN_OR_RETURN(*storage, DecodeDataValue(std::move(*query_data)));
    return std::string_view(*storage);
  }
  if (StartsLikeJson(body)) {
    return body;
  }
  // sendBeacon posts the form as text/plain, so the body is read as a form
  // whatever its Content-Type.
  MP_ASSIGN_OR_RETURN(std::optional<std::string> body_data,
                      internal::FindFormField(body, kDataField));
  if (body_data.has_value()) {
    MP_ASSIGN_OR_RETURN(*storage, DecodeDataValue(std::move(*body_data)));
    return std::string_view(*storage);
  }
  return Status::InvalidArgument(
      "data: missing (expected in the query, a form body or a raw JSON body)");
}

Result<std::string> ExtractMixpanelPayload(std::string_view query, std::string_view body) {
  std::string storage;
  MP_ASSIGN_OR_RETURN(const std::string_view payload,
                      ExtractMixpanelPayload(query, body, &storage));
  return payload.data() == storage.data() ? std::move(storage) : std::string(payload);
}

}  // namespace minpanel::ingest
