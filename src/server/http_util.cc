#include "server/http_util.h"

#include <sodium.h>

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include "core/text.h"

namespace minpanel::server {
namespace {

constexpr size_t kJsonpCallbackBytesMax = 128;
constexpr size_t kForwardedHopsMax = 32;

std::optional<std::vector<uint8_t>> AddressBytes(std::string_view text) {
  boost::system::error_code error;
  const auto address = boost::asio::ip::make_address(std::string(text), error);
  if (error) {
    return std::nullopt;
  }
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    return std::vector<uint8_t>(bytes.begin(), bytes.end());
  }
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    const auto bytes = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_bytes();
    return std::vector<uint8_t>(bytes.begin(), bytes.end());
  }
  const auto bytes = v6.to_bytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

bool PrefixMatches(const std::vector<uint8_t>& range, int bits, const std::vector<uint8_t>& bytes) {
  if (range.size() != bytes.size()) {
    return false;
  }
  for (size_t byte_idx = 0; bits > 0; ++byte_idx, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
    if ((range[byte_idx] & mask) != (bytes[byte_idx] & mask)) {
      return false;
    }
  }
  return true;
}

// One element of a Forwarded or X-Forwarded-For list, as an address:
// strips quotes, brackets and ports ("[2001:db8::1]:443", "192.0.2.1:80").
std::string_view BareAddress(std::string_view text) {
  text = TrimSpacesAndTabs(text);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    text = text.substr(1, text.size() - 2);
  }
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    return close == std::string_view::npos ? text : text.substr(1, close - 1);
  }
  if (std::count(text.begin(), text.end(), ':') == 1) {
    return text.substr(0, text.find(':'));
  }
  return text;
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (parts.size() < kForwardedHopsMax) {
    const size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) {
      break;
    }
    text.remove_prefix(at + 1);
  }
  return parts;
}

// The "for=" addresses of a Forwarded header, in order.
std::vector<std::string_view> ForwardedFor(std::string_view header) {
  std::vector<std::string_view> addresses;
  for (std::string_view element : Split(header, ',')) {
    for (std::string_view pair : Split(element, ';')) {
      pair = TrimSpacesAndTabs(pair);
      if (pair.size() > 4 && (pair.substr(0, 4) == "for=" || pair.substr(0, 4) == "For=")) {
        addresses.push_back(BareAddress(pair.substr(4)));
      }
    }
  }
  return addresses;
}

}  // namespace

std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header) {
  header = TrimSpacesAndTabs(header);
  if (header.size() < 6 || (header.substr(0, 6) != "Basic " && header.substr(0, 6) != "basic ")) {
    return std::nullopt;
  }
  const std::string_view encoded = TrimSpacesAndTabs(header.substr(6));
  std::string decoded(encoded.size(), '\0');
  size_t decoded_bytes = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        encoded.data(), encoded.size(), nullptr, &decoded_bytes, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0 &&
      sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                        encoded.data(), encoded.size(), nullptr, &decoded_bytes, nullptr,
                        sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0) {
    return std::nullopt;
  }
  decoded.resize(decoded_bytes);
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) {
    return std::make_pair(decoded, std::string());
  }
  return std::make_pair(decoded.substr(0, colon), decoded.substr(colon + 1));
}

Result<TrustedProxies> TrustedProxies::Parse(const std::vector<std::string>& entries) {
  TrustedProxies proxies;
  for (const std::string& entry : entries) {
    const size_t slash = entry.find('/');
    const auto bytes = AddressBytes(std::string_view(entry).substr(0, slash));
    int bits = bytes.has_value() ? static_cast<int>(bytes->size() * 8) : 0;
    bool valid = bytes.has_value();
    if (valid && slash != std::string::npos) {
      const char* begin = entry.data() + slash + 1;
      const char* end = entry.data() + entry.size();
      int prefix = -1;
      valid = std::from_chars(begin, end, prefix).ptr == end && prefix >= 0 && prefix <= bits;
      bits = prefix;
    }
    if (!valid) {
      return Status::InvalidArgument("config: trusted_proxies entry '" + entry +
                                     "' is not an IP address or CIDR range");
    }
    proxies.ranges_.emplace_back(*bytes, bits);
  }
  return proxies;
}

bool TrustedProxies::Contains(std::string_view address) const {
  const auto bytes = AddressBytes(address);
  if (!bytes.has_value()) {
    return false;
  }
  return std::any_of(ranges_.begin(), ranges_.end(), [&](const auto& range) {
    return PrefixMatches(range.first, range.second, *bytes);
  });
}

std::string ClientAddress(std::string_view peer, std::string_view x_forwarded_for,
                          std::string_view forwarded, const TrustedProxies& trusted) {
  if (!trusted.Contains(peer)) {
    return std::string(peer);
  }
  std::vector<std::string_view> hops;
  if (!forwarded.empty()) {
    hops = ForwardedFor(forwarded);
  } else if (!x_forwarded_for.empty()) {
    for (std::string_view hop : Split(x_forwarded_for, ',')) {
      hops.push_back(BareAddress(hop));
    }
  }
  // Walk from the nearest hop outwards; the first untrusted one is the client.
  for (auto hop = hops.rbegin(); hop != hops.rend(); ++hop) {
    if (!AddressBytes(*hop).has_value()) {
      break;  // an unparsable hop ends what can be believed
    }
    if (!trusted.Contains(*hop)) {
      return std::string(*hop);
    }
  }
  return std::string(peer);
}

bool IsValidJsonpCallback(std::string_view name) {
  if (name.empty() || name.size() > kJsonpCallbackBytesMax) {
    return false;
  }
  const auto is_start = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
  };
  if (!is_start(name.front())) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return is_start(c) || (c >= '0' && c <= '9') || c == '.';
  });
}

std::string MediaTypeOf(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) {
    media.remove_prefix(1);
  }
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) {
    media.remove_suffix(1);
  }
  std::string lowered(media);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lowered;
}

std::string_view TargetPath(std::string_view target) { return target.substr(0, target.find('?')); }

std::string_view TargetPathNoSlash(std::string_view target) {
  std::string_view path = TargetPath(target);
  if (path.size() > 1 && path.back() == '/') {
    path.remove_suffix(1);
  }
  return path;
}

std::string_view TargetQuery(std::string_view target) {
  const size_t question = target.find('?');
  return question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
}

}  // namespace minpanel::server
