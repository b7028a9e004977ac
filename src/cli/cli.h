// The cli module: the `minpanel` command line, a thin face over
// service::Service (and server::Server for `serve`). Subcommands:
//   serve, project create|list|rotate-secret, import, export, debug dump.
// Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 an import that
// finished with some records rejected.
#pragma once

namespace minpanel::cli {

int RunCli(int argc, char** argv);

}  // namespace minpanel::cli
