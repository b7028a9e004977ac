// Finding Mixpanel's `data` payload in a request and undoing its base64.
#include <sodium.h>

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

// Decodes standard or URL-safe base64, with or without padding. Spaces are
// '+' signs that a form decoder turned into spaces: mixpanel-node posts
// `data=<base64>` without URL-encoding it.
Result<std::string> DecodeBase64(std::string encoded) {
  std::replace(encoded.begin(), encoded.end(), ' ', '+');
  std::string_view text = encoded;
  while (!text.empty() && (text.back() == '=' || text.back() == '\n' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  const bool url_safe = text.find_first_of("-_") != std::string_view::npos;
  if (url_safe && text.find_first_of("+/") != std::string_view::npos) {
    return NotBase64OrJson();
  }
  // Called once per process in effect: sodium_init is idempotent and
  // thread-safe, and the static makes later calls free.
  static const bool sodium_ready = sodium_init() >= 0;
  if (!sodium_ready) {
    return Status::Unavailable("data: libsodium failed to initialise");
  }
  std::string decoded(text.size() / 4 * 3 + 3, '\0');
  size_t decoded_bytes = 0;
  const int variant = url_safe ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
                               : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        text.data(), text.size(), "\r\n", &decoded_bytes, nullptr, variant) != 0) {
    return NotBase64OrJson();
  }
  decoded.resize(decoded_bytes);
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

Result<std::string> ExtractMixpanelPayload(std::string_view query, std::string_view body) {
  MP_ASSIGN_OR_RETURN(std::optional<std::string> query_data,
                      internal::FindFormField(query, kDataField));
  if (query_data.has_value()) {
    return DecodeDataValue(std::move(*query_data));
  }
  if (StartsLikeJson(body)) {
    return std::string(body);
  }
  // sendBeacon posts the form as text/plain, so the body is read as a form
  // whatever its Content-Type.
  MP_ASSIGN_OR_RETURN(std::optional<std::string> body_data,
                      internal::FindFormField(body, kDataField));
  if (body_data.has_value()) {
    return DecodeDataValue(std::move(*body_data));
  }
  return Status::InvalidArgument(
      "data: missing (expected in the query, a form body or a raw JSON body)");
}

}  // namespace minpanel::ingest
