// `minpanel query`: the command-line face of POST /api/query.
#include <fstream>
#include <iostream>
#include <iterator>

#include "cli/commands.h"

namespace minpanel::cli {
namespace {

// A query is a small JSON document; anything larger is not one.
constexpr size_t kQueryFileBytesMax = 1 << 20;

Result<std::string> ReadQueryText(const std::string& file) {
  std::string text;
  if (file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      return Status::NotFound("query file " + file + " cannot be read");
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (text.size() > kQueryFileBytesMax) {
    return Status::ResourceExhausted("query file " + file + ": more than " +
                                     std::to_string(kQueryFileBytesMax) +
                                     " bytes (kQueryFileBytesMax)");
  }
  return text;
}

}  // namespace

int Query(const ConfigSources& sources, const QueryCommandOptions& options) {
  auto text = ReadQueryText(options.file);
  if (!text.ok()) {
    return Fail(text.status());
  }
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service = OpenServiceToRead(*config, "send the query to the running server's POST /api/query");
  if (!service.ok()) {
    return Fail(service.status());
  }
  auto project = FindProject(**service, options.project);
  if (!project.ok()) {
    return Fail(project.status());
  }
  service::LocalQueryOptions local;
  local.raw_cells = options.raw_cells;
  auto answer = (*service)->Query(*project, *text, local);
  if (!answer.ok()) {
    return Fail(answer.status());
  }
  std::cout << *answer << "\n" << std::flush;
  return kExitOk;
}

}  // namespace minpanel::cli
