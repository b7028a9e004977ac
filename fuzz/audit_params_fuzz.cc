// Fuzzes the masked parameters of a read's audit record
// (service/audit_params.h; docs/formats/audit.md, "Parameters"). The input
// is a query as a caller could send it, with every "@@" replaced by a
// planted email address between spaces, and, split at its first two
// newlines, an export's dates and event names. Invariants: the output is
// always a JSON object of valid UTF-8 within kAuditParamsBytesMax, and
// never holds the planted address nor an export's planted distinct id
// (unless the input itself holds them as ordinary text).
//
// The seeds in fuzz/corpus/audit_params_fuzz: queries of each kind, with
// filters on subject ids, credential-like names and planted addresses.
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "service/audit_params.h"
#include "service/service.h"

namespace {

using minpanel::fuzz::Check;

constexpr std::string_view kPlantToken = "@@";
constexpr std::string_view kPlantedEmail = " jane.fuzz-canary@example.test ";
constexpr std::string_view kPlantedEmailCore = "jane.fuzz-canary@example.test";
constexpr std::string_view kPlantedDistinctId = "cust-fuzz-canary-8812";

const minpanel::privacy::Detectors& TheDetectors() {
  static const minpanel::privacy::Detectors detectors;
  return detectors;
}

std::string Planted(std::string_view input) {
  std::string text;
  text.reserve(input.size() + 64);
  size_t from = 0;
  for (size_t at = input.find(kPlantToken); at != std::string_view::npos;
       at = input.find(kPlantToken, from)) {
    text.append(input.substr(from, at - from));
    text.append(kPlantedEmail);
    from = at + kPlantToken.size();
  }
  text.append(input.substr(from));
  return text;
}

// `planted_only`: the input itself holds neither planted value, so any
// found in the output came from the planting (the fuzzer may copy the
// values into an input, where they are ordinary text).
void CheckParams(const std::string& params, bool planted_only) {
  Check(params.size() <= minpanel::service::kAuditParamsBytesMax, "params over the cap");
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  Check(parser.parse(params).get(root) == simdjson::SUCCESS, "params not valid JSON (or UTF-8)");
  Check(root.is_object(), "params not an object");
  if (planted_only) {
    Check(params.find(kPlantedEmailCore) == std::string::npos, "a planted email in params");
    Check(params.find(kPlantedDistinctId) == std::string::npos, "a planted distinct id in params");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  const bool planted_only = raw.find(kPlantedEmailCore) == std::string_view::npos &&
                            raw.find(kPlantedDistinctId) == std::string_view::npos;
  const std::string input = Planted(raw);
  CheckParams(minpanel::service::QueryAuditParams(input, TheDetectors()), planted_only);

  minpanel::service::ExportOptions options;
  const size_t first = input.find('\n');
  const size_t second = first == std::string::npos ? first : input.find('\n', first + 1);
  options.from_date = input.substr(0, first);
  if (first != std::string::npos) {
    options.to_date =
        input.substr(first + 1, second == std::string::npos ? second : second - first - 1);
  }
  if (second != std::string::npos) {
    options.event_names_json = input.substr(second + 1);
  }
  options.limit = size;
  options.distinct_id = std::string(kPlantedDistinctId);
  options.distinct_ids_json = "[\"" + std::string(kPlantedDistinctId) + "\"]";
  CheckParams(minpanel::service::ExportAuditParams(options, TheDetectors()), planted_only);
  const std::string name = minpanel::service::AuditName(input, TheDetectors());
  Check(!planted_only || name.find(kPlantedEmailCore) == std::string::npos,
        "a planted email in a name");
  return 0;
}
