#include "server/path_prefix.h"

#include "server/http_util.h"

namespace minpanel::server {

std::optional<std::string> StripPathPrefix(std::string_view target,
                                           const std::vector<std::string>& prefixes) {
  const std::string_view path = TargetPath(target);
  size_t matched_bytes = 0;
  for (const std::string& prefix : prefixes) {
    const bool matches =
        path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
    if (matches && prefix.size() > matched_bytes) {
      matched_bytes = prefix.size();
    }
  }
  if (matched_bytes == 0) {
    return std::nullopt;
  }
  std::string stripped;
  stripped.reserve(target.size() - matched_bytes + 1);
  if (path.size() == matched_bytes) {
    stripped.push_back('/');
  }
  stripped.append(target.substr(matched_bytes));
  return stripped;
}

}  // namespace minpanel::server
