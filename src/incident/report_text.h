// Internal to the incident module: the plain-language text of the reports
// and notices (English and Spanish), the built-in notice templates and the
// small helpers report.cc and notices.cc share.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "incident/incident.h"

namespace minpanel::incident {

enum class Language : uint8_t { kEnglish, kSpanish };
inline constexpr size_t kLanguageCount = 2;
std::string_view LanguageCode(Language language);  // "en", "es"
// The language of an accounts-file value ("es", "es-MX", "Spanish",
// "español"); English when unknown.
Language LanguageOf(std::string_view value);

// "your email address or phone number" and so on.
std::string_view CategoryDescription(Category category, Language language);
// One phrase per column kind, for what of a person's own data was exposed.
std::string_view KindDescription(ColumnKind kind, Language language);
// "The file holds no passwords, password hashes, API keys or tokens." …
std::string_view NotInFileSentence(Category category, Language language);
// Article 33(3)(c): the likely consequences of the categories the file holds.
std::vector<std::string_view> LikelyConsequences(uint32_t file_categories);

// The built-in templates (docs/incident.md lists the placeholders).
std::string_view BuiltInTemplate(Language language, bool admin);

// Shared helpers.
std::string MarkdownEscape(std::string_view text);
std::vector<Category> CategoriesOf(uint32_t bits);
std::vector<Category> NotInFile(uint32_t file_categories);
std::string_view CellOf(const Table& table, const Recognition& columns, size_t row,
                        ColumnKind kind);
// An address a notice may be written or sent to: one '@', at most 254
// bytes, no spaces, quotes, angle brackets, commas or control bytes.
bool DeliverableAddress(std::string_view email);

}  // namespace minpanel::incident
