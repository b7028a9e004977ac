// The `generalise` action for user agents: a raw User-Agent header becomes
// browser family and major version, OS family and major version, and a
// coarse device type; the header itself is then discarded by the caller.
//
// Parsing follows uap-core (Debian package uap-core,
// /usr/share/uap-core/regexes.yaml) and its specification
// (https://github.com/ua-parser/uap-core/blob/master/docs/specification.md):
// three ordered lists of regexes (user agent, OS, device); in each, the first
// pattern that matches wins, and its replacement fields (family_replacement,
// v1_replacement, os_replacement, os_v1_replacement, device_replacement,
// brand_replacement, model_replacement) are applied with "$1".."$9" replaced
// by the pattern's capture groups. No match gives family "Other".
//
// Patterns are compiled with RE2 (linear time, safe on hostile input). RE2
// lacks look-around and back-references; a pattern it cannot compile is
// skipped and counted (skipped_pattern_count(); uap-core 0.16.0 as shipped in
// Debian 12 has none, the count guards newer files). Skipping a pattern only
// means a later, more general pattern (or "Other") answers for the user
// agents it was written for.
//
// device_type is minpanel's own coarse class, derived after parsing:
// "bot" (uap-core device family "Spider", or a browser family naming a bot,
// crawler or spider), "tablet" (iPad, Kindle, devices named tablets, Android
// without "Mobile"), "mobile" (iPhone, iPod, mobile OSes, "Mobile" in the
// header), "desktop" (Windows, macOS, Linux, Chrome OS, BSD), else "other"
// (command-line clients, libraries, TVs, consoles, unknown).
//
// Thread-safety: a loaded UserAgentParser is immutable apart from its result
// cache, which is sharded and locked per shard; Parse may be called from any
// number of threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::privacy {

// Only this many leading bytes of a header are parsed. The longest of the
// ~18,000 user agents in uap-core's test files is 492 bytes; the cap bounds
// the work a hostile header can cause (a 512-byte random header costs about a
// millisecond uncached, a 2 KB one four times that).
inline constexpr size_t kUserAgentBytesMax = 512;
// Results are cached per header (cut to kUserAgentBytesMax): real traffic
// repeats a few thousand distinct headers. The cache holds at most
// kUserAgentCacheShards * kUserAgentCacheEntriesPerShard entries, each
// evicted least recently used, so at most ~4 MB.
inline constexpr size_t kUserAgentCacheShards = 16;
inline constexpr size_t kUserAgentCacheEntriesPerShard = 256;
// A regexes file larger than this is not uap-core's (0.16.0 is ~250 KB).
inline constexpr size_t kRegexesFileBytesMax = 16 * 1024 * 1024;

inline constexpr std::string_view kDeviceDesktop = "desktop";
inline constexpr std::string_view kDeviceMobile = "mobile";
inline constexpr std::string_view kDeviceTablet = "tablet";
inline constexpr std::string_view kDeviceBot = "bot";
inline constexpr std::string_view kDeviceOther = "other";

struct UserAgentInfo {
  std::string browser_family;  // "Chrome", "Mobile Safari", "Googlebot", "Other"
  std::string browser_major;   // "120", or "" when unknown
  std::string os_family;       // "Windows", "iOS", "Linux", "Other"
  std::string os_major;        // "10", "17", or ""
  std::string device_type;     // one of the kDevice* values above

  bool operator==(const UserAgentInfo&) const = default;
};

class UserAgentParser {
 public:
  // Reads and compiles uap-core's regexes.yaml. NotFound when the file is
  // missing, InvalidArgument when it is not a uap-core regexes file (YAML
  // errors included), ResourceExhausted over kRegexesFileBytesMax. Takes a
  // few hundred milliseconds: do it once at start-up and share the parser.
  static Result<std::unique_ptr<UserAgentParser>> Load(const std::string& regexes_yaml_path);

  ~UserAgentParser();
  UserAgentParser(const UserAgentParser&) = delete;
  UserAgentParser& operator=(const UserAgentParser&) = delete;

  // Never fails: anything unrecognised (empty, garbage) gives families
  // "Other" and device type "other". Thread-safe.
  UserAgentInfo Parse(std::string_view user_agent) const;

  // Patterns compiled, and patterns skipped because RE2 rejected them.
  size_t pattern_count() const;
  size_t skipped_pattern_count() const;

  // Parse without the cache (for measurements and tests).
  UserAgentInfo ParseUncached(std::string_view user_agent) const;

 private:
  struct Patterns;
  struct Cache;
  UserAgentParser(std::unique_ptr<Patterns> patterns);

  std::unique_ptr<Patterns> patterns_;
  std::unique_ptr<Cache> cache_;
};

}  // namespace minpanel::privacy
