// Fuzzes ParseForm and checks the fast single-field scan used for `data`
// against it.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "ingest/text_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto pairs = ingest::ParseForm(text);
  const auto field = ingest::internal::FindFormField(text, "data");
  if (!pairs.ok()) {
    return 0;
  }
  fuzz::Check(pairs->size() <= ingest::kFormFieldsMax, "field count");
  fuzz::Check(field.ok(), "the scan fails only where ParseForm fails");
  const auto value = ingest::FindFormValue(*pairs, "data");
  fuzz::Check(value.has_value() == field->has_value(), "both find data");
  if (value.has_value()) {
    fuzz::Check(*value == **field, "both decode data alike");
  }
  for (const auto& [name, pair_value] : *pairs) {
    fuzz::Check(name.size() + pair_value.size() <= size, "decoding never grows");
  }
  return 0;
}
