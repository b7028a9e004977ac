// Fuzzes DecodeMixpanelProfiles. The first byte picks /engage or /groups.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  if (size == 0) {
    return 0;
  }
  ingest::DecodeOptions options;
  options.route = (data[0] & 1) != 0 ? ingest::MixpanelRoute::kGroups
                                     : ingest::MixpanelRoute::kEngage;
  options.now_ms = fuzz::kDecodeNowMs;
  const std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto decoded = ingest::DecodeMixpanelProfiles(json, options);
  if (!decoded.ok()) {
    return 0;
  }
  fuzz::Check(decoded->tokens.size() == decoded->updates.size(), "tokens size");
  fuzz::Check(decoded->errors.size() <= decoded->records_total, "error count");
  for (const RawProfileUpdate& update : decoded->updates) {
    fuzz::Check(update.distinct_id.size() <= ingest::kDistinctIdBytesMax, "id length");
    const bool is_group = options.route == ingest::MixpanelRoute::kGroups;
    fuzz::Check(is_group == !update.group_key.empty(), "group key only on /groups");
    if (update.operation == ProfileOperation::kDelete) {
      fuzz::Check(update.properties.empty(), "$delete has no properties");
    }
    if (update.operation != ProfileOperation::kUnset) {
      fuzz::CheckProperties(update.properties);
    }
  }
  return 0;
}
