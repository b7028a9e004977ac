#include "server/dashboard_routes.h"

#include <charconv>

#include "ingest/ingest.h"
#include "query/query.h"
#include "server/http_util.h"

namespace minpanel::server {
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kReportsPrefix = "/api/reports/";
constexpr std::string_view kDashboardsPrefix = "/api/dashboards/";

using FormPairs = std::vector<std::pair<std::string, std::string>>;

bool IsItemRoute(Route route) { return route == Route::kReport || route == Route::kDashboard; }

bool IsListRoute(Route route) { return route == Route::kReports || route == Route::kDashboards; }

service::Scope ScopeOf(Route route) {
  switch (route) {
    case Route::kLiveEvents:
      return service::Scope::kExport;  // whole events, as an export's
    case Route::kAuditStatus:
    case Route::kAlerts:
      return service::Scope::kAuditRead;
    case Route::kDataMap:
      return service::Scope::kAdmin;
    default:
      return service::Scope::kQueryAggregate;
  }
}

// The id at the end of /api/reports/<id>; NotFound when it is not a number.
Result<uint64_t> ItemId(std::string_view path, std::string_view prefix) {
  const std::string_view text = path.substr(prefix.size());
  uint64_t id = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size() ||
      id == 0) {
    return Status::NotFound("id: expected " + std::string(prefix) + "<id> with a numeric id");
  }
  return id;
}

Response ProjectsResponse(const Request& request, service::Service& service,
                          const service::Access& access) {
  std::string body = "[";
  for (const service::Project& project : service.ProjectsFor(access)) {
    body += body.size() == 1 ? "{\"id\":" : ",{\"id\":";
    body += std::to_string(project.id) + ",\"name\":";
    query::AppendJsonString(project.name, &body);
    body += ",\"time_zone\":";
    query::AppendJsonString(project.time_zone, &body);
    body += "}";
  }
  return MakeResponse(request, 200, kJson, body + "]");
}

Result<size_t> LiveLimit(const FormPairs& query) {
  const auto text = ingest::FindFormValue(query, "limit");
  if (!text.has_value()) {
    return service::kLiveEventsDefault;
  }
  size_t limit = 0;
  const char* end = text->data() + text->size();
  if (std::from_chars(text->data(), end, limit).ptr != end || limit == 0 ||
      limit > service::kLiveEventsMax) {
    return Status::InvalidArgument("limit: 1 to " + std::to_string(service::kLiveEventsMax) +
                                   " (kLiveEventsMax)");
  }
  return limit;
}

// GET /api/alerts?key=&rule=&from_ms=&to_ms=&limit= (service/anomaly.h):
// the anomaly alerts, newest first.
Result<service::AlertFilter> AlertFilterOf(const FormPairs& query) {
  service::AlertFilter filter;
  filter.key_id = std::string(ingest::FindFormValue(query, "key").value_or(""));
  filter.rule = std::string(ingest::FindFormValue(query, "rule").value_or(""));
  for (const auto& [name, target] :
       {std::pair<std::string_view, int64_t*>{"from_ms", &filter.from_ms},
        std::pair<std::string_view, int64_t*>{"to_ms", &filter.to_ms}}) {
    if (const auto value = ingest::FindFormValue(query, name)) {
      const char* end = value->data() + value->size();
      if (value->empty() || std::from_chars(value->data(), end, *target).ptr != end) {
        return Status::InvalidArgument(std::string(name) + ": expected milliseconds");
      }
    }
  }
  if (const auto limit = ingest::FindFormValue(query, "limit")) {
    const char* end = limit->data() + limit->size();
    if (limit->empty() || std::from_chars(limit->data(), end, filter.limit).ptr != end) {
      filter.limit = 0;  // refused by CheckAlertFilter, naming the limit
    }
  }
  return filter;
}

Response AlertsResponse(const Request& request, service::Service& service,
                        const service::Access& access, const FormPairs& query) {
  auto filter = AlertFilterOf(query);
  if (!filter.ok()) {
    return ErrorResponse(request, filter.status());
  }
  auto alerts = service.ReadAlerts(access, *filter);
  if (!alerts.ok()) {
    return ErrorResponse(request, alerts.status());
  }
  std::string body = "[";
  for (const service::ListedAlert& listed : *alerts) {
    body += body.size() == 1 ? "{\"seq\":" : ",\n{\"seq\":";
    body += std::to_string(listed.seq) + ",\"time_ms\":" + std::to_string(listed.alert.time_ms) +
            ",\"key\":";
    query::AppendJsonString(listed.alert.key_id, &body);
    body += ",\"project_id\":" + std::to_string(listed.alert.project_id) + ",\"rule\":";
    query::AppendJsonString(listed.alert.rule, &body);
    body += ",\"detail\":";
    query::AppendJsonString(listed.alert.detail, &body);
    body += ",\"suspended\":";
    body += listed.alert.suspended ? "true" : "false";
    body += ",\"key_state\":";
    query::AppendJsonString(listed.key_state, &body);
    body += "}";
  }
  return MakeResponse(request, 200, kJson, body + "]\n");
}

// GET /api/datamap?format=json|markdown|html (service/datamap.h): the
// project's data map. The HTML page is shown inert even when opened from the
// API: no script may run and nothing is fetched.
Response DataMapResponse(const Request& request, service::Service& service,
                         const service::Access& access, const FormPairs& query) {
  auto format =
      service::ParseDataMapFormat(ingest::FindFormValue(query, "format").value_or("json"));
  if (!format.ok()) {
    return ErrorResponse(request, format.status());
  }
  auto project = service.DataMapOf(access);
  if (!project.ok()) {
    return ErrorResponse(request, project.status());
  }
  service::DataMap map;
  map.generated_ms = service.clock().NowMs();
  map.projects.push_back(std::move(project).value());
  const std::string_view content_type =
      *format == service::DataMapFormat::kHtml       ? "text/html; charset=utf-8"
      : *format == service::DataMapFormat::kMarkdown ? "text/markdown; charset=utf-8"
                                                     : kJson;
  Response response =
      MakeResponse(request, 200, content_type, service::RenderDataMap(map, *format));
  response.set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
  response.set("X-Content-Type-Options", "nosniff");
  return response;
}

Response SavedResponse(Route route, const Request& request, service::Service& service,
                       const service::Access& access) {
  const service::SavedKind kind = route == Route::kReports || route == Route::kReport
                                      ? service::SavedKind::kReport
                                      : service::SavedKind::kDashboard;
  if (IsListRoute(route)) {
    if (request.method() == http::verb::post) {
      auto created = service.PutSaved(access, kind, 0, request.body());
      return created.ok() ? MakeResponse(request, 201, kJson, service::SavedItemJson(*created))
                          : ErrorResponse(request, created.status());
    }
    auto items = service.ListSaved(access, kind);
    if (!items.ok()) {
      return ErrorResponse(request, items.status());
    }
    std::string body = "[";
    for (const service::SavedItem& item : *items) {
      body += body.size() == 1 ? "" : ",";
      body += service::SavedItemJson(item);
    }
    return MakeResponse(request, 200, kJson, body + "]");
  }
  auto id = ItemId(TargetPathNoSlash(request.target()),
                   route == Route::kReport ? kReportsPrefix : kDashboardsPrefix);
  if (!id.ok()) {
    return ErrorResponse(request, id.status());
  }
  if (request.method() == http::verb::delete_) {
    const Status deleted = service.DeleteSaved(access, kind, *id);
    return deleted.ok() ? MakeResponse(request, 200, kJson, "{\"deleted\":true}")
                        : ErrorResponse(request, deleted);
  }
  auto item = request.method() == http::verb::put
                  ? service.PutSaved(access, kind, *id, request.body())
                  : service.GetSaved(access, kind, *id);
  return item.ok() ? MakeResponse(request, 200, kJson, service::SavedItemJson(*item))
                   : ErrorResponse(request, item.status());
}

}  // namespace

std::optional<Route> ClassifyDashboardPath(std::string_view path) {
  if (path == "/api/projects") return Route::kProjects;
  if (path == "/api/names") return Route::kNames;
  if (path == "/api/events/live") return Route::kLiveEvents;
  if (path == "/api/audit/status") return Route::kAuditStatus;
  if (path == "/api/alerts") return Route::kAlerts;
  if (path == "/api/datamap") return Route::kDataMap;
  if (path == "/api/reports") return Route::kReports;
  if (path.starts_with(kReportsPrefix)) return Route::kReport;
  if (path == "/api/dashboards") return Route::kDashboards;
  if (path.starts_with(kDashboardsPrefix)) return Route::kDashboard;
  return std::nullopt;
}

bool IsDashboardRoute(Route route) {
  return route == Route::kProjects || route == Route::kNames || route == Route::kLiveEvents ||
         route == Route::kAuditStatus || route == Route::kAlerts || route == Route::kDataMap ||
         IsListRoute(route) ||
         IsItemRoute(route);
}

bool DashboardAllowsMethod(Route route, http::verb method) {
  if (method == http::verb::get) {
    return true;
  }
  if (method == http::verb::post) {
    return IsListRoute(route);
  }
  if (method == http::verb::put || method == http::verb::delete_) {
    return IsItemRoute(route);
  }
  return false;
}

std::string_view DashboardAllowedMethods(Route route) {
  if (IsListRoute(route)) {
    return "GET, POST";
  }
  return IsItemRoute(route) ? "GET, PUT, DELETE" : "GET";
}

Response HandleDashboardApi(Route route, const Request& request, service::Service& service) {
  auto query = ingest::ParseForm(TargetQuery(request.target()));
  if (!query.ok()) {
    return ErrorResponse(request, query.status());
  }
  const bool needs_project =
      route != Route::kProjects && route != Route::kAuditStatus && route != Route::kAlerts;
  auto access = service.Authorize(CredentialsOf(request, *query), ScopeOf(route), RouteLabel(route),
                                  needs_project);
  if (!access.ok()) {
    return ErrorResponse(request, access.status());
  }
  switch (route) {
    case Route::kProjects:
      return ProjectsResponse(request, service, *access);
    case Route::kNames: {
      auto names = service.EventNames(*access);
      return names.ok() ? MakeResponse(request, 200, kJson, std::move(names).value())
                        : ErrorResponse(request, names.status());
    }
    case Route::kLiveEvents: {
      auto limit = LiveLimit(*query);
      if (!limit.ok()) {
        return ErrorResponse(request, limit.status());
      }
      auto events = service.LiveEvents(*access, *limit);
      return events.ok() ? MakeResponse(request, 200, kJson, std::move(events).value())
                         : ErrorResponse(request, events.status());
    }
    case Route::kDataMap:
      return DataMapResponse(request, service, *access, *query);
    case Route::kAlerts:
      return AlertsResponse(request, service, *access, *query);
    case Route::kAuditStatus: {
      auto status = service.AuditStatus(*access);
      return status.ok() ? MakeResponse(request, 200, kJson, std::move(status).value())
                         : ErrorResponse(request, status.status());
    }
    default:
      return SavedResponse(route, request, service, *access);
  }
}

}  // namespace minpanel::server
