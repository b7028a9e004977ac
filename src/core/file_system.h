// FileSystem: the one door through which minpanel touches files, so that
// tests can inject failures (full disk, I/O errors) and crashes.
//
// A FileSystem is thread-safe. A WritableFile or SequentialFile is owned by
// one thread at a time; a RandomAccessFile may be read from many threads at
// once. Paths are plain POSIX paths.
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

// A file written at offsets its writer chooses (pwrite), for a log that
// keeps its own logical end inside space it wrote ahead (the audit log,
// docs/formats/audit.md, "Space written ahead"). One writer at a time.
class PositionalFile {
 public:
  virtual ~PositionalFile() = default;
  // Writes `data` at `offset`, extending the file when it passes the end. A
  // failed write may have written a prefix.
  virtual Status WriteAt(uint64_t offset, std::string_view data) = 0;
  // Makes every written byte durable (fdatasync).
  virtual Status Sync() = 0;
  // The file's size now.
  virtual Result<uint64_t> Size() = 0;
  virtual Status Close() = 0;
};

class SequentialFile {
 public:
  virtual ~SequentialFile() = default;
  // Reads up to `bytes_max` bytes into `out` (replacing its contents); an
  // empty `out` means end of file.
  virtual Status Read(size_t bytes_max, std::string* out) = 0;
};

// A file open for reads at any offset (pread), so that a reader fetches only
// the parts it needs. It keeps no position, so its const methods may be
// called from many threads at once. It keeps reading the file it opened even
// after the path is removed or renamed over (the open descriptor holds it);
// a file truncated or overwritten in place shows the change.
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads `length` bytes at `offset` into `out` (replacing its contents).
  // Fewer bytes come back only where the file ends: none at or past the
  // end. IoError when the read fails.
  virtual Status ReadAt(uint64_t offset, size_t length, std::string* out) const = 0;
  // The file's size now.
  virtual Result<uint64_t> Size() const = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;

  // Opens `path` for appending, creating it (with `mode`) when missing.
  virtual Result<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path,
                                                               uint32_t mode) = 0;
  // Opens `path` for positional writes, creating it (with `mode`) when
  // missing. A file system that has no such files (the fuzz targets'
  // images) keeps the default: Unavailable.
  virtual Result<std::unique_ptr<PositionalFile>> OpenPositional(const std::string& path,
                                                                 uint32_t mode);
  virtual Result<std::unique_ptr<SequentialFile>> OpenSequential(const std::string& path) = 0;
  // Opens `path` for positional reads; NotFound when it does not exist.
  virtual Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccess(const std::string& path) = 0;
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
