// `minpanel backup` and `minpanel restore` (docs/privacy.md, "Backup and
// restore"): the command-line face of service/backup.h. A backup runs
// beside a running server (it takes no lock); a restore writes a new data
// folder and opens it once. `-` streams a tar archive (Debian's tar).
#include <stdlib.h>

#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "service/backup.h"

namespace minpanel::cli {

struct BackupCommands::Flags {
  ConfigSources sources;
  std::string to;
  std::string keys_to;
  service::RestoreOptions restore;
};

namespace {

namespace fs = std::filesystem;

// A new scratch folder beside `near` (so hard links still work), for a tar
// stream's contents.
Result<std::string> ScratchBeside(const std::string& near) {
  fs::path parent = fs::absolute(near).parent_path();
  std::error_code error;
  fs::create_directories(parent, error);
  std::string pattern = (parent / ".minpanel-backup-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::IoError("cannot create a scratch folder in " + parent.string());
  }
  return pattern;
}

Status RunTar(const std::string& arguments) {
  const int status = std::system(("tar " + arguments).c_str());
  if (status != 0) {
    return Status::IoError("tar " + arguments + " failed (status " + std::to_string(status) + ")");
  }
  return Status::Ok();
}

std::string Quoted(const std::string& path) { return "'" + path + "'"; }

std::string Describe(const service::BackupSummary& summary) {
  return std::to_string(summary.segments) + " segments and " + std::to_string(summary.log_files) +
         " log files (" + std::to_string(summary.store_bytes) + " bytes, up to log file " +
         std::to_string(summary.end_log_file) + " offset " +
         std::to_string(summary.end_log_offset) + "), " + std::to_string(summary.files) +
         " other files (" + std::to_string(summary.bytes) + " bytes)";
}

int Backup(const ConfigSources& sources, const std::string& to, const std::string& keys_to) {
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (to == "-" && keys_to == "-") {
    return Fail(Status::InvalidArgument("--to and --keys-to: at most one may be - (stdout)"));
  }
  if (to.find('\'') != std::string::npos || keys_to.find('\'') != std::string::npos) {
    return Fail(Status::InvalidArgument("--to, --keys-to: a path must not hold '"));
  }
  const std::shared_ptr<Clock> clock = NewSystemClock();
  std::string folder = to;
  if (to == "-") {
    auto scratch = ScratchBeside(config->data_folder);
    if (!scratch.ok()) {
      return Fail(scratch.status());
    }
    folder = *scratch + "/backup";
  }
  std::ostream& report = to == "-" || keys_to == "-" ? std::cerr : std::cout;
  auto summary = service::BackupDataFolder(*config, folder, *clock);
  Status status = summary.status();
  if (summary.ok()) {
    report << "backup of " << config->data_folder << ": " << Describe(*summary) << "\n";
    if (to == "-") {
      std::cout.flush();
      status = RunTar("-C " + Quoted(folder) + " -cf - .");
    }
  }
  if (to == "-") {
    std::error_code error;
    fs::remove_all(fs::path(folder).parent_path(), error);
  }
  if (status.ok() && !keys_to.empty()) {
    std::string keys_folder = keys_to;
    if (keys_to == "-") {
      auto scratch = ScratchBeside(config->data_folder);
      status = scratch.status();
      keys_folder = scratch.ok() ? *scratch + "/keys" : "";
    }
    if (status.ok()) {
      auto files = service::BackupKeys(*config, keys_folder);
      status = files.status();
      if (files.ok()) {
        report << "keys (kept apart from the data backup): " << *files << " files\n";
        if (keys_to == "-") {
          status = RunTar("-C " + Quoted(keys_folder) + " -cf - .");
        }
      }
      if (keys_to == "-") {
        std::error_code error;
        fs::remove_all(fs::path(keys_folder).parent_path(), error);
      }
    }
  }
  return status.ok() ? kExitOk : Fail(status);
}

int Restore(const ConfigSources& sources, service::RestoreOptions options) {
  const std::string from = options.from;
  auto config = sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (from.find('\'') != std::string::npos) {
    return Fail(Status::InvalidArgument("--from: a path must not hold '"));
  }
  std::string folder = from;
  if (from == "-") {
    auto scratch = ScratchBeside(config->data_folder);
    if (!scratch.ok()) {
      return Fail(scratch.status());
    }
    folder = *scratch;
    if (const Status untar = RunTar("-C " + Quoted(folder) + " -xf -"); !untar.ok()) {
      std::error_code error;
      fs::remove_all(folder, error);
      return Fail(untar);
    }
  }
  options.from = folder;
  auto summary = service::RestoreDataFolder(*config, options, NewSystemClock());
  if (from == "-") {
    std::error_code error;
    fs::remove_all(folder, error);
  }
  if (!summary.ok()) {
    return Fail(summary.status());
  }
  std::cout << "restored into " << config->data_folder << ": " << Describe(*summary)
            << "; erasures made since the backup re-applied: " << summary->erasures_reapplied
            << " (" << summary->subjects_reerased << " subjects; "
            << summary->subject_files_rewritten << " audit subject files rewritten, "
            << summary->gdpr_results_removed << " GDPR retrieval results removed)"
            << "; property purges re-applied: " << summary->property_purges_reapplied
            << "; retention applied: " << summary->retention_drops << " drops, "
            << summary->profiles_expired << " profiles expired\n";
  if (!summary->retention_failure.empty()) {
    std::cerr << "minpanel: warning: retention not applied to the restored folder ("
              << summary->retention_failure << "); the server applies it when it starts\n";
  }
  if (!summary->audit_previous_key.empty()) {
    std::cout << "the audit log's checkpoints go on under this key folder's signing key, in a new "
                 "key epoch; the earlier ones were signed by "
              << summary->audit_previous_key
              << " (check them with `minpanel audit verify --public-key` and that key)\n";
  }
  return kExitOk;
}

}  // namespace

BackupCommands::BackupCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& flags = *flags_;
  backup_ = app.add_subcommand(
      "backup",
      "copy the data folder consistently while a server runs, into a new folder or as a tar "
      "stream (--to -); the keys only with --keys-to, apart (docs/privacy.md)");
  flags.sources.AddFlags(backup_, false);
  backup_->add_option("--to", flags.to, "a new folder, or - for a tar stream on stdout")
      ->required();
  backup_->add_option("--keys-to", flags.keys_to,
                      "also copy the key folder and the access keys here (a new folder, or -); "
                      "keep it apart from the data backup");
  restore_ = app.add_subcommand(
      "restore",
      "restore a backup into a new, empty data folder (--data) and, with --keys-from, its keys "
      "into a new key folder (--keys); the server stopped");
  flags.sources.AddFlags(restore_, false);
  restore_
      ->add_option("--from", flags.restore.from,
                   "the backup folder, or - for a tar stream on stdin")
      ->required();
  restore_->add_option("--keys-from", flags.restore.keys_from,
                       "the keys backup folder (--keys-to)");
  restore_->add_option("--erasures-from", flags.restore.erasures_from,
                       "where the erasures made after the backup are read: the live data folder "
                       "or a later backup (default: the folder the backup was taken from)");
  restore_->add_option("--erasures-keys-from", flags.restore.erasures_keys_from,
                       "the key folder holding that store's erasure journal (default: the key "
                       "folder the backup was taken with, or <--erasures-from>.keys)");
  restore_->add_flag("--no-later-erasures", flags.restore.no_later_erasures,
                     "confirm that no erasure was made after the backup, when the folder that "
                     "would say so is gone");
}

BackupCommands::~BackupCommands() = default;

bool BackupCommands::parsed() const { return backup_->parsed() || restore_->parsed(); }

int BackupCommands::Run() const {
  if (backup_->parsed()) {
    return Backup(flags_->sources, flags_->to, flags_->keys_to);
  }
  return Restore(flags_->sources, flags_->restore);
}

}  // namespace minpanel::cli
