// Fuzzes the URL and referrer generalisers and checks what must hold for any
// input: the output is bounded, has no control characters and no space or
// tab at either end, names no email in its path, and generalising twice
// changes nothing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "privacy/url.h"

namespace {

// Placeholders can be longer than what they replace ("1" → ":id"); a
// segment is at least one byte plus its '/', so this bounds the growth.
constexpr size_t kGrowthFactorMax = 6;

bool HasControlCharacter(std::string_view text) {
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return true;
    }
  }
  return false;
}

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// GeneraliseUrl cuts the blanks its answer ends in by the trimmed length,
// which is right only while the answer never starts with one.
void CheckEnds(const std::string& output) {
  using minpanel::fuzz::Check;
  Check(output.empty() || !IsBlank(output.front()), "no leading blank");
  Check(output.empty() || !IsBlank(output.back()), "no trailing blank");
}

void CheckGeneralised(std::string_view input, const std::string& output,
                      const minpanel::privacy::UrlPolicy& policy) {
  using minpanel::fuzz::Check;
  using minpanel::privacy::kUrlBytesMax;
  Check(output.size() <= kGrowthFactorMax * std::min(input.size(), kUrlBytesMax) + 16,
        "output bounded");
  Check(!HasControlCharacter(output), "no control characters");
  CheckEnds(output);
  const std::string_view before_query = std::string_view(output).substr(0, output.find('?'));
  Check(before_query.find('@') == std::string_view::npos, "no '@' outside the kept query");
  // A generalised URL longer than the cap would be cut again, so idempotence
  // holds only below it.
  if (!output.empty() && output.size() <= kUrlBytesMax) {
    Check(minpanel::privacy::GeneraliseUrl(output, policy) == output, "idempotent");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const privacy::UrlPolicy default_policy;
  CheckGeneralised(text, privacy::GeneraliseUrl(text, default_policy), default_policy);

  privacy::UrlPolicy keep_fragment;
  keep_fragment.keep_fragment = true;
  keep_fragment.query_keep_prefixes = {"utm_", "ref"};
  const std::string with_fragment = privacy::GeneraliseUrl(text, keep_fragment);
  fuzz::Check(!HasControlCharacter(with_fragment), "no control characters (fragment kept)");
  CheckEnds(with_fragment);

  const std::string host = privacy::ReferrerHost(text);
  fuzz::Check(host.size() <= privacy::kHostBytesMax + 2, "host bounded");
  fuzz::Check(host.find_first_of("/?#@") == std::string::npos || host == "$direct",
              "host only");
  return 0;
}
