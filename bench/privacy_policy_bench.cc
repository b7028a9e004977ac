// Events per second through the privacy policy alone (Policy::Apply), single
// thread, on realistic browser events: 20 properties of mixed types (one of
// them a string holding an email), a user agent drawn from 50 Chrome, Safari
// and Firefox headers, a public client IP, a page URL with ids in its path and
// a query string, and a referrer URL. The Time column is ns per event.
//
// Policies, each with the real tools (uap-core's regexes, the geolocation
// database of scripts/setup-geoip.sh):
//   - default:     the strict built-in policy (IP -> city, user agent ->
//                  browser / OS / device, URL and referrer generalised,
//                  detectors on every kept string, person properties dropped);
//   - passthrough: bench/ingest/passthrough-policy.toml, the "policy off"
//                  baseline of the end-to-end benchmark (the code still runs,
//                  and still hashes the distinct id and insert id);
//   - detectors:   the pass-through policy with the detectors turned on.
// The `ingest_shape` variants use events shaped like bench/ingest's
// Mixpanel events instead (17 properties, page URL and referrer, no user
// agent, no IP), the part of the policy the end-to-end benchmark exercised
// before its events carried an `ip`.
//
// Geolocation-heavy cases, where each event's IP is drawn afresh whenever
// the pool is refilled, so that the addresses do not repeat with the pool:
//   - default_ingest_shape_ip: the ingest shape with the `ip` of
//                  bench/ingest/make_templates.mjs (50,000 users, one stable
//                  address each, in 4,608 /24 blocks of 18 /16 networks; a
//                  random user per event), what /import now exercises;
//   - default_geo_misses: the realistic events with every IP in a /24 block
//                  not seen for 65,536 events, so that every lookup misses
//                  any per-thread cache: the full cost of a database read.
// BM_GeoLookup times GeoDatabase::Lookup alone on the same two address
// streams.
//
// Apply consumes its RawEvent, so the events are copied from a pool of
// templates with the timer paused, once per pool of kPoolEvents events.
// See docs/benchmarks.md, "Privacy policy".
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "privacy/privacy.h"

namespace {

using minpanel::Properties;
using minpanel::Property;
using minpanel::RawEvent;
using minpanel::Value;
using minpanel::privacy::Policy;
using minpanel::privacy::PolicyCounters;
using minpanel::privacy::PolicySpec;
using minpanel::privacy::PolicyTools;

constexpr const char* kRegexesPath = "/usr/share/uap-core/regexes.yaml";
// Distinct events in the pool: enough that the branch predictor does not
// learn them, few enough that the templates stay in the L2/L3 caches.
constexpr size_t kPoolEvents = 4096;
constexpr size_t kUserAgentCount = 50;

enum class PolicyKind { kDefault, kPassthrough, kDetectorsOnly };
enum class EventShape { kRealistic, kIngestBench };
// Where each event's client IP comes from: the pool's own (repeating with the
// pool), or a stream drawn afresh at every refill.
enum class IpSource { kPool, kIngestUsers, kDistinctBlocks };

[[noreturn]] void Fail(const std::string& message) {
  std::fprintf(stderr, "privacy_policy_bench: %s\n", message.c_str());
  std::abort();
}

// xorshift32: the same events on every run.
class Random {
 public:
  uint32_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_;
  }
  uint32_t Below(uint32_t bound) { return Next() % bound; }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(static_cast<uint32_t>(items.size()))];
  }

 private:
  uint32_t state_ = 0x2545f491;
};

// 50 distinct headers of the three browsers most traffic comes from.
std::vector<std::string> UserAgents() {
  std::vector<std::string> user_agents;
  for (size_t agent_idx = 0; user_agents.size() < kUserAgentCount; ++agent_idx) {
    const std::string version = std::to_string(agent_idx / 3);
    switch (agent_idx % 3) {
      case 0:
        user_agents.push_back(
            (agent_idx % 2 == 0 ? "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
                                : "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)") +
            std::string(" AppleWebKit/537.36 (KHTML, like Gecko) Chrome/") +
            std::to_string(105 + agent_idx / 3) + ".0.0.0 Safari/537.36");
        break;
      case 1:
        user_agents.push_back(
            (agent_idx % 2 == 0
                 ? "Mozilla/5.0 (iPhone; CPU iPhone OS 17_" + version +
                       " like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17." +
                       version + " Mobile/15E148 Safari/604.1"
                 : "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                   "(KHTML, like Gecko) Version/16." +
                       version + " Safari/605.1.15"));
        break;
      default:
        user_agents.push_back(
            (agent_idx % 2 == 0 ? "Mozilla/5.0 (X11; Linux x86_64; rv:"
                                : "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:") +
            std::to_string(110 + agent_idx / 3) + ".0) Gecko/20100101 Firefox/" +
            std::to_string(110 + agent_idx / 3) + ".0");
        break;
    }
  }
  return user_agents;
}

// Public addresses of large networks in several countries, IPv4 and IPv6.
std::string PublicIp(Random& random) {
  static const std::vector<std::string> prefixes = {
      "8.8.",    "1.1.",    "81.2.",   "89.160.", "2.125.",  "217.65.", "91.198.",
      "104.16.", "151.101.", "185.199.", "52.95.", "34.120.", "77.88.",  "200.160.",
      "196.25.", "103.21.", "213.180.", "62.210."};
  if (random.Below(10) == 0) {
    return "2a00:1450:4001:" + std::to_string(800 + random.Below(100)) + "::" +
           std::to_string(random.Below(9000) + 1000);
  }
  return random.Pick(prefixes) + std::to_string(random.Below(256)) + "." +
         std::to_string(1 + random.Below(254));
}

std::string Uuid(Random& random) {
  char text[37];
  std::snprintf(text, sizeof(text), "%08x-%04x-4%03x-a%03x-%08x%04x", random.Next(),
                random.Next() & 0xFFFF, random.Next() & 0xFFF, random.Next() & 0xFFF,
                random.Next(), random.Next() & 0xFFFF);
  return text;
}

// 20 properties: strings (one with an email), numbers, bools, a list, and a
// group id that the default policy pseudonymises.
Properties RealisticProperties(Random& random) {
  static const std::vector<std::string> plans = {"free", "pro", "team", "enterprise"};
  static const std::vector<std::string> features = {"funnels", "retention", "cohorts", "export"};
  static const std::vector<std::string> labels = {"Upgrade now", "Invite teammate",
                                                  "Download CSV", "Save dashboard"};
  return {
      {"plan", Value::String(random.Pick(plans))},
      {"seats", Value::Int(1 + random.Below(40))},
      {"trial", Value::Bool(random.Below(5) == 0)},
      {"mrr", Value::Double(49.0 * (1 + random.Below(20)))},
      {"feature", Value::String(random.Pick(features))},
      {"button_label", Value::String(random.Pick(labels))},
      {"page_title", Value::String("Billing settings - Acme Analytics")},
      {"screen_width", Value::Int(1920)},
      {"screen_height", Value::Int(1080)},
      {"app_version", Value::String("2.31." + std::to_string(random.Below(10)))},
      {"experiment_variant", Value::String("new_checkout_flow")},
      {"order_id", Value::String("order_" + std::to_string(10000 + random.Below(90000)))},
      {"product_sku", Value::String("SKU-4821-BLK")},
      {"currency", Value::String("EUR")},
      {"price", Value::Double(129.99)},
      {"locale", Value::String("en-US")},
      {"request_id", Value::String(Uuid(random))},
      {"tags", Value::List({"beta", "power-user"})},
      {"company_id", Value::String("acme-" + std::to_string(random.Below(500)))},
      {"invited_email", Value::String("jane.doe" + std::to_string(random.Below(1000)) +
                                      "@example.com")},
  };
}

RawEvent RealisticEvent(Random& random, const std::vector<std::string>& user_agents) {
  static const std::vector<std::string> names = {"Viewed Page", "Clicked Button",
                                                 "Started Trial", "Exported Report"};
  static const std::vector<std::string> referrers = {
      "https://www.google.com/search?q=product+analytics+self+hosted&hl=en",
      "https://news.ycombinator.com/item?id=38123456",
      "https://mail.example.org/inbox/3f2a9c1b7e6d?folder=work",
      "https://app.example.com/org/4411/dashboards/7"};
  RawEvent raw;
  raw.name = random.Pick(names);
  raw.time_ms = 1'764'000'000'000 + random.Below(6 * 3'600'000);
  raw.distinct_id = "user-" + std::to_string(random.Below(50'000));
  raw.insert_id = Uuid(random);
  raw.client_ip = PublicIp(random);
  raw.user_agent = random.Pick(user_agents);
  raw.page_url = "https://app.example.com/org/" + std::to_string(random.Below(10'000)) +
                 "/projects/" + Uuid(random) +
                 "/reports?tab=funnels&utm_source=newsletter&utm_campaign=spring&session=" +
                 std::to_string(random.Next());
  raw.referrer = random.Pick(referrers);
  raw.library = "web";
  raw.properties = RealisticProperties(random);
  return raw;
}

// What bench/ingest/make_templates.mjs sends, as the Mixpanel decoder turns
// it into a RawEvent: $current_url and $referrer become context fields, the
// client's $browser / $os stay ordinary properties; no IP, no user agent.
RawEvent IngestBenchEvent(Random& random) {
  static const std::vector<std::string> names = {"Viewed Page", "Clicked Button", "Signed Up",
                                                 "Started Trial"};
  static const std::vector<std::string> pages = {"/projects/42/reports", "/settings/billing",
                                                 "/onboarding/step-2", "/dashboards/7"};
  RawEvent raw;
  raw.name = random.Pick(names);
  raw.time_ms = 1'764'000'000'000 + random.Below(6 * 3'600'000);
  raw.distinct_id = "user-" + std::to_string(random.Below(50'000));
  raw.insert_id = "0a1b2c3d00010002" + std::to_string(100000000000 + random.Next());
  raw.page_url = "https://app.example.test" + random.Pick(pages) + "?tab=funnels";
  raw.referrer = "https://www.example.org/";
  raw.library = "web";
  raw.properties = {
      {"$browser", Value::String("Chrome")},
      {"$browser_version", Value::Int(124)},
      {"$os", Value::String("Mac OS X")},
      {"$device", Value::String("Mac")},
      {"$screen_width", Value::Int(1440)},
      {"$screen_height", Value::Int(900)},
      {"plan", Value::String("pro")},
      {"seats", Value::Int(1 + random.Below(40))},
      {"trial", Value::Bool(random.Below(5) == 0)},
      {"feature", Value::String("retention")},
      {"$lib_version", Value::String("2.83.0")},
  };
  return raw;
}

// The `ip` of user `user` in bench/ingest/make_templates.mjs (userIp).
std::string IngestUserIp(uint32_t user) {
  static const std::vector<std::string> networks = {
      "81.2",   "91.198", "185.60", "151.101", "212.58", "78.46",  "2.16",  "41.203", "200.160",
      "103.21", "5.9",    "46.4",   "62.210",  "89.187", "177.71", "49.12", "36.66",  "190.93"};
  const uint32_t host = ((user + 1) * 2654435761u) >> 16;
  const uint32_t last = (host & 0xFF) == 0 ? 1 : (host & 0xFF);
  return networks[user % networks.size()] + "." + std::to_string((host >> 8) & 0xFF) + "." +
         std::to_string(last);
}

// Whether the /8 `first_octet` holds public unicast addresses (roughly: the
// whole /8s of private, loopback, CGNAT, link-local, multicast and reserved
// space are left out; the policy would not look them up).
bool IsPublicSlash8(uint32_t first_octet) {
  return first_octet >= 1 && first_octet <= 223 && first_octet != 10 && first_octet != 100 &&
         first_octet != 127 && first_octet != 169 && first_octet != 172 && first_octet != 192 &&
         first_octet != 198;
}

// Block numbers the distinct-block stream runs through before it starts
// again: 216 of the 256 /8s are public, so 65,536 blocks of them.
constexpr uint32_t kDistinctBlockStride = 65'536 * 256 / 216;

// Endless streams of client IPs; each call to Next() gives the next one.
class IpStream {
 public:
  explicit IpStream(IpSource source) : source_(source) {}

  std::string Next() {
    if (source_ == IpSource::kIngestUsers) {
      return IngestUserIp(random_.Below(50'000));
    }
    // 65,536 distinct /24 blocks spread over the whole IPv4 space (an odd
    // multiplier permutes the 2^24 blocks), skipping the /8s that hold no
    // public addresses; each block comes back once per 65,536 addresses.
    uint32_t block = 0;
    do {
      block = (block_idx_++ * 2654435761u) & 0xFFFFFF;
    } while (!IsPublicSlash8(block >> 16));
    if (block_idx_ >= kDistinctBlockStride) {
      block_idx_ = 0;
    }
    return std::to_string(block >> 16) + "." + std::to_string((block >> 8) & 0xFF) + "." +
           std::to_string(block & 0xFF) + "." + std::to_string(1 + random_.Below(254));
  }

 private:
  IpSource source_;
  Random random_;
  uint32_t block_idx_ = 0;
};

const std::vector<RawEvent>& Pool(EventShape shape) {
  static const std::vector<RawEvent> realistic = [] {
    Random random;
    const std::vector<std::string> user_agents = UserAgents();
    std::vector<RawEvent> events;
    for (size_t event_idx = 0; event_idx < kPoolEvents; ++event_idx) {
      events.push_back(RealisticEvent(random, user_agents));
    }
    return events;
  }();
  static const std::vector<RawEvent> ingest_bench = [] {
    Random random;
    std::vector<RawEvent> events;
    for (size_t event_idx = 0; event_idx < kPoolEvents; ++event_idx) {
      events.push_back(IngestBenchEvent(random));
    }
    return events;
  }();
  return shape == EventShape::kRealistic ? realistic : ingest_bench;
}

std::shared_ptr<const PolicyTools> Tools() {
  static const std::shared_ptr<const PolicyTools> tools = [] {
    auto loaded = std::make_shared<PolicyTools>();
    auto user_agents = minpanel::privacy::UserAgentParser::Load(kRegexesPath);
    if (!user_agents.ok()) {
      Fail(user_agents.status().ToString());
    }
    loaded->user_agents = std::move(user_agents).value();
    auto geo =
        minpanel::privacy::GeoDatabase::Open(minpanel::privacy::DefaultGeoDatabasePaths(
            MINPANEL_REPO_ROOT));
    if (!geo.ok()) {
      Fail(geo.status().ToString() + " (run scripts/setup-geoip.sh)");
    }
    loaded->geo = std::move(geo).value();
    return std::shared_ptr<const PolicyTools>(std::move(loaded));
  }();
  return tools;
}

// The same file the end-to-end run passes with --policy.
PolicySpec PassthroughSpec() {
  const std::string path = std::string(MINPANEL_REPO_ROOT) + "/bench/ingest/passthrough-policy.toml";
  std::ifstream file(path);
  if (!file) {
    Fail("cannot read " + path);
  }
  std::stringstream text;
  text << file.rdbuf();
  auto spec = minpanel::privacy::ParsePolicy(text.str());
  if (!spec.ok()) {
    Fail(spec.status().ToString());
  }
  return *spec;
}

Policy MakePolicy(PolicyKind kind) {
  minpanel::privacy::ProjectKey key;
  key.version = 1;
  key.bytes.fill(0x5A);
  PolicySpec spec = minpanel::privacy::DefaultPolicy();
  if (kind != PolicyKind::kDefault) {
    spec = PassthroughSpec();
    spec.detectors = kind == PolicyKind::kDetectorsOnly;
  }
  return Policy(key, std::make_shared<const PolicySpec>(std::move(spec)), Tools());
}

// A fresh copy of the pool, with new client IPs unless they come from it.
std::vector<RawEvent> Refill(const std::vector<RawEvent>& pool, IpStream* ips, IpSource source) {
  std::vector<RawEvent> events = pool;
  if (source != IpSource::kPool) {
    for (RawEvent& event : events) {
      event.client_ip = ips->Next();
    }
  }
  return events;
}

void BM_PolicyApply(benchmark::State& state, PolicyKind kind, EventShape shape,
                    IpSource ip_source = IpSource::kPool) {
  const Policy policy = MakePolicy(kind);
  const std::vector<RawEvent>& pool = Pool(shape);
  IpStream ips(ip_source);
  PolicyCounters counters;
  // One pass untimed, so that every user agent is in the parser's cache, as
  // it is in a server that has been up for more than a moment.
  for (RawEvent& raw : Refill(pool, &ips, ip_source)) {
    benchmark::DoNotOptimize(policy.Apply(std::move(raw), &counters));
  }
  counters = PolicyCounters{};
  std::vector<RawEvent> events = Refill(pool, &ips, ip_source);
  size_t event_idx = 0;
  for (auto _ : state) {
    if (event_idx == events.size()) {
      state.PauseTiming();
      events = Refill(pool, &ips, ip_source);
      event_idx = 0;
      state.ResumeTiming();
    }
    benchmark::DoNotOptimize(policy.Apply(std::move(events[event_idx]), &counters));
    ++event_idx;
  }
  state.SetItemsProcessed(state.iterations());
  // What the policy did per event, to show which of its parts ran.
  const auto per_event = [&](uint64_t count) {
    return benchmark::Counter(static_cast<double>(count), benchmark::Counter::kAvgIterations);
  };
  state.counters["redacted"] = per_event(counters.values_redacted);
  state.counters["generalised"] = per_event(counters.context_fields_generalised);
  state.counters["dropped"] = per_event(counters.properties_dropped);
  state.counters["pseudonymised"] = per_event(counters.properties_pseudonymised);
}

BENCHMARK_CAPTURE(BM_PolicyApply, default, PolicyKind::kDefault, EventShape::kRealistic);
BENCHMARK_CAPTURE(BM_PolicyApply, passthrough, PolicyKind::kPassthrough, EventShape::kRealistic);
BENCHMARK_CAPTURE(BM_PolicyApply, detectors, PolicyKind::kDetectorsOnly, EventShape::kRealistic);
BENCHMARK_CAPTURE(BM_PolicyApply, default_ingest_shape, PolicyKind::kDefault,
                  EventShape::kIngestBench);
BENCHMARK_CAPTURE(BM_PolicyApply, passthrough_ingest_shape, PolicyKind::kPassthrough,
                  EventShape::kIngestBench);
BENCHMARK_CAPTURE(BM_PolicyApply, default_ingest_shape_ip, PolicyKind::kDefault,
                  EventShape::kIngestBench, IpSource::kIngestUsers);
BENCHMARK_CAPTURE(BM_PolicyApply, default_geo_misses, PolicyKind::kDefault,
                  EventShape::kRealistic, IpSource::kDistinctBlocks);

// GeoDatabase::Lookup alone at city precision, on the two IP streams above
// (pre-generated: 65,536 addresses, used in order). ns per lookup.
void BM_GeoLookup(benchmark::State& state, IpSource source) {
  const minpanel::privacy::GeoDatabase& geo = *Tools()->geo;
  IpStream ips(source);
  std::vector<std::string> addresses;
  for (size_t address_idx = 0; address_idx < 65'536; ++address_idx) {
    addresses.push_back(ips.Next());
  }
  // One pass untimed: the ingest users' blocks are then in the cache as far
  // as it holds them; the distinct blocks are all 65,536 lookups away.
  for (const std::string& address : addresses) {
    benchmark::DoNotOptimize(geo.Lookup(address, minpanel::privacy::GeoPrecision::kCity));
  }
  size_t found = 0;
  size_t address_idx = 0;
  for (auto _ : state) {
    const auto location =
        geo.Lookup(addresses[address_idx], minpanel::privacy::GeoPrecision::kCity);
    found += location.has_value() ? 1 : 0;
    benchmark::DoNotOptimize(location);
    address_idx = (address_idx + 1) % addresses.size();
  }
  state.counters["found"] =
      benchmark::Counter(static_cast<double>(found), benchmark::Counter::kAvgIterations);
}

BENCHMARK_CAPTURE(BM_GeoLookup, ingest_users, IpSource::kIngestUsers);
BENCHMARK_CAPTURE(BM_GeoLookup, distinct_blocks, IpSource::kDistinctBlocks);

}  // namespace

BENCHMARK_MAIN();
