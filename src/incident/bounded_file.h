// Internal to the incident module: the files its commands read whole — a
// leaked table, a notice, the send state — opened with their size checked
// against a named limit before a byte is read. Thread-safe (no state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::incident {

enum class FileKind {
  kAny,      // whatever `path` names, through symbolic links
  kPrivate,  // a regular file, not reached through a symbolic link
};

// An open file descriptor and the size of its file; the caller closes it.
struct BoundedFile {
  int fd = -1;
  uint64_t bytes = 0;
};

// Opens `path` for reading when it holds at most `bytes_max` bytes.
// ResourceExhausted "<path>: larger than <limit_name> (<bytes_max> bytes)"
// past it; IoError "<path>: <reason>" when it cannot be opened or examined;
// with kPrivate, InvalidArgument "<path>: not a regular file" for anything
// else (a folder, a device, a symbolic link).
Result<BoundedFile> OpenBoundedFile(const std::string& path, uint64_t bytes_max,
                                    std::string_view limit_name, FileKind kind);

// The whole file, opened as OpenBoundedFile does and read to its end
// (reads interrupted by a signal are retried). IoError "<path>: read: ..."
// when a read fails or the file shrinks under it ("short file").
Result<std::string> ReadBoundedFile(const std::string& path, uint64_t bytes_max,
                                    std::string_view limit_name, FileKind kind);

}  // namespace minpanel::incident
