// Subject files and the chain (docs/formats/audit.md, "Subject files" and
// "Rewritten subject files"): what `minpanel audit verify` checks of them,
// and their erasure. An erasure rewrites each export subject file that lists an erased
// pseudonym, putting kErasedSubject in its place, and states the new
// SHA-256 of each rewritten file in a `subjects.rewrite` record of the chain,
// appended (durable) before the file is replaced. A reader accepts a subject
// file whose hash is its record's own or the newest rewrite's. Kept out of
// audit.h so that the many files including it are not rebuilt for this.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit.h"

namespace minpanel::audit {

// The act of the record that states a rewrite: its subjects_file names the
// file (as the export's record does), subjects_sha256 is the new hash,
// subjects the count of lines erased by this rewrite, params_sha256 the
// erasure's keyed reference (the `erase` record's), projects the erasure's.
inline constexpr std::string_view kSubjectsRewriteAct = "subjects.rewrite";
// The key a rewrite record is recorded under: the server's own act (as a
// retention cut's `log.prune`), right after the `erase` record that names
// the key that asked; so that a blast radius finds the rewrites through the
// key index without walking the whole log.
inline constexpr std::string_view kSubjectsRewriteKey = "local";
// Its route.
inline constexpr std::string_view kSubjectsRewriteRoute = "erasure";
// The largest subject file an erasure reads (an export's subject file is
// bounded by the export's limits long before this).
inline constexpr uint64_t kRewriteSubjectsFileBytesMax = 4ull << 30;

struct SubjectsRewrite {
  std::string file;     // "subjects/<ms>-<n>.txt"
  std::string sha256;   // of `text`
  std::string text;     // the file's new contents
  uint64_t erased = 0;  // lines this rewrite erased
};

// The rewrite of one subject file's text: each pseudonym in `erased` becomes
// kErasedSubject (a version-2 line keeps its key set index; a version-1 file
// stays version 1). Returns no value when the file lists none of them.
Result<std::optional<SubjectsRewrite>> RewriteSubjectsText(std::string_view text,
                                                           const std::set<std::string>& erased);
// Every file of <folder>/subjects/ that lists a pseudonym of `erased`, with
// its rewrite (nothing written). A file that does not parse is left alone
// and named in `*skipped` (the blast radius reports such a file itself).
Result<std::vector<SubjectsRewrite>> PlanSubjectsRewrites(const std::string& folder,
                                                          FileSystem& file_system,
                                                          const std::set<std::string>& erased,
                                                          std::vector<std::string>* skipped);
// Replaces the file atomically (temporary file, fsync, rename, fsync of the
// folder): a crash leaves the old text or the new, never a mix.
Status ApplySubjectsRewrite(const std::string& folder, FileSystem& file_system,
                            const SubjectsRewrite& rewrite);

// What `minpanel audit verify` finds of the subject files the chain names
// (docs/formats/audit.md, "Verifying subject files"): each file a record
// names must be there with the newest SHA-256 the chain states for it — the
// `subjects.rewrite` record's that names it last, else its own record's. A
// file whose records retention cut (a pruned log) may be gone with them.
struct SubjectFilesReport {
  uint64_t files = 0;      // distinct files the records walked name
  uint64_t rewritten = 0;  // of them, named by a subjects.rewrite record
  uint64_t pruned = 0;     // rewritten, gone with their export record (audit retention)
  uint64_t bad = 0;        // missing, edited, replaced or at an earlier text
  std::string problem;     // the first bad one, by the seq of the record naming it
  uint64_t problem_seq = 0;
};
struct FolderReport {
  VerifyReport log;
  // Over the records the walk passed (all of them when log.ok).
  SubjectFilesReport subject_files;
};
// VerifyFolder, and the subject files of every record it walks checked
// against the chain: each file read once (in kReadChunkBytes pieces), in the
// order of its record; memory holds the files rewritten since and those
// found bad, not one entry per file.
Result<FolderReport> VerifyFolderAndSubjectFiles(const std::string& folder,
                                                 FileSystem& file_system,
                                                 const PublicKey* public_key = nullptr);

}  // namespace minpanel::audit
