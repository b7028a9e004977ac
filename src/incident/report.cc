// The impact file (docs/formats/incident.md), the Markdown and HTML
// summaries and the regulator report draft (GDPR Article 33(3)).
#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/text.h"
#include "incident/incident.h"
#include "incident/report_text.h"

namespace minpanel::incident {

std::string HtmlEscape(std::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (const char byte : text) {
    switch (byte) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&quot;";
        break;
      case '\'':
        escaped += "&#39;";
        break;
      default:
        escaped.push_back(byte);
    }
  }
  return escaped;
}

// Markdown text: characters that would start markup are backslash-escaped,
// and HTML is escaped too, since Markdown renderers pass HTML through.
std::string MarkdownEscape(std::string_view text) {
  std::string escaped;
  for (const char byte : text) {
    if (std::string_view("\\`*_{}[]()#+-.!|<>&").find(byte) != std::string_view::npos) {
      escaped.push_back('\\');
    }
    escaped.push_back(byte == '\n' || byte == '\r' ? ' ' : byte);
  }
  return escaped;
}

std::vector<Category> CategoriesOf(uint32_t bits) {
  std::vector<Category> categories;
  for (size_t category = 0; category < kCategoryCount; ++category) {
    if (((bits >> category) & 1) != 0) {
      categories.push_back(static_cast<Category>(category));
    }
  }
  return categories;
}

std::vector<Category> NotInFile(uint32_t file_categories) {
  std::vector<Category> absent;
  for (const Category category : kSensitiveCategories) {
    if (((file_categories >> static_cast<uint32_t>(category)) & 1) == 0) {
      absent.push_back(category);
    }
  }
  return absent;
}

std::string_view CellOf(const Table& table, const Recognition& columns, size_t row,
                        ColumnKind kind) {
  for (const size_t column : columns.ColumnsOf(kind)) {
    const std::string_view value = table.Cell(row, column);
    if (!value.empty()) {
      return value;
    }
  }
  return {};
}

namespace {

std::string Number(uint64_t value) { return std::to_string(value); }

std::string Fixed2(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f", value);
  return text;
}

void AppendColumns(const Recognition& recognition, std::string* out) {
  *out += "[";
  for (size_t column_idx = 0; column_idx < recognition.columns.size(); ++column_idx) {
    const ColumnRecognition& column = recognition.columns[column_idx];
    *out += column_idx == 0 ? "\n      {" : ",\n      {";
    *out += "\"name\":";
    AppendJsonString(column.name, out);
    *out += ",\"kind\":\"" + std::string(ColumnKindName(column.kind)) + "\"";
    *out += ",\"category\":\"" + std::string(CategoryName(CategoryOf(column.kind))) + "\"";
    *out += ",\"source\":\"" + std::string(RecognitionSourceName(column.source)) + "\"";
    *out += ",\"confidence\":" + Fixed2(column.confidence);
    *out += ",\"name_kind\":\"" + std::string(ColumnKindName(column.name_kind)) + "\"";
    *out += ",\"content_kind\":\"" + std::string(ColumnKindName(column.content_kind)) + "\"";
    *out += ",\"values_sampled\":" + Number(column.values_sampled);
    *out += ",\"content_matches\":" + Number(column.content_matches);
    *out += ",\"values_non_empty\":" + Number(column.values_non_empty);
    *out += ",\"card_values\":" + Number(column.card_values);
    *out += ",\"iban_values\":" + Number(column.iban_values);
    *out += ",\"credential_values\":" + Number(column.credential_values);
    if (!column.note.empty()) {
      *out += ",\"note\":";
      AppendJsonString(column.note, out);
    }
    *out += "}";
  }
  *out += "]";
}

void AppendRejected(const std::vector<RejectedRow>& rows, std::string* out) {
  *out += "[";
  for (size_t row_idx = 0; row_idx < rows.size(); ++row_idx) {
    *out += row_idx == 0 ? "{" : ",{";
    *out += "\"line\":" + Number(rows[row_idx].line) + ",\"reason\":";
    AppendJsonString(rows[row_idx].reason, out);
    *out += "}";
  }
  *out += "]";
}

void AppendFile(std::string_view name, const Table* table, const Recognition* recognition,
                std::string* out) {
  if (table == nullptr) {
    return;
  }
  *out += ",\n    \"" + std::string(name) + "\": {\"format\":\"" +
          std::string(FileFormatName(table->format())) +
          "\",\"rows_seen\":" + Number(table->rows_seen()) +
          ",\"rows_kept\":" + Number(table->rows_kept()) +
          ",\"rows_rejected\":" + Number(table->rejected().size()) + ",\"rejected\":";
  AppendRejected(table->rejected(), out);
  *out += ",\"columns\":";
  AppendColumns(*recognition, out);
  *out += "}";
}

void AppendCategoryCounts(const std::array<uint64_t, kCategoryCount>& counts, std::string* out) {
  *out += "{";
  bool first = true;
  for (size_t category = 0; category < kCategoryCount; ++category) {
    if (counts[category] == 0) {
      continue;
    }
    *out += first ? "" : ",";
    first = false;
    *out += "\"" + std::string(CategoryName(static_cast<Category>(category))) +
            "\":" + Number(counts[category]);
  }
  *out += "}";
}

void AppendCategoryList(const std::vector<Category>& categories, std::string* out) {
  *out += "[";
  for (size_t idx = 0; idx < categories.size(); ++idx) {
    *out += (idx == 0 ? "\"" : ",\"") + std::string(CategoryName(categories[idx])) + "\"";
  }
  *out += "]";
}

void AppendTimeline(const Timeline& timeline, int64_t now_s, std::string* out) {
  const auto field = [out](std::string_view name, const std::optional<int64_t>& value) {
    *out += ",\"" + std::string(name) + "\":";
    if (value.has_value()) {
      *out += "\"" + FormatIsoTime(*value) + "\"";
    } else {
      *out += "null";
    }
  };
  *out += "{\"deadline_hours\":" + Number(kGdprNotificationHours);
  field("detected", timeline.detected_s);
  field("contained", timeline.contained_s);
  field("notified", timeline.notified_s);
  field("regulator_deadline", timeline.deadline_s);
  if (timeline.deadline_s.has_value()) {
    const int64_t reference = timeline.notified_s.value_or(now_s);
    *out += ",\"hours_left\":" + std::to_string((*timeline.deadline_s - reference) / 3600);
    *out += std::string(",\"deadline_met\":") +
            (timeline.notified_s.has_value()
                 ? (*timeline.notified_s <= *timeline.deadline_s ? "true" : "false")
                 : "null");
  }
  *out += "}";
}

void AppendNumber(uint64_t value, std::string* out) {
  char text[24];
  const auto [end, error] = std::to_chars(text, text + sizeof(text), value);
  (void)error;  // 24 bytes hold any uint64_t
  out->append(text, end);
}

// impact.json's format version (docs/formats/incident.md): 2 since the
// account entries name their exposure instead of repeating it.
constexpr uint64_t kImpactJsonVersion = 2;

// What every account's entry shares, made once: the accounts' columns (an
// entry is written per account: millions).
struct AccountWriter {
  AccountWriter(const CrossrefInput& input, const Impact& impact)
      : accounts(*input.accounts),
        impact(impact),
        user_id_columns(input.account_columns->ColumnsOf(ColumnKind::kUserId)),
        email_columns(input.account_columns->ColumnsOf(ColumnKind::kEmail)),
        org_id_columns(input.account_columns->ColumnsOf(ColumnKind::kOrgId)) {}

  std::string_view FirstCell(size_t row, const std::vector<size_t>& columns) const {
    for (const size_t column : columns) {
      const std::string_view value = accounts.Cell(row, column);
      if (!value.empty()) {
        return value;
      }
    }
    return {};
  }

  void Append(const AccountImpact& account, std::string* out) const {
    *out += "{\"accounts_line\":";
    AppendNumber(accounts.Line(account.account_row), out);
    *out += ",\"user_id\":";
    AppendJsonString(FirstCell(account.account_row, user_id_columns), out);
    *out += ",\"email\":";
    AppendJsonString(FirstCell(account.account_row, email_columns), out);
    *out += ",\"org_id\":";
    AppendJsonString(FirstCell(account.account_row, org_id_columns), out);
    *out += ",\"matched_by\":[";
    bool first = true;
    for (size_t method = 0; method < 5; ++method) {
      if (((account.methods >> method) & 1) != 0) {
        *out += first ? "\"" : ",\"";
        *out += MatchMethodName(static_cast<MatchMethod>(method));
        *out += "\"";
        first = false;
      }
    }
    *out += account.ambiguous ? "],\"ambiguous\":true" : "]";
    *out += ",\"leaked_lines\":[";
    bool first_line = true;
    impact.ForEachLeakedLine(account, [&](uint64_t line) {
      if (!first_line) {
        out->push_back(',');
      }
      first_line = false;
      AppendNumber(line, out);
    });
    *out += "],\"exposure\":";
    AppendNumber(account.exposure, out);
    *out += "}";
  }

  const Table& accounts;
  const Impact& impact;
  const std::vector<size_t> user_id_columns;
  const std::vector<size_t> email_columns;
  const std::vector<size_t> org_id_columns;
};

// impact.json's `exposures` (version 2: an account entry names its
// exposure instead of repeating its lists, which at 10M accounts were about
// 300 of its 470 bytes): per exposure its categories and leaked columns.
void AppendExposures(const CrossrefInput& input, const Impact& impact, std::string* out) {
  std::vector<std::string> column_json;
  for (const std::string& name : input.leaked->columns()) {
    column_json.emplace_back();
    AppendJsonString(name, &column_json.back());
  }
  for (size_t exposure_idx = 0; exposure_idx < impact.exposures.size(); ++exposure_idx) {
    const Exposure& exposure = impact.exposures[exposure_idx];
    *out += exposure_idx == 0 ? "\n    {\"exposure\":" : ",\n    {\"exposure\":";
    AppendNumber(exposure_idx, out);
    *out += ",\"exposed\":";
    AppendCategoryList(CategoriesOf(exposure.categories), out);
    *out += ",\"exposed_columns\":[";
    for (size_t column_idx = 0; column_idx < exposure.columns.size(); ++column_idx) {
      if (column_idx > 0) {
        out->push_back(',');
      }
      *out += column_json[exposure.columns[column_idx]];
    }
    *out += "]}";
  }
}

// impact.json's account entries are made in blocks of kAccountsPerBlock
// on kAccountFormatThreads threads (block b on thread b % threads) while
// the calling thread hands the finished blocks to the sink, in order: at
// 10M accounts the entries are 4 GB, formatting them was as long as
// writing them, and the two now overlap. At most kBlocksInFlight blocks
// wait formatted, so memory holds a few blocks, never the file.
constexpr size_t kAccountsPerBlock = 4096;  // about 2 MB of JSON
constexpr size_t kAccountFormatThreads = 2;
constexpr size_t kBlocksInFlight = 4;

Status SinkAccountEntries(const CrossrefInput& input, const Impact& impact,
                          const std::function<Status(std::string_view)>& sink) {
  const size_t accounts = impact.accounts.size();
  const size_t blocks = (accounts + kAccountsPerBlock - 1) / kAccountsPerBlock;
  std::mutex mutex;
  std::condition_variable changed;
  std::array<std::string, kBlocksInFlight> slots;
  std::array<bool, kBlocksInFlight> formatted{};
  size_t next_to_sink = 0;
  bool stop = false;  // the sink failed: the formatters leave
  const auto format = [&](size_t first_block) {
    const AccountWriter writer(input, impact);
    std::string text;
    for (size_t block = first_block; block < blocks; block += kAccountFormatThreads) {
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return stop || block < next_to_sink + kBlocksInFlight; });
        if (stop) {
          return;
        }
      }
      text.clear();
      const size_t end = std::min(accounts, (block + 1) * kAccountsPerBlock);
      for (size_t account_idx = block * kAccountsPerBlock; account_idx < end; ++account_idx) {
        text += account_idx == 0 ? "\n    " : ",\n    ";
        writer.Append(impact.accounts[account_idx], &text);
      }
      std::lock_guard lock(mutex);
      std::swap(slots[block % kBlocksInFlight], text);  // the slot's buffer comes back
      formatted[block % kBlocksInFlight] = true;
      changed.notify_all();
    }
  };
  std::array<std::thread, kAccountFormatThreads> formatters;
  for (size_t thread_idx = 0; thread_idx < kAccountFormatThreads; ++thread_idx) {
    formatters[thread_idx] = std::thread(format, thread_idx);
  }
  Status status;
  std::string piece;
  for (size_t block = 0; block < blocks && status.ok(); ++block) {
    {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return formatted[block % kBlocksInFlight]; });
      std::swap(piece, slots[block % kBlocksInFlight]);
      formatted[block % kBlocksInFlight] = false;
      ++next_to_sink;
      changed.notify_all();
    }
    status = sink(piece);
  }
  {
    std::lock_guard lock(mutex);
    stop = true;
    changed.notify_all();
  }
  for (std::thread& formatter : formatters) {
    formatter.join();
  }
  return status;
}

void AppendOrg(const CrossrefInput& input, const OrgImpact& org, std::string* out) {
  *out += "{\"org_id\":";
  AppendJsonString(org.org_id, out);
  *out += ",\"name\":";
  AppendJsonString(org.name, out);
  *out += ",\"affected_accounts\":" + Number(org.affected_accounts.size());
  *out += ",\"leaked_rows_org_only\":" + Number(org.leaked_rows_org_only);
  *out += ",\"accounts_by_category\":";
  AppendCategoryCounts(org.accounts_by_category, out);
  *out += ",\"admins\":[";
  bool first = true;
  for (const size_t row : org.admin_account_rows) {
    *out += first ? "{\"user_id\":" : ",{\"user_id\":";
    first = false;
    AppendJsonString(CellOf(*input.accounts, *input.account_columns, row, ColumnKind::kUserId), out);
    *out += ",\"email\":";
    AppendJsonString(CellOf(*input.accounts, *input.account_columns, row, ColumnKind::kEmail), out);
    *out += "}";
  }
  for (const std::string& email : org.admin_emails) {
    *out += first ? "{\"user_id\":null,\"email\":" : ",{\"user_id\":null,\"email\":";
    first = false;
    AppendJsonString(email, out);
    *out += "}";
  }
  *out += "]}";
}

}  // namespace

std::string ImpactJson(const CrossrefInput& input, const Impact& impact,
                       const ReportOptions& options) {
  std::string text;
  const Status written = WriteImpactJson(input, impact, options, [&text](std::string_view piece) {
    text += piece;
    return Status::Ok();
  });
  (void)written;  // the sink above never fails
  return text;
}

Status WriteImpactJson(const CrossrefInput& input, const Impact& impact,
                       const ReportOptions& options,
                       const std::function<Status(std::string_view)>& sink) {
  std::string out;
  // Handed to the sink a piece at a time: 10M accounts make gigabytes.
  const auto spill = [&]() -> Status {
    if (out.size() < kImpactJsonPieceBytes) {
      return Status::Ok();
    }
    MP_RETURN_IF_ERROR(sink(out));
    out.clear();
    return Status::Ok();
  };
  out += "{\n  \"format\": \"minpanel-incident-impact\",\n  \"version\": " +
         Number(kImpactJsonVersion) + ",\n";
  out += "  \"generated_at\": \"" + FormatIsoTime(options.now_s) + "\",\n  \"company\": ";
  AppendJsonString(options.company, &out);
  out += ",\n  \"files\": {\"_\": null";
  AppendFile("leaked", input.leaked, input.leaked_columns, &out);
  AppendFile("accounts", input.accounts, input.account_columns, &out);
  AppendFile("orgs", input.orgs, input.org_columns, &out);
  out += "},\n  \"counts\": {\"leaked_rows_seen\":" + Number(impact.leaked_rows_seen) +
         ",\"leaked_rows_rejected\":" + Number(impact.leaked_rows_rejected) +
         ",\"leaked_rows_matched_account\":" + Number(impact.leaked_rows_matched_account) +
         ",\"leaked_rows_matched_org_only\":" + Number(impact.leaked_rows_matched_org_only) +
         ",\"leaked_rows_unmatched\":" + Number(impact.leaked_rows_unmatched) +
         ",\"affected_accounts\":" + Number(impact.accounts.size()) +
         ",\"affected_orgs\":" + Number(impact.orgs.size()) + ",\"leaked_rows_by_method\":{";
  for (size_t method = 0; method < impact.leaked_rows_by_method.size(); ++method) {
    out += (method == 0 ? "\"" : ",\"") +
           std::string(MatchMethodName(static_cast<MatchMethod>(method))) +
           "\":" + Number(impact.leaked_rows_by_method[method]);
  }
  out += "},\"accounts_by_category\":";
  AppendCategoryCounts(impact.accounts_by_category, &out);
  out += ",\"accounts_by_country\":[";
  for (size_t country_idx = 0; country_idx < impact.accounts_by_country.size(); ++country_idx) {
    out += country_idx == 0 ? "{\"country\":" : ",{\"country\":";
    AppendJsonString(impact.accounts_by_country[country_idx].first, &out);
    out += ",\"accounts\":" + Number(impact.accounts_by_country[country_idx].second) + "}";
  }
  out += "]},\n  \"file_categories\": ";
  AppendCategoryList(CategoriesOf(impact.file_categories), &out);
  out += ",\n  \"not_in_file\": ";
  AppendCategoryList(NotInFile(impact.file_categories), &out);
  out += ",\n  \"timeline\": ";
  AppendTimeline(options.timeline, options.now_s, &out);
  out += ",\n  \"exposures\": [";
  AppendExposures(input, impact, &out);
  out += "],\n  \"accounts\": [";
  MP_RETURN_IF_ERROR(sink(out));
  out.clear();
  MP_RETURN_IF_ERROR(SinkAccountEntries(input, impact, sink));
  out += "],\n  \"organisations\": [";
  for (size_t org_idx = 0; org_idx < impact.orgs.size(); ++org_idx) {
    out += org_idx == 0 ? "\n    " : ",\n    ";
    AppendOrg(input, impact.orgs[org_idx], &out);
    MP_RETURN_IF_ERROR(spill());
  }
  out += "],\n  \"unmatched_rows\": [";
  for (size_t row_idx = 0; row_idx < impact.unmatched.size(); ++row_idx) {
    out += row_idx == 0 ? "{\"line\":" : ",{\"line\":";
    out += Number(impact.unmatched[row_idx].line) + ",\"reason\":";
    AppendJsonString(impact.unmatched[row_idx].reason, &out);
    out += "}";
    MP_RETURN_IF_ERROR(spill());
  }
  out += "],\n  \"warnings\": [";
  for (size_t warning_idx = 0; warning_idx < impact.warnings.size(); ++warning_idx) {
    const Warning& warning = impact.warnings[warning_idx];
    out += warning_idx == 0 ? "{\"file\":" : ",{\"file\":";
    AppendJsonString(warning.file, &out);
    out += ",\"line\":" + Number(warning.line) + ",\"message\":";
    AppendJsonString(warning.message, &out);
    out += "}";
  }
  out += "],\n  \"warnings_not_listed\": " + Number(impact.warnings_not_listed) + "\n}\n";
  return sink(out);
}

// ---- Human summaries

namespace {

constexpr size_t kSummaryOrgsListedMax = 100;
constexpr size_t kSummaryCountriesListedMax = 50;

struct SummaryFacts {
  std::vector<std::pair<std::string, std::string>> counts;  // label, number
  std::vector<std::pair<std::string, uint64_t>> categories;
  std::vector<std::pair<std::string, uint64_t>> countries;
  std::vector<std::array<std::string, 4>> orgs;  // id, name, affected, admins
  std::vector<std::string> not_in_file;
  std::vector<std::pair<std::string, std::string>> timeline;
  std::vector<std::array<std::string, 5>> columns;  // name, kind, category, source, confidence
};

SummaryFacts Facts(const CrossrefInput& input, const Impact& impact, const ReportOptions& options) {
  SummaryFacts facts;
  facts.counts = {
      {"Leaked rows read", Number(impact.leaked_rows_seen)},
      {"Rows matched to an account", Number(impact.leaked_rows_matched_account)},
      {"Rows matched to an organisation only", Number(impact.leaked_rows_matched_org_only)},
      {"Rows matched to nothing", Number(impact.leaked_rows_unmatched)},
      {"Rows rejected (malformed)", Number(impact.leaked_rows_rejected)},
      {"Affected accounts", Number(impact.accounts.size())},
      {"Affected organisations", Number(impact.orgs.size())},
  };
  for (size_t method = 0; method < impact.leaked_rows_by_method.size(); ++method) {
    facts.counts.push_back(
        {"Rows matched by " + std::string(MatchMethodName(static_cast<MatchMethod>(method))),
         Number(impact.leaked_rows_by_method[method])});
  }
  for (size_t category = 0; category < kCategoryCount; ++category) {
    if (impact.accounts_by_category[category] > 0) {
      facts.categories.push_back({std::string(CategoryName(static_cast<Category>(category))),
                                  impact.accounts_by_category[category]});
    }
  }
  for (size_t idx = 0; idx < impact.accounts_by_country.size() && idx < kSummaryCountriesListedMax;
       ++idx) {
    facts.countries.push_back(impact.accounts_by_country[idx]);
  }
  std::vector<const OrgImpact*> orgs;
  for (const OrgImpact& org : impact.orgs) {
    orgs.push_back(&org);
  }
  std::sort(orgs.begin(), orgs.end(), [](const OrgImpact* left, const OrgImpact* right) {
    return left->affected_accounts.size() > right->affected_accounts.size();
  });
  for (size_t idx = 0; idx < orgs.size() && idx < kSummaryOrgsListedMax; ++idx) {
    facts.orgs.push_back(
        {orgs[idx]->org_id, orgs[idx]->name, Number(orgs[idx]->affected_accounts.size()),
         Number(orgs[idx]->admin_account_rows.size() + orgs[idx]->admin_emails.size())});
  }
  for (const Category category : NotInFile(impact.file_categories)) {
    facts.not_in_file.push_back(std::string(NotInFileSentence(category, Language::kEnglish)));
  }
  const Timeline& timeline = options.timeline;
  const auto when = [](const std::optional<int64_t>& value) {
    return value.has_value() ? FormatIsoTime(*value) : std::string("not given");
  };
  facts.timeline = {
      {"Detected", when(timeline.detected_s)},
      {"Contained", when(timeline.contained_s)},
      {"Regulator notified", when(timeline.notified_s)},
      {"Regulator deadline (detected + 72 h, GDPR Art. 33(1))", when(timeline.deadline_s)}};
  if (timeline.deadline_s.has_value() && timeline.notified_s.has_value()) {
    facts.timeline.push_back({"Deadline met", *timeline.notified_s <= *timeline.deadline_s
                                                  ? "yes"
                                                  : "no: Art. 33(1) asks for the reasons for "
                                                    "the delay"});
  }
  for (const ColumnRecognition& column : input.leaked_columns->columns) {
    facts.columns.push_back({column.name, std::string(ColumnKindName(column.kind)),
                             std::string(CategoryName(CategoryOf(column.kind))),
                             std::string(RecognitionSourceName(column.source)),
                             Fixed2(column.confidence)});
  }
  return facts;
}

}  // namespace

std::string SummaryMarkdown(const CrossrefInput& input, const Impact& impact,
                            const ReportOptions& options) {
  const SummaryFacts facts = Facts(input, impact, options);
  std::string out = "# Incident summary: " + MarkdownEscape(options.company) + "\n\n";
  out += "Generated " + FormatIsoTime(options.now_s) + " by `minpanel incident crossref`.\n\n";
  out += "## Timeline\n\n| event | time (UTC) |\n| --- | --- |\n";
  for (const auto& [label, value] : facts.timeline) {
    out += "| " + MarkdownEscape(label) + " | " + MarkdownEscape(value) + " |\n";
  }
  out += "\n## Counts\n\n| | |\n| --- | ---: |\n";
  for (const auto& [label, value] : facts.counts) {
    out += "| " + MarkdownEscape(label) + " | " + value + " |\n";
  }
  out +=
      "\n## Affected accounts by category of data exposed\n\n| category | accounts |\n| --- | ---: "
      "|\n";
  for (const auto& [label, value] : facts.categories) {
    out += "| " + MarkdownEscape(label) + " | " + Number(value) + " |\n";
  }
  out += "\n## Not in the leaked file\n\n";
  if (facts.not_in_file.empty()) {
    out += "Every sensitive category (credentials, payment, content) is present in the file.\n";
  }
  for (const std::string& sentence : facts.not_in_file) {
    out += "- " + MarkdownEscape(sentence) + "\n";
  }
  out += "\n## Affected accounts by country\n\n| country | accounts |\n| --- | ---: |\n";
  for (const auto& [country, value] : facts.countries) {
    out += "| " + MarkdownEscape(country) + " | " + Number(value) + " |\n";
  }
  out += "\n## Affected organisations (most affected first, at most " +
         Number(kSummaryOrgsListedMax) +
         ")\n\n| org id | name | accounts | admins |\n| --- | --- | ---: | ---: |\n";
  for (const auto& org : facts.orgs) {
    out += "| " + MarkdownEscape(org[0]) + " | " + MarkdownEscape(org[1]) + " | " + org[2] + " | " +
           org[3] + " |\n";
  }
  out +=
      "\n## Columns of the leaked file\n\n| column | kind | category | recognised by | confidence "
      "|\n| --- | --- | --- | --- | ---: |\n";
  for (const auto& column : facts.columns) {
    out += "| " + MarkdownEscape(column[0]) + " | " + column[1] + " | " + column[2] + " | " +
           column[3] + " | " + column[4] + " |\n";
  }
  return out;
}

std::string SummaryHtml(const CrossrefInput& input, const Impact& impact,
                        const ReportOptions& options) {
  const SummaryFacts facts = Facts(input, impact, options);
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
      "'unsafe-inline'\">\n<meta name=\"referrer\" content=\"no-referrer\">\n<title>Incident "
      "summary: " +
      HtmlEscape(options.company) +
      "</title>\n<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em "
      "auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0 "
      "1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}td.n{text-align:"
      "right}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}</style></head><body>\n";
  out += "<h1>Incident summary: " + HtmlEscape(options.company) + "</h1>\n<p>Generated " +
         FormatIsoTime(options.now_s) + " by <code>minpanel incident crossref</code>.</p>\n";
  const auto table = [&out](std::string_view title,
                            const std::vector<std::vector<std::string>>& rows,
                            std::initializer_list<std::string_view> heads) {
    out += "<h2>" + HtmlEscape(title) + "</h2>\n<table><tr>";
    for (const std::string_view head : heads) {
      out += "<th>" + HtmlEscape(head) + "</th>";
    }
    out += "</tr>\n";
    for (const std::vector<std::string>& row : rows) {
      out += "<tr>";
      for (const std::string& cell : row) {
        const bool number = !cell.empty() && std::all_of(cell.begin(), cell.end(), [](char byte) {
          return (byte >= '0' && byte <= '9') || byte == '.';
        });
        out += (number ? "<td class=\"n\">" : "<td>") + HtmlEscape(cell) + "</td>";
      }
      out += "</tr>\n";
    }
    out += "</table>\n";
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& [label, value] : facts.timeline) {
    rows.push_back({label, value});
  }
  table("Timeline", rows, {"event", "time (UTC)"});
  rows.clear();
  for (const auto& [label, value] : facts.counts) {
    rows.push_back({label, value});
  }
  table("Counts", rows, {"", ""});
  rows.clear();
  for (const auto& [label, value] : facts.categories) {
    rows.push_back({label, Number(value)});
  }
  table("Affected accounts by category of data exposed", rows, {"category", "accounts"});
  out += "<h2>Not in the leaked file</h2>\n<ul>\n";
  for (const std::string& sentence : facts.not_in_file) {
    out += "<li>" + HtmlEscape(sentence) + "</li>\n";
  }
  out += "</ul>\n";
  rows.clear();
  for (const auto& [country, value] : facts.countries) {
    rows.push_back({country, Number(value)});
  }
  table("Affected accounts by country", rows, {"country", "accounts"});
  rows.clear();
  for (const auto& org : facts.orgs) {
    rows.push_back({org[0], org[1], org[2], org[3]});
  }
  table("Affected organisations (most affected first)", rows,
        {"org id", "name", "accounts", "admins"});
  rows.clear();
  for (const auto& column : facts.columns) {
    rows.push_back({column[0], column[1], column[2], column[3], column[4]});
  }
  table("Columns of the leaked file", rows,
        {"column", "kind", "category", "recognised by", "confidence"});
  out += "</body></html>\n";
  return out;
}

std::string RegulatorReport(const CrossrefInput& input, const Impact& impact,
                            const ReportOptions& options) {
  (void)input;
  std::string out = "# Personal data breach notification (GDPR Article 33) — DRAFT\n\n";
  out += "Controller: " + MarkdownEscape(options.company) + "\n\n";
  out += "This draft was generated by `minpanel incident crossref` on " +
         FormatIsoTime(options.now_s) +
         ". Review every section before sending; the numbers come from the cross-reference of "
         "the leaked file against the accounts file.\n\n";
  out += "## Timeline\n\n";
  const Timeline& timeline = options.timeline;
  const auto when = [](const std::optional<int64_t>& value) {
    return value.has_value() ? FormatIsoTime(*value) : std::string("(not given)");
  };
  out += "- Became aware (detected): " + when(timeline.detected_s) + "\n";
  out += "- Contained: " + when(timeline.contained_s) + "\n";
  out += "- Deadline for this notification (72 hours after becoming aware): " +
         when(timeline.deadline_s) + "\n";
  out += "- This notification: " + when(timeline.notified_s) + "\n";
  if (timeline.deadline_s && timeline.notified_s && *timeline.notified_s > *timeline.deadline_s) {
    out +=
        "- The notification is later than 72 hours: state the reasons for the delay "
        "(Art. 33(1)).\n";
  }
  out += "\n## (a) Nature of the breach\n\n";
  out += options.description.empty()
             ? "A dataset of personal data was obtained by an unauthorised party (describe how "
               "and by whom it was held).\n"
             : MarkdownEscape(options.description) + "\n";
  out +=
      "\nCategories of personal data concerned, with the number of affected data subjects "
      "(accounts) in each:\n\n";
  for (size_t category = 0; category < kCategoryCount; ++category) {
    if (impact.accounts_by_category[category] > 0) {
      out += "- " +
             std::string(CategoryDescription(static_cast<Category>(category), Language::kEnglish)) +
             ": " + Number(impact.accounts_by_category[category]) + "\n";
    }
  }
  for (const Category category : NotInFile(impact.file_categories)) {
    out += "- " + std::string(NotInFileSentence(category, Language::kEnglish)) + "\n";
  }
  out += "\nApproximate number of data subjects concerned: " + Number(impact.accounts.size()) +
         " accounts matched";
  if (impact.leaked_rows_unmatched > 0) {
    out += ", plus up to " + Number(impact.leaked_rows_unmatched) +
           " leaked records that match no account (people who may not be customers, or whose "
           "identifiers changed)";
  }
  out += ", in " + Number(impact.orgs.size()) + " customer organisations.\n\n";
  out +=
      "Approximate number of personal data records concerned: " + Number(impact.leaked_rows_seen) +
      " rows in the leaked file (" + Number(impact.leaked_rows_rejected) + " of them malformed).\n";
  out += "\n## (b) Contact point\n\n" +
         (options.contact.empty() ? std::string("(give the data protection officer or contact "
                                                "point with --contact)")
                                  : MarkdownEscape(options.contact)) +
         "\n";
  out += "\n## (c) Likely consequences\n\n";
  for (const std::string_view consequence : LikelyConsequences(impact.file_categories)) {
    out += "- " + std::string(consequence) + "\n";
  }
  out += "\n## (d) Measures taken or proposed\n\n";
  if (options.measures.empty()) {
    out += "- (list the measures with --measure, one flag each)\n";
  }
  for (const std::string& measure : options.measures) {
    out += "- " + MarkdownEscape(measure) + "\n";
  }
  out +=
      "- Each affected person is notified individually with exactly the categories of their "
      "data that were exposed; each affected organisation's administrators are notified "
      "with their users' counts. The notices contain no links and ask for nothing.\n";
  return out;
}

}  // namespace minpanel::incident
