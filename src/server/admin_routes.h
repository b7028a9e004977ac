// Project deletion over HTTP (issue 6; docs/security.md, "Project
// deletion"): POST /api/projects/<id>/delete?confirm=<name>, scope admin —
// a server-wide admin key, or the project's own admin key or secret. It
// fsyncs the audit log, the registries and the store's deletion records
// and purges the files, so it runs on a worker. Internal to the server
// module.
#pragma once

#include "server/routes.h"

namespace minpanel::server {

Response HandleProjectAction(const Request& request, service::Service& service);

}  // namespace minpanel::server
