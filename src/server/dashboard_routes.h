// The dashboard API's routes (docs/formats/dashboard-api.md): the project
// picker, known names, live events, the audit chain's status, and saved
// reports and dashboards. Any API client may use them; each authorises its
// scope first (docs/security.md) and runs on a worker (the audit record of
// each is fsynced). Internal to the server module.
#pragma once

#include <optional>
#include <string_view>

#include "server/routes.h"

namespace minpanel::server {

// The route of a dashboard API path (no query, no trailing slash), or nullopt.
std::optional<Route> ClassifyDashboardPath(std::string_view path);
bool IsDashboardRoute(Route route);
// For a dashboard route: whether it answers `method`, and its Allow header.
bool DashboardAllowsMethod(Route route, boost::beast::http::verb method);
std::string_view DashboardAllowedMethods(Route route);

Response HandleDashboardApi(Route route, const Request& request, service::Service& service);

}  // namespace minpanel::server
