// gen_events: the query benchmark's workload, a deterministic stream of
// realistic product-analytics events written as JSON lines to stdout.
//
//   gen_events --events N [--seed S] [--format mixpanel|jsonl] [--users U]
//              [--days D] [--start YYYY-MM-DD] [--part I/K]
//   gen_events --events N [--seed S] [--users U] --sample-users K
//
// The same (N, seed, users, days, start) give the same events, byte for byte:
// the generator uses its own integer random numbers (splitmix64), never
// std::*_distribution, so only std::log (exponential draws) could differ
// between C libraries; on Debian 12's glibc it is the same everywhere.
//
// What the stream looks like (docs/benchmarks.md, "Queries"):
// - Users: U = N / 100 by default (1M users at 100M events). How often a user
//   comes back follows a Zipf–Mandelbrot law over ranks, (rank + 50)^-1.
//   distinct ids are "u_" + 16 hex digits of a bijective mix of the user's
//   index and the seed: generated values, no real people.
// - Time: D days (default 30) from --start (default 2026-10-01, UTC); more
//   events on weekdays and in the afternoon (UTC).
// - Users arrive and churn: 35 % exist before the range (no sign-up event);
//   the rest appear on a uniformly drawn day and sign up in their first
//   session. Each user stops coming after an exponentially drawn lifetime
//   (mean 5 days; 15 % never churn), so retention decays.
// - Sessions: a `session_start` event, then a handful of events a few seconds
//   to a couple of minutes apart; sessions of one user are at least 20
//   minutes apart. The times of one user's events are strictly increasing
//   (no two of them share a millisecond), so funnel order is never a tie.
// - About 20 event names. The funnel sign_up → project_created →
//   checkout_started → purchase: each new user has a furthest step it will
//   ever reach (55 %, 45 %, 60 % go on), reached in later sessions, some more
//   than 7 days after the sign-up. Customers buy again now and then.
// - About 20 properties: plan, platform, country (ISO 3166 code), browser,
//   os, lang, app_version, session_id, utm_source, referrer, page (a path with
//   ids: high cardinality), duration_ms, price, items, order_id (unique per
//   purchase), currency, feature, experiment, trial, error_code.
//
// Formats:
// - mixpanel: what Mixpanel's /import takes, {"event": ..., "properties":
//   {"distinct_id", "time" (ms), "$insert_id", ...}}.
// - jsonl: the same event flat, {"event", "distinct_id", "time", "insert_id",
//   ...}: the shape ClickHouse's JSONEachRow and DuckDB's read_json load
//   into a wide table.
// A property an event does not carry is left out in both formats.
//
// --part I/K writes only the days [I * D / K, (I + 1) * D / K) of the same
// stream (the earlier days are still generated, not written), for a loader
// that needs a regular file: K parts, one after the other, are the whole
// stream, line for line.
//
// Lines come out day by day, sorted by time within a day (the events of a
// session that runs past midnight come with the day it started).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kMinuteMs = 60'000;

uint64_t Mix(uint64_t value) {
  // splitmix64's finaliser: a bijection on 64-bit values.
  value ^= value >> 30;
  value *= 0xbf58476d1ce4e5b9ULL;
  value ^= value >> 27;
  value *= 0x94d049bb133111ebULL;
  value ^= value >> 31;
  return value;
}

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return Mix(state_);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  uint64_t Below(uint64_t bound) { return Next() % bound; }
  bool Chance(double probability) { return Uniform() < probability; }
  double Exponential(double mean) { return -mean * std::log(1.0 - Uniform()); }

 private:
  uint64_t state_;
};

// A value drawn by weight from a small fixed table.
struct Weighted {
  const char* name;
  double weight;
};

template <size_t kSize>
size_t Pick(const Weighted (&table)[kSize], double unit) {
  double total = 0;
  for (const Weighted& entry : table) {
    total += entry.weight;
  }
  double point = unit * total;
  for (size_t idx = 0; idx < kSize; ++idx) {
    point -= table[idx].weight;
    if (point < 0) {
      return idx;
    }
  }
  return kSize - 1;
}

constexpr Weighted kPlans[] = {{"free", 60}, {"starter", 20}, {"pro", 15}, {"enterprise", 5}};
constexpr Weighted kPlatforms[] = {{"web", 55}, {"ios", 25}, {"android", 20}};
constexpr Weighted kBrowsers[] = {{"Chrome", 60}, {"Safari", 19}, {"Edge", 9},
                                  {"Firefox", 8}, {"Opera", 2},   {"Samsung Internet", 2}};
constexpr Weighted kDesktopOs[] = {{"Windows", 55}, {"macOS", 30}, {"Linux", 8}, {"Chrome OS", 7}};
constexpr Weighted kCountries[] = {
    {"US", 28},  {"DE", 8},   {"GB", 7},   {"IN", 6},   {"FR", 5},   {"BR", 4},   {"CA", 4},
    {"JP", 3},   {"ES", 3},   {"IT", 3},   {"NL", 2},   {"AU", 2},   {"MX", 2},   {"PL", 2},
    {"SE", 1.5}, {"KR", 1.5}, {"TR", 1.2}, {"ID", 1.2}, {"CH", 1},   {"BE", 1},   {"AT", 0.9},
    {"DK", 0.8}, {"NO", 0.8}, {"FI", 0.7}, {"IE", 0.7}, {"PT", 0.7}, {"AR", 0.7}, {"CO", 0.6},
    {"CL", 0.5}, {"ZA", 0.5}, {"NG", 0.5}, {"EG", 0.4}, {"VN", 0.4}, {"PH", 0.4}, {"TH", 0.4},
    {"SG", 0.4}, {"IL", 0.4}, {"CZ", 0.4}, {"RO", 0.4}, {"UA", 0.4}, {"NZ", 0.3}, {"GR", 0.3}};
constexpr Weighted kUtmSources[] = {{"", 55},          {"google", 20},  {"newsletter", 8},
                                    {"twitter", 5},    {"linkedin", 5}, {"partner", 4},
                                    {"producthunt", 3}};
constexpr Weighted kReferrers[] = {{"", 50},
                                   {"www.google.com", 25},
                                   {"news.ycombinator.com", 5},
                                   {"t.co", 5},
                                   {"www.linkedin.com", 5},
                                   {"www.bing.com", 4},
                                   {"duckduckgo.com", 3},
                                   {"github.com", 3}};
constexpr const char* kFeatures[] = {"dashboard",  "report_builder", "alerts",      "sharing",
                                     "comments",   "templates",      "automations", "integrations",
                                     "api_keys",   "billing",        "calendar",    "kanban",
                                     "timeline",   "search_filters", "bulk_edit",   "import_csv",
                                     "export_pdf", "dark_mode",      "mobile_sync", "webhooks"};
constexpr const char* kErrorCodes[] = {"E_TIMEOUT", "E_NETWORK",    "E_VALIDATION",
                                       "E_QUOTA",   "E_PERMISSION", "E_NOT_FOUND"};

enum EventName : uint8_t {
  kSessionStart,
  kPageViewed,
  kScreenViewed,
  kSignUp,
  kLogin,
  kProjectCreated,
  kInviteSent,
  kFeatureUsed,
  kSearch,
  kItemViewed,
  kAddToCart,
  kCheckoutStarted,
  kPurchase,
  kSubscriptionUpgraded,
  kSettingsChanged,
  kFileUploaded,
  kExportCreated,
  kNotificationClicked,
  kErrorShown,
  kLogout,
  kEventNameCount,
};

constexpr const char* kEventNames[kEventNameCount] = {
    "session_start",  "page_viewed",           "screen_viewed",    "sign_up",
    "login",          "project_created",       "invite_sent",      "feature_used",
    "search",         "item_viewed",           "add_to_cart",      "checkout_started",
    "purchase",       "subscription_upgraded", "settings_changed", "file_uploaded",
    "export_created", "notification_clicked",  "error_shown",      "logout"};

// The events of a session's body, by weight (the funnel steps come separately).
constexpr Weighted kBodyEvents[] = {{"page_viewed", 30},
                                    {"feature_used", 16},
                                    {"item_viewed", 10},
                                    {"search", 8},
                                    {"login", 3},
                                    {"invite_sent", 2},
                                    {"add_to_cart", 4},
                                    {"settings_changed", 3},
                                    {"file_uploaded", 4},
                                    {"export_created", 3},
                                    {"notification_clicked", 4},
                                    {"error_shown", 2},
                                    {"logout", 2},
                                    {"subscription_upgraded", 0.4}};
constexpr EventName kBodyEventIds[] = {
    kPageViewed,   kFeatureUsed,         kItemViewed,          kSearch,
    kLogin,        kInviteSent,          kAddToCart,           kSettingsChanged,
    kFileUploaded, kExportCreated,       kNotificationClicked, kErrorShown,
    kLogout,       kSubscriptionUpgraded};
static_assert(std::size(kBodyEvents) == std::size(kBodyEventIds));

struct User {
  int16_t first_day = 0;  // < 0: exists before the range
  int16_t last_day = 0;   // churns after this day
  uint8_t plan = 0;
  uint8_t platform = 0;
  uint8_t country = 0;
  uint8_t browser = 0;
  uint8_t os = 0;
  uint8_t stage = 0;      // 0 new, 1 signed up, 2 activated, 3 checked out, 4 bought
  uint8_t max_stage = 0;  // the furthest funnel step this user will reach
  uint8_t experiment = 0;
  uint32_t sessions = 0;
  int64_t last_time_ms = 0;
};

// One event before it is written: the rest follows from the user and `salt`.
struct Record {
  int64_t time_ms;
  uint32_t user;
  uint32_t session;
  uint64_t salt;
  uint8_t event;
};

struct Options {
  uint64_t events = 0;
  uint64_t seed = 1;
  uint64_t users = 0;
  int64_t days = 30;
  int64_t start_ms = 0;
  bool mixpanel = true;
  uint64_t sample_users = 0;
  uint64_t part = 0;
  uint64_t parts = 1;
};

int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t year_of_era = year - era * 400;
  const int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

class Generator {
 public:
  explicit Generator(const Options& options) : options_(options) {
    const uint64_t user_count = options.users;
    users_.resize(user_count);
    cumulative_.resize(user_count);
    double total = 0;
    for (uint64_t rank = 0; rank < user_count; ++rank) {
      total += 1.0 / (static_cast<double>(rank) + 50.0);
      cumulative_[rank] = total;
    }
    for (double& value : cumulative_) {
      value /= total;
    }
    Random random(Mix(options.seed ^ 0x75736572ULL));
    for (User& user : users_) {
      user.first_day =
          random.Chance(0.35)
              ? int16_t{-1}
              : static_cast<int16_t>(random.Below(static_cast<uint64_t>(options.days)));
      const bool loyal = random.Chance(0.15);
      const double lifetime = loyal ? 1e4 : random.Exponential(5.0);
      user.last_day = static_cast<int16_t>(
          std::min<double>(32000, std::max<int>(user.first_day, 0) + lifetime));
      user.platform = static_cast<uint8_t>(Pick(kPlatforms, random.Uniform()));
      user.country = static_cast<uint8_t>(Pick(kCountries, random.Uniform()));
      user.browser = static_cast<uint8_t>(Pick(kBrowsers, random.Uniform()));
      user.os = static_cast<uint8_t>(Pick(kDesktopOs, random.Uniform()));
      user.experiment = static_cast<uint8_t>(random.Below(2));
      if (user.first_day < 0) {
        user.plan = static_cast<uint8_t>(Pick(kPlans, random.Uniform()));
        user.stage = 2;
        user.max_stage = 4;
      } else {
        user.plan = 0;
        uint8_t max_stage = 1;
        if (random.Chance(0.55)) {
          max_stage = 2;
          if (random.Chance(0.45)) {
            max_stage = 3;
            if (random.Chance(0.6)) {
              max_stage = 4;
            }
          }
        }
        user.max_stage = max_stage;
      }
    }
  }

  // Writes every event to stdout. False on a write error.
  bool Run() {
    std::vector<double> day_weights(static_cast<size_t>(options_.days));
    double weight_total = 0;
    for (int64_t day = 0; day < options_.days; ++day) {
      // 1970-01-01 was a Thursday: day-of-week 0 = Monday.
      const int64_t weekday = ((options_.start_ms / kDayMs + day) % 7 + 10) % 7;
      day_weights[static_cast<size_t>(day)] = weekday >= 5 ? 0.75 : 1.0;
      weight_total += day_weights[static_cast<size_t>(day)];
    }
    double weight_sum = 0;
    uint64_t emitted = 0;
    std::vector<Record> records;
    for (int64_t day = 0; day < options_.days; ++day) {
      weight_sum += day_weights[static_cast<size_t>(day)];
      const auto target = day + 1 == options_.days
                              ? options_.events
                              : static_cast<uint64_t>(static_cast<double>(options_.events) *
                                                      weight_sum / weight_total);
      const uint64_t budget = target > emitted ? target - emitted : 0;
      records.clear();
      GenerateDay(day, budget, &records);
      std::sort(records.begin(), records.end(), [](const Record& left, const Record& right) {
        return left.time_ms != right.time_ms ? left.time_ms < right.time_ms
                                             : left.user < right.user;
      });
      const auto day_index = static_cast<uint64_t>(day);
      const auto days = static_cast<uint64_t>(options_.days);
      const bool written = day_index >= options_.part * days / options_.parts &&
                           day_index < (options_.part + 1) * days / options_.parts;
      if (!written) {
        emitted += records.size();
        continue;
      }
      for (const Record& record : records) {
        Render(record, emitted);
        ++emitted;
        if (out_.size() > (1u << 20) && !Flush()) {
          return false;
        }
      }
    }
    if (emitted != options_.events) {
      std::fprintf(stderr, "gen_events: only %llu of %llu events (too few --users)\n",
                   static_cast<unsigned long long>(emitted),
                   static_cast<unsigned long long>(options_.events));
    }
    return Flush();
  }

  // The distinct id of the user at `index`: a bijection, so ids never collide.
  std::string DistinctId(uint64_t index) const {
    std::string id = "u_";
    AppendHex(Mix(index ^ Mix(options_.seed)), 16, &id);
    return id;
  }

 private:
  static void AppendHex(uint64_t value, int digits, std::string* out) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int digit = digits - 1; digit >= 0; --digit) {
      out->push_back(kHex[(value >> (digit * 4)) & 15]);
    }
  }

  uint32_t SampleUser(Random* random) const {
    const double point = random->Uniform();
    const auto found = std::upper_bound(cumulative_.begin(), cumulative_.end(), point);
    const auto index = static_cast<size_t>(found - cumulative_.begin());
    return static_cast<uint32_t>(std::min(index, cumulative_.size() - 1));
  }

  // A session's start within the day: more in the UTC afternoon and evening.
  static int64_t SessionOffsetMs(Random* random) {
    static constexpr double kHourWeights[24] = {2,   1.5, 1.2, 1,   1,   1.2, 1.8, 2.5,
                                                3.5, 4.2, 4.6, 4.8, 5,   5.2, 5.5, 5.8,
                                                6,   6,   5.6, 5,   4.4, 3.8, 3.2, 2.6};
    double total = 0;
    for (double weight : kHourWeights) {
      total += weight;
    }
    double point = random->Uniform() * total;
    int64_t hour = 0;
    for (; hour < 23; ++hour) {
      point -= kHourWeights[hour];
      if (point < 0) {
        break;
      }
    }
    return hour * 3'600'000 + static_cast<int64_t>(random->Below(3'600'000));
  }

  // The names of one session's events, funnel steps included.
  void SessionEvents(User* user, Random* random, std::vector<uint8_t>* names) const {
    names->clear();
    names->push_back(kSessionStart);
    const uint8_t view = user->platform == 0 ? kPageViewed : kScreenViewed;
    size_t length = 1 + static_cast<size_t>(random->Exponential(6.0));
    length = std::min<size_t>(length, 60);
    if (user->stage == 0) {
      // The first session of a new user: look around, then sign up.
      const size_t views = 1 + random->Below(3);
      for (size_t idx = 0; idx < views; ++idx) {
        names->push_back(view);
      }
      names->push_back(kSignUp);
      user->stage = 1;
    }
    for (size_t idx = 0; idx < length; ++idx) {
      const size_t body = Pick(kBodyEvents, random->Uniform());
      uint8_t name = kBodyEventIds[body];
      if (name == kPageViewed && user->platform != 0) {
        name = kScreenViewed;
      }
      names->push_back(name);
    }
    // Funnel progress: at most one step per session, so later steps spread
    // over later sessions (and sometimes beyond a 7-day window).
    if (user->stage < user->max_stage && random->Chance(user->stage == 1 ? 0.45 : 0.35)) {
      const size_t position = 1 + random->Below(names->size());
      static constexpr uint8_t kNextStep[] = {kSignUp, kProjectCreated, kCheckoutStarted,
                                              kPurchase};
      const uint8_t step = kNextStep[user->stage];
      if (step == kPurchase) {
        // The purchase closes the session, after a cart and a checkout.
        names->push_back(kAddToCart);
        names->push_back(kCheckoutStarted);
        names->push_back(kPurchase);
      } else {
        names->insert(
            names->begin() + static_cast<std::ptrdiff_t>(std::min(position, names->size())), step);
      }
      user->stage = static_cast<uint8_t>(user->stage + 1);
    } else if (user->stage >= 4 && random->Chance(0.06)) {
      // A customer buys again.
      names->push_back(kAddToCart);
      names->push_back(kCheckoutStarted);
      if (random->Chance(0.6)) {
        names->push_back(kPurchase);
      }
    }
  }

  void GenerateDay(int64_t day, uint64_t budget, std::vector<Record>* records) {
    Random random(Mix(options_.seed * 0x100000001b3ULL + static_cast<uint64_t>(day) + 1));
    const int64_t day_start_ms = options_.start_ms + day * kDayMs;
    const int64_t range_end_ms = options_.start_ms + options_.days * kDayMs;
    std::vector<uint8_t> names;
    // Draws that found no session (a churned or not yet arrived user, or one
    // done for the day) in a row; only a tiny --users runs out of users.
    uint64_t failures = 0;
    constexpr uint64_t kFailuresMax = 10'000'000;
    while (budget > 0 && failures < kFailuresMax) {
      ++failures;
      const uint32_t user_idx = SampleUser(&random);
      User& user = users_[user_idx];
      if (day < user.first_day || day > user.last_day) {
        continue;
      }
      int64_t time_ms = day_start_ms + SessionOffsetMs(&random);
      if (user.sessions > 0) {
        time_ms = std::max(time_ms, user.last_time_ms + 20 * kMinuteMs +
                                        static_cast<int64_t>(random.Below(40 * kMinuteMs)));
      }
      if (time_ms >= day_start_ms + kDayMs || time_ms >= range_end_ms) {
        continue;  // this user is done for the day
      }
      failures = 0;
      SessionEvents(&user, &random, &names);
      const uint32_t session = user.sessions++;
      for (uint8_t name : names) {
        if (budget == 0 || time_ms >= range_end_ms) {
          break;
        }
        records->push_back(Record{time_ms, user_idx, session, random.Next(), name});
        user.last_time_ms = time_ms;
        --budget;
        time_ms += 1000 + static_cast<int64_t>(random.Exponential(25'000.0));
      }
    }
  }

  void AppendInt(int64_t value) {
    char buffer[24];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    out_.append(buffer, result.ptr);
  }
  void Key(std::string_view key) {
    out_.append(",\"");
    out_.append(key);
    out_.append("\":");
  }
  void String(std::string_view key, std::string_view value) {
    Key(key);
    out_.push_back('"');
    out_.append(value);
    out_.push_back('"');
  }

  void Render(const Record& record, uint64_t sequence) {
    const User& user = users_[record.user];
    Random random(record.salt);
    const bool web = user.platform == 0;
    out_.append("{\"event\":\"");
    out_.append(kEventNames[record.event]);
    out_.append(options_.mixpanel ? "\",\"properties\":{\"distinct_id\":\""
                                  : "\",\"distinct_id\":\"");
    out_.append(DistinctId(record.user));
    out_.push_back('"');
    Key("time");
    AppendInt(record.time_ms);
    Key(options_.mixpanel ? "$insert_id" : "insert_id");
    out_.push_back('"');
    AppendHex(Mix(sequence ^ Mix(options_.seed + 7)), 16, &out_);
    AppendHex(record.salt, 16, &out_);
    out_.push_back('"');
    String("plan", kPlans[user.stage >= 4 && user.plan == 0 ? 1 : user.plan].name);
    String("platform", kPlatforms[user.platform].name);
    String("country", kCountries[user.country].name);
    if (web) {
      String("browser", kBrowsers[user.browser].name);
      String("os", kDesktopOs[user.os].name);
    } else {
      String("os", user.platform == 1 ? "iOS" : "Android");
      std::string version = user.platform == 1 ? "7." : "6.";
      version +=
          std::to_string(record.user % 5 + (record.time_ms - options_.start_ms) / (10 * kDayMs));
      version += '.';
      version += std::to_string(record.user % 3);
      String("app_version", version);
    }
    String("lang", user.country == 1 || user.country == 20 || user.country == 18 ? "de"
                   : user.country == 4                                           ? "fr"
                   : user.country == 5                                           ? "pt"
                   : user.country == 7                                           ? "ja"
                                                                                 : "en");
    std::string session_id;
    AppendHex(Mix((static_cast<uint64_t>(record.user) << 20) ^ record.session ^ options_.seed), 12,
              &session_id);
    String("session_id", session_id);
    Random session_random(Mix(record.user * 31ULL + record.session));
    const char* utm = kUtmSources[Pick(kUtmSources, session_random.Uniform())].name;
    if (*utm != '\0') {
      String("utm_source", utm);
    }
    String("experiment", user.experiment == 0 ? "onboarding_v2:control" : "onboarding_v2:variant");
    Key("trial");
    out_.append(user.plan == 0 && user.stage < 4 ? "true" : "false");
    RenderEventProperties(record, user, &random, web, sequence);
    out_.append(options_.mixpanel ? "}}\n" : "}\n");
  }

  void RenderEventProperties(const Record& record, const User& user, Random* random, bool web,
                             uint64_t sequence) {
    const uint64_t project = Mix(record.user) % 5 + record.user * 5ULL;
    switch (record.event) {
      case kSessionStart:
        if (web) {
          const char* referrer = kReferrers[Pick(kReferrers, random->Uniform())].name;
          if (*referrer != '\0') {
            String("referrer", referrer);
          }
        }
        break;
      case kPageViewed:
      case kScreenViewed:
      case kFeatureUsed: {
        std::string page = "/projects/";
        page += std::to_string(project);
        static constexpr const char* kSections[] = {"/board", "/list",     "/reports/",
                                                    "/docs/", "/settings", "/tasks/"};
        const size_t section = random->Below(std::size(kSections));
        page += kSections[section];
        if (kSections[section][std::strlen(kSections[section]) - 1] == '/') {
          page += std::to_string(random->Below(5000));
        }
        String("page", page);
        Key("duration_ms");
        AppendInt(200 + static_cast<int64_t>(random->Exponential(9000)));
        if (record.event == kFeatureUsed) {
          String("feature", kFeatures[std::min<uint64_t>(random->Below(20), random->Below(20))]);
        }
        break;
      }
      case kSearch:
      case kItemViewed:
        Key("duration_ms");
        AppendInt(50 + static_cast<int64_t>(random->Exponential(700)));
        Key("items");
        AppendInt(static_cast<int64_t>(random->Below(40)));
        break;
      case kAddToCart:
      case kCheckoutStarted:
      case kPurchase: {
        const int64_t items = 1 + static_cast<int64_t>(random->Exponential(1.5));
        Key("items");
        AppendInt(items);
        const int64_t cents = items * (900 + static_cast<int64_t>(random->Below(12) * 1000)) + 99;
        Key("price");
        AppendInt(cents / 100);
        out_.push_back('.');
        out_.push_back(static_cast<char>('0' + cents % 100 / 10));
        out_.push_back(static_cast<char>('0' + cents % 10));
        String("currency", user.country == 1 || user.country == 4 || user.country == 8 ||
                                   user.country == 9 || user.country == 10
                               ? "EUR"
                           : user.country == 2 ? "GBP"
                                               : "USD");
        if (record.event == kPurchase) {
          std::string order = "ord_";
          AppendHex(Mix(sequence * 2 + 1 + options_.seed), 14, &order);
          String("order_id", order);
        }
        break;
      }
      case kErrorShown:
        String("error_code", kErrorCodes[random->Below(std::size(kErrorCodes))]);
        break;
      case kExportCreated:
      case kFileUploaded:
        Key("duration_ms");
        AppendInt(100 + static_cast<int64_t>(random->Exponential(3000)));
        break;
      default:
        break;
    }
  }

  bool Flush() {
    const bool ok = std::fwrite(out_.data(), 1, out_.size(), stdout) == out_.size();
    out_.clear();
    return ok && std::fflush(stdout) == 0;
  }

  Options options_;
  std::vector<User> users_;
  std::vector<double> cumulative_;
  std::string out_;
};

bool ParseNumber(const char* text, uint64_t* value) {
  const char* end = text + std::strlen(text);
  const auto result = std::from_chars(text, end, *value);
  return result.ec == std::errc() && result.ptr == end;
}

int Usage() {
  std::fprintf(stderr,
               "usage: gen_events --events N [--seed S] [--format "
               "mixpanel|jsonl] [--users U]\n"
               "                  [--days D] [--start YYYY-MM-DD] "
               "[--part I/K] [--sample-users K]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  options.start_ms = DaysFromCivil(2026, 10, 1) * kDayMs;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string_view flag = argv[arg_idx];
    if (arg_idx + 1 >= argc) {
      return Usage();
    }
    const char* value = argv[++arg_idx];
    uint64_t number = 0;
    if (flag == "--format") {
      if (std::strcmp(value, "mixpanel") != 0 && std::strcmp(value, "jsonl") != 0) {
        return Usage();
      }
      options.mixpanel = std::strcmp(value, "mixpanel") == 0;
    } else if (flag == "--start") {
      int year = 0;
      int month = 0;
      int day = 0;
      if (std::sscanf(value, "%4d-%2d-%2d", &year, &month, &day) != 3) {
        return Usage();
      }
      options.start_ms = DaysFromCivil(year, month, day) * kDayMs;
    } else if (flag == "--part") {
      unsigned long long part = 0;
      unsigned long long parts = 0;
      if (std::sscanf(value, "%llu/%llu", &part, &parts) != 2 || parts == 0 || part >= parts) {
        return Usage();
      }
      options.part = part;
      options.parts = parts;
    } else if (!ParseNumber(value, &number)) {
      return Usage();
    } else if (flag == "--events") {
      options.events = number;
    } else if (flag == "--seed") {
      options.seed = number;
    } else if (flag == "--users") {
      options.users = number;
    } else if (flag == "--days") {
      options.days = static_cast<int64_t>(std::clamp<uint64_t>(number, 1, 3650));
    } else if (flag == "--sample-users") {
      options.sample_users = number;
    } else {
      return Usage();
    }
  }
  if (options.events == 0) {
    return Usage();
  }
  if (options.users == 0) {
    options.users = std::max<uint64_t>(100, options.events / 100);
  }
  options.users = std::min<uint64_t>(options.users, UINT32_MAX);
  if (options.sample_users > 0) {
    // Users spread evenly over the ranks: a few heavy ones, mostly light ones.
    Options light = options;
    light.users = 0;
    Generator ids(light);
    const uint64_t count = std::min(options.sample_users, options.users);
    for (uint64_t idx = 0; idx < count; ++idx) {
      const uint64_t user = idx * options.users / count;
      std::printf("%s\n", ids.DistinctId(user).c_str());
    }
    return 0;
  }
  Generator generator(options);
  if (!generator.Run()) {
    std::fprintf(stderr, "gen_events: write error\n");
    return 1;
  }
  return 0;
}
