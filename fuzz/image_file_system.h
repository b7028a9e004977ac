// The read-only file system the store's fuzz targets hand to the readers and
// dump functions that take one (profile_file_fuzz, segment_fuzz, wal_fuzz):
// it holds one file, the fuzzer's image, at one path, and refuses every
// write and every other path. Not thread-safe; the image must outlive it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/core.h"

namespace minpanel::fuzz {

// The image read front to back, at most `read_bytes_max` bytes a read (small
// reads exercise a reader's refills).
class ImageFile final : public SequentialFile {
 public:
  explicit ImageFile(std::string_view bytes, size_t read_bytes_max = SIZE_MAX)
      : bytes_(bytes), read_bytes_max_(read_bytes_max) {}
  Status Read(size_t bytes_max, std::string* out) override {
    const size_t count = std::min({bytes_max, read_bytes_max_, bytes_.size() - position_});
    out->assign(bytes_.data() + position_, count);
    position_ += count;
    return Status::Ok();
  }

 private:
  std::string_view bytes_;
  size_t read_bytes_max_;
  size_t position_ = 0;
};

// Holds `image` at `path` (its folder lists the last component of `path`);
// reads of another path are NotFound, writes IoError.
class ImageFileSystem final : public FileSystem {
 public:
  ImageFileSystem(std::string path, std::string_view image, size_t read_bytes_max = SIZE_MAX)
      : path_(std::move(path)), image_(image), read_bytes_max_(read_bytes_max) {}
  Result<std::unique_ptr<WritableFile>> OpenAppendable(const std::string&, uint32_t) override {
    return Status::IoError("read-only");
  }
  Result<std::unique_ptr<SequentialFile>> OpenSequential(const std::string& path) override {
    if (path != path_) {
      return Status::NotFound(path);
    }
    return std::unique_ptr<SequentialFile>(new ImageFile(image_, read_bytes_max_));
  }
  // The readers under fuzz read whole files; nothing here reads at offsets.
  Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccess(const std::string& path) override {
    return Status::IoError("no positional reads in the fuzz harness: " + path);
  }
  Result<std::string> ReadFile(const std::string& path) override {
    if (path != path_) {
      return Status::NotFound(path);
    }
    return std::string(image_);
  }
  Status WriteFileAtomically(const std::string&, std::string_view, uint32_t) override {
    return Status::IoError("read-only");
  }
  Result<uint64_t> FileSize(const std::string& path) override {
    if (path != path_) {
      return Status::NotFound(path);
    }
    return uint64_t{image_.size()};
  }
  Status Truncate(const std::string&, uint64_t) override { return Status::IoError("read-only"); }
  Status Rename(const std::string&, const std::string&) override {
    return Status::IoError("read-only");
  }
  Status Remove(const std::string&) override { return Status::IoError("read-only"); }
  bool Exists(const std::string& path) override { return path == path_; }
  Status CreateDirectories(const std::string&, uint32_t) override {
    return Status::IoError("read-only");
  }
  Result<std::vector<std::string>> ListDirectory(const std::string&) override {
    return std::vector<std::string>{path_.substr(path_.rfind('/') + 1)};
  }
  Status SyncDirectory(const std::string&) override { return Status::Ok(); }

 private:
  std::string path_;
  std::string_view image_;
  size_t read_bytes_max_;
};

}  // namespace minpanel::fuzz
