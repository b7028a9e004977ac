// `minpanel erase`, `minpanel access-request` and `minpanel purge-property`:
// the command-line face of POST /api/erase, POST /api/access-request and
// POST /api/properties/purge (docs/privacy.md, "Erasure and access",
// "Purging a property"), in-process on a stopped server's data folder.
#include <fstream>
#include <iostream>

#include "cli/commands.h"

namespace minpanel::cli {

struct ErasureCommands::Flags {
  ConfigSources sources;
  std::string project;
  std::vector<std::string> distinct_ids;
  std::string distinct_ids_file;
  bool no_linked = false;
  bool purge_now = false;
  std::string out;
  std::string key;
  std::string event_name;
};

namespace {

// Reads one id a line (empty lines skipped) into `ids`, up to `limit`.
Status ReadIdsFile(const std::string& path, size_t limit, std::string_view limit_name,
                   std::vector<std::string>* ids) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::NotFound("--distinct-ids " + path + ": cannot be read");
  }
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.empty()) {
      continue;
    }
    if (ids->size() == limit) {
      return Status::ResourceExhausted("--distinct-ids " + path + ": more than " +
                                       std::to_string(limit) + " ids (" + std::string(limit_name) +
                                       ")");
    }
    ids->push_back(std::move(line));
  }
  return Status::Ok();
}

}  // namespace

ErasureCommands::ErasureCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& flags = *flags_;
  erase_ = app.add_subcommand(
      "erase",
      "erase people by distinct id: invisible at once, purged from every file in the background "
      "or with --purge-now before it returns (in-process; or POST /api/erase)");
  access_request_ = app.add_subcommand(
      "access-request",
      "everything stored about people (events, profile updates, policy versions) as one JSON "
      "document (in-process; or POST /api/access-request)");
  for (CLI::App* command : {erase_, access_request_}) {
    flags.sources.AddFlags(command, false);
    command->add_option("--project", flags.project, "project name")->required();
    command->add_option("--distinct-id", flags.distinct_ids, "a distinct id, repeatable");
    command->add_option("--distinct-ids", flags.distinct_ids_file,
                        "a file of distinct ids, one a line");
    command->add_flag("--no-linked", flags.no_linked,
                      "only the ids named, not the ids merged into the same person");
  }
  erase_->add_flag("--purge-now", flags.purge_now,
                   "rewrite the files holding them before returning");
  purge_property_ = app.add_subcommand(
      "purge-property",
      "purge every stored value of one property key (e.g. collected by mistake): invisible at "
      "once, removed from every file in the background or with --purge-now before it returns "
      "(in-process; or POST /api/properties/purge)");
  flags.sources.AddFlags(purge_property_, false);
  purge_property_->add_option("--project", flags.project, "project name")->required();
  purge_property_->add_option("--key", flags.key, "the property key")->required();
  purge_property_->add_option("--event", flags.event_name,
                              "only that event name's events (profiles are then kept)");
  purge_property_->add_flag("--purge-now", flags.purge_now,
                            "rewrite the files holding its values before returning");
  access_request_->add_option("--out", flags.out, "write to FILE (0600), not stdout");
}

ErasureCommands::~ErasureCommands() = default;

bool ErasureCommands::parsed() const {
  return erase_->parsed() || access_request_->parsed() || purge_property_->parsed();
}

int ErasureCommands::RunPurgeProperty() const {
  const Flags& flags = *flags_;
  // The same checks as the HTTP body's.
  std::string body = "{\"key\":";
  query::AppendJsonString(flags.key, &body);
  if (!flags.event_name.empty()) {
    body += ",\"event\":";
    query::AppendJsonString(flags.event_name, &body);
  }
  body += flags.purge_now ? ",\"purge\":\"now\"}" : "}";
  auto request = service::ParsePropertyPurge(body);
  if (!request.ok()) {
    return Fail(request.status());
  }
  auto config = flags.sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service =
      OpenServiceForCommand(*config, "send it to the running server's POST /api/properties/purge");
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, flags.project);
  if (!project.ok()) {
    return Fail(project.status());
  }
  auto purged = (*service)->PurgeProperty(service::LocalAccess(*project), *request);
  if (!purged.ok()) {
    return Fail(purged.status());
  }
  std::cout << service::PropertyPurgeOutcomeJson(*purged) << std::flush;
  return kExitOk;
}

int ErasureCommands::Run() const {
  if (purge_property_->parsed()) {
    return RunPurgeProperty();
  }
  const Flags& flags = *flags_;
  const bool erase = erase_->parsed();
  service::SubjectSelection selection;
  selection.distinct_ids = flags.distinct_ids;
  selection.linked = !flags.no_linked;
  selection.purge_now = flags.purge_now;
  const size_t limit = erase ? service::kErasureDistinctIdsMax : service::kAccessDistinctIdsMax;
  const std::string_view limit_name = erase ? "kErasureDistinctIdsMax" : "kAccessDistinctIdsMax";
  if (!flags.distinct_ids_file.empty()) {
    const Status read =
        ReadIdsFile(flags.distinct_ids_file, limit, limit_name, &selection.distinct_ids);
    if (!read.ok()) {
      return Fail(read);
    }
  }
  if (selection.distinct_ids.empty()) {
    return Fail(Status::InvalidArgument("--distinct-id or --distinct-ids: name at least one id"));
  }
  if (selection.distinct_ids.size() > limit) {
    return Fail(Status::ResourceExhausted("distinct ids: more than " + std::to_string(limit) +
                                          " (" + std::string(limit_name) + ")"));
  }
  auto config = flags.sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  // An access request reads: the retention rules apply first. An erasure
  // hides what it names whatever the rules say.
  const std::string_view alternative =
      erase ? "send the ids to the running server's POST /api/erase"
            : "send the ids to the running server's POST /api/access-request";
  auto service = erase ? OpenServiceForCommand(*config, alternative)
                       : OpenServiceToRead(*config, alternative);
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, flags.project);
  if (!project.ok()) {
    return Fail(project.status());
  }
  const service::Access access = service::LocalAccess(*project);
  if (erase) {
    auto erased = (*service)->Erase(access, selection);
    if (!erased.ok()) {
      return Fail(erased.status());
    }
    std::cout << service::ErasureOutcomeJson(*erased) << std::flush;
    return kExitOk;
  }
  auto document = (*service)->AccessRequest(access, selection);
  if (!document.ok()) {
    return Fail(document.status());
  }
  if (flags.out.empty()) {
    std::cout << *document << std::flush;
    return kExitOk;
  }
  const Status written = NewPosixFileSystem()->WriteFileAtomically(flags.out, *document, 0600);
  return written.ok() ? kExitOk : Fail(written);
}

}  // namespace minpanel::cli
