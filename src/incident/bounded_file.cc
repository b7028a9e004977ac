#include "incident/bounded_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace minpanel::incident {

Result<BoundedFile> OpenBoundedFile(const std::string& path, uint64_t bytes_max,
                                    std::string_view limit_name, FileKind kind) {
  const int flags = O_RDONLY | O_CLOEXEC | (kind == FileKind::kPrivate ? O_NOFOLLOW : 0);
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    return Status::IoError(path + ": " + std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    ::close(fd);
    if (kind == FileKind::kPrivate) {
      return Status::InvalidArgument(path + ": not a regular file");
    }
    return Status::IoError(path + ": " + std::strerror(error));
  }
  if (kind == FileKind::kPrivate && !S_ISREG(info.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file");
  }
  if (static_cast<uint64_t>(info.st_size) > bytes_max) {
    ::close(fd);
    return Status::ResourceExhausted(path + ": larger than " + std::string(limit_name) + " (" +
                                     std::to_string(bytes_max) + " bytes)");
  }
  return BoundedFile{.fd = fd, .bytes = static_cast<uint64_t>(info.st_size)};
}

Result<std::string> ReadBoundedFile(const std::string& path, uint64_t bytes_max,
                                    std::string_view limit_name, FileKind kind) {
  MP_ASSIGN_OR_RETURN(const BoundedFile file, OpenBoundedFile(path, bytes_max, limit_name, kind));
  std::string text(static_cast<size_t>(file.bytes), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got = ::read(file.fd, text.data() + done, text.size() - done);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      const int error = errno;
      ::close(file.fd);
      return Status::IoError(path + ": read: " + (got == 0 ? "short file" : std::strerror(error)));
    }
    done += static_cast<size_t>(got);
  }
  ::close(file.fd);
  return text;
}

}  // namespace minpanel::incident
