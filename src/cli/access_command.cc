// `minpanel keys …` and `minpanel audit …` (issue 6; docs/security.md).
#include <cstdio>
#include <iostream>
#include <optional>

#include "audit/audit.h"
#include "audit/subjects_rewrite.h"
#include "cli/commands.h"
#include "core/time_units.h"
#include "service/access_keys.h"
#include "service/service.h"

namespace minpanel::cli {

struct AccessCommands::Flags {
  ConfigSources sources;
  std::string name;
  std::string project;
  bool all_projects = false;
  bool admin = false;
  std::vector<std::string> scopes;
  std::vector<std::string> events;
  std::vector<std::string> properties;
  int64_t expires_in_days = 0;
  uint32_t min_group_size = 0;
  service::KeyLimits limits;
  bool json = false;
  std::string id;
  audit::Filter filter;
  std::string public_key_hex;
  uint32_t older_than_days = 0;
};

namespace {

// Records a key change made from the command line (AuditLocally).
void AuditKeyLocally(const service::Config& config, std::string_view act,
                     const service::AccessKey& key) {
  AuditLocally(config, act, key.id, key.project_id);
}

}  // namespace

AccessCommands::AccessCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& flags = *flags_;
  CLI::App* keys = app.add_subcommand("keys", "access keys and their scopes (docs/security.md)");
  keys->require_subcommand(1);
  create_ = keys->add_subcommand("create", "create an access key; prints its secret once");
  flags.sources.AddFlags(create_, false);
  create_->add_option("--name", flags.name, "a label for people")->required();
  create_->add_option("--project", flags.project, "the project it is limited to");
  create_->add_flag("--all-projects", flags.all_projects, "a server-wide key");
  create_->add_flag("--admin", flags.admin,
                    "a server admin key: every scope on every project (the bootstrap key)");
  create_->add_option("--scope", flags.scopes,
                      "ingest, query:aggregate, query:subjects, export, admin, audit:read, "
                      "metrics (repeatable)");
  create_->add_option("--event", flags.events, "limit the key to this event (repeatable)");
  create_->add_option("--property", flags.properties,
                      "limit the key to this property (repeatable)");
  create_->add_option("--expires-in-days", flags.expires_in_days, "expiry; 0: never");
  create_->add_option("--rate", flags.limits.requests_per_second,
                      "requests per second (0: the server's [limits] key_requests_per_second)");
  create_->add_option("--export-rows-per-day", flags.limits.export_rows_per_day,
                      "rows its exports may return per UTC day (0: the server's default)");
  create_->add_option("--export-subjects-per-day", flags.limits.export_subjects_per_day,
                      "subjects its exports may return per UTC day (0: the server's default)");
  create_->add_flag("--json", flags.json,
                    "print only the key as one JSON line (with its secret), no note on stderr");
  create_->add_option("--min-group-size", flags.min_group_size,
                      "k-suppression of its queries, above the project's (0: the project's)");
  list_ = keys->add_subcommand("list", "list access keys (never their secrets)");
  flags.sources.AddFlags(list_, false);
  rotate_ = keys->add_subcommand("rotate", "replace a key's secret; prints the new one once");
  flags.sources.AddFlags(rotate_, false);
  rotate_->add_option("ID", flags.id, "the key id (mpk_…)")->required();
  revoke_ = keys->add_subcommand("revoke", "revoke a key at once");
  flags.sources.AddFlags(revoke_, false);
  revoke_->add_option("ID", flags.id, "the key id (mpk_…)")->required();
  enable_ = keys->add_subcommand(
      "enable", "lift an anomaly rule's suspension of a key (a running server takes it on SIGHUP)");
  flags.sources.AddFlags(enable_, false);
  enable_->add_option("ID", flags.id, "the key id (mpk_…)")->required();

  CLI::App* audit_command =
      app.add_subcommand("audit", "the audit log of reads and admin acts (docs/formats/audit.md)");
  audit_command->require_subcommand(1);
  verify_ = audit_command->add_subcommand(
      "verify", "check the hash chain and its anchors; names the first broken record");
  flags.sources.AddFlags(verify_, false);
  verify_->add_option("--public-key", flags.public_key_hex,
                      "check the checkpoints' signatures under this key (hex; default: the one "
                      "derived from the key folder's audit-signing.key)");
  public_key_ = audit_command->add_subcommand(
      "public-key", "print the audit signing key's public half (hex), to check copies elsewhere");
  flags.sources.AddFlags(public_key_, false);
  prune_ = audit_command->add_subcommand(
      "prune", "cut records older than N days from the log's head, behind a signed checkpoint");
  flags.sources.AddFlags(prune_, false);
  prune_->add_option("--older-than-days", flags.older_than_days, "N")
      ->required()
      ->check(CLI::Range(uint32_t{1}, audit::kAuditRetentionDaysMax));
  show_ = audit_command->add_subcommand("show", "print the newest records as JSON lines");
  // Issue 6 names it `audit tail`: the same command under either name.
  show_->alias("tail");
  flags.sources.AddFlags(show_, false);
  show_->add_option("--key", flags.filter.key, "only this key id");
  show_->add_option("--act", flags.filter.act,
                    "only acts starting with this (query, export, key.)");
  show_->add_option("--route", flags.filter.route, "only this route");
  show_->add_option("--from-ms", flags.filter.from_ms, "from this time (ms since the epoch)");
  show_->add_option("--to-ms", flags.filter.to_ms, "before this time");
  show_->add_option("--limit", flags.filter.limit, "at most this many (the newest)")
      ->check(CLI::Range(size_t{1}, audit::kShowRecordsMax));
}

AccessCommands::~AccessCommands() = default;

bool AccessCommands::parsed() const {
  return create_->parsed() || list_->parsed() || rotate_->parsed() || revoke_->parsed() ||
         enable_->parsed() || verify_->parsed() || show_->parsed() || public_key_->parsed() || prune_->parsed();
}

int AccessCommands::Run() const {
  const Flags& flags = *flags_;
  auto config = flags.sources.Build();
  if (!config.ok()) {
    return Fail(config.status());
  }
  if (public_key_->parsed() || prune_->parsed()) {
    return RunAuditKeyCommand(*config);
  }
  if (verify_->parsed() || show_->parsed()) {
    return RunAudit(*config);
  }
  auto file_system = NewPosixFileSystem();
  auto clock = NewSystemClock();
  auto keys = service::OpenAccessKeys(*config, file_system, clock);
  if (!keys.ok()) {
    return Fail(keys.status());
  }
  if (list_->parsed()) {
    for (const service::AccessKey& key : (*keys)->List()) {
      std::printf("%s\n", service::AccessKeyJson(key).c_str());
    }
    return kExitOk;
  }
  if (rotate_->parsed()) {
    auto rotated = (*keys)->Rotate(flags.id);
    if (!rotated.ok()) {
      return Fail(rotated.status());
    }
    AuditKeyLocally(*config, "key.rotate", rotated->key);
    std::printf("%s\n", service::AccessKeyJson(rotated->key, rotated->secret).c_str());
    return kExitOk;
  }
  if (revoke_->parsed() || enable_->parsed()) {
    auto changed = revoke_->parsed() ? (*keys)->Revoke(flags.id) : (*keys)->Enable(flags.id);
    if (!changed.ok()) {
      return Fail(changed.status());
    }
    AuditKeyLocally(*config, revoke_->parsed() ? "key.revoke" : "key.enable", *changed);
    std::printf("%s\n", service::AccessKeyJson(*changed).c_str());
    return kExitOk;
  }
  return CreateKey(*config, **keys);
}

int AccessCommands::CreateKey(const service::Config& config, service::AccessKeyStore& keys) const {
  const Flags& flags = *flags_;
  service::AccessKeySpec spec;
  spec.name = flags.name;
  spec.events = flags.events;
  spec.properties = flags.properties;
  spec.limits = flags.limits;
  if (flags.admin) {
    spec.scopes = service::kAllScopes;
  }
  for (const std::string& name : flags.scopes) {
    const auto scope = service::ParseScope(name);
    if (!scope.has_value()) {
      return Fail(Status::InvalidArgument("--scope: unknown scope '" + name + "' (" +
                                          service::ScopeList(service::kAllScopes) + ")"));
    }
    spec.scopes |= static_cast<uint32_t>(*scope);
  }
  if (flags.admin || flags.all_projects) {
    if (!flags.project.empty()) {
      return Fail(Status::InvalidArgument("--project: not with --admin or --all-projects"));
    }
  } else {
    if (flags.project.empty()) {
      return Fail(Status::InvalidArgument(
          "--project: name the project, or give --all-projects (or --admin)"));
    }
    auto projects = service::OpenProjects(config, NewPosixFileSystem(), NewSystemClock());
    if (!projects.ok()) {
      return Fail(projects.status());
    }
    const auto project = (*projects)->FindByName(flags.project);
    if (!project.has_value()) {
      return Fail(
          Status::NotFound("no project named '" + flags.project + "' (see minpanel project list)"));
    }
    spec.project_id = project->id;
  }
  if (flags.expires_in_days < 0) {
    return Fail(Status::InvalidArgument("--expires-in-days: must not be negative"));
  }
  if (flags.expires_in_days > 0) {
    spec.expires_ms = NewSystemClock()->NowMs() + flags.expires_in_days * 86'400'000;
  }
  spec.min_group_size = flags.min_group_size;
  auto created = keys.Create(spec);
  if (!created.ok()) {
    return Fail(created.status());
  }
  AuditKeyLocally(config, "key.create", created->key);
  std::printf("%s\n", service::AccessKeyJson(created->key, created->secret).c_str());
  if (!flags.json) {
    std::fprintf(stderr,
                 "minpanel: the secret is shown once; a running server takes the key on SIGHUP\n");
  }
  return kExitOk;
}

int AccessCommands::RunAuditKeyCommand(const service::Config& config) const {
  if (public_key_->parsed()) {
    auto key = service::AuditSigningKey(config, false);
    if (!key.ok()) {
      return Fail(key.status());
    }
    std::printf("%s\n", audit::PublicKeyHex(key->public_key).c_str());
    return kExitOk;
  }
  auto clock = NewSystemClock();
  auto log = service::OpenAuditLog(config, NewPosixFileSystem(), clock);
  if (!log.ok()) {
    return Fail(log.status());
  }
  auto pruned = (*log)->PruneBefore(clock->NowMs() - int64_t{flags_->older_than_days} * kDayMs);
  if (!pruned.ok()) {
    return Fail(pruned.status());
  }
  std::printf("pruned %llu records\n", static_cast<unsigned long long>(*pruned));
  return kExitOk;
}

int AccessCommands::RunAudit(const service::Config& config) const {
  auto file_system = NewPosixFileSystem();
  const std::string folder = config.data_folder + "/audit";
  if (!file_system->Exists(folder + "/log")) {
    return Fail(Status::NotFound("no audit log in " + folder));
  }
  if (show_->parsed()) {
    auto shown = audit::ShowLog(folder + "/log", *file_system, flags_->filter);
    if (!shown.ok()) {
      return Fail(shown.status());
    }
    // Client addresses are shown while their day's key lasts, "expired"
    // after (docs/formats/audit.md, "Client addresses").
    auto address_keys = service::OpenAuditAddressKeys(config, file_system, NewSystemClock());
    if (!address_keys.ok()) {
      std::fprintf(stderr, "minpanel: client addresses shown sealed: %s\n",
                   address_keys.status().ToString().c_str());
    }
    for (audit::AuditEntry& entry : shown->entries) {
      if (address_keys.ok()) {
        if (const Status revealed = (*address_keys)->RevealIn(&entry); !revealed.ok()) {
          std::fprintf(stderr, "minpanel: record %llu: %s\n",
                       static_cast<unsigned long long>(entry.seq), revealed.message().c_str());
        }
      }
      std::printf("%s\n", audit::EncodeEntry(entry).c_str());
    }
    if (shown->broken) {
      std::fprintf(stderr,
                   "minpanel: the log is broken after record %llu: run minpanel audit "
                   "verify\n",
                   static_cast<unsigned long long>(shown->last_seq));
      return kExitFailure;
    }
    return kExitOk;
  }
  std::optional<audit::PublicKey> public_key;
  if (!flags_->public_key_hex.empty()) {
    auto parsed = audit::ParsePublicKey(flags_->public_key_hex);
    if (!parsed.ok()) {
      return Fail(Status::InvalidArgument("--public-key: " + parsed.status().message()));
    }
    public_key = *parsed;
  } else if (auto key = service::AuditSigningKey(config, false); key.ok()) {
    public_key = key->public_key;
  }
  // The chain, its anchors and the subject files its records name
  // (docs/formats/audit.md, "Verifying subject files").
  auto verified = audit::VerifyFolderAndSubjectFiles(folder, *file_system,
                                                     public_key ? &*public_key : nullptr);
  if (!verified.ok()) {
    return Fail(verified.status());
  }
  const audit::VerifyReport& report = verified->log;
  if (!report.ok) {
    std::printf("broken: %s\n", report.problem.c_str());
    return kExitFailure;
  }
  const audit::SubjectFilesReport& subject_files = verified->subject_files;
  if (subject_files.bad > 0) {
    std::printf("broken: subject file %s (%llu bad subject files in all)\n",
                subject_files.problem.c_str(),
                static_cast<unsigned long long>(subject_files.bad));
    return kExitFailure;
  }
  std::printf("ok: %llu records, %llu anchors checked (%llu signed checkpoints%s), head %s\n",
              static_cast<unsigned long long>(report.records),
              static_cast<unsigned long long>(report.anchors),
              static_cast<unsigned long long>(report.signed_checkpoints),
              public_key ? "" : "; no audit key found, signatures not checked",
              report.head_hash_hex.c_str());
  if (public_key && report.other_key_checkpoints > 0) {
    // Key epochs (docs/formats/audit.md): the other keys are the anchors
    // file's word, which only a copy of that key kept elsewhere confirms.
    std::string epochs;
    for (const std::string& hex : report.key_epochs) {
      epochs += (epochs.empty() ? "" : ", ") + hex;
    }
    std::printf(
        "key epochs: %s; %llu more checkpoints verified under the key of their epoch, not this "
        "one (compare those keys with your copy, or verify with --public-key); this key vouches "
        "for records up to %llu\n",
        epochs.c_str(), static_cast<unsigned long long>(report.other_key_checkpoints),
        static_cast<unsigned long long>(report.trusted_seq));
  }
  std::printf(
      "subject files: %llu named by records, each with the SHA-256 the chain states last "
      "for it (%llu rewritten by erasures",
      static_cast<unsigned long long>(subject_files.files),
      static_cast<unsigned long long>(subject_files.rewritten));
  if (subject_files.pruned > 0) {
    std::printf("; %llu of those gone with their export records, which audit retention cut",
                static_cast<unsigned long long>(subject_files.pruned));
  }
  std::printf(")\n");
  if (report.base_seq > 0) {
    std::printf("pruned: records 1 to %llu were cut behind a signed checkpoint\n",
                static_cast<unsigned long long>(report.base_seq));
  }
  if (report.torn_tail_bytes > 0) {
    std::printf(
        "note: a torn tail of %llu bytes after record %llu (an append a crash "
        "interrupted, never acknowledged; cut off when the log is next opened)\n",
        static_cast<unsigned long long>(report.torn_tail_bytes),
        static_cast<unsigned long long>(report.records));
  }
  return kExitOk;
}

}  // namespace minpanel::cli
