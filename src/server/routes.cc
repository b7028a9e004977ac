#include "server/routes.h"

#include <algorithm>
#include <charconv>
#include <functional>

#include "ingest/ingest.h"
#include "ingest/plausible_events.h"
#include "ingest/posthog_events.h"
#include "ingest/segment_events.h"
#include "query/query.h"
#include "server/admin_routes.h"
#include "server/dashboard_routes.h"
#include "server/erasure_routes.h"
#include "server/http_util.h"
#include "server/static_files.h"

namespace minpanel::server {
namespace http = boost::beast::http;

namespace {

// A transparent 1x1 GIF, Mixpanel's img=1 answer.
constexpr unsigned char kPixelGif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

constexpr std::string_view kJson = "application/json";

struct ReplyStyle {
  bool verbose = false;
  bool strict = false;
  bool img = false;
  std::string callback;
};

using FormPairs = std::vector<std::pair<std::string, std::string>>;

bool Flag(const FormPairs& query, std::string_view name) {
  const auto value = ingest::FindFormValue(query, name);
  return value.has_value() && *value == "1";
}

std::string JsonError(std::string_view message) {
  std::string body = "{\"error\":";
  query::AppendJsonString(message, &body);
  body += "}";
  return body;
}

std::string FailedRecordsJson(const std::vector<ingest::RecordError>& errors) {
  std::string json = "[";
  for (size_t error_idx = 0; error_idx < errors.size(); ++error_idx) {
    const ingest::RecordError& error = errors[error_idx];
    json += error_idx == 0 ? "{\"index\":" : ",{\"index\":";
    json += std::to_string(error.index) + ",\"$insert_id\":";
    query::AppendJsonString(error.insert_id, &json);
    json += ",\"field\":";
    query::AppendJsonString(error.field, &json);
    json += ",\"message\":";
    query::AppendJsonString(error.message, &json);
    json += "}";
  }
  return json + "]";
}

// Mixpanel's strict reply (/import?strict=1): counts and failed records.
Response StrictReply(const Request& request, const Result<service::IngestOutcome>& result) {
  if (!result.ok()) {
    const unsigned status = HttpStatusFor(result.status());
    std::string body = "{\"code\":" + std::to_string(status) + ",\"error\":";
    query::AppendJsonString(result.status().message(), &body);
    body += ",\"num_records_imported\":0,\"status\":\"" +
            std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\"}";
    return MakeResponse(request, status, kJson, std::move(body));
  }
  const size_t imported = result->stored + result->duplicates;
  if (result->errors.empty()) {
    return MakeResponse(request, 200, kJson,
                        "{\"code\":200,\"num_records_imported\":" + std::to_string(imported) +
                            ",\"status\":\"OK\"}");
  }
  std::string body =
      "{\"code\":400,\"error\":\"some data points in the request failed validation\","
      "\"failed_records\":" +
      FailedRecordsJson(result->errors) +
      ",\"num_records_imported\":" + std::to_string(imported) + ",\"status\":\"Bad Request\"}";
  return MakeResponse(request, 400, kJson, std::move(body));
}

// Mixpanel's plain reply: 1/0, {"status":1,"error":null}, a pixel or JSONP.
Response PlainReply(const Request& request, const Result<service::IngestOutcome>& result,
                    const ReplyStyle& style) {
  const unsigned status = result.ok() ? 200 : HttpStatusFor(result.status());
  if (style.img) {
    return MakeResponse(request, status, "image/gif",
                        std::string(reinterpret_cast<const char*>(kPixelGif), sizeof(kPixelGif)));
  }
  std::string body;
  if (style.verbose) {
    body = result.ok() ? "{\"status\":1,\"error\":null}" : "{\"status\":0,\"error\":";
    if (!result.ok()) {
      query::AppendJsonString(result.status().message(), &body);
      body += "}";
    }
  } else {
    body = result.ok() ? "1" : "0";
  }
  if (!style.callback.empty()) {
    return MakeResponse(request, status, "application/javascript",
                        style.callback + "(" + body + ");");
  }
  return MakeResponse(request, status, style.verbose ? kJson : "text/plain", std::move(body));
}

// The request's body: the body itself, or decompressed into `storage` when
// its Content-Encoding (or its first bytes) say it is compressed, within the
// configured size and ratio limits.
Result<std::string_view> DecodedBody(const Request& request, const Settings& settings,
                                     std::string* storage) {
  MP_ASSIGN_OR_RETURN(const ingest::ContentEncoding encoding,
                      ingest::ParseContentEncoding(request[http::field::content_encoding]));
  const std::string_view body = request.body();
  if (!ingest::NeedsDecompression(body, encoding)) {
    return body;
  }
  const service::Limits& limits = settings.config.limits;
  MP_ASSIGN_OR_RETURN(*storage,
                      ingest::DecompressBody(body, encoding, limits.decompressed_bytes_max,
                                             limits.decompression_ratio_max));
  return std::string_view(*storage);
}

// The request's JSON payload, viewing the body itself when it is plain JSON
// (a 2000-event /import body is about 1 MB: no copies), else `storage`.
Result<std::string_view> RequestPayload(const Request& request, const Settings& settings,
                                        std::string* storage) {
  std::string decompressed;
  MP_ASSIGN_OR_RETURN(const std::string_view body, DecodedBody(request, settings, &decompressed));
  MP_ASSIGN_OR_RETURN(const std::string_view payload,
                      ingest::ExtractMixpanelPayload(TargetQuery(request.target()), body, storage));
  if (payload.data() == decompressed.data()) {
    // The payload is the decompressed body itself: keep it alive.
    *storage = std::move(decompressed);
    return std::string_view(*storage);
  }
  return payload;
}

ingest::MixpanelRoute MixpanelRouteOf(Route route) {
  switch (route) {
    case Route::kEngage:
      return ingest::MixpanelRoute::kEngage;
    case Route::kGroups:
      return ingest::MixpanelRoute::kGroups;
    case Route::kImport:
      return ingest::MixpanelRoute::kImport;
    default:
      return ingest::MixpanelRoute::kTrack;
  }
}

}  // namespace

Route ClassifyTarget(std::string_view target) {
  std::string_view path = TargetPath(target);
  if (path.size() > 1 && path.back() == '/') {
    path.remove_suffix(1);
  }
  if (path == "/track") return Route::kTrack;
  if (path == "/engage") return Route::kEngage;
  if (path == "/groups") return Route::kGroups;
  if (path == "/import") return Route::kImport;
  if (path == "/batch" || path == "/e" || path == "/i/v0/e" || path == "/capture") {
    return Route::kPostHogCapture;
  }
  if (path == "/i/v1/analytics/events") return Route::kPostHogCaptureV1;
  if (path == "/flags" || path == "/decide") return Route::kPostHogFlags;
  if (path.starts_with("/array/") && (path.ends_with("/config.js") || path.ends_with("/config"))) {
    return Route::kPostHogConfig;
  }
  if (path == "/v1/batch" || path == "/v1/import") return Route::kSegmentBatch;
  if (path.starts_with("/v1/") && ingest::ParseSegmentCall(path.substr(4)).has_value()) {
    return Route::kSegmentMessage;
  }
  // Unversioned Segment paths where no other vendor's route is: not /track
  // and /import (Mixpanel's) nor /batch (PostHog's; see ClassifyRequest).
  if (path == "/identify" || path == "/page" || path == "/screen" || path == "/group" ||
      path == "/alias") {
    return Route::kSegmentMessage;
  }
  if (path == "/api/event") return Route::kPlausibleEvent;
  if (path == "/api/2.0/export") return Route::kExport;
  if (path == "/api/policy/preview") return Route::kPolicyPreview;
  if (path == "/api/query") return Route::kQuery;
  if (path == "/api/keys") return Route::kKeys;
  if (path.starts_with("/api/keys/")) return Route::kKeyAction;
  if (path.starts_with("/api/projects/")) return Route::kProjectAction;
  if (path == "/api/audit") return Route::kAudit;
  if (const auto erasure = ClassifyErasurePath(path)) return *erasure;
  if (const auto dashboard = ClassifyDashboardPath(path)) return *dashboard;
  if (path == "/api/policy") return Route::kPolicy;
  if (path == "/api/policy/versions") return Route::kPolicyVersions;
  if (path.starts_with("/api/policy/versions/")) return Route::kPolicyVersion;
  if (path == "/healthz") return Route::kHealth;
  if (path == "/metrics") return Route::kMetrics;
  if (IsStaticPath(path)) return Route::kRoot;  // the dashboard (static_files.h)
  return Route::kUnknown;
}

Route ClassifyRequest(const Request& request) {
  const Route route = ClassifyTarget(request.target());
  if (route != Route::kPostHogCapture) {
    return route;
  }
  std::string_view path = TargetPath(request.target());
  if (path.back() == '/') {
    path.remove_suffix(1);
  }
  if (path != "/batch") {
    return route;
  }
  // posthog-node and posthog-js never send Basic auth; analytics-node
  // always does, and every Segment envelope has a writeKey.
  if (request[http::field::authorization].starts_with("Basic ") ||
      ingest::IsSegmentBatchBody(request.body())) {
    return Route::kSegmentBatch;
  }
  return route;
}

std::string_view RouteLabel(Route route) {
  switch (route) {
    case Route::kTrack:
      return "/track";
    case Route::kEngage:
      return "/engage";
    case Route::kGroups:
      return "/groups";
    case Route::kImport:
      return "/import";
    case Route::kPostHogCapture:
      return "/batch";  // and /e, /i/v0/e, /capture
    case Route::kPostHogCaptureV1:
      return "/i/v1/analytics/events";
    case Route::kPostHogFlags:
      return "/flags";  // and /decide
    case Route::kPostHogConfig:
      return "/array/:token/config";
    case Route::kSegmentMessage:
      return "/v1/track";  // and /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias
    case Route::kSegmentBatch:
      return "/v1/batch";  // and /v1/import, and /batch when Segment's
    case Route::kPlausibleEvent:
      return "/api/event";
    case Route::kExport:
      return "/api/2.0/export";
    case Route::kPolicyPreview:
      return "/api/policy/preview";
    case Route::kPolicy:
      return "/api/policy";
    case Route::kPolicyVersions:
      return "/api/policy/versions";
    case Route::kQuery:
      return "/api/query";
    case Route::kKeys:
      return "/api/keys";
    case Route::kKeyAction:
      return "/api/keys/:id/:action";
    case Route::kProjectAction:
      return "/api/projects/:id/:action";
    case Route::kAudit:
      return "/api/audit";
    case Route::kErase:
    case Route::kAccessRequest:
    case Route::kPropertyPurge:
    case Route::kGdprDeletions:
    case Route::kGdprRetrievals:
    case Route::kWhoCouldRead:
      return ErasureRouteLabel(route);
    case Route::kProjects:
      return "/api/projects";
    case Route::kNames:
      return "/api/names";
    case Route::kLiveEvents:
      return "/api/events/live";
    case Route::kAuditStatus:
      return "/api/audit/status";
    case Route::kAlerts:
      return "/api/alerts";
    case Route::kReports:
      return "/api/reports";
    case Route::kReport:
      return "/api/reports/:id";
    case Route::kDashboards:
      return "/api/dashboards";
    case Route::kDashboard:
      return "/api/dashboards/:id";
    case Route::kDataMap:
      return "/api/datamap";
    case Route::kPolicyVersion:
      // Never the path itself, as for every route (the access log prints this).
      return "/api/policy/versions/:version";
    case Route::kHealth:
      return "/healthz";
    case Route::kMetrics:
      return "/metrics";
    case Route::kRoot:
      return "/";
    case Route::kUnknown:
      return "other";
  }
  return "other";
}

bool IsIngestRoute(Route route) {
  return route == Route::kTrack || route == Route::kEngage || route == Route::kGroups ||
         route == Route::kPlausibleEvent ||
         route == Route::kImport || IsPostHogRoute(route) || IsSegmentRoute(route);
}

bool IsSegmentRoute(Route route) {
  return route == Route::kSegmentMessage || route == Route::kSegmentBatch;
}

bool IsPostHogRoute(Route route) {
  return route == Route::kPostHogCapture || route == Route::kPostHogCaptureV1 ||
         route == Route::kPostHogFlags || route == Route::kPostHogConfig;
}

bool IsPolicyAdminRoute(Route route) {
  return route == Route::kPolicy || route == Route::kPolicyVersions ||
         route == Route::kPolicyVersion;
}

bool AllowsMethod(Route route, http::verb method) {
  if (IsErasureRoute(route)) {
    return ErasureAllowsMethod(route, method);
  }
  if (IsDashboardRoute(route)) {
    return DashboardAllowsMethod(route, method);
  }
  if (method == http::verb::get) {
    // Mixpanel's GET /track carries data= in the query; Plausible's events
    // are POSTs only.
    return route != Route::kQuery && route != Route::kPlausibleEvent &&
           route != Route::kKeyAction && route != Route::kProjectAction;
  }
  if (method == http::verb::post) {
    return IsIngestRoute(route) || route == Route::kPolicyPreview || route == Route::kQuery ||
           route == Route::kExport ||  // a list of distinct_ids in a form body
           route == Route::kKeys || route == Route::kKeyAction || route == Route::kProjectAction;
  }
  if (method == http::verb::put) {
    return route == Route::kPolicy;
  }
  return false;
}

std::string_view AllowedMethods(Route route) {
  if (IsErasureRoute(route)) {
    return ErasureAllowedMethods(route);
  }
  if (IsDashboardRoute(route)) {
    return DashboardAllowedMethods(route);
  }
  if (route == Route::kPlausibleEvent) {
    return "POST, OPTIONS";
  }
  if (IsIngestRoute(route)) {
    return "GET, POST, OPTIONS";
  }
  if (route == Route::kPolicyPreview) {
    return "GET, POST";
  }
  if (route == Route::kQuery) {
    return "POST";
  }
  if (route == Route::kExport) {
    return "GET, POST";
  }
  if (route == Route::kPolicy) {
    return "GET, PUT";
  }
  if (route == Route::kKeys) {
    return "GET, POST";
  }
  if (route == Route::kKeyAction || route == Route::kProjectAction) {
    return "POST";
  }
  return "GET";
}

unsigned HttpStatusFor(const Status& status) {
  if (service::RetryAfterSeconds(status).has_value()) {
    return 429;  // a key's rate or export quota (service/access_keys_limits.h)
  }
  if (service::IsDiskQuotaExceeded(status)) {
    return 507;  // a project's disk quota (service/project_quotas.h)
  }
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kResourceExhausted:
      return 413;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kCorruption:
    case StatusCode::kIoError:
      return 500;
  }
  return 500;
}

Response MakeResponse(const Request& request, unsigned status, std::string_view content_type,
                      std::string body) {
  Response response{static_cast<http::status>(status), request.version()};
  response.set(http::field::server, "minpanel");
  response.set(http::field::content_type, content_type);
  response.keep_alive(request.keep_alive());
  response.body() = std::move(body);
  if (status == 503) {
    response.set(http::field::retry_after, "1");
  }
  response.prepare_payload();
  return response;
}

Response ErrorResponse(const Request& request, const Status& status) {
  Response response =
      MakeResponse(request, HttpStatusFor(status), kJson, JsonError(status.message()));
  if (const auto retry_after_s = service::RetryAfterSeconds(status)) {
    response.set(http::field::retry_after, std::to_string(*retry_after_s));
  }
  return response;
}

void AddIngestCors(const Request& request, Response* response) {
  const auto origin = request[http::field::origin];
  if (origin.empty()) {
    return;
  }
  response->set(http::field::access_control_allow_origin, origin);
  response->set(http::field::access_control_allow_credentials, "true");
  response->set(http::field::vary, "Origin");
}

Response PreflightResponse(const Request& request) {
  Response response = MakeResponse(request, 204, "text/plain", "");
  AddIngestCors(request, &response);
  response.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
  const auto asked = request[http::field::access_control_request_headers];
  if (!asked.empty()) {
    response.set(http::field::access_control_allow_headers, asked);
  }
  response.set(http::field::access_control_max_age, "86400");
  return response;
}

service::Credentials CredentialsOf(const Request& request, const FormPairs& query) {
  service::Credentials credentials;
  if (const auto basic = ParseBasicAuth(request[http::field::authorization])) {
    credentials.has_basic = true;
    credentials.basic_user = basic->first;
    credentials.basic_password = basic->second;
  }
  credentials.api_key = std::string(ingest::FindFormValue(query, "api_key").value_or(""));
  credentials.project_id = std::string(ingest::FindFormValue(query, "project_id").value_or(""));
  credentials.client_address = std::string(request[kClientAddressField]);
  return credentials;
}

namespace {

// The Global Privacy Control (`Sec-GPC: 1`) or Do Not Track (`DNT: 1`)
// header (Beast strips the whitespace around a field's value): the
// project's `consent` setting decides what is stored (docs/privacy.md,
// "Consent and signals").
bool ConsentSignal(const Request& request) {
  return request["Sec-GPC"] == "1" || request["DNT"] == "1";
}

}  // namespace

void HandleMixpanel(Route route, const Request& request, const std::string& client_ip,
                    const Settings& settings, service::Service& service, ReplyFunction reply) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    reply(ErrorResponse(request, query.status()));
    return;
  }
  ReplyStyle style;
  style.verbose = Flag(*query, "verbose");
  style.strict = Flag(*query, "strict");
  style.img = Flag(*query, "img");
  style.callback = std::string(ingest::FindFormValue(*query, "callback").value_or(""));
  if (!style.callback.empty() && !IsValidJsonpCallback(style.callback)) {
    reply(ErrorResponse(request, Status::InvalidArgument(
                                     "callback: must be a JavaScript identifier path of at "
                                     "most 128 characters")));
    return;
  }
  auto respond = [&request, style, reply = std::move(reply)](
                     const Result<service::IngestOutcome>& result) {
    Response response = style.strict ? StrictReply(request, result)
                                     : PlainReply(request, result, style);
    if (const auto retry_after_s =
            result.ok() ? std::nullopt : service::RetryAfterSeconds(result.status())) {
      response.set(http::field::retry_after, std::to_string(*retry_after_s));
    }
    AddIngestCors(request, &response);
    reply(std::move(response));
  };
  std::string payload_storage;
  auto payload = RequestPayload(request, settings, &payload_storage);
  if (!payload.ok()) {
    respond(payload.status());
    return;
  }
  service::IngestRequest ingest_request;
  ingest_request.route = MixpanelRouteOf(route);
  ingest_request.payload = *payload;
  ingest_request.credentials = CredentialsOf(request, *query);
  ingest_request.strict = style.strict;
  ingest_request.use_client_ip = Flag(*query, "ip");
  ingest_request.client_ip = client_ip;
  ingest_request.consent_signal = ConsentSignal(request);
  service.IngestMixpanelAsync(ingest_request, std::move(respond));
}

namespace {

// What posthog-js reads from its remote config: gzip without a preflight
// (supportedCompression), capture at /i/v0/e/, and the features minpanel
// does not serve (recordings, surveys, heatmaps, autocapture, exception
// capture) off, so the SDK neither loads their code nor sends them.
std::string PostHogConfigJson(std::string_view token) {
  std::string json = "{\"token\":";
  query::AppendJsonString(token, &json);
  json +=
      ",\"supportedCompression\":[\"gzip\",\"gzip-js\"],\"hasFeatureFlags\":false,"
      "\"analytics\":{\"endpoint\":\"/i/v0/e/\"},\"autocapture_opt_out\":true,"
      "\"autocaptureExceptions\":false,\"captureDeadClicks\":false,"
      "\"capturePerformance\":false,\"elementsChainAsString\":true,\"heatmaps\":false,"
      "\"sessionRecording\":false,\"surveys\":false,\"defaultIdentifiedOnly\":true,"
      "\"siteApps\":[]}";
  return json;
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// GET /array/<token>/config.js (a script that registers the config) and
// /array/<token>/config (the JSON alone). Any well-formed token gets the
// same config: it holds nothing of the project.
Response PostHogConfigResponse(const Request& request) {
  std::string_view path = TargetPath(request.target());
  if (path.back() == '/') {
    path.remove_suffix(1);
  }
  const bool script = path.ends_with(".js");
  path.remove_prefix(std::string_view("/array/").size());
  const std::string_view token = path.substr(0, path.rfind('/'));
  if (token.empty() || token.size() > 255 || !std::all_of(token.begin(), token.end(), IsTokenChar)) {
    return ErrorResponse(request, Status::NotFound("token: expected /array/<project token>/config"));
  }
  const std::string config = PostHogConfigJson(token);
  if (!script) {
    return MakeResponse(request, 200, kJson, config);
  }
  std::string token_json;
  query::AppendJsonString(token, &token_json);
  return MakeResponse(
      request, 200, "application/javascript",
      "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
      "window._POSTHOG_REMOTE_CONFIG[" + token_json + "]={config:" + config +
          ",siteApps:[]};})();");
}

// /flags (posthog-js, posthog-node) and the older /decide: no flags, no
// errors; /decide's clients also read the compression and feature switches.
Response PostHogFlagsResponse(const Request& request) {
  return MakeResponse(
      request, 200, kJson,
      "{\"flags\":{},\"featureFlags\":{},\"featureFlagPayloads\":{},"
      "\"errorsWhileComputingFlags\":false,\"quotaLimited\":[],"
      "\"supportedCompression\":[\"gzip\",\"gzip-js\"],\"config\":{\"enable_collect_everything\":false},"
      "\"autocapture_opt_out\":true,\"sessionRecording\":false,\"capturePerformance\":false,"
      "\"isAuthenticated\":false,\"toolbarParams\":{},\"siteApps\":[]}");
}

}  // namespace

void HandlePostHog(Route route, const Request& request, const std::string& client_ip,
                   const Settings& settings, service::Service& service, ReplyFunction reply) {
  if (route == Route::kPostHogFlags || route == Route::kPostHogConfig) {
    Response response = route == Route::kPostHogFlags ? PostHogFlagsResponse(request)
                                                      : PostHogConfigResponse(request);
    AddIngestCors(request, &response);
    reply(std::move(response));
    return;
  }
  const bool v1 = route == Route::kPostHogCaptureV1;
  auto respond = [&request, v1, reply = std::move(reply)](
                     const Result<service::IngestOutcome>& result) {
    // posthog-js counts only 200 as success (and retries 202); the body is
    // PostHog's. Capture V1 reads per-uuid results, where none means ok.
    Response response =
        result.ok() ? MakeResponse(request, 200, kJson, v1 ? "{\"results\":{}}" : "{\"status\":1}")
                    : ErrorResponse(request, result.status());
    AddIngestCors(request, &response);
    reply(std::move(response));
  };
  service::PostHogIngestRequest ingest_request;
  ingest_request.consent_signal = ConsentSignal(request);
  if (v1) {
    constexpr std::string_view kBearer = "Bearer ";
    const std::string_view authorization = request[http::field::authorization];
    if (!authorization.starts_with(kBearer) || authorization.size() == kBearer.size()) {
      respond(Status::Unauthenticated("Authorization: send Bearer <project token>"));
      return;
    }
    ingest_request.token = std::string(authorization.substr(kBearer.size()));
    ingest_request.library = std::string(request["PostHog-Sdk-Info"]);
  }
  auto encoding = ingest::ParseContentEncoding(request[http::field::content_encoding]);
  if (!encoding.ok()) {
    respond(encoding.status());
    return;
  }
  ingest::PostHogBodyLimits limits;
  limits.decompressed_bytes_max = settings.config.limits.decompressed_bytes_max;
  limits.ratio_max = settings.config.limits.decompression_ratio_max;
  std::string storage;
  auto payload = ingest::ExtractPostHogPayload(TargetQuery(request.target()), request.body(),
                                               *encoding, limits, &storage);
  if (!payload.ok()) {
    respond(payload.status());
    return;
  }
  ingest_request.payload = *payload;
  ingest_request.client_ip = client_ip;
  // Decodes on this thread, so `storage` may go when the call returns.
  service.IngestPostHogAsync(ingest_request, std::move(respond));
}

namespace {

// Segment answers every refusal 400, which its SDKs drop rather than retry;
// a storage failure stays 503 (retried), a server fault 500.
unsigned SegmentStatusFor(const Status& status) {
  const unsigned http_status = HttpStatusFor(status);
  return http_status >= 500 ? http_status : 400;
}

}  // namespace

void HandleSegment(Route route, const Request& request, const Settings& settings,
                   service::Service& service, ReplyFunction reply) {
  auto respond = [&request,
                  reply = std::move(reply)](const Result<service::IngestOutcome>& result) {
    Response response = result.ok() ? MakeResponse(request, 200, kJson, "{\"success\":true}")
                                    : MakeResponse(request, SegmentStatusFor(result.status()),
                                                   kJson, JsonError(result.status().message()));
    AddIngestCors(request, &response);
    reply(std::move(response));
  };
  service::SegmentIngestRequest ingest_request;
  ingest_request.consent_signal = ConsentSignal(request);
  if (route == Route::kSegmentMessage) {
    std::string_view path = TargetPath(request.target());
    if (path.back() == '/') {
      path.remove_suffix(1);
    }
    ingest_request.call = ingest::ParseSegmentCall(path.substr(path.rfind('/') + 1));
  }
  if (const auto basic = ParseBasicAuth(request[http::field::authorization])) {
    ingest_request.write_key = basic->first;
  }
  std::string inflated;
  const Result<std::string_view> decoded = DecodedBody(request, settings, &inflated);
  if (!decoded.ok()) {
    respond(decoded.status());
    return;
  }
  const std::string_view body = *decoded;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    respond(Status::InvalidArgument("body: empty (send the message as JSON)"));
    return;
  }
  ingest_request.payload = body;
  // Decodes on this thread, so `inflated` may go when the call returns.
  service.IngestSegmentAsync(ingest_request, std::move(respond));
}

void HandlePlausible(const Request& request, const std::string& client_ip, const Settings& settings,
                     service::Service& service, ReplyFunction reply) {
  auto respond = [&request, reply = std::move(reply)](
                     const Result<service::IngestOutcome>& result) {
    // Plausible's answer; its tracker ignores it (it cannot see errors).
    Response response = result.ok() ? MakeResponse(request, 202, "text/plain; charset=utf-8", "ok")
                                    : ErrorResponse(request, result.status());
    AddIngestCors(request, &response);
    reply(std::move(response));
  };
  std::string inflated;
  const Result<std::string_view> decoded = DecodedBody(request, settings, &inflated);
  if (!decoded.ok()) {
    respond(decoded.status());
    return;
  }
  const std::string_view body = *decoded;
  service::PlausibleIngestRequest ingest_request;
  ingest_request.consent_signal = ConsentSignal(request);
  ingest_request.body = body;
  ingest_request.client_ip = client_ip;
  ingest_request.user_agent = std::string(request[http::field::user_agent]);
  // Decodes on this thread, so `inflated` may go when the call returns.
  service.IngestPlausibleAsync(ingest_request, std::move(respond));
}

namespace {

// An authorised POST whose body `answer` turns into a JSON reply.
Response HandleSecretPost(
    const Request& request, const Settings& settings, service::Service& service,
    service::Scope scope, Route route,
    const std::function<Result<std::string>(const service::Access&, std::string_view)>& answer) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  auto access = service.Authorize(CredentialsOf(request, *query), scope, RouteLabel(route));
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  std::string storage;
  auto payload = RequestPayload(request, settings, &storage);
  if (!payload.ok()) {
    return ErrorResponse(request, payload.status());
  }
  auto body = answer(*access, *payload);
  if (!body.ok()) {
    return ErrorResponse(request, body.status());
  }
  return MakeResponse(request, 200, kJson, std::move(body).value());
}

}  // namespace

Response HandleQuery(const Request& request, const Settings& settings, service::Service& service) {
  return HandleSecretPost(request, settings, service, service::Scope::kQueryAggregate,
                          Route::kQuery,
                          [&service](const service::Access& access, std::string_view json) {
                            return service.Query(access, json);
                          });
}

Response HandlePolicyPreview(const Request& request, const Settings& settings,
                             service::Service& service) {
  return HandleSecretPost(
      request, settings, service, service::Scope::kAdmin, Route::kPolicyPreview,
      [&service](const service::Access& access, std::string_view payload) -> Result<std::string> {
        audit::AuditEntry entry;
        entry.act = "policy.preview";
        MP_RETURN_IF_ERROR(service.Audit(access, std::move(entry)));
        return service.PreviewPolicy(access.project, payload);
      });
}

namespace {

Response GetPolicyResponse(const Request& request, service::Service& service,
                           const service::Project& project) {
  const service::PolicyInForce policy = service.GetPolicy(project);
  std::string body = "{\"project\":";
  query::AppendJsonString(project.name, &body);
  body += ",\"version\":" + std::to_string(policy.version) + ",\"text\":";
  query::AppendJsonString(policy.text, &body);
  body += ",\"default\":";
  body += policy.is_default ? "true}" : "false}";
  return MakeResponse(request, 200, kJson, std::move(body));
}

Response UnsupportedMediaType(const Request& request, std::string_view message) {
  return MakeResponse(request, 415, kJson, JsonError(message));
}

Response PutPolicyResponse(const Request& request, service::Service& service,
                           const service::Project& project) {
  const std::string media_type = MediaTypeOf(request[http::field::content_type]);
  if (media_type != "text/plain" && media_type != "application/toml") {
    return UnsupportedMediaType(request,
                                "Content-Type: send the policy as text/plain or application/toml");
  }
  const std::string_view encoding = request[http::field::content_encoding];
  if (!encoding.empty() && MediaTypeOf(encoding) != "identity") {
    return UnsupportedMediaType(request, "Content-Encoding: send the policy uncompressed");
  }
  if (request.body().size() > service::kPolicyTextBytesMax) {
    return ErrorResponse(
        request, Status::ResourceExhausted("body: " + std::to_string(request.body().size()) +
                                           " bytes, over the limit of " +
                                           std::to_string(service::kPolicyTextBytesMax) +
                                           " bytes for a policy (kPolicyBytesMax)"));
  }
  auto update = service.PutPolicy(project, request.body());
  if (!update.ok()) {
    return ErrorResponse(request, update.status());
  }
  std::string body = "{\"version\":" + std::to_string(update->version) + ",\"new_version\":";
  body += update->new_version ? "true" : "false";
  body += ",\"notes\":[";
  for (size_t note_idx = 0; note_idx < update->notes.size(); ++note_idx) {
    body += note_idx == 0 ? "" : ",";
    query::AppendJsonString(update->notes[note_idx], &body);
  }
  body += "]}";
  return MakeResponse(request, 200, kJson, std::move(body));
}

Response PolicyVersionsResponse(const Request& request, service::Service& service,
                                const service::Project& project) {
  auto versions = service.PolicyHistory(project);
  if (!versions.ok()) {
    return ErrorResponse(request, versions.status());
  }
  std::string body = "[";
  for (size_t version_idx = 0; version_idx < versions->size(); ++version_idx) {
    const service::PolicyVersion& version = (*versions)[version_idx];
    body += version_idx == 0 ? "" : ",";
    body += "{\"version\":" + std::to_string(version.version) +
            ",\"recorded_ms\":" + std::to_string(version.recorded_ms) +
            ",\"bytes\":" + std::to_string(version.bytes) + "}";
  }
  body += "]";
  return MakeResponse(request, 200, kJson, std::move(body));
}

// The text as it was recorded, as TOML: `curl …/versions/3 > policy.toml`
// and a PUT of that file restores version 3's rules.
Response PolicyVersionResponse(const Request& request, service::Service& service,
                               const service::Project& project) {
  std::string_view path = TargetPath(request.target());
  if (path.back() == '/') {
    path.remove_suffix(1);
  }
  const std::string_view number = path.substr(path.rfind('/') + 1);
  uint32_t version = 0;
  const auto parsed = std::from_chars(number.data(), number.data() + number.size(), version);
  if (number.empty() || parsed.ec != std::errc() || parsed.ptr != number.data() + number.size() ||
      version == 0) {
    return ErrorResponse(request, Status::NotFound("policy version: expected a version number "
                                                   "from /api/policy/versions"));
  }
  auto text = service.PolicyVersionText(project, version);
  if (!text.ok()) {
    return ErrorResponse(request, text.status());
  }
  return MakeResponse(request, 200, "application/toml; charset=utf-8", std::move(text).value());
}

}  // namespace

Response HandlePolicyAdmin(Route route, const Request& request, service::Service& service) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  auto access =
      service.Authorize(CredentialsOf(request, *query), service::Scope::kAdmin, RouteLabel(route));
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  const bool put = route == Route::kPolicy && request.method() == http::verb::put;
  audit::AuditEntry entry;
  entry.act = put ? "policy.put" : "policy.read";
  entry.params_sha256 = put ? audit::Sha256Hex(request.body()) : "";
  entry.outcome = put ? "requested" : "ok";  // a put is recorded before it is checked
  if (const Status audited = service.Audit(*access, std::move(entry)); !audited.ok()) {
    return ErrorResponse(request, audited);
  }
  const service::Project* project = &access->project;
  switch (route) {
    case Route::kPolicy:
      return request.method() == http::verb::put ? PutPolicyResponse(request, service, *project)
                                                 : GetPolicyResponse(request, service, *project);
    case Route::kPolicyVersions:
      return PolicyVersionsResponse(request, service, *project);
    default:
      return PolicyVersionResponse(request, service, *project);
  }
}

Response HandleHealth(const Request& request, bool stopping) {
  if (stopping) {
    return MakeResponse(request, 503, "text/plain", "stopping\n");
  }
  return MakeResponse(request, 200, "text/plain", "ok\n");
}

Response HandleMetrics(const Request& request, const Metrics& metrics, service::Service& service) {
  // Counters say how much each project receives and what the policy finds
  // in it: the metrics scope (a project secret holds it too).
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  auto access = service.Authorize(CredentialsOf(request, *query), service::Scope::kMetrics,
                                  RouteLabel(Route::kMetrics), /*needs_project=*/false);
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  return MakeResponse(request, 200, "text/plain; version=0.0.4",
                      metrics.Render(service.GetMetrics(), service.GetStoreStats()));
}

namespace {

// A POST export's form body, decompressed as every route's body is.
Result<FormPairs> ExportFormBody(const Request& request, const Settings& settings) {
  const std::string media_type = MediaTypeOf(request[http::field::content_type]);
  if (media_type != "application/x-www-form-urlencoded") {
    return Status::InvalidArgument(
        "Content-Type: send the export parameters as application/x-www-form-urlencoded");
  }
  std::string decompressed;
  MP_ASSIGN_OR_RETURN(const std::string_view body, DecodedBody(request, settings, &decompressed));
  return ingest::ParseForm(body);
}

}  // namespace

Result<std::pair<service::Access, service::ExportOptions>> ParseExport(
    const Request& request, const Settings& settings, service::Service& service) {
  MP_ASSIGN_OR_RETURN(FormPairs query, ingest::ParseForm(TargetQuery(request.target())));
  if (request.method() == http::verb::post) {
    // The body's parameters first: FindFormValue takes the first of a name.
    MP_ASSIGN_OR_RETURN(FormPairs form, ExportFormBody(request, settings));
    form.insert(form.end(), query.begin(), query.end());
    query = std::move(form);
  } else if (ingest::FindFormValue(query, "distinct_ids").has_value()) {
    return Status::InvalidArgument(
        "distinct_ids: send it in a POST form body (a list of ids does not fit in a URL)");
  }
  MP_ASSIGN_OR_RETURN(service::Access access,
                      service.Authorize(CredentialsOf(request, query), service::Scope::kExport,
                                        RouteLabel(Route::kExport)));
  service::ExportOptions options;
  const auto from_date = ingest::FindFormValue(query, "from_date");
  const auto to_date = ingest::FindFormValue(query, "to_date");
  if (!from_date.has_value() || !to_date.has_value()) {
    return Status::InvalidArgument("from_date and to_date: both are required (YYYY-MM-DD)");
  }
  if (ingest::FindFormValue(query, "where").has_value()) {
    return Status::InvalidArgument("where: expression filters are not supported yet");
  }
  options.from_date = *from_date;
  options.to_date = *to_date;
  options.event_names_json = std::string(ingest::FindFormValue(query, "event").value_or(""));
  if (const auto distinct_id = ingest::FindFormValue(query, "distinct_id")) {
    options.distinct_id = std::string(*distinct_id);
  }
  if (const auto distinct_ids = ingest::FindFormValue(query, "distinct_ids")) {
    options.distinct_ids_json = std::string(*distinct_ids);
  }
  // The project secret's export without decoys (docs/security.md,
  // "Watermarked exports"): its route says so in the audit records, and the
  // service refuses it to an access key.
  if (const auto watermark = ingest::FindFormValue(query, "watermark")) {
    if (*watermark == "false") {
      access.route = std::string(service::kRouteApiExportNoWatermark);
    } else if (*watermark != "true") {
      return Status::InvalidArgument("watermark: must be true or false");
    }
  }
  // Checked by the service (docs/security.md, "Export reasons").
  options.reason = std::string(ingest::FindFormValue(query, "reason").value_or(""));
  if (const auto limit = ingest::FindFormValue(query, "limit")) {
    const char* end = limit->data() + limit->size();
    if (std::from_chars(limit->data(), end, options.limit).ptr != end || options.limit == 0) {
      return Status::InvalidArgument("limit: must be a positive integer");
    }
  }
  return std::make_pair(std::move(access), std::move(options));
}

namespace {

Result<service::Access> AuthorizeQuery(const Request& request, service::Service& service,
                                       service::Scope scope, Route route) {
  MP_ASSIGN_OR_RETURN(const FormPairs query, ingest::ParseForm(TargetQuery(request.target())));
  return service.Authorize(CredentialsOf(request, query), scope, RouteLabel(route),
                           /*needs_project=*/false);
}

Response KeyActionResponse(const Request& request, service::Service& service,
                           const service::Access& access) {
  std::string_view path = TargetPath(request.target());
  if (path.back() == '/') {
    path.remove_suffix(1);
  }
  const std::string_view rest = path.substr(std::string_view("/api/keys/").size());
  const size_t slash = rest.find('/');
  const std::string_view id = rest.substr(0, slash);
  const std::string_view action =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (action == "rotate") {
    auto rotated = service.RotateAccessKey(access, id);
    if (!rotated.ok()) {
      return ErrorResponse(request, rotated.status());
    }
    return MakeResponse(request, 200, kJson,
                        service::AccessKeyJson(rotated->key, rotated->secret));
  }
  if (action == "revoke" || action == "enable") {
    auto changed = action == "revoke" ? service.RevokeAccessKey(access, id)
                                      : service.EnableAccessKey(access, id);
    if (!changed.ok()) {
      return ErrorResponse(request, changed.status());
    }
    return MakeResponse(request, 200, kJson, service::AccessKeyJson(*changed));
  }
  return ErrorResponse(request, Status::NotFound("keys: expected /api/keys/<id>/rotate, "
                                                 "/revoke or /enable"));
}

}  // namespace

Response HandleKeys(Route route, const Request& request, service::Service& service) {
  if (route == Route::kProjectAction) {
    return HandleProjectAction(request, service);
  }
  auto access = AuthorizeQuery(request, service, service::Scope::kAdmin, route);
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  if (route == Route::kKeyAction) {
    return KeyActionResponse(request, service, *access);
  }
  if (request.method() == http::verb::post) {
    auto spec = service::ParseAccessKeySpec(request.body());
    if (!spec.ok()) {
      return ErrorResponse(request, spec.status());
    }
    auto created = service.CreateAccessKey(*access, std::move(spec).value());
    if (!created.ok()) {
      return ErrorResponse(request, created.status());
    }
    return MakeResponse(request, 201, kJson,
                        service::AccessKeyJson(created->key, created->secret));
  }
  auto keys = service.ListAccessKeys(*access);
  if (!keys.ok()) {
    return ErrorResponse(request, keys.status());
  }
  std::string body = "[";
  for (size_t key_idx = 0; key_idx < keys->size(); ++key_idx) {
    body += key_idx == 0 ? "" : ",";
    body += service::AccessKeyJson((*keys)[key_idx]);
  }
  return MakeResponse(request, 200, kJson, body + "]");
}

Response HandleAudit(const Request& request, service::Service& service) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  auto access = service.Authorize(CredentialsOf(request, *query), service::Scope::kAuditRead,
                                  RouteLabel(Route::kAudit), /*needs_project=*/false);
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  audit::Filter filter;
  filter.key = std::string(ingest::FindFormValue(*query, "key").value_or(""));
  filter.act = std::string(ingest::FindFormValue(*query, "act").value_or(""));
  filter.route = std::string(ingest::FindFormValue(*query, "route").value_or(""));
  for (const auto& [name, target] :
       {std::pair<std::string_view, int64_t*>{"from_ms", &filter.from_ms},
        std::pair<std::string_view, int64_t*>{"to_ms", &filter.to_ms}}) {
    if (const auto value = ingest::FindFormValue(*query, name)) {
      const char* end = value->data() + value->size();
      if (std::from_chars(value->data(), end, *target).ptr != end) {
        return ErrorResponse(request, Status::InvalidArgument(std::string(name) +
                                                              ": expected milliseconds"));
      }
    }
  }
  if (const auto limit = ingest::FindFormValue(*query, "limit")) {
    const char* end = limit->data() + limit->size();
    if (std::from_chars(limit->data(), end, filter.limit).ptr != end || filter.limit == 0 ||
        filter.limit > audit::kShowRecordsMax) {
      return ErrorResponse(request, Status::InvalidArgument(
                                        "limit: 1 to " + std::to_string(audit::kShowRecordsMax) +
                                        " (kShowRecordsMax)"));
    }
  }
  auto entries = service.ReadAudit(*access, filter);
  if (!entries.ok()) {
    return ErrorResponse(request, entries.status());
  }
  std::string body = "[";
  for (size_t entry_idx = 0; entry_idx < entries->size(); ++entry_idx) {
    body += entry_idx == 0 ? "" : ",\n";
    body += audit::EncodeEntry((*entries)[entry_idx]);
  }
  return MakeResponse(request, 200, kJson, body + "]\n");
}

}  // namespace minpanel::server
