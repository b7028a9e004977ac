// The erasure and access-request routes (admin scope; docs/privacy.md,
// "Erasure and access"): POST /api/erase, POST /api/access-request,
// POST /api/properties/purge (docs/privacy.md, "Purging a property"),
// POST /api/incident/who-could-read (docs/incident.md: a person's request
// to know who could read their data, answered by the running server), and
// Mixpanel's GDPR API shapes under /api/app/data-deletions/v3.0/ and
// /api/app/data-retrievals/v3.0/ (docs/formats/mixpanel-gdpr.md). Each
// writes and fsyncs (the store's deletion record, the audit log, the task
// registry), so each runs on a worker. Internal to the server module.
#pragma once

#include <optional>
#include <string_view>

#include "server/routes.h"

namespace minpanel::server {

// The route of an erasure path (no query), or nullopt.
std::optional<Route> ClassifyErasurePath(std::string_view path);
bool IsErasureRoute(Route route);
std::string_view ErasureRouteLabel(Route route);
// For an erasure route: whether it answers `method`, and its Allow header.
bool ErasureAllowsMethod(Route route, boost::beast::http::verb method);
std::string_view ErasureAllowedMethods(Route route);

Response HandleErasure(Route route, const Request& request, service::Service& service);

}  // namespace minpanel::server
