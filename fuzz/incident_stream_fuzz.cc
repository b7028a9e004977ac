// The incident module's streamed readers (TableStream: CSV and JSON lines
// in chunks of rows, the leaked side of a cross-reference) against the
// whole-file reader (ParseTable) on the same bytes: both fail, or they give
// the same columns, rows, cells, line numbers and rejected rows, whatever
// the chunk size (the first input byte picks it). And the CSV reader's fast
// path (lines without quotes split without libcsv) against libcsv alone
// (ParseTableWith(text, false)): the same table, or both fail.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "incident/incident.h"
#include "incident/table_internal.h"

namespace {

void CheckSameTable(const minpanel::Result<minpanel::incident::Table>& left,
                    const minpanel::Result<minpanel::incident::Table>& right) {
  using minpanel::fuzz::Check;
  Check(left.ok() == right.ok(), "fast path and libcsv: both read the file, or neither");
  if (!left.ok()) {
    Check(left.status().message() == right.status().message(), "the same error");
    return;
  }
  Check(left->columns() == right->columns() && left->row_count() == right->row_count(),
        "fast path and libcsv: the same columns and rows");
  for (size_t row = 0; row < left->row_count(); ++row) {
    Check(left->Line(row) == right->Line(row), "fast path and libcsv: the same lines");
    for (size_t column = 0; column < left->columns().size(); ++column) {
      Check(left->Cell(row, column) == right->Cell(row, column),
            "fast path and libcsv: the same cells");
    }
  }
  Check(left->rejected().size() == right->rejected().size(),
        "fast path and libcsv: the same rejected rows");
  for (size_t rejected = 0; rejected < left->rejected().size(); ++rejected) {
    Check(left->rejected()[rejected].line == right->rejected()[rejected].line &&
              left->rejected()[rejected].reason == right->rejected()[rejected].reason,
          "fast path and libcsv: the same rejections");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using minpanel::fuzz::Check;
  namespace incident = minpanel::incident;
  if (size < 2) {
    return 0;
  }
  const size_t chunk_rows = 1 + data[0] % 5;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  static const std::string path = "/tmp/incident_stream_fuzz." + std::to_string(::getpid());
  std::FILE* file = std::fopen(path.c_str(), "wb");
  Check(file != nullptr, "temporary file");
  std::fwrite(text.data(), 1, text.size(), file);
  std::fclose(file);
  const auto whole = incident::ParseTable(text);
  CheckSameTable(whole, incident::ParseTableWith(text, false));
  auto stream = incident::TableStream::Open(path);
  if (!stream.ok()) {
    Check(!whole.ok() || whole->rows_seen() == 0, "a stream opens whatever ParseTable reads");
    return 0;
  }
  incident::Table chunk;
  size_t row = 0;
  bool failed = false;
  while (true) {
    const auto more = (*stream)->Next(&chunk, chunk_rows);
    if (!more.ok()) {
      failed = true;
      break;
    }
    if (!*more) {
      break;
    }
    Check(chunk.row_count() >= 1, "a chunk that says more holds rows");
    for (size_t chunk_row = 0; chunk_row < chunk.row_count(); ++chunk_row, ++row) {
      if (!whole.ok()) {
        continue;
      }
      Check(row < whole->row_count(), "no more rows than ParseTable");
      Check(chunk.Line(chunk_row) == whole->Line(row), "the same line numbers");
      for (size_t column = 0; column < chunk.columns().size(); ++column) {
        Check(chunk.Cell(chunk_row, column) == whole->Cell(row, column), "the same cells");
      }
    }
  }
  Check(failed == !whole.ok(), "both read the file, or neither");
  if (!whole.ok()) {
    return 0;
  }
  Check(chunk.row_count() == 0, "no rows held once done");
  Check(row == whole->row_count() && chunk.rows_kept() == whole->row_count(), "the same rows");
  Check(chunk.columns() == whole->columns(), "the same columns");
  Check(chunk.format() == whole->format(), "the same format");
  Check(chunk.rejected().size() == whole->rejected().size(), "the same rejected rows");
  for (size_t rejected = 0; rejected < chunk.rejected().size(); ++rejected) {
    Check(chunk.rejected()[rejected].line == whole->rejected()[rejected].line &&
              chunk.rejected()[rejected].reason == whole->rejected()[rejected].reason,
          "the same rejections");
  }
  return 0;
}
