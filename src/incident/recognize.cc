// Column recognition: by name (a dictionary of the spellings analytics
// exports and account exports use), by content (a sample of values through
// the privacy detectors and the shape checks below) and by the operator's
// --map overrides; and a scan of every cell for cards, IBANs and
// credentials, whatever the column is called.
#include <algorithm>
#include <array>
#include <cctype>
#include <span>
#include <thread>
#include <unordered_map>

#include "incident/incident.h"
#include "privacy/detectors.h"

namespace minpanel::incident {
namespace {

using privacy::Detection;
using privacy::PiiKind;

struct KindName {
  ColumnKind kind;
  std::string_view name;
  Category category;
};

constexpr KindName kKinds[] = {
    {ColumnKind::kUnknown, "unknown", Category::kNone},
    {ColumnKind::kIgnore, "ignore", Category::kNone},
    {ColumnKind::kUserId, "user_id", Category::kInternalIds},
    {ColumnKind::kAnonymousId, "anonymous_id", Category::kInternalIds},
    {ColumnKind::kOrgId, "org_id", Category::kInternalIds},
    {ColumnKind::kEmail, "email", Category::kContact},
    {ColumnKind::kPhone, "phone", Category::kContact},
    {ColumnKind::kFullName, "full_name", Category::kIdentity},
    {ColumnKind::kFirstName, "first_name", Category::kIdentity},
    {ColumnKind::kLastName, "last_name", Category::kIdentity},
    {ColumnKind::kUsername, "username", Category::kIdentity},
    {ColumnKind::kIpAddress, "ip_address", Category::kLocation},
    {ColumnKind::kCity, "city", Category::kLocation},
    {ColumnKind::kRegion, "region", Category::kLocation},
    {ColumnKind::kCountry, "country", Category::kLocation},
    {ColumnKind::kPostalCode, "postal_code", Category::kLocation},
    {ColumnKind::kStreetAddress, "street_address", Category::kLocation},
    {ColumnKind::kCoordinates, "coordinates", Category::kLocation},
    {ColumnKind::kTimeZone, "time_zone", Category::kLocation},
    {ColumnKind::kUserAgent, "user_agent", Category::kDevice},
    {ColumnKind::kOs, "os", Category::kDevice},
    {ColumnKind::kBrowser, "browser", Category::kDevice},
    {ColumnKind::kDevice, "device", Category::kDevice},
    {ColumnKind::kReferrer, "referrer", Category::kReferrer},
    {ColumnKind::kUrl, "url", Category::kReferrer},
    {ColumnKind::kPassword, "password", Category::kCredentials},
    {ColumnKind::kPasswordHash, "password_hash", Category::kCredentials},
    {ColumnKind::kSecret, "secret", Category::kCredentials},
    {ColumnKind::kCardNumber, "card_number", Category::kPayment},
    {ColumnKind::kIban, "iban", Category::kPayment},
    {ColumnKind::kPaymentDetail, "payment_detail", Category::kPayment},
    {ColumnKind::kContent, "content", Category::kContent},
    {ColumnKind::kRole, "role", Category::kAccount},
    {ColumnKind::kLanguage, "language", Category::kAccount},
    {ColumnKind::kOrgName, "org_name", Category::kAccount},
    {ColumnKind::kAdminEmail, "admin_email", Category::kContact},
    {ColumnKind::kAdminUserId, "admin_user_id", Category::kInternalIds},
    {ColumnKind::kTimestamp, "timestamp", Category::kActivity},
    {ColumnKind::kEventName, "event_name", Category::kActivity},
};
static_assert(std::size(kKinds) == kColumnKindCount);

// Column names, lower-cased with '$', '_', '-', ' ' and '.' removed.
struct NameEntry {
  std::string_view name;
  ColumnKind kind;
};
constexpr NameEntry kNames[] = {
    {"userid", ColumnKind::kUserId},
    {"uid", ColumnKind::kUserId},
    {"distinctid", ColumnKind::kUserId},
    {"accountid", ColumnKind::kUserId},
    {"customerid", ColumnKind::kUserId},
    {"memberid", ColumnKind::kUserId},
    {"externalid", ColumnKind::kUserId},
    {"personid", ColumnKind::kUserId},
    {"anonymousid", ColumnKind::kAnonymousId},
    {"deviceid", ColumnKind::kAnonymousId},
    {"sessionid", ColumnKind::kAnonymousId},
    {"cookieid", ColumnKind::kAnonymousId},
    {"orgid", ColumnKind::kOrgId},
    {"organizationid", ColumnKind::kOrgId},
    {"organisationid", ColumnKind::kOrgId},
    {"companyid", ColumnKind::kOrgId},
    {"teamid", ColumnKind::kOrgId},
    {"workspaceid", ColumnKind::kOrgId},
    {"tenantid", ColumnKind::kOrgId},
    {"groupid", ColumnKind::kOrgId},
    {"email", ColumnKind::kEmail},
    {"emailaddress", ColumnKind::kEmail},
    {"mail", ColumnKind::kEmail},
    {"useremail", ColumnKind::kEmail},
    {"contactemail", ColumnKind::kEmail},
    {"phone", ColumnKind::kPhone},
    {"phonenumber", ColumnKind::kPhone},
    {"mobile", ColumnKind::kPhone},
    {"tel", ColumnKind::kPhone},
    {"telephone", ColumnKind::kPhone},
    {"name", ColumnKind::kFullName},
    {"fullname", ColumnKind::kFullName},
    {"displayname", ColumnKind::kFullName},
    {"username", ColumnKind::kUsername},
    {"login", ColumnKind::kUsername},
    {"handle", ColumnKind::kUsername},
    {"firstname", ColumnKind::kFirstName},
    {"givenname", ColumnKind::kFirstName},
    {"fname", ColumnKind::kFirstName},
    {"lastname", ColumnKind::kLastName},
    {"surname", ColumnKind::kLastName},
    {"familyname", ColumnKind::kLastName},
    {"lname", ColumnKind::kLastName},
    {"ip", ColumnKind::kIpAddress},
    {"ipaddress", ColumnKind::kIpAddress},
    {"clientip", ColumnKind::kIpAddress},
    {"remoteaddr", ColumnKind::kIpAddress},
    {"city", ColumnKind::kCity},
    {"town", ColumnKind::kCity},
    {"region", ColumnKind::kRegion},
    {"state", ColumnKind::kRegion},
    {"province", ColumnKind::kRegion},
    {"country", ColumnKind::kCountry},
    {"countrycode", ColumnKind::kCountry},
    {"mpcountrycode", ColumnKind::kCountry},
    {"countryname", ColumnKind::kCountry},
    {"zip", ColumnKind::kPostalCode},
    {"zipcode", ColumnKind::kPostalCode},
    {"postcode", ColumnKind::kPostalCode},
    {"postalcode", ColumnKind::kPostalCode},
    {"address", ColumnKind::kStreetAddress},
    {"streetaddress", ColumnKind::kStreetAddress},
    {"street", ColumnKind::kStreetAddress},
    {"lat", ColumnKind::kCoordinates},
    {"latitude", ColumnKind::kCoordinates},
    {"lon", ColumnKind::kCoordinates},
    {"lng", ColumnKind::kCoordinates},
    {"longitude", ColumnKind::kCoordinates},
    {"timezone", ColumnKind::kTimeZone},
    {"tz", ColumnKind::kTimeZone},
    {"useragent", ColumnKind::kUserAgent},
    {"ua", ColumnKind::kUserAgent},
    {"os", ColumnKind::kOs},
    {"operatingsystem", ColumnKind::kOs},
    {"platform", ColumnKind::kOs},
    {"browser", ColumnKind::kBrowser},
    {"browserfamily", ColumnKind::kBrowser},
    {"device", ColumnKind::kDevice},
    {"devicetype", ColumnKind::kDevice},
    {"devicemodel", ColumnKind::kDevice},
    {"referrer", ColumnKind::kReferrer},
    {"referer", ColumnKind::kReferrer},
    {"initialreferrer", ColumnKind::kReferrer},
    {"referringdomain", ColumnKind::kReferrer},
    {"url", ColumnKind::kUrl},
    {"currenturl", ColumnKind::kUrl},
    {"pageurl", ColumnKind::kUrl},
    {"page", ColumnKind::kUrl},
    {"href", ColumnKind::kUrl},
    {"password", ColumnKind::kPassword},
    {"pass", ColumnKind::kPassword},
    {"pwd", ColumnKind::kPassword},
    {"passwd", ColumnKind::kPassword},
    {"passwordhash", ColumnKind::kPasswordHash},
    {"hashedpassword", ColumnKind::kPasswordHash},
    {"pwhash", ColumnKind::kPasswordHash},
    {"apikey", ColumnKind::kSecret},
    {"token", ColumnKind::kSecret},
    {"accesstoken", ColumnKind::kSecret},
    {"refreshtoken", ColumnKind::kSecret},
    {"authtoken", ColumnKind::kSecret},
    {"sessiontoken", ColumnKind::kSecret},
    {"secret", ColumnKind::kSecret},
    {"apisecret", ColumnKind::kSecret},
    {"cardnumber", ColumnKind::kCardNumber},
    {"creditcard", ColumnKind::kCardNumber},
    {"ccnumber", ColumnKind::kCardNumber},
    {"pan", ColumnKind::kCardNumber},
    {"iban", ColumnKind::kIban},
    {"bankaccount", ColumnKind::kIban},
    {"cvv", ColumnKind::kPaymentDetail},
    {"cvc", ColumnKind::kPaymentDetail},
    {"cardexpiry", ColumnKind::kPaymentDetail},
    {"expiry", ColumnKind::kPaymentDetail},
    {"message", ColumnKind::kContent},
    {"body", ColumnKind::kContent},
    {"content", ColumnKind::kContent},
    {"comment", ColumnKind::kContent},
    {"notes", ColumnKind::kContent},
    {"note", ColumnKind::kContent},
    {"text", ColumnKind::kContent},
    {"role", ColumnKind::kRole},
    {"userrole", ColumnKind::kRole},
    {"isadmin", ColumnKind::kRole},
    {"admin", ColumnKind::kRole},
    {"language", ColumnKind::kLanguage},
    {"lang", ColumnKind::kLanguage},
    {"locale", ColumnKind::kLanguage},
    {"preferredlanguage", ColumnKind::kLanguage},
    {"orgname", ColumnKind::kOrgName},
    {"organization", ColumnKind::kOrgName},
    {"organisation", ColumnKind::kOrgName},
    {"organizationname", ColumnKind::kOrgName},
    {"company", ColumnKind::kOrgName},
    {"companyname", ColumnKind::kOrgName},
    {"adminemail", ColumnKind::kAdminEmail},
    {"adminemails", ColumnKind::kAdminEmail},
    {"owneremail", ColumnKind::kAdminEmail},
    {"adminuserid", ColumnKind::kAdminUserId},
    {"ownerid", ColumnKind::kAdminUserId},
    {"owneruserid", ColumnKind::kAdminUserId},
    {"adminid", ColumnKind::kAdminUserId},
    {"time", ColumnKind::kTimestamp},
    {"timestamp", ColumnKind::kTimestamp},
    {"createdat", ColumnKind::kTimestamp},
    {"updatedat", ColumnKind::kTimestamp},
    {"date", ColumnKind::kTimestamp},
    {"eventtime", ColumnKind::kTimestamp},
    {"event", ColumnKind::kEventName},
    {"eventname", ColumnKind::kEventName},
};

std::string SquashName(std::string_view name) {
  std::string squashed;
  for (const char byte : name) {
    if (byte == '$' || byte == '_' || byte == '-' || byte == ' ' || byte == '.') {
      continue;
    }
    squashed.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(byte))));
  }
  return squashed;
}

std::optional<ColumnKind> LookUpName(std::string_view name) {
  const std::string squashed = SquashName(name);
  for (const NameEntry& entry : kNames) {
    if (entry.name == squashed) {
      return entry.kind;
    }
  }
  return std::nullopt;
}

// The kind a column's name says: the whole name, else its last dotted part
// ("properties.$email"), else the last two ("user.id" is a user id,
// "org.id" an org id, "user.name" a name).
ColumnKind KindFromName(std::string_view name) {
  if (const auto kind = LookUpName(name)) {
    return *kind;
  }
  const size_t last_dot = name.rfind('.');
  if (last_dot == std::string_view::npos) {
    return ColumnKind::kUnknown;
  }
  const std::string_view last = name.substr(last_dot + 1);
  const size_t previous_dot = name.substr(0, last_dot).rfind('.');
  const std::string_view last_two =
      name.substr(previous_dot == std::string_view::npos ? 0 : previous_dot + 1);
  const std::string squashed_last = SquashName(last);
  if (squashed_last == "id") {
    const std::string parent = SquashName(last_two.substr(0, last_two.find('.')));
    for (const std::string_view org : {"org", "organization", "organisation", "company", "team",
                                       "workspace", "account", "group", "tenant"}) {
      if (parent == org) {
        return parent == "account" ? ColumnKind::kUserId : ColumnKind::kOrgId;
      }
    }
    if (parent == "user" || parent == "customer" || parent == "member" || parent == "person") {
      return ColumnKind::kUserId;
    }
  }
  if (const auto kind = LookUpName(last_two)) {
    return *kind;
  }
  if (const auto kind = LookUpName(last)) {
    return *kind;
  }
  return ColumnKind::kUnknown;
}

bool IsHex(char byte) { return std::isxdigit(static_cast<unsigned char>(byte)) != 0; }
bool IsDigit(char byte) { return byte >= '0' && byte <= '9'; }
bool IsUpper(char byte) { return byte >= 'A' && byte <= 'Z'; }
bool IsLower(char byte) { return byte >= 'a' && byte <= 'z'; }

bool IsUuid(std::string_view value) {
  if (value.size() != 36) {
    return false;
  }
  for (size_t idx = 0; idx < value.size(); ++idx) {
    const bool dash = idx == 8 || idx == 13 || idx == 18 || idx == 23;
    if (dash ? value[idx] != '-' : !IsHex(value[idx])) {
      return false;
    }
  }
  return true;
}

bool IsIsoTimestamp(std::string_view value) {
  return value.size() >= 10 && IsDigit(value[0]) && IsDigit(value[3]) && value[4] == '-' &&
         IsDigit(value[5]) && value[7] == '-' && IsDigit(value[8]);
}

constexpr std::string_view kOsNames[] = {"windows", "mac os x", "macos",      "ios",
                                         "android", "linux",    "chrome os",  "ubuntu",
                                         "ipados",  "os x",     "windows 10", "windows 11"};
constexpr std::string_view kBrowserNames[] = {
    "chrome",        "firefox",          "safari",     "edge",        "opera", "mobile safari",
    "chrome mobile", "samsung internet", "chrome ios", "firefox ios", "ie",    "brave"};
constexpr std::string_view kDeviceNames[] = {"desktop", "mobile", "tablet", "smartphone",
                                             "iphone",  "ipad",   "pc",     "mac"};

std::string Lower(std::string_view text) {
  std::string lower(text);
  for (char& byte : lower) {
    byte = static_cast<char>(std::tolower(static_cast<unsigned char>(byte)));
  }
  return lower;
}

bool InList(std::string_view lower, std::span<const std::string_view> list) {
  return std::find(list.begin(), list.end(), lower) != list.end();
}

// Two or three words, each a capital letter then lower-case letters (or a
// non-ASCII letter): "Ana Lima", "María José Ortega".
bool LooksLikeFullName(std::string_view value) {
  size_t words = 0;
  size_t idx = 0;
  while (idx < value.size()) {
    const char first = value[idx];
    if (!IsUpper(first) && static_cast<unsigned char>(first) < 0x80) {
      return false;
    }
    size_t end = idx + 1;
    while (end < value.size() && value[end] != ' ') {
      const char byte = value[end];
      if (!IsLower(byte) && byte != '-' && byte != '\'' &&
          static_cast<unsigned char>(byte) < 0x80) {
        return false;
      }
      ++end;
    }
    ++words;
    idx = end + 1;
  }
  return words >= 2 && words <= 4;
}

bool LooksLikeContent(std::string_view value) {
  return value.size() >= 60 && std::count(value.begin(), value.end(), ' ') >= 8;
}

ColumnKind KindOfDetection(PiiKind kind) {
  switch (kind) {
    case PiiKind::kEmail:
      return ColumnKind::kEmail;
    case PiiKind::kPhone:
      return ColumnKind::kPhone;
    case PiiKind::kCard:
      return ColumnKind::kCardNumber;
    case PiiKind::kIban:
      return ColumnKind::kIban;
    case PiiKind::kIpAddress:
      return ColumnKind::kIpAddress;
    case PiiKind::kJwt:
    case PiiKind::kApiKey:
    case PiiKind::kSecret:
      return ColumnKind::kSecret;
  }
  return ColumnKind::kUnknown;
}

bool IsSensitiveKind(ColumnKind kind) {
  const Category category = CategoryOf(kind);
  return category == Category::kCredentials || category == Category::kPayment;
}

}  // namespace

std::string_view ColumnKindName(ColumnKind kind) { return kKinds[static_cast<size_t>(kind)].name; }

std::optional<ColumnKind> ParseColumnKind(std::string_view name) {
  for (const KindName& entry : kKinds) {
    if (entry.name == name) {
      return entry.kind;
    }
  }
  return std::nullopt;
}

Category CategoryOf(ColumnKind kind) { return kKinds[static_cast<size_t>(kind)].category; }

ColumnKind KindOfName(std::string_view name) { return KindFromName(name); }

std::string_view CategoryName(Category category) {
  constexpr std::array<std::string_view, kCategoryCount + 1> kNamesOfCategories = {
      "identity",    "contact", "location", "device",  "referrer", "internal_ids",
      "credentials", "payment", "content",  "account", "activity", "none"};
  return kNamesOfCategories[static_cast<size_t>(category)];
}

std::string_view RecognitionSourceName(RecognitionSource source) {
  switch (source) {
    case RecognitionSource::kMap:
      return "map";
    case RecognitionSource::kName:
      return "name";
    case RecognitionSource::kContent:
      return "content";
    case RecognitionSource::kNameAndContent:
      return "name_and_content";
    case RecognitionSource::kNone:
      return "none";
  }
  return "none";
}

// The shapes of stored password hashes: crypt(3), argon2, Django, Werkzeug.
constexpr std::string_view kPasswordHashPrefixesArray[] = {
    "$2a$", "$2b$", "$2y$", "$argon2i$", "$argon2id$", "$argon2d$", "$6$",     "$5$",
    "$1$",  "$y$",  "pbkdf2_sha256$", "pbkdf2_sha1$", "sha1$", "bcrypt$", "scrypt:", "pbkdf2:"};
constexpr std::span<const std::string_view> kPasswordHashPrefixes(kPasswordHashPrefixesArray);
// The bytes those prefixes start with: a value starting otherwise (most of
// them, timestamps with their ':' too) is compared with none.
constexpr std::string_view kPasswordHashFirstBytes = "$psb";
static_assert(std::ranges::all_of(kPasswordHashPrefixesArray, [](std::string_view prefix) {
  return kPasswordHashFirstBytes.find(prefix.front()) != std::string_view::npos;
}));

bool LuhnValid(std::string_view digits) {
  if (digits.size() < 13 || digits.size() > 19) {
    return false;
  }
  uint32_t sum = 0;
  bool twice = false;
  for (auto digit = digits.rbegin(); digit != digits.rend(); ++digit) {
    if (!IsDigit(*digit)) {
      return false;
    }
    uint32_t value = static_cast<uint32_t>(*digit - '0');
    if (twice) {
      value = value * 2 > 9 ? value * 2 - 9 : value * 2;
    }
    sum += value;
    twice = !twice;
  }
  return sum % 10 == 0;
}

bool LooksLikePasswordHash(std::string_view value) {
  // Every prefix below starts with one of kPasswordHashFirstBytes and holds
  // a '$' or a ':': most values fail the first test, most others the
  // second, and one pass over the bytes costs less than sixteen comparisons
  // (find_first_of called memchr once a byte).
  const bool may_have_prefix =
      !value.empty() &&
      std::any_of(kPasswordHashFirstBytes.begin(), kPasswordHashFirstBytes.end(),
                  [first = value.front()](char byte) { return byte == first; }) &&
      std::any_of(value.begin(), value.end(), [](char byte) { return byte == '$' || byte == ':'; });
  for (const std::string_view prefix : may_have_prefix ? kPasswordHashPrefixes
                                                       : std::span<const std::string_view>()) {
    if (value.starts_with(prefix) && value.size() >= prefix.size() + 16) {
      return true;
    }
  }
  if (value.size() != 32 && value.size() != 40 && value.size() != 64 && value.size() != 128) {
    return false;
  }
  size_t letters = 0;
  for (const char byte : value) {
    if (!IsHex(byte)) {
      return false;
    }
    letters += IsDigit(byte) ? 0 : 1;
  }
  // A digest has letters; a 32-digit number is an id.
  return letters >= value.size() / 8;
}

ColumnKind ClassifyValue(std::string_view value, const privacy::Detectors& detectors) {
  if (value.empty()) {
    return ColumnKind::kUnknown;
  }
  if (LooksLikePasswordHash(value)) {
    return ColumnKind::kPasswordHash;
  }
  if (value.starts_with("Mozilla/") || value.find("AppleWebKit/") != std::string_view::npos ||
      value.find("Gecko/") != std::string_view::npos) {
    return ColumnKind::kUserAgent;
  }
  if (value.starts_with("http://") || value.starts_with("https://")) {
    return ColumnKind::kUrl;
  }
  if (IsUuid(value)) {
    return ColumnKind::kUserId;
  }
  if (IsIsoTimestamp(value)) {
    return ColumnKind::kTimestamp;
  }
  std::vector<Detection> detections;
  detectors.Scan(value, &detections);
  if (detections.size() == 1 && detections[0].begin == 0 && detections[0].length == value.size()) {
    return KindOfDetection(detections[0].kind);
  }
  if (LooksLikeContent(value)) {
    return ColumnKind::kContent;
  }
  const std::string lower = Lower(value);
  if (InList(lower, kOsNames)) {
    return ColumnKind::kOs;
  }
  if (InList(lower, kBrowserNames)) {
    return ColumnKind::kBrowser;
  }
  if (InList(lower, kDeviceNames)) {
    return ColumnKind::kDevice;
  }
  if (LooksLikeFullName(value)) {
    return ColumnKind::kFullName;
  }
  return ColumnKind::kUnknown;
}

std::vector<size_t> Recognition::ColumnsOf(ColumnKind kind) const {
  std::vector<size_t> found;
  for (size_t column_idx = 0; column_idx < columns.size(); ++column_idx) {
    if (columns[column_idx].kind == kind) {
      found.push_back(column_idx);
    }
  }
  return found;
}

bool Recognition::HasCategory(Category category) const {
  for (const ColumnRecognition& column : columns) {
    if (CategoryOf(column.kind) == category) {
      return true;
    }
    if (category == Category::kPayment && (column.card_values > 0 || column.iban_values > 0)) {
      return true;
    }
    if (category == Category::kCredentials && column.credential_values > 0) {
      return true;
    }
  }
  return false;
}

Result<ColumnOverride> ParseColumnOverride(std::string_view text) {
  const size_t dot = text.find('.');
  const size_t equals = text.rfind('=');
  if (dot == std::string_view::npos || equals == std::string_view::npos || equals < dot) {
    return Status::InvalidArgument("--map \"" + std::string(text) +
                                   "\": expected FILE.COLUMN=KIND (FILE leaked, accounts or orgs)");
  }
  ColumnOverride result;
  result.file = std::string(text.substr(0, dot));
  result.column = std::string(text.substr(dot + 1, equals - dot - 1));
  if (result.file != "leaked" && result.file != "accounts" && result.file != "orgs") {
    return Status::InvalidArgument("--map \"" + std::string(text) + "\": the file \"" +
                                   result.file + "\" is not leaked, accounts or orgs");
  }
  const std::string kind_name(text.substr(equals + 1));
  const auto kind = ParseColumnKind(kind_name);
  if (!kind.has_value() || *kind == ColumnKind::kUnknown) {
    std::string names;
    for (const KindName& entry : kKinds) {
      if (entry.kind != ColumnKind::kUnknown) {
        names += names.empty() ? "" : ", ";
        names += entry.name;
      }
    }
    return Status::InvalidArgument("--map \"" + std::string(text) + "\": unknown kind \"" +
                                   kind_name + "\"; one of " + names);
  }
  result.kind = *kind;
  return result;
}

namespace {

// What a column's sample says: the most frequent kind and its share.
void DecideContent(const std::vector<ColumnKind>& sample, ColumnRecognition* out) {
  std::array<uint64_t, kColumnKindCount> votes{};
  for (const ColumnKind kind : sample) {
    ++votes[static_cast<size_t>(kind)];
  }
  out->values_sampled = sample.size();
  size_t best = static_cast<size_t>(ColumnKind::kUnknown);
  for (size_t kind_idx = 0; kind_idx < kColumnKindCount; ++kind_idx) {
    if (kind_idx != static_cast<size_t>(ColumnKind::kUnknown) && votes[kind_idx] > votes[best]) {
      best = kind_idx;
    }
  }
  // Half the values or more must agree before content names a column.
  if (best != static_cast<size_t>(ColumnKind::kUnknown) && votes[best] * 2 >= out->values_sampled &&
      out->values_sampled > 0) {
    out->content_kind = static_cast<ColumnKind>(best);
    out->content_matches = votes[best];
  }
}

// Kinds a name may refine: content says "user id" for any UUID and "url"
// for any link, the name says which id or which link.
bool Compatible(ColumnKind name_kind, ColumnKind content_kind) {
  if (name_kind == content_kind) {
    return true;
  }
  const auto either = [&](ColumnKind a, ColumnKind b) {
    return name_kind == a && content_kind == b;
  };
  return either(ColumnKind::kOrgId, ColumnKind::kUserId) ||
         either(ColumnKind::kAnonymousId, ColumnKind::kUserId) ||
         either(ColumnKind::kAdminUserId, ColumnKind::kUserId) ||
         either(ColumnKind::kReferrer, ColumnKind::kUrl) ||
         either(ColumnKind::kAdminEmail, ColumnKind::kEmail) ||
         either(ColumnKind::kOrgName, ColumnKind::kFullName) ||
         either(ColumnKind::kUsername, ColumnKind::kEmail) ||
         either(ColumnKind::kUserId, ColumnKind::kEmail) ||
         either(ColumnKind::kPassword, ColumnKind::kPasswordHash) ||
         either(ColumnKind::kPassword, ColumnKind::kSecret) ||
         either(ColumnKind::kSecret, ColumnKind::kPasswordHash);
}

void DecideKind(ColumnRecognition* column) {
  const ColumnKind name_kind = column->name_kind;
  const ColumnKind content_kind = column->content_kind;
  const double share = column->values_sampled == 0
                           ? 0.0
                           : static_cast<double>(column->content_matches) /
                                 static_cast<double>(column->values_sampled);
  if (name_kind == ColumnKind::kUnknown && content_kind == ColumnKind::kUnknown) {
    return;
  }
  if (name_kind == ColumnKind::kUnknown) {
    column->kind = content_kind;
    column->source = RecognitionSource::kContent;
    column->confidence = share * 0.9;
    return;
  }
  if (content_kind == ColumnKind::kUnknown || Compatible(name_kind, content_kind)) {
    column->kind = name_kind;
    const bool agrees = content_kind != ColumnKind::kUnknown;
    column->source = agrees ? RecognitionSource::kNameAndContent : RecognitionSource::kName;
    column->confidence = agrees ? 0.8 + 0.2 * share : 0.7;
    return;
  }
  // The name and the values disagree. Values that are card numbers, hashes
  // or secrets win: the file holds them whatever the column is called.
  const bool strong = content_kind == ColumnKind::kEmail ||
                      content_kind == ColumnKind::kIpAddress ||
                      content_kind == ColumnKind::kUserAgent || content_kind == ColumnKind::kPhone;
  if (IsSensitiveKind(content_kind) || (strong && share >= 0.9)) {
    column->kind = content_kind;
    column->source = RecognitionSource::kContent;
    column->confidence = share * 0.9;
    column->note = "the name says " + std::string(ColumnKindName(name_kind)) + ", the values say " +
                   std::string(ColumnKindName(content_kind));
    return;
  }
  column->kind = name_kind;
  column->source = RecognitionSource::kName;
  column->confidence = 0.5;
  column->note = "the values look like " + std::string(ColumnKindName(content_kind)) +
                 "; kept the name's kind";
}

// The shortest value that can hold a card number (13 digits), an IBAN (15
// characters), an API key or JWT (15), a bearer token (16), a secret (32) or
// a password hash (32 hex digits; crypt shapes are longer): shorter cells
// are not scanned (src/privacy/detectors.cc names those lengths; the
// decoded layers it tries are shorter than the text they come from).
constexpr size_t kSensitiveValueBytesMin = 13;

// The detections the every-cell scan looks for: those KindOfDetection
// makes a card number, an IBAN or a secret. Asking the detectors for these
// alone skips their email, phone and IP scanners on the cells (most of
// them) that hold no candidate of these kinds.
constexpr uint32_t kSensitiveDetectionKinds =
    (1u << static_cast<uint32_t>(PiiKind::kCard)) | (1u << static_cast<uint32_t>(PiiKind::kIban)) |
    (1u << static_cast<uint32_t>(PiiKind::kJwt)) |
    (1u << static_cast<uint32_t>(PiiKind::kApiKey)) |
    (1u << static_cast<uint32_t>(PiiKind::kSecret));

}  // namespace

namespace {

// Adds the counts a scan makes (ScanSensitiveRows) of one column to `info`.
void AddScanCounts(const ColumnRecognition& counts, ColumnRecognition* info) {
  info->values_non_empty += counts.values_non_empty;
  info->card_values += counts.card_values;
  info->iban_values += counts.iban_values;
  info->credential_values += counts.credential_values;
}

// ScanSensitiveCells over rows [row_begin, row_end) of `chunk`; `cells`
// indexed from row_begin.
void ScanSensitiveRows(const Table& chunk, size_t row_begin, size_t row_end,
                       const privacy::Detectors& detectors, Recognition* recognition,
                       std::vector<uint8_t>* cells) {
  cells->clear();
  const size_t columns = chunk.columns().size();
  std::vector<Detection> detections;
  for (size_t row = row_begin; row < row_end; ++row) {
    chunk.ForEachCell(row, [&](size_t column, std::string_view value) {
      ColumnRecognition& info = recognition->columns[column];
      ++info.values_non_empty;
      if (value.size() < kSensitiveValueBytesMin) {
        return;  // too short to hold any of them: most cells (cities, OS names, ids)
      }
      uint8_t bits = 0;
      if (LooksLikePasswordHash(value)) {
        bits |= 2;
      }
      detections.clear();
      detectors.ScanKinds(value, kSensitiveDetectionKinds, &detections);
      for (const Detection& detection : detections) {
        const ColumnKind kind = KindOfDetection(detection.kind);
        if (kind == ColumnKind::kCardNumber || kind == ColumnKind::kIban) {
          bits |= 1;
          ++(kind == ColumnKind::kCardNumber ? info.card_values : info.iban_values);
        } else if (kind == ColumnKind::kSecret) {
          bits |= 2;
        }
      }
      if ((bits & 2) != 0) {
        ++info.credential_values;
      }
      if (bits != 0) {
        if (cells->empty()) {
          cells->assign((row_end - row_begin) * columns, 0);
        }
        (*cells)[(row - row_begin) * columns + column] = bits;
      }
    });
  }
}

// A table this long (the accounts file) is scanned in two halves on two
// threads: at 10M accounts the scan took 3.9 s on one while the other
// core had nothing to do.
constexpr size_t kScanInHalvesRowsMin = 65'536;

// ScanSensitiveCells over the whole of a table read whole, in two halves
// on two threads when it is long; the same counts and cells.
void ScanSensitiveTable(const Table& table, const privacy::Detectors& detectors,
                        Recognition* recognition, std::vector<uint8_t>* cells) {
  const size_t rows = table.row_count();
  if (rows < kScanInHalvesRowsMin) {
    ScanSensitiveRows(table, 0, rows, detectors, recognition, cells);
    return;
  }
  const size_t half = rows / 2;
  Recognition second_counts;
  second_counts.columns.resize(recognition->columns.size());
  std::vector<uint8_t> second_cells;
  std::thread second([&] {
    ScanSensitiveRows(table, half, rows, detectors, &second_counts, &second_cells);
  });
  ScanSensitiveRows(table, 0, half, detectors, recognition, cells);
  second.join();
  for (size_t column = 0; column < recognition->columns.size(); ++column) {
    AddScanCounts(second_counts.columns[column], &recognition->columns[column]);
  }
  if (cells->empty() && second_cells.empty()) {
    return;
  }
  const size_t columns = table.columns().size();
  cells->resize(half * columns, 0);  // the first half's, zeros when it had none
  if (second_cells.empty()) {
    cells->resize(rows * columns, 0);
  } else {
    cells->insert(cells->end(), second_cells.begin(), second_cells.end());
  }
}

}  // namespace

void ScanSensitiveCells(const Table& chunk, const privacy::Detectors& detectors,
                        Recognition* recognition, std::vector<uint8_t>* cells) {
  ScanSensitiveRows(chunk, 0, chunk.row_count(), detectors, recognition, cells);
}

void ColumnSampler::Add(const Table& chunk) {
  const size_t columns = chunk.columns().size();
  if (samples_.size() < columns) {
    samples_.resize(columns);
  }
  for (size_t row = 0; row < chunk.row_count(); ++row, ++rows_) {
    for (size_t column = 0; column < columns; ++column) {
      Sample& sample = samples_[column];
      if (rows_ % sample.stride != 0) {
        continue;
      }
      const std::string_view value = chunk.Cell(row, column);
      if (value.empty()) {
        continue;
      }
      sample.kept.push_back({rows_, ClassifyValue(value, detectors_)});
      if (sample.kept.size() < 2 * kRecognitionSampleMax) {
        continue;
      }
      // Full: keep every other stride's rows, and take half as many from now on.
      sample.stride *= 2;
      std::erase_if(sample.kept,
                    [&](const Sampled& sampled) { return sampled.row % sample.stride != 0; });
    }
  }
}

Result<Recognition> ColumnSampler::Decide(const Table& table, std::string_view file,
                                          const std::vector<ColumnOverride>& overrides) const {
  Recognition recognition;
  recognition.columns.resize(table.columns().size());
  std::vector<ColumnKind> sample;
  for (size_t column = 0; column < table.columns().size(); ++column) {
    ColumnRecognition& info = recognition.columns[column];
    info.name = table.columns()[column];
    info.name_kind = KindFromName(info.name);
    // At most kRecognitionSampleMax of the values kept, evenly over them.
    sample.clear();
    if (column < samples_.size()) {
      const std::vector<Sampled>& kept = samples_[column].kept;
      const size_t taken = std::min(kept.size(), kRecognitionSampleMax);
      for (size_t taken_idx = 0; taken_idx < taken; ++taken_idx) {
        sample.push_back(kept[taken_idx * kept.size() / taken].kind);
      }
    }
    DecideContent(sample, &info);
    DecideKind(&info);
  }
  for (const ColumnOverride& override_entry : overrides) {
    if (override_entry.file != file) {
      continue;
    }
    const auto column = table.FindColumn(override_entry.column);
    if (!column.has_value()) {
      std::string known;
      for (size_t column_idx = 0; column_idx < table.columns().size() && column_idx < 40;
           ++column_idx) {
        known += (column_idx == 0 ? "" : ", ") + table.columns()[column_idx];
      }
      return Status::InvalidArgument("--map " + override_entry.file + "." + override_entry.column +
                                     ": the " + std::string(file) +
                                     " file has no such column (it has: " + known + ")");
    }
    ColumnRecognition& info = recognition.columns[*column];
    info.kind = override_entry.kind;
    info.source = RecognitionSource::kMap;
    info.confidence = 1.0;
  }
  return recognition;
}

Result<Recognition> RecognizeColumns(const Table& table, std::string_view file,
                                     const std::vector<ColumnOverride>& overrides,
                                     const privacy::Detectors& detectors) {
  MP_ASSIGN_OR_RETURN(Recognition recognition,
                      RecognizeColumnKinds(table, file, overrides, detectors));
  ScanSensitiveTable(table, detectors, &recognition, &recognition.sensitive_cells);
  return recognition;
}

Result<Recognition> RecognizeColumnKinds(const Table& table, std::string_view file,
                                         const std::vector<ColumnOverride>& overrides,
                                         const privacy::Detectors& detectors) {
  ColumnSampler sampler(detectors);
  sampler.Add(table);
  return sampler.Decide(table, file, overrides);
}

void ScanTable(const Table& table, const privacy::Detectors& detectors, Recognition* scanned) {
  scanned->columns.assign(table.columns().size(), ColumnRecognition{});
  ScanSensitiveTable(table, detectors, scanned, &scanned->sensitive_cells);
}

void AddScan(Recognition scanned, Recognition* recognition) {
  for (size_t column = 0; column < recognition->columns.size() && column < scanned.columns.size();
       ++column) {
    AddScanCounts(scanned.columns[column], &recognition->columns[column]);
  }
  recognition->sensitive_cells = std::move(scanned.sensitive_cells);
}

}  // namespace minpanel::incident
