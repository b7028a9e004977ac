// The incident module's CSV reader (libcsv fed line by line): any bytes
// give a table or a clean error, every kept row has the header's columns,
// each rejected row a line inside the file, and the limits hold.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "incident/incident.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using minpanel::fuzz::Check;
  namespace incident = minpanel::incident;
  // A leading letter keeps the input on the CSV path (not '[' or '{').
  std::string text = "h";
  text.append(reinterpret_cast<const char*>(data), size);
  const auto table = incident::ParseTable(text);
  if (!table.ok()) {
    return 0;
  }
  Check(table->format() == incident::FileFormat::kCsv, "csv format");
  Check(table->columns().size() <= incident::kColumnsMax, "columns limit");
  const uint64_t lines = static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (size_t row = 0; row < table->row_count(); ++row) {
    Check(table->Line(row) >= 1 && table->Line(row) <= lines, "row line inside the file");
    for (size_t column = 0; column < table->columns().size(); ++column) {
      Check(table->Cell(row, column).size() <= incident::kRowBytesMax, "cell size");
    }
  }
  for (const incident::RejectedRow& rejected : table->rejected()) {
    Check(rejected.line >= 1 && rejected.line <= lines, "rejected line inside the file");
    Check(!rejected.reason.empty(), "rejected reason");
  }
  return 0;
}
