// FileSystem: the one door through which minpanel touches files, so that
// tests can inject failures (full disk, I/O errors) and crashes.
//
// A FileSystem is thread-safe. A WritableFile or SequentialFile is owned by
// one thread at a time. Paths are plain POSIX paths.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace minpanel {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends `data` at the end. A failed append may have written a prefix.
  virtual Status Append(std::string_view data) = 0;
  // Makes every appended byte durable (fdatasync).
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
};

class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `bytes_max` bytes into `out` (replacing its contents); an
  // empty `out` means end of file.
  virtual Status Read(size_t bytes_max, std::string* out) = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens `path` for appending, creating it (with `mode`) when missing.
  virtual Result<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path,
                                                               uint32_t mode) = 0;
  virtual Result<std::unique_ptr<SequentialFile>> OpenSequential(const std::string& path) = 0;
  virtual Result<std::string> ReadFile(const std::string& path) = 0;
  // Writes `data` to a temporary file, syncs it, renames it over `path` and
  // syncs the folder: readers see the old or the new file, never a mix.
  virtual Status WriteFileAtomically(const std::string& path, std::string_view data,
                                     uint32_t mode) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  virtual Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Creates the folder and its parents (with `mode`); OK when it exists.
  virtual Status CreateDirectories(const std::string& path, uint32_t mode) = 0;
  // Names (not paths) of the entries of a folder, sorted.
  virtual Result<std::vector<std::string>> ListDirectory(const std::string& path) = 0;
  virtual Status SyncDirectory(const std::string& path) = 0;
};

// The real file system. Stateless; the returned object may be shared.
std::shared_ptr<FileSystem> NewPosixFileSystem();

}  // namespace minpanel
