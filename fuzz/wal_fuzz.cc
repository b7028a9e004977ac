// Fuzzes the store's write-ahead log readers (docs/formats/wal.md), which
// must take any bytes a crash or a bad disk leaves without crashing. The
// first input byte picks what the rest is:
//   mode 0: one record payload for WalDecoder;
//   mode 1: a whole log file image for LogReader and DumpLogFile;
//   mode 2: records framed by the harness — a valid file header, then
//           (u16 length, payload) pairs given correct checksums, the last
//           possibly torn — so the payload decoder is reached through the
//           reader despite the CRC;
// its upper bits, when set, make the in-memory file return reads of that
// many bytes, to exercise the reader's refills.
// Invariants: decoding fails only with Corruption; a payload that decodes
// re-encodes to bytes that decode to the same encoding; the reader's offsets
// stay inside the image and move forward; DumpLogFile agrees with the walk.
//
// The seeds in fuzz/corpus/wal_fuzz come from a log the engine wrote (a
// `minpanel import` of events with every value type), cut per mode.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>

#include "fuzz_check.h"
#include "image_file_system.h"
#include "store/deletion.h"
#include "store/log_reader.h"
#include "store/store.h"
#include "store/wal_format.h"

namespace minpanel::fuzz {
namespace {

constexpr uint8_t kModeCount = 3;
constexpr uint64_t kImageFileNumber = 1;
const std::string kImagePath = "/fuzz/000001.log";

struct DecodedPayload {
  store::WalPayloadHeader header;
  std::vector<Event> events;
  std::vector<ProfileUpdate> updates;
};

// Decodes a whole payload; counts are bounded by the bytes each item takes.
// `version`: the file format the payload is read as (1 has no policy version,
// 2 none for profile updates).
Status DecodePayload(std::string_view payload, uint32_t version, DecodedPayload* decoded) {
  store::WalDecoder decoder(payload, version);
  MP_RETURN_IF_ERROR(decoder.ReadPayloadHeader(&decoded->header));
  for (uint32_t event_idx = 0; event_idx < decoded->header.event_count; ++event_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadEvent(&decoded->events.emplace_back()));
    Check(decoder.position() <= payload.size(), "decoder position inside the payload");
  }
  for (uint32_t update_idx = 0; update_idx < decoded->header.profile_update_count; ++update_idx) {
    MP_RETURN_IF_ERROR(decoder.ReadProfileUpdate(&decoded->updates.emplace_back()));
    Check(decoder.position() <= payload.size(), "decoder position inside the payload");
  }
  return Status::Ok();
}

std::string Encode(const DecodedPayload& decoded, uint32_t version) {
  std::string bytes;
  store::EncodePayloadHeader(decoded.header, &bytes);
  for (const Event& event : decoded.events) {
    store::EncodeEvent(event, &bytes, version);
  }
  for (const ProfileUpdate& update : decoded.updates) {
    store::EncodeProfileUpdate(update, &bytes, version);
  }
  return bytes;
}

// Returns whether the payload decoded; checks the round trip when it did.
bool CheckPayload(std::string_view payload, uint32_t version) {
  DecodedPayload decoded;
  const Status status = DecodePayload(payload, version, &decoded);
  if (!status.ok()) {
    Check(status.code() == StatusCode::kCorruption, "payload errors are Corruption");
    return false;
  }
  // Varints need not be minimal on disk, so the first encoding may differ
  // from the input; from then on it must be a fixed point.
  const std::string encoded = Encode(decoded, version);
  DecodedPayload again;
  Check(DecodePayload(encoded, version, &again).ok(), "a re-encoded payload decodes");
  Check(Encode(again, version) == encoded, "encoding is stable across a round trip");
  return true;
}

// Walks the image as recovery would; true when it ends cleanly with every
// payload decodable (then DumpLogFile must succeed too).
bool WalkImage(std::string_view image, size_t read_bytes_max) {
  ImageFile file(image, read_bytes_max);
  store::LogReader reader(&file, image.size());
  store::WalFileHeader header;
  bool all_zero = false;
  const auto header_outcome = reader.ReadFileHeader(&header, &all_zero);
  if (!header_outcome.ok()) {
    Check(header_outcome.status().code() == StatusCode::kCorruption,
          "header errors are Corruption");
    return false;
  }
  if (*header_outcome != store::LogReader::Outcome::kRecord) {
    Check(image.size() < store::kWalFileHeaderBytes, "a torn header is a short file");
    return false;
  }
  bool payloads_ok = true;
  uint64_t previous_end = store::kWalFileHeaderBytes;
  while (true) {
    std::string_view payload;
    std::string reason;
    const auto outcome = reader.ReadRecord(&payload, &reason);
    Check(outcome.ok(), "an in-memory file never fails to read");
    Check(reader.record_offset() == previous_end, "records are read back to back");
    if (*outcome != store::LogReader::Outcome::kRecord) {
      Check(*outcome != store::LogReader::Outcome::kEnd || reader.end_offset() == image.size(),
            "kEnd only at the end of the image");
      Check(*outcome == store::LogReader::Outcome::kEnd || !reason.empty(),
            "a failure has a reason");
      return *outcome == store::LogReader::Outcome::kEnd && payloads_ok;
    }
    Check(payload.size() <= store::kLogRecordBytesMax, "record within kLogRecordBytesMax");
    Check(reader.end_offset() ==
              reader.record_offset() + store::kWalRecordHeaderBytes + payload.size(),
          "end offset follows the record");
    Check(reader.end_offset() <= image.size(), "records inside the image");
    previous_end = reader.end_offset();
    if (reader.record_type() == store::WalRecordType::kPadding) {
      continue;
    }
    if (reader.record_type() == store::WalRecordType::kDeletion) {
      const auto deletion = store::DecodeDeletionPayload(payload);
      Check(deletion.ok() || deletion.status().code() == StatusCode::kCorruption,
            "deletion errors are Corruption");
      payloads_ok = deletion.ok() && payloads_ok;
      continue;
    }
    payloads_ok = CheckPayload(payload, header.format_version) && payloads_ok;
  }
}

void CheckImage(std::string_view image, size_t read_bytes_max) {
  const bool clean = WalkImage(image, read_bytes_max);
  ImageFileSystem file_system(kImagePath, image, read_bytes_max);
  std::ostringstream out;
  const Status dumped = store::DumpLogFile(file_system, kImagePath, out);
  Check(dumped.ok() || dumped.code() == StatusCode::kCorruption, "dump errors are Corruption");
  Check(dumped.ok() == clean, "DumpLogFile agrees with the reader");
}

void AppendFixed32(uint32_t value, std::string* out) {
  for (int byte_idx = 0; byte_idx < 4; ++byte_idx) {
    out->push_back(static_cast<char>((value >> (8 * byte_idx)) & 0xff));
  }
}

// Mode 2: a valid header, then (u16 length, payload) pairs with checksums.
std::string FrameRecords(std::string_view input) {
  std::string image = store::EncodeWalFileHeader(kImageFileNumber);
  size_t position = 0;
  while (position + 2 <= input.size()) {
    const uint32_t length = static_cast<uint8_t>(input[position]) |
                            (static_cast<uint32_t>(static_cast<uint8_t>(input[position + 1])) << 8);
    position += 2;
    const std::string_view payload = input.substr(position, length);
    position += payload.size();
    std::string checked;
    AppendFixed32(length, &checked);
    checked.push_back(static_cast<char>(store::WalRecordType::kBatch));
    checked.append(payload);
    AppendFixed32(store::Crc32(0, checked), &image);
    image += checked;  // torn when the input ran out before `length` bytes
  }
  return image;
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::fuzz;
  if (size == 0) {
    return 0;
  }
  const uint8_t mode = data[0] % kModeCount;
  const size_t small_reads = data[0] / kModeCount;  // 0: whole reads
  const size_t read_bytes_max = small_reads == 0 ? SIZE_MAX : small_reads;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (mode == 0) {
    // Every version: 1 (no policy versions), 2 (events' only), 3 (also
    // profile updates').
    for (uint32_t version = 1; version <= minpanel::store::kWalFormatVersion; ++version) {
      CheckPayload(input, version);
    }
  } else if (mode == 1) {
    CheckImage(input, read_bytes_max);
  } else {
    CheckImage(FrameRecords(input), read_bytes_max);
  }
  return 0;
}
