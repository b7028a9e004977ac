// `minpanel datamap`: the command-line face of GET /api/datamap (the data
// map; docs/privacy.md, "The data map"), over the data folder in-process.
#include <fstream>
#include <iostream>

#include "cli/commands.h"

namespace minpanel::cli {

CLI::App* AddDataMapCommand(CLI::App& app, ConfigSources* sources, DataMapCommandOptions* options) {
  CLI::App* command = app.add_subcommand(
      "datamap",
      "the data map (records of processing): sources, property keys seen, what the policy "
      "stores of each, retention, who can read it, where it goes (in-process: the server "
      "must be stopped, or use GET /api/datamap)");
  sources->AddFlags(command, false);
  command->add_option("--project", options->project, "one project (default: every project)");
  command->add_option("--format", options->format, "markdown (default), json or html");
  command->add_option("--out", options->out_file, "write to this file (default: stdout)");
  return command;
}

int DataMap(const ConfigSources& sources, const DataMapCommandOptions& options) {
  auto format = service::ParseDataMapFormat(options.format);
  if (!format.ok()) {
    return Fail(format.status());
  }
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  auto service = OpenServiceForCommand(*config, "ask the running server: GET /api/datamap");
  if (!service.ok()) {
    return Fail(service.status());
  }
  std::vector<service::Project> projects;
  if (options.project.empty()) {
    projects = (*service)->projects().List();
  } else {
    auto project = FindProject(**service, options.project);
    if (!project.ok()) {
      return Fail(project.status());
    }
    projects.push_back(*project);
  }
  service::DataMap map;
  map.generated_ms = (*service)->clock().NowMs();
  for (const service::Project& project : projects) {
    auto project_map = (*service)->DataMapOf(service::LocalAccess(project));
    if (!project_map.ok()) {
      return Fail(project_map.status());
    }
    map.projects.push_back(std::move(project_map).value());
  }
  const std::string text = service::RenderDataMap(map, *format);
  if (options.out_file.empty()) {
    std::cout << text << std::flush;
    return kExitOk;
  }
  std::ofstream out(options.out_file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return Fail(Status::IoError("--out " + options.out_file + ": cannot be written"));
  }
  return kExitOk;
}

}  // namespace minpanel::cli
