// Rewriting subject files when their subjects are erased
// (audit/subjects_rewrite.h; docs/formats/audit.md, "Rewritten subject files").
#include "audit/subjects_rewrite.h"

#include <algorithm>

namespace minpanel::audit {
namespace {

constexpr uint32_t kFileMode = 0600;

}  // namespace

Result<std::optional<SubjectsRewrite>> RewriteSubjectsText(std::string_view text,
                                                           const std::set<std::string>& erased) {
  MP_ASSIGN_OR_RETURN(SubjectsFile file, ParseSubjectsFile(text));
  uint64_t count = 0;
  for (SubjectsFile::Subject& subject : file.subjects) {
    if (subject.pseudonym != kErasedSubject && erased.contains(subject.pseudonym)) {
      subject.pseudonym = std::string(kErasedSubject);
      ++count;
    }
  }
  if (count == 0) {
    return std::optional<SubjectsRewrite>();
  }
  SubjectsRewrite rewrite;
  rewrite.erased = count;
  if (file.version == 1) {
    // Version 1: one pseudonym a line. An `erased` line keeps the count of
    // lines; the others stay in their order.
    for (const SubjectsFile::Subject& subject : file.subjects) {
      rewrite.text += subject.pseudonym;
      rewrite.text.push_back('\n');
    }
  } else {
    rewrite.text = EncodeSubjectsFile(file);
  }
  rewrite.sha256 = Sha256Hex(rewrite.text);
  return std::optional<SubjectsRewrite>(std::move(rewrite));
}

Result<std::vector<SubjectsRewrite>> PlanSubjectsRewrites(const std::string& folder,
                                                          FileSystem& file_system,
                                                          const std::set<std::string>& erased,
                                                          std::vector<std::string>* skipped) {
  std::vector<SubjectsRewrite> rewrites;
  if (erased.empty() || !file_system.Exists(folder + "/subjects")) {
    return rewrites;
  }
  MP_ASSIGN_OR_RETURN(std::vector<std::string> names,
                      file_system.ListDirectory(folder + "/subjects"));
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    // Only the files WriteSubjects names (a temporary file of an atomic
    // write in flight is not one).
    if (!name.ends_with(".txt") || name.find('/') != std::string::npos) {
      continue;
    }
    const std::string path = folder + "/subjects/" + name;
    MP_ASSIGN_OR_RETURN(const uint64_t size, file_system.FileSize(path));
    if (size > kRewriteSubjectsFileBytesMax) {
      skipped->push_back("subjects/" + name + ": over kRewriteSubjectsFileBytesMax");
      continue;
    }
    MP_ASSIGN_OR_RETURN(const std::string text, file_system.ReadFile(path));
    auto rewrite = RewriteSubjectsText(text, erased);
    if (!rewrite.ok()) {
      skipped->push_back("subjects/" + name + ": " + rewrite.status().message());
      continue;
    }
    if (rewrite->has_value()) {
      (*rewrite)->file = "subjects/" + name;
      rewrites.push_back(std::move(**rewrite));
    }
  }
  return rewrites;
}

Status ApplySubjectsRewrite(const std::string& folder, FileSystem& file_system,
                            const SubjectsRewrite& rewrite) {
  return file_system.WriteFileAtomically(folder + "/" + rewrite.file, rewrite.text, kFileMode);
}

}  // namespace minpanel::audit
