// The per-segment scan shared by segmentation, funnels and retention.
//
// Per segment, once: event names become name codes (a segment without any of
// the query's events is skipped whole), the blocks to read come from the zone
// maps and the name bitmaps (BlockFilter; not by name when a selector is
// any_event or a funnel is strict), each filter condition on a
// dictionary-encoded column becomes a bitmap over the dictionary's codes, and
// a condition on a key the segment lacks becomes a constant. Per block: only
// the name, time and subject columns and the properties the query names are
// decoded (the times of only the rows the names and filters keep, unless a
// strict funnel keeps every row); each filter is evaluated over the block
// into a byte mask without allocating; the rows no selector keeps are
// dropped before they are copied.
#include <algorithm>
#include <map>
#include <array>
#include <bit>
#include <charconv>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "query/query_internal.h"

namespace minpanel::query::internal {

using store::PropertyColumn;
using store::PropertyTag;
using store::SegmentDictionary;
using store::StringEncoding;

uint32_t ValueNumbering::Find(std::string_view key) const {
  const auto it = ids_.find(key);
  return it == ids_.end() ? kMissing : it->second;
}

uint32_t ValueNumbering::Add(std::string_view key, Value value) {
  const auto id = static_cast<uint32_t>(values_.size());
  ids_.emplace(std::string(key), id);
  values_.push_back(std::move(value));
  return id;
}

uint32_t Groups::Combine(const uint32_t* value_ids) {
  if (numberings_.size() < 2 && value_ids[0] < single_ids_.size() &&
      single_ids_[value_ids[0]] != ValueNumbering::kMissing) {
    return single_ids_[value_ids[0]];
  }
  const uint64_t packed = numberings_.size() < 2
                              ? value_ids[0]
                              : (uint64_t{value_ids[0]} << 32) | uint64_t{value_ids[1]};
  const auto [it, inserted] = ids_.try_emplace(packed, static_cast<uint32_t>(combinations_.size()));
  if (inserted) {
    combinations_.emplace_back(value_ids[0], numberings_.size() < 2 ? 0 : value_ids[1]);
  }
  if (numberings_.size() < 2 && value_ids[0] != ValueNumbering::kMissing) {
    if (single_ids_.size() <= value_ids[0]) {
      single_ids_.resize(static_cast<size_t>(value_ids[0]) + 1, ValueNumbering::kMissing);
    }
    single_ids_[value_ids[0]] = it->second;
  }
  return it->second;
}

std::string GroupValueKey(const Value& value) {
  char buffer[40];
  std::to_chars_result written{};
  switch (value.type()) {
    case Value::Type::kNull:
      return "0";
    case Value::Type::kBool:
      return value.as_bool() ? "b1" : "b0";
    case Value::Type::kInt:
      written = std::to_chars(buffer, buffer + sizeof(buffer), value.as_int());
      return "n" + std::string(buffer, written.ptr);
    case Value::Type::kDouble: {
      const double number = value.as_double();
      if (number == std::trunc(number) && std::fabs(number) < 9.0e15) {
        written = std::to_chars(buffer, buffer + sizeof(buffer), static_cast<int64_t>(number));
      } else {
        written = std::to_chars(buffer, buffer + sizeof(buffer), number);
      }
      return "n" + std::string(buffer, written.ptr);
    }
    case Value::Type::kString:
      return "s" + value.as_string();
    case Value::Type::kList: {
      std::string key = "l";
      for (const std::string& item : value.as_list()) {
        key += item;
        key.push_back('\x1f');
      }
      return key;
    }
  }
  return "0";
}

uint32_t Groups::Intern(const GroupKey& key) {
  uint32_t value_ids[kBreakdownPropertiesMax] = {0, 0};
  for (size_t property_idx = 0; property_idx < numberings_.size(); ++property_idx) {
    const Value& value = key.values[property_idx];
    const std::string text = GroupValueKey(value);
    uint32_t id = numberings_[property_idx].Find(text);
    if (id == ValueNumbering::kMissing) {
      id = numberings_[property_idx].Add(text, value);
    }
    value_ids[property_idx] = id;
  }
  return Combine(value_ids);
}

GroupKey Groups::Key(uint32_t group) const {
  GroupKey key;
  if (numberings_.empty()) {
    return key;
  }
  key.values.push_back(numberings_[0].value(combinations_[group].first));
  if (numberings_.size() > 1) {
    key.values.push_back(numberings_[1].value(combinations_[group].second));
  }
  return key;
}

namespace {

struct NumberValue {
  bool is_int = false;
  int64_t int_value = 0;
  double double_value = 0;
};

// -1, 0 or 1; NaN compares unequal to everything (returns 2).
int CompareNumbers(bool row_is_int, int64_t row_int, double row_double, const NumberValue& value) {
  if (row_is_int && value.is_int) {
    return row_int < value.int_value ? -1 : (row_int > value.int_value ? 1 : 0);
  }
  const double left = row_is_int ? static_cast<double>(row_int) : row_double;
  const double right = value.is_int ? static_cast<double>(value.int_value) : value.double_value;
  if (left < right) {
    return -1;
  }
  if (left > right) {
    return 1;
  }
  return left == right ? 0 : 2;
}

bool CompareMatches(FilterOp op, int comparison) {
  switch (op) {
    case FilterOp::kLt:
      return comparison == -1;
    case FilterOp::kLe:
      return comparison == -1 || comparison == 0;
    case FilterOp::kGt:
      return comparison == 1;
    case FilterOp::kGe:
      return comparison == 1 || comparison == 0;
    default:
      return comparison == 0;
  }
}

// A key the query reads, as one segment holds it.
struct KeySlot {
  std::string key;
  const store::PropertyKeyInfo* info = nullptr;  // nullptr: absent in the segment
  std::shared_ptr<const SegmentDictionary> dictionary;
  PropertyColumn column;
  size_t loaded_block = SIZE_MAX;
  // A profile or group property: filled per block from the profile table.
  PropertySource source = PropertySource::kEvent;
  std::string name;
  std::string group_key;
  std::array<size_t, 2> id_keys{};  // kGroup: the slots of <key> and $groups.<key>
  // kSubject: the texts of the block's subjects ("psn_..."), which the
  // column's string views point into.
  std::vector<std::string> subject_texts;
};

// What a profile or group property's slot has instead of the segment's key
// info: never absent from a segment, read per row.
const store::PropertyKeyInfo kProfileKeyInfo{};

// One filter condition, compiled against one segment.
struct Condition {
  const Filter* filter = nullptr;
  size_t key_idx = 0;
  // eq/in/ne/not_in test the positive form and negate; is_not_set likewise.
  bool negate = false;
  FilterOp positive_op = FilterOp::kEq;
  std::vector<std::string_view> strings;  // sorted (eq/in)
  std::vector<NumberValue> numbers;
  bool match_null = false;
  bool match_true = false;
  bool match_false = false;
  std::vector<uint8_t> code_match;  // dictionary columns: per code
  bool use_codes = false;
  bool constant = false;  // the key is absent from the segment
};

struct Node {
  Filter::Kind kind = Filter::Kind::kAnd;
  size_t condition_idx = 0;
  std::vector<size_t> children;
};

struct SelectorSlot {
  bool any_event = false;  // every name matches; no block is skipped by name
  std::optional<uint32_t> name_code;
  std::vector<Node> nodes;  // nodes[0] is the root
  bool match_all = false;   // the filter is an empty "and"
};

bool StringMatches(const Condition& condition, std::string_view text) {
  switch (condition.positive_op) {
    case FilterOp::kEq:
      return std::binary_search(condition.strings.begin(), condition.strings.end(), text);
    case FilterOp::kContains:
      return text.find(condition.strings[0]) != std::string_view::npos;
    case FilterOp::kStartsWith:
      return text.substr(0, condition.strings[0].size()) == condition.strings[0];
    case FilterOp::kLt:
    case FilterOp::kLe:
    case FilterOp::kGt:
    case FilterOp::kGe: {
      if (condition.strings.empty()) {
        return false;
      }
      const int comparison = text.compare(condition.strings[0]);
      return CompareMatches(condition.positive_op, comparison < 0 ? -1 : (comparison > 0 ? 1 : 0));
    }
    default:
      return false;
  }
}

bool ListsMatch(FilterOp op) {
  return op == FilterOp::kEq || op == FilterOp::kContains || op == FilterOp::kStartsWith;
}

}  // namespace

struct SegmentScanner::State {
  const store::SegmentReader* segment = nullptr;
  const ScanPlan* plan = nullptr;
  Groups* groups = nullptr;
  QueryStats* stats = nullptr;
  std::vector<size_t> blocks;
  size_t block_pos = 0;
  std::vector<KeySlot> keys;
  std::vector<Condition> conditions;
  std::vector<SelectorSlot> selectors;
  // Per event name code: the bits of the selectors naming it.
  std::vector<uint32_t> bits_by_name;
  std::vector<size_t> breakdown_keys;
  std::vector<std::vector<uint32_t>> code_to_group_value;  // per breakdown property
  std::vector<uint32_t> code_to_group;  // one breakdown property: group per dictionary code
  std::optional<size_t> measure_key;
  // Per block scratch, reused.
  std::vector<uint32_t> names;
  std::vector<int64_t> times;
  store::SubjectRuns runs;
  std::vector<uint32_t> bits;
  std::vector<uint32_t> row_indexes;        // block row of each kept row
  std::vector<std::vector<uint8_t>> masks;  // one per filter depth
  std::string group_key;
  std::vector<MatchRow> folded;
  std::unordered_map<uint64_t, uint32_t> fold_index;  // (bits, group) -> folded row
  std::vector<Id128> group_ids;                       // one row's, reused

  // Set by Prepare: rows need nothing but their names and bucket (no
  // subjects, filters, breakdown, measure or subject range), so a block in
  // one bucket is counted by name code (CountBlockByName).
  bool count_by_name = false;
  std::vector<uint64_t> name_counts;
  // Set by Prepare: rows are folded by subject and group (a unique count)
  // and no selector has a filter, so a block in one bucket whose names all
  // give the same bits is folded run by run (FoldRunsOfBlock).
  bool fold_by_run = false;
  // Set by Prepare: the segment is folded, and rows not folded (fold_rows)
  // are tagged with their stored subjects; when the segment holds values of
  // several persons (PersonPlan::TagsRowsOf) no row is folded.
  bool tag_stored = false;
  bool no_fold = false;  // the segment holds values of several persons
  std::vector<store::StoredSubjectRun> stored_runs;

  // Sets MatchRow::stored of the kept rows (`row_indexes`: their block
  // rows, ascending) that lie in stored subject runs of block `block_idx`.
  Status TagStored(size_t block_idx, const std::vector<uint32_t>& kept_rows,
                   std::vector<MatchRow>* rows) {
    MP_RETURN_IF_ERROR(segment->ReadStoredSubjects(block_idx, &stored_runs));
    size_t kept_idx = 0;
    for (const store::StoredSubjectRun& run : stored_runs) {
      const uint32_t index = plan->persons->StoredIndex(run.subject);
      while (kept_idx < kept_rows.size() && kept_rows[kept_idx] < run.row_begin) {
        ++kept_idx;
      }
      for (; kept_idx < kept_rows.size() && kept_rows[kept_idx] < run.row_begin + run.row_count;
           ++kept_idx) {
        (*rows)[kept_idx].SetStored(index);
      }
    }
    return Status::Ok();
  }

  bool ConstantNameBits(size_t block_idx, uint32_t* bits) const;
  // One folded row per distinct selector bits of the block's names: from
  // `name_counts` (CountNames) when `names_counted`, else all `info.row_count`
  // rows have `name_bits`.
  void CountBlockByName(bool names_counted, uint32_t name_bits, const store::SegmentBlockInfo& info,
                        std::vector<MatchRow>* out) {
    out->clear();
    auto add = [&](uint32_t row_bits, uint64_t count) {
      if (row_bits == 0 || count == 0) {
        return;
      }
      for (MatchRow& row : *out) {
        if (row.bits == row_bits) {
          row.weight += static_cast<uint32_t>(count);
          return;
        }
      }
      MatchRow& row = out->emplace_back();
      row.time_ms = info.time_min_ms;
      row.bits = row_bits;
      row.tie = plan->tie_by_bit[static_cast<size_t>(__builtin_ctz(row_bits))];
      row.weight = static_cast<uint32_t>(count);
    };
    if (!names_counted) {
      add(name_bits, info.row_count);
      return;
    }
    for (size_t code = 0; code < name_counts.size() && code < bits_by_name.size(); ++code) {
      add(bits_by_name[code], name_counts[code]);
    }
  }
  static void FoldRows(std::vector<MatchRow>* rows, size_t begin, size_t end,
                       std::vector<MatchRow>* out);
  // Folds all of `rows` by (bits, group), whatever their subjects.
  void FoldBlock(const std::vector<MatchRow>& rows, std::vector<MatchRow>* out) {
    fold_index.clear();
    for (const MatchRow& row : rows) {
      const uint64_t key = (uint64_t{row.bits} << 32) | row.group;
      const auto [it, inserted] = fold_index.try_emplace(key, static_cast<uint32_t>(out->size()));
      if (inserted) {
        out->push_back(row);
      } else {
        (*out)[it->second].weight += row.weight;
      }
    }
  }

  size_t KeyIndex(const std::string& key) {
    for (size_t key_idx = 0; key_idx < keys.size(); ++key_idx) {
      if (keys[key_idx].key == key) {
        return key_idx;
      }
    }
    KeySlot slot;
    slot.key = key;
    // Strings of dictionary columns are read by code (filters, groups), their
    // text looked up per code where needed (StringAt): no view per row.
    slot.column.dictionary_string_views = false;
    const PropertyRef ref = ParsePropertyReference(key);
    slot.source = ref.source;
    if (ref.source == PropertySource::kEvent) {
      slot.info = segment->FindPropertyKey(key);
    } else {
      slot.info = &kProfileKeyInfo;
      slot.name = ref.name;
      slot.group_key = ref.group_key;
    }
    if (ref.source == PropertySource::kGroup) {
      slot.id_keys = {KeyIndex(slot.group_key), KeyIndex("$groups." + slot.group_key)};
    }
    keys.push_back(std::move(slot));
    return keys.size() - 1;
  }

  // The slots of the group id properties of `group_key` (unique groups).
  std::optional<std::array<size_t, 2>> unique_group_keys;
  store::SubjectRuns profile_runs;
  size_t profile_runs_block = SIZE_MAX;

  Status LoadProfileColumn(size_t key_idx, size_t block_idx) {
    if (plan->profiles == nullptr) {
      return Status::InvalidArgument(
          "profiles: the query names a profile or group property but no profile table was given");
    }
    const size_t rows = segment->block(block_idx).row_count;
    std::array<const PropertyColumn*, 2> id_columns = {nullptr, nullptr};
    if (keys[key_idx].source == PropertySource::kProfile && profile_runs_block != block_idx) {
      MP_RETURN_IF_ERROR(segment->ReadSubjects(block_idx, &profile_runs));
      profile_runs_block = block_idx;
    }
    if (keys[key_idx].source == PropertySource::kGroup) {
      MP_RETURN_IF_ERROR(LoadIdColumns(keys[key_idx].id_keys, block_idx, &id_columns));
    }
    KeySlot& slot = keys[key_idx];
    const PropertyRef ref{slot.source, slot.group_key, slot.name};
    FillProfileColumn(ref, *plan->profiles, profile_runs, id_columns.data(), rows, &slot.column);
    slot.loaded_block = block_idx;
    return Status::Ok();
  }

  // The subject column as a string property: each row's stored subject as
  // its pseudonym text (a filter or breakdown on "distinct_id").
  Status LoadSubjectColumn(KeySlot* slot, size_t block_idx) {
    const size_t rows = segment->block(block_idx).row_count;
    if (profile_runs_block != block_idx) {
      MP_RETURN_IF_ERROR(segment->ReadSubjects(block_idx, &profile_runs));
      profile_runs_block = block_idx;
    }
    PropertyColumn& column = slot->column;
    column.tags.assign(rows, PropertyTag::kAbsent);
    column.ints.clear();
    column.doubles.clear();
    column.strings.assign(rows, std::string_view());
    column.string_codes.clear();
    column.list_offsets.assign(rows + 1, 0);
    column.list_items.clear();
    column.list_item_codes.clear();
    slot->subject_texts.clear();
    slot->subject_texts.reserve(profile_runs.subjects.size());
    size_t row_idx = 0;
    for (size_t run_idx = 0; run_idx < profile_runs.subjects.size(); ++run_idx) {
      slot->subject_texts.push_back(FormatPseudonym(profile_runs.subjects[run_idx]));
      const std::string_view text = slot->subject_texts.back();
      const size_t end = row_idx + profile_runs.run_lengths[run_idx];
      for (; row_idx < end && row_idx < rows; ++row_idx) {
        column.tags[row_idx] = PropertyTag::kString;
        column.strings[row_idx] = text;
      }
    }
    slot->loaded_block = block_idx;
    return Status::Ok();
  }

  // Unique groups: each kept row's value is its group's number, or NaN.
  Status NumberGroups(size_t block_idx, const std::vector<uint32_t>& kept_rows,
                      std::vector<MatchRow>* rows) {
    std::array<const PropertyColumn*, 2> id_columns = {nullptr, nullptr};
    MP_RETURN_IF_ERROR(LoadIdColumns(*unique_group_keys, block_idx, &id_columns));
    std::vector<uint32_t> numbers;
    for (size_t kept_idx = 0; kept_idx < rows->size(); ++kept_idx) {
      GroupIdsAt(id_columns.data(), kept_rows[kept_idx], &group_ids);
      double& value = (*rows)[kept_idx].value;
      if (group_ids.size() <= 1) {
        value = group_ids.empty() ? NAN : static_cast<double>(groups->GroupNumber(group_ids[0]));
        continue;
      }
      numbers.clear();
      for (const Id128& group : group_ids) {
        numbers.push_back(groups->GroupNumber(group));
      }
      value = -1.0 - static_cast<double>(groups->GroupListNumber(numbers));
    }
    return Status::Ok();
  }

  Status LoadIdColumns(const std::array<size_t, 2>& id_keys, size_t block_idx,
                       std::array<const PropertyColumn*, 2>* id_columns) {
    for (size_t column_idx = 0; column_idx < 2; ++column_idx) {
      MP_RETURN_IF_ERROR(LoadColumn(id_keys[column_idx], block_idx));
      const KeySlot& id_slot = keys[id_keys[column_idx]];
      (*id_columns)[column_idx] = id_slot.info == nullptr ? nullptr : &id_slot.column;
    }
    return Status::Ok();
  }

  Status LoadDictionary(KeySlot* slot) {
    if (slot->info == nullptr || slot->info->storage != store::PropertyStorage::kColumn ||
        slot->info->encoding != StringEncoding::kDictionary || slot->dictionary != nullptr) {
      return Status::Ok();
    }
    MP_ASSIGN_OR_RETURN(slot->dictionary, segment->ReadDictionary(slot->key));
    return Status::Ok();
  }

  Status LoadColumn(size_t key_idx, size_t block_idx) {
    KeySlot& slot = keys[key_idx];
    if (slot.info == nullptr || slot.loaded_block == block_idx) {
      return Status::Ok();
    }
    if (slot.source == PropertySource::kSubject) {
      return LoadSubjectColumn(&slot, block_idx);
    }
    if (slot.source != PropertySource::kEvent) {
      return LoadProfileColumn(key_idx, block_idx);
    }
    MP_RETURN_IF_ERROR(segment->ReadProperty(block_idx, slot.key, &slot.column));
    slot.loaded_block = block_idx;
    return Status::Ok();
  }

  Status CompileCondition(const Filter& filter, Condition* condition);
  Result<size_t> CompileNode(const Filter& filter, SelectorSlot* selector);
  Status Prepare();
  Status EvaluateCondition(const Condition& condition, size_t block_idx, size_t rows,
                           uint8_t* mask);
  Status EvaluateNode(const SelectorSlot& selector, size_t node_idx, size_t depth, size_t block_idx,
                      size_t rows);
  Status ComputeGroups(size_t block_idx, std::vector<MatchRow>* rows,
                       const std::vector<uint32_t>& row_indexes);
  Status LoadGroupColumns(size_t block_idx, const KeySlot** single);
  uint32_t GroupOfRow(const KeySlot* single, size_t row_idx);
  Status CheckGroupCount() const;
  Status FoldRunsOfBlock(size_t block_idx, const store::SegmentBlockInfo& info, uint32_t name_bits,
                         size_t row_begin, size_t row_end, std::vector<MatchRow>* out,
                         std::vector<Id128>* run_subjects, std::vector<uint32_t>* run_ends);
  uint32_t GroupValue(size_t property_idx, const KeySlot& slot, size_t row_idx);
};

Status SegmentScanner::State::CompileCondition(const Filter& filter, Condition* condition) {
  condition->filter = &filter;
  condition->key_idx = KeyIndex(filter.property);
  switch (filter.op) {
    case FilterOp::kNe:
      condition->negate = true;
      condition->positive_op = FilterOp::kEq;
      break;
    case FilterOp::kIn:
      condition->positive_op = FilterOp::kEq;
      break;
    case FilterOp::kNotIn:
      condition->negate = true;
      condition->positive_op = FilterOp::kEq;
      break;
    case FilterOp::kIsNotSet:
      condition->negate = true;
      condition->positive_op = FilterOp::kIsSet;
      break;
    default:
      condition->positive_op = filter.op;
      break;
  }
  for (const Value& value : filter.values) {
    switch (value.type()) {
      case Value::Type::kNull:
        condition->match_null = true;
        break;
      case Value::Type::kBool:
        (value.as_bool() ? condition->match_true : condition->match_false) = true;
        break;
      case Value::Type::kInt:
        condition->numbers.push_back({true, value.as_int(), 0});
        break;
      case Value::Type::kDouble:
        condition->numbers.push_back({false, 0, value.as_double()});
        break;
      case Value::Type::kString:
        condition->strings.push_back(value.as_string());
        break;
      case Value::Type::kList:
        break;
    }
  }
  std::sort(condition->strings.begin(), condition->strings.end());
  KeySlot& slot = keys[condition->key_idx];
  if (slot.info == nullptr) {
    condition->constant = true;
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(LoadDictionary(&slot));
  if (slot.dictionary != nullptr && !condition->strings.empty()) {
    condition->use_codes = true;
    const SegmentDictionary& dictionary = *slot.dictionary;
    condition->code_match.assign(dictionary.entries.size(), 0);
    if (condition->positive_op == FilterOp::kEq) {
      for (const std::string_view text : condition->strings) {
        if (const auto code = dictionary.Find(text)) {
          condition->code_match[*code] = 1;
        }
      }
    } else {
      for (size_t code = 0; code < dictionary.entries.size(); ++code) {
        condition->code_match[code] = StringMatches(*condition, dictionary.entries[code]) ? 1 : 0;
      }
    }
  }
  return Status::Ok();
}

Result<size_t> SegmentScanner::State::CompileNode(const Filter& filter, SelectorSlot* selector) {
  const size_t node_idx = selector->nodes.size();
  selector->nodes.emplace_back();
  selector->nodes[node_idx].kind = filter.kind;
  if (filter.kind == Filter::Kind::kCondition) {
    Condition condition;
    MP_RETURN_IF_ERROR(CompileCondition(filter, &condition));
    conditions.push_back(std::move(condition));
    selector->nodes[node_idx].condition_idx = conditions.size() - 1;
    return node_idx;
  }
  // Depth is bounded by kFilterDepthMax (checked by ParseQuery).
  for (const Filter& child : filter.children) {
    MP_ASSIGN_OR_RETURN(size_t child_idx, CompileNode(child, selector));
    selector->nodes[node_idx].children.push_back(child_idx);
  }
  return node_idx;
}

Status SegmentScanner::State::Prepare() {
  store::BlockFilter block_filter;
  block_filter.time_min_ms = plan->time_min_ms;
  block_filter.time_max_ms = plan->time_max_ms;
  block_filter.subject_min = plan->subject_min;
  block_filter.subject_max = plan->subject_max;
  bool any_name = false;
  bool every_name = plan->keep_unmatched;
  selectors.resize(plan->selectors.size());
  for (size_t selector_idx = 0; selector_idx < plan->selectors.size(); ++selector_idx) {
    const EventSelector& selector = *plan->selectors[selector_idx];
    SelectorSlot& slot = selectors[selector_idx];
    if (selector.any_event) {
      slot.any_event = true;
      every_name = true;
    } else {
      slot.name_code = segment->FindEventName(selector.event);
      if (!slot.name_code) {
        continue;
      }
      block_filter.name_codes.push_back(*slot.name_code);
    }
    any_name = true;
    slot.match_all = selector.filter.kind == Filter::Kind::kAnd && selector.filter.children.empty();
    if (!slot.match_all) {
      MP_ASSIGN_OR_RETURN(size_t root, CompileNode(selector.filter, &slot));
      (void)root;
    }
  }
  if (!any_name && !plan->keep_unmatched) {
    return Status::Ok();
  }
  bits_by_name.assign(segment->event_names().size(), 0);
  for (size_t selector_idx = 0; selector_idx < selectors.size(); ++selector_idx) {
    const uint32_t bit = uint32_t{1} << selector_idx;
    if (selectors[selector_idx].any_event) {
      for (uint32_t& name_bits : bits_by_name) {
        name_bits |= bit;
      }
    } else if (selectors[selector_idx].name_code) {
      bits_by_name[*selectors[selector_idx].name_code] |= bit;
    }
  }
  // A strict funnel needs every event, and an any-event selector matches
  // every name: no block may be skipped by its names then.
  if (every_name) {
    block_filter.name_codes.clear();
  }
  std::sort(block_filter.name_codes.begin(), block_filter.name_codes.end());
  block_filter.name_codes.erase(
      std::unique(block_filter.name_codes.begin(), block_filter.name_codes.end()),
      block_filter.name_codes.end());
  blocks = segment->MatchingBlocks(block_filter);
  for (const std::string& property : plan->breakdown) {
    breakdown_keys.push_back(KeyIndex(property));
    MP_RETURN_IF_ERROR(LoadDictionary(&keys[breakdown_keys.back()]));
    const auto& dictionary = keys[breakdown_keys.back()].dictionary;
    code_to_group_value.emplace_back(dictionary ? dictionary->entries.size() : 0,
                                     ValueNumbering::kMissing);
  }
  if (!plan->measure_property.empty()) {
    measure_key = KeyIndex(plan->measure_property);
  }
  if (!plan->unique_group_key.empty()) {
    unique_group_keys = {KeyIndex(plan->unique_group_key),
                         KeyIndex("$groups." + plan->unique_group_key)};
  }
  masks.resize(kFilterDepthMax + 3);
  count_by_name = plan->buckets != nullptr && plan->fold_rows && !plan->need_subjects &&
                  !plan->keep_unmatched && breakdown_keys.empty() && !measure_key &&
                  !unique_group_keys && !plan->subject_min && !plan->subject_max &&
                  std::all_of(selectors.begin(), selectors.end(), [](const SelectorSlot& slot) {
                    // A selector naming an event the segment lacks matches nothing.
                    return slot.match_all || (!slot.any_event && !slot.name_code);
                  });
  tag_stored = plan->need_subjects && plan->persons != nullptr &&
               segment->summary().stored_subject_runs > 0;
  no_fold = tag_stored && plan->persons->TagsRowsOf(segment);
  fold_by_run = !no_fold && plan->buckets != nullptr && plan->fold_rows && plan->need_subjects &&
                !plan->keep_unmatched && !measure_key && !unique_group_keys &&
                std::all_of(selectors.begin(), selectors.end(),
                            [](const SelectorSlot& slot) { return slot.match_all; });
  return Status::Ok();
}

Status SegmentScanner::State::EvaluateCondition(const Condition& condition, size_t block_idx,
                                                size_t rows, uint8_t* mask) {
  const uint8_t absent_result = condition.negate ? 1 : 0;
  if (condition.constant) {
    std::memset(mask, absent_result, rows);
    return Status::Ok();
  }
  MP_RETURN_IF_ERROR(LoadColumn(condition.key_idx, block_idx));
  const PropertyColumn& column = keys[condition.key_idx].column;
  const FilterOp op = condition.positive_op;
  const bool comparison =
      op == FilterOp::kLt || op == FilterOp::kLe || op == FilterOp::kGt || op == FilterOp::kGe;
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    bool match = false;
    switch (column.tags[row_idx]) {
      case PropertyTag::kAbsent:
        break;
      case PropertyTag::kNull:
        match = op == FilterOp::kEq && condition.match_null;
        break;
      case PropertyTag::kFalse:
        match = op == FilterOp::kIsSet || (op == FilterOp::kEq && condition.match_false);
        break;
      case PropertyTag::kTrue:
        match = op == FilterOp::kIsSet || (op == FilterOp::kEq && condition.match_true);
        break;
      case PropertyTag::kInt:
      case PropertyTag::kDouble: {
        if (op == FilterOp::kIsSet) {
          match = true;
          break;
        }
        if (op != FilterOp::kEq && !comparison) {
          break;
        }
        const bool is_int = column.tags[row_idx] == PropertyTag::kInt;
        const int64_t row_int = is_int ? column.ints[row_idx] : 0;
        const double row_double = is_int ? 0 : column.doubles[row_idx];
        for (const NumberValue& number : condition.numbers) {
          if (CompareMatches(op, CompareNumbers(is_int, row_int, row_double, number))) {
            match = true;
            break;
          }
        }
        break;
      }
      case PropertyTag::kString:
        if (op == FilterOp::kIsSet) {
          match = true;
        } else if (condition.use_codes) {
          match = condition.code_match[column.string_codes[row_idx]] != 0;
        } else if (!condition.strings.empty()) {
          match = StringMatches(condition, column.StringAt(row_idx));
        }
        break;
      case PropertyTag::kList: {
        if (op == FilterOp::kIsSet) {
          match = true;
          break;
        }
        if (!ListsMatch(op) || condition.strings.empty()) {
          break;
        }
        const uint32_t begin = column.list_offsets[row_idx];
        const uint32_t end = column.list_offsets[row_idx + 1];
        for (uint32_t item_idx = begin; item_idx < end && !match; ++item_idx) {
          match = condition.use_codes ? condition.code_match[column.list_item_codes[item_idx]] != 0
                                      : StringMatches(condition, column.list_items[item_idx]);
        }
        break;
      }
    }
    mask[row_idx] = static_cast<uint8_t>(match != condition.negate);
  }
  return Status::Ok();
}

// Writes the node's mask into masks[depth]. Depth is bounded by the filter
// limits, so the recursion is too.
Status SegmentScanner::State::EvaluateNode(const SelectorSlot& selector, size_t node_idx,
                                           size_t depth, size_t block_idx, size_t rows) {
  const Node& node = selector.nodes[node_idx];
  std::vector<uint8_t>& out = masks[depth];
  out.resize(rows);
  if (node.kind == Filter::Kind::kCondition) {
    return EvaluateCondition(conditions[node.condition_idx], block_idx, rows, out.data());
  }
  const bool is_and = node.kind == Filter::Kind::kAnd;
  std::memset(out.data(), is_and ? 1 : 0, rows);
  for (const size_t child_idx : node.children) {
    MP_RETURN_IF_ERROR(EvaluateNode(selector, child_idx, depth + 1, block_idx, rows));
    const uint8_t* child = masks[depth + 1].data();
    uint8_t* target = masks[depth].data();
    if (is_and) {
      for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
        target[row_idx] &= child[row_idx];
      }
    } else {
      for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
        target[row_idx] |= child[row_idx];
      }
    }
  }
  return Status::Ok();
}

uint32_t SegmentScanner::State::GroupValue(size_t property_idx, const KeySlot& slot,
                                           size_t row_idx) {
  ValueNumbering& numbering = groups->numbering(property_idx);
  const PropertyTag tag = slot.info == nullptr ? PropertyTag::kAbsent : slot.column.tags[row_idx];
  std::string& key = group_key;
  key.clear();
  switch (tag) {
    case PropertyTag::kAbsent:
    case PropertyTag::kNull:
      key = "0";
      break;
    case PropertyTag::kFalse:
      key = "b0";
      break;
    case PropertyTag::kTrue:
      key = "b1";
      break;
    case PropertyTag::kInt:
    case PropertyTag::kDouble: {
      char buffer[40];
      buffer[0] = 'n';
      const bool is_int = tag == PropertyTag::kInt;
      const double number = is_int ? 0 : slot.column.doubles[row_idx];
      std::to_chars_result written{};
      if (is_int) {
        written = std::to_chars(buffer + 1, buffer + sizeof(buffer), slot.column.ints[row_idx]);
      } else if (number == std::trunc(number) && std::fabs(number) < 9.0e15) {
        written = std::to_chars(buffer + 1, buffer + sizeof(buffer), static_cast<int64_t>(number));
      } else {
        written = std::to_chars(buffer + 1, buffer + sizeof(buffer), number);
      }
      key.assign(buffer, written.ptr);
      break;
    }
    case PropertyTag::kString: {
      std::vector<uint32_t>& cache = code_to_group_value[property_idx];
      if (slot.dictionary != nullptr) {
        const uint32_t code = slot.column.string_codes[row_idx];
        if (cache[code] != ValueNumbering::kMissing) {
          return cache[code];
        }
      }
      key.push_back('s');
      key.append(slot.column.StringAt(row_idx));
      uint32_t id = numbering.Find(key);
      if (id == ValueNumbering::kMissing) {
        id = numbering.Add(key, Value::String(std::string(slot.column.StringAt(row_idx))));
      }
      if (slot.dictionary != nullptr) {
        cache[slot.column.string_codes[row_idx]] = id;
      }
      return id;
    }
    case PropertyTag::kList: {
      key.push_back('l');
      const uint32_t begin = slot.column.list_offsets[row_idx];
      const uint32_t end = slot.column.list_offsets[row_idx + 1];
      for (uint32_t item_idx = begin; item_idx < end; ++item_idx) {
        key.append(slot.column.list_items[item_idx]);
        key.push_back('\x1f');
      }
      break;
    }
  }
  uint32_t id = numbering.Find(key);
  if (id == ValueNumbering::kMissing) {
    id = numbering.Add(key,
                       tag == PropertyTag::kAbsent ? Value::Null() : slot.column.ValueAt(row_idx));
  }
  return id;
}

Status SegmentScanner::State::LoadGroupColumns(size_t block_idx, const KeySlot** single) {
  for (const size_t key_idx : breakdown_keys) {
    MP_RETURN_IF_ERROR(LoadColumn(key_idx, block_idx));
  }
  // One property with a dictionary: a string row's group by its code, from
  // an array filled as codes are first met.
  *single = breakdown_keys.size() == 1 && keys[breakdown_keys[0]].info != nullptr &&
                    keys[breakdown_keys[0]].dictionary != nullptr
                ? &keys[breakdown_keys[0]]
                : nullptr;
  if (*single != nullptr && code_to_group.size() != (*single)->dictionary->entries.size()) {
    code_to_group.assign((*single)->dictionary->entries.size(), ValueNumbering::kMissing);
  }
  return Status::Ok();
}

uint32_t SegmentScanner::State::GroupOfRow(const KeySlot* single, size_t row_idx) {
  uint32_t value_ids[kBreakdownPropertiesMax] = {0, 0};
  if (single != nullptr && single->column.tags[row_idx] == PropertyTag::kString) {
    uint32_t& group = code_to_group[single->column.string_codes[row_idx]];
    if (group == ValueNumbering::kMissing) {
      value_ids[0] = GroupValue(0, *single, row_idx);
      group = groups->Combine(value_ids);
    }
    return group;
  }
  for (size_t property_idx = 0; property_idx < breakdown_keys.size(); ++property_idx) {
    value_ids[property_idx] = GroupValue(property_idx, keys[breakdown_keys[property_idx]], row_idx);
  }
  return groups->Combine(value_ids);
}

Status SegmentScanner::State::CheckGroupCount() const {
  if (groups->size() > kBreakdownGroupsTrackedMax) {
    return Status::ResourceExhausted("breakdown: more than " +
                                     std::to_string(kBreakdownGroupsTrackedMax) +
                                     " distinct values (kBreakdownGroupsTrackedMax)");
  }
  return Status::Ok();
}

Status SegmentScanner::State::ComputeGroups(size_t block_idx, std::vector<MatchRow>* rows,
                                            const std::vector<uint32_t>& row_indexes) {
  if (breakdown_keys.empty()) {
    return Status::Ok();
  }
  const KeySlot* single = nullptr;
  MP_RETURN_IF_ERROR(LoadGroupColumns(block_idx, &single));
  for (size_t kept_idx = 0; kept_idx < rows->size(); ++kept_idx) {
    MatchRow& row = (*rows)[kept_idx];
    if ((row.bits & plan->group_bits) != 0) {
      row.group = GroupOfRow(single, row_indexes[kept_idx]);
    }
  }
  return CheckGroupCount();
}

namespace {

// Bit i of the result is set when row i of the eight from `tags` and
// `codes` holds `code` as a string.
uint32_t SameCodeMask(const PropertyTag* tags, const uint32_t* codes, uint32_t code) {
#if defined(__SSE2__)
  const __m128i wanted = _mm_set1_epi32(static_cast<int>(code));
  const __m128i low =
      _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)), wanted);
  const __m128i high =
      _mm_cmpeq_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 4)), wanted);
  const __m128i codes_same = _mm_packs_epi16(_mm_packs_epi32(low, high), _mm_setzero_si128());
  const __m128i tags_string =
      _mm_cmpeq_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tags)),
                     _mm_set1_epi8(static_cast<char>(PropertyTag::kString)));
  return static_cast<uint32_t>(_mm_movemask_epi8(_mm_and_si128(codes_same, tags_string))) & 0xffu;
#else
  uint32_t same = 0;
  for (size_t offset = 0; offset < 8; ++offset) {
    same |= static_cast<uint32_t>((codes[offset] == code) & (tags[offset] == PropertyTag::kString))
            << offset;
  }
  return same;
#endif
}

// The end of the stretch of string rows from `row_idx` (a string row) that
// hold its code, at most `last`; the column has `rows` rows. Compares eight
// rows at a time and finds the first that differs in a bit mask, so a
// stretch that ends within its first eight rows — nearly every subject run
// of a per-user property such as country — takes no branch per row: the
// row-at-a-time loop before it mispredicted its exit at about every other
// run's end (half of FoldRunsOfBlock's time; docs/benchmarks.md, "The unique
// count by country: branch-light folds and one-byte codes").
size_t SameCodeEnd(const PropertyTag* tags, const uint32_t* codes, size_t row_idx, size_t last,
                   size_t rows) {
  constexpr size_t kChunkRows = 8;
  const uint32_t code = codes[row_idx];
  size_t chunk = row_idx + 1;
  while (chunk + kChunkRows <= rows) {
    // Rows past `last` may be read (they lie in the column); the result is
    // clamped to it.
    const uint32_t same = SameCodeMask(tags + chunk, codes + chunk, code);
    const auto differ = static_cast<size_t>(std::countr_one(same));  // kChunkRows when all same
    if (differ < kChunkRows || chunk + kChunkRows >= last) {
      return std::min(chunk + differ, last);
    }
    chunk += kChunkRows;
  }
  while (chunk < last && tags[chunk] == PropertyTag::kString && codes[chunk] == code) {
    ++chunk;
  }
  return std::min(chunk, last);
}

}  // namespace

// The rows [row_begin, row_end) of a block in one bucket whose rows all
// have `name_bits` and pass (no filters), folded per subject run as
// NextBlock's general path folds them (FoldRows), without a MatchRow per
// row first: a unique count by day over every event (docs/benchmarks.md,
// "Queries") reads 100M rows this way.
Status SegmentScanner::State::FoldRunsOfBlock(size_t block_idx, const store::SegmentBlockInfo& info,
                                              uint32_t name_bits, size_t row_begin, size_t row_end,
                                              std::vector<MatchRow>* out,
                                              std::vector<Id128>* run_subjects,
                                              std::vector<uint32_t>* run_ends) {
  constexpr size_t kFoldLookback = 8;  // as FoldRows
  out->clear();
  run_subjects->clear();
  run_ends->clear();
  const KeySlot* single = nullptr;
  const bool grouped = !breakdown_keys.empty() && (name_bits & plan->group_bits) != 0;
  if (grouped) {
    MP_RETURN_IF_ERROR(LoadGroupColumns(block_idx, &single));
  }
  const PropertyTag* tags = single != nullptr ? single->column.tags.data() : nullptr;
  const uint32_t* codes = single != nullptr && !single->column.string_codes.empty()
                              ? single->column.string_codes.data()
                              : nullptr;
  const size_t column_rows =
      codes != nullptr ? std::min(single->column.string_codes.size(), single->column.tags.size())
                       : 0;
  MatchRow row;
  row.time_ms = info.time_min_ms;
  row.bits = name_bits;
  row.tie = plan->tie_by_bit[static_cast<size_t>(__builtin_ctz(name_bits))];
  size_t run_begin = 0;
  for (size_t run_idx = 0; run_idx < runs.subjects.size() && run_begin < row_end; ++run_idx) {
    const size_t run_end = run_begin + runs.run_lengths[run_idx];
    const size_t first = std::max(run_begin, row_begin);
    const size_t last = std::min(run_end, row_end);
    run_begin = run_end;
    if (first >= last) {
      continue;
    }
    run_subjects->push_back(runs.subjects[run_idx]);
    const size_t out_begin = out->size();
    if (!grouped) {
      row.group = 0;
      row.weight = static_cast<uint32_t>(last - first);
      out->push_back(row);
      run_ends->push_back(static_cast<uint32_t>(out->size()));
      continue;
    }
    // Rows with the string code of the row before them fold where that one
    // does: the stretch of one code is measured first and added at once (a
    // subject's value rarely changes within its run, so this loop only
    // compares codes).
    size_t row_idx = first;
    while (row_idx < last) {
      const size_t same_end = codes != nullptr && tags[row_idx] == PropertyTag::kString
                                  ? SameCodeEnd(tags, codes, row_idx, last, column_rows)
                                  : row_idx + 1;
      const auto weight = static_cast<uint32_t>(same_end - row_idx);
      // A code met before has its group cached: looked up here, without the
      // call (this runs once per subject run of every block).
      uint32_t group = codes != nullptr && tags[row_idx] == PropertyTag::kString
                           ? code_to_group[codes[row_idx]]
                           : ValueNumbering::kMissing;
      if (group == ValueNumbering::kMissing) {
        group = GroupOfRow(single, row_idx);
      }
      row_idx = same_end;
      bool folded = false;
      const size_t look_from = std::max(
          out_begin, out->size() > kFoldLookback ? out->size() - kFoldLookback : size_t{0});
      for (size_t out_idx = out->size(); out_idx > look_from; --out_idx) {
        MatchRow& into = (*out)[out_idx - 1];
        if (into.group == group) {
          into.weight += weight;
          folded = true;
          break;
        }
      }
      if (!folded) {
        row.group = group;
        row.weight = weight;
        out->push_back(row);
      }
    }
    run_ends->push_back(static_cast<uint32_t>(out->size()));
  }
  return grouped ? CheckGroupCount() : Status::Ok();
}

SegmentScanner::SegmentScanner(const store::SegmentReader& segment, const ScanPlan& plan,
                               Groups* groups, QueryStats* stats)
    : state_(std::make_unique<State>()) {
  state_->segment = &segment;
  state_->plan = &plan;
  state_->groups = groups;
  state_->stats = stats;
  stats->segments += 1;
  stats->blocks_total += segment.block_count();
  status_ = state_->Prepare();
}

SegmentScanner::~SegmentScanner() = default;

// Whether every row of the block gets the same selector bits from its name
// (before filters), so that the name column need not be read: the block
// holds one name, or every name it holds maps to the same bits (any_event).
bool SegmentScanner::State::ConstantNameBits(size_t block_idx, uint32_t* bits) const {
  bool seen = false;
  for (uint32_t code = 0; code < bits_by_name.size(); ++code) {
    if (!segment->BlockHoldsName(block_idx, code)) {
      continue;
    }
    if (seen && bits_by_name[code] != *bits) {
      return false;
    }
    *bits = bits_by_name[code];
    seen = true;
  }
  return seen;
}

// Folds kept rows [begin, end) that agree on bits and group into the first
// of them (weights added); they share a bucket and, within a run, a subject.
// Looks back over at most kFoldLookback distinct rows, so a run of many
// groups costs linear time (it is then folded less, never wrongly).
void SegmentScanner::State::FoldRows(std::vector<MatchRow>* rows, size_t begin, size_t end,
                                     std::vector<MatchRow>* out) {
  constexpr size_t kFoldLookback = 8;
  const size_t out_begin = out->size();
  for (size_t kept_idx = begin; kept_idx < end; ++kept_idx) {
    const MatchRow& row = (*rows)[kept_idx];
    bool folded = false;
    const size_t look_from =
        std::max(out_begin, out->size() > kFoldLookback ? out->size() - kFoldLookback : size_t{0});
    for (size_t out_idx = out->size(); out_idx > look_from; --out_idx) {
      MatchRow& into = (*out)[out_idx - 1];
      if (into.bits == row.bits && into.group == row.group) {
        into.weight += row.weight;
        folded = true;
        break;
      }
    }
    if (!folded) {
      out->push_back(row);
    }
  }
}

namespace {

// The per-block scratch of the scanners on one thread: a query's thread
// reads the blocks of every segment in turn (the merge by subject holds a
// scanner per segment, 121 at 100M events), and each block's columns, once
// its kept rows are out, are needed no more. Lent to the scanner whose
// NextBlock runs and taken back after, so that one set of buffers, warm in
// the cache and already faulted in, serves them all — instead of one set
// per scanner, each written afresh (about 100 MB of pages a unique count at
// 100M events faulted in per query: docs/benchmarks.md, "One scratch per
// thread").
struct BlockScratch {
  std::vector<PropertyColumn> columns;  // by the scanner's key slot
  std::vector<uint32_t> names;
  std::vector<int64_t> times;
  store::SubjectRuns runs;
  std::vector<uint32_t> bits;
  std::vector<uint32_t> row_indexes;
};

BlockScratch& ThreadBlockScratch() {
  thread_local BlockScratch scratch;
  return scratch;
}

}  // namespace

// Swaps a scanner's per-block scratch with this thread's for one NextBlock
// call; after it, no key slot counts its block as loaded (the column went
// back to the thread).
class SegmentScanner::LentScratch {
 public:
  explicit LentScratch(State* state) : state_(state), scratch_(ThreadBlockScratch()) {
    if (scratch_.columns.size() < state_->keys.size()) {
      scratch_.columns.resize(state_->keys.size());
    }
    for (size_t key_idx = 0; key_idx < state_->keys.size(); ++key_idx) {
      PropertyColumn& own = state_->keys[key_idx].column;
      scratch_.columns[key_idx].dictionary_string_views = own.dictionary_string_views;
      std::swap(own, scratch_.columns[key_idx]);
    }
    Swap();
  }
  ~LentScratch() {
    for (size_t key_idx = 0; key_idx < state_->keys.size(); ++key_idx) {
      std::swap(state_->keys[key_idx].column, scratch_.columns[key_idx]);
      state_->keys[key_idx].loaded_block = SIZE_MAX;
    }
    Swap();
  }
  LentScratch(const LentScratch&) = delete;
  LentScratch& operator=(const LentScratch&) = delete;

 private:
  void Swap() {
    std::swap(state_->names, scratch_.names);
    std::swap(state_->times, scratch_.times);
    std::swap(state_->runs, scratch_.runs);
    std::swap(state_->bits, scratch_.bits);
    std::swap(state_->row_indexes, scratch_.row_indexes);
  }
  State* state_;
  BlockScratch& scratch_;
};

bool SegmentScanner::NextBlock() {
  State& state = *state_;
  const ScanPlan& plan = *state.plan;
  const LentScratch lent(&state);
  std::vector<uint32_t>& row_indexes = state.row_indexes;
  while (status_.ok() && state.block_pos < state.blocks.size()) {
    const size_t block_idx = state.blocks[state.block_pos++];
    const store::SegmentBlockInfo& info = state.segment->block(block_idx);
    const size_t rows = info.row_count;
    state.stats->blocks_read += 1;
    state.stats->rows_read += rows;
    // A block inside the range whose first and last times share a bucket
    // has all its times in it: the time column is not needed.
    const bool one_bucket =
        plan.buckets != nullptr && info.time_min_ms >= plan.time_min_ms &&
        info.time_max_ms <= plan.time_max_ms &&
        plan.buckets->Index(info.time_min_ms) == plan.buckets->Index(info.time_max_ms);
    uint32_t name_bits = 0;
    const bool names_needed = !state.ConstantNameBits(block_idx, &name_bits);
    if (one_bucket && state.count_by_name) {
      if (names_needed) {
        status_ = state.segment->CountNames(block_idx, &state.name_counts);
        if (!status_.ok()) {
          return false;
        }
      }
      state.CountBlockByName(names_needed, name_bits, info, &rows_);
      if (rows_.empty()) {
        continue;
      }
      run_subjects_.clear();
      run_ends_.clear();
      return true;
    }
    if (names_needed) {
      status_ = state.segment->ReadNameCodes(block_idx, &state.names);
    }
    // Rows kept by their names alone (no strict funnel keeping every row)
    // have only their own times read, after the names chose them: a funnel
    // or retention keeps a few rows in a hundred.
    const bool times_of_kept_rows = !one_bucket && !plan.keep_unmatched;
    if (status_.ok() && !one_bucket && !times_of_kept_rows) {
      status_ = state.segment->ReadTimes(block_idx, &state.times);
    }
    if (!status_.ok()) {
      return false;
    }
    // One pass for the names, then one per selector that has filters —
    // except for a block folded run by run, whose rows all have `name_bits`
    // (no selector there has a filter): it reads no bits.
    const bool fold_runs = one_bucket && !names_needed && state.fold_by_run;
    uint32_t* bits = nullptr;
    if (!fold_runs) {
      state.bits.resize(rows);
      bits = state.bits.data();
      if (names_needed) {
        const uint32_t* bits_by_name = state.bits_by_name.data();
        const uint32_t* names = state.names.data();
        for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
          bits[row_idx] = bits_by_name[names[row_idx]];
        }
      } else {
        std::fill(bits, bits + rows, name_bits);
      }
    }
    for (size_t selector_idx = 0; selector_idx < state.selectors.size() && !fold_runs;
         ++selector_idx) {
      const SelectorSlot& slot = state.selectors[selector_idx];
      if (slot.match_all ||
          (!slot.any_event &&
           (!slot.name_code || !state.segment->BlockHoldsName(block_idx, *slot.name_code)))) {
        continue;
      }
      status_ = state.EvaluateNode(slot, 0, 0, block_idx, rows);
      if (!status_.ok()) {
        return false;
      }
      const uint8_t* mask = state.masks[0].data();
      const uint32_t clear = ~(uint32_t{1} << selector_idx);
      for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
        bits[row_idx] &= mask[row_idx] != 0 ? UINT32_MAX : clear;
      }
    }
    // A block on the edge of the plan's subject range keeps only the rows
    // of the subjects inside it: rows are sorted by subject, so those are
    // the rows [row_begin, row_end).
    bool runs_read = false;
    size_t row_begin = 0;
    size_t row_end = rows;
    if ((plan.subject_min && info.subject_first < *plan.subject_min) ||
        (plan.subject_max && *plan.subject_max < info.subject_last)) {
      status_ = state.segment->ReadSubjects(block_idx, &state.runs);
      if (!status_.ok()) {
        return false;
      }
      runs_read = true;
      size_t run_start = 0;
      row_end = 0;
      bool any_inside = false;
      for (size_t run_idx = 0; run_idx < state.runs.subjects.size(); ++run_idx) {
        const Id128& subject = state.runs.subjects[run_idx];
        const size_t length = state.runs.run_lengths[run_idx];
        if (plan.subject_min && subject < *plan.subject_min) {
          run_start += length;
          continue;
        }
        if (plan.subject_max && *plan.subject_max < subject) {
          break;
        }
        if (!any_inside) {
          row_begin = run_start;
          any_inside = true;
        }
        run_start += length;
        row_end = run_start;
      }
      if (!any_inside) {
        row_begin = row_end = 0;
      }
    }
    if (fold_runs) {
      if (name_bits == 0 || row_begin >= row_end) {
        continue;
      }
      if (!runs_read) {
        status_ = state.segment->ReadSubjects(block_idx, &state.runs);
      }
      if (status_.ok()) {
        status_ = state.FoldRunsOfBlock(block_idx, info, name_bits, row_begin, row_end, &rows_,
                                        &run_subjects_, &run_ends_);
      }
      if (!status_.ok()) {
        return false;
      }
      if (rows_.empty()) {
        continue;
      }
      return true;
    }
    // The kept rows' indexes first, without a branch per row (which rows a
    // retention or a funnel keeps is as good as random: a branch on it was
    // mispredicted often enough to be a quarter of this function), then a
    // MatchRow for each.
    row_indexes.resize(row_end - row_begin);
    uint32_t* kept = row_indexes.data();
    size_t kept_count = 0;
    const bool keep_unmatched = plan.keep_unmatched;
    if (one_bucket) {
      if (info.time_min_ms >= plan.time_min_ms && info.time_min_ms <= plan.time_max_ms) {
        for (size_t row_idx = row_begin; row_idx < row_end; ++row_idx) {
          kept[kept_count] = static_cast<uint32_t>(row_idx);
          kept_count += static_cast<size_t>((bits[row_idx] != 0) | keep_unmatched);
        }
      }
    } else if (times_of_kept_rows) {
      for (size_t row_idx = row_begin; row_idx < row_end; ++row_idx) {
        kept[kept_count] = static_cast<uint32_t>(row_idx);
        kept_count += static_cast<size_t>(bits[row_idx] != 0);
      }
      if (kept_count > 0) {
        status_ = state.segment->ReadTimesOfRows(
            block_idx, std::span<const uint32_t>(kept, kept_count), &state.times);
        if (!status_.ok()) {
          return false;
        }
      }
      // state.times[i] is now kept row i's; drop those outside the range
      // (none when the block's zone map lies inside it).
      if (info.time_min_ms < plan.time_min_ms || info.time_max_ms > plan.time_max_ms) {
        int64_t* times = state.times.data();
        size_t inside_count = 0;
        for (size_t kept_idx = 0; kept_idx < kept_count; ++kept_idx) {
          const int64_t time_ms = times[kept_idx];
          kept[inside_count] = kept[kept_idx];
          times[inside_count] = time_ms;
          inside_count += static_cast<size_t>((time_ms >= plan.time_min_ms) &
                                              (time_ms <= plan.time_max_ms));
        }
        kept_count = inside_count;
      }
    } else {
      const int64_t* times = state.times.data();
      for (size_t row_idx = row_begin; row_idx < row_end; ++row_idx) {
        const int64_t time_ms = times[row_idx];
        kept[kept_count] = static_cast<uint32_t>(row_idx);
        kept_count += static_cast<size_t>(((bits[row_idx] != 0) | keep_unmatched) &
                                          (time_ms >= plan.time_min_ms) &
                                          (time_ms <= plan.time_max_ms));
      }
    }
    row_indexes.resize(kept_count);
    rows_.assign(kept_count, MatchRow{});
    for (size_t kept_idx = 0; kept_idx < kept_count; ++kept_idx) {
      const uint32_t row_idx = kept[kept_idx];
      const uint32_t row_bits = bits[row_idx];
      MatchRow& row = rows_[kept_idx];
      row.time_ms = one_bucket           ? info.time_min_ms
                    : times_of_kept_rows ? state.times[kept_idx]
                                         : state.times[row_idx];
      row.bits = row_bits;
      row.tie = row_bits == 0 ? 255 : plan.tie_by_bit[static_cast<size_t>(__builtin_ctz(row_bits))];
    }
    if (rows_.empty()) {
      continue;
    }
    if (plan.need_subjects && !runs_read) {
      status_ = state.segment->ReadSubjects(block_idx, &state.runs);
    }
    if (status_.ok()) {
      status_ = state.ComputeGroups(block_idx, &rows_, row_indexes);
    }
    if (status_.ok() && state.measure_key) {
      status_ = state.LoadColumn(*state.measure_key, block_idx);
      const KeySlot& slot = state.keys[*state.measure_key];
      for (size_t kept_idx = 0; status_.ok() && slot.info != nullptr && kept_idx < rows_.size();
           ++kept_idx) {
        const uint32_t row_idx = row_indexes[kept_idx];
        const PropertyTag tag = slot.column.tags[row_idx];
        rows_[kept_idx].value =
            tag == PropertyTag::kInt
                ? static_cast<double>(slot.column.ints[row_idx])
                : (tag == PropertyTag::kDouble ? slot.column.doubles[row_idx] : NAN);
      }
    }
    if (status_.ok() && state.unique_group_keys) {
      status_ = state.NumberGroups(block_idx, row_indexes, &rows_);
    }
    if (!status_.ok()) {
      return false;
    }
    const bool fold = one_bucket && plan.fold_rows && !state.measure_key && !state.no_fold;
    // Subject runs over the kept rows.
    run_subjects_.clear();
    run_ends_.clear();
    if (!plan.need_subjects) {
      if (fold) {
        state.folded.clear();
        state.FoldBlock(rows_, &state.folded);
        rows_.swap(state.folded);
      }
      return true;
    }
    size_t run_idx = 0;
    uint32_t run_end = state.runs.run_lengths.empty() ? 0 : state.runs.run_lengths[0];
    for (size_t kept_idx = 0; kept_idx < rows_.size(); ++kept_idx) {
      const uint32_t row_idx = row_indexes[kept_idx];
      while (row_idx >= run_end) {
        ++run_idx;
        run_end += state.runs.run_lengths[run_idx];
      }
      const Id128& subject = state.runs.subjects[run_idx];
      if (run_subjects_.empty() || !(run_subjects_.back() == subject)) {
        if (!run_subjects_.empty()) {
          run_ends_.push_back(static_cast<uint32_t>(kept_idx));
        }
        run_subjects_.push_back(subject);
      }
    }
    run_ends_.push_back(static_cast<uint32_t>(rows_.size()));
    if (state.tag_stored && !fold) {
      status_ = state.TagStored(block_idx, row_indexes, &rows_);
      if (!status_.ok()) {
        return false;
      }
    }
    if (fold) {
      state.folded.clear();
      uint32_t begin = 0;
      for (uint32_t& end : run_ends_) {
        state.FoldRows(&rows_, begin, end, &state.folded);
        begin = end;
        end = static_cast<uint32_t>(state.folded.size());
      }
      rows_.swap(state.folded);
    }
    return true;
  }
  return false;
}

SubjectMerger::SubjectMerger(std::vector<std::unique_ptr<SegmentScanner>> scanners,
                             const PersonPlan* persons)
    : persons_(persons) {
  for (auto& scanner : scanners) {
    Cursor cursor;
    cursor.scanner = std::move(scanner);
    cursor.done = !cursor.scanner->status().ok();
    if (cursor.done) {
      status_ = cursor.scanner->status();
    } else {
      Advance(&cursor);
    }
    cursors_.push_back(std::move(cursor));
  }
}

bool SubjectMerger::Advance(Cursor* cursor) {
  cursor->run_idx = 0;
  if (!cursor->scanner->NextBlock()) {
    cursor->done = true;
    if (!cursor->scanner->status().ok() && status_.ok()) {
      status_ = cursor->scanner->status();
    }
    return false;
  }
  return true;
}

bool SubjectMerger::FillWindow() {
  window_rows_.clear();
  collected_.clear();
  window_runs_.clear();
  next_run_ = 0;
  // The window starts at the lowest head, so empty stretches of the space
  // (another thread's share of it) cost nothing.
  uint64_t window_start = UINT64_MAX;
  bool any = false;
  for (const Cursor& cursor : cursors_) {
    if (!cursor.done) {
      window_start = std::min(window_start, cursor.scanner->run_subjects()[cursor.run_idx].high);
      any = true;
    }
  }
  if (!any || !status_.ok()) {
    return false;
  }
  const uint32_t window_bits = window_bits_;
  const uint64_t span_minus_one = window_bits >= 64 ? UINT64_MAX : (uint64_t{1} << window_bits) - 1;
  const uint64_t window_last =
      window_start > UINT64_MAX - span_minus_one ? UINT64_MAX : window_start + span_minus_one;
  for (Cursor& cursor : cursors_) {
    while (!cursor.done) {
      const auto& subjects = cursor.scanner->run_subjects();
      const auto& ends = cursor.scanner->run_ends();
      const auto& block_rows = cursor.scanner->rows();
      size_t run_idx = cursor.run_idx;
      for (; run_idx < ends.size() && subjects[run_idx].high <= window_last; ++run_idx) {
        const uint32_t begin = run_idx == 0 ? 0 : ends[run_idx - 1];
        collected_.push_back(WindowRun{subjects[run_idx], window_rows_.size(), ends[run_idx] - begin,
                                       static_cast<uint32_t>(&cursor - cursors_.data())});
        if (ends[run_idx] - begin == 1) {  // most runs of a unique count, folded
          window_rows_.push_back(block_rows[begin]);
        } else {
          window_rows_.insert(window_rows_.end(), block_rows.begin() + begin,
                              block_rows.begin() + ends[run_idx]);
        }
      }
      cursor.run_idx = run_idx;
      if (run_idx < ends.size()) {
        break;  // the cursor's next subject lies past the window
      }
      Advance(&cursor);  // a subject's rows may continue into the next block
    }
  }
  if (!status_.ok()) {
    return false;
  }
  OrderWindow(window_start, window_bits);
  // About kWindowRunsTarget runs per window: the width follows the density.
  if (collected_.size() > 2 * kWindowRunsTarget && window_bits_ > 0) {
    --window_bits_;
  } else if (collected_.size() < kWindowRunsTarget / 2 && window_bits_ < 64) {
    ++window_bits_;
  }
  return true;
}

void SubjectMerger::OrderWindow(uint64_t window_start, uint32_t window_bits) {
  const size_t run_count = collected_.size();
  // About one bucket per run, by the high bits of the subject's offset in
  // the window; a counting sort is stable, so cursor order is kept.
  const uint32_t bucket_bits =
      std::min<uint32_t>(window_bits, static_cast<uint32_t>(std::bit_width(run_count)));
  const uint32_t shift = window_bits - bucket_bits;
  auto bucket_of = [&](const WindowRun& run) {
    return static_cast<size_t>(shift >= 64 ? 0 : (run.subject.high - window_start) >> shift);
  };
  const size_t bucket_count = size_t{1} << bucket_bits;
  bucket_starts_.assign(bucket_count + 1, 0);
  for (const WindowRun& run : collected_) {
    ++bucket_starts_[bucket_of(run) + 1];
  }
  for (size_t bucket_idx = 0; bucket_idx < bucket_count; ++bucket_idx) {
    bucket_starts_[bucket_idx + 1] += bucket_starts_[bucket_idx];
  }
  window_runs_.resize(run_count);
  {
    std::vector<uint32_t>& fill = bucket_starts_;  // advanced per run, restored below
    for (const WindowRun& run : collected_) {
      window_runs_[fill[bucket_of(run)]++] = run;
    }
    // fill[b] is now the start of bucket b + 1: shift back.
    for (size_t bucket_idx = bucket_count; bucket_idx > 0; --bucket_idx) {
      fill[bucket_idx] = fill[bucket_idx - 1];
    }
    fill[0] = 0;
  }
  auto by_subject = [](const WindowRun& left, const WindowRun& right) {
    return left.subject < right.subject;
  };
  for (size_t bucket_idx = 0; bucket_idx < bucket_count; ++bucket_idx) {
    const auto begin = window_runs_.begin() + bucket_starts_[bucket_idx];
    const auto end = window_runs_.begin() + bucket_starts_[bucket_idx + 1];
    if (end - begin > 1 && !std::is_sorted(begin, end, by_subject)) {
      std::stable_sort(begin, end, by_subject);
    }
  }
}

bool SubjectMerger::Next(Id128* subject, std::vector<MatchRow>* rows,
                         std::vector<std::pair<uint32_t, uint32_t>>* portions) {
  if (next_run_ == window_runs_.size() && !FillWindow()) {
    return false;
  }
  *subject = window_runs_[next_run_].subject;
  rows->clear();
  if (portions != nullptr) {
    portions->clear();
  }
  // In cursor (segment) order, as the rows' order among equal (time, tie)
  // depends on it.
  while (next_run_ < window_runs_.size() && window_runs_[next_run_].subject == *subject) {
    const WindowRun& run = window_runs_[next_run_++];
    const auto first = window_rows_.begin() + static_cast<ptrdiff_t>(run.rows_begin);
    rows->insert(rows->end(), first, first + run.row_count);
    if (portions != nullptr) {
      if (!portions->empty() && portions->back().first == run.cursor) {
        portions->back().second = static_cast<uint32_t>(rows->size());
      } else {
        portions->emplace_back(run.cursor, static_cast<uint32_t>(rows->size()));
      }
    }
  }
  if (portions == nullptr) {
    SortRows(*subject, rows);
  }
  return true;
}

void SubjectMerger::SortRows(const Id128& subject, std::vector<MatchRow>* rows) const {
  auto before = [](const MatchRow& left, const MatchRow& right) {
    return left.time_ms < right.time_ms || (left.time_ms == right.time_ms && left.tie < right.tie);
  };
  // A folded person's rows of several stored subjects: among equal (time,
  // tie) in stored subject order, as the rows of set-aside persons are
  // (docs/identity.md, "How queries use it").
  if (persons_ != nullptr && std::any_of(rows->begin(), rows->end(), [](const MatchRow& row) {
        return row.Stored() != 0;
      })) {
    const Id128& value = subject;
    const auto stored_of = [&](const MatchRow& row) -> const Id128& {
      return row.Stored() == 0 ? value : persons_->Stored(row.Stored());
    };
    std::stable_sort(rows->begin(), rows->end(), [&](const MatchRow& left, const MatchRow& right) {
      if (left.time_ms != right.time_ms || left.tie != right.tie) {
        return before(left, right);
      }
      return stored_of(left) < stored_of(right);
    });
    return;
  }
  if (!std::is_sorted(rows->begin(), rows->end(), before)) {
    std::stable_sort(rows->begin(), rows->end(), before);
  }
}

void PersonMerger::SetAside(const Id128& value, const std::vector<MatchRow>& rows) {
  const auto before = [](const MatchRow& left, const MatchRow& right) {
    return left.time_ms < right.time_ms || (left.time_ms == right.time_ms && left.tie < right.tie);
  };
  uint32_t begin = 0;
  for (const auto& [segment, end] : portions_) {
    // The segment's rows of each stored subject (a folded segment's rows
    // may hold several), each with the person of that subject.
    std::map<uint32_t, std::vector<MatchRow>> by_stored;
    for (uint32_t row_idx = begin; row_idx < end; ++row_idx) {
      MatchRow row = rows[row_idx];
      const uint32_t index = row.Stored();
      row.SetStored(0);
      by_stored[index].push_back(row);
    }
    for (auto& [index, stored_rows] : by_stored) {
      const Id128 stored = index == 0 ? value : persons_->Stored(index);
      std::stable_sort(stored_rows.begin(), stored_rows.end(), before);
      spill_->persons[persons_->PersonOf(stored)].push_back(
          PersonSpill::Chunk{stored, part_, segment, std::move(stored_rows)});
    }
    begin = end;
  }
}

SpillSource::SpillSource(std::vector<PersonSpill*> spills, std::vector<Groups*> part_groups,
                         Groups* target)
    : part_groups_(std::move(part_groups)), target_(target) {
  std::unordered_map<Id128, size_t, Id128Hash> index;
  for (PersonSpill* spill : spills) {
    for (auto& [person, chunks] : spill->persons) {
      const auto [it, inserted] = index.try_emplace(person, persons_.size());
      if (inserted) {
        persons_.emplace_back(person, std::vector<PersonSpill::Chunk*>());
      }
      for (PersonSpill::Chunk& chunk : chunks) {
        persons_[it->second].second.push_back(&chunk);
      }
    }
  }
  std::sort(persons_.begin(), persons_.end(),
            [](const auto& left, const auto& right) { return left.first < right.first; });
  renumbered_.resize(part_groups_.size());
}

bool SpillSource::Next(Id128* subject, std::vector<MatchRow>* rows) {
  if (next_ >= persons_.size()) {
    return false;
  }
  auto& [person, chunks] = persons_[next_++];
  *subject = person;
  std::sort(chunks.begin(), chunks.end(),
            [](const PersonSpill::Chunk* left, const PersonSpill::Chunk* right) {
              return left->subject < right->subject ||
                     (left->subject == right->subject && left->segment < right->segment);
            });
  rows->clear();
  for (const PersonSpill::Chunk* chunk : chunks) {
    const size_t begin = rows->size();
    rows->insert(rows->end(), chunk->rows.begin(), chunk->rows.end());
    if (target_ == nullptr || target_->property_count() == 0) {
      continue;
    }
    std::vector<uint32_t>& renumbered = renumbered_[chunk->part];
    for (size_t row_idx = begin; row_idx < rows->size(); ++row_idx) {
      MatchRow& row = (*rows)[row_idx];
      if (row.group >= part_groups_[chunk->part]->size()) {
        continue;  // a row without a group (its bits are not group bits)
      }
      if (renumbered.size() <= row.group) {
        renumbered.resize(static_cast<size_t>(row.group) + 1, ValueNumbering::kMissing);
      }
      if (renumbered[row.group] == ValueNumbering::kMissing) {
        renumbered[row.group] = target_->Intern(part_groups_[chunk->part]->Key(row.group));
      }
      row.group = renumbered[row.group];
    }
  }
  auto before = [](const MatchRow& left, const MatchRow& right) {
    return left.time_ms < right.time_ms || (left.time_ms == right.time_ms && left.tie < right.tie);
  };
  std::stable_sort(rows->begin(), rows->end(), before);
  return true;
}

}  // namespace minpanel::query::internal
