#include "server/admin_routes.h"

#include <charconv>

#include "ingest/ingest.h"

namespace minpanel::server {
namespace {

constexpr std::string_view kProjectsPrefix = "/api/projects/";

// The <id> of /api/projects/<id>/delete; InvalidArgument or NotFound.
Result<std::string> ProjectIdOfPath(std::string_view path) {
  if (path.ends_with('/')) {
    path.remove_suffix(1);
  }
  const std::string_view rest = path.substr(kProjectsPrefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(slash + 1) != "delete") {
    return Status::NotFound("projects: expected POST /api/projects/<id>/delete");
  }
  const std::string_view id = rest.substr(0, slash);
  uint32_t parsed = 0;
  const auto [end, error] = std::from_chars(id.data(), id.data() + id.size(), parsed);
  if (error != std::errc() || end != id.data() + id.size() || parsed == 0) {
    return Status::InvalidArgument("projects: '" + std::string(id) + "' is not a project id");
  }
  return std::string(id);
}

Result<std::string> DeleteProject(const Request& request, service::Service& service) {
  const std::string_view target = request.target();
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  MP_ASSIGN_OR_RETURN(const std::string id, ProjectIdOfPath(path));
  MP_ASSIGN_OR_RETURN(const auto query, ingest::ParseForm(question == std::string_view::npos
                                                              ? std::string_view()
                                                              : target.substr(question + 1)));
  service::Credentials credentials = CredentialsOf(request, query);
  if (!credentials.project_id.empty() && credentials.project_id != id) {
    return Status::InvalidArgument("project_id: must be the project of the path, " + id);
  }
  credentials.project_id = id;
  MP_ASSIGN_OR_RETURN(
      const service::Access access,
      service.Authorize(credentials, service::Scope::kAdmin, RouteLabel(Route::kProjectAction)));
  const std::optional<std::string_view> confirm = ingest::FindFormValue(query, "confirm");
  MP_ASSIGN_OR_RETURN(const service::ProjectDeletion deletion,
                      service.DeleteProject(access, confirm.value_or("")));
  return service::ProjectDeletionJson(deletion);
}

}  // namespace

Response HandleProjectAction(const Request& request, service::Service& service) {
  auto body = DeleteProject(request, service);
  if (!body.ok()) {
    return ErrorResponse(request, body.status());
  }
  return MakeResponse(request, 200, "application/json", *body);
}

}  // namespace minpanel::server
