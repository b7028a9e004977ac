// Fuzzes the store's erasure journal reader (docs/formats/erasure-journal.md),
// which restore reads from a key folder that a crash or a bad disk may have
// left damaged: the input is the journal file's bytes. Invariants: reading
// fails only with Corruption (a newer version) and never crashes; every
// erasure read names at least one subject, in ascending order, or is a
// property purge (a key, no subject); and an
// append after any image (which first cuts a damaged tail) leaves a journal
// that reads back every erasure read before plus the appended one, last.
//
// The seeds in fuzz/corpus/erasure_journal_fuzz are journals written by
// AppendErasureJournal: two erasures, and an erasure and two property
// purges.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_check.h"
#include "store/erasure_journal.h"

namespace minpanel::fuzz {
namespace {

const std::string& Folder() {
  static const std::string folder = [] {
    const std::string path = (std::filesystem::temp_directory_path() /
                              ("erasure_journal_fuzz-" + std::to_string(::getpid())))
                                 .string();
    std::filesystem::create_directories(path);
    return path;
  }();
  return folder;
}

void CheckErasures(const std::vector<store::Deletion>& erasures) {
  for (const store::Deletion& erasure : erasures) {
    Check(erasure.property_key.empty() != erasure.subjects.empty(),
          "an erasure without subjects, or a property purge with subjects");
    Check(!erasure.profiles_only, "a profile expiry journalled");
    for (size_t subject_idx = 1; subject_idx < erasure.subjects.size(); ++subject_idx) {
      Check(erasure.subjects[subject_idx - 1] < erasure.subjects[subject_idx],
            "subjects not ascending");
    }
  }
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string& folder = fuzz::Folder();
  const std::string path = folder + "/" + store::kErasureJournalName;
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  const std::string no_store = folder + "/no-store";
  auto before = store::ReadErasures(*file_system, no_store, folder);
  if (!before.ok()) {
    fuzz::Check(before.status().code() == StatusCode::kCorruption, "not Corruption");
    return 0;
  }
  fuzz::CheckErasures(*before);
  store::Deletion appended;
  appended.project_id = 7;
  appended.position = store::LogPosition{UINT64_MAX >> 1, 1};  // after any read
  appended.subjects = {Id128{0, 1}, Id128{3, 4}};
  const Status status = store::AppendErasureJournal(*file_system, folder, {appended});
  if (!status.ok()) {
    // A file that is not a journal at all is refused, not overwritten.
    fuzz::Check(status.code() == StatusCode::kCorruption, "append: not Corruption");
    return 0;
  }
  auto after = store::ReadErasures(*file_system, no_store, folder);
  fuzz::Check(after.ok(), "a journal just appended to does not read");
  fuzz::CheckErasures(*after);
  fuzz::Check(after->size() >= before->size(), "an append lost erasures");
  bool found = false;
  for (const store::Deletion& erasure : *after) {
    // Equal, or one of the image's at the same position (read first).
    found |= erasure.position == appended.position && erasure.project_id == appended.project_id;
  }
  fuzz::Check(found, "the appended erasure is not read back");
  return 0;
}
