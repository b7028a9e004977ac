// The readers of leaked and accounts files: CSV through libcsv, JSON through
// simdjson's DOM, flattened with an explicit stack (no recursion on the
// file's nesting).
#include <csv.h>
#include <fcntl.h>
#include <simdjson.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "incident/bounded_file.h"
#include "incident/huge_pages.h"
#include "incident/incident.h"
#include "incident/table_internal.h"

namespace minpanel::incident {

std::string_view FileFormatName(FileFormat format) {
  switch (format) {
    case FileFormat::kCsv:
      return "csv";
    case FileFormat::kJsonArray:
      return "json_array";
    case FileFormat::kJsonObjectArray:
      return "json_object_array";
    case FileFormat::kJsonLines:
      return "json_lines";
  }
  return "csv";
}

std::string_view Table::Cell(size_t row, size_t column) const {
  for (uint64_t cell_idx = row_begin_[row]; cell_idx < row_begin_[row + 1]; ++cell_idx) {
    const CellRef& cell = cells_[cell_idx];
    if (cell.column == column) {
      return std::string_view(arena_).substr(cell.offset, cell.length);
    }
  }
  return {};
}

void Table::PrefetchCell(size_t row, size_t column) const {
  for (uint64_t cell_idx = row_begin_[row]; cell_idx < row_begin_[row + 1]; ++cell_idx) {
    const CellRef& cell = cells_[cell_idx];
    if (cell.column == column) {
      __builtin_prefetch(arena_.data() + cell.offset);
      return;
    }
  }
}

std::optional<size_t> Table::FindColumn(std::string_view name) const {
  const auto found = column_index_.find(name);
  if (found == column_index_.end()) {
    return std::nullopt;
  }
  return found->second;
}

Result<size_t> Table::ColumnIndex(std::string_view name) {
  const auto found = column_index_.find(name);
  if (found != column_index_.end()) {
    return found->second;
  }
  if (columns_.size() >= kColumnsMax) {
    return Status::ResourceExhausted("more than kColumnsMax (" + std::to_string(kColumnsMax) +
                                     ") distinct columns");
  }
  if (name.size() > kColumnNameBytesMax) {
    return Status::ResourceExhausted("a column name longer than kColumnNameBytesMax (" +
                                     std::to_string(kColumnNameBytesMax) + " bytes)");
  }
  columns_.emplace_back(name);
  column_index_.emplace(std::string(name), columns_.size() - 1);
  return columns_.size() - 1;
}

void Table::BeginRow(uint64_t line) {
  if (row_begin_.empty()) {
    row_begin_.push_back(0);
  }
  open_row_line_ = line;
  open_row_cells_ = cells_.size();
  open_row_arena_ = arena_.size();
}

void Table::AddCell(size_t column, std::string_view value) {
  if (value.empty()) {
    return;
  }
  cells_.push_back({static_cast<uint32_t>(column), static_cast<uint32_t>(value.size()),
                    static_cast<uint64_t>(arena_.size())});
  arena_.append(value);
}

void Table::ReserveBytes(size_t bytes) { ReserveHuge(&arena_, bytes); }

void Table::ReserveRows(size_t rows, size_t cells) {
  ReserveHuge(&row_begin_, rows + 1);
  ReserveHuge(&row_line_, rows);
  ReserveHuge(&cells_, cells);
}

void Table::EndRow() {
  row_begin_.push_back(cells_.size());
  row_line_.push_back(open_row_line_);
}

void Table::ClearRows() {
  rows_cleared_ += row_count();
  arena_.clear();
  cells_.clear();
  row_begin_.clear();
  row_line_.clear();
}

void Table::MoveRowsTo(Table* into) {
  into->columns_ = columns_;
  into->column_index_ = column_index_;
  into->format_ = format_;
  // Swapped, not moved: `into`'s buffers come back here, emptied.
  std::swap(into->arena_, arena_);
  std::swap(into->cells_, cells_);
  std::swap(into->row_begin_, row_begin_);
  std::swap(into->row_line_, row_line_);
  rows_cleared_ += into->row_count();
  arena_.clear();
  cells_.clear();
  row_begin_.clear();
  row_line_.clear();
}

void Table::AbandonRow(uint64_t line, std::string reason) {
  cells_.resize(open_row_cells_);
  arena_.resize(open_row_arena_);
  Reject(line, std::move(reason));
}

namespace {

bool IsBlank(char byte) { return byte == ' ' || byte == '\t' || byte == '\r' || byte == '\n'; }

std::string_view TrimSpace(std::string_view text) {
  while (!text.empty() && IsBlank(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && IsBlank(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

Status TooManyRows() {
  return Status::ResourceExhausted("more than kRowsMax (" + std::to_string(kRowsMax) +
                                   ") rows in one file");
}

// ---- CSV

// The delimiter of the header line: the most frequent of , ; tab outside
// quotes (a comma when none appears).
unsigned char SniffDelimiter(std::string_view text) {
  std::array<size_t, 3> counts{};
  constexpr std::array<char, 3> kDelimiters = {',', ';', '\t'};
  bool quoted = false;
  for (const char byte : text) {
    if (byte == '"') {
      quoted = !quoted;
    } else if (!quoted && (byte == '\n' || byte == '\r')) {
      break;
    } else if (!quoted) {
      for (size_t delimiter_idx = 0; delimiter_idx < kDelimiters.size(); ++delimiter_idx) {
        counts[delimiter_idx] += byte == kDelimiters[delimiter_idx] ? 1 : 0;
      }
    }
  }
  const size_t best = std::max_element(counts.begin(), counts.end()) - counts.begin();
  return counts[best] == 0 ? ',' : static_cast<unsigned char>(kDelimiters[best]);
}

// A CSV text's rows and cells, estimated from its line count and its header
// line's fields, reserved before it is read whole (10M accounts are 70M
// cells: grown a doubling at a time, the cells were copied once over and
// their pages touched twice). At most a cell per kBytesPerCellMin bytes of
// text, so a short header line over long rows reserves no more than the
// text could hold; the pages of an over-estimate are never touched.
void ReserveCsv(std::string_view text, Table* table) {
  constexpr size_t kBytesPerCellMin = 8;
  const unsigned char delimiter = SniffDelimiter(text);
  const std::string_view header = text.substr(0, text.find('\n'));
  const size_t fields = 1 + static_cast<size_t>(std::count(header.begin(), header.end(),
                                                           static_cast<char>(delimiter)));
  const size_t lines = std::min<size_t>(std::count(text.begin(), text.end(), '\n') + 1, kRowsMax);
  table->ReserveRows(lines, std::min(lines * std::min(fields, kColumnsMax),
                                     text.size() / kBytesPerCellMin + 1));
}

// libcsv's parser state between records (ROW_NOT_BEGUN in libcsv.c): no
// field or quote open.
constexpr int kLibcsvRowNotBegun = 0;

class CsvReader {
 public:
  // `plain_lines`: lines without quotes are split by ReadPlainLine rather
  // than fed to libcsv (the same result; false only to check that).
  explicit CsvReader(Table* table, bool plain_lines = true)
      : table_(table), plain_lines_(plain_lines) {}
  ~CsvReader() { csv_free(&parser_); }

  Status Read(std::string_view text) {
    Begin(text);
    bool done = false;
    return ReadRows(SIZE_MAX, &done);
  }

  // Reading in chunks: Begin once, then ReadRows until `*done`.
  void Begin(std::string_view text) {
    text_ = text;
    offset_ = 0;
    delimiter_ = SniffDelimiter(text);
    ResetParser();
  }
  // Feeds lines until the table holds `rows_max` rows or the text ends
  // (`*done`). A record spanning lines is completed before it stops.
  Status ReadRows(size_t rows_max, bool* done) {
    *done = false;
    while (offset_ < text_.size()) {
      if (table_->row_count() >= rows_max) {
        return Status::Ok();
      }
      const size_t newline = text_.find('\n', offset_);
      const size_t end = newline == std::string_view::npos ? text_.size() : newline + 1;
      ++line_;
      MP_RETURN_IF_ERROR(Feed(text_.substr(offset_, end - offset_)));
      offset_ = end;
    }
    *done = true;
    if (!failed_row_) {
      if (csv_fini(&parser_, &CsvReader::OnField, &CsvReader::OnRowEnd, this) != 0) {
        RejectOpenRow("a quoted field is not closed before the end of the file");
      }
    }
    MP_RETURN_IF_ERROR(status_);
    if (!header_done_) {
      return Status::InvalidArgument("CSV: no header line");
    }
    return Status::Ok();
  }
  // Bytes of the text fed so far.
  size_t offset() const { return offset_; }

 private:
  static void OnField(void* bytes, size_t length, void* self) {
    static_cast<CsvReader*>(self)->Field(std::string_view(static_cast<char*>(bytes), length));
  }
  static void OnRowEnd(int, void* self) { static_cast<CsvReader*>(self)->RowEnd(); }

  void ResetParser() {
    if (initialised_) {
      csv_free(&parser_);
    }
    csv_init(&parser_, CSV_STRICT | CSV_STRICT_FINI);
    csv_set_delim(&parser_, delimiter_);
    initialised_ = true;
    failed_row_ = false;
    ClearFields();
    row_bytes_ = 0;
  }

  Status Feed(std::string_view line_text) {
    if (failed_row_) {
      ResetParser();
      row_line_ = line_;
    }
    row_bytes_ += line_text.size();
    if (row_bytes_ > kRowBytesMax) {
      RejectOpenRow("a record longer than kRowBytesMax (" + std::to_string(kRowBytesMax) +
                    " bytes)");
      return status_;
    }
    if (plain_lines_ && parser_.pstate == kLibcsvRowNotBegun && ReadPlainLine(line_text)) {
      return status_;
    }
    const size_t used = csv_parse(&parser_, line_text.data(), line_text.size(), &CsvReader::OnField,
                                  &CsvReader::OnRowEnd, this);
    if (used != line_text.size()) {
      RejectOpenRow("malformed CSV: a quote inside an unquoted field or after a quoted one");
    }
    return status_;
  }

  void RejectOpenRow(std::string reason) {
    table_->Reject(std::min(row_line_, line_), std::move(reason));
    failed_row_ = true;
    ClearFields();
    row_bytes_ = 0;
  }

  // libcsv hands a field in its own buffer, reused for the next: the bytes
  // are kept here until the record ends.
  void Field(std::string_view value) {
    field_spans_.push_back({field_bytes_.size(), value.size()});
    field_bytes_.append(value);
  }

  // A line with no quote and no carriage return but one before its newline,
  // read at the start of a record, is split here at the delimiter, as
  // libcsv would split it (CSV_STRICT; spaces and tabs around a field are
  // trimmed by both; a line of only spaces is no record): the same fields,
  // lines and rejections, without libcsv's byte-by-byte callbacks. Any
  // other line goes to libcsv. Returns false, having done nothing, for those.
  bool ReadPlainLine(std::string_view line_text) {
    std::string_view body = line_text;
    if (!body.empty() && body.back() == '\n') {
      body.remove_suffix(1);
    }
    if (!body.empty() && body.back() == '\r') {
      body.remove_suffix(1);
    }
    // One pass over the bytes: the fields, a quote or CR (libcsv's line),
    // a line of only spaces. (find_first_of called memchr once a byte.)
    const char delimiter = static_cast<char>(delimiter_);
    const bool tab_is_space = delimiter != '\t';
    plain_fields_.clear();
    bool only_spaces = true;
    size_t start = 0;
    for (size_t at = 0; at < body.size(); ++at) {
      const char byte = body[at];
      if (byte == '"' || byte == '\r') {
        return false;
      }
      if (byte == delimiter) {
        plain_fields_.push_back(body.substr(start, at - start));
        start = at + 1;
      }
      only_spaces = only_spaces && (byte == ' ' || (byte == '\t' && tab_is_space));
    }
    if (only_spaces) {
      return true;  // libcsv submits no record for it
    }
    plain_fields_.push_back(body.substr(start));
    EndRecord(plain_fields_, simdjson::validate_utf8(body.data(), body.size()));
    return true;
  }

  void RowEnd() {
    fields_.clear();
    for (const auto& [offset, length] : field_spans_) {
      fields_.push_back(std::string_view(field_bytes_).substr(offset, length));
    }
    EndRecord(fields_, false);
  }

  // A record's fields, from libcsv or ReadPlainLine; `utf8_checked` when
  // the whole line is known to be UTF-8.
  void EndRecord(const std::vector<std::string_view>& fields, bool utf8_checked) {
    // libcsv also ends a record at a lone CR, so a record may start inside
    // the line being fed: never past it.
    const uint64_t start_line = std::min(row_line_, line_);
    row_line_ = line_ + 1;
    row_bytes_ = 0;
    if (!status_.ok() || (fields.size() == 1 && TrimSpace(fields[0]).empty())) {
      // An error stops the reading; one empty field is a blank line.
    } else if (!header_done_) {
      status_ = Header(fields, start_line);
    } else {
      Row(fields, start_line, utf8_checked);
    }
    ClearFields();  // last: `fields` may be views of these bytes
  }

  void ClearFields() {
    field_spans_.clear();
    field_bytes_.clear();
  }

  Status Header(const std::vector<std::string_view>& fields, uint64_t line) {
    header_done_ = true;
    for (size_t field_idx = 0; field_idx < fields.size(); ++field_idx) {
      std::string name(TrimSpace(fields[field_idx]));
      if (field_idx == 0 && name.starts_with("\xEF\xBB\xBF")) {
        name.erase(0, 3);
      }
      if (!simdjson::validate_utf8(name.data(), name.size())) {
        return Status::InvalidArgument("CSV header (line " + std::to_string(line) + "): column " +
                                       std::to_string(field_idx + 1) + " is not UTF-8");
      }
      if (name.empty()) {
        name = "column_" + std::to_string(field_idx + 1);
      }
      const std::string base = name;
      for (size_t copy = 2; table_->FindColumn(name).has_value(); ++copy) {
        name = base + "#" + std::to_string(copy);
      }
      MP_ASSIGN_OR_RETURN(const size_t column, table_->ColumnIndex(name));
      (void)column;
    }
    header_columns_ = fields.size();
    return Status::Ok();
  }

  void Row(const std::vector<std::string_view>& fields, uint64_t line, bool utf8_checked) {
    if (fields.size() != header_columns_) {
      table_->Reject(line, "the record has " + std::to_string(fields.size()) +
                               " fields, the header " + std::to_string(header_columns_));
      return;
    }
    if (table_->rows_kept() >= kRowsMax) {
      status_ = TooManyRows();
      return;
    }
    table_->BeginRow(line);
    for (size_t field_idx = 0; field_idx < fields.size(); ++field_idx) {
      const std::string_view value = TrimSpace(fields[field_idx]);
      if (!utf8_checked && !simdjson::validate_utf8(value.data(), value.size())) {
        table_->AbandonRow(line, "field " + std::to_string(field_idx + 1) + " (" +
                                     table_->columns()[field_idx] +
                                     ") is not UTF-8 (a mixed encoding?)");
        return;
      }
      table_->AddCell(field_idx, value);
    }
    table_->EndRow();
  }

  Table* table_;
  std::string_view text_;
  size_t offset_ = 0;
  csv_parser parser_{};
  bool initialised_ = false;
  unsigned char delimiter_ = ',';
  uint64_t line_ = 0;      // the physical line being fed
  uint64_t row_line_ = 1;  // where the open record started
  size_t row_bytes_ = 0;
  bool failed_row_ = false;
  bool header_done_ = false;
  size_t header_columns_ = 0;
  std::vector<std::string_view> fields_;  // a libcsv record's, over field_bytes_
  std::vector<std::pair<size_t, size_t>> field_spans_;  // offset and length in field_bytes_
  std::string field_bytes_;
  std::vector<std::string_view> plain_fields_;  // ReadPlainLine's, over the text
  bool plain_lines_ = true;
  Status status_;
};

// ---- JSON

struct Frame {
  simdjson::dom::element element;
  std::string path;
  size_t depth;
};

// Adds the cells of one JSON row (any value; a non-object is one column
// "value") to the open row; returns the reason to reject it, or "".
std::string FlattenRow(simdjson::dom::element root, Table* table) {
  std::vector<Frame> stack;
  stack.push_back({root, "", 0});
  std::vector<Frame> children;
  while (!stack.empty()) {
    Frame frame = std::move(stack.back());
    stack.pop_back();
    if (frame.depth > kJsonDepthMax) {
      return "nested deeper than kJsonDepthMax (" + std::to_string(kJsonDepthMax) + ")";
    }
    const auto prefix = [&frame](std::string_view key) {
      return frame.path.empty() ? std::string(key) : frame.path + "." + std::string(key);
    };
    children.clear();
    switch (frame.element.type()) {
      case simdjson::dom::element_type::OBJECT: {
        const simdjson::dom::object object = frame.element.get_object().value_unsafe();
        for (const auto field : object) {
          children.push_back({field.value, prefix(field.key), frame.depth + 1});
        }
        break;
      }
      case simdjson::dom::element_type::ARRAY: {
        size_t element_idx = 0;
        const simdjson::dom::array array = frame.element.get_array().value_unsafe();
        for (const auto element : array) {
          if (element_idx == kJsonArrayElementsFlattenedMax) {
            return "an array of more than kJsonArrayElementsFlattenedMax (" +
                   std::to_string(kJsonArrayElementsFlattenedMax) + ") elements at \"" +
                   frame.path + "\"";
          }
          children.push_back({element, prefix(std::to_string(element_idx)), frame.depth + 1});
          ++element_idx;
        }
        break;
      }
      case simdjson::dom::element_type::NULL_VALUE:
        break;
      default: {
        const std::string name = frame.path.empty() ? "value" : frame.path;
        const Result<size_t> column = table->ColumnIndex(name);
        if (!column.ok()) {
          return column.status().message();
        }
        if (frame.element.is_string()) {
          table->AddCell(*column, TrimSpace(frame.element.get_string().value_unsafe()));
        } else {
          table->AddCell(*column, simdjson::minify(frame.element));
        }
      }
    }
    for (auto child = children.rbegin(); child != children.rend(); ++child) {
      stack.push_back(std::move(*child));
    }
  }
  return "";
}

Status AddJsonRow(simdjson::dom::element element, uint64_t line, Table* table) {
  if (table->rows_kept() >= kRowsMax) {
    return TooManyRows();
  }
  table->BeginRow(line);
  std::string reason = FlattenRow(element, table);
  if (reason.empty()) {
    table->EndRow();
  } else {
    table->AbandonRow(line, std::move(reason));
  }
  return Status::Ok();
}

// JSON lines, read in chunks (ReadRows until done) or whole.
class JsonLinesReader {
 public:
  JsonLinesReader(std::string_view text, Table* table) : text_(text), table_(table) {
    table_->set_format(FileFormat::kJsonLines);
  }
  Status ReadRows(size_t rows_max, bool* done) {
    *done = false;
    while (offset_ < text_.size()) {
      if (table_->row_count() >= rows_max) {
        return Status::Ok();
      }
      const size_t newline = text_.find('\n', offset_);
      const size_t end = newline == std::string_view::npos ? text_.size() : newline;
      const std::string_view row = TrimSpace(text_.substr(offset_, end - offset_));
      offset_ = std::min(end + 1, text_.size());
      ++line_;
      if (row.empty()) {
        continue;
      }
      if (row.size() > kRowBytesMax) {
        table_->Reject(line_, "a line longer than kRowBytesMax (" + std::to_string(kRowBytesMax) +
                                  " bytes)");
        continue;
      }
      simdjson::dom::element element;
      const auto error = parser_.parse(row.data(), row.size()).get(element);
      if (error) {
        table_->Reject(line_, std::string("not JSON: ") + simdjson::error_message(error));
        continue;
      }
      MP_RETURN_IF_ERROR(AddJsonRow(element, line_, table_));
    }
    *done = true;
    return Status::Ok();
  }
  size_t offset() const { return offset_; }

 private:
  std::string_view text_;
  Table* table_;
  simdjson::dom::parser parser_;
  uint64_t line_ = 0;
  size_t offset_ = 0;
};

Status ReadJsonLines(std::string_view text, Table* table) {
  JsonLinesReader reader(text, table);
  bool done = false;
  return reader.ReadRows(SIZE_MAX, &done);
}

// A whole JSON document: an array of rows, or an object whose first array
// member holds the rows (an object with none is one row). Rows are numbered
// by their place in the array (there are no lines to speak of).
Status ReadJsonDocument(std::string_view text, Table* table) {
  if (text.size() > kJsonDocumentBytesMax) {
    return Status::ResourceExhausted("a JSON document larger than kJsonDocumentBytesMax (" +
                                     std::to_string(kJsonDocumentBytesMax) +
                                     " bytes); give it as JSON lines");
  }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const auto error = parser.parse(text.data(), text.size()).get(root);
  if (error) {
    return Status::InvalidArgument(std::string("not JSON: ") + simdjson::error_message(error));
  }
  simdjson::dom::array rows;
  bool found = false;
  if (root.is_array()) {
    table->set_format(FileFormat::kJsonArray);
    rows = root.get_array().value_unsafe();
    found = true;
  } else if (root.is_object()) {
    const simdjson::dom::object object = root.get_object().value_unsafe();
    for (const auto field : object) {
      if (field.value.is_array()) {
        rows = field.value.get_array().value_unsafe();
        found = true;
        break;
      }
    }
    table->set_format(found ? FileFormat::kJsonObjectArray : FileFormat::kJsonLines);
  }
  if (!found) {
    return AddJsonRow(root, 1, table);
  }
  uint64_t record = 0;
  for (const auto element : rows) {
    MP_RETURN_IF_ERROR(AddJsonRow(element, ++record, table));
  }
  return Status::Ok();
}

// How a file's text is read, and the part of it each reader is given.
enum class Shape : uint8_t { kCsv, kJsonLines, kJsonDocument };
struct ShapedText {
  Shape shape = Shape::kCsv;
  std::string_view text;
};

Result<ShapedText> ShapeOf(std::string_view text) {
  std::string_view body = text;
  if (body.starts_with("\xEF\xBB\xBF")) {
    body.remove_prefix(3);
  }
  const std::string_view trimmed = TrimSpace(body);
  if (trimmed.empty()) {
    return Status::InvalidArgument("the file is empty");
  }
  if (trimmed.front() != '[' && trimmed.front() != '{') {
    return ShapedText{Shape::kCsv, body};
  }
  // Line numbers count from the file's start, so only leading blanks on
  // the first line are trimmed for the document readers.
  if (trimmed.front() == '[') {
    return ShapedText{Shape::kJsonDocument, trimmed};
  }
  // JSON lines when the first line is a whole JSON value and more follows.
  const size_t newline = trimmed.find('\n');
  if (newline == std::string_view::npos || TrimSpace(trimmed.substr(newline)).empty()) {
    return ShapedText{Shape::kJsonDocument, trimmed};
  }
  simdjson::dom::parser parser;
  simdjson::dom::element first;
  const std::string_view first_line = trimmed.substr(0, newline);
  if (first_line.size() <= kRowBytesMax &&
      !parser.parse(first_line.data(), first_line.size()).get(first)) {
    return ShapedText{Shape::kJsonLines, trimmed};
  }
  return ShapedText{Shape::kJsonDocument, trimmed};
}

}  // namespace

Result<Table> ParseTable(std::string_view text) { return ParseTableWith(text, true); }

Result<Table> ParseTableWith(std::string_view text, bool plain_lines) {
  Table table;
  table.ReserveBytes(text.size());
  MP_ASSIGN_OR_RETURN(const ShapedText shaped, ShapeOf(text));
  switch (shaped.shape) {
    case Shape::kJsonDocument:
      MP_RETURN_IF_ERROR(ReadJsonDocument(shaped.text, &table));
      break;
    case Shape::kJsonLines:
      MP_RETURN_IF_ERROR(ReadJsonLines(shaped.text, &table));
      break;
    case Shape::kCsv: {
      table.set_format(FileFormat::kCsv);
      ReserveCsv(shaped.text, &table);
      CsvReader reader(&table, plain_lines);
      MP_RETURN_IF_ERROR(reader.Read(shaped.text));
      break;
    }
  }
  return table;
}

namespace {

// The table of an opened file, parsed where the file is mapped (closes
// `file`): the table copies its cells anyway, so a copy of the whole file
// (833 MB of accounts at 10M) cost its pages' faults and zeroing on top of
// the read.
Result<Table> ParseMappedFile(const BoundedFile& file) {
  if (file.bytes == 0) {
    ::close(file.fd);
    return ParseTable(std::string_view());
  }
  const size_t bytes = static_cast<size_t>(file.bytes);
  void* mapped = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
  const int error = errno;
  ::close(file.fd);
  if (mapped == MAP_FAILED) {
    // ReadTable names the path.
    return Status::IoError(std::string("mmap: ") + std::strerror(error));
  }
  (void)::madvise(mapped, bytes, MADV_SEQUENTIAL);
  Result<Table> table = ParseTable(std::string_view(static_cast<const char*>(mapped), bytes));
  ::munmap(mapped, bytes);
  return table;
}

}  // namespace

Result<Table> ReadTable(const std::string& path) {
  MP_ASSIGN_OR_RETURN(const BoundedFile file,
                      OpenBoundedFile(path, kFileBytesMax, "kFileBytesMax", FileKind::kAny));
  Result<Table> table = ParseMappedFile(file);
  if (!table.ok()) {
    return Status(table.status().code(), path + ": " + table.status().message());
  }
  return table;
}

// The reader of one stream, over the mapped text; made by the first Next,
// which is given the table the rows go to.
class TableStream::Reader {
 public:
  Reader(ShapedText shaped, Table* table) : shaped_(shaped) {
    if (shaped.shape == Shape::kCsv) {
      table->set_format(FileFormat::kCsv);
      csv_ = std::make_unique<CsvReader>(table);
      csv_->Begin(shaped.text);
    } else if (shaped.shape == Shape::kJsonLines) {
      json_lines_ = std::make_unique<JsonLinesReader>(shaped.text, table);
    }
  }
  Status ReadRows(Table* table, size_t rows_max, bool* done) {
    if (csv_ != nullptr) {
      return csv_->ReadRows(rows_max, done);
    }
    if (json_lines_ != nullptr) {
      return json_lines_->ReadRows(rows_max, done);
    }
    *done = true;
    return ReadJsonDocument(shaped_.text, table);
  }
  // Where the text read so far ends, as a pointer into it.
  const char* position() const {
    const size_t offset = csv_ != nullptr          ? csv_->offset()
                          : json_lines_ != nullptr ? json_lines_->offset()
                                                   : 0;
    return shaped_.text.data() + offset;
  }

 private:
  ShapedText shaped_;
  std::unique_ptr<CsvReader> csv_;
  std::unique_ptr<JsonLinesReader> json_lines_;
};

Result<std::unique_ptr<TableStream>> TableStream::Open(const std::string& path) {
  std::unique_ptr<TableStream> stream(new TableStream());
  stream->path_ = path;
  MP_ASSIGN_OR_RETURN(const BoundedFile file,
                      OpenBoundedFile(path, kFileBytesMax, "kFileBytesMax", FileKind::kAny));
  stream->fd_ = file.fd;  // closed by the stream
  if (file.bytes == 0) {
    return Status::InvalidArgument(path + ": the file is empty");
  }
  void* mapped =
      ::mmap(nullptr, static_cast<size_t>(file.bytes), PROT_READ, MAP_PRIVATE, stream->fd_, 0);
  if (mapped == MAP_FAILED) {
    return Status::IoError(path + ": mmap: " + std::strerror(errno));
  }
  stream->mapped_ = static_cast<const char*>(mapped);
  stream->mapped_bytes_ = static_cast<size_t>(file.bytes);
  (void)::madvise(mapped, stream->mapped_bytes_, MADV_SEQUENTIAL);
  return stream;
}

TableStream::~TableStream() {
  reader_.reset();
  if (mapped_ != nullptr) {
    ::munmap(const_cast<char*>(mapped_), mapped_bytes_);
  }
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Result<bool> TableStream::Next(Table* chunk, size_t rows_max) {
  chunk->ClearRows();
  if (done_) {
    return false;
  }
  const std::string_view text(mapped_, mapped_bytes_);
  if (reader_ == nullptr) {
    auto shaped = ShapeOf(text);
    if (!shaped.ok()) {
      return Status(shaped.status().code(), path_ + ": " + shaped.status().message());
    }
    reader_ = std::make_unique<Reader>(*shaped, chunk);
  }
  bool done = false;
  const Status read = reader_->ReadRows(chunk, std::max<size_t>(rows_max, 1), &done);
  if (!read.ok()) {
    done_ = true;
    return Status(read.code(), path_ + ": " + read.message());
  }
  done_ = done;
  // The pages read are given back: the file's pages do not stay in this
  // process's memory as it goes.
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t read_to = static_cast<size_t>(reader_->position() - mapped_) / page * page;
  if (read_to > released_bytes_) {
    (void)::madvise(const_cast<char*>(mapped_) + released_bytes_, read_to - released_bytes_,
                    MADV_DONTNEED);
    released_bytes_ = read_to;
  }
  return chunk->row_count() > 0;
}

}  // namespace minpanel::incident
