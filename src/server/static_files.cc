#include "server/static_files.h"

#include <array>
#include <utility>

#include "server/http_util.h"

namespace minpanel::server {
namespace http = boost::beast::http;

namespace {

constexpr std::array<std::pair<std::string_view, std::string_view>, 12> kContentTypes = {{
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".webmanifest", "application/manifest+json"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
    {".webp", "image/webp"},
}};

void AddSecurityHeaders(Response* response) {
  response->set("Content-Security-Policy", kDashboardContentSecurityPolicy);
  response->set("X-Content-Type-Options", "nosniff");
  response->set("Referrer-Policy", "no-referrer");
  response->set("Cross-Origin-Opener-Policy", "same-origin");
  response->set("Cross-Origin-Resource-Policy", "same-origin");
}

// Whether an If-None-Match header lists `etag` (or is `*`).
bool MatchesEtag(std::string_view if_none_match, std::string_view etag) {
  while (!if_none_match.empty()) {
    const size_t comma = if_none_match.find(',');
    std::string_view candidate = if_none_match.substr(0, comma);
    while (!candidate.empty() && candidate.front() == ' ') {
      candidate.remove_prefix(1);
    }
    while (!candidate.empty() && candidate.back() == ' ') {
      candidate.remove_suffix(1);
    }
    if (candidate.starts_with("W/")) {
      candidate.remove_prefix(2);
    }
    if (candidate == "*" || candidate == etag) {
      return true;
    }
    if (comma == std::string_view::npos) {
      break;
    }
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool IsStaticPath(std::string_view path) {
  return path == "/" || path == "/index.html" || path.starts_with("/assets/");
}

std::string_view ContentTypeOf(std::string_view path) {
  for (const auto& [extension, content_type] : kContentTypes) {
    if (path.ends_with(extension)) {
      return content_type;
    }
  }
  return "application/octet-stream";
}

const StaticFile* FindStaticFile(std::string_view target, std::span<const StaticFile> files) {
  std::string_view path = TargetPath(target);
  if (path.size() > kStaticPathBytesMax) {
    return nullptr;
  }
  if (path == "/") {
    path = "/index.html";
  }
  for (const StaticFile& file : files) {
    if (file.path == path) {
      return &file;
    }
  }
  return nullptr;
}

Response HandleStatic(const Request& request, std::span<const StaticFile> files) {
  if (request.method() != http::verb::get) {
    Response response = ErrorResponse(
        request, Status::InvalidArgument("method: " + std::string(request.method_string()) +
                                         " is not allowed on the dashboard's files"));
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET");
    return response;
  }
  const StaticFile* file = FindStaticFile(request.target(), files);
  if (file == nullptr) {
    const std::string_view path = TargetPath(request.target());
    std::string message =
        files.empty()
            ? "the dashboard is not built into this binary: `make build` builds web/ first "
              "(web/README.md); the API is served as usual\n"
            : "no dashboard file " + std::string(path.substr(0, kStaticPathBytesMax)) + "\n";
    Response response = MakeResponse(request, 404, "text/plain; charset=utf-8", std::move(message));
    AddSecurityHeaders(&response);
    return response;
  }
  Response response{http::status::ok, request.version()};
  response.set(http::field::server, "minpanel");
  response.set(http::field::etag, file->etag);
  response.set(http::field::cache_control, "no-cache");
  AddSecurityHeaders(&response);
  response.keep_alive(request.keep_alive());
  if (MatchesEtag(request[http::field::if_none_match], file->etag)) {
    response.result(http::status::not_modified);
    response.prepare_payload();
    return response;
  }
  response.set(http::field::content_type, ContentTypeOf(file->path));
  response.body() = std::string(file->body);
  response.prepare_payload();
  return response;
}

}  // namespace minpanel::server
