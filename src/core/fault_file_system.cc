#include "core/fault_file_system.h"

#include <algorithm>
#include <mutex>
#include <optional>

namespace minpanel {

struct FaultFileSystem::State {
  mutable std::mutex mutex;
  std::optional<uint64_t> write_budget_bytes;  // empty: unlimited
  bool fail_syncs = false;
  bool fail_truncate = false;
  std::optional<uint64_t> read_budget;  // ReadAt calls left before they fail; empty: unlimited
  uint64_t failed_appends = 0;
  uint64_t failed_syncs = 0;
  uint64_t failed_reads = 0;
};

namespace {

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(std::string path, std::unique_ptr<WritableFile> base,
                    std::shared_ptr<FaultFileSystem::State> state)
      : path_(std::move(path)), base_(std::move(base)), state_(std::move(state)) {}

  Status Append(std::string_view data) override {
    size_t allowed = data.size();
    {
      std::lock_guard lock(state_->mutex);
      if (state_->write_budget_bytes.has_value()) {
        allowed = static_cast<size_t>(std::min<uint64_t>(*state_->write_budget_bytes, data.size()));
        *state_->write_budget_bytes -= allowed;
      }
      if (allowed < data.size()) {
        ++state_->failed_appends;
      }
    }
    if (allowed > 0) {
      MP_RETURN_IF_ERROR(base_->Append(data.substr(0, allowed)));
    }
    if (allowed < data.size()) {
      return Status::ResourceExhausted("write " + path_ + ": No space left on device (injected)");
    }
    return Status::Ok();
  }

  Status Sync() override {
    {
      std::lock_guard lock(state_->mutex);
      if (state_->fail_syncs) {
        ++state_->failed_syncs;
        return Status::IoError("fdatasync " + path_ + ": Input/output error (injected)");
      }
    }
    return base_->Sync();
  }

  Status Close() override { return base_->Close(); }

 private:
  std::string path_;
  std::unique_ptr<WritableFile> base_;
  std::shared_ptr<FaultFileSystem::State> state_;
};

class FaultPositionalFile final : public PositionalFile {
 public:
  FaultPositionalFile(std::string path, std::unique_ptr<PositionalFile> base,
                      std::shared_ptr<FaultFileSystem::State> state)
      : path_(std::move(path)), base_(std::move(base)), state_(std::move(state)) {}

  // Counted against the same budget as appends: a full disk fails both.
  Status WriteAt(uint64_t offset, std::string_view data) override {
    size_t allowed = data.size();
    {
      std::lock_guard lock(state_->mutex);
      if (state_->write_budget_bytes.has_value()) {
        allowed = static_cast<size_t>(std::min<uint64_t>(*state_->write_budget_bytes, data.size()));
        *state_->write_budget_bytes -= allowed;
      }
      if (allowed < data.size()) {
        ++state_->failed_appends;
      }
    }
    if (allowed > 0) {
      MP_RETURN_IF_ERROR(base_->WriteAt(offset, data.substr(0, allowed)));
    }
    if (allowed < data.size()) {
      return Status::ResourceExhausted("pwrite " + path_ + ": No space left on device (injected)");
    }
    return Status::Ok();
  }

  Status Sync() override {
    {
      std::lock_guard lock(state_->mutex);
      if (state_->fail_syncs) {
        ++state_->failed_syncs;
        return Status::IoError("fdatasync " + path_ + ": Input/output error (injected)");
      }
    }
    return base_->Sync();
  }

  Result<uint64_t> Size() override { return base_->Size(); }
  Status Close() override { return base_->Close(); }

 private:
  std::string path_;
  std::unique_ptr<PositionalFile> base_;
  std::shared_ptr<FaultFileSystem::State> state_;
};

class FaultRandomAccessFile final : public RandomAccessFile {
 public:
  FaultRandomAccessFile(std::string path, std::unique_ptr<RandomAccessFile> base,
                        std::shared_ptr<FaultFileSystem::State> state)
      : path_(std::move(path)), base_(std::move(base)), state_(std::move(state)) {}

  Status ReadAt(uint64_t offset, size_t length, std::string* out) const override {
    {
      std::lock_guard lock(state_->mutex);
      if (state_->read_budget.has_value()) {
        if (*state_->read_budget == 0) {
          ++state_->failed_reads;
          out->clear();
          return Status::IoError("pread " + path_ + ": Input/output error (injected)");
        }
        --*state_->read_budget;
      }
    }
    return base_->ReadAt(offset, length, out);
  }

  Result<uint64_t> Size() const override { return base_->Size(); }

 private:
  std::string path_;
  std::unique_ptr<RandomAccessFile> base_;
  std::shared_ptr<FaultFileSystem::State> state_;
};

}  // namespace

FaultFileSystem::FaultFileSystem(std::shared_ptr<FileSystem> base)
    : base_(std::move(base)), state_(std::make_shared<State>()) {}

void FaultFileSystem::FailWritesAfterBytes(uint64_t bytes) {
  std::lock_guard lock(state_->mutex);
  state_->write_budget_bytes = bytes;
}

void FaultFileSystem::FailSyncs(bool fail) {
  std::lock_guard lock(state_->mutex);
  state_->fail_syncs = fail;
}

void FaultFileSystem::FailTruncate(bool fail) {
  std::lock_guard lock(state_->mutex);
  state_->fail_truncate = fail;
}

void FaultFileSystem::FailReadsAfter(uint64_t reads) {
  std::lock_guard lock(state_->mutex);
  state_->read_budget = reads;
}

void FaultFileSystem::Reset() {
  std::lock_guard lock(state_->mutex);
  state_->write_budget_bytes.reset();
  state_->read_budget.reset();
  state_->fail_syncs = false;
  state_->fail_truncate = false;
}

uint64_t FaultFileSystem::failed_appends() const {
  std::lock_guard lock(state_->mutex);
  return state_->failed_appends;
}

uint64_t FaultFileSystem::failed_syncs() const {
  std::lock_guard lock(state_->mutex);
  return state_->failed_syncs;
}

uint64_t FaultFileSystem::failed_reads() const {
  std::lock_guard lock(state_->mutex);
  return state_->failed_reads;
}

Result<std::unique_ptr<WritableFile>> FaultFileSystem::OpenAppendable(const std::string& path,
                                                                      uint32_t mode) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->OpenAppendable(path, mode));
  return std::unique_ptr<WritableFile>(new FaultWritableFile(path, std::move(file), state_));
}

Result<std::unique_ptr<PositionalFile>> FaultFileSystem::OpenPositional(const std::string& path,
                                                                        uint32_t mode) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<PositionalFile> file, base_->OpenPositional(path, mode));
  return std::unique_ptr<PositionalFile>(new FaultPositionalFile(path, std::move(file), state_));
}

Result<std::unique_ptr<SequentialFile>> FaultFileSystem::OpenSequential(const std::string& path) {
  return base_->OpenSequential(path);
}

Result<std::unique_ptr<RandomAccessFile>> FaultFileSystem::OpenRandomAccess(
    const std::string& path) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, base_->OpenRandomAccess(path));
  return std::unique_ptr<RandomAccessFile>(
      new FaultRandomAccessFile(path, std::move(file), state_));
}

Result<std::string> FaultFileSystem::ReadFile(const std::string& path) {
  return base_->ReadFile(path);
}

Status FaultFileSystem::WriteFileAtomically(const std::string& path, std::string_view data,
                                            uint32_t mode) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->write_budget_bytes.has_value() && *state_->write_budget_bytes < data.size()) {
      ++state_->failed_appends;
      return Status::ResourceExhausted("write " + path + ": No space left on device (injected)");
    }
    if (state_->write_budget_bytes.has_value()) {
      *state_->write_budget_bytes -= data.size();
    }
  }
  return base_->WriteFileAtomically(path, data, mode);
}

Result<uint64_t> FaultFileSystem::FileSize(const std::string& path) { return base_->FileSize(path); }

Status FaultFileSystem::Truncate(const std::string& path, uint64_t size) {
  {
    std::lock_guard lock(state_->mutex);
    if (state_->fail_truncate) {
      return Status::IoError("truncate " + path + ": Input/output error (injected)");
    }
  }
  return base_->Truncate(path, size);
}

Status FaultFileSystem::Rename(const std::string& from, const std::string& to) {
  return base_->Rename(from, to);
}

Status FaultFileSystem::Remove(const std::string& path) { return base_->Remove(path); }

bool FaultFileSystem::Exists(const std::string& path) { return base_->Exists(path); }

Status FaultFileSystem::CreateDirectories(const std::string& path, uint32_t mode) {
  return base_->CreateDirectories(path, mode);
}

Result<std::vector<std::string>> FaultFileSystem::ListDirectory(const std::string& path) {
  return base_->ListDirectory(path);
}

Status FaultFileSystem::SyncDirectory(const std::string& path) {
  return base_->SyncDirectory(path);
}

}  // namespace minpanel
