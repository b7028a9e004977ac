// Differential test: random event sets (seeded) split over random segments,
// random queries of every kind, each answered by RunQuery and by a simple
// row-by-row reference written here from docs/queries.md — no blocks, no
// dictionary codes, no merge: the events as a vector, a label per event for
// its bucket, sets for uniques, a naive search per funnel attempt.
#include <date/tz.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "core/time_units.h"
#include "query/query.h"
#include "query/query_test_util.h"
#include "store/segment_merge.h"

namespace minpanel::query {
namespace {

constexpr int64_t kBaseMs = 1709251200000;  // 2024-03-01T00:00:00Z

const char* const kNames[] = {"A", "B", "C", "D"};
const char* const kZones[] = {"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"};

// An event and where the store keeps it (segment, then insert id), which
// orders events of one subject on one millisecond that tie otherwise.
struct StoredEvent {
  Event event;
  size_t segment = 0;
  // With identity merging the reference replaces event.subject by its
  // person; `source` keeps the id the event was stored under, which orders
  // a person's same-millisecond ties as the engine does (by id).
  Id128 source;
};

// Reference helpers.

bool IsNumber(const Value& value) {
  return value.type() == Value::Type::kInt || value.type() == Value::Type::kDouble;
}

int CompareNumber(const Value& left, const Value& right) {
  if (left.type() == Value::Type::kInt && right.type() == Value::Type::kInt) {
    return left.as_int() < right.as_int() ? -1 : (left.as_int() > right.as_int() ? 1 : 0);
  }
  const double a =
      left.type() == Value::Type::kInt ? static_cast<double>(left.as_int()) : left.as_double();
  const double b =
      right.type() == Value::Type::kInt ? static_cast<double>(right.as_int()) : right.as_double();
  return a < b ? -1 : (a > b ? 1 : (a == b ? 0 : 2));
}

bool EqualsOne(const Value* property, const Value& wanted) {
  if (property == nullptr) {
    return false;
  }
  switch (wanted.type()) {
    case Value::Type::kNull:
      return property->is_null();
    case Value::Type::kBool:
      return property->type() == Value::Type::kBool && property->as_bool() == wanted.as_bool();
    case Value::Type::kInt:
    case Value::Type::kDouble:
      return IsNumber(*property) && CompareNumber(*property, wanted) == 0;
    case Value::Type::kString:
      if (property->type() == Value::Type::kString) {
        return property->as_string() == wanted.as_string();
      }
      if (property->type() == Value::Type::kList) {
        const auto& items = property->as_list();
        return std::find(items.begin(), items.end(), wanted.as_string()) != items.end();
      }
      return false;
    case Value::Type::kList:
      return false;
  }
  return false;
}

bool TextTest(const Value* property, const std::function<bool(const std::string&)>& test) {
  if (property == nullptr) {
    return false;
  }
  if (property->type() == Value::Type::kString) {
    return test(property->as_string());
  }
  if (property->type() == Value::Type::kList) {
    return std::any_of(property->as_list().begin(), property->as_list().end(), test);
  }
  return false;
}

bool Matches(const Filter& filter, const Event& event) {
  if (filter.kind != Filter::Kind::kCondition) {
    const bool is_and = filter.kind == Filter::Kind::kAnd;
    for (const Filter& child : filter.children) {
      if (Matches(child, event) != is_and) {
        return !is_and;
      }
    }
    return is_and;
  }
  const Value* property = FindProperty(event.properties, filter.property);
  auto any_equal = [&] {
    return std::any_of(filter.values.begin(), filter.values.end(),
                       [&](const Value& wanted) { return EqualsOne(property, wanted); });
  };
  auto compare = [&](auto accept) {
    if (property == nullptr) {
      return false;
    }
    const Value& bound = filter.values[0];
    if (IsNumber(bound) && IsNumber(*property)) {
      const int comparison = CompareNumber(*property, bound);
      return comparison != 2 && accept(comparison);
    }
    if (bound.type() == Value::Type::kString && property->type() == Value::Type::kString) {
      const int comparison = property->as_string().compare(bound.as_string());
      return accept(comparison < 0 ? -1 : (comparison > 0 ? 1 : 0));
    }
    return false;
  };
  const bool is_set = property != nullptr && !property->is_null();
  switch (filter.op) {
    case FilterOp::kEq:
    case FilterOp::kIn:
      return any_equal();
    case FilterOp::kNe:
    case FilterOp::kNotIn:
      return !any_equal();
    case FilterOp::kContains:
      return TextTest(property, [&](const std::string& text) {
        return text.find(filter.values[0].as_string()) != std::string::npos;
      });
    case FilterOp::kStartsWith:
      return TextTest(property, [&](const std::string& text) {
        return text.rfind(filter.values[0].as_string(), 0) == 0;
      });
    case FilterOp::kLt:
      return compare([](int c) { return c < 0; });
    case FilterOp::kLe:
      return compare([](int c) { return c <= 0; });
    case FilterOp::kGt:
      return compare([](int c) { return c > 0; });
    case FilterOp::kGe:
      return compare([](int c) { return c >= 0; });
    case FilterOp::kIsSet:
      return is_set;
    case FilterOp::kIsNotSet:
      return !is_set;
  }
  return false;
}

bool Selects(const EventSelector& selector, const Event& event) {
  return (selector.any_event || event.name == selector.event) && Matches(selector.filter, event);
}

// The bucket label of an instant, straight from the zone's local time.
std::string LocalLabel(const date::time_zone* zone, TimeUnit unit, int64_t time_ms) {
  using namespace std::chrono;
  const date::sys_time<milliseconds> sys{milliseconds{time_ms}};
  const auto info = zone->get_info(date::floor<seconds>(sys));
  const auto local = date::local_time<milliseconds>{sys.time_since_epoch() + info.offset};
  date::local_days day = date::floor<date::days>(local);
  if (unit == TimeUnit::kWeek) {
    day -= date::weekday{day} - date::Monday;
  } else if (unit == TimeUnit::kMonth) {
    const date::year_month_day ymd{day};
    day = date::local_days{ymd.year() / ymd.month() / 1};
  }
  std::string label = date::format("%F", day);
  if (unit == TimeUnit::kHour) {
    const auto hours_in = date::floor<hours>(local - date::floor<date::days>(local));
    char text[32];
    const int64_t offset_s = info.offset.count();
    const int64_t offset_abs = offset_s < 0 ? -offset_s : offset_s;
    std::snprintf(text, sizeof(text), "T%02d:00%c%02d:%02d", static_cast<int>(hours_in.count()),
                  offset_s < 0 ? '-' : '+', static_cast<int>(offset_abs / 3600),
                  static_cast<int>(offset_abs % 3600 / 60));
    label += text;
  }
  return label;
}

// Labels in time order from `from_ms`, found by walking in 15-minute steps
// (every zone used here changes offset on a quarter hour).
std::vector<std::string> WalkLabels(const date::time_zone* zone, TimeUnit unit, int64_t from_ms,
                                    int64_t to_ms) {
  std::vector<std::string> labels;
  for (int64_t time_ms = from_ms; time_ms < to_ms; time_ms += 15 * kMinuteMs) {
    std::string label = LocalLabel(zone, unit, time_ms);
    if (labels.empty() || labels.back() != label) {
      labels.push_back(std::move(label));
    }
  }
  return labels;
}

int64_t LabelIndex(const std::vector<std::string>& labels, const std::string& label) {
  const auto it = std::find(labels.begin(), labels.end(), label);
  return it == labels.end() ? static_cast<int64_t>(labels.size()) + 1000 : it - labels.begin();
}

// Breakdown values: int 3 and double 3.0 are one group.
Value GroupValue(const Event& event, const std::string& property) {
  const Value* value = FindProperty(event.properties, property);
  if (value == nullptr) {
    return Value::Null();
  }
  if (value->type() == Value::Type::kDouble &&
      value->as_double() == std::trunc(value->as_double())) {
    return Value::Int(static_cast<int64_t>(value->as_double()));
  }
  return *value;
}

int TypeRank(const Value& value) {
  switch (value.type()) {
    case Value::Type::kBool:
      return 0;
    case Value::Type::kInt:
    case Value::Type::kDouble:
      return 1;
    case Value::Type::kString:
      return 2;
    case Value::Type::kList:
      return 3;
    case Value::Type::kNull:
      return 4;
  }
  return 4;
}

struct KeyLess {
  bool operator()(const std::vector<Value>& left, const std::vector<Value>& right) const {
    return std::lexicographical_compare(left.begin(), left.end(), right.begin(), right.end(),
                                        [](const Value& a, const Value& b) {
                                          if (TypeRank(a) != TypeRank(b)) {
                                            return TypeRank(a) < TypeRank(b);
                                          }
                                          switch (TypeRank(a)) {
                                            case 0:
                                              return a.as_bool() < b.as_bool();
                                            case 1:
                                              return CompareNumber(a, b) == -1;
                                            case 2:
                                              return a.as_string() < b.as_string();
                                            case 3:
                                              return a.as_list() < b.as_list();
                                            default:
                                              return false;
                                          }
                                        });
  }
};
using Key = std::vector<Value>;

std::vector<Key> KeyOf(const QuerySpec& spec, const Event& event) {
  Key key;
  for (const std::string& property : spec.breakdown.properties) {
    key.push_back(GroupValue(event, property));
  }
  return {key};
}

// Ranks keys by weight (descending), then by value; returns top N and the rest.
std::vector<Key> Rank(const std::map<Key, uint64_t, KeyLess>& weight) {
  std::vector<Key> keys;
  for (const auto& [key, count] : weight) {
    if (count > 0) {
      keys.push_back(key);
    }
  }
  std::stable_sort(keys.begin(), keys.end(),
                   [&](const Key& a, const Key& b) { return weight.at(a) > weight.at(b); });
  return keys;
}

double NearestRank(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(values.size())));
  rank = std::max<size_t>(rank, 1);
  return values[rank - 1];
}

// Segmentation, row by row.
struct CellEvents {
  std::vector<const Event*> events;
};

std::optional<double> MeasureOf(const QuerySpec& spec, const std::vector<const Event*>& events) {
  std::vector<double> numbers;
  std::set<Id128> subjects;
  for (const Event* event : events) {
    subjects.insert(event->subject);
    const Value* value = spec.measure_property.empty()
                             ? nullptr
                             : FindProperty(event->properties, spec.measure_property);
    if (value != nullptr && IsNumber(*value)) {
      numbers.push_back(value->type() == Value::Type::kInt ? static_cast<double>(value->as_int())
                                                           : value->as_double());
    }
  }
  double sum = 0;
  for (const double number : numbers) {
    sum += number;
  }
  switch (spec.measure) {
    case Measure::kTotal:
      return static_cast<double>(events.size());
    case Measure::kUnique:
      return static_cast<double>(subjects.size());
    case Measure::kSum:
      return sum;
    case Measure::kAverage:
      return numbers.empty() ? std::nullopt
                             : std::optional<double>(sum / static_cast<double>(numbers.size()));
    case Measure::kMin:
      return numbers.empty()
                 ? std::nullopt
                 : std::optional<double>(*std::min_element(numbers.begin(), numbers.end()));
    case Measure::kMax:
      return numbers.empty()
                 ? std::nullopt
                 : std::optional<double>(*std::max_element(numbers.begin(), numbers.end()));
    case Measure::kMedian:
      return numbers.empty() ? std::nullopt : std::optional<double>(NearestRank(numbers, 0.5));
    case Measure::kP90:
      return numbers.empty() ? std::nullopt : std::optional<double>(NearestRank(numbers, 0.9));
    case Measure::kPerSubjectAverage:
      return subjects.empty() ? std::nullopt
                              : std::optional<double>(static_cast<double>(events.size()) /
                                                      static_cast<double>(subjects.size()));
  }
  return std::nullopt;
}

QueryResult ReferenceSegmentation(const QuerySpec& spec, const std::vector<StoredEvent>& events,
                                  const date::time_zone* zone, int64_t from_ms, int64_t to_ms) {
  QueryResult result;
  const std::vector<std::string> labels = WalkLabels(zone, spec.unit, from_ms, to_ms);
  for (const std::string& label : labels) {
    result.buckets.push_back(Bucket{0, label});
  }
  for (const EventSelector& selector : spec.events) {
    // key → per bucket events, and all events.
    std::map<Key, std::vector<std::vector<const Event*>>, KeyLess> cells;
    std::map<Key, uint64_t, KeyLess> weight;
    for (const StoredEvent& stored : events) {
      const Event& event = stored.event;
      if (event.time_ms < from_ms || event.time_ms >= to_ms || !Selects(selector, event)) {
        continue;
      }
      const Key key = KeyOf(spec, event)[0];
      auto& per_bucket = cells[key];
      per_bucket.resize(labels.size() + 1);
      const auto bucket =
          static_cast<size_t>(LabelIndex(labels, LocalLabel(zone, spec.unit, event.time_ms)));
      per_bucket[bucket].push_back(&event);
      per_bucket[labels.size()].push_back(&event);
      weight[key] += 1;
    }
    auto emit = [&](const std::vector<std::vector<const Event*>>& per_bucket, GroupKey group) {
      SegmentationSeries series;
      series.event = selector.event;
      series.any_event = selector.any_event;
      series.group = std::move(group);
      for (size_t bucket = 0; bucket < labels.size(); ++bucket) {
        series.values.push_back(
            MeasureOf(spec, per_bucket.empty() ? std::vector<const Event*>{} : per_bucket[bucket]));
      }
      series.total = MeasureOf(
          spec, per_bucket.empty() ? std::vector<const Event*>{} : per_bucket[labels.size()]);
      result.series.push_back(std::move(series));
    };
    if (spec.breakdown.properties.empty()) {
      emit(cells.empty() ? std::vector<std::vector<const Event*>>{} : cells.begin()->second, {});
      continue;
    }
    const std::vector<Key> ranked = Rank(weight);
    std::vector<std::vector<const Event*>> other(labels.size() + 1);
    for (size_t rank = 0; rank < ranked.size(); ++rank) {
      if (rank < spec.breakdown.limit) {
        emit(cells[ranked[rank]], GroupKey{ranked[rank], false});
        continue;
      }
      for (size_t bucket = 0; bucket <= labels.size(); ++bucket) {
        auto& source = cells[ranked[rank]][bucket];
        other[bucket].insert(other[bucket].end(), source.begin(), source.end());
      }
    }
    if (ranked.size() > spec.breakdown.limit) {
      emit(other, GroupKey{{}, true});
    }
  }
  return result;
}

// Each subject's events in time order; same-millisecond ties by `tie`, then
// by storage order.
std::map<Id128, std::vector<const StoredEvent*>> BySubject(
    const std::vector<StoredEvent>& events, const std::function<int(const Event&)>& tie) {
  std::map<Id128, std::vector<const StoredEvent*>> subjects;
  for (const StoredEvent& stored : events) {
    subjects[stored.event.subject].push_back(&stored);
  }
  for (auto& [subject, list] : subjects) {
    std::stable_sort(list.begin(), list.end(), [&](const StoredEvent* a, const StoredEvent* b) {
      const auto key = [&](const StoredEvent* e) {
        return std::make_tuple(e->event.time_ms, tie(e->event), e->source, e->segment,
                               e->event.insert_id);
      };
      return key(a) < key(b);
    });
  }
  return subjects;
}

struct Tally {
  std::vector<uint64_t> reached;
  std::vector<std::vector<double>> gaps;
};

std::vector<int64_t> TimeToConvertBounds(const QuerySpec& spec) {
  std::vector<int64_t> bounds;
  for (const int64_t bound : kFunnelTimeToConvertBucketsMs) {
    if (bound <= spec.window_ms) {
      bounds.push_back(bound);
    }
  }
  return bounds;
}

FunnelGroup FunnelOut(const QuerySpec& spec, const Tally& tally) {
  FunnelGroup group;
  for (size_t step = 0; step < spec.steps.size(); ++step) {
    FunnelStepResult out;
    out.event = spec.steps[step].event;
    out.any_event = spec.steps[step].any_event;
    out.subjects = tally.reached[step];
    const double first = static_cast<double>(tally.reached[0]);
    const double previous =
        static_cast<double>(step == 0 ? tally.reached[0] : tally.reached[step - 1]);
    out.step_conversion = previous == 0 ? 0 : static_cast<double>(out.subjects) / previous;
    out.overall_conversion = first == 0 ? 0 : static_cast<double>(out.subjects) / first;
    if (step > 0 && !tally.gaps[step].empty()) {
      out.median_ms = static_cast<int64_t>(NearestRank(tally.gaps[step], 0.5));
      out.p90_ms = static_cast<int64_t>(NearestRank(tally.gaps[step], 0.9));
    }
    if (step > 0) {
      // Time to convert: each gap in the last bucket whose bound it reaches,
      // of the buckets that begin within the window.
      const std::vector<int64_t> bounds = TimeToConvertBounds(spec);
      out.time_to_convert.assign(bounds.size(), uint64_t{0});
      for (const double gap : tally.gaps[step]) {
        size_t bucket = 0;
        for (size_t bound_idx = 0; bound_idx < bounds.size(); ++bound_idx) {
          if (static_cast<double>(bounds[bound_idx]) <= gap) {
            bucket = bound_idx;
          }
        }
        *out.time_to_convert[bucket] += 1;
      }
    }
    group.steps.push_back(std::move(out));
  }
  return group;
}

QueryResult ReferenceFunnel(const QuerySpec& spec, const std::vector<StoredEvent>& events,
                            int64_t from_ms, int64_t to_ms) {
  const size_t steps = spec.steps.size();
  auto tie = [&](const Event& event) {
    for (size_t step = 0; step < steps; ++step) {
      if (Selects(spec.steps[step], event)) {
        return static_cast<int>(step);
      }
    }
    for (size_t exclusion = 0; exclusion < spec.exclusions.size(); ++exclusion) {
      if (Selects(spec.exclusions[exclusion].selector, event)) {
        return static_cast<int>(steps + exclusion);
      }
    }
    return 255;
  };
  const bool strict = spec.order == FunnelOrder::kStrict;
  Tally everyone{std::vector<uint64_t>(steps), std::vector<std::vector<double>>(steps)};
  std::map<Key, Tally, KeyLess> groups;
  for (const auto& [subject, all] : BySubject(events, tie)) {
    // Loose funnels look only at events a step or an exclusion selects.
    std::vector<const Event*> timeline;
    for (const StoredEvent* stored : all) {
      if (strict || tie(stored->event) != 255) {
        timeline.push_back(&stored->event);
      }
    }
    std::vector<size_t> best;
    for (size_t entry = 0; entry < timeline.size(); ++entry) {
      const Event& first = *timeline[entry];
      if (!Selects(spec.steps[0], first) || first.time_ms < from_ms || first.time_ms >= to_ms) {
        continue;
      }
      std::vector<size_t> path = {entry};
      for (size_t step = 1; step < steps; ++step) {
        std::optional<size_t> found;
        for (size_t pos = path.back() + 1; pos < timeline.size(); ++pos) {
          if (Selects(spec.steps[step], *timeline[pos])) {
            found = pos;
            break;
          }
          if (strict) {
            break;
          }
        }
        if (!found || timeline[*found]->time_ms - first.time_ms > spec.window_ms) {
          break;
        }
        path.push_back(*found);
      }
      bool excluded = false;
      for (const FunnelExclusion& exclusion : spec.exclusions) {
        if (path.size() <= exclusion.to_step) {
          continue;
        }
        const int64_t after = timeline[path[exclusion.from_step]]->time_ms;
        const int64_t before = timeline[path[exclusion.to_step]]->time_ms;
        for (const StoredEvent* stored : all) {
          excluded = excluded || (Selects(exclusion.selector, stored->event) &&
                                  stored->event.time_ms > after && stored->event.time_ms < before);
        }
      }
      if (!excluded && path.size() > best.size()) {
        best = path;
      }
    }
    if (best.empty()) {
      continue;
    }
    std::vector<Tally*> tallies = {&everyone};
    if (!spec.breakdown.properties.empty()) {
      Key key;
      for (const std::string& property : spec.breakdown.properties) {
        key.push_back(GroupValue(*timeline[best[0]], property));
      }
      auto [it, inserted] = groups.try_emplace(
          key, Tally{std::vector<uint64_t>(steps), std::vector<std::vector<double>>(steps)});
      tallies.push_back(&it->second);
    }
    for (Tally* tally : tallies) {
      for (size_t step = 0; step < best.size(); ++step) {
        tally->reached[step] += 1;
        if (step > 0) {
          tally->gaps[step].push_back(static_cast<double>(timeline[best[step]]->time_ms -
                                                          timeline[best[step - 1]]->time_ms));
        }
      }
    }
  }
  QueryResult result;
  result.time_to_convert_buckets_ms = TimeToConvertBounds(spec);
  result.funnel.push_back(FunnelOut(spec, everyone));
  if (spec.breakdown.properties.empty()) {
    return result;
  }
  std::map<Key, uint64_t, KeyLess> weight;
  for (const auto& [key, tally] : groups) {
    weight[key] = tally.reached[0];
  }
  const std::vector<Key> ranked = Rank(weight);
  Tally other{std::vector<uint64_t>(steps), std::vector<std::vector<double>>(steps)};
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const Tally& tally = groups.at(ranked[rank]);
    if (rank < spec.breakdown.limit) {
      FunnelGroup group = FunnelOut(spec, tally);
      group.group = GroupKey{ranked[rank], false};
      result.funnel.push_back(std::move(group));
      continue;
    }
    for (size_t step = 0; step < steps; ++step) {
      other.reached[step] += tally.reached[step];
      other.gaps[step].insert(other.gaps[step].end(), tally.gaps[step].begin(),
                              tally.gaps[step].end());
    }
  }
  if (ranked.size() > spec.breakdown.limit) {
    FunnelGroup group = FunnelOut(spec, other);
    group.group = GroupKey{{}, true};
    result.funnel.push_back(std::move(group));
  }
  return result;
}

struct Triangle {
  std::vector<uint64_t> sizes;
  std::vector<std::vector<uint64_t>> counts;
};

RetentionGroup RetentionOut(const QuerySpec& spec, const std::vector<std::string>& labels,
                            size_t cohorts, const Triangle& triangle) {
  RetentionGroup group;
  group.total_counts.assign(spec.periods + 1, 0);
  std::vector<uint64_t> sizes(spec.periods + 1, 0);
  for (size_t cohort = 0; cohort < cohorts; ++cohort) {
    RetentionCohort out;
    out.start.label = labels[cohort];
    out.size = triangle.sizes[cohort];
    group.size += out.size;
    for (size_t period = 0; period <= spec.periods; ++period) {
      const uint64_t count = triangle.counts[cohort][period];
      out.counts.push_back(count);
      out.rates.push_back(out.size == 0 ? std::nullopt
                                        : std::optional<double>(static_cast<double>(count) /
                                                                static_cast<double>(out.size)));
      group.total_counts[period] += count;
      sizes[period] += out.size;
    }
    group.cohorts.push_back(std::move(out));
  }
  for (size_t period = 0; period <= spec.periods; ++period) {
    group.total_rates.push_back(
        sizes[period] == 0 ? std::nullopt
                           : std::optional<double>(static_cast<double>(group.total_counts[period]) /
                                                   static_cast<double>(sizes[period])));
  }
  return group;
}

QueryResult ReferenceRetention(const QuerySpec& spec, const std::vector<StoredEvent>& events,
                               const date::time_zone* zone, int64_t from_ms, int64_t to_ms) {
  const size_t cohorts = WalkLabels(zone, spec.unit, from_ms, to_ms).size();
  const int64_t unit_ms = spec.unit == TimeUnit::kWeek ? 7 * kDayMs : kDayMs;
  const std::vector<std::string> labels = WalkLabels(
      zone, spec.unit, from_ms, to_ms + static_cast<int64_t>(spec.periods + 2) * unit_ms);
  const size_t periods = spec.periods;
  auto empty = [&] {
    return Triangle{
        std::vector<uint64_t>(cohorts),
        std::vector<std::vector<uint64_t>>(cohorts, std::vector<uint64_t>(periods + 1))};
  };
  Triangle everyone = empty();
  std::map<Key, Triangle, KeyLess> groups;
  for (const auto& [subject, timeline] : BySubject(events, [](const Event&) { return 0; })) {
    const StoredEvent* birth = nullptr;
    for (const StoredEvent* stored : timeline) {
      if (Selects(spec.birth, stored->event) && stored->event.time_ms >= from_ms &&
          stored->event.time_ms < to_ms) {
        birth = stored;
        break;
      }
    }
    if (birth == nullptr) {
      continue;
    }
    const int64_t cohort = LabelIndex(labels, LocalLabel(zone, spec.unit, birth->event.time_ms));
    std::set<int64_t> returned;
    for (const StoredEvent* stored : timeline) {
      if (stored == birth || !Selects(spec.return_event, stored->event) ||
          stored->event.time_ms < birth->event.time_ms) {
        continue;
      }
      const std::string label = LocalLabel(zone, spec.unit, stored->event.time_ms);
      const auto it = std::find(labels.begin(), labels.end(), label);
      returned.insert(it == labels.end() ? 1000000 : (it - labels.begin()) - cohort);
    }
    std::vector<Triangle*> triangles = {&everyone};
    if (!spec.breakdown.properties.empty()) {
      Key key;
      for (const std::string& property : spec.breakdown.properties) {
        key.push_back(GroupValue(birth->event, property));
      }
      triangles.push_back(&groups.try_emplace(key, empty()).first->second);
    }
    for (Triangle* triangle : triangles) {
      triangle->sizes[static_cast<size_t>(cohort)] += 1;
      for (size_t period = 0; period <= periods; ++period) {
        const bool counted =
            spec.mode == RetentionMode::kOn
                ? returned.count(static_cast<int64_t>(period)) > 0
                : !returned.empty() && *returned.rbegin() >= static_cast<int64_t>(period);
        triangle->counts[static_cast<size_t>(cohort)][period] += counted ? 1 : 0;
      }
    }
  }
  QueryResult result;
  result.retention.push_back(RetentionOut(spec, labels, cohorts, everyone));
  if (spec.breakdown.properties.empty()) {
    return result;
  }
  std::map<Key, uint64_t, KeyLess> weight;
  for (const auto& [key, triangle] : groups) {
    for (const uint64_t size : triangle.sizes) {
      weight[key] += size;
    }
  }
  const std::vector<Key> ranked = Rank(weight);
  Triangle other = empty();
  for (size_t rank = 0; rank < ranked.size(); ++rank) {
    const Triangle& triangle = groups.at(ranked[rank]);
    if (rank < spec.breakdown.limit) {
      RetentionGroup group = RetentionOut(spec, labels, cohorts, triangle);
      group.group = GroupKey{ranked[rank], false};
      result.retention.push_back(std::move(group));
      continue;
    }
    for (size_t cohort = 0; cohort < cohorts; ++cohort) {
      other.sizes[cohort] += triangle.sizes[cohort];
      for (size_t period = 0; period <= periods; ++period) {
        other.counts[cohort][period] += triangle.counts[cohort][period];
      }
    }
  }
  if (ranked.size() > spec.breakdown.limit) {
    RetentionGroup group = RetentionOut(spec, labels, cohorts, other);
    group.group = GroupKey{{}, true};
    result.retention.push_back(std::move(group));
  }
  return result;
}

// Random data and queries.

class Generator {
 public:
  explicit Generator(uint64_t seed) : random_(seed) {}

  size_t Pick(size_t count) { return std::uniform_int_distribution<size_t>(0, count - 1)(random_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(random_); }

  // With `by_time`, each segment holds one span of time (as the store
  // writes a segment per day), so the merge by subject takes its classes of
  // disjoint segments; otherwise events fall into segments at random.
  std::vector<StoredEvent> Events(size_t segments, bool by_time) {
    std::vector<StoredEvent> events;
    const size_t subjects = 1 + Pick(25);
    const int64_t slot_steps = Chance(0.5) ? 1 : 24;
    const size_t count = 1 + Pick(400);
    for (size_t event_idx = 0; event_idx < count; ++event_idx) {
      StoredEvent stored;
      Event& event = stored.event;
      event.name = kNames[Pick(4)];
      event.subject = testing::SubjectFromName("s" + std::to_string(Pick(subjects)));
      // Coarse times make same-millisecond ties common; in some rounds
      // very common (6-hour steps).
      event.time_ms =
          kBaseMs - 2 * kDayMs +
          static_cast<int64_t>(Pick(16 * 96 / slot_steps)) * slot_steps * 15 * kMinuteMs;
      if (slot_steps == 1 && Chance(0.3)) {
        event.time_ms += static_cast<int64_t>(Pick(1000));
      }
      event.insert_id = Id128{0, event_idx + 1};
      AddProperties(&event);
      const int64_t span_ms = 16 * kDayMs;
      stored.segment = by_time ? static_cast<size_t>((event.time_ms - (kBaseMs - 2 * kDayMs)) *
                                                     static_cast<int64_t>(segments) / span_ms)
                               : Pick(segments);
      events.push_back(std::move(stored));
    }
    return events;
  }

  std::string FilterJson() {
    static const char* const kFilters[] = {
        R"({"property":"p","op":"eq","value":"x"})",
        R"({"property":"p","op":"ne","value":"y"})",
        R"({"property":"p","op":"in","values":["x","z",3]})",
        R"({"property":"p","op":"not_in","values":["x"]})",
        R"({"property":"p","op":"contains","value":"y"})",
        R"({"property":"p","op":"starts_with","value":"z"})",
        R"({"property":"n","op":"lt","value":2})",
        R"({"property":"n","op":"le","value":2.5})",
        R"({"property":"n","op":"gt","value":1})",
        R"({"property":"n","op":"ge","value":3})",
        R"({"property":"p","op":"gt","value":"x"})",
        R"({"property":"p","op":"is_set"})",
        R"({"property":"n","op":"is_not_set"})",
        R"({"property":"tags","op":"eq","value":"t1"})",
        R"({"property":"tags","op":"contains","value":"2"})",
        R"({"property":"flag","op":"eq","value":true})",
        R"({"property":"p","op":"eq","value":null})",
        R"({"or":[{"property":"p","op":"eq","value":"x"},{"property":"n","op":"gt","value":2}]})",
        R"({"and":[{"property":"p","op":"is_set"},{"or":[{"property":"tags","op":"is_set"},{"property":"n","op":"eq","value":1}]}]})",
    };
    return kFilters[Pick(sizeof(kFilters) / sizeof(kFilters[0]))];
  }

  std::string SelectorJson() {
    const std::string name = kNames[Pick(4)];
    if (Chance(0.1)) {
      // Every event: no block may be skipped by name.
      return Chance(0.5) ? R"({"any_event":true})"
                         : R"({"any_event":true,"filters":[)" + FilterJson() + "]}";
    }
    if (Chance(0.5)) {
      return "\"" + name + "\"";
    }
    return R"({"event":")" + name + R"(","filters":[)" + FilterJson() + "]}";
  }

  std::string BreakdownJson() {
    static const char* const kProperties[] = {"p", "n", "flag", "tags"};
    if (Chance(0.4)) {
      return "";
    }
    std::string json =
        R"(,"breakdown":{"properties":[")" + std::string(kProperties[Pick(4)]) + "\"";
    if (Chance(0.3)) {
      json += R"(,")" + std::string(kProperties[Pick(4)]) + "\"";
    }
    return json + R"(],"limit":)" + std::to_string(1 + Pick(4)) + "}";
  }

  std::string RangeJson(bool weeks) {
    const int from_day = 1 + static_cast<int>(Pick(5));
    const int days = 1 + static_cast<int>(Pick(weeks ? 14 : 6));
    char text[128];
    std::snprintf(text, sizeof(text),
                  R"("from":"2024-03-%02d","to":"2024-03-%02d","time_zone":"%s")", from_day,
                  from_day + days, kZones[Pick(4)]);
    return text;
  }

  std::string Query() {
    switch (Pick(3)) {
      case 0: {
        static const char* const kUnits[] = {"hour", "day", "week", "month"};
        static const char* const kMeasures[] = {R"("total")",
                                                R"("unique")",
                                                R"("per_subject_average")",
                                                R"({"type":"sum","property":"n"})",
                                                R"({"type":"average","property":"n"})",
                                                R"({"type":"min","property":"n"})",
                                                R"({"type":"max","property":"n"})",
                                                R"({"type":"median","property":"n"})",
                                                R"({"type":"p90","property":"n"})"};
        std::string events = SelectorJson();
        if (Chance(0.4)) {
          events += "," + SelectorJson();
        }
        std::string json = R"({"kind":"segmentation",)" + RangeJson(true) + R"(,"unit":")" +
                           kUnits[Pick(4)] + R"(","events":[)" + events + R"(],"measure":)" +
                           kMeasures[Pick(9)] + BreakdownJson();
        if (Chance(0.2)) {
          json += R"(,"filters":[)" + FilterJson() + "]";
        }
        return json + "}";
      }
      case 1: {
        std::string steps = SelectorJson();
        const size_t step_count = 2 + Pick(3);
        for (size_t step = 1; step < step_count; ++step) {
          steps += "," + SelectorJson();
        }
        std::string json = R"({"kind":"funnel",)" + RangeJson(false) + R"(,"steps":[)" + steps +
                           R"(],"window_ms":)" + std::to_string((1 + Pick(48)) * 15 * kMinuteMs) +
                           R"(,"order":")" + (Chance(0.3) ? "strict" : "loose") + "\"";
        if (Chance(0.4)) {
          const size_t first = 1 + Pick(step_count - 1);
          const size_t second = first + 1 + Pick(step_count - first);
          json += R"(,"exclusions":[{"event":")" + std::string(kNames[Pick(4)]) +
                  R"(","between":[)" + std::to_string(first) + "," + std::to_string(second) + "]}]";
        }
        return json + BreakdownJson() + "}";
      }
      default: {
        const bool weeks = Chance(0.3);
        return R"({"kind":"retention",)" + RangeJson(weeks) + R"(,"birth":)" + SelectorJson() +
               R"(,"return":)" + SelectorJson() + R"(,"unit":")" + (weeks ? "week" : "day") +
               R"(","periods":)" + std::to_string(1 + Pick(5)) + R"(,"mode":")" +
               (Chance(0.5) ? "on" : "on_or_after") + "\"" + BreakdownJson() + "}";
      }
    }
  }

 private:
  void AddProperties(Event* event) {
    static const char* const kStrings[] = {"x", "y", "z", "xy", "zz"};
    switch (Pick(5)) {
      case 0:
        break;
      case 1:
        event->properties.push_back({"p", Value::Null()});
        break;
      case 2:
        event->properties.push_back({"p", Value::Int(3)});
        break;
      default:
        event->properties.push_back({"p", Value::String(kStrings[Pick(5)])});
        break;
    }
    switch (Pick(4)) {
      case 0:
        break;
      case 1:
        event->properties.push_back({"n", Value::Int(static_cast<int64_t>(Pick(5)))});
        break;
      case 2:
        event->properties.push_back({"n", Value::Double(0.5 * static_cast<double>(Pick(8)))});
        break;
      default:
        event->properties.push_back({"n", Value::String("2")});
        break;
    }
    if (Chance(0.2)) {
      event->properties.push_back(
          {"tags", Value::List({"t1", kStrings[Pick(5)] + std::string("2")})});
    }
    if (Chance(0.3)) {
      event->properties.push_back({"flag", Value::Bool(Chance(0.5))});
    }
  }

  std::mt19937_64 random_;
};

// The reference has no block statistics, and knows bucket starts only by
// label (the data files check the instants).
void Align(const QueryResult& engine, QueryResult* reference) {
  reference->kind = engine.kind;
  reference->time_zone = engine.time_zone;
  reference->from_ms = engine.from_ms;
  reference->to_ms = engine.to_ms;
  reference->unit = engine.unit;
  reference->measure = engine.measure;
  reference->mode = engine.mode;
  for (size_t bucket = 0; bucket < reference->buckets.size() && bucket < engine.buckets.size();
       ++bucket) {
    reference->buckets[bucket].start_ms = engine.buckets[bucket].start_ms;
  }
  for (size_t group = 0; group < reference->retention.size() && group < engine.retention.size();
       ++group) {
    auto& cohorts = reference->retention[group].cohorts;
    for (size_t cohort = 0;
         cohort < cohorts.size() && cohort < engine.retention[group].cohorts.size(); ++cohort) {
      cohorts[cohort].start.start_ms = engine.retention[group].cohorts[cohort].start.start_ms;
    }
  }
}

// Adds alias links between random subjects ($create_alias on one, naming
// the other), and returns the events as the reference sees them: each
// event's subject replaced by its person (a component of the links, found
// naively), the stored id kept in `source`.
std::vector<StoredEvent> AddAliasLinks(Generator* generator, size_t segment_count,
                                       std::vector<StoredEvent>* events) {
  std::vector<Id128> subjects;
  for (const StoredEvent& stored : *events) {
    subjects.push_back(stored.event.subject);
  }
  std::sort(subjects.begin(), subjects.end());
  subjects.erase(std::unique(subjects.begin(), subjects.end()), subjects.end());
  std::map<Id128, Id128> person;
  for (const Id128& subject : subjects) {
    person[subject] = subject;
  }
  const size_t links = generator->Pick(subjects.size() + 1);
  for (size_t link = 0; link < links; ++link) {
    const Id128 alias = subjects[generator->Pick(subjects.size())];
    const Id128 distinct_id = subjects[generator->Pick(subjects.size())];
    StoredEvent stored;
    stored.event.name = "$create_alias";
    stored.event.subject = distinct_id;
    stored.event.time_ms =
        kBaseMs - 2 * kDayMs + static_cast<int64_t>(generator->Pick(96)) * kHourMs;
    stored.event.insert_id = Id128{1, events->size() + 1};
    stored.event.properties.push_back({"alias", Value::String(FormatPseudonym(alias))});
    stored.segment = generator->Pick(segment_count);
    events->push_back(std::move(stored));
    // Relabel the two components as one, named by the lower label.
    const Id128 from = std::max(person[alias], person[distinct_id]);
    const Id128 to = std::min(person[alias], person[distinct_id]);
    for (auto& [subject, label] : person) {
      if (label == from) {
        label = to;
      }
    }
  }
  std::vector<StoredEvent> resolved = *events;
  for (StoredEvent& stored : resolved) {
    stored.source = stored.event.subject;
    stored.event.subject = person[stored.event.subject];
  }
  return resolved;
}

// How the rounds' segments keep their rows (docs/identity.md, "Folded
// segments"): as stored; folded with the persons of the links (most
// segments, some by EncodeSegment and some by the merge, a few left as
// stored); or folded with a random table that matches no links, so that
// values hold rows of several persons and must be told apart.
enum class Folding { kNone, kPersons, kRandom };

// `segment` (unfolded) folded with `fold`, by the merge or by EncodeSegment.
std::shared_ptr<const store::SegmentReader> Fold(
    const std::shared_ptr<const store::SegmentReader>& segment, const std::vector<Event>& events,
    const store::SubjectFold& fold, uint32_t block_rows, bool by_merge) {
  store::SegmentWriteOptions options;
  options.project_id = 1;
  options.block_rows_max = block_rows;
  options.fold = &fold;
  const std::vector<std::shared_ptr<const store::SegmentReader>> inputs = {segment};
  Result<std::string> image =
      by_merge ? store::MergeSegmentsToImage(inputs, options) : store::EncodeSegment(events, options);
  EXPECT_TRUE(image.ok()) << image.status().ToString();
  auto reader = store::SegmentReader::Open(std::move(image).value(), "folded.seg");
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return std::move(reader).value();
}

store::SubjectFold RandomFold(Generator* generator, const std::vector<StoredEvent>& events) {
  std::vector<Id128> subjects;
  for (const StoredEvent& stored : events) {
    subjects.push_back(stored.event.subject);
  }
  std::sort(subjects.begin(), subjects.end());
  subjects.erase(std::unique(subjects.begin(), subjects.end()), subjects.end());
  store::SubjectFold fold;
  fold.generation = 99;
  for (const Id128& subject : subjects) {
    const Id128& person = subjects[generator->Pick(subjects.size())];
    if (generator->Pick(3) == 0 && person != subject) {
      fold.persons.emplace_back(subject, person);
    }
  }
  return fold;
}

void RunRounds(bool with_links, Folding folding = Folding::kNone, bool merge = true) {
  constexpr int kRounds = 300;
  int compared = 0;
  int folded_segments = 0;
  for (int round = 0; round < kRounds; ++round) {
    Generator generator(static_cast<uint64_t>(round) * 7919 + (with_links ? 5 : 1) +
                        static_cast<uint64_t>(folding) * 100'003);
    const size_t segment_count = 1 + generator.Pick(4);
    std::vector<StoredEvent> events = generator.Events(segment_count, round % 2 == 1);
    std::vector<StoredEvent> reference_events;
    if (with_links) {
      reference_events = AddAliasLinks(&generator, segment_count, &events);
    }
    QueryContext context;
    context.time_zone = "UTC";
    // 1, 2 or 3 threads: the subject space split unevenly, merged by key.
    context.threads = static_cast<uint32_t>(1 + round % 3);
    const uint32_t block_rows = static_cast<uint32_t>(1 + generator.Pick(40));
    std::vector<std::vector<Event>> parts;
    for (size_t segment = 0; segment < segment_count; ++segment) {
      std::vector<Event> part;
      for (const StoredEvent& stored : events) {
        if (stored.segment == segment) {
          part.push_back(stored.event);
        }
      }
      if (part.empty()) {
        continue;
      }
      auto reader = testing::MakeSegment(part, block_rows);
      ASSERT_TRUE(reader.ok()) << reader.status().ToString();
      context.segments.push_back(*reader);
      parts.push_back(std::move(part));
    }
    if (folding != Folding::kNone) {
      store::SubjectFold fold;
      if (folding == Folding::kPersons) {
        Result<std::shared_ptr<const IdentityMap>> map = ResolveIdentities(context.segments);
        ASSERT_TRUE(map.ok());
        fold = *SubjectFoldOf(**map);
      } else {
        fold = RandomFold(&generator, events);
      }
      for (size_t segment = 0; segment < context.segments.size(); ++segment) {
        if (generator.Pick(5) == 0) {
          continue;  // left as stored: an unfolded segment beside folded ones
        }
        context.segments[segment] = Fold(context.segments[segment], parts[segment], fold,
                                         block_rows, generator.Pick(2) == 0);
        folded_segments += context.segments[segment]->summary().stored_subject_runs > 0 ? 1 : 0;
      }
    }
    // Segments without events are skipped: renumber what the reference sees.
    context.merge_identities = merge;
    std::vector<StoredEvent> stored = with_links && merge ? reference_events : events;
    {
      std::vector<size_t> renumber(segment_count, 0);
      size_t next = 0;
      for (size_t segment = 0; segment < segment_count; ++segment) {
        const bool used = std::any_of(events.begin(), events.end(),
                                      [&](const StoredEvent& e) { return e.segment == segment; });
        renumber[segment] = used ? next++ : 0;
      }
      for (StoredEvent& e : stored) {
        e.segment = renumber[e.segment];
      }
    }
    for (int query_idx = 0; query_idx < 4; ++query_idx) {
      const std::string json = generator.Query();
      SCOPED_TRACE("round " + std::to_string(round) + ": " + json);
      const Result<QuerySpec> spec = ParseQuery(json);
      ASSERT_TRUE(spec.ok()) << spec.status().ToString();
      Result<QueryResult> engine = RunQuery(*spec, context);
      ASSERT_TRUE(engine.ok()) << engine.status().ToString();
      const date::time_zone* zone = date::locate_zone(engine->time_zone);
      QueryResult reference;
      switch (spec->kind) {
        case QueryKind::kSegmentation:
          reference = ReferenceSegmentation(*spec, stored, zone, engine->from_ms, engine->to_ms);
          break;
        case QueryKind::kFunnel:
          reference = ReferenceFunnel(*spec, stored, engine->from_ms, engine->to_ms);
          break;
        case QueryKind::kRetention:
          reference = ReferenceRetention(*spec, stored, zone, engine->from_ms, engine->to_ms);
          break;
      }
      Align(*engine, &reference);
      engine->stats = QueryStats{};
      const std::string engine_json = QueryResultToJson(*engine);
      const std::string reference_json = QueryResultToJson(reference);
      ASSERT_EQ(testing::JsonSubsetDiff(reference_json, engine_json), "")
          << "\nreference: " << reference_json << "\nengine:    " << engine_json;
      ++compared;
    }
  }
  EXPECT_EQ(compared, kRounds * 4);
  if (folding != Folding::kNone && (with_links || folding == Folding::kRandom)) {
    EXPECT_GT(folded_segments, kRounds / 2);
  }
}

TEST(QueryDifferentialTest, RandomQueriesMatchTheReference) { RunRounds(false); }

// The same with identity links: the reference counts each person (a
// component of the alias links) as one subject, its events merged by time.
TEST(QueryDifferentialTest, RandomQueriesWithIdentityLinksMatchThePersonReference) {
  RunRounds(true);
}

// Segments folded with the persons of the links (by EncodeSegment and by
// the merge, some left unfolded) answer as the unfolded ones: the reference.
TEST(QueryDifferentialTest, FoldedSegmentsMatchThePersonReference) {
  RunRounds(true, Folding::kPersons);
}

// Segments folded with a table that matches no links: values hold rows of
// several persons, told apart by their stored subjects.
TEST(QueryDifferentialTest, SegmentsFoldedWithAStaleTableMatchThePersonReference) {
  RunRounds(true, Folding::kRandom);
}

// Counting ids (merge_identities off), folded rows count as their stored ids.
TEST(QueryDifferentialTest, FoldedSegmentsCountStoredIdsWithoutMerging) {
  RunRounds(true, Folding::kPersons, false);
}

// Without links, a folded segment's rows still count as their stored ids.
TEST(QueryDifferentialTest, FoldedSegmentsWithoutLinksMatchTheReference) {
  RunRounds(false, Folding::kRandom);
}

}  // namespace
}  // namespace minpanel::query
