// Visitor ids for clients that send none (Plausible's events API): a keyed
// hash of (daily salt, site domain, client address, user agent), with
// Plausible's design kept and its promise enforced — salts are random, one
// per UTC day, created when first needed, kept only in the key folder and
// destroyed 48 hours after their day starts, so a visitor cannot be followed
// across more than two days by anyone, the operator included, and the
// address and user agent that went into the hash are never stored
// (docs/formats/plausible.md).
//
// A visit that crosses midnight stays one visitor, as in Plausible: the id
// made with the previous day's salt is used while that visitor has been
// seen within the last session — 30 to 60 minutes: visitors are remembered
// in two kVisitorSessionMs windows, in memory only, as keyed hashes; a
// restart forgets them.
//
// Salt files (salts/salt-YYYY-MM-DD.salt under the key folder, 0600, the
// folder 0700) hold an 8-byte magic "MPSALT\0\0", a format version (u32
// LE, 1), the day (u32 LE, days since 1970-01-01) and 32 random bytes;
// written atomically (temporary file, fsync, rename, fsync of the folder):
// core's DaySecretFiles (core/secret_files.h) reads, writes and keeps them.
//
// VisitorIds is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "core/core.h"
#include "core/secret_files.h"
#include "core/time_units.h"

namespace minpanel::privacy {

// A salt is destroyed this long after its UTC day starts: it serves its own
// day and, for visits that cross midnight, the next.
inline constexpr int64_t kVisitorSaltLifetimeMs = 2 * kDayMs;
// Plausible's session timeout: a visitor seen within it keeps yesterday's id
// after midnight.
inline constexpr int64_t kVisitorSessionMs = 30LL * 60 * 1000;
// Visitors remembered per session window (two windows are kept). Past it, a
// visitor first seen late in a window may be counted twice across midnight;
// nothing else changes.
inline constexpr size_t kRecentVisitorsMax = 1 << 19;

class VisitorIds {
 public:
  // Opens (creating, 0700) the salt folder `folder` — the key folder's
  // "salts" subfolder: outside the data folder, like the pseudonym keys —
  // removes temporary files a crash left and destroys expired salts.
  static Result<std::unique_ptr<VisitorIds>> Open(std::string folder,
                                                  std::shared_ptr<FileSystem> file_system,
                                                  std::shared_ptr<Clock> clock);
  ~VisitorIds();

  // The visitor id of a request arriving now: BLAKE2b-128 keyed with the
  // day's salt over (domain byte 'v', site domain, NUL, client address, NUL,
  // user agent). Creates today's salt on first use. Errors: IoError when a
  // salt cannot be written (nothing should be stored: retry later),
  // Corruption when a salt file is damaged.
  Result<Id128> VisitorId(std::string_view site_domain, std::string_view client_ip,
                          std::string_view user_agent);

  // Destroys the salts (files and memory) whose day started
  // kVisitorSaltLifetimeMs ago or more, and their temporary files. Returns
  // how many files it removed. VisitorId also does it at each new day; the
  // server calls it every minute so that a salt goes on time without
  // traffic.
  Result<size_t> DestroyExpired();

  // Drops the cached salts, so that the next use re-reads the files.
  void Forget();

  // The salt file of a day (days since 1970-01-01), for tests and docs.
  std::string SaltPath(int64_t day) const;

 private:
  VisitorIds(std::string folder, std::shared_ptr<FileSystem> file_system,
             std::shared_ptr<Clock> clock);
  Result<size_t> DestroyExpiredLocked(int64_t now_ms);
  bool SeenRecently(const Id128& visitor) const;
  void Remember(const Id128& visitor, int64_t now_ms);

  std::mutex mutex_;
  DaySecretFiles salts_;  // guarded by mutex_ (SaltPath only reads its folder)
  std::shared_ptr<Clock> clock_;
  int64_t swept_day_ = INT64_MIN;
  // Visitors seen in the current and the previous session window.
  bool has_window_ = false;
  int64_t window_start_ms_ = 0;
  std::unordered_set<Id128, Id128Hash> current_window_;
  std::unordered_set<Id128, Id128Hash> previous_window_;
};

}  // namespace minpanel::privacy
