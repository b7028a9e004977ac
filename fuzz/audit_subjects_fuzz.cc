// Fuzzes the audit log's subject files (docs/formats/audit.md, "Subject
// files"), which a blast radius reads from a data folder it must not trust
// beyond their hashes. The first input byte picks what the rest is:
//   mode 0: a subject file's text for ParseSubjectsFile;
//   mode 1: rows for SubjectKeySets, one per line: words starting with
//           "psn_" are subjects, the others keys ("~" before a key: a null).
// Invariants: parsing fails only with Corruption; a parsed version-2 file
// encodes to text that parses to the same encoding; what the collector
// finishes encodes to a file that parses, with every subject's keys among
// the keys of its rows.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "audit/audit.h"
#include "fuzz_check.h"

namespace minpanel::fuzz {
namespace {

void CheckParse(std::string_view text) {
  auto file = audit::ParseSubjectsFile(text);
  if (!file.ok()) {
    Check(file.status().code() == StatusCode::kCorruption, "a subject file error is Corruption");
    return;
  }
  if (file->version != audit::kSubjectsFileVersion) {
    return;
  }
  const std::string encoded = audit::EncodeSubjectsFile(*file);
  auto again = audit::ParseSubjectsFile(encoded);
  Check(again.ok(), "a re-encoded subject file parses");
  Check(audit::EncodeSubjectsFile(*again) == encoded, "re-encoding is stable");
}

void CheckCollector(std::string_view rows) {
  audit::SubjectKeySets sets;
  std::map<std::string, std::set<std::string>> truth;
  size_t start = 0;
  while (start < rows.size()) {
    size_t end = rows.find('\n', start);
    end = end == std::string_view::npos ? rows.size() : end;
    const std::string_view row = rows.substr(start, end - start);
    std::set<std::string> keys;
    std::set<std::string> subjects;
    size_t word_start = 0;
    while (word_start <= row.size()) {
      size_t word_end = row.find(' ', word_start);
      word_end = word_end == std::string_view::npos ? row.size() : word_end;
      const std::string_view word = row.substr(word_start, word_end - word_start);
      word_start = word_end + 1;
      // Keys and pseudonyms are printable ASCII here (a real export's keys
      // are UTF-8 from a JSON parser, its pseudonyms psn_ and hex).
      if (word.empty() || word.size() > 128 ||
          std::any_of(word.begin(), word.end(), [](char c) { return c < 0x21 || c > 0x7e; })) {
        continue;
      }
      if (word.starts_with("psn_") && word.size() > 4) {
        sets.AddSubject(word);
        subjects.emplace(word);
      } else if (word.starts_with("~")) {
        sets.AddKey(word.substr(1), false);
      } else {
        sets.AddKey(word, true);
        keys.emplace(word);
      }
    }
    sets.EndRow();
    for (const std::string& subject : subjects) {
      truth[subject].insert(keys.begin(), keys.end());
    }
    start = end + 1;
  }
  const audit::SubjectsFile file = sets.Finish();
  Check(file.subjects.size() == truth.size(), "every subject collected once");
  for (const audit::SubjectsFile::Subject& subject : file.subjects) {
    for (const uint32_t key : file.key_sets.at(subject.key_set)) {
      Check(truth[subject.pseudonym].contains(file.keys.at(key)), "a subject's key is its rows'");
    }
  }
  const std::string encoded = audit::EncodeSubjectsFile(file);
  auto parsed = audit::ParseSubjectsFile(encoded);
  Check(parsed.ok(), "a collected file parses");
  Check(audit::EncodeSubjectsFile(*parsed) == encoded, "a collected file round-trips");
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::fuzz;
  if (size == 0) {
    return 0;
  }
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    CheckParse(rest);
  } else {
    CheckCollector(rest);
  }
  return 0;
}
