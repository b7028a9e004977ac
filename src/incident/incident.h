// Incident response for a leaked file: read the leaked dataset and the
// company's accounts (CSV, a JSON array, a JSON object holding an array, or
// JSON lines of any shape), recognise what each column holds, match the
// leaked rows to accounts and organisations, and work out per account which
// categories of data were exposed and which the file does not hold at all.
// The outputs (impact JSON, Markdown and HTML summaries, a regulator report
// draft, notices) are written by `WriteOutputs`; their shapes are specified
// in docs/formats/incident.md and the method in docs/incident.md.
//
// Everything here is plain values and free functions: a `Table`, a
// `Recognition` or an `Impact` may be read from any thread once built; the
// functions keep no state between calls. The one shared piece is the
// privacy `Detectors`, which are immutable and thread-safe.
//
// The audit-log half (starting point 1, blast.cc): what a compromised key
// read and exported in a window, from the hash-chained audit log
// (docs/formats/audit.md) and its export subject files, verified as read;
// and which keys could have read one subject. `BlastTables` turns a blast
// radius into the same tables `WriteOutputs` takes, so the reports and
// notices are the cross-reference's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.h"

namespace minpanel::privacy {
class Detectors;
}

namespace minpanel::incident {

// Input limits. A file over a limit is refused with ResourceExhausted naming
// the limit; a row over a limit is rejected alone, with its line and reason.
inline constexpr uint64_t kFileBytesMax = 8ull << 30;          // any input file
inline constexpr uint64_t kJsonDocumentBytesMax = 3ull << 30;  // a JSON array or object, read whole
inline constexpr size_t kRowBytesMax = 1 << 20;                // one CSV record or JSON line
inline constexpr size_t kColumnsMax = 1024;                    // distinct columns in one file
static_assert(kColumnsMax <= UINT16_MAX, "Exposure::columns holds a column in 16 bits");
inline constexpr size_t kColumnNameBytesMax = 256;             // one column name (flattened path)
inline constexpr size_t kRowsMax = 50'000'000;                 // rows in one file
inline constexpr size_t kJsonDepthMax = 32;                    // nesting of one JSON row
inline constexpr size_t kJsonArrayElementsFlattenedMax = 64;   // "tags.0" … "tags.63" per array
inline constexpr size_t kMapOverridesMax = 256;                // --map flags
inline constexpr size_t kRecognitionSampleMax = 2000;          // values sampled per column
inline constexpr uint64_t kGdprNotificationHours = 72;         // GDPR Article 33(1)
inline constexpr size_t kOperatorTextBytesMax = 4096;  // --description, --measure, --contact
inline constexpr size_t kWarningsListedMax = 1000;     // warnings listed; the rest counted

// ---------------------------------------------------------------------------
// Tables

enum class FileFormat : uint8_t { kCsv, kJsonArray, kJsonObjectArray, kJsonLines };
std::string_view FileFormatName(FileFormat format);

// A row refused by a reader: its 1-based line and why. Never its content.
struct RejectedRow {
  uint64_t line = 0;
  std::string reason;
};

// A file read into rows of named string cells. Nested JSON objects become
// dotted column names ("user.address.city"), arrays indexed ones
// ("tags.0"); numbers and booleans keep their JSON text; null is absent.
// Cells live in one arena; a row holds only the columns it had.
class Table {
 public:
  const std::vector<std::string>& columns() const { return columns_; }
  size_t row_count() const { return row_line_.size(); }
  // The cell of `row` in `column`, or "" when the row has none.
  std::string_view Cell(size_t row, size_t column) const;
  // Calls visit(column, value) for every cell of `row` once per column,
  // the value Cell gives, empty cells left out; in column order when the
  // row's cells were added in column order (a CSV row's always are), else
  // column by column. The columns a row holds, without a search per column.
  template <typename Visit>
  void ForEachCell(size_t row, const Visit& visit) const {
    const uint64_t begin = row_begin_[row];
    const uint64_t end = row_begin_[row + 1];
    bool ascending = true;
    for (uint64_t cell_idx = begin + 1; cell_idx < end && ascending; ++cell_idx) {
      ascending = cells_[cell_idx - 1].column < cells_[cell_idx].column;
    }
    if (!ascending) {
      for (size_t column = 0; column < columns_.size(); ++column) {
        const std::string_view value = Cell(row, column);
        if (!value.empty()) {
          visit(column, value);
        }
      }
      return;
    }
    for (uint64_t cell_idx = begin; cell_idx < end; ++cell_idx) {
      const CellRef& cell = cells_[cell_idx];
      visit(size_t{cell.column}, std::string_view(arena_).substr(cell.offset, cell.length));
    }
  }
  // Brings where `row`'s cells are listed towards the cache (a look-up
  // about to read a cell of a row far from the last).
  void PrefetchRow(size_t row) const { __builtin_prefetch(&row_begin_[row]); }
  // The next two steps of such a look-up, each a few rows after the one
  // before, so that its three cache misses overlap others': the list of
  // `row`'s cells (reads where it is listed), then the bytes of its cell in
  // `column` (reads the list).
  void PrefetchCellList(size_t row) const { __builtin_prefetch(&cells_[row_begin_[row]]); }
  void PrefetchCell(size_t row, size_t column) const;
  // The 1-based line of the file where `row` starts.
  uint64_t Line(size_t row) const { return row_line_[row]; }
  FileFormat format() const { return format_; }
  const std::vector<RejectedRow>& rejected() const { return rejected_; }
  // Rows kept from the file: those held now plus those cleared before
  // (ClearRows, a file streamed in chunks).
  uint64_t rows_kept() const { return rows_cleared_ + row_count(); }
  // Rows seen in the file: kept plus rejected.
  uint64_t rows_seen() const { return rows_kept() + rejected_.size(); }
  std::optional<size_t> FindColumn(std::string_view name) const;

  // Building, for the readers: cells between BeginRow and EndRow form a row;
  // AbandonRow drops them and records the rejection.
  void set_format(FileFormat format) { format_ = format; }
  Result<size_t> ColumnIndex(std::string_view name);
  void BeginRow(uint64_t line);
  void AddCell(size_t column, std::string_view value);
  void EndRow();
  void AbandonRow(uint64_t line, std::string reason);
  void Reject(uint64_t line, std::string reason) { rejected_.push_back({line, std::move(reason)}); }
  void ReserveBytes(size_t bytes);
  // Room for `rows` rows of `cells` non-empty cells in all, so that a large
  // file's vectors are not grown, and copied, a doubling at a time. An
  // estimate: more rows or cells are still added as they come.
  void ReserveRows(size_t rows, size_t cells);
  // Drops the rows held (counted in rows_kept), keeping the columns, the
  // format and the rejected rows: the next chunk of a streamed file.
  void ClearRows();
  // Moves the rows held to `into` (which gets this table's columns and
  // format, and loses its own rows), then as ClearRows: a streamed chunk
  // handed to another thread while this table reads the next. The buffers
  // `into` held come back to this table, emptied but with their capacity:
  // a chunk handed back after use is read into again without its memory
  // being allocated, and its pages faulted in, afresh.
  void MoveRowsTo(Table* into);

 private:
  struct CellRef {
    uint32_t column;
    uint32_t length;
    uint64_t offset;
  };
  std::vector<std::string> columns_;
  std::map<std::string, size_t, std::less<>> column_index_;
  std::string arena_;
  std::vector<CellRef> cells_;
  std::vector<uint64_t> row_begin_;  // index into cells_; one more than rows
  std::vector<uint64_t> row_line_;
  uint64_t open_row_line_ = 0;
  size_t open_row_cells_ = 0;
  size_t open_row_arena_ = 0;
  FileFormat format_ = FileFormat::kCsv;
  std::vector<RejectedRow> rejected_;
  uint64_t rows_cleared_ = 0;
};

// Parses `text` (the whole file) into a table. The format is told by the
// first non-blank byte: '[' a JSON array of objects; '{' one JSON document
// holding an array of objects (its first such member) or else JSON lines;
// anything else CSV (RFC 4180 through libcsv, the header on the first
// record, the delimiter the most frequent of , ; tab in the header).
// Rows that are malformed, not UTF-8, too long or too deep are rejected
// alone with their line; a file with no header, or over kRowsMax rows,
// fails whole.
Result<Table> ParseTable(std::string_view text);
// Reads `path` (at most kFileBytesMax) and parses it.
Result<Table> ReadTable(const std::string& path);

// Rows of a streamed file held at once: the leaked side of a
// cross-reference is read in chunks this big, so that its memory does not
// grow with the file.
inline constexpr size_t kStreamChunkRows = 65'536;

// A file read in chunks of rows, with the readers, limits, rejections and
// line numbers of ParseTable. CSV and JSON lines are streamed: the file is
// mapped and each piece released once its rows are read, so memory holds one
// chunk; a JSON array (or an object holding one) is parsed whole, as
// ParseTable does, and handed out in one chunk (give large files as JSON
// lines). One thread at a time.
class TableStream {
 public:
  static Result<std::unique_ptr<TableStream>> Open(const std::string& path);
  ~TableStream();
  TableStream(const TableStream&) = delete;
  TableStream& operator=(const TableStream&) = delete;

  // Clears `chunk`'s rows (Table::ClearRows) and reads the next rows into it,
  // at most `rows_max` (a JSON document: all). Pass the same table every
  // call: its columns carry over, so a column keeps its index for the whole
  // file, and it gathers the file's rejected rows and counts. Returns false,
  // with no rows read, once the file is done; an error (no header, over
  // kRowsMax) stops the stream.
  Result<bool> Next(Table* chunk, size_t rows_max);

 private:
  class Reader;
  TableStream() = default;
  std::string path_;
  int fd_ = -1;
  const char* mapped_ = nullptr;
  size_t mapped_bytes_ = 0;
  size_t released_bytes_ = 0;
  std::unique_ptr<Reader> reader_;
  bool done_ = false;
};

// ---------------------------------------------------------------------------
// Column recognition

enum class ColumnKind : uint8_t {
  kUnknown,
  kIgnore,
  kUserId,
  kAnonymousId,
  kOrgId,
  kEmail,
  kPhone,
  kFullName,
  kFirstName,
  kLastName,
  kUsername,
  kIpAddress,
  kCity,
  kRegion,
  kCountry,
  kPostalCode,
  kStreetAddress,
  kCoordinates,
  kTimeZone,
  kUserAgent,
  kOs,
  kBrowser,
  kDevice,
  kReferrer,
  kUrl,
  kPassword,
  kPasswordHash,
  kSecret,
  kCardNumber,
  kIban,
  kPaymentDetail,
  kContent,
  kRole,
  kLanguage,
  kOrgName,
  kAdminEmail,
  kAdminUserId,
  kTimestamp,
  kEventName,
};
inline constexpr size_t kColumnKindCount = static_cast<size_t>(ColumnKind::kEventName) + 1;
std::string_view ColumnKindName(ColumnKind kind);
std::optional<ColumnKind> ParseColumnKind(std::string_view name);

// The categories of personal data a notice speaks of.
enum class Category : uint8_t {
  kIdentity,
  kContact,
  kLocation,
  kDevice,
  kReferrer,
  kInternalIds,
  kCredentials,
  kPayment,
  kContent,
  kAccount,
  kActivity,
  kNone,
};
inline constexpr size_t kCategoryCount = static_cast<size_t>(Category::kNone);
std::string_view CategoryName(Category category);
Category CategoryOf(ColumnKind kind);
// The categories stated as "not exposed" when no column of them exists.
inline constexpr Category kSensitiveCategories[] = {Category::kCredentials, Category::kPayment,
                                                    Category::kContent};

enum class RecognitionSource : uint8_t { kMap, kName, kContent, kNameAndContent, kNone };
std::string_view RecognitionSourceName(RecognitionSource source);

struct ColumnRecognition {
  std::string name;
  ColumnKind kind = ColumnKind::kUnknown;
  RecognitionSource source = RecognitionSource::kNone;
  double confidence = 0;  // 0..1
  ColumnKind name_kind = ColumnKind::kUnknown;
  ColumnKind content_kind = ColumnKind::kUnknown;
  uint64_t values_sampled = 0;    // non-empty values looked at for content
  uint64_t content_matches = 0;   // of those, how many were content_kind
  uint64_t values_non_empty = 0;  // in the whole column
  // Values anywhere in the column that hold a card number (Luhn), an IBAN,
  // a password hash, an API key, a JWT or a long secret, whatever the
  // column's kind: they put the row's data in that category too.
  uint64_t card_values = 0;
  uint64_t iban_values = 0;
  uint64_t credential_values = 0;
  std::string note;  // why a content finding overrode the name, and so on
};

struct Recognition {
  std::vector<ColumnRecognition> columns;  // one per table column, same order
  // Per row and column, whether the cell held a card/IBAN (payment) or a
  // credential-like value: bit 0 payment, bit 1 credentials. Empty when no
  // cell did (the common case). Indexed row * column_count + column.
  std::vector<uint8_t> sensitive_cells;
  std::vector<size_t> ColumnsOf(ColumnKind kind) const;
  bool HasCategory(Category category) const;
};

// An operator's override: column `column` of file `file` ("leaked",
// "accounts", "orgs") holds `kind`.
struct ColumnOverride {
  std::string file;
  std::string column;
  ColumnKind kind;
};
// Parses "FILE.COLUMN=KIND" (the column may contain dots; KIND one of
// ColumnKindName's names or "ignore").
Result<ColumnOverride> ParseColumnOverride(std::string_view text);

// Recognises each column by its name, by a sample of its values and by the
// operator's overrides for `file`; scans every cell for cards, IBANs and
// credentials. Fails when an override names a column the file lacks.
Result<Recognition> RecognizeColumns(const Table& table, std::string_view file,
                                     const std::vector<ColumnOverride>& overrides,
                                     const privacy::Detectors& detectors);
// RecognizeColumns in two parts, so that the second can run beside other
// work (crossref: beside the index's making and the leaked file's second
// reading, which look at the columns' kinds only): the kinds decided
// (values_non_empty and the card, IBAN and credential counts 0, no
// sensitive cells), then the every-cell scan of a table read whole — its
// counts and cells written to `scanned` (which is given the table's
// columns), added to the recognition with AddScan. Together the same
// recognition as RecognizeColumns's.
Result<Recognition> RecognizeColumnKinds(const Table& table, std::string_view file,
                                         const std::vector<ColumnOverride>& overrides,
                                         const privacy::Detectors& detectors);
void ScanTable(const Table& table, const privacy::Detectors& detectors, Recognition* scanned);
void AddScan(Recognition scanned, Recognition* recognition);

// Recognition of a file read in chunks (TableStream), in two passes: the
// sample taken as the first pass's chunks go by (Add), the decision (Decide:
// names, sample, overrides), then every cell of the second pass's chunks
// scanned for cards, IBANs and credentials (ScanSensitiveCells).
// RecognizeColumns is the same over one table. The sample: per column the
// non-empty values of rows at multiples of a stride, which doubles (and
// the rows kept thin out) each time 2 * kRecognitionSampleMax are kept;
// then kRecognitionSampleMax of them, evenly: spread over the whole file
// whatever its length, and the same however the file is cut in chunks.
class ColumnSampler {
 public:
  explicit ColumnSampler(const privacy::Detectors& detectors) : detectors_(detectors) {}
  // The next rows of the file, in order; the columns as the stream keeps them.
  void Add(const Table& chunk);
  // The recognition of the columns of `table` (the stream's table: its
  // column names), before the every-cell scan (values_non_empty and the
  // card, IBAN and credential counts are 0 until ScanSensitiveCells).
  Result<Recognition> Decide(const Table& table, std::string_view file,
                             const std::vector<ColumnOverride>& overrides) const;

 private:
  struct Sampled {
    uint64_t row;
    ColumnKind kind;
  };
  struct Sample {
    uint64_t stride = 1;
    std::vector<Sampled> kept;
  };
  const privacy::Detectors& detectors_;
  std::vector<Sample> samples_;
  uint64_t rows_ = 0;
};

// Scans every cell of `chunk` for card numbers, IBANs, password hashes and
// secrets: counts them (and the non-empty values) into `recognition`'s
// columns, and marks each such cell in `cells` (row * columns + column; bit
// 0 payment, bit 1 credentials), left empty when no cell has one.
void ScanSensitiveCells(const Table& chunk, const privacy::Detectors& detectors,
                        Recognition* recognition, std::vector<uint8_t>* cells);

// The kind one value looks like by itself (kUnknown when nothing fits).
ColumnKind ClassifyValue(std::string_view value, const privacy::Detectors& detectors);
// True for strings shaped like password hashes: bcrypt, argon2, crypt(3)
// SHA-2 and MD5, PBKDF2 (Django) and bare hex digests of 32, 40, 64 or 128.
bool LooksLikePasswordHash(std::string_view value);
// True when `digits` (ASCII digits only, 13..19 long) pass the Luhn check.
bool LuhnValid(std::string_view digits);

// ---------------------------------------------------------------------------
// Email normalisation

// An email as compared: NFKC and case folded (ICU's NFKC_Casefold), trimmed.
// Fails when the text is not UTF-8 or has no single '@'.
Result<std::string> NormalizeEmail(std::string_view email);
// NormalizeEmail into `folded` (its bytes replaced; unchanged on failure but
// for its contents): a buffer reused row after row makes no allocation.
Status NormalizeEmailTo(std::string_view email, std::string* folded);
// The normalised email with the "+tag" of its local part removed, and for
// gmail.com / googlemail.com the dots of the local part removed and the
// domain spelled gmail.com. `changed` tells which rules applied.
struct CanonicalEmail {
  std::string address;
  bool plus_removed = false;
  bool gmail_dots_removed = false;
};
CanonicalEmail CanonicalizeEmail(std::string_view normalized);
// CanonicalizeEmail into `canonical` (its address's bytes replaced, its
// flags set): reused row after row it makes no allocation.
void CanonicalizeEmailTo(std::string_view normalized, CanonicalEmail* canonical);

// ---------------------------------------------------------------------------
// Cross-reference

enum class MatchMethod : uint8_t {
  kUserId,
  kEmail,
  kEmailPlusAddress,
  kEmailGmailDots,
  kOrgId,
};
std::string_view MatchMethodName(MatchMethod method);

// What affected accounts lost: the categories of data with a value in
// their leaked rows (bit per Category; a card, IBAN or credential found in
// a cell of another column's kind counts too), and the leaked columns that
// had one. Most accounts share a handful (Impact::exposures).
struct Exposure {
  uint32_t categories = 0;        // bit per Category exposed
  std::vector<uint16_t> columns;  // ascending leaked columns (< kColumnsMax)
};

// An index of AccountImpact into one of Impact's tables that points nowhere.
inline constexpr uint32_t kNoIndex = UINT32_MAX;

// An affected account, flat: 40 bytes and no heap block of its own, since
// there can be millions. What accounts share (their exposure, the country
// and org id the leaked file gave) are indexes into Impact's tables; the
// lines after the first (rare) are in Impact::more_leaked_lines.
struct AccountImpact {
  uint64_t first_leaked_line = 0;  // the first line of the leaked file that matched it
  // Its further lines, in file order: Impact::more_leaked_lines[begin,
  // begin + more_leaked_lines).
  uint64_t more_leaked_lines_begin = 0;
  uint32_t more_leaked_lines = 0;
  uint32_t account_row = 0;  // row in the accounts table
  uint32_t exposure = 0;     // index into Impact::exposures
  // The first country and org id the leaked rows gave: indexes into
  // Impact::leaked_countries and Impact::leaked_org_ids, or kNoIndex.
  uint32_t leaked_country = kNoIndex;
  uint32_t leaked_org_id = kNoIndex;
  uint8_t methods = 0;     // bit per MatchMethod
  bool ambiguous = false;  // a canonical email fitted several accounts
};
static_assert(sizeof(AccountImpact) == 40, "an affected account is 40 bytes");
static_assert(kRowsMax <= UINT32_MAX,
              "an account row, and an account's count of leaked lines, fit in 32 bits");

struct OrgImpact {
  std::string org_id;
  std::string name;
  std::vector<size_t> affected_accounts;   // indexes into Impact::accounts
  std::vector<size_t> admin_account_rows;  // rows of the accounts table
  std::vector<std::string> admin_emails;   // from the orgs file, when not an account
  uint64_t leaked_rows_org_only = 0;       // rows that named this org but no account
  std::array<uint64_t, kCategoryCount> accounts_by_category{};
};

enum class RowOutcome : uint8_t { kMatchedAccount, kMatchedOrgOnly, kUnmatched };

struct UnmatchedRow {
  uint64_t line = 0;
  std::string reason;
};

struct Timeline {
  std::optional<int64_t> detected_s;
  std::optional<int64_t> contained_s;
  std::optional<int64_t> notified_s;
  std::optional<int64_t> deadline_s;  // detected + 72 h
};
// Parses ISO-8601 "YYYY-MM-DDTHH:MM[:SS[.fff]](Z|±HH:MM)" (or a space for
// T) into seconds since the epoch; `field` names the flag in errors.
Result<int64_t> ParseIsoTime(std::string_view text, std::string_view field);
std::string FormatIsoTime(int64_t seconds);
Result<Timeline> MakeTimeline(std::optional<std::string> detected,
                              std::optional<std::string> contained,
                              std::optional<std::string> notified);

struct Warning {
  std::string file;
  uint64_t line = 0;  // 0: about the whole file
  std::string message;
};

struct Impact {
  uint64_t leaked_rows_seen = 0;
  uint64_t leaked_rows_rejected = 0;
  uint64_t leaked_rows_matched_account = 0;
  uint64_t leaked_rows_matched_org_only = 0;
  uint64_t leaked_rows_unmatched = 0;
  std::array<uint64_t, 5> leaked_rows_by_method{};  // a row counts under each method that fit
  std::vector<AccountImpact> accounts;              // in accounts-file order
  // The accounts' tables: their exposures (impact.json's), and the
  // countries and org ids the leaked rows gave them, each numbered in order
  // of first use in `accounts`; and their lines after the first, account
  // after account.
  std::vector<Exposure> exposures;
  std::vector<std::string> leaked_countries;
  std::vector<std::string> leaked_org_ids;
  std::vector<uint64_t> more_leaked_lines;
  std::vector<OrgImpact> orgs;                      // by org id
  std::vector<UnmatchedRow> unmatched;
  std::array<uint64_t, kCategoryCount> accounts_by_category{};
  std::vector<std::pair<std::string, uint64_t>> accounts_by_country;  // most first
  uint32_t file_categories = 0;  // categories the leaked file holds at all
  std::vector<Warning> warnings;
  uint64_t warnings_not_listed = 0;
  void Warn(std::string file, uint64_t line, std::string message);

  const Exposure& ExposureOf(const AccountImpact& account) const {
    return exposures[account.exposure];
  }
  // "" when the leaked rows gave none.
  std::string_view LeakedCountry(const AccountImpact& account) const {
    return account.leaked_country == kNoIndex ? std::string_view()
                                              : leaked_countries[account.leaked_country];
  }
  std::string_view LeakedOrgId(const AccountImpact& account) const {
    return account.leaked_org_id == kNoIndex ? std::string_view()
                                             : leaked_org_ids[account.leaked_org_id];
  }
  // Calls visit(line) for each line of the leaked file that matched
  // `account`, in file order.
  template <typename Visit>
  void ForEachLeakedLine(const AccountImpact& account, const Visit& visit) const {
    visit(account.first_leaked_line);
    const uint64_t* more = more_leaked_lines.data() + account.more_leaked_lines_begin;
    for (uint32_t line_idx = 0; line_idx < account.more_leaked_lines; ++line_idx) {
      visit(more[line_idx]);
    }
  }
};

struct CrossrefInput {
  const Table* leaked = nullptr;
  const Recognition* leaked_columns = nullptr;
  const Table* accounts = nullptr;
  const Recognition* account_columns = nullptr;
  const Table* orgs = nullptr;  // optional
  const Recognition* org_columns = nullptr;
};

// Matches every kept leaked row: first by user id, then by normalised email,
// then by email with plus-addressing (and Gmail dots) removed on both
// sides, then by organisation id alone. Fails when the leaked file has no
// user id, email or org id column, or the accounts file has neither a user
// id nor an email column. The same as a CrossrefStream given the leaked
// table as one chunk.
Result<Impact> Crossref(const CrossrefInput& input);

// The cross-reference of a leaked file read in chunks: the accounts (and
// organisations) indexed once, each chunk of leaked rows matched as it
// comes, the totals made at Finish. Memory: the accounts, the index and the
// affected accounts, not the leaked file.
class CrossrefStream {
 public:
  // Indexes `input`'s accounts. `input.leaked_columns` is the leaked file's
  // recognition as decided (ColumnSampler::Decide); `input.leaked` is not
  // read here. `input` and what it points to must outlive the stream.
  static Result<std::unique_ptr<CrossrefStream>> Start(const CrossrefInput& input);
  ~CrossrefStream();
  // Matches the rows of `chunk` (the next rows of the leaked file, columns
  // as the recognition has them); `sensitive_cells` from ScanSensitiveCells
  // over the same chunk.
  void Add(const Table& chunk, const std::vector<uint8_t>& sensitive_cells);
  // Add in two halves, for a pipeline: Match looks a chunk's rows up in the
  // accounts' index (it reads only what Start built, so it may run on
  // other threads, several at once, while Apply adds earlier chunks);
  // Apply adds them to the impact, one chunk at a time in file order, on
  // one thread.
  struct Matches;
  std::unique_ptr<Matches> Match(const Table& chunk) const;
  void Apply(const Table& chunk, const std::vector<uint8_t>& sensitive_cells,
             const Matches& matches);
  // The impact, once every chunk was added: `input.leaked` (the stream's
  // table, holding the file's counts and rejected rows) and
  // `input.leaked_columns` (with the scan's counts) as they are then.
  Impact Finish();
  // How many blocks of the accounts' emails (65,536 rows each) had their
  // keys made by the user id thread once its own table was done, beside
  // the email thread (for tests: the index is the same either way).
  size_t email_blocks_made_beside() const;

 private:
  struct State;
  explicit CrossrefStream(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The cross-reference of a leaked file streamed from `leaked_path`
// (TableStream, `chunk_rows` rows at a time) against accounts and
// organisations held in memory: two passes over the file, the first to
// recognise its columns (ColumnSampler), the second to scan and match
// them. `input`'s leaked members are set here and point into the result.
struct StreamedCrossref {
  Table leaked;  // the leaked file's columns, counts and rejected rows (no rows)
  Recognition leaked_columns;
  Impact impact;
  double recognise_s = 0;  // the first pass
  double match_s = 0;      // the second, of which:
  double index_s = 0;      // the accounts' index (CrossrefStream::Start), before any row is matched
  double finish_s = 0;     // CrossrefStream::Finish, after the last
};
Result<std::unique_ptr<StreamedCrossref>> CrossrefLeakedFile(
    const std::string& leaked_path, CrossrefInput* input,
    const std::vector<ColumnOverride>& overrides, const privacy::Detectors& detectors,
    size_t chunk_rows = kStreamChunkRows);
// The two passes apart, so the first can run while the accounts are read:
// RecogniseLeakedFile is the first (it touches nothing else; any thread),
// CrossrefRecognisedLeakedFile given its recognition the second. The second reads the
// file on one thread, scans each chunk and looks its rows up on two others
// (a chunk each) and adds them up on the calling one, chunks in file order,
// so the result is the same as one thread's.
Result<Recognition> RecogniseLeakedFile(const std::string& leaked_path,
                                        const std::vector<ColumnOverride>& overrides,
                                        const privacy::Detectors& detectors,
                                        size_t chunk_rows = kStreamChunkRows);
Result<std::unique_ptr<StreamedCrossref>> CrossrefRecognisedLeakedFile(
    const std::string& leaked_path, CrossrefInput* input, Recognition leaked_columns,
    const privacy::Detectors& detectors, size_t chunk_rows = kStreamChunkRows);

// The kind a column or property name says by itself (the name dictionary
// of RecognizeColumns: "$city" is a city, "mp_country_code" a country);
// kUnknown when the name says nothing.
ColumnKind KindOfName(std::string_view name);

// ---------------------------------------------------------------------------
// Blast radius from the audit log (starting point 1)

inline constexpr uint64_t kSubjectsFileBytesMax = 4ull << 30;  // one export's subject file
inline constexpr size_t kBlastSubjectsMax = 50'000'000;        // distinct subjects in one report
inline constexpr size_t kBlastRecordsListedMax = 100'000;      // records listed per kind

// One audit record the key made in the window, as the report lists it.
// Never personal data: the log holds none.
struct BlastRecord {
  uint64_t seq = 0;
  int64_t time_ms = 0;
  int64_t started_ms = 0;  // an export's `export.start`; 0 when not found
  std::string act;
  std::string route;
  std::vector<uint32_t> projects;
  std::string params_sha256;
  std::vector<std::string> events;
  std::vector<std::string> properties;
  uint64_t rows = 0;
  uint64_t subjects = 0;
  uint64_t bytes = 0;
  std::string subjects_file;
  std::string outcome;
  // A query naming a subject's identity (distinct_id and the like): its
  // answer may name subjects, which the log does not list.
  bool names_subjects = false;
};

// What one subject lost: the property keys of every export that carried
// it, their kinds' categories, and those exports (by seq).
struct SubjectExposure {
  std::string subject;                  // "psn_" pseudonym, as exported
  std::vector<std::string> properties;  // sorted
  // The properties are exactly the keys that had a value in the subject's
  // rows; false when an export's subject file predates per-subject fields
  // (version 1): then every key of that export, which can over-state.
  bool fields_exact = true;
  uint32_t categories = 0;              // bit per Category
  std::vector<uint64_t> exports;        // seqs of the `export` records
  // Seqs of the `query` records whose answers listed it (a breakdown by a
  // subject's identity: docs/formats/audit.md, "Subject files").
  std::vector<uint64_t> queries;
};

// What a run verified of the chain (docs/formats/audit.md, "What a blast
// radius verifies"). A full walk (--verify-chain, or when the index cannot
// be used) hashes every record from the first and checks it against its
// successor, its sequence number and the anchors. An indexed run walks so
// only the records the key index did not cover yet (all of them when it
// was rebuilt), and checks each of the key's records where it lies: its
// hash link to the hash stored before it and from it to its successor, its
// seq and its key.
struct ChainCheck {
  bool ok = false;
  bool full_walk = false;                // every record walked; false: the key index was used
  uint64_t base_seq = 0;                 // a pruned log starts after this record
  uint64_t records = 0;                  // seq of the last valid record
  uint64_t records_walked = 0;           // records whose chain this run walked
  uint64_t anchors_checked = 0;          // anchors that matched, on the records walked
  uint64_t torn_tail_bytes = 0;          // an interrupted last append (never acknowledged)
  bool index_rebuilt = false;            // the index was missing or stale and made anew
  uint64_t indexed_records_checked = 0;  // the key's records read through the index
  std::string index_note;                // why the index was rebuilt, or not written
  std::string problem;                   // the first problem, naming the record
};

struct BlastRadius {
  std::string key;
  int64_t from_ms = 0;
  int64_t to_ms = 0;  // exclusive
  ChainCheck chain;
  uint64_t records_of_key = 0;            // every record of the key in the window
  std::vector<BlastRecord> exports;       // `export` records (what left, with subjects)
  std::vector<BlastRecord> open_exports;  // `export.start` with no end: what left is unknown
  // Queries; those whose answers listed subjects name a subject file, read
  // as an export's is (their subjects are in `subjects`).
  std::vector<BlastRecord> queries;
  std::vector<BlastRecord> other_acts;    // policy, key and audit acts
  uint64_t records_not_listed = 0;        // past kBlastRecordsListedMax
  std::vector<SubjectExposure> subjects;  // sorted by pseudonym
  std::vector<std::string> properties;    // every property key that left, sorted
  uint32_t categories = 0;                // bit per Category, over every subject
  std::vector<Warning> warnings;
};

struct BlastOptions {
  std::string audit_folder;  // <data>/audit
  std::string key;           // "mpk_…", "secret:<project>", "local"
  int64_t from_ms = 0;
  int64_t to_ms = INT64_MAX;  // exclusive
  // Go on past a broken chain: the report then covers the valid records
  // before the break only and says so in every output. Otherwise a broken
  // chain or subject file is Corruption naming the record.
  bool allow_broken = false;
  // Walk the whole chain (every record hashed, every anchor matched)
  // instead of reading the key's records through the key index.
  bool verify_chain = false;
  // The audit public key (`minpanel audit public-key`): the anchors'
  // signatures are checked when set.
  std::optional<std::array<uint8_t, 32>> audit_public_key;
};

// Collects every record `options.key` made from from_ms (inclusive) to
// to_ms (exclusive) in the audit log in `options.audit_folder`: exports
// with their subject files (each checked against the SHA-256 in its
// record), aggregate queries, and other acts. An export counts when its
// `export.start` is in the window. The key's records are found through the
// audit log's key index (brought up to date first, each record checked
// where it lies), or with `verify_chain` by walking the whole log with the
// chain and anchors verified; `chain` says which and what was checked.
// Memory holds one piece of the log and the subjects found, not the log.
Result<BlastRadius> ComputeBlastRadius(const BlastOptions& options, FileSystem& file_system);

// The blast radius as the machine-readable blast-radius.json
// (docs/formats/incident.md); `now_s` is its generated_at.
std::string BlastRadiusJson(const BlastRadius& blast, int64_t now_s);

// A blast radius as cross-reference input: a "leaked" table with one row
// per subject (column `distinct_id`, then one column per property key that
// left, the cell marking that the subject's data had it; the values
// themselves are not in the log), recognised by name. A subject whose
// pseudonym `account_of_subject` maps to an operator's user id carries that
// id instead, so that the accounts file matches it by user id.
struct BlastTables {
  Table leaked;
  Recognition leaked_columns;
};
Result<BlastTables> MakeBlastTables(const BlastRadius& blast,
                                    const std::map<std::string, std::string>& account_of_subject);

// An access key (or project secret) as who-could-read weighs it.
struct KeyReach {
  std::string key;  // "mpk_…" or "secret:<project>"
  std::string name;
  uint32_t project_id = 0;              // 0: every project
  bool can_export = false;              // raw events, subjects included
  bool can_query_subjects = false;      // select or break down by distinct id
  bool can_query_aggregate = false;     // counts only
  std::vector<std::string> events;      // empty: every event
  std::vector<std::string> properties;  // empty: every property
  int64_t valid_from_ms = 0;
  int64_t valid_to_ms = 0;  // revoked or expired; 0: still in force
};

// What the store holds of the subject, as the service counted it (the
// incident module does not read the store itself). Not consulted when the
// server holds the data folder.
struct SubjectInStore {
  bool consulted = false;
  std::string not_consulted;  // why not
  uint64_t events = 0;
  int64_t first_event_ms = 0;  // event times
  int64_t last_event_ms = 0;
  std::map<std::string, uint64_t> events_by_name;
  uint64_t profile_updates = 0;
};

struct WhoCouldRead {
  std::vector<std::string> subjects;  // the subject's pseudonyms (one per key version)
  uint32_t project_id = 0;
  // Keys whose project, scopes and validity could reach the subject's
  // events (`why` says how, and what limits apply).
  struct Candidate {
    KeyReach key;
    std::string reach;                  // "raw events", "rows by distinct id", "aggregates only"
    std::vector<uint64_t> exported_in;  // `export` seqs whose subject file lists the subject
    // `query` seqs whose answer listed the subject (its subject file does).
    std::vector<uint64_t> queried_in;
    // With the store consulted: how many of the subject's stored events
    // the key's event-name limit lets it read (all when it has none).
    uint64_t events_in_reach = 0;
  };
  std::vector<Candidate> candidates;
  // Exports that carried the subject by a credential not among the keys
  // given (the command line's "local", a key since deleted).
  std::vector<std::pair<std::string, uint64_t>> other_exports;  // key, seq
  // Query answers that listed the subject, by such a credential.
  std::vector<std::pair<std::string, uint64_t>> other_queries;  // key, seq
  ChainCheck chain;
  SubjectInStore store;
  std::vector<Warning> warnings;
};

// Which of `keys` could have read a subject of `project_id` (pseudonyms
// `subjects`, every version of the project's key) between from_ms and to_ms,
// and which exports (and live-view reads) and query answers in the audit log
// actually carried it: those whose subject files list it.
Result<WhoCouldRead> ComputeWhoCouldRead(const std::string& audit_folder, uint32_t project_id,
                                         const std::vector<std::string>& subjects,
                                         const std::vector<KeyReach>& keys, int64_t from_ms,
                                         int64_t to_ms, bool allow_broken, FileSystem& file_system);
// Adds what the store holds of the subject: `who->store`, each candidate's
// events_in_reach, and a warning when the store holds no event of it.
void AddStoreToWhoCouldRead(SubjectInStore store, WhoCouldRead* who);
std::string WhoCouldReadJson(const WhoCouldRead& who, int64_t now_s);

// ---------------------------------------------------------------------------
// Outputs

struct ReportOptions {
  std::string company;                // "Example Ltd"
  std::string domain;                 // bare domain the notices tell people to type
  std::string contact;                // contact point (Art. 33(3)(b)); no links
  std::string from_address;           // From: of notices; default security@<domain>
  std::string description;            // nature of the breach, in the operator's words
  std::vector<std::string> measures;  // measures taken or proposed
  Timeline timeline;
  std::string templates_folder;  // operator-edited templates; empty: built-in
  bool notices = true;
  int64_t now_s = 0;  // the time written into the outputs (Date: headers)
  // Further files to write beside impact.json (name, contents), such as
  // blast-radius.json; each name a plain file name.
  std::vector<std::pair<std::string, std::string>> extra_files;
};
// Checks the operator's text: the domain is a bare host, the contact is not
// a link, each text within kOperatorTextBytesMax and free of control bytes.
Status ValidateReportOptions(const ReportOptions& options);

struct OutputFiles {
  std::vector<std::string> written;  // paths, relative to the output folder
  uint64_t user_notices = 0;
  uint64_t admin_notices = 0;
  uint64_t accounts_without_address = 0;
};

// Writes into `folder` (created 0700; it must not exist or be empty, and
// every file is 0600): impact.json, summary.md, summary.html,
// regulator-report.md and, unless options.notices is false,
// notices/users/*.eml, notices/admins/*.eml and notices/mail-merge.csv.
Result<OutputFiles> WriteOutputs(const std::string& folder, const CrossrefInput& input,
                                 const Impact& impact, const ReportOptions& options);

// The pieces, for tests and for other faces.
std::string ImpactJson(const CrossrefInput& input, const Impact& impact,
                       const ReportOptions& options);
// The same handed to `sink` in pieces of about kImpactJsonPieceBytes, so
// that the impact of millions of accounts is never one string in memory;
// an error of the sink stops it and is returned.
inline constexpr size_t kImpactJsonPieceBytes = 1 << 20;
Status WriteImpactJson(const CrossrefInput& input, const Impact& impact,
                       const ReportOptions& options,
                       const std::function<Status(std::string_view)>& sink);
std::string SummaryMarkdown(const CrossrefInput& input, const Impact& impact,
                            const ReportOptions& options);
std::string SummaryHtml(const CrossrefInput& input, const Impact& impact,
                        const ReportOptions& options);
std::string RegulatorReport(const CrossrefInput& input, const Impact& impact,
                            const ReportOptions& options);
// `text` with & < > " ' escaped for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

// ---------------------------------------------------------------------------
// Delivery of the notices over SMTP (docs/incident.md, "minpanel incident
// send"; the state file: docs/formats/incident.md, "send-state")

inline constexpr size_t kNoticeBytesMax = 1 << 20;          // one .eml sent
inline constexpr size_t kNoticeLineBytesMax = 998;          // RFC 5322 2.1.1, CRLF not counted
inline constexpr size_t kSendMessagesMax = 2'000'000;       // notices in one folder
inline constexpr uint64_t kSendStateBytesMax = 1ull << 30;  // the state file
inline constexpr size_t kSendStatePathBytesMax = 256;       // a notice's path in it
inline constexpr uint32_t kSendPerMinuteDefault = 60;
inline constexpr uint32_t kSendPerMinuteMax = 6000;
inline constexpr int64_t kSmtpConnectTimeoutMs = 30'000;
inline constexpr int64_t kSmtpMessageTimeoutMs = 120'000;  // one message, connection included
inline constexpr size_t kSmtpAuthFileBytesMax = 4096;
inline constexpr std::string_view kSendStateFileName = "send-state";
inline constexpr std::string_view kSendStateMagic = "minpanel-send-state 1";

// What the state file says of a notice (its last line for that file).
enum class SendOutcome : uint8_t {
  kSending,  // about to be handed to the server; no outcome recorded after
  kSent,     // the server accepted it (250 after the data)
  kRefused,  // the server refused it for good (5xx): not sent again
  kUnsent,   // not delivered (4xx, or the run stopped before it): sent next run
};
std::string_view SendOutcomeName(SendOutcome outcome);

// One line of the state file: a notice by its path in the output folder and
// the SHA-256 of its bytes, never its address.
struct SendStateLine {
  SendOutcome outcome = SendOutcome::kSending;
  std::string file;    // "notices/users/u00000001.eml"
  std::string sha256;  // 64 lowercase hex
  int64_t time_ms = 0;
  uint32_t smtp_code = 0;  // the server's reply; 0 when there was none
};

struct SendState {
  std::map<std::string, SendStateLine, std::less<>> last;  // per file, its last line
  uint64_t lines = 0;
  int64_t last_time_ms = 0;      // the latest time_ms: a rerun keeps the pace from it
  uint64_t valid_bytes = 0;      // through the last complete line
  uint64_t torn_tail_bytes = 0;  // a line cut by a crash mid-append: ignored
};
// Parses a state file: the magic line, then one line per event. A last
// line without its newline is a torn append (counted, ignored); any other
// malformed line is Corruption naming its line number.
Result<SendState> ParseSendState(std::string_view text);
// The line for `line`, newline included.
std::string FormatSendStateLine(const SendStateLine& line);

// The one recipient of a notice: the address of its single To: header.
// Refuses a notice over kNoticeBytesMax, with a line over
// kNoticeLineBytesMax, a bare LF, no header/body separator, no or several
// To: headers, several addresses, or a Cc: or Bcc: header (each notice goes
// to one person).
Result<std::string> NoticeRecipient(std::string_view eml);

struct SmtpAuth {
  std::string user;
  std::string password;
};
// "USER:PASSWORD" on one line (a final newline allowed); the user may not
// hold ':', the password may.
Result<SmtpAuth> ParseSmtpAuth(std::string_view text);

struct SendOptions {
  std::string folder;  // the --out of an earlier crossref or blast-radius
  std::string url;     // smtp://host[:port][/ehlo-domain] or smtps://
  std::string sender;  // the envelope sender (MAIL FROM)
  std::optional<SmtpAuth> auth;
  std::string ca_file;              // a private CA for the server's certificate
  bool insecure_localhost = false;  // smtp:// to 127.0.0.1 / ::1 / localhost without STARTTLS
  uint32_t per_minute = kSendPerMinuteDefault;
  bool dry_run = false;
  bool resend_uncertain = false;  // send notices left `sending` by a crash again
  // Told one line per notice: what happened to it ("sent FILE", "would-send
  // FILE", …); never an address.
  std::function<void(std::string_view)> progress;
};

struct SendReport {
  uint64_t notices = 0;             // .eml files in the folder
  uint64_t sent = 0;                // by this run
  uint64_t refused = 0;             // by this run (5xx)
  uint64_t unsent = 0;              // by this run (4xx), sent again next run
  uint64_t would_send = 0;          // a dry run
  uint64_t already_sent = 0;        // by an earlier run
  uint64_t already_refused = 0;     // by an earlier run
  uint64_t uncertain = 0;           // left `sending` by a crash: not sent again
  uint64_t changed_after_sent = 0;  // sent, then edited: not sent again
  uint64_t bytes_sent = 0;
  uint64_t state_torn_tail_bytes = 0;
  // Why the run stopped before the end (unreachable server, login
  // refused, …); Ok when it went through every notice.
  Status stopped = Status::Ok();
};

// Sends every notices/users/*.eml and notices/admins/*.eml of
// `options.folder` that the state file (kSendStateFileName, 0600, in the
// folder) does not record as sent or refused, one message per notice to
// the address of its To: header, with exactly the file's bytes, at most
// `per_minute` a minute; records each in the state file (a `sending` line
// made durable before the message is handed over, its outcome after). A
// dry run reads the folder and the state and sends and writes nothing.
// Errors before anything is sent (bad options, a notice that cannot be
// sent, a corrupt state file, another run holding the state) are returned;
// an error while sending stops the run and is in `stopped`.
Result<SendReport> SendNotices(const SendOptions& options);

}  // namespace minpanel::incident
