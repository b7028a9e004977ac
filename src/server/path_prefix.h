// Configurable path prefixes (service::Config::path_prefixes): the one step
// that turns /mp/track into /track before routing, so that minpanel can sit
// behind a first-party proxy path. Internal to the server module; pure and
// thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace minpanel::server {

// The request target without the longest of `prefixes` that its path starts
// with — the whole path ("/mp" → "/"), or a segment-aligned start ("/mp/track"
// → "/track"; "/mpx/track" keeps its path) — and with its query string
// unchanged. nullopt when no prefix matches. Prefixes are as
// service::ValidateConfig checks them: '/' first, no trailing '/'.
std::optional<std::string> StripPathPrefix(std::string_view target,
                                           const std::vector<std::string>& prefixes);

}  // namespace minpanel::server
