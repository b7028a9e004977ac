// The query module: reads what the store holds and shapes it for clients.
// The raw export in Mixpanel's JSON-lines shape, and the analytics queries
// (segmentation, funnels, retention) over columnar segments: ParseQuery turns
// the JSON query format of docs/queries.md into a QuerySpec, RunQuery answers
// it over a snapshot of segments, QueryResultToJson writes the answer body.
//
// Functions are thread-safe as far as the Engine they are given is. ParseQuery,
// RunQuery and QueryResultToJson keep no state between calls; many queries may
// run at once over the same SegmentReaders (their const methods are
// thread-safe).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"
#include "query/identity.h"
#include "query/profile_table.h"
#include "query/watermark.h"
#include "store/segment.h"
#include "store/store.h"

namespace minpanel::query {

// Export output is handed to the sink in chunks of about this many bytes.
inline constexpr size_t kExportChunkBytes = 64 * 1024;
inline constexpr size_t kExportEventNamesMax = 100;
// Distinct ids one export may list (distinct_ids=[...]).
inline constexpr size_t kExportDistinctIdsMax = 10000;
// Threads that decode the blocks of one export of a list of subjects.
inline constexpr size_t kExportSubjectsThreads = 2;

struct ExportRequest {
  uint32_t project_id = 0;
  int64_t from_ms = 0;                   // inclusive
  int64_t to_ms = 0;                     // exclusive
  std::vector<std::string> event_names;  // empty: every event
  std::optional<Id128> subject;
  // Only these subjects (any order, duplicates allowed; at most
  // kExportDistinctIdsMax) when set — an empty list exports nothing. Not
  // together with `subject`.
  std::optional<std::vector<Id128>> subjects;
  uint64_t limit = 0;  // 0: no limit
  // Mixes decoy subjects unique to this export into its rows (watermark.h;
  // docs/security.md, "Watermarked exports"). Only an export of a time
  // range is watermarked: one of named subjects is not.
  std::optional<ExportWatermark> watermark;
  // Each row names its person, as Mixpanel's export gives distinct_id after
  // merges (docs/identity.md, "The export"): `distinct_id` is the person of
  // the row's subject in the identity map of the snapshot at the start, and
  // `$distinct_id_before_identity` the subject as stored where the two
  // differ. False: the subjects as stored, nothing resolved.
  bool resolve_persons = true;
};

struct ExportSummary {
  uint64_t rows = 0;  // real rows (decoys not counted)
  uint64_t bytes = 0;
  uint64_t decoy_subjects = 0;
  uint64_t decoy_rows = 0;
  // The identity map the export resolved persons with (resolve_persons).
  std::optional<IdentityStats> identity;
};

// The property an export row gives the subject as stored when its
// distinct_id is the person (Mixpanel's name for the id an event was sent
// with before an identity merge).
inline constexpr std::string_view kDistinctIdBeforeIdentityKey = "$distinct_id_before_identity";

// Streams the matching events as JSON lines, Mixpanel's export shape:
//   {"event":NAME,"properties":{"time":SECONDS,"distinct_id":"psn_…",
//    ["$distinct_id_before_identity":"psn_…",] "$insert_id":"…", …properties}}
// The sink returns false to stop (e.g. the client went away).
//
// Order: segment by segment, each in (subject, time, insert id) order; the
// events not yet flushed come last. With `subjects` the events are read from
// Engine::Snapshot (the unflushed ones as in-memory segments, last), and only
// the blocks whose subject range holds a wanted subject are decoded (on
// kExportSubjectsThreads threads, lines still in order): a sorted merge of
// the wanted subjects against the blocks' subject zone maps.
// InvalidArgument when both `subject` and `subjects` are set, or past
// kExportDistinctIdsMax.
Result<ExportSummary> ExportJsonLines(store::Engine& engine, const ExportRequest& request,
                                      const std::function<bool(std::string_view)>& sink);

// Appends one event as a JSON line (with the trailing newline) to `out`.
void AppendEventJsonLine(const Event& event, std::string* out);
// The same with the row's person (ExportRequest::resolve_persons): nullptr,
// or the subject itself, writes the line above; another id becomes the
// distinct_id, the subject `$distinct_id_before_identity` (a stored property
// of that name is then left out).
void AppendEventJsonLine(const Event& event, const Id128* person, std::string* out);

// Appends `text` as a JSON string literal, escaping as RFC 8259 requires.
void AppendJsonString(std::string_view text, std::string* out);
// A number: integral values below 9e15 as integers, others in the shortest
// form that reads back to the same double; NaN and infinities as null.
void AppendJsonNumber(double value, std::string* out);
// A property value as JSON (lists of strings as arrays).
void AppendJsonValue(const Value& value, std::string* out);

// Analytics queries. The JSON format, the semantics and the limits below are
// documented in docs/queries.md.

// Limits on a query (InvalidArgument naming the limit when exceeded).
inline constexpr size_t kQueryJsonBytesMax = 256 * 1024;
inline constexpr size_t kQueryJsonDepthMax = 32;
inline constexpr size_t kSegmentationEventsMax = 10;
inline constexpr size_t kFunnelStepsMin = 2;
inline constexpr size_t kFunnelStepsMax = 16;
inline constexpr size_t kFunnelExclusionsMax = 8;
inline constexpr int64_t kFunnelWindowMsMax = 366LL * 24 * 3600 * 1000;
inline constexpr int64_t kFunnelWindowMsDefault = 7LL * 24 * 3600 * 1000;
// The funnel's time-to-convert histogram (docs/queries.md, "Time to
// convert"): the lower bound of each bucket, about log-scale from seconds to
// months (10 s, 1 min, 5 min, 15 min, 1 h, 4 h, 1 d, 3 d, 7 d, 30 d, 90 d).
// A funnel shows the buckets that begin within its window; the last one
// shown is open-ended.
inline constexpr std::array<int64_t, 12> kFunnelTimeToConvertBucketsMs = {
    0,          10'000,     60'000,      300'000,     900'000,       3'600'000,
    14'400'000, 86'400'000, 259'200'000, 604'800'000, 2'592'000'000, 7'776'000'000};
inline constexpr uint32_t kRetentionPeriodsMax = 120;
inline constexpr size_t kBreakdownPropertiesMax = 2;
inline constexpr size_t kBreakdownLimitMax = 200;  // top-N values before "other"
inline constexpr size_t kBreakdownLimitDefault = 10;
inline constexpr size_t kFilterConditionsMax = 64;  // conditions and groups, per selector
inline constexpr size_t kFilterDepthMax = 4;        // nesting of and/or groups
inline constexpr size_t kFilterValuesMax = 1000;    // values of one in/not_in
inline constexpr size_t kPropertyNameBytesMax = 255;
inline constexpr size_t kEventNameBytesMax = 255;
inline constexpr size_t kFilterValueBytesMax = 1024;
inline constexpr int64_t kQueryRangeDaysMax =
    3660;  // also the furthest a relative time reaches back
inline constexpr size_t kSegmentationBucketsMax = 10000;
inline constexpr uint32_t kQueryThreadsMax = 16;
// Memory bounds on one query's tallies (ResourceExhausted when exceeded): the
// distinct breakdown values it tracks, and its cells — groups × series ×
// buckets (segmentation), groups × steps (funnels), groups × cohorts ×
// periods (retention).
inline constexpr size_t kBreakdownGroupsTrackedMax = 100000;
inline constexpr size_t kQueryCellsMax = 4000000;
// The largest minimum group size (k) a project or key may set
// (QueryContext::min_group_size; docs/queries.md, "Small groups").
inline constexpr uint32_t kMinGroupSizeMax = 1000;

enum class QueryKind : uint8_t { kSegmentation, kFunnel, kRetention };
enum class TimeUnit : uint8_t { kHour, kDay, kWeek, kMonth };
enum class Measure : uint8_t {
  kTotal,
  kUnique,
  kSum,
  kAverage,
  kMin,
  kMax,
  kMedian,
  kP90,
  kPerSubjectAverage,  // events per unique subject
};
enum class FilterOp : uint8_t {
  kEq,
  kNe,
  kIn,
  kNotIn,
  kContains,
  kStartsWith,
  kLt,
  kLe,
  kGt,
  kGe,
  kIsSet,
  kIsNotSet,
};
enum class FunnelOrder : uint8_t { kLoose, kStrict };
enum class RetentionMode : uint8_t { kOn, kOnOrAfter };

std::string_view QueryKindName(QueryKind kind);
std::string_view TimeUnitName(TimeUnit unit);
std::string_view MeasureName(Measure measure);
std::string_view FilterOpName(FilterOp op);

// Where a property named by a filter or breakdown comes from: the event
// itself, the profile of the event's person, or the profile of the event's
// group of one group key (docs/queries.md, "Profile and group properties").
// Filter::property and Breakdown::properties hold an event property's key
// as it is, and the other two encoded by PropertyReference (a NUL byte
// first, which ParseQuery refuses in names, so no event key collides).
// kSubject: the event's subject column (the stored pseudonym, "psn_" and
// 32 hex digits), which a query names as "distinct_id" (ResolveSubjectIds).
enum class PropertySource : uint8_t { kEvent, kProfile, kGroup, kSubject };
struct PropertyRef {
  PropertySource source = PropertySource::kEvent;
  std::string_view group_key;  // kGroup
  std::string_view name;
};
std::string PropertyReference(PropertySource source, std::string_view group_key,
                              std::string_view name);
// Decodes what PropertyReference wrote; any other text is an event key.
PropertyRef ParsePropertyReference(std::string_view reference);

// The name a query gives the subject (Mixpanel's distinct_id): a filter on
// it or a breakdown by it reads the subject column (docs/queries.md,
// "Filtering and breaking down by distinct_id").
inline constexpr std::string_view kDistinctIdProperty = "distinct_id";

// A filter tree: a condition on one property, or an and/or group. An empty
// kAnd group matches every event. Depth and size are bounded by the limits
// above, so evaluating it recursively is bounded too.
struct Filter {
  enum class Kind : uint8_t { kCondition, kAnd, kOr };
  Kind kind = Kind::kAnd;
  std::string property;          // kCondition
  FilterOp op = FilterOp::kEq;   // kCondition
  std::vector<Value> values;     // kCondition: null, bool, int, double or string
  std::vector<Filter> children;  // kAnd, kOr
};

// One event name (or every name, with any_event) and the filter its events
// must pass.
struct EventSelector {
  std::string event;  // empty when any_event
  bool any_event = false;
  Filter filter;
};

// A time as the query wrote it: milliseconds since the epoch (UTC), or a
// local date-time resolved in the query's time zone when it runs.
struct TimeSpec {
  // Relative to the server's clock (QueryContext::now_ms): "now", "-90m" and
  // "-12h" count back from now; "today" and "-7d" / "-2w" are local midnights
  // (today's, or that many days before it) in the query's zone.
  enum class Relative : uint8_t { kNone, kNow, kMinutes, kHours, kDays };
  Relative relative = Relative::kNone;
  int64_t relative_count = 0;  // minutes, hours or days back
  bool local = false;
  int64_t utc_ms = 0;   // !local
  int32_t year = 1970;  // local: wall-clock fields
  uint32_t month = 1;
  uint32_t day = 1;
  uint32_t hour = 0;
  uint32_t minute = 0;
  uint32_t second = 0;
  uint32_t millisecond = 0;
};

struct Breakdown {
  std::vector<std::string> properties;  // 0 .. kBreakdownPropertiesMax
  size_t limit = kBreakdownLimitDefault;
};

struct FunnelExclusion {
  EventSelector selector;
  size_t from_step = 0;  // 0-based; the exclusion applies strictly between
  size_t to_step = 1;    // the events of these two steps (from < to)
};

struct QuerySpec {
  QueryKind kind = QueryKind::kSegmentation;
  TimeSpec from;          // inclusive
  TimeSpec to;            // exclusive
  std::string time_zone;  // empty: the project's (QueryContext::time_zone)
  Breakdown breakdown;
  // Segmentation.
  std::vector<EventSelector> events;
  Measure measure = Measure::kTotal;
  std::string measure_property;  // kSum .. kP90
  // kUnique with a group key: distinct groups of that key, not subjects.
  std::string measure_group_key;
  TimeUnit unit = TimeUnit::kDay;  // segmentation and retention
  // Segmentation: also answer the same query over the range of the same
  // length (in milliseconds) that ends where this one begins
  // (`"compare": "previous_period"`; QueryResult::previous).
  bool compare_previous = false;
  // Funnel.
  std::vector<EventSelector> steps;
  std::vector<FunnelExclusion> exclusions;
  int64_t window_ms = kFunnelWindowMsDefault;
  FunnelOrder order = FunnelOrder::kLoose;
  // Retention.
  EventSelector birth;
  EventSelector return_event;
  uint32_t periods = 7;
  RetentionMode mode = RetentionMode::kOn;
};

// What a query runs over: a consistent snapshot of one project's segments
// (the unflushed events as one more, in-memory, segment). The readers must
// outlive RunQuery; they are only read.
struct QueryContext {
  std::vector<std::shared_ptr<const store::SegmentReader>> segments;
  std::string time_zone = "UTC";  // the project's IANA zone
  // The server clock: relative times ("-7d") and incomplete retention
  // periods. 0: unknown (relative times are refused, no period is incomplete).
  int64_t now_ms = 0;
  // Threads one query may use (1 .. kQueryThreadsMax): the subject space is
  // split between them, so every kind of query scales with cores.
  uint32_t threads = 2;
  // Count persons, not ids (docs/identity.md): unique counts, funnels and
  // retention treat the ids that identify / alias / merge events link as one
  // person. RunQuery resolves `identity` from the segments (cached per
  // segment) unless it is set; false: every id is a person of its own.
  bool merge_identities = true;
  std::shared_ptr<const IdentityMap> identity;
  // Which subject-column values the scan sets aside as parts of a larger
  // person (PersonPlan); RunQuery resolves it (cached per snapshot) when
  // some id is linked or some segment folded, unless it is set.
  std::shared_ptr<const PersonPlan> persons;
  // The project's profiles (ProfileTableCache::Get), needed by a query that
  // names a profile or group property (UsesProfiles); RunQuery applies the
  // identity map to it.
  std::shared_ptr<const ProfileTable> profiles;
  // k-suppression (docs/queries.md, "Small groups"): a cell of the answer
  // with fewer than this many distinct subjects behind it is withheld, and
  // so are enough other cells that no withheld one can be derived by
  // subtraction. 0 or 1: nothing is withheld. At most kMinGroupSizeMax.
  uint32_t min_group_size = 0;
  // The stored subjects a raw distinct id may be (its pseudonym under every
  // key version the store may hold): how a filter on "distinct_id" names
  // them (ResolveSubjectIds). Unset: only pseudonyms ("psn_" and 32 hex
  // digits) may be named.
  std::function<std::vector<Id128>(std::string_view)> pseudonyms;
  // Which property names (of an event, a profile or a group profile) hold a
  // person's id that the policy stores as its pseudonym, as the distinct id
  // is (user_id, $device_id, …): a filter on one matches a raw id through
  // `pseudonyms` too (ResolveSubjectIds). Unset: none.
  std::function<bool(std::string_view)> subject_id_property;
};

// A time bucket (or cohort, or period): its start in UTC and its local label
// ("2024-03-10" for day, week and month; "2024-03-10T02:00+01:00" for hour).
struct Bucket {
  int64_t start_ms = 0;
  std::string label;
};

// A breakdown group: one value per breakdown property (null when the event
// lacks the property); `other` groups every value outside the top N.
struct GroupKey {
  std::vector<Value> values;
  bool other = false;
  friend bool operator==(const GroupKey&, const GroupKey&) = default;
};

struct SegmentationSeries {
  std::string event;  // empty when any_event
  bool any_event = false;
  size_t selector_idx = 0;  // which of the query's events (QuerySpec::events)
  GroupKey group;
  // One per bucket; nullopt where the measure has no value (no numeric row).
  std::vector<std::optional<double>> values;
  std::optional<double> total;  // the measure over the whole range
  // With QueryContext::min_group_size > 1: the distinct subjects behind each
  // value (per bucket, then the whole range; for a property measure, those
  // with a numeric value), and the withheld ones (bucket indices; nullopt
  // in `values`).
  std::vector<uint64_t> subjects;
  std::vector<uint32_t> suppressed;
  bool total_suppressed = false;
};

struct FunnelStepResult {
  std::string event;  // empty when any_event
  bool any_event = false;
  uint64_t subjects = 0;
  double step_conversion = 0;        // subjects / previous step's subjects
  double overall_conversion = 0;     // subjects / first step's subjects
  std::optional<int64_t> median_ms;  // time from the previous step
  std::optional<int64_t> p90_ms;
  // Withheld (k-suppression): `subjects`, the conversions and the times are
  // not shown.
  bool suppressed = false;
  // The time to convert from the previous step (empty for step 1): subjects
  // per bucket of QueryResult::time_to_convert_buckets_ms, summing to
  // `subjects`. nullopt where withheld (k-suppression), whose indices are
  // listed in `time_to_convert_suppressed`.
  std::vector<std::optional<uint64_t>> time_to_convert;
  std::vector<uint32_t> time_to_convert_suppressed;
};

struct FunnelGroup {
  std::optional<GroupKey> group;  // nullopt: every subject
  std::vector<FunnelStepResult> steps;
};

struct RetentionCohort {
  Bucket start;
  uint64_t size = 0;
  // Index = period (0 .. periods); nullopt for periods that have not begun.
  std::vector<std::optional<uint64_t>> counts;
  std::vector<std::optional<double>> rates;
  // The first period that has not ended yet at now_ms, if any.
  std::optional<uint32_t> incomplete_from;
  // k-suppression: the size, and the periods whose counts are withheld.
  bool size_suppressed = false;
  std::vector<uint32_t> suppressed;
};

struct RetentionGroup {
  std::optional<GroupKey> group;  // nullopt: every subject
  std::vector<RetentionCohort> cohorts;
  // Per period: summed over the cohorts where the period has begun, and the
  // rate against the summed sizes of those cohorts.
  std::vector<uint64_t> total_counts;
  std::vector<std::optional<double>> total_rates;
  uint64_t size = 0;
  // k-suppression: the size, and the periods whose total counts are withheld.
  bool size_suppressed = false;
  std::vector<uint32_t> total_suppressed;
};

// How much was read; useful in benchmarks and the API's answer.
struct QueryStats {
  uint64_t segments = 0;
  uint64_t blocks_total = 0;
  uint64_t blocks_read = 0;
  uint64_t rows_read = 0;
};

struct QueryResult {
  QueryKind kind = QueryKind::kSegmentation;
  std::string time_zone;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  TimeUnit unit = TimeUnit::kDay;
  Measure measure = Measure::kTotal;
  std::vector<Bucket> buckets;             // segmentation
  std::vector<SegmentationSeries> series;  // segmentation
  std::vector<FunnelGroup> funnel;         // first: every subject, then groups
  // Funnels: the lower bound of each time-to-convert bucket shown (those of
  // kFunnelTimeToConvertBucketsMs that begin within the window).
  std::vector<int64_t> time_to_convert_buckets_ms;
  RetentionMode mode = RetentionMode::kOn;
  std::vector<RetentionGroup> retention;  // first: every subject, then groups
  QueryStats stats;
  // k-suppression: the k applied (0: none) and how many cells it withheld.
  uint32_t min_group_size = 0;
  uint64_t suppressed_cells = 0;
  // The identity map RunQuery resolved for the query, when it did (not part
  // of the answer body; the service reports it in /metrics).
  std::optional<IdentityStats> identity;
  // QuerySpec::compare_previous: the answer over the previous period.
  std::shared_ptr<const QueryResult> previous;
};

// Parses a query in the JSON format of docs/queries.md. InvalidArgument
// naming the field ("steps[2].filters[0].op: unknown operator 'equals'") or
// the limit exceeded. Time zones are checked by RunQuery.
Result<QuerySpec> ParseQuery(std::string_view json);
// Whether `spec` names a profile or group property: then RunQuery needs
// QueryContext::profiles.
bool UsesProfiles(const QuerySpec& spec);
// Whether `spec` names a subject's id: the event property "distinct_id"
// (filter or breakdown), or a filter on a property `subject_id_property`
// says holds a person's id (QueryContext::subject_id_property; may be unset).
bool NamesSubjectIds(const QuerySpec& spec,
                     const std::function<bool(std::string_view)>& subject_id_property);
// Rewrites what `spec` names of a subject's id (docs/queries.md, "Filtering
// and breaking down by subject ids"), with `context.pseudonyms` and
// `context.subject_id_property`:
//   - every event property "distinct_id" (filters of every selector,
//     breakdown) becomes the subject column: an eq / ne / in / not_in value
//     becomes each subject `pseudonyms` gives for it (a value that is a
//     pseudonym already stays that subject), an is_set / is_not_set matches
//     every / no event; any other operator is InvalidArgument naming the
//     field;
//   - an eq / ne / in / not_in filter on a subject id property (user_id, …)
//     becomes in / not_in its values as given and, for each string or
//     integer that is not a pseudonym, its pseudonyms as strings.
// RunQuery calls it; the raw ids end here (never in the answer).
Status ResolveSubjectIds(const QueryContext& context, QuerySpec* spec);

// Answers `spec` over `context.segments` on up to `context.threads` threads
// (it starts and joins them itself). InvalidArgument for an unknown time zone,
// a relative time without now_ms, or a range that is empty or too long;
// ResourceExhausted past kBreakdownGroupsTrackedMax or kQueryCellsMax;
// Corruption when a segment chunk is damaged. Allocates in proportion to the
// result and to one block per segment per thread, not to the rows read.
Result<QueryResult> RunQuery(const QuerySpec& spec, const QueryContext& context);

// The API's answer body (docs/queries.md, "Results").
std::string QueryResultToJson(const QueryResult& result);

// Resolves `time` in the zone (an IANA name). InvalidArgument for an unknown
// zone or an impossible date; a local time the zone skips (a DST gap) is
// taken as the transition instant, an ambiguous one as the earlier instant.
// Relative times count from `now_ms` (InvalidArgument when it is 0).
Result<int64_t> ResolveTime(const TimeSpec& time, std::string_view time_zone, int64_t now_ms = 0);
// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.mmm]]" (local), the same
// ending in "Z" (UTC), or a relative time: "now", "today", "-N" followed by
// m, h, d or w. False when malformed.
bool ParseTimeText(std::string_view text, TimeSpec* time);

}  // namespace minpanel::query
