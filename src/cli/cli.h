// The cli module: the `minpanel` command line, a thin face over
// service::Service (and server::Server for `serve`). Subcommands:
//   serve, project create|list|rotate-secret, export.
// Exit codes: 0 success, 1 runtime failure, 2 usage error.
#pragma once

namespace minpanel::cli {

int RunCli(int argc, char** argv);

}  // namespace minpanel::cli
