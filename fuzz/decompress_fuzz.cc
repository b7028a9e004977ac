// Fuzzes DecompressBody. The first byte picks the Content-Encoding.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"

namespace {

constexpr size_t kOutputBytesMax = 1 << 20;
constexpr size_t kRatioMax = 50;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  if (size == 0) {
    return 0;
  }
  const auto encoding = static_cast<ingest::ContentEncoding>(data[0] % 3);
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto output = ingest::DecompressBody(body, encoding, kOutputBytesMax, kRatioMax);
  if (!output.ok()) {
    return 0;
  }
  const bool inflated = encoding != ingest::ContentEncoding::kIdentity ||
                        (body.size() >= 2 && static_cast<uint8_t>(body[0]) == 0x1f &&
                         static_cast<uint8_t>(body[1]) == 0x8b);
  if (inflated) {
    fuzz::Check(output->size() <= kOutputBytesMax, "output limit");
    fuzz::Check(output->size() <= kRatioMax * body.size(), "ratio limit");
  } else {
    fuzz::Check(*output == body, "identity returns the body");
  }
  return 0;
}
