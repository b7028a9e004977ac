// The dashboard's static files (web/, built into web/dist), embedded into
// the binary at build time (cmake/EmbedWebAssets.cmake) and served at `/`.
// The files are a fixed table looked up by exact path: a request path is
// never joined to a folder or resolved, so no path can reach a file outside
// the table (no traversal, whatever its dots, slashes or escapes). Internal to
// the server module; everything here is immutable and thread-safe.
#pragma once

#include <span>
#include <string_view>

#include "server/routes.h"

namespace minpanel::server {

struct StaticFile {
  std::string_view path;  // "/index.html", "/assets/app.js"
  std::string_view body;
  std::string_view etag;  // a strong validator, quoted: "\"<sha256 hex>\""
};

// The files of web/dist compiled into this binary; empty when the dashboard
// was not built (web/README.md). Defined by the generated web_assets.cc.
std::span<const StaticFile> EmbeddedWebFiles();

// The dashboard's Content-Security-Policy: same origin only, no inline
// script or style, no third-party origin of any kind, no framing.
inline constexpr std::string_view kDashboardContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'";

// The longest request path looked up (longer paths are 404 at once).
inline constexpr size_t kStaticPathBytesMax = 255;

// Whether the target's path belongs to the dashboard: `/`, `/index.html` or
// anything under `/assets/`.
bool IsStaticPath(std::string_view path);

// The Content-Type of a file by its extension (application/octet-stream
// when unknown).
std::string_view ContentTypeOf(std::string_view path);

// The file a target names, or nullptr: `/` is `/index.html`; the query
// string is ignored; every other path must equal a file's path exactly.
const StaticFile* FindStaticFile(std::string_view target, std::span<const StaticFile> files);

// GET of a dashboard path: the file with its content type, ETag,
// Cache-Control: no-cache (so a new binary's files are picked up at once),
// the CSP and nosniff headers; 304 when If-None-Match holds its ETag; 404
// for a path not in the table (naming why when the dashboard is not built);
// 405 for any other method.
Response HandleStatic(const Request& request, std::span<const StaticFile> files);

}  // namespace minpanel::server
