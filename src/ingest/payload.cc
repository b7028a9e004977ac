// Finding Mixpanel's `data` payload in a request and undoing its base64.
#include <openssl/evp.h>

#include <algorithm>

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

// Decodes standard or URL-safe base64, with or without padding, ignoring
// line breaks. Spaces are '+' signs that a form decoder turned into spaces:
// mixpanel-node posts `data=<base64>` without URL-encoding it. One pass
// maps everything onto the standard alphabet, then OpenSSL decodes (fast;
// libsodium's decoder is constant-time, made for secrets, and several
// times slower on the tens of kilobytes a batch carries).
Result<std::string> DecodeBase64(std::string encoded) {
  bool standard = false;
  bool url_safe = false;
  size_t kept = 0;
  for (const char c : encoded) {
    char mapped = c;
    if (c == ' ' || c == '+' || c == '/') {
      standard = true;
      mapped = c == ' ' ? '+' : c;
    } else if (c == '-' || c == '_') {
      url_safe = true;
      mapped = c == '-' ? '+' : '/';
    } else if (c == '\r' || c == '\n') {
      continue;
    }
    encoded[kept++] = mapped;
  }
  encoded.resize(kept);
  if (standard && url_safe) {
    return NotBase64OrJson();
  }
  size_t padding = 0;
  while (!encoded.empty() && encoded.back() == '=' && padding < 2) {
    encoded.pop_back();
    ++padding;
  }
  if (encoded.size() % 4 == 1) {
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
