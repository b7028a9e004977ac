// Fuzzes ParseKeyHistory (an access key's export history,
// <data>/key_usage/<id>.json; docs/formats/key-usage.md): any bytes are
// either refused as Corruption or give a history within its limits, whose
// file text (KeyHistoryJson) parses back to the same history; and the
// anomaly rules and AddExport run on it without tripping a sanitizer.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "service/anomaly.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto history = service::ParseKeyHistory(text, "fuzz.json");
  if (!history.ok()) {
    fuzz::Check(history.status().code() == StatusCode::kCorruption, "refused as Corruption");
    return 0;
  }
  fuzz::Check(history->addresses.size() <= service::kKnownAddressesMax, "addresses capped");
  const auto again =
      service::ParseKeyHistory(service::KeyHistoryJson("mpk_0123456789abcdef", *history), "again");
  fuzz::Check(again.ok(), "the file text parses back");
  fuzz::Check(again->first_ms == history->first_ms && again->addresses == history->addresses &&
                  again->hours.size() == history->hours.size(),
              "the same history");
  service::ExportObservation observation;
  observation.key_id = "mpk_0123456789abcdef";
  // A time as the clock gives it: 2026-11-27.
  observation.time_ms = 1'795'685'260'831;
  observation.rows = history->hours.empty() ? 0 : history->hours.begin()->second.rows;
  observation.address_hash = "00";
  const service::AnomalyRules rules;
  (void)service::EvaluateAnomalies(rules, *history, observation);
  service::AddExport(rules, observation, &*history);
  fuzz::Check(history->addresses.size() <= service::kKnownAddressesMax, "still capped");
  return 0;
}
