#include "privacy/user_agent.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include <re2/re2.h>
#include <yaml-cpp/yaml.h>

namespace minpanel::privacy {
namespace {

// uap-core replacements reference at most $1..$9.
constexpr int kCaptureGroupsMax = 9;
constexpr std::string_view kOther = "Other";

// One uap-core entry: the compiled pattern and its optional replacements,
// in the order of the fields of UserAgentInfo they fill.
struct Rule {
  std::unique_ptr<RE2> regex;
  std::optional<std::string> family_replacement;
  std::optional<std::string> major_replacement;
  std::optional<std::string> brand_replacement;
  std::optional<std::string> model_replacement;
};

using Captures = std::array<std::string_view, kCaptureGroupsMax + 1>;

// The string field `name` of an entry; nullopt when absent, null, or when
// `name` is nullptr (a list without that field).
std::optional<std::string> OptionalField(const YAML::Node& entry, const char* name) {
  if (name == nullptr) {
    return std::nullopt;
  }
  const YAML::Node field = entry[name];
  if (!field || field.IsNull()) {
    return std::nullopt;
  }
  return field.as<std::string>();
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') {
    text.remove_prefix(1);
  }
  while (!text.empty() && text.back() == ' ') {
    text.remove_suffix(1);
  }
  return text;
}

// Replaces "$1".."$9" in `pattern` by the captures (absent groups by "").
std::string Substitute(std::string_view pattern, const Captures& captures) {
  std::string out;
  for (size_t char_idx = 0; char_idx < pattern.size(); char_idx++) {
    const char c = pattern[char_idx];
    if (c == '$' && char_idx + 1 < pattern.size() && pattern[char_idx + 1] >= '1' &&
        pattern[char_idx + 1] <= '9') {
      out.append(captures[static_cast<size_t>(pattern[char_idx + 1] - '0')]);
      char_idx++;
      continue;
    }
    out.push_back(c);
  }
  return std::string(Trim(out));
}

// The spec's rule for one output field: the replacement (with $n
// substituted) when present, else the capture group `group`.
std::string Resolve(const std::optional<std::string>& replacement, const Captures& captures,
                    size_t group) {
  if (replacement.has_value()) {
    return Substitute(*replacement, captures);
  }
  return std::string(Trim(captures[group]));
}

bool Match(const Rule& rule, std::string_view text, Captures* captures) {
  const int groups = std::min(rule.regex->NumberOfCapturingGroups(), kCaptureGroupsMax);
  std::array<re2::StringPiece, kCaptureGroupsMax + 1> pieces;
  if (!rule.regex->Match(re2::StringPiece(text.data(), text.size()), 0, text.size(),
                         RE2::UNANCHORED, pieces.data(), groups + 1)) {
    return false;
  }
  for (size_t group_idx = 0; group_idx < captures->size(); group_idx++) {
    const re2::StringPiece& piece = pieces[group_idx];
    (*captures)[group_idx] = std::string_view(piece.data() == nullptr ? "" : piece.data(),
                                              piece.size());
  }
  return true;
}

// A linear scan, first match wins. An RE2::Set prefilter per list was
// measured (uap-core 0.16.0, Release): it cuts an uncached parse from ~180 us
// to ~40 us but adds ~470 ms to Load (the device list's set alone ~330 ms) and
// a shared DFA cache; with the result cache absorbing repeats, the scan wins.
const Rule* FirstMatch(const std::vector<Rule>& rules, std::string_view text, Captures* captures) {
  for (const Rule& rule : rules) {
    if (Match(rule, text, captures)) {
      return &rule;
    }
  }
  return nullptr;
}

bool ContainsIgnoringCase(std::string_view text, std::string_view needle) {
  if (needle.size() > text.size()) {
    return false;
  }
  for (size_t start = 0; start + needle.size() <= text.size(); start++) {
    bool equal = true;
    for (size_t char_idx = 0; char_idx < needle.size() && equal; char_idx++) {
      equal = std::tolower(static_cast<unsigned char>(text[start + char_idx])) ==
              std::tolower(static_cast<unsigned char>(needle[char_idx]));
    }
    if (equal) {
      return true;
    }
  }
  return false;
}

bool IsOneOf(std::string_view value, std::initializer_list<std::string_view> candidates) {
  for (std::string_view candidate : candidates) {
    if (value == candidate) {
      return true;
    }
  }
  return false;
}

bool IsBot(std::string_view browser_family, std::string_view device_family) {
  return device_family == "Spider" || ContainsIgnoringCase(browser_family, "bot") ||
         ContainsIgnoringCase(browser_family, "crawler") ||
         ContainsIgnoringCase(browser_family, "spider");
}

bool IsTablet(std::string_view user_agent, std::string_view os_family,
              std::string_view device_family) {
  if (device_family == "iPad" || ContainsIgnoringCase(device_family, "tablet") ||
      ContainsIgnoringCase(device_family, "kindle") || ContainsIgnoringCase(user_agent, "tablet")) {
    return true;
  }
  // Google's guidance: Android tablets omit "Mobile" from the header.
  return os_family == "Android" && !ContainsIgnoringCase(user_agent, "mobile");
}

bool IsMobile(std::string_view user_agent, std::string_view os_family,
              std::string_view device_family) {
  return device_family == "iPhone" || device_family == "iPod" ||
         IsOneOf(os_family, {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS",
                             "Symbian OS", "Firefox OS", "Tizen"}) ||
         ContainsIgnoringCase(user_agent, "mobi");
}

bool IsDesktop(std::string_view os_family) {
  return IsOneOf(os_family, {"Windows", "Mac OS X", "Linux", "Ubuntu", "Debian", "Fedora",
                             "Chrome OS", "ChromeOS", "FreeBSD", "OpenBSD", "NetBSD", "Red Hat",
                             "SUSE", "Mint", "Arch Linux", "Gentoo", "CentOS", "Solaris"});
}

std::string_view DeviceType(std::string_view user_agent, const UserAgentInfo& info,
                            std::string_view device_family) {
  if (IsBot(info.browser_family, device_family)) {
    return kDeviceBot;
  }
  if (IsTablet(user_agent, info.os_family, device_family)) {
    return kDeviceTablet;
  }
  if (IsMobile(user_agent, info.os_family, device_family)) {
    return kDeviceMobile;
  }
  if (IsDesktop(info.os_family)) {
    return kDeviceDesktop;
  }
  return kDeviceOther;
}

}  // namespace

struct UserAgentParser::Patterns {
  std::vector<Rule> user_agent_rules;
  std::vector<Rule> os_rules;
  std::vector<Rule> device_rules;
  size_t skipped = 0;
};

// Sharded LRU: a list in recency order plus an index into it, per shard.
struct UserAgentParser::Cache {
  struct Shard {
    std::mutex mutex;
    std::list<std::pair<std::string, UserAgentInfo>> entries;  // most recent first
    std::unordered_map<std::string_view, decltype(entries)::iterator> index;
  };
  std::array<Shard, kUserAgentCacheShards> shards;

  Shard& ShardFor(std::string_view key) {
    return shards[std::hash<std::string_view>{}(key) % kUserAgentCacheShards];
  }

  std::optional<UserAgentInfo> Find(std::string_view key) {
    Shard& shard = ShardFor(key);
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto found = shard.index.find(key);
    if (found == shard.index.end()) {
      return std::nullopt;
    }
    shard.entries.splice(shard.entries.begin(), shard.entries, found->second);
    return found->second->second;
  }

  void Insert(std::string_view key, const UserAgentInfo& info) {
    Shard& shard = ShardFor(key);
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.index.contains(key)) {
      return;  // another thread parsed the same header meanwhile
    }
    if (shard.entries.size() >= kUserAgentCacheEntriesPerShard) {
      shard.index.erase(shard.entries.back().first);
      shard.entries.pop_back();
    }
    shard.entries.emplace_front(std::string(key), info);
    shard.index.emplace(shard.entries.front().first, shard.entries.begin());
  }
};

namespace {

// Compiles one list; RE2 rejections are counted, not fatal. Field names per
// list: family / major / brand / model replacement keys.
struct FieldNames {
  const char* family;
  const char* major;
  const char* brand;
  const char* model;
};

Status CompileList(const YAML::Node& list, const FieldNames& names, std::vector<Rule>* rules,
                   size_t* skipped) {
  if (!list || !list.IsSequence()) {
    return Status::InvalidArgument("regexes file: a uap-core parser list is missing");
  }
  rules->reserve(list.size());
  for (const YAML::Node& entry : list) {
    const std::optional<std::string> pattern = OptionalField(entry, "regex");
    if (!pattern.has_value()) {
      return Status::InvalidArgument("regexes file: an entry has no regex");
    }
    RE2::Options options;
    options.set_log_errors(false);
    options.set_case_sensitive(OptionalField(entry, "regex_flag") != std::optional<std::string>("i"));
    auto regex = std::make_unique<RE2>(*pattern, options);
    if (!regex->ok()) {
      (*skipped)++;
      continue;
    }
    rules->push_back(Rule{std::move(regex), OptionalField(entry, names.family),
                          OptionalField(entry, names.major), OptionalField(entry, names.brand),
                          OptionalField(entry, names.model)});
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<UserAgentParser>> UserAgentParser::Load(
    const std::string& regexes_yaml_path) {
  std::error_code error;
  const uintmax_t file_bytes = std::filesystem::file_size(regexes_yaml_path, error);
  if (error) {
    return Status::NotFound("regexes file " + regexes_yaml_path + ": " + error.message());
  }
  if (file_bytes > kRegexesFileBytesMax) {
    return Status::ResourceExhausted("regexes file exceeds kRegexesFileBytesMax");
  }
  auto patterns = std::make_unique<Patterns>();
  try {
    const YAML::Node root = YAML::LoadFile(regexes_yaml_path);
    MP_RETURN_IF_ERROR(CompileList(root["user_agent_parsers"],
                                   {"family_replacement", "v1_replacement", nullptr, nullptr},
                                   &patterns->user_agent_rules, &patterns->skipped));
    MP_RETURN_IF_ERROR(CompileList(root["os_parsers"],
                                   {"os_replacement", "os_v1_replacement", nullptr, nullptr},
                                   &patterns->os_rules, &patterns->skipped));
    MP_RETURN_IF_ERROR(CompileList(root["device_parsers"],
                                   {"device_replacement", nullptr, "brand_replacement",
                                    "model_replacement"},
                                   &patterns->device_rules, &patterns->skipped));
  } catch (const YAML::Exception& exception) {
    return Status::InvalidArgument("regexes file " + regexes_yaml_path + ": " + exception.what());
  }
  return std::unique_ptr<UserAgentParser>(new UserAgentParser(std::move(patterns)));
}

UserAgentParser::UserAgentParser(std::unique_ptr<Patterns> patterns)
    : patterns_(std::move(patterns)), cache_(std::make_unique<Cache>()) {}

UserAgentParser::~UserAgentParser() = default;

size_t UserAgentParser::pattern_count() const {
  return patterns_->user_agent_rules.size() + patterns_->os_rules.size() +
         patterns_->device_rules.size();
}

size_t UserAgentParser::skipped_pattern_count() const { return patterns_->skipped; }

UserAgentInfo UserAgentParser::ParseUncached(std::string_view user_agent) const {
  const std::string_view text = user_agent.substr(0, kUserAgentBytesMax);
  UserAgentInfo info;
  Captures captures{};
  if (const Rule* rule = FirstMatch(patterns_->user_agent_rules, text, &captures)) {
    info.browser_family = Resolve(rule->family_replacement, captures, 1);
    info.browser_major = Resolve(rule->major_replacement, captures, 2);
  }
  captures = {};
  if (const Rule* rule = FirstMatch(patterns_->os_rules, text, &captures)) {
    info.os_family = Resolve(rule->family_replacement, captures, 1);
    info.os_major = Resolve(rule->major_replacement, captures, 2);
  }
  captures = {};
  std::string device_family;
  if (const Rule* rule = FirstMatch(patterns_->device_rules, text, &captures)) {
    device_family = Resolve(rule->family_replacement, captures, 1);
  }
  // The spec: an empty family after substitution is "Other".
  info.browser_family = info.browser_family.empty() ? std::string(kOther) : info.browser_family;
  info.os_family = info.os_family.empty() ? std::string(kOther) : info.os_family;
  info.device_type = std::string(DeviceType(text, info, device_family));
  return info;
}

UserAgentInfo UserAgentParser::Parse(std::string_view user_agent) const {
  // ParseUncached sees only this prefix, so it is the right cache key too.
  const std::string_view key = user_agent.substr(0, kUserAgentBytesMax);
  if (std::optional<UserAgentInfo> cached = cache_->Find(key)) {
    return *std::move(cached);
  }
  UserAgentInfo info = ParseUncached(key);
  cache_->Insert(key, info);
  return info;
}

}  // namespace minpanel::privacy
