// The profile table: profile updates folded per subject and per group. The
// rules for each operation are in docs/queries.md ("Profile and group
// properties").
#include "query/profile_table.h"

#include <algorithm>

namespace minpanel::query {
namespace {

// What a std::string holds in place (libstdc++: 15 bytes and the NUL).
constexpr size_t kInPlaceStringBytes = 15;
// A profile's share of its map: the node (key, vector, next pointer, cached
// hash) and a bucket pointer.
constexpr uint64_t kProfileNodeBytes =
    sizeof(Id128) + sizeof(Profile) + 2 * sizeof(void*) + sizeof(size_t) + sizeof(void*);

uint64_t StringHeapBytes(const std::string& text) {
  return text.capacity() > kInPlaceStringBytes ? text.capacity() + 1 : 0;
}

uint64_t ValueHeapBytes(const Value& value) {
  if (value.type() == Value::Type::kString) {
    return StringHeapBytes(value.as_string());
  }
  if (value.type() != Value::Type::kList) {
    return 0;
  }
  const StringList& items = value.as_list();
  uint64_t bytes = items.capacity() * sizeof(std::string);
  for (const std::string& item : items) {
    bytes += StringHeapBytes(item);
  }
  return bytes;
}

uint64_t ProfileBytes(const Profile& profile) {
  uint64_t bytes = kProfileNodeBytes + profile.capacity() * sizeof(ProfileProperty);
  for (const ProfileProperty& property : profile) {
    bytes += StringHeapBytes(property.key) + ValueHeapBytes(property.value);
  }
  return bytes;
}

bool IsNumber(const Value& value) {
  return value.type() == Value::Type::kInt || value.type() == Value::Type::kDouble;
}

double AsDouble(const Value& value) {
  return value.type() == Value::Type::kInt ? static_cast<double>(value.as_int())
                                           : value.as_double();
}

// The items an operation's value names: a string is one item, a list its
// items; anything else names none.
StringList ItemsOf(const Value& value) {
  if (value.type() == Value::Type::kString) {
    return {value.as_string()};
  }
  if (value.type() == Value::Type::kList) {
    return value.as_list();
  }
  return {};
}

Profile::iterator Lower(Profile* profile, std::string_view key) {
  return std::lower_bound(profile->begin(), profile->end(), key,
                          [](const ProfileProperty& property, std::string_view wanted) {
                            return property.key < wanted;
                          });
}

// The new value of `existing` (nullptr: absent) under one operation, or
// nullopt when the operation leaves it as it is.
std::optional<Value> Apply(ProfileOperation operation, const Value* existing,
                           const Value& operand) {
  switch (operation) {
    case ProfileOperation::kSet:
      return operand;
    case ProfileOperation::kSetOnce:
      return existing == nullptr ? std::optional<Value>(operand) : std::nullopt;
    case ProfileOperation::kAdd: {
      if (!IsNumber(operand)) {
        return std::nullopt;
      }
      if (existing == nullptr) {
        return operand;
      }
      if (!IsNumber(*existing)) {
        return std::nullopt;  // a number is not added to a string, list or boolean
      }
      int64_t sum = 0;
      if (existing->type() == Value::Type::kInt && operand.type() == Value::Type::kInt &&
          !__builtin_add_overflow(existing->as_int(), operand.as_int(), &sum)) {
        return Value::Int(sum);
      }
      return Value::Double(AsDouble(*existing) + AsDouble(operand));
    }
    case ProfileOperation::kUnion:
    case ProfileOperation::kAppend: {
      if (existing != nullptr && existing->type() != Value::Type::kList) {
        return std::nullopt;
      }
      if (operation == ProfileOperation::kAppend && operand.type() != Value::Type::kString) {
        return std::nullopt;  // lists hold strings only
      }
      StringList items = existing == nullptr ? StringList() : existing->as_list();
      for (std::string& item : ItemsOf(operand)) {
        if (operation == ProfileOperation::kAppend ||
            std::find(items.begin(), items.end(), item) == items.end()) {
          items.push_back(std::move(item));
        }
      }
      return Value::List(std::move(items));
    }
    case ProfileOperation::kRemove: {
      if (existing == nullptr || existing->type() != Value::Type::kList) {
        return std::nullopt;
      }
      StringList items = existing->as_list();
      for (const std::string& item : ItemsOf(operand)) {
        std::erase(items, item);
      }
      return Value::List(std::move(items));
    }
    case ProfileOperation::kUnset:
    case ProfileOperation::kDelete:
      return std::nullopt;  // handled by the caller
  }
  return std::nullopt;
}

void ApplyToProfile(const ProfileUpdate& update, uint64_t sequence, Profile* profile) {
  if (update.operation == ProfileOperation::kDelete) {
    profile->clear();
    return;
  }
  for (const Property& property : update.properties) {
    auto it = Lower(profile, property.key);
    const bool present = it != profile->end() && it->key == property.key;
    if (update.operation == ProfileOperation::kUnset) {
      if (present) {
        profile->erase(it);
      }
      continue;
    }
    std::optional<Value> value =
        Apply(update.operation, present ? &it->value : nullptr, property.value);
    if (!value.has_value()) {
      continue;
    }
    if (present) {
      it->value = std::move(*value);
      it->sequence = sequence;
    } else {
      profile->insert(it, ProfileProperty{property.key, std::move(*value), sequence});
    }
  }
}

}  // namespace

const ProfileProperty* FindProfileProperty(const Profile& profile, std::string_view key) {
  const auto it = std::lower_bound(profile.begin(), profile.end(), key,
                                   [](const ProfileProperty& property, std::string_view wanted) {
                                     return property.key < wanted;
                                   });
  return it != profile.end() && it->key == key ? &*it : nullptr;
}

Status ProfileTable::Builder::Add(const ProfileUpdate& update) {
  Data& data = *table_->data_;
  ProfileMap& map = update.group_key.empty() ? data.persons : data.groups[update.group_key];
  const auto [it, inserted] = map.try_emplace(update.subject);
  const uint64_t before = inserted ? 0 : ProfileBytes(it->second);
  ApplyToProfile(update, sequence_++, &it->second);
  const uint64_t after = ProfileBytes(it->second);
  data.bytes = data.bytes - before + after;
  data.updates += 1;
  if (data.bytes > bytes_max_) {
    return Status::ResourceExhausted(
        "profiles: the profile table passed " + std::to_string(bytes_max_) +
        " bytes (kProfileTableBytesMax) at " + std::to_string(data.persons.size()) +
        " person and " + std::to_string(table_->group_profiles()) +
        " group profiles; queries by profile or group properties need it in memory");
  }
  return Status::Ok();
}

std::shared_ptr<const ProfileTable> ProfileTable::Builder::Finish() {
  std::shared_ptr<const ProfileTable> table = std::move(table_);
  table_ = std::make_shared<ProfileTable>();
  sequence_ = 0;
  return table;
}

Result<std::shared_ptr<const ProfileTable>> ProfileTable::Build(store::Engine& engine,
                                                                uint32_t project_id,
                                                                uint64_t bytes_max) {
  Builder builder(bytes_max);
  Status folded = Status::Ok();
  MP_RETURN_IF_ERROR(engine.ScanProfiles(project_id, [&](const ProfileUpdate& update) {
    folded = builder.Add(update);
    return folded.ok();
  }));
  MP_RETURN_IF_ERROR(folded);
  return builder.Finish();
}

size_t ProfileTable::group_profiles() const {
  size_t count = 0;
  for (const auto& [group_key, profiles] : data_->groups) {
    count += profiles.size();
  }
  return count;
}

std::shared_ptr<const ProfileTable> ProfileTable::WithPersons(
    std::shared_ptr<const IdentityMap> identity) const {
  auto table = std::make_shared<ProfileTable>(*this);
  if (identity == nullptr || identity->empty()) {
    table->identity_.reset();
    table->merged_.reset();
    return table;
  }
  auto merged = std::make_shared<ProfileMap>();
  for (const auto& [id, person] : identity->sorted()) {
    const auto own = data_->persons.find(id);
    if (own == data_->persons.end()) {
      continue;
    }
    Profile& into = (*merged)[person];
    for (const ProfileProperty& property : own->second) {
      auto it = Lower(&into, property.key);
      if (it == into.end() || it->key != property.key) {
        into.insert(it, property);
      } else if (property.sequence > it->sequence) {
        *it = property;
      }
    }
  }
  table->identity_ = std::move(identity);
  table->merged_ = std::move(merged);
  return table;
}

const Profile* ProfileTable::FindPerson(const Id128& subject) const {
  if (identity_ != nullptr) {
    if (const Id128* person = identity_->Find(subject)) {
      const auto it = merged_->find(*person);
      return it == merged_->end() ? nullptr : &it->second;
    }
  }
  const auto it = data_->persons.find(subject);
  return it == data_->persons.end() ? nullptr : &it->second;
}

const Profile* ProfileTable::FindGroup(std::string_view group_key, const Id128& group) const {
  const auto profiles = data_->groups.find(std::string(group_key));
  if (profiles == data_->groups.end()) {
    return nullptr;
  }
  const auto it = profiles->second.find(group);
  return it == profiles->second.end() ? nullptr : &it->second;
}

Result<std::shared_ptr<const ProfileTable>> ProfileTableCache::Get(store::Engine& engine,
                                                                   uint32_t project_id) {
  // Counted before the scan: a table never claims updates it may not have
  // read (one stored meanwhile only makes the next query rebuild).
  const store::Stats stats = engine.GetStats();
  {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(project_id);
    if (it != entries_.end() && it->second.engine == &engine &&
        it->second.profile_updates == stats.profile_updates &&
        it->second.deletions_logged == stats.deletions_logged) {
      return it->second.table;
    }
  }
  MP_ASSIGN_OR_RETURN(std::shared_ptr<const ProfileTable> table,
                      ProfileTable::Build(engine, project_id, bytes_max_));
  std::lock_guard lock(mutex_);
  entries_[project_id] = Entry{&engine, stats.profile_updates, stats.deletions_logged, table};
  return table;
}

void ProfileTableCache::Clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
}

}  // namespace minpanel::query
