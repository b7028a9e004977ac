#include "server/erasure_routes.h"

#include "ingest/ingest.h"
#include "query/query.h"
#include "server/http_util.h"

namespace minpanel::server {
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kJson = "application/json";
using FormPairs = std::vector<std::pair<std::string, std::string>>;
constexpr std::string_view kDeletionsPrefix = "/api/app/data-deletions/v3.0";
constexpr std::string_view kRetrievalsPrefix = "/api/app/data-retrievals/v3.0";
constexpr std::string_view kResultSuffix = "/result";

bool IsGdprRoute(Route route) {
  return route == Route::kGdprDeletions || route == Route::kGdprRetrievals;
}

// Mixpanel's error body: {"status": "error", "error": message}.
Response GdprError(const Request& request, const Status& status) {
  std::string body = "{\"status\":\"error\",\"error\":";
  query::AppendJsonString(status.message(), &body);
  return MakeResponse(request, HttpStatusFor(status), kJson, body + "}\n");
}

Response JsonOrError(const Request& request, const Result<std::string>& body, bool gdpr) {
  if (!body.ok()) {
    return gdpr ? GdprError(request, body.status()) : ErrorResponse(request, body.status());
  }
  return MakeResponse(request, 200, kJson, *body);
}

// Mixpanel authenticates with `Authorization: Bearer <OAuth token>` and
// names the project by its token; here the bearer is an admin-scoped key
// (or the project secret) and the token picks the project it acts on.
Result<service::Access> AuthorizeGdpr(const Request& request, const FormPairs& query, Route route,
                                      service::Service& service) {
  constexpr std::string_view kBearer = "Bearer ";
  const std::string_view authorization = request[http::field::authorization];
  if (!authorization.starts_with(kBearer) || authorization.size() == kBearer.size()) {
    return Status::Unauthenticated(
        "Authorization: send Bearer <a minpanel key with the scope 'admin'>");
  }
  const std::optional<std::string_view> token = ingest::FindFormValue(query, "token");
  if (!token.has_value() || token->empty()) {
    return Status::InvalidArgument("token: required, the project token");
  }
  const std::optional<service::Project> project = service.projects().FindByToken(*token);
  if (!project.has_value()) {
    return Status::NotFound("token: no project has this token");
  }
  service::Credentials credentials;
  credentials.api_key = std::string(authorization.substr(kBearer.size()));
  credentials.project_id = std::to_string(project->id);
  return service.Authorize(credentials, service::Scope::kAdmin, ErasureRouteLabel(route));
}

Response HandleGdpr(Route route, const Request& request, service::Service& service) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return GdprError(request, query.status());
  }
  auto access = AuthorizeGdpr(request, *query, route, service);
  if (!access.ok()) {
    return GdprError(request, access.status());
  }
  const service::GdprKind kind =
      route == Route::kGdprDeletions ? service::GdprKind::kDeletion : service::GdprKind::kRetrieval;
  const std::string_view prefix =
      route == Route::kGdprDeletions ? kDeletionsPrefix : kRetrievalsPrefix;
  std::string_view rest = TargetPathNoSlash(request.target()).substr(prefix.size());
  if (rest.starts_with('/')) {
    rest.remove_prefix(1);
  }
  if (rest.empty()) {
    if (request.method() != http::verb::post) {
      return GdprError(request,
                       Status::InvalidArgument("method: create a task with POST; name a task_id to "
                                               "read or cancel it"));
    }
    return JsonOrError(request, service.GdprCreate(*access, kind, request.body()), true);
  }
  if (kind == service::GdprKind::kRetrieval && rest.ends_with(kResultSuffix)) {
    rest.remove_suffix(kResultSuffix.size());
    return JsonOrError(request, service.GdprResult(*access, rest), true);
  }
  if (request.method() == http::verb::delete_) {
    return JsonOrError(request, service.GdprCancel(*access, kind, rest), true);
  }
  if (request.method() != http::verb::get) {
    return GdprError(request, Status::InvalidArgument("method: GET or DELETE a task_id"));
  }
  const std::string result_url = std::string(kRetrievalsPrefix) + "/" + std::string(rest) +
                                 std::string(kResultSuffix) +
                                 "?token=" + std::string(*ingest::FindFormValue(*query, "token"));
  return JsonOrError(request, service.GdprStatus(*access, kind, rest, result_url), true);
}

// Who could read one person's data (docs/incident.md): the command line's
// answer, from the running server's store and audit log.
Response HandleWhoCouldRead(const Request& request, const service::Access& access,
                            service::Service& service) {
  auto parsed = service::ParseWhoCouldReadRequest(request.body());
  if (!parsed.ok()) {
    return ErrorResponse(request, parsed.status());
  }
  auto answer = service.WhoCouldRead(access, *parsed);
  if (!answer.ok()) {
    return ErrorResponse(request, answer.status());
  }
  return MakeResponse(request, 200, kJson, answer->json);
}

}  // namespace

std::optional<Route> ClassifyErasurePath(std::string_view path) {
  if (path == "/api/erase") return Route::kErase;
  if (path == "/api/access-request") return Route::kAccessRequest;
  if (path == "/api/properties/purge") return Route::kPropertyPurge;
  if (path == "/api/incident/who-could-read") return Route::kWhoCouldRead;
  if (path.starts_with(kDeletionsPrefix)) return Route::kGdprDeletions;
  if (path.starts_with(kRetrievalsPrefix)) return Route::kGdprRetrievals;
  return std::nullopt;
}

bool IsErasureRoute(Route route) {
  return route == Route::kErase || route == Route::kAccessRequest ||
         route == Route::kPropertyPurge || route == Route::kWhoCouldRead || IsGdprRoute(route);
}

std::string_view ErasureRouteLabel(Route route) {
  switch (route) {
    case Route::kErase:
      return "/api/erase";
    case Route::kAccessRequest:
      return "/api/access-request";
    case Route::kPropertyPurge:
      return "/api/properties/purge";
    case Route::kWhoCouldRead:
      return "/api/incident/who-could-read";
    case Route::kGdprDeletions:
      return "/api/app/data-deletions/v3.0";
    default:
      return "/api/app/data-retrievals/v3.0";
  }
}

bool ErasureAllowsMethod(Route route, http::verb method) {
  if (IsGdprRoute(route)) {
    return method == http::verb::get || method == http::verb::post || method == http::verb::delete_;
  }
  return method == http::verb::post;
}

std::string_view ErasureAllowedMethods(Route route) {
  return IsGdprRoute(route) ? "GET, POST, DELETE" : "POST";
}

Response HandleErasure(Route route, const Request& request, service::Service& service) {
  if (IsGdprRoute(route)) {
    return HandleGdpr(route, request, service);
  }
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  auto access = service.Authorize(CredentialsOf(request, *query), service::Scope::kAdmin,
                                  ErasureRouteLabel(route));
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  if (route == Route::kWhoCouldRead) {
    return HandleWhoCouldRead(request, *access, service);
  }
  if (route == Route::kPropertyPurge) {
    auto purge = service::ParsePropertyPurge(request.body());
    if (!purge.ok()) {
      return ErrorResponse(request, purge.status());
    }
    auto purged = service.PurgeProperty(*access, *purge);
    if (!purged.ok()) {
      return ErrorResponse(request, purged.status());
    }
    return MakeResponse(request, 200, kJson, service::PropertyPurgeOutcomeJson(*purged));
  }
  const bool erase = route == Route::kErase;
  auto selection = service::ParseSubjectSelection(
      request.body(), erase ? service::kErasureDistinctIdsMax : service::kAccessDistinctIdsMax,
      erase ? "kErasureDistinctIdsMax" : "kAccessDistinctIdsMax");
  if (!selection.ok()) {
    return ErrorResponse(request, selection.status());
  }
  if (erase) {
    auto erased = service.Erase(*access, *selection);
    if (!erased.ok()) {
      return ErrorResponse(request, erased.status());
    }
    return MakeResponse(request, 200, kJson, service::ErasureOutcomeJson(*erased));
  }
  Response response =
      JsonOrError(request, service.AccessRequest(*access, *selection), /*gdpr=*/false);
  response.set(http::field::content_disposition, "attachment; filename=\"access-request.json\"");
  return response;
}

}  // namespace minpanel::server
