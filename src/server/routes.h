// Request handlers of the HTTP face. Internal to the server module. The
// handlers are pure with respect to the server (they call the Service and
// build a response) and run on worker threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "server/http_util.h"
#include "server/metrics.h"
#include "service/config.h"
#include "service/service.h"

namespace minpanel::server {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

enum class Route {
  kTrack,
  kEngage,
  kGroups,
  kImport,
  kPostHogCapture,  // /batch, /e, /i/v0/e, /capture (docs/formats/posthog.md)
  kPostHogCaptureV1,  // /i/v1/analytics/events (posthog-node's Capture V1)
  kPostHogFlags,    // /flags, /decide: no feature flags
  kPostHogConfig,   // /array/<token>/config.js and /array/<token>/config
  kPlausibleEvent,  // POST /api/event (docs/formats/plausible.md)
  kSegmentMessage,  // /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias
  kSegmentBatch,    // /v1/batch, /v1/import; /batch when the request is Segment's
  kExport,
  kPolicyPreview,
  kPolicy,          // GET, PUT /api/policy
  kPolicyVersions,  // GET /api/policy/versions
  kPolicyVersion,   // GET /api/policy/versions/<N>
  kQuery,           // POST /api/query
  kKeys,            // GET (list), POST (create) /api/keys
  kKeyAction,       // POST /api/keys/<id>/rotate, /api/keys/<id>/revoke, /api/keys/<id>/enable
  kProjectAction,   // POST /api/projects/<id>/delete (admin_routes.h)
  kAudit,           // GET /api/audit
  // Erasure and access requests (erasure_routes.h; docs/privacy.md).
  kErase,           // POST /api/erase
  kAccessRequest,   // POST /api/access-request
  kPropertyPurge,   // POST /api/properties/purge
  kGdprDeletions,   // /api/app/data-deletions/v3.0/[<task_id>] (docs/formats/mixpanel-gdpr.md)
  kGdprRetrievals,  // /api/app/data-retrievals/v3.0/[<task_id>[/result]]
  kWhoCouldRead,    // POST /api/incident/who-could-read (docs/incident.md)
  // The dashboard API (dashboard_routes.h; docs/formats/dashboard-api.md).
  kProjects,    // GET /api/projects
  kNames,       // GET /api/names
  kLiveEvents,  // GET /api/events/live
  kAuditStatus,  // GET /api/audit/status
  kAlerts,      // GET /api/alerts (the anomaly alerts)
  kReports,     // GET, POST /api/reports
  kReport,      // GET, PUT, DELETE /api/reports/<id>
  kDashboards,  // GET, POST /api/dashboards
  kDashboard,   // GET, PUT, DELETE /api/dashboards/<id>
  kDataMap,     // GET /api/datamap (admin; docs/privacy.md, "The data map")
  kHealth,
  kMetrics,
  kRoot,  // the dashboard: /, /index.html, /assets/* (static_files.h)
  kUnknown
};

// What may change on SIGHUP, swapped as a whole.
struct Settings {
  service::Config config;
  TrustedProxies trusted_proxies;
};

// The route of a target's path; a trailing slash is ignored.
Route ClassifyTarget(std::string_view target);
// The route of a request: ClassifyTarget's, except that the unversioned
// /batch, PostHog's, is Segment's when the request carries Basic auth or
// its body is Segment's envelope (ingest::IsSegmentBatchBody;
// docs/formats/segment-http.md).
Route ClassifyRequest(const Request& request);
std::string_view RouteLabel(Route route);
bool IsIngestRoute(Route route);
bool IsPolicyAdminRoute(Route route);
// The methods a route answers besides OPTIONS (HEAD never: it must not
// ingest anything), for a 405's Allow header.
bool AllowsMethod(Route route, boost::beast::http::verb method);
std::string_view AllowedMethods(Route route);

// A response with the given status, content type and body, keep-alive as
// the request asked.
Response MakeResponse(const Request& request, unsigned status, std::string_view content_type,
                      std::string body);
// A JSON error {"error": message} with the status Status maps to.
Response ErrorResponse(const Request& request, const Status& status);
unsigned HttpStatusFor(const Status& status);

// CORS for the browser SDKs: echo the Origin with credentials (ingest
// routes only) and answer preflights.
void AddIngestCors(const Request& request, Response* response);
Response PreflightResponse(const Request& request);

// The Mixpanel ingestion routes, from raw request to reply. Decodes on the
// calling thread; `reply` runs once, later (on the store's writer thread once
// the events are durable) or at once when the request fails early. `request`
// must stay alive and unchanged until then.
using ReplyFunction = std::function<void(Response)>;
void HandleMixpanel(Route route, const Request& request, const std::string& client_ip,
                    const Settings& settings, service::Service& service, ReplyFunction reply);

// The PostHog routes: capture (stored as one batch, then exactly 200
// {"status":1}, the only success posthog-js knows), an empty-flags answer
// and a remote config that turns on gzip. Same contract as HandleMixpanel.
bool IsPostHogRoute(Route route);
void HandlePostHog(Route route, const Request& request, const std::string& client_ip,
                   const Settings& settings, service::Service& service, ReplyFunction reply);

// Plausible's events API, POST /api/event: one event whose site domain
// picks the project and whose visitor id the service makes from
// `client_ip` and the User-Agent; then 202 "ok", as Plausible answers.
// Same contract as HandleMixpanel.
void HandlePlausible(const Request& request, const std::string& client_ip, const Settings& settings,
                     service::Service& service, ReplyFunction reply);

// Segment's HTTP tracking API: one message (/v1/track, …) or a batch
// (/v1/batch, /v1/import), the write key from Basic auth or the body;
// stored as one batch, then 200 {"success":true}. A refusal is 400 (which
// analytics-node drops, never retries), a storage failure 503. Same
// contract as HandleMixpanel.
bool IsSegmentRoute(Route route);
void HandleSegment(Route route, const Request& request, const Settings& settings,
                   service::Service& service, ReplyFunction reply);

// POST /api/policy/preview: secret-authenticated; the body is an /import
// payload; the reply shows what would be stored and why. Stores nothing.
// POST /api/query: a segmentation, funnel or retention query (JSON body,
// docs/queries.md), authenticated by the project secret.
Response HandleQuery(const Request& request, const Settings& settings, service::Service& service);

Response HandlePolicyPreview(const Request& request, const Settings& settings,
                             service::Service& service);

// The policy admin routes, secret-authenticated (the project secret holds
// every scope of its project until admin keys exist): GET /api/policy (the
// policy in force), PUT /api/policy (a TOML body of at most
// service::kPolicyTextBytesMax, put in force at once), GET
// /api/policy/versions (the history) and GET /api/policy/versions/<N> (one
// version's text). The policy text never reaches the log.
Response HandlePolicyAdmin(Route route, const Request& request, service::Service& service);

// The access keys (scope admin; docs/security.md): GET /api/keys lists the
// keys the caller manages, POST /api/keys creates one (the JSON of
// service::ParseAccessKeySpec; the secret is in the answer, once), POST
// /api/keys/<id>/rotate and /api/keys/<id>/revoke.
Response HandleKeys(Route route, const Request& request, service::Service& service);
// GET /api/audit (scope audit:read): the newest records, filtered by key,
// act, route, from_ms, to_ms and limit (docs/formats/audit.md).
Response HandleAudit(const Request& request, service::Service& service);

Response HandleHealth(const Request& request, bool stopping);
Response HandleMetrics(const Request& request, const Metrics& metrics, service::Service& service);

// Parses the export request — GET with a query string, or POST with the
// same parameters (and distinct_ids) in an application/x-www-form-urlencoded
// body, gzip or deflate allowed; on success the caller streams it.
Result<std::pair<service::Access, service::ExportOptions>> ParseExport(
    const Request& request, const Settings& settings, service::Service& service);

// The request field in which the session hands the client's address (the
// socket peer, or what a trusted proxy said; ClientAddress) to the
// handlers. The session sets it on every request before dispatching it,
// replacing whatever the client sent under that name.
inline constexpr std::string_view kClientAddressField = "Minpanel-Client-Address";

// The request's credentials: Basic auth, api_key and project_id, and the
// client's address (kClientAddressField) for the audit log.
service::Credentials CredentialsOf(const Request& request,
                                   const std::vector<std::pair<std::string, std::string>>& query);

}  // namespace minpanel::server
