// `minpanel incident crossref --leaked FILE --accounts FILE [--orgs FILE]
// --out FOLDER ...`: cross-references a leaked file against the accounts
// export and writes the impact file, summaries, regulator report draft and
// notices (docs/incident.md, docs/formats/incident.md).
//
// It works on files alone, with no data folder, so it calls the incident
// module directly rather than through service; the audit-log half of
// `incident` (blast radius of a key) will go through service when it exists.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "incident/incident.h"
#include "privacy/detectors.h"

namespace minpanel::cli {

struct IncidentCommand::Flags {
  std::string leaked;
  std::string accounts;
  std::string orgs;
  std::vector<std::string> maps;
  std::string out;
  std::string detected;
  std::string contained;
  std::string notified;
  incident::ReportOptions report;
  bool no_notices = false;
};

IncidentCommand::IncidentCommand(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  CLI::App* incident = app.add_subcommand(
      "incident", "incident response: cross-reference a leaked file with your accounts");
  incident->require_subcommand(1);
  crossref_ = incident->add_subcommand(
      "crossref",
      "match a leaked file (CSV, JSON, JSON lines) to the accounts file; write the impact, "
      "summaries, regulator report draft and notices into --out (docs/incident.md)");
  Flags& flags = *flags_;
  crossref_->add_option("--leaked", flags.leaked, "the leaked file")->required();
  crossref_->add_option("--accounts", flags.accounts, "the accounts export")->required();
  crossref_->add_option("--orgs", flags.orgs, "the organisations export (ids, names, admins)");
  crossref_->add_option("--map", flags.maps,
                        "FILE.COLUMN=KIND, repeatable: what a column holds (FILE leaked, "
                        "accounts or orgs; KIND e.g. user_id, email, org_id, ignore)");
  crossref_
      ->add_option("--out", flags.out,
                   "output folder, created 0700 (must not exist or be empty); keep it "
                   "outside the data folder: it holds personal data")
      ->required();
  crossref_->add_option("--company", flags.report.company, "the company's name")->required();
  crossref_
      ->add_option("--domain", flags.report.domain,
                   "bare domain people are told to type by hand (example.com)")
      ->required();
  crossref_->add_option("--contact", flags.report.contact,
                        "contact point (DPO email or phone; no links)");
  crossref_->add_option("--from", flags.report.from_address,
                        "From: address of the notices (default security@DOMAIN)");
  crossref_->add_option("--description", flags.report.description,
                        "nature of the breach, for the regulator report");
  crossref_->add_option("--measure", flags.report.measures,
                        "a measure taken or proposed, repeatable");
  crossref_->add_option("--detected", flags.detected, "when the breach was detected (ISO-8601)");
  crossref_->add_option("--contained", flags.contained, "when it was contained (ISO-8601)");
  crossref_->add_option("--notified", flags.notified, "when the regulator was notified (ISO-8601)");
  crossref_->add_option("--templates", flags.report.templates_folder,
                        "folder of edited notice templates: en/user.txt, en/admin.txt, "
                        "es/user.txt, es/admin.txt");
  crossref_->add_flag("--no-notices", flags.no_notices, "write no notices");
}

IncidentCommand::~IncidentCommand() = default;

bool IncidentCommand::parsed() const { return crossref_->parsed(); }

namespace {

std::optional<std::string> Given(const std::string& text) {
  return text.empty() ? std::nullopt : std::optional<std::string>(text);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Result<incident::Table> ReadInput(const std::string& path, std::string_view name) {
  const auto start = std::chrono::steady_clock::now();
  Result<incident::Table> table = incident::ReadTable(path);
  if (table.ok()) {
    std::fprintf(stderr, "%s: %zu rows read, %zu rejected, %zu columns (%s, %.2f s)\n",
                 std::string(name).c_str(), table->row_count(), table->rejected().size(),
                 table->columns().size(), std::string(FileFormatName(table->format())).c_str(),
                 SecondsSince(start));
  }
  return table;
}

void PrintRecognition(std::string_view name, const incident::Recognition& recognition) {
  for (const incident::ColumnRecognition& column : recognition.columns) {
    std::fprintf(stderr, "  %s.%s: %s (%s, %.2f)%s%s\n", std::string(name).c_str(),
                 column.name.c_str(), std::string(ColumnKindName(column.kind)).c_str(),
                 std::string(RecognitionSourceName(column.source)).c_str(), column.confidence,
                 column.note.empty() ? "" : "; ", column.note.c_str());
  }
}

}  // namespace

int IncidentCommand::Run() const {
  const Flags& flags = *flags_;
  const auto start = std::chrono::steady_clock::now();
  if (flags.maps.size() > incident::kMapOverridesMax) {
    return Fail(Status::ResourceExhausted("more --map flags than kMapOverridesMax (" +
                                          std::to_string(incident::kMapOverridesMax) + ")"));
  }
  std::vector<incident::ColumnOverride> overrides;
  for (const std::string& map : flags.maps) {
    auto parsed_map = incident::ParseColumnOverride(map);
    if (!parsed_map.ok()) {
      return Fail(parsed_map.status());
    }
    overrides.push_back(*parsed_map);
  }
  incident::ReportOptions report = flags.report;
  report.notices = !flags.no_notices;
  report.now_s = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  auto timeline =
      incident::MakeTimeline(Given(flags.detected), Given(flags.contained), Given(flags.notified));
  if (!timeline.ok()) {
    return Fail(timeline.status());
  }
  report.timeline = *timeline;
  if (report.from_address.empty()) {
    report.from_address = "security@" + report.domain;
  }
  if (Status valid = incident::ValidateReportOptions(report); !valid.ok()) {
    return Fail(valid);
  }
  const privacy::Detectors detectors;
  auto leaked = ReadInput(flags.leaked, "leaked");
  if (!leaked.ok()) {
    return Fail(leaked.status());
  }
  auto accounts = ReadInput(flags.accounts, "accounts");
  if (!accounts.ok()) {
    return Fail(accounts.status());
  }
  std::optional<incident::Table> orgs;
  if (!flags.orgs.empty()) {
    auto read = ReadInput(flags.orgs, "orgs");
    if (!read.ok()) {
      return Fail(read.status());
    }
    orgs = std::move(*read);
  }
  const auto recognise_start = std::chrono::steady_clock::now();
  auto leaked_columns = incident::RecognizeColumns(*leaked, "leaked", overrides, detectors);
  auto account_columns = incident::RecognizeColumns(*accounts, "accounts", overrides, detectors);
  if (!leaked_columns.ok() || !account_columns.ok()) {
    return Fail(!leaked_columns.ok() ? leaked_columns.status() : account_columns.status());
  }
  std::optional<incident::Recognition> org_columns;
  if (orgs.has_value()) {
    auto recognised = incident::RecognizeColumns(*orgs, "orgs", overrides, detectors);
    if (!recognised.ok()) {
      return Fail(recognised.status());
    }
    org_columns = std::move(*recognised);
  }
  std::fprintf(stderr, "columns recognised (%.2f s):\n", SecondsSince(recognise_start));
  PrintRecognition("leaked", *leaked_columns);
  PrintRecognition("accounts", *account_columns);
  if (org_columns.has_value()) {
    PrintRecognition("orgs", *org_columns);
  }
  incident::CrossrefInput input{
      &*leaked,          &*leaked_columns,        &*accounts,
      &*account_columns, orgs ? &*orgs : nullptr, org_columns ? &*org_columns : nullptr};
  const auto match_start = std::chrono::steady_clock::now();
  auto impact = incident::Crossref(input);
  if (!impact.ok()) {
    return Fail(impact.status());
  }
  std::fprintf(stderr,
               "matched (%.2f s): %zu affected accounts, %zu organisations; leaked rows %llu = "
               "%llu matched + %llu org only + %llu unmatched + %llu rejected\n",
               SecondsSince(match_start), impact->accounts.size(), impact->orgs.size(),
               static_cast<unsigned long long>(impact->leaked_rows_seen),
               static_cast<unsigned long long>(impact->leaked_rows_matched_account),
               static_cast<unsigned long long>(impact->leaked_rows_matched_org_only),
               static_cast<unsigned long long>(impact->leaked_rows_unmatched),
               static_cast<unsigned long long>(impact->leaked_rows_rejected));
  const auto write_start = std::chrono::steady_clock::now();
  auto files = incident::WriteOutputs(flags.out, input, *impact, report);
  if (!files.ok()) {
    return Fail(files.status());
  }
  std::fprintf(stderr,
               "wrote %zu files to %s (%.2f s): %llu user notices, %llu admin notices, "
               "%llu accounts with no usable address; total %.2f s\n",
               files->written.size(), flags.out.c_str(), SecondsSince(write_start),
               static_cast<unsigned long long>(files->user_notices),
               static_cast<unsigned long long>(files->admin_notices),
               static_cast<unsigned long long>(files->accounts_without_address),
               SecondsSince(start));
  if (impact->warnings.size() + impact->warnings_not_listed > 0) {
    std::fprintf(stderr, "%zu warnings (listed in impact.json)\n",
                 impact->warnings.size() + static_cast<size_t>(impact->warnings_not_listed));
  }
  return kExitOk;
}

}  // namespace minpanel::cli
