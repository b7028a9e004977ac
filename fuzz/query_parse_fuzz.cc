// Fuzzes the query parser and, for every query it accepts, the engine: runs
// it over a small in-memory segment set on one and on two threads and checks
// what must hold for any input — errors are InvalidArgument (or
// ResourceExhausted), both thread counts give the same answer, and the
// answer body is JSON. The events name groups (`company`) and the context
// has person and group profiles, so profile and group properties and unique
// groups are fuzzed too.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "fuzz_check.h"
#include "query/query.h"
#include "store/segment.h"

namespace {

using minpanel::Event;
using minpanel::Id128;
using minpanel::Value;

minpanel::query::QueryContext MakeContext() {
  std::vector<Event> events;
  const char* const kNames[] = {"A", "B", "C", "Signup", "Visit"};
  const char* const kCountries[] = {"DE", "US", "FR"};
  for (uint64_t event_idx = 0; event_idx < 300; ++event_idx) {
    Event event;
    event.name = kNames[event_idx % 5];
    event.subject = Id128{(event_idx % 17) * 0x0f0f0f0f0f0f0f0fULL, event_idx % 17};
    event.time_ms = 1709251200000 + static_cast<int64_t>((event_idx * 7919) % 1000) * 900000;
    event.insert_id = Id128{0, event_idx + 1};
    event.properties.push_back({"country", Value::String(kCountries[event_idx % 3])});
    event.properties.push_back({"n", Value::Int(static_cast<int64_t>(event_idx % 7))});
    if (event_idx % 4 == 0) {
      event.properties.push_back({"tags", Value::List({"x", "y"})});
    }
    if (event_idx % 3 != 0) {
      event.properties.push_back(
          {"company", Value::String(minpanel::FormatPseudonym(Id128{7, event_idx % 5}))});
    }
    events.push_back(std::move(event));
  }
  minpanel::query::QueryContext context;
  minpanel::query::ProfileTable::Builder profiles;
  for (uint64_t subject_idx = 0; subject_idx < 17; subject_idx += 2) {
    minpanel::ProfileUpdate update;
    update.subject = Id128{subject_idx * 0x0f0f0f0f0f0f0f0fULL, subject_idx};
    update.properties.push_back({"plan", Value::String(subject_idx % 4 == 0 ? "pro" : "free")});
    update.properties.push_back({"seats", Value::Int(static_cast<int64_t>(subject_idx))});
    minpanel::fuzz::Check(profiles.Add(update).ok(), "person profile folds");
  }
  for (uint64_t group_idx = 0; group_idx < 4; ++group_idx) {
    minpanel::ProfileUpdate update;
    update.subject = Id128{7, group_idx};
    update.group_key = "company";
    update.properties.push_back(
        {"industry", Value::String(group_idx % 2 == 0 ? "retail" : "bank")});
    minpanel::fuzz::Check(profiles.Add(update).ok(), "group profile folds");
  }
  context.profiles = profiles.Finish();
  context.time_zone = "Europe/Berlin";
  context.now_ms = 1709251200000 + 5 * 86400000LL;
  for (size_t part = 0; part < 2; ++part) {
    std::vector<Event> half(events.begin() + static_cast<std::ptrdiff_t>(part * 150),
                            events.begin() + static_cast<std::ptrdiff_t>((part + 1) * 150));
    minpanel::store::SegmentWriteOptions options;
    options.block_rows_max = 32;
    auto image = minpanel::store::EncodeSegment(half, options);
    minpanel::fuzz::Check(image.ok(), "test segment encodes");
    auto reader = minpanel::store::SegmentReader::Open(std::move(*image), "fuzz.seg");
    minpanel::fuzz::Check(reader.ok(), "test segment opens");
    context.segments.push_back(std::shared_ptr<const minpanel::store::SegmentReader>(
        std::move(*reader)));
  }
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using minpanel::StatusCode;
  using minpanel::fuzz::Check;
  static minpanel::query::QueryContext context = MakeContext();
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  const auto spec = minpanel::query::ParseQuery(json);
  if (!spec.ok()) {
    Check(spec.status().code() == StatusCode::kInvalidArgument ||
              spec.status().code() == StatusCode::kResourceExhausted,
          "parse errors are InvalidArgument");
    Check(!spec.status().message().empty(), "errors say what is wrong");
    return 0;
  }
  // Keep runs short: hour buckets over years are valid but slow to fuzz.
  std::string answers[2];
  for (uint32_t threads = 1; threads <= 2; ++threads) {
    context.threads = threads;
    auto result = minpanel::query::RunQuery(*spec, context);
    if (!result.ok()) {
      Check(result.status().code() == StatusCode::kInvalidArgument, "run errors are InvalidArgument");
      return 0;
    }
    result->stats = {};
    answers[threads - 1] = minpanel::query::QueryResultToJson(*result);
  }
  Check(answers[0] == answers[1], "one and two threads agree");
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  const simdjson::padded_string padded(answers[0]);
  Check(parser.parse(padded).get(root) == simdjson::SUCCESS, "the answer is JSON");
  return 0;
}
