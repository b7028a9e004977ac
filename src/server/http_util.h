// Small, pure helpers of the HTTP face: credentials, client addresses,
// secret masking. Internal to the server module; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.h"

namespace minpanel::server {

// "Basic base64(user:password)" → (user, password); nullopt otherwise.
std::optional<std::pair<std::string, std::string>> ParseBasicAuth(std::string_view header);

// Addresses and CIDR ranges whose forwarding headers are believed.
class TrustedProxies {
 public:
  // InvalidArgument names the entry that is not an address or a range.
  static Result<TrustedProxies> Parse(const std::vector<std::string>& entries);
  bool Contains(std::string_view address) const;

 private:
  std::vector<std::pair<std::vector<uint8_t>, int>> ranges_;  // address bytes, prefix bits
};

// The client's address: the peer, unless the peer is a trusted proxy, in
// which case the rightmost address of X-Forwarded-For (or Forwarded: for=)
// that is not itself a trusted proxy.
std::string ClientAddress(std::string_view peer, std::string_view x_forwarded_for,
                          std::string_view forwarded, const TrustedProxies& trusted);

// A request target's path, before any '?': "/track?ip=1" → "/track".
std::string_view TargetPath(std::string_view target);
// The same without a trailing slash (but "/" stays "/"): "/api/x/?a" → "/api/x".
std::string_view TargetPathNoSlash(std::string_view target);
// A request target's query string, after the first '?'; empty when none.
std::string_view TargetQuery(std::string_view target);

// Whether `name` may be used as a JSONP callback (an identifier path).
bool IsValidJsonpCallback(std::string_view name);

// The media type of a Content-Type header, lower-cased, without parameters
// or surrounding spaces: " Text/Plain; charset=utf-8" → "text/plain".
std::string MediaTypeOf(std::string_view content_type);

}  // namespace minpanel::server
