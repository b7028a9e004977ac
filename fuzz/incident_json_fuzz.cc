// The incident module's JSON readers (JSON lines, a JSON array, an object
// holding an array), flattened with an explicit stack: any bytes give a
// table or a clean error; column names and depth stay within their limits.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "incident/incident.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using minpanel::fuzz::Check;
  namespace incident = minpanel::incident;
  // A leading '{' keeps the input on the JSON paths.
  std::string text = "{";
  text.append(reinterpret_cast<const char*>(data), size);
  const auto table = incident::ParseTable(text);
  if (!table.ok()) {
    return 0;
  }
  Check(table->columns().size() <= incident::kColumnsMax, "columns limit");
  for (const std::string& name : table->columns()) {
    Check(name.size() <= incident::kColumnNameBytesMax, "column name limit");
  }
  for (size_t row = 0; row < table->row_count(); ++row) {
    Check(table->Line(row) >= 1, "row line");
  }
  for (const incident::RejectedRow& rejected : table->rejected()) {
    Check(!rejected.reason.empty(), "rejected reason");
  }
  return 0;
}
