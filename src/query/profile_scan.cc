// The profile and group properties of a block's rows, as a column the scan
// reads like any other (docs/queries.md, "Profile and group properties").
#include <algorithm>
#include <array>

#include "query/query_internal.h"

namespace minpanel::query::internal {
namespace {

using store::PropertyColumn;
using store::PropertyTag;

// Sets row `row_idx` of `column` (sized by ResetColumn) to `value`
// (nullptr: absent). Rows are set in order, as list offsets accumulate.
void SetRow(const Value* value, size_t row_idx, PropertyColumn* column) {
  column->list_offsets[row_idx + 1] = static_cast<uint32_t>(column->list_items.size());
  if (value == nullptr) {
    column->tags[row_idx] = PropertyTag::kAbsent;
    return;
  }
  column->tags[row_idx] = store::TagOf(*value);
  switch (value->type()) {
    case Value::Type::kInt:
      column->ints[row_idx] = value->as_int();
      break;
    case Value::Type::kDouble:
      column->doubles[row_idx] = value->as_double();
      break;
    case Value::Type::kString:
      column->strings[row_idx] = value->as_string();
      break;
    case Value::Type::kList:
      for (const std::string& item : value->as_list()) {
        column->list_items.push_back(item);
      }
      column->list_offsets[row_idx + 1] = static_cast<uint32_t>(column->list_items.size());
      break;
    case Value::Type::kNull:
    case Value::Type::kBool:
      break;
  }
}

void ResetColumn(size_t rows, PropertyColumn* column) {
  column->tags.assign(rows, PropertyTag::kAbsent);
  column->ints.assign(rows, 0);
  column->doubles.assign(rows, 0);
  column->strings.assign(rows, std::string_view());
  column->string_codes.clear();
  column->list_offsets.assign(rows + 1, 0);
  column->list_items.clear();
  column->list_item_codes.clear();
}

const Value* ValueOf(const Profile* profile, std::string_view name) {
  if (profile == nullptr) {
    return nullptr;
  }
  const ProfileProperty* property = FindProfileProperty(*profile, name);
  return property == nullptr ? nullptr : &property->value;
}

}  // namespace

void GroupIdsAt(const PropertyColumn* const* id_columns, size_t row_idx,
                std::vector<Id128>* ids) {
  ids->clear();
  // A group id the policy kept raw joins no profile.
  const auto add = [ids](std::string_view text) {
    if (text.starts_with(kPseudonymPrefix)) {
      if (const std::optional<Id128> id = Id128::FromHex(text.substr(kPseudonymPrefix.size()))) {
        ids->push_back(*id);
      }
    }
  };
  for (size_t column_idx = 0; column_idx < 2; ++column_idx) {
    const PropertyColumn* column = id_columns[column_idx];
    if (column == nullptr || column->tags.empty()) {
      continue;
    }
    if (column->tags[row_idx] == PropertyTag::kString) {
      add(column->StringAt(row_idx));
      return;
    }
    if (column->tags[row_idx] == PropertyTag::kList) {
      for (uint32_t item_idx = column->list_offsets[row_idx];
           item_idx < column->list_offsets[row_idx + 1]; ++item_idx) {
        add(column->list_items[item_idx]);
      }
      std::sort(ids->begin(), ids->end());
      ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
      return;
    }
  }
}

void FillProfileColumn(const PropertyRef& ref, const ProfileTable& profiles,
                       const store::SubjectRuns& runs, const PropertyColumn* const* id_columns,
                       size_t rows, PropertyColumn* column) {
  ResetColumn(rows, column);
  if (ref.source == PropertySource::kProfile) {
    size_t row_idx = 0;
    for (size_t run_idx = 0; run_idx < runs.subjects.size(); ++run_idx) {
      const Value* value = ValueOf(profiles.FindPerson(runs.subjects[run_idx]), ref.name);
      const size_t end = row_idx + runs.run_lengths[run_idx];
      for (; row_idx < end && row_idx < rows; ++row_idx) {
        SetRow(value, row_idx, column);
      }
    }
    for (; row_idx < rows; ++row_idx) {
      SetRow(nullptr, row_idx, column);
    }
    return;
  }
  std::vector<Id128> groups;
  std::vector<std::string_view> texts;
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    GroupIdsAt(id_columns, row_idx, &groups);
    if (groups.size() <= 1) {
      SetRow(groups.empty() ? nullptr
                            : ValueOf(profiles.FindGroup(ref.group_key, groups.front()), ref.name),
             row_idx, column);
      continue;
    }
    // An event in several groups: the groups' values; when they are strings
    // and differ, the list of them (a filter or breakdown then treats it as
    // any list property), else the first group's that has one.
    const Value* first = nullptr;
    bool all_strings = true;
    texts.clear();
    for (const Id128& group : groups) {
      const Value* value = ValueOf(profiles.FindGroup(ref.group_key, group), ref.name);
      if (value == nullptr) {
        continue;
      }
      first = first == nullptr ? value : first;
      if (value->type() == Value::Type::kString) {
        texts.push_back(value->as_string());
      } else {
        all_strings = false;
      }
    }
    std::sort(texts.begin(), texts.end());
    texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
    if (!all_strings || texts.size() < 2) {
      SetRow(first, row_idx, column);
      continue;
    }
    column->tags[row_idx] = PropertyTag::kList;
    column->list_items.insert(column->list_items.end(), texts.begin(), texts.end());
    column->list_offsets[row_idx + 1] = static_cast<uint32_t>(column->list_items.size());
  }
}

}  // namespace minpanel::query::internal
