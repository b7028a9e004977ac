// `minpanel audit trace LEAKED_FILE` (issue 6; docs/security.md,
// "Watermarked exports"): which watermarked export a leaked file, or a
// fragment of one, came from. Internal to the cli module.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

namespace minpanel::cli {

// Declares `trace` under the `audit` subcommand (which AccessCommands made
// before); Run() once it was parsed.
class TraceCommand {
 public:
  explicit TraceCommand(CLI::App& app);
  ~TraceCommand();
  bool parsed() const;
  int Run() const;

 private:
  struct Flags;
  std::unique_ptr<Flags> flags_;
  CLI::App* trace_ = nullptr;
};

}  // namespace minpanel::cli
