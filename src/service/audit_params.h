// What a read asked for, as its audit record says it (issue 6: "what …
// query or export parameters with secrets masked"; docs/formats/audit.md,
// "Parameters"; docs/security.md, "What the audit log keeps of a read"):
// the query or the export parameters as a compact JSON object, with
// everything that could name a person or hold a credential masked, so that
// an auditor sees what was asked without the record holding personal data.
//
// Masking rules, applied to every string, number and key of the query:
// - the value(s) of a filter on a subject's or an organisation's id or a
//   person's field (`distinct_id`, `$user_id`, `company_id`, `$email`, …:
//   privacy::ClassifyKey) become "<masked>" ("<masked:N values>" for a list);
// - the value of a key, or of a filter on a property, whose name looks like
//   a credential (secret, token, password, auth, …key) becomes
//   "<masked:credential>";
// - any other string a privacy detector flags (email, phone, card, IBAN, IP,
//   JWT, API key, secret) becomes "<masked:KIND>", an object key too;
// - a number of kAuditParamsDigitsMin or more integer digits becomes
//   "<masked:number>" (a phone or card number sent as a number), except the
//   query's own sizes and times (kAuditParamsNumberKeys);
// - text that is not UTF-8 becomes "<not UTF-8>", a query that is not JSON
//   {"query":"<not JSON>"};
// - the whole object is at most kAuditParamsBytesMax bytes: what does not
//   fit is dropped and a "<cut>" marker closes the innermost open list
//   ("<cut>") or object ("<cut>":true), so the text stays valid JSON.
//
// The functions are pure and thread-safe (the detectors are shared and
// immutable); their output is always a valid JSON object of valid UTF-8.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "privacy/detectors.h"

namespace minpanel::service {

struct ExportOptions;

// The most bytes of a record's `params`.
inline constexpr size_t kAuditParamsBytesMax = 4096;
// Containers nested deeper than this are replaced by "<cut>" (the query
// parser refuses far less deep queries anyway).
inline constexpr size_t kAuditParamsDepthMax = 16;
// Numbers with this many integer digits or more are masked.
inline constexpr size_t kAuditParamsDigitsMin = 7;

inline constexpr std::string_view kMaskedValue = "<masked>";
inline constexpr std::string_view kMaskedCredential = "<masked:credential>";
inline constexpr std::string_view kMaskedNumber = "<masked:number>";
inline constexpr std::string_view kNotUtf8 = "<not UTF-8>";
inline constexpr std::string_view kAuditParamsCut = "<cut>";

// The masked params of a query (its JSON as the caller sent it).
std::string QueryAuditParams(std::string_view query_json, const privacy::Detectors& detectors);

// The masked params of an export: from_date, to_date, event (the names,
// each masked as AuditName does), limit, distinct_id ("<masked>") and
// distinct_ids ("<masked:N ids>"); absent options are left out.
std::string ExportAuditParams(const ExportOptions& options, const privacy::Detectors& detectors);

// An event name or property key for a record's `events` or `properties`
// list: itself, or "<masked:KIND>" when a detector flags it ("<not UTF-8>"
// when it is not UTF-8).
std::string AuditName(std::string_view name, const privacy::Detectors& detectors);

// Whether a key or property name looks like a credential's (secret, token,
// password, passwd, auth, credential, cookie, or ending in "key"; letters
// compared without case, other characters ignored).
bool LooksLikeCredentialName(std::string_view name);

}  // namespace minpanel::service
