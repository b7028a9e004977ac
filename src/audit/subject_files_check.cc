// What `minpanel audit verify` checks of the subject files the chain names
// (audit/subjects_rewrite.h; docs/formats/audit.md, "Verifying subject
// files").
#include <openssl/evp.h>

#include <memory>
#include <unordered_map>

#include "audit/subjects_rewrite.h"
#include "audit/verify_folder.h"

namespace minpanel::audit {
namespace {

// A record without a subject file says so in these bytes (EncodeEntry
// always writes the field; a quote inside a string value is escaped, so
// these bytes are never part of one): such records are not decoded again.
constexpr std::string_view kNoSubjectsFile = "\"subjects_file\":\"\"";
constexpr std::string_view kSubjectsFolderPrefix = "subjects/";

bool PlainSubjectsName(std::string_view name) {
  return name.starts_with(kSubjectsFolderPrefix) && name.size() > kSubjectsFolderPrefix.size() &&
         name.find("..") == std::string_view::npos &&
         name.find('/', kSubjectsFolderPrefix.size()) == std::string_view::npos;
}

// The SHA-256 (hex) of the file at `path`, read in kReadChunkBytes pieces;
// nullopt when there is none.
Result<std::optional<std::string>> FileSha256(FileSystem& file_system, const std::string& path) {
  if (!file_system.Exists(path)) {
    return std::optional<std::string>();
  }
  MP_ASSIGN_OR_RETURN(const std::unique_ptr<RandomAccessFile> file,
                      file_system.OpenRandomAccess(path));
  const std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                        &EVP_MD_CTX_free);
  if (context == nullptr || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return Status::IoError("audit verify: OpenSSL's SHA-256 could not start");
  }
  std::string piece;
  for (uint64_t offset = 0;; offset += piece.size()) {
    MP_RETURN_IF_ERROR(file->ReadAt(offset, kReadChunkBytes, &piece));
    if (piece.empty()) {
      break;
    }
    if (EVP_DigestUpdate(context.get(), piece.data(), piece.size()) != 1) {
      return Status::IoError("audit verify: OpenSSL's SHA-256 failed");
    }
  }
  std::array<uint8_t, kHashBytes> hash{};
  unsigned int size = 0;
  if (EVP_DigestFinal_ex(context.get(), hash.data(), &size) != 1 || size != kHashBytes) {
    return Status::IoError("audit verify: OpenSSL's SHA-256 failed");
  }
  return std::optional<std::string>(HexOf(hash));
}

// Checks each subject file as its record passes; what only a later
// subjects.rewrite record can settle waits for Finish. Memory: the files
// rewritten and the ones whose text did not match when their record passed.
class SubjectFilesChecker {
 public:
  SubjectFilesChecker(const std::string& folder, FileSystem& file_system)
      : folder_(folder), file_system_(file_system) {}

  Status Visit(const LogRecord& record) {
    if (record.payload.find(kNoSubjectsFile) != std::string_view::npos) {
      return Status::Ok();
    }
    auto entry = DecodeEntry(record.payload);
    if (!entry.ok() || entry->subjects_file.empty()) {
      return Status::Ok();  // the walk names an undecodable record itself
    }
    const std::string& name = entry->subjects_file;
    if (!PlainSubjectsName(name)) {
      Bad(record.seq, "record " + std::to_string(record.seq) + " names the subject file '" + name +
                          "', which is not a file under subjects/");
      return Status::Ok();
    }
    if (entry->act == kSubjectsRewriteAct) {
      rewrites_[name].push_back({record.seq, entry->subjects_sha256});
      return Status::Ok();
    }
    ++report_.files;
    MP_ASSIGN_OR_RETURN(const std::optional<std::string> sha256,
                        FileSha256(file_system_, folder_ + "/" + name));
    if (!sha256.has_value() || *sha256 != entry->subjects_sha256) {
      pending_[name] = {record.seq, sha256.value_or("")};
    }
    return Status::Ok();
  }

  Result<SubjectFilesReport> Finish(uint64_t base_seq) {
    for (const auto& [name, found] : pending_) {
      if (!rewrites_.contains(name)) {
        Bad(found.seq, found.sha256.empty() ? Missing(name, found.seq)
                                            : name + " does not have the SHA-256 record " +
                                                  std::to_string(found.seq) +
                                                  " states for it (edited or replaced)");
      }
    }
    for (const auto& [name, rewrites] : rewrites_) {
      MP_RETURN_IF_ERROR(FinishRewritten(name, rewrites, base_seq));
    }
    return report_;
  }

 private:
  struct Rewrite {
    uint64_t seq = 0;
    std::string sha256;
  };
  struct Found {
    uint64_t seq = 0;     // the record that named it
    std::string sha256;   // what the file held then; empty: missing
  };

  void Bad(uint64_t seq, std::string problem) {
    ++report_.bad;
    if (report_.problem_seq == 0 || seq < report_.problem_seq) {
      report_.problem_seq = seq;
      report_.problem = std::move(problem);
    }
  }

  static std::string Missing(const std::string& name, uint64_t seq) {
    return name + ", named by record " + std::to_string(seq) + ", is missing (deleted)";
  }

  // A file an erasure rewrote: its text must be the one the newest
  // subjects.rewrite record naming it states.
  Status FinishRewritten(const std::string& name, const std::vector<Rewrite>& rewrites,
                         uint64_t base_seq) {
    ++report_.rewritten;
    const Rewrite& newest = rewrites.back();
    const auto found = pending_.find(name);
    MP_ASSIGN_OR_RETURN(const std::optional<std::string> sha256,
                        FileSha256(file_system_, folder_ + "/" + name));
    if (!sha256.has_value()) {
      if (found != pending_.end()) {
        Bad(found->second.seq, Missing(name, found->second.seq));
      } else if (base_seq > 0) {
        ++report_.pruned;  // its export record was cut, and the file with it
      } else {
        Bad(newest.seq, Missing(name, newest.seq));
      }
      return Status::Ok();
    }
    if (*sha256 == newest.sha256) {
      return Status::Ok();
    }
    const std::string stated_newest = " record " + std::to_string(newest.seq) +
                                      " (subjects.rewrite, the newest naming it) states";
    const std::string older =
        " (an erasure interrupted before it replaced the file, or an older copy put back): it "
        "may still list subjects erased since; erase the same ids again to finish";
    for (const Rewrite& rewrite : rewrites) {
      if (rewrite.sha256 == *sha256) {
        Bad(newest.seq, name + " holds the text record " + std::to_string(rewrite.seq) +
                            " stated, not the one" + stated_newest + older);
        return Status::Ok();
      }
    }
    if (found == pending_.end() && base_seq == 0) {
      // It held its export record's text when that record passed.
      Bad(newest.seq, name + " holds the text its export record stated, not the one" +
                          stated_newest + older);
      return Status::Ok();
    }
    Bad(newest.seq, name + " holds none of the texts the chain states for it (the newest:" +
                        stated_newest + "): edited or replaced");
    return Status::Ok();
  }

  const std::string& folder_;
  FileSystem& file_system_;
  SubjectFilesReport report_;
  std::unordered_map<std::string, std::vector<Rewrite>> rewrites_;
  std::unordered_map<std::string, Found> pending_;
};

}  // namespace

Result<FolderReport> VerifyFolderAndSubjectFiles(const std::string& folder,
                                                 FileSystem& file_system,
                                                 const PublicKey* public_key) {
  SubjectFilesChecker checker(folder, file_system);
  FolderReport report;
  MP_ASSIGN_OR_RETURN(report.log,
                      internal::VerifyFolderVisiting(
                          folder, file_system, public_key,
                          [&checker](const LogRecord& record) { return checker.Visit(record); }));
  MP_ASSIGN_OR_RETURN(report.subject_files, checker.Finish(report.log.base_seq));
  return report;
}

}  // namespace minpanel::audit
