#include "core/file_system.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace minpanel {
namespace {

Status ErrnoStatus(std::string_view what, const std::string& path, int error) {
  std::string message(what);
  message += " ";
  message += path;
  message += ": ";
  message += std::strerror(error);
  if (error == ENOSPC || error == EDQUOT || error == EFBIG) {
    return Status::ResourceExhausted(message);
  }
  return Status::IoError(message);
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  Status Append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t written = ::write(fd_, data.data(), data.size());
      if (written < 0) {
        if (errno == EINTR) {
          continue;
        }
        return ErrnoStatus("write", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(written));
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) {
      return ErrnoStatus("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) {
      return ErrnoStatus("close", path_, errno);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixPositionalFile final : public PositionalFile {
 public:
  PosixPositionalFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixPositionalFile() override {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  Status WriteAt(uint64_t offset, std::string_view data) override {
    while (!data.empty()) {
      const ssize_t written = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (written < 0) {
        if (errno == EINTR) {
          continue;
        }
        return ErrnoStatus("pwrite", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(written));
      offset += static_cast<uint64_t>(written);
    }
    return Status::Ok();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) {
      return ErrnoStatus("fdatasync", path_, errno);
    }
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      return ErrnoStatus("fstat", path_, errno);
    }
    return static_cast<uint64_t>(info.st_size);
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (fd >= 0 && ::close(fd) != 0) {
      return ErrnoStatus("close", path_, errno);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixSequentialFile() override { ::close(fd_); }

  Status Read(size_t bytes_max, std::string* out) override {
    out->resize(bytes_max);
    while (true) {
      const ssize_t got = ::read(fd_, out->data(), bytes_max);
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        out->clear();
        return ErrnoStatus("read", path_, errno);
      }
      out->resize(static_cast<size_t>(got));
      return Status::Ok();
    }
  }

 private:
  std::string path_;
  int fd_;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  Status ReadAt(uint64_t offset, size_t length, std::string* out) const override {
    out->resize(length);
    size_t got_total = 0;
    // pread may return less than asked before the end of the file (a signal,
    // a large read); only a zero return means the end.
    while (got_total < length) {
      const ssize_t got = ::pread(fd_, out->data() + got_total, length - got_total,
                                  static_cast<off_t>(offset + got_total));
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got < 0) {
        out->clear();
        return ErrnoStatus("pread", path_, errno);
      }
      if (got == 0) {
        break;
      }
      got_total += static_cast<size_t>(got);
    }
    out->resize(got_total);
    return Status::Ok();
  }

  Result<uint64_t> Size() const override {
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      return ErrnoStatus("fstat", path_, errno);
    }
    return static_cast<uint64_t>(info.st_size);
  }

 private:
  std::string path_;
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path,
                                                       uint32_t mode) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode);
    if (fd < 0) {
      return ErrnoStatus("open", path, errno);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Result<std::unique_ptr<PositionalFile>> OpenPositional(const std::string& path,
                                                         uint32_t mode) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0) {
      return ErrnoStatus("open", path, errno);
    }
    return std::unique_ptr<PositionalFile>(new PosixPositionalFile(path, fd));
  }

  Result<std::unique_ptr<SequentialFile>> OpenSequential(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return errno == ENOENT ? Status::NotFound("no file " + path) : ErrnoStatus("open", path, errno);
    }
    return std::unique_ptr<SequentialFile>(new PosixSequentialFile(path, fd));
  }

  Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccess(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return errno == ENOENT ? Status::NotFound("no file " + path) : ErrnoStatus("open", path, errno);
    }
    return std::unique_ptr<RandomAccessFile>(new PosixRandomAccessFile(path, fd));
  }

  Result<std::string> ReadFile(const std::string& path) override {
    MP_ASSIGN_OR_RETURN(std::unique_ptr<SequentialFile> file, OpenSequential(path));
    std::string contents;
    std::string chunk;
    while (true) {
      MP_RETURN_IF_ERROR(file->Read(1 << 20, &chunk));
      if (chunk.empty()) {
        return contents;
      }
      contents += chunk;
    }
  }

  Status WriteFileAtomically(const std::string& path, std::string_view data,
                             uint32_t mode) override {
    const std::string temporary = path + ".tmp";
    {
      const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
      if (fd < 0) {
        return ErrnoStatus("open", temporary, errno);
      }
      PosixWritableFile file(temporary, fd);
      MP_RETURN_IF_ERROR(file.Append(data));
      if (::fsync(fd) != 0) {
        return ErrnoStatus("fsync", temporary, errno);
      }
      MP_RETURN_IF_ERROR(file.Close());
    }
    MP_RETURN_IF_ERROR(Rename(temporary, path));
    return SyncDirectory(std::filesystem::path(path).parent_path().string());
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0) {
      return ErrnoStatus("stat", path, errno);
    }
    return static_cast<uint64_t>(info.st_size);
  }

  Status Truncate(const std::string& path, uint64_t size) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0) {
      return ErrnoStatus("truncate", path, errno);
    }
    return Status::Ok();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return ErrnoStatus("rename", from, errno);
    }
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus("unlink", path, errno);
    }
    return Status::Ok();
  }

  bool Exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  Status CreateDirectories(const std::string& path, uint32_t mode) override {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) {
      return Status::IoError("create folder " + path + ": " + error.message());
    }
    if (::chmod(path.c_str(), mode) != 0) {
      return ErrnoStatus("chmod", path, errno);
    }
    return Status::Ok();
  }

  Result<std::vector<std::string>> ListDirectory(const std::string& path) override {
    std::error_code error;
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
      names.push_back(entry.path().filename().string());
    }
    if (error) {
      return Status::IoError("list folder " + path + ": " + error.message());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  Status SyncDirectory(const std::string& path) override {
    const int fd = ::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      return ErrnoStatus("open folder", path, errno);
    }
    const int result = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    if (result != 0) {
      return ErrnoStatus("fsync folder", path, error);
    }
    return Status::Ok();
  }
};

}  // namespace

Result<std::unique_ptr<PositionalFile>> FileSystem::OpenPositional(const std::string& path,
                                                                   uint32_t /*mode*/) {
  return Status::Unavailable("open " + path + ": this file system has no positional writes");
}

std::shared_ptr<FileSystem> NewPosixFileSystem() { return std::make_shared<PosixFileSystem>(); }

}  // namespace minpanel
