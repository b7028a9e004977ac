// Subject files: the subjects a read returned and, per subject, the
// property keys that left with its rows (docs/formats/audit.md, "Subject
// files"); the collector a read fills row by row.
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <set>

#include "audit/audit.h"
#include "audit/log_format.h"
#include "core/text.h"

namespace minpanel::audit {
namespace {

constexpr size_t kPseudonymBytesMax = 128;

// Lines of a text, one at a time; the last line needs no newline.
class Lines {
 public:
  explicit Lines(std::string_view text) : text_(text) {}
  bool Next(std::string_view* line) {
    if (offset_ >= text_.size()) {
      return false;
    }
    size_t end = text_.find('\n', offset_);
    end = end == std::string_view::npos ? text_.size() : end;
    *line = text_.substr(offset_, end - offset_);
    offset_ = end + 1;
    ++number_;
    return true;
  }
  uint64_t number() const { return number_; }

 private:
  std::string_view text_;
  size_t offset_ = 0;
  uint64_t number_ = 0;
};

Status Bad(const Lines& lines, std::string_view what) {
  return Status::Corruption("subject file line " + std::to_string(lines.number()) + ": " +
                            std::string(what));
}

std::optional<uint64_t> Number(std::string_view text) {
  uint64_t value = 0;
  const auto parsed = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || parsed.ec != std::errc() || parsed.ptr != text.data() + text.size() ||
      (text.size() > 1 && text[0] == '0')) {
    return std::nullopt;
  }
  return value;
}

// "NAME COUNT", the count at most `max`.
Result<uint64_t> Count(Lines& lines, std::string_view name, uint64_t max) {
  std::string_view line;
  if (!lines.Next(&line)) {
    return Status::Corruption("subject file: ends before its '" + std::string(name) + "' line");
  }
  if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ' ') {
    return Bad(lines, "expected '" + std::string(name) + " COUNT'");
  }
  const auto count = Number(line.substr(name.size() + 1));
  if (!count.has_value()) {
    return Bad(lines, "the count of '" + std::string(name) + "' is not a number");
  }
  if (*count > max) {
    return Bad(lines, std::string(name) + " " + std::to_string(*count) + " is over the limit of " +
                          std::to_string(max));
  }
  return *count;
}

Result<std::string> KeyLine(const Lines& lines, std::string_view line) {
  if (line.size() < 2 || line.front() != '"' || line.back() != '"' ||
      line.size() > kSubjectsFileKeyBytesMax * 6 + 2) {
    return Bad(lines, "a key is not a JSON string");
  }
  simdjson::dom::parser parser;
  std::string_view key;
  if (parser.parse(line.data(), line.size()).get(key)) {
    return Bad(lines, "a key is not a JSON string");
  }
  if (key.size() > kSubjectsFileKeyBytesMax) {
    return Bad(lines, "a key is over kSubjectsFileKeyBytesMax");
  }
  return std::string(key);
}

Result<std::vector<uint32_t>> SetLine(const Lines& lines, std::string_view line, size_t keys) {
  std::vector<uint32_t> set;
  if (line == "-") {
    return set;
  }
  size_t start = 0;
  while (start <= line.size()) {
    size_t end = line.find(' ', start);
    end = end == std::string_view::npos ? line.size() : end;
    const auto index = Number(line.substr(start, end - start));
    if (!index.has_value() || *index >= keys) {
      return Bad(lines, "a key set names no key of the file");
    }
    if (!set.empty() && *index <= set.back()) {
      return Bad(lines, "a key set is not in ascending order");
    }
    set.push_back(static_cast<uint32_t>(*index));
    start = end + 1;
  }
  return set;
}

Result<SubjectsFile> ParseVersion1(std::string_view text) {
  SubjectsFile file;
  file.version = 1;
  Lines lines(text);
  std::string_view line;
  while (lines.Next(&line)) {
    if (!line.empty()) {
      file.subjects.push_back({std::string(line), 0});
    }
  }
  return file;
}

}  // namespace

std::string EncodeSubjectsFile(const SubjectsFile& file) {
  std::string out(kSubjectsFileHeader);
  out += "\nkeys " + std::to_string(file.keys.size()) + "\n";
  for (const std::string& key : file.keys) {
    AppendJsonString(key, &out);
    out.push_back('\n');
  }
  out += "sets " + std::to_string(file.key_sets.size()) + "\n";
  for (const std::vector<uint32_t>& set : file.key_sets) {
    if (set.empty()) {
      out += "-";
    }
    for (size_t index_idx = 0; index_idx < set.size(); ++index_idx) {
      out += index_idx == 0 ? "" : " ";
      out += std::to_string(set[index_idx]);
    }
    out.push_back('\n');
  }
  out += "subjects " + std::to_string(file.subjects.size()) + "\n";
  for (const SubjectsFile::Subject& subject : file.subjects) {
    out += subject.pseudonym;
    out.push_back(' ');
    out += std::to_string(subject.key_set);
    out.push_back('\n');
  }
  return out;
}

Result<SubjectsFile> ParseSubjectsFile(std::string_view text) {
  if (!text.starts_with(kSubjectsFileHeader)) {
    return ParseVersion1(text);
  }
  Lines lines(text);
  std::string_view line;
  lines.Next(&line);
  if (line != kSubjectsFileHeader) {
    return Bad(lines, "not the header '" + std::string(kSubjectsFileHeader) + "'");
  }
  SubjectsFile file;
  MP_ASSIGN_OR_RETURN(const uint64_t keys, Count(lines, "keys", kSubjectsFileKeysMax));
  for (uint64_t key_idx = 0; key_idx < keys; ++key_idx) {
    if (!lines.Next(&line)) {
      return Status::Corruption("subject file: ends inside its keys");
    }
    MP_ASSIGN_OR_RETURN(std::string key, KeyLine(lines, line));
    if (!file.keys.empty() && key <= file.keys.back()) {
      return Bad(lines, "the keys are not sorted and distinct");
    }
    file.keys.push_back(std::move(key));
  }
  // A count is not trusted beyond the lines that could follow it.
  const uint64_t lines_max = text.size() / 2 + 1;
  MP_ASSIGN_OR_RETURN(const uint64_t sets, Count(lines, "sets", lines_max));
  std::set<std::vector<uint32_t>> seen;
  for (uint64_t set_idx = 0; set_idx < sets; ++set_idx) {
    if (!lines.Next(&line)) {
      return Status::Corruption("subject file: ends inside its key sets");
    }
    MP_ASSIGN_OR_RETURN(std::vector<uint32_t> set, SetLine(lines, line, file.keys.size()));
    if (!seen.insert(set).second) {
      return Bad(lines, "a key set is listed twice");
    }
    file.key_sets.push_back(std::move(set));
  }
  MP_ASSIGN_OR_RETURN(const uint64_t subjects, Count(lines, "subjects", lines_max));
  std::string_view previous;
  for (uint64_t subject_idx = 0; subject_idx < subjects; ++subject_idx) {
    if (!lines.Next(&line)) {
      return Status::Corruption("subject file: ends inside its subjects");
    }
    const size_t space = line.rfind(' ');
    const std::string_view pseudonym = line.substr(0, space == std::string_view::npos ? 0 : space);
    if (pseudonym.empty() || pseudonym.size() > kPseudonymBytesMax ||
        std::any_of(pseudonym.begin(), pseudonym.end(),
                    [](char c) { return static_cast<unsigned char>(c) <= ' '; })) {
      return Bad(lines, "expected 'PSEUDONYM KEY_SET'");
    }
    const auto key_set = Number(line.substr(space + 1));
    if (!key_set.has_value() || *key_set >= file.key_sets.size()) {
      return Bad(lines, "a subject's key set is not one of the file's");
    }
    if (pseudonym != kErasedSubject) {
      if (!previous.empty() && pseudonym <= previous) {
        return Bad(lines, "the subjects are not sorted and distinct");
      }
      previous = pseudonym;
    }
    file.subjects.push_back({std::string(pseudonym), static_cast<uint32_t>(*key_set)});
  }
  if (lines.Next(&line)) {
    return Bad(lines, "more lines than its counts say");
  }
  if (!text.ends_with('\n')) {
    return Status::Corruption("subject file: its last line has no newline (cut?)");
  }
  return file;
}

void SubjectKeySets::AddKey(std::string_view key, bool has_value) {
  auto found = key_index_.find(key);
  if (found == key_index_.end()) {
    if (keys_.size() >= kSubjectsFileKeysMax || key.size() > kSubjectsFileKeyBytesMax) {
      return;
    }
    found = key_index_.emplace(std::string(key), static_cast<uint32_t>(keys_.size())).first;
    keys_.emplace_back(key);
  }
  if (has_value) {
    row_keys_.push_back(found->second);
  }
}

void SubjectKeySets::AddSubject(std::string_view pseudonym) { row_subjects_.emplace_back(pseudonym); }

uint32_t SubjectKeySets::Intern(const std::vector<uint32_t>& set) {
  const auto [found, inserted] = set_index_.try_emplace(set, static_cast<uint32_t>(sets_.size()));
  if (inserted) {
    sets_.push_back(&found->first);
  }
  return found->second;
}

uint32_t SubjectKeySets::Union(uint32_t left, uint32_t right) {
  const uint64_t pair = static_cast<uint64_t>(std::min(left, right)) << 32 | std::max(left, right);
  const auto cached = unions_.find(pair);
  if (cached != unions_.end()) {
    return cached->second;
  }
  std::vector<uint32_t> merged;
  std::set_union(sets_[left]->begin(), sets_[left]->end(), sets_[right]->begin(),
                 sets_[right]->end(), std::back_inserter(merged));
  const uint32_t set = Intern(merged);
  unions_.emplace(pair, set);
  return set;
}

void SubjectKeySets::EndRow() {
  if (row_subjects_.empty()) {
    row_keys_.clear();
    return;
  }
  std::sort(row_keys_.begin(), row_keys_.end());
  row_keys_.erase(std::unique(row_keys_.begin(), row_keys_.end()), row_keys_.end());
  if (last_row_set_ == UINT32_MAX || row_keys_ != last_row_keys_) {
    last_row_set_ = Intern(row_keys_);
    last_row_keys_ = row_keys_;
  }
  for (const std::string& subject : row_subjects_) {
    auto found = subjects_.find(std::string_view(subject));
    if (found == subjects_.end()) {
      subjects_.emplace(subject, last_row_set_);
    } else if (found->second != last_row_set_) {
      found->second = Union(found->second, last_row_set_);
    }
  }
  row_keys_.clear();
  row_subjects_.clear();
}

void SubjectKeySets::EraseSubjectsIf(
    const std::function<bool(std::string_view pseudonym)>& drop) {
  std::erase_if(subjects_, [&](const auto& subject) { return drop(subject.first); });
}

std::vector<std::string> SubjectKeySets::Keys() const {
  std::vector<std::string> keys = keys_;
  std::sort(keys.begin(), keys.end());
  return keys;
}

SubjectsFile SubjectKeySets::Finish() const {
  SubjectsFile file;
  // Keys sorted; each set's indices renumbered to match.
  std::vector<uint32_t> order(keys_.size());
  for (uint32_t key_idx = 0; key_idx < order.size(); ++key_idx) {
    order[key_idx] = key_idx;
  }
  std::sort(order.begin(), order.end(),
            [&](uint32_t left, uint32_t right) { return keys_[left] < keys_[right]; });
  std::vector<uint32_t> renumbered(keys_.size());
  for (uint32_t sorted_idx = 0; sorted_idx < order.size(); ++sorted_idx) {
    renumbered[order[sorted_idx]] = sorted_idx;
    file.keys.push_back(keys_[order[sorted_idx]]);
  }
  // Only the sets some subject has, in order of their contents.
  std::map<std::vector<uint32_t>, uint32_t> used;
  std::vector<std::vector<uint32_t>> renumbered_sets(sets_.size());
  std::vector<bool> wanted(sets_.size(), false);
  for (const auto& [pseudonym, set] : subjects_) {
    wanted[set] = true;
  }
  for (uint32_t set_idx = 0; set_idx < sets_.size(); ++set_idx) {
    if (!wanted[set_idx]) {
      continue;
    }
    for (const uint32_t key : *sets_[set_idx]) {
      renumbered_sets[set_idx].push_back(renumbered[key]);
    }
    std::sort(renumbered_sets[set_idx].begin(), renumbered_sets[set_idx].end());
    used.emplace(renumbered_sets[set_idx], 0);
  }
  for (auto& [set, index] : used) {
    index = static_cast<uint32_t>(file.key_sets.size());
    file.key_sets.push_back(set);
  }
  file.subjects.reserve(subjects_.size());
  for (const auto& [pseudonym, set] : subjects_) {
    file.subjects.push_back({pseudonym, used.at(renumbered_sets[set])});
  }
  std::sort(file.subjects.begin(), file.subjects.end(),
            [](const SubjectsFile::Subject& left, const SubjectsFile::Subject& right) {
              return left.pseudonym < right.pseudonym;
            });
  return file;
}

}  // namespace minpanel::audit
