// The seeded generator of realistic product events shared by the store
// benchmarks (store_segment_bench, store_compact_bench): users drawn from a
// Zipf distribution, sessions of a few minutes spread over 30 days, ~20 event
// names with a sign-up -> purchase funnel where later steps are rarer, and
// ~20 properties plus a long tail of 300 custom keys on one event in ten
// (see store_segment_bench.cc).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/core.h"
#include "core/time_units.h"

namespace minpanel::store::bench {

inline constexpr int64_t kStartMs = 1'700'000'000'000;
inline constexpr int64_t kPolicyChangeMs = kStartMs + 20 * kDayMs;  // version 3, then 4

inline uint64_t Mix(uint64_t value) {  // splitmix64
  value += 0x9e3779b97f4a7c15ULL;
  value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ULL;
  value = (value ^ (value >> 27)) * 0x94d049bb133111ebULL;
  return value ^ (value >> 31);
}

// Draws 0 .. n-1 with P(k) proportional to 1 / (k + 1)^s.
class Zipf {
 public:
  Zipf(size_t n, double s) : cdf_(n) {
    double total = 0;
    for (size_t rank = 0; rank < n; ++rank) {
      total += 1.0 / std::pow(static_cast<double>(rank + 1), s);
      cdf_[rank] = total;
    }
    for (double& value : cdf_) {
      value /= total;
    }
  }
  size_t operator()(std::mt19937_64& random) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(random);
    return static_cast<size_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin()) %
           cdf_.size();
  }

 private:
  std::vector<double> cdf_;
};

template <size_t N>
inline const std::string& Pick(const std::array<std::string, N>& values, uint64_t hash) {
  return values[hash % N];
}

class RealisticEvents {
 public:
  RealisticEvents(size_t users, uint64_t seed)
      : random_(seed),
        users_(users, 1.05),
        countries_(60, 1.2),
        paths_(300, 1.1),
        products_(2000, 1.0),
        cities_(800, 1.1),
        searches_(5000, 0.9),
        custom_keys_(300, 1.0) {}

  std::vector<Event> Make(size_t count) {
    std::vector<Event> events;
    events.reserve(count);
    while (events.size() < count) {
      AddSession(&events, count);
    }
    return events;
  }

 private:
  void AddSession(std::vector<Event>* events, size_t count) {
    const uint64_t user = users_(random_);
    const uint64_t session = random_();
    const Id128 subject{Mix(user), Mix(user ^ 0xabcdef)};
    int64_t time = kStartMs + static_cast<int64_t>(random_() % (30 * kDayMs));
    const size_t length = 1 + std::geometric_distribution<size_t>(1.0 / 8)(random_);
    for (size_t step = 0; step < length && events->size() < count; ++step) {
      time += static_cast<int64_t>(std::exponential_distribution<double>(1.0 / 20000)(random_));
      events->push_back(MakeEvent(user, session, subject, time, step));
    }
  }

  std::string EventName(size_t step) {
    static const std::vector<std::pair<std::string, double>> kNames = {
        {"$pageview", 40},
        {"$autocapture", 20},
        {"scroll", 8},
        {"view_item", 8},
        {"session_start", 0},
        {"search", 4},
        {"feature_used", 4},
        {"add_to_cart", 3},
        {"login", 2},
        {"checkout_started", 1},
        {"error", 1},
        {"notification_opened", 1},
        {"purchase", 0.6},
        {"sign_up", 0.5},
        {"logout", 0.5},
        {"share", 0.5},
        {"invite_sent", 0.3},
        {"settings_changed", 0.3},
        {"upgrade_clicked", 0.2},
        {"subscription_renewed", 0.1}};
    if (step == 0) {
      return "session_start";
    }
    double total = 0;
    for (const auto& [name, weight] : kNames) {
      total += weight;
    }
    double u = std::uniform_real_distribution<double>(0, total)(random_);
    for (const auto& [name, weight] : kNames) {
      if (u < weight) {
        return name;
      }
      u -= weight;
    }
    return kNames.front().first;
  }

  Event MakeEvent(uint64_t user, uint64_t session, const Id128& subject, int64_t time,
                  size_t step) {
    static const std::array<std::string, 5> kPlans = {"free", "free", "free", "pro", "enterprise"};
    static const std::array<std::string, 3> kPlatforms = {"web", "ios", "android"};
    static const std::array<std::string, 6> kBrowsers = {"Chrome", "Safari",  "Firefox",
                                                         "Edge",   "Samsung", "Opera"};
    static const std::array<std::string, 5> kOses = {"Windows", "Mac OS X", "iOS", "Android",
                                                     "Linux"};
    static const std::array<std::string, 3> kDevices = {"Desktop", "Mobile", "Tablet"};
    static const std::array<std::string, 6> kLanguages = {"en-US", "en-GB", "de-DE",
                                                          "fr-FR", "es-ES", "ja-JP"};
    static const std::array<std::string, 5> kSources = {"google", "newsletter", "twitter", "direct",
                                                        "partner"};
    static const std::array<std::string, 5> kReferrers = {
        "www.google.com", "t.co", "news.ycombinator.com", "", "www.bing.com"};
    static const std::array<int64_t, 5> kWidths = {1920, 1440, 390, 412, 1280};
    const uint64_t user_hash = Mix(user * 7919);
    const uint64_t session_hash = Mix(session);
    Event event;
    event.name = EventName(step);
    event.time_ms = time;
    event.subject = subject;
    event.insert_id = Id128{random_(), random_()};
    event.key_version = 1;
    // The policy in force when the event arrived: events arrive near their
    // time, and the policy changed once, on day 20 of the 30.
    event.policy_version = time < kPolicyChangeMs ? 3 : 4;
    Properties& properties = event.properties;
    properties.push_back({"plan", Value::String(Pick(kPlans, user_hash))});
    properties.push_back({"platform", Value::String(Pick(kPlatforms, user_hash >> 8))});
    properties.push_back(
        {"country", Value::String("C" + std::to_string(StableDraw(countries_, user_hash)))});
    properties.push_back(
        {"$city", Value::String("city-" + std::to_string(StableDraw(cities_, user_hash >> 4)))});
    properties.push_back({"$browser", Value::String(Pick(kBrowsers, user_hash >> 16))});
    properties.push_back({"$os", Value::String(Pick(kOses, user_hash >> 24))});
    properties.push_back({"$device", Value::String(Pick(kDevices, user_hash >> 32))});
    properties.push_back({"app_version", Value::String("4." + std::to_string(user_hash % 20) + "." +
                                                       std::to_string(user_hash % 3))});
    properties.push_back({"language", Value::String(Pick(kLanguages, user_hash >> 40))});
    properties.push_back({"$screen_width", Value::Int(kWidths[(user_hash >> 44) % 5])});
    properties.push_back({"session_id", Value::String(Hex(session_hash))});
    properties.push_back({"utm_source", Value::String(Pick(kSources, session_hash))});
    properties.push_back({"$referring_domain", Value::String(Pick(kReferrers, session_hash >> 8))});
    properties.push_back({"path", Value::String("/p/" + std::to_string(paths_(random_)))});
    properties.push_back({"load_time_ms", Value::Int(50 + static_cast<int64_t>(random_() % 3000))});
    properties.push_back({"logged_in", Value::Bool(user_hash % 4 != 0)});
    if (random_() % 3 == 0) {
      properties.push_back(
          {"duration_s",
           Value::Double(std::round(std::exponential_distribution<double>(0.1)(random_) * 1000) /
                         1000)});
    }
    if (user_hash % 10 < 3) {
      properties.push_back(
          {"experiments", Value::List({"exp-" + std::to_string(user_hash % 7),
                                       "exp-" + std::to_string(user_hash % 5 + 7)})});
    }
    AddEventSpecific(&event);
    return event;
  }

  void AddEventSpecific(Event* event) {
    static const std::array<double, 6> kPrices = {9.99, 19.99, 49.0, 99.0, 4.5, 199.99};
    Properties& properties = event->properties;
    if (event->name == "view_item" || event->name == "add_to_cart" || event->name == "purchase") {
      properties.push_back(
          {"product_id", Value::String("sku-" + std::to_string(products_(random_)))});
    }
    if (event->name == "search") {
      properties.push_back(
          {"search_term", Value::String("q" + std::to_string(searches_(random_)))});
    }
    if (event->name == "purchase" || event->name == "checkout_started") {
      properties.push_back({"price", Value::Double(kPrices[random_() % kPrices.size()])});
      properties.push_back({"quantity", Value::Int(1 + static_cast<int64_t>(random_() % 3))});
    }
    if (event->name == "purchase") {
      properties.push_back({"order_id", Value::String("ord_" + Hex(random_()))});
    }
    if (event->name == "error") {
      properties.push_back({"error_code", Value::Int(400 + static_cast<int64_t>(random_() % 110))});
    }
    // The long tail of custom properties each team adds: one in ten events
    // carries one or two of 300 keys, the most common in ~2% of events.
    if (random_() % 10 == 0) {
      const size_t first = custom_keys_(random_);
      const size_t second = custom_keys_(random_);
      for (const size_t key : {first, second}) {
        if (key == second && (first == second || random_() % 2 == 0)) {
          continue;
        }
        const std::string name = "custom_" + std::to_string(key);
        if (key % 3 == 0) {
          properties.push_back({name, Value::Int(static_cast<int64_t>(random_() % 100))});
        } else {
          properties.push_back({name, Value::String("v" + std::to_string(random_() % (key + 2)))});
        }
      }
    }
  }

  // The same draw for the same user: a per-user property, Zipf over users.
  static size_t StableDraw(const Zipf& zipf, uint64_t user_hash) {
    std::mt19937_64 user_random(user_hash);
    return zipf(user_random);
  }

  static std::string Hex(uint64_t value) {
    static const char kDigits[] = "0123456789abcdef";
    std::string text(16, '0');
    for (int digit = 15; digit >= 0; --digit) {
      text[static_cast<size_t>(digit)] = kDigits[value & 15];
      value >>= 4;
    }
    return text;
  }

  std::mt19937_64 random_;
  Zipf users_;
  Zipf countries_;
  Zipf paths_;
  Zipf products_;
  Zipf cities_;
  Zipf searches_;
  Zipf custom_keys_;
};

}  // namespace minpanel::store::bench
