// Small files that each hold one 32-byte secret — a project's pseudonym key
// (privacy, docs/formats/keys.md), a day's visitor-id salt (privacy,
// docs/formats/plausible.md), a day's audit address key (audit,
// docs/formats/audit.md) — in one layout:
//
//   8       magic (one per kind of file)
//   u32 LE  format version
//   u32 LE  label: the key version, or the UTC day (days since 1970-01-01)
//   32      the secret
//
// written atomically (temporary file, fsync, rename, fsync of the folder)
// and zeroed wherever a copy is dropped. DaySecretFiles keeps the secrets of
// one UTC day each, one file per day, in memory once read or made.
//
// The free functions are thread-safe. A DaySecretFiles is not: its owner
// serialises calls (VisitorIds and AddressKeys under their mutex).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/file_system.h"
#include "core/status.h"

namespace minpanel {

inline constexpr size_t kSecretBytes = 32;
inline constexpr size_t kSecretFileMagicBytes = 8;
inline constexpr size_t kSecretFileBytes = kSecretFileMagicBytes + 4 + 4 + kSecretBytes;
inline constexpr uint32_t kSecretFileMode = 0600;
inline constexpr uint32_t kSecretFolderMode = 0700;
// What FileSystem::WriteFileAtomically appends to its temporary file.
inline constexpr std::string_view kTemporaryFileSuffix = ".tmp";

using Secret = std::array<uint8_t, kSecretBytes>;

// One kind of secret file.
struct SecretFileFormat {
  std::string_view magic;  // kSecretFileMagicBytes bytes
  // The version this binary writes; newer ones are refused.
  uint32_t format_version = 1;
  // Names the file in messages: "<kind> <path>: ...", e.g. "salt file".
  std::string_view kind;
};

// Overwrites `bytes` with zeros in a way the compiler keeps.
void WipeBytes(void* bytes, size_t size);

// Reads the secret file at `path` into *secret and returns its label. The
// bytes read are wiped before it returns. Corruption "<kind> <path>: wrong
// size or magic" or "...: format version N is newer than this binary".
Result<uint32_t> ReadSecretFile(FileSystem& file_system, const std::string& path,
                                const SecretFileFormat& format, Secret* secret);

// Writes `secret` with `label` to `path` atomically (kSecretFileMode) and
// wipes its copies. On a failure, removes the temporary file (which may
// hold the secret) and returns the write's error.
Status WriteSecretFile(FileSystem& file_system, const std::string& path,
                       const SecretFileFormat& format, uint32_t label, const Secret& secret);

// The UTC day of a time (days since 1970-01-01), its date "YYYY-MM-DD", and
// back (nullopt for anything but a valid date in that form).
int64_t UtcDayOf(int64_t time_ms);
std::string UtcDayName(int64_t day);
std::optional<int64_t> ParseUtcDayName(std::string_view name);

// The secrets of one UTC day each in `folder`, one file
// "<prefix>YYYY-MM-DD<extension>" per day, the day as the label.
class DaySecretFiles {
 public:
  struct Names {
    std::string_view prefix;     // "salt-"
    std::string_view extension;  // ".salt"
    std::string_view secret;     // "salt": "holds the salt of another day"
  };
  DaySecretFiles(std::string folder, std::shared_ptr<FileSystem> file_system,
                 SecretFileFormat format, Names names);
  ~DaySecretFiles();  // wipes the kept secrets
  DaySecretFiles(const DaySecretFiles&) = delete;
  DaySecretFiles& operator=(const DaySecretFiles&) = delete;

  const std::string& folder() const { return folder_; }
  std::string PathOf(int64_t day) const;

  // The day's secret: kept, or read from its file, or (with `create`) made
  // by `make` and written durably before it is kept. nullptr when there is
  // no file and not `create`. The pointer stays valid until the secret is
  // dropped. Corruption for a damaged file or one of another day; IoError
  // "<kind> <path> not written: ..." (nothing kept, no file left).
  Result<const Secret*> Get(int64_t day, bool create, const std::function<void(Secret*)>& make);

  // Wipes and drops the kept secrets of the days `drop` says (every one:
  // a fresh read of each file at its next Get).
  void Drop(const std::function<bool(int64_t day)>& drop);

  // Removes the files — whole, or their temporary files — of the days
  // `remove(day, temporary)` says, then syncs the folder when any went.
  // Other names in the folder are left alone. Returns how many went.
  Result<size_t> RemoveFiles(const std::function<bool(int64_t day, bool temporary)>& remove);

 private:
  // The day of a file name of this kind (or of its temporary file, then
  // *temporary), or nullopt.
  std::optional<int64_t> DayOfName(std::string_view name, bool* temporary) const;

  std::string folder_;
  std::shared_ptr<FileSystem> file_system_;
  SecretFileFormat format_;
  Names names_;
  std::map<int64_t, Secret> secrets_;  // by day
};

}  // namespace minpanel
