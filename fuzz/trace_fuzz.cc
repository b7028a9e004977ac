// Fuzzes what `minpanel audit trace LEAKED_FILE` reads (query/watermark.h;
// docs/security.md, "Watermarked exports"): the leaked file, any bytes,
// scanned for candidate decoy ids (LeakedIds), and the watermark field of an
// audit record (ParseWatermarkField). Checks that every candidate is a run
// of exactly 32 hex digits of the file, that no more are found than the
// file can hold, that a decoy planted in the file is found and recognised
// with the watermark key whatever surrounds it, and that a parsed watermark
// field's decoy count is capped.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "query/watermark.h"

namespace {

std::string Lowered(std::string_view text) {
  std::string lowered(text);
  for (char& c : lowered) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return lowered;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto ids = query::LeakedIds(text);
  fuzz::Check(ids.size() <= size / 32, "at most one id per 32 bytes");
  const std::string lowered = Lowered(text);
  for (const Id128& id : ids) {
    fuzz::Check(lowered.find(id.ToHex()) != std::string::npos, "each id is in the file");
  }

  query::WatermarkKey key{};
  key[0] = 7;
  const Id128 nonce{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  const Id128 decoy = query::DecoySubject(key, nonce, size % query::kDecoySubjectsMax);
  fuzz::Check(query::IsDecoySubject(key, decoy), "a decoy subject is recognised");
  const Id128 insert_id = query::DecoyInsertId(key, nonce, 0, size % query::kDecoyRowsPerSubjectMax);
  fuzz::Check(query::IsDecoyInsertId(key, insert_id), "a decoy insert id is recognised");
  // Planted between the file's halves, as a column of a row would stand.
  const std::string planted = std::string(text.substr(0, size / 2)) + ",psn_" +
                              decoy.ToHex() + "," + insert_id.ToHex() + "\n" +
                              std::string(text.substr(size / 2));
  const auto found = query::LeakedIds(planted);
  fuzz::Check(found.contains(decoy), "a planted decoy subject is found");
  fuzz::Check(found.contains(insert_id), "a planted decoy insert id is found");

  Id128 parsed_nonce;
  uint64_t decoys = query::kDecoySubjectsMax;
  if (query::ParseWatermarkField(text, &parsed_nonce, &decoys)) {
    fuzz::Check(size >= 32 && Lowered(text.substr(0, 32)) == parsed_nonce.ToHex(),
                "the nonce is the field's first 32 hex digits");
    fuzz::Check(decoys <= query::kDecoySubjectsMax, "the decoy count is capped");
  }
  return 0;
}
