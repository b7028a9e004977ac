// FaultFileSystem: a FileSystem that forwards to another one and fails on
// demand, for tests of what happens when the disk fills up, a sync fails, a
// truncate fails or a positional read fails. (leveldb's FaultInjectionTestEnv plays the same role.)
//
// Thread-safe: the switches may be flipped from the test thread while other
// threads write. Files opened through it consult the switches on every call
// and may outlive the FaultFileSystem.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/file_system.h"

namespace minpanel {

class FaultFileSystem final : public FileSystem {
 public:
  explicit FaultFileSystem(std::shared_ptr<FileSystem> base);

  // After `bytes` more bytes have been appended or written at an offset
  // (over every file), writes write what still fits and then fail with
  // ResourceExhausted, as a full disk would (ENOSPC).
  void FailWritesAfterBytes(uint64_t bytes);
  // While set, WritableFile::Sync fails with IoError and makes nothing durable.
  void FailSyncs(bool fail);
  // While set, Truncate fails with IoError and changes nothing.
  void FailTruncate(bool fail);
  // After `reads` more RandomAccessFile::ReadAt calls (over every file),
  // each ReadAt fails with IoError and reads nothing, as a bad disk would.
  void FailReadsAfter(uint64_t reads);
  // Clears every failure.
  void Reset();

  // How many appends, syncs and positional reads have failed so far.
  uint64_t failed_appends() const;
  uint64_t failed_syncs() const;
  uint64_t failed_reads() const;

  Result<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path,
                                                       uint32_t mode) override;
  Result<std::unique_ptr<PositionalFile>> OpenPositional(const std::string& path,
                                                         uint32_t mode) override;
  Result<std::unique_ptr<SequentialFile>> OpenSequential(const std::string& path) override;
  Result<std::unique_ptr<RandomAccessFile>> OpenRandomAccess(const std::string& path) override;
  Result<std::string> ReadFile(const std::string& path) override;
  Status WriteFileAtomically(const std::string& path, std::string_view data,
                             uint32_t mode) override;
  Result<uint64_t> FileSize(const std::string& path) override;
  Status Truncate(const std::string& path, uint64_t size) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Status CreateDirectories(const std::string& path, uint32_t mode) override;
  Result<std::vector<std::string>> ListDirectory(const std::string& path) override;
  Status SyncDirectory(const std::string& path) override;

  struct State;

 private:
  std::shared_ptr<FileSystem> base_;
  std::shared_ptr<State> state_;
};

}  // namespace minpanel
