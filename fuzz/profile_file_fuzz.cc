// Fuzzes the store's profile file reader (docs/formats/profiles.md), which
// must take any bytes a crash or a bad disk leaves without crashing. The
// first input byte picks what the rest is:
//   mode 0: a whole profile file image;
//   mode 1: records framed by the harness — a valid header of project 1,
//           then (u8 type, u16 length, payload) triples given correct
//           checksums — so the batch decoder and the group logic are
//           reached through the reader despite the CRC.
// Invariants: a scan fails only with Corruption; the whole part it reports
// lies inside the image and ends at a group's end; the updates it hands out
// re-encode, as one group at the reported log end, into a file that scans
// to the same updates; DumpProfileFile agrees on the whole part.
//
// The seeds in fuzz/corpus/profile_file_fuzz: a format-1 profile file the
// engine wrote (generated $set updates with every value type), and cut; and
// (the *_v2 seeds) format-2 files built from docs/formats/profiles.md, each
// update with a policy version (0, 3, unknown), whole, cut, and framed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "fuzz_check.h"
#include "image_file_system.h"
#include "store/manifest.h"
#include "store/profile_file.h"
#include "store/wal_format.h"

namespace minpanel::fuzz {
namespace {

constexpr uint32_t kProjectId = 1;
const std::string kImagePath = "/fuzz/1.prof";

void PutFixed32(uint32_t value, std::string* out) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    out->push_back(static_cast<char>(value >> (8 * byte_idx)));
  }
}

// A valid header, then each (type, u16 length, payload) framed with its CRC.
std::string Frame(std::string_view input) {
  std::string image = store::EncodeProfileFileHeader(kProjectId);
  size_t position = 0;
  while (position + 3 <= input.size()) {
    const uint8_t type = static_cast<uint8_t>(input[position]);
    const size_t length = static_cast<uint8_t>(input[position + 1]) |
                          (static_cast<size_t>(static_cast<uint8_t>(input[position + 2])) << 8);
    position += 3;
    const std::string_view payload = input.substr(position, std::min(length, input.size() - position));
    position += payload.size();
    std::string checked;
    PutFixed32(static_cast<uint32_t>(payload.size()), &checked);
    checked.push_back(static_cast<char>(type));
    checked.append(payload);
    PutFixed32(store::Crc32(0, checked), &image);
    image.append(checked);
  }
  return image;
}

struct Scanned {
  std::vector<store::StoredProfileUpdate> updates;
  store::ProfileFileScan scan;
};

Scanned ScanImage(std::string_view image) {
  ImageFileSystem file_system(kImagePath, image);
  Scanned scanned;
  Result<store::ProfileFileScan> scan = store::ScanProfileFile(
      file_system, kImagePath, image.size(), kProjectId,
      [&](const store::StoredProfileUpdate& stored, const store::LogPosition&) {
        scanned.updates.push_back(stored);
        return true;
      });
  if (!scan.ok()) {
    Check(scan.status().code() == StatusCode::kCorruption, "a scan fails only with Corruption");
    scanned.scan.valid_bytes = UINT64_MAX;
    return scanned;
  }
  scanned.scan = *scan;
  return scanned;
}

void Run(std::string_view image) {
  const Scanned first = ScanImage(image);
  if (first.scan.valid_bytes == UINT64_MAX) {
    return;
  }
  Check(first.scan.valid_bytes <= image.size(), "the whole part lies inside the image");
  Check(first.scan.updates == first.updates.size(), "every update of a whole group handed out");
  if (first.scan.groups == 0) {
    Check(first.updates.empty(), "no update without a group");
  }
  if (first.scan.valid_bytes < store::kProfileFileHeaderBytes) {
    Check(first.scan.valid_bytes == 0 && !first.scan.tail_reason.empty(), "a torn header is a tail");
    return;
  }
  // The whole part alone scans to the same updates, with no tail.
  const Scanned whole = ScanImage(image.substr(0, first.scan.valid_bytes));
  Check(whole.scan.valid_bytes == first.scan.valid_bytes, "the whole part is whole");
  Check(whole.scan.tail_reason.empty(), "the whole part has no tail");
  Check(whole.updates.size() == first.updates.size(), "the whole part holds the same updates");
  if (first.scan.groups > 0) {
    // Re-encoded as one group, the updates scan back the same.
    std::string again = store::EncodeProfileFileHeader(kProjectId);
    store::EncodeProfileGroup(kProjectId, first.updates, first.scan.log_end, &again);
    const Scanned reencoded = ScanImage(again);
    Check(reencoded.scan.tail_reason.empty(), "a re-encoded file has no tail");
    Check(reencoded.updates.size() == first.updates.size(), "re-encoded: as many updates");
    for (size_t update_idx = 0; update_idx < first.updates.size(); ++update_idx) {
      Check(reencoded.updates[update_idx].stored_at_ms == first.updates[update_idx].stored_at_ms,
            "re-encoded: the store time");
      Check(reencoded.updates[update_idx].update.subject == first.updates[update_idx].update.subject,
            "re-encoded: the subject");
      Check(reencoded.updates[update_idx].update.policy_version ==
                first.updates[update_idx].update.policy_version,
            "re-encoded: the policy version");
      Check(reencoded.updates[update_idx].update.properties.size() ==
                first.updates[update_idx].update.properties.size(),
            "re-encoded: the properties");
    }
  }
  ImageFileSystem file_system(kImagePath, image);
  std::ostringstream dump;
  const Status dumped = store::DumpProfileFile(file_system, kImagePath, dump);
  Check(dumped.ok() == first.scan.tail_reason.empty(), "the dump fails exactly where the scan stops");
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    minpanel::fuzz::Run(input);
  } else {
    minpanel::fuzz::Run(minpanel::fuzz::Frame(input));
  }
  return 0;
}
