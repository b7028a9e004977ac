// Email normalisation: ICU's NFKC_Casefold (Unicode normalisation form KC
// and full case folding in one step, UTS #46's mapping without the IDNA
// parts), then the canonical form used for the second-chance matches.
#include <simdjson.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include "incident/incident.h"

namespace minpanel::incident {
namespace {

bool IsAsciiSpace(char byte) { return byte == ' ' || byte == '\t' || byte == '\r' || byte == '\n'; }

bool IsAscii(std::string_view text) {
  for (const char byte : text) {
    if (static_cast<unsigned char>(byte) >= 0x80) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::string> NormalizeEmail(std::string_view email) {
  std::string folded;
  MP_RETURN_IF_ERROR(NormalizeEmailTo(email, &folded));
  return folded;
}

Status NormalizeEmailTo(std::string_view email, std::string* folded_out) {
  std::string& folded = *folded_out;
  while (!email.empty() && IsAsciiSpace(email.front())) {
    email.remove_prefix(1);
  }
  while (!email.empty() && IsAsciiSpace(email.back())) {
    email.remove_suffix(1);
  }
  if (email.starts_with("mailto:")) {
    email.remove_prefix(7);
  }
  if (IsAscii(email)) {
    // NFKC_Casefold of ASCII is its lower case; skip ICU on the common path.
    folded.assign(email);
    for (char& byte : folded) {
      if (byte >= 'A' && byte <= 'Z') {
        byte = static_cast<char>(byte - 'A' + 'a');
      }
    }
  } else {
    if (!simdjson::validate_utf8(email.data(), email.size())) {
      return Status::InvalidArgument("the email is not UTF-8");
    }
    UErrorCode error = U_ZERO_ERROR;
    const icu::Normalizer2* normalizer = icu::Normalizer2::getNFKCCasefoldInstance(error);
    if (U_FAILURE(error) || normalizer == nullptr) {
      return Status::Unavailable(std::string("ICU NFKC_Casefold: ") + u_errorName(error));
    }
    const icu::UnicodeString source = icu::UnicodeString::fromUTF8(
        icu::StringPiece(email.data(), static_cast<int32_t>(email.size())));
    const icu::UnicodeString normalized = normalizer->normalize(source, error);
    if (U_FAILURE(error)) {
      return Status::InvalidArgument(std::string("the email does not normalise: ") +
                                     u_errorName(error));
    }
    folded.clear();
    normalized.toUTF8String(folded);
  }
  const size_t at = folded.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == folded.size() ||
      folded.find('@', at + 1) != std::string::npos) {
    return Status::InvalidArgument("not one local part, '@' and a domain");
  }
  return Status::Ok();
}

CanonicalEmail CanonicalizeEmail(std::string_view normalized) {
  CanonicalEmail canonical;
  CanonicalizeEmailTo(normalized, &canonical);
  return canonical;
}

void CanonicalizeEmailTo(std::string_view normalized, CanonicalEmail* canonical) {
  canonical->plus_removed = false;
  canonical->gmail_dots_removed = false;
  std::string& address = canonical->address;
  const size_t at = normalized.rfind('@');
  if (at == std::string_view::npos) {
    address.assign(normalized);
    return;
  }
  std::string_view local = normalized.substr(0, at);
  std::string_view domain = normalized.substr(at + 1);
  const size_t plus = local.find('+');
  if (plus != std::string_view::npos && plus > 0) {
    local = local.substr(0, plus);
    canonical->plus_removed = true;
  }
  const bool gmail = domain == "gmail.com" || domain == "googlemail.com";
  address.clear();
  if (!gmail) {
    address.append(local);
  } else {
    for (const char byte : local) {
      if (byte == '.') {
        canonical->gmail_dots_removed = true;
        continue;
      }
      address.push_back(byte);
    }
    if (domain == "googlemail.com") {
      canonical->gmail_dots_removed = true;
      domain = "gmail.com";
    }
  }
  address.push_back('@');
  address.append(domain);
}

}  // namespace minpanel::incident
