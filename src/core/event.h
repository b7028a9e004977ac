// The event model shared by every module: typed property values, the raw
// event an ingest adapter decodes (which only the privacy policy may read),
// and the stored Event and ProfileUpdate that the policy produces.
//
// All types are plain values with no internal synchronisation.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace minpanel {

// A 128-bit identifier: a subject pseudonym or an insert id. Printed as 32
// lowercase hex digits.
struct Id128 {
  uint64_t high = 0;
  uint64_t low = 0;

  friend bool operator==(const Id128&, const Id128&) = default;
  friend auto operator<=>(const Id128&, const Id128&) = default;

  std::string ToHex() const;
  // Parses exactly 32 hex digits (either case).
  static std::optional<Id128> FromHex(std::string_view text);
  // The first 16 bytes of a 16-byte digest, big-endian.
  static Id128 FromBytes(const std::array<uint8_t, 16>& bytes);
};

// How a subject pseudonym is written outside the store (exports, APIs):
// "psn_" and 32 hex digits. The prefix marks the id as already pseudonymous.
inline constexpr std::string_view kPseudonymPrefix = "psn_";
std::string FormatPseudonym(const Id128& subject);

struct Id128Hash {
  size_t operator()(const Id128& id) const { return static_cast<size_t>(id.low ^ (id.high * 31)); }
};

using StringList = std::vector<std::string>;

// A property value: null, bool, int64, double, string or list of strings.
class Value {
 public:
  enum class Type : uint8_t { kNull = 0, kBool = 1, kInt = 2, kDouble = 3, kString = 4, kList = 5 };

  Value() = default;
  static Value Null() { return Value(); }
  static Value Bool(bool value) { return Value(value); }
  static Value Int(int64_t value) { return Value(value); }
  static Value Double(double value) { return Value(value); }
  static Value String(std::string value) { return Value(std::move(value)); }
  static Value List(StringList value) { return Value(std::move(value)); }

  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  // Preconditions: type() matches the accessor.
  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return std::get<int64_t>(data_); }
  double as_double() const { return std::get<double>(data_); }
  const std::string& as_string() const { return std::get<std::string>(data_); }
  const StringList& as_list() const { return std::get<StringList>(data_); }

  friend bool operator==(const Value&, const Value&) = default;

 private:
  template <typename T>
  explicit Value(T value) : data_(std::move(value)) {}
  std::variant<std::monostate, bool, int64_t, double, std::string, StringList> data_;
};

struct Property {
  std::string key;
  Value value;
  friend bool operator==(const Property&, const Property&) = default;
};

// Properties in the order the client sent them; keys are unique.
using Properties = std::vector<Property>;

// Returns the property named `key`, or nullptr.
const Value* FindProperty(const Properties& properties, std::string_view key);

// What an ingest adapter decoded, before the privacy policy. It lives only in
// memory between ingest and privacy: nothing persists or logs it.
struct RawEvent {
  std::string name;
  int64_t time_ms = 0;
  // True when the client sent no time and time_ms is when the server
  // received the event: then two equal events are two events (a retry would
  // arrive at another time anyway), so the policy gives one without an
  // insert id a random insert id rather than a hash of its content.
  bool arrival_time = false;
  std::string distinct_id;
  // The client's de-duplication id (Mixpanel $insert_id), if it sent one.
  std::optional<std::string> insert_id;
  // Context fields every protocol carries under its own spellings.
  std::string client_ip;
  std::string user_agent;
  std::string page_url;
  std::string referrer;
  std::string library;
  Properties properties;
};

// The Mixpanel profile operations (/engage and /groups).
enum class ProfileOperation : uint8_t {
  kSet = 1,
  kSetOnce = 2,
  kAdd = 3,
  kUnion = 4,
  kAppend = 5,
  kRemove = 6,
  kUnset = 7,
  kDelete = 8,
};

std::string_view ProfileOperationName(ProfileOperation operation);  // "$set", ...
std::optional<ProfileOperation> ParseProfileOperation(std::string_view name);

// A decoded, pre-policy profile update: on a user (group_key empty) or on a
// group (group_key names the group type, distinct_id holds the group id).
struct RawProfileUpdate {
  std::string distinct_id;
  std::string group_key;
  int64_t time_ms = 0;
  std::string client_ip;
  ProfileOperation operation = ProfileOperation::kSet;
  // For $unset the keys name the properties and the values are null.
  Properties properties;
};

// The policy version of an event or profile update stored before they
// recorded theirs (an event of a log file of format 1 or a segment of format
// 1 to 3; a profile update of a log file of format 1 or 2 or a profile file
// of format 1): not known. Version 0 is
// the built-in default policy, 1 and up a project's recorded policy files
// (privacy/policy_store.h).
inline constexpr uint32_t kPolicyVersionUnknown = UINT32_MAX;

// A stored event, after the policy: no raw identifier remains.
struct Event {
  std::string name;
  int64_t time_ms = 0;
  Id128 subject;     // keyed pseudonym of the distinct id
  Id128 insert_id;   // the de-duplication key
  uint32_t key_version = 0;  // which pseudonym key made `subject`
  // Which version of the project's policy shaped the event, when it was
  // minimised; kPolicyVersionUnknown for an event not made by the policy.
  uint32_t policy_version = kPolicyVersionUnknown;
  Properties properties;
  friend bool operator==(const Event&, const Event&) = default;
};

// A stored profile update, after the policy.
struct ProfileUpdate {
  Id128 subject;  // pseudonym of the distinct id (or of the group id)
  std::string group_key;
  int64_t time_ms = 0;
  uint32_t key_version = 0;
  // Which version of the project's policy shaped the update, when it was
  // minimised; kPolicyVersionUnknown for one not made by the policy.
  uint32_t policy_version = kPolicyVersionUnknown;
  ProfileOperation operation = ProfileOperation::kSet;
  Properties properties;
  friend bool operator==(const ProfileUpdate&, const ProfileUpdate&) = default;
};

}  // namespace minpanel
