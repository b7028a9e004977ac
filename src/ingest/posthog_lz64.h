// LZString's decompressFromBase64 (lz-string 1.4/1.5), which posthog-js
// releases before 2021 used for `?compression=lz64` (internal to ingest).
// Pure and thread-safe. The dictionary is held as (prefix, last unit)
// links, never as strings, so memory is linear in the input and the output
// is bounded by `output_bytes_max` however the codes repeat.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::ingest::internal {

// Longest lz64 text accepted (its dictionary costs at most about 24 bytes
// a character).
inline constexpr size_t kLz64InputBytesMax = 1 << 20;

// Decodes LZString base64 text (a space counts as '+', as a form decoder
// leaves it) into UTF-8. InvalidArgument when the text is not a complete
// LZString stream or decodes to invalid UTF-16; ResourceExhausted over
// kLz64InputBytesMax input or `output_bytes_max` UTF-8 output.
Result<std::string> DecompressLz64(std::string_view text, size_t output_bytes_max);

}  // namespace minpanel::ingest::internal
