// Fuzzes the audit log's streaming reader over a file and the key index
// (docs/formats/audit.md, "Key index"), which must take any bytes an
// attacker or a bad disk leaves without crashing. The first input byte
// picks what the rest is:
//   mode 0: a log image, read through a file in pieces of 1 to 64 bytes
//           (the second byte) and as an image in memory;
//   mode 1: an index file for DecodeIndexSegment;
//   mode 2: 16 bytes of a record reference (seq, offset), then a log image,
//           for ReadIndexedRecord.
// Invariants: the file and the image give the same records and end the same
// way; an index file that decodes re-encodes to the same bytes, and one
// key's decode is a subset of the whole; an indexed record that checks has
// the seq it was asked for.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "audit/audit.h"
#include "fuzz_check.h"

namespace minpanel::fuzz {
namespace {

// A file whose bytes are the fuzzer's input.
class MemoryFile final : public RandomAccessFile {
 public:
  explicit MemoryFile(std::string_view bytes) : bytes_(bytes) {}
  Status ReadAt(uint64_t offset, size_t length, std::string* out) const override {
    out->assign(offset >= bytes_.size() ? std::string_view() : bytes_.substr(offset, length));
    return Status::Ok();
  }
  Result<uint64_t> Size() const override { return uint64_t{bytes_.size()}; }

 private:
  std::string_view bytes_;
};

void CheckPieces(std::string_view log, size_t chunk_bytes) {
  audit::LogReader image(log);
  audit::LogReader file(std::make_unique<MemoryFile>(log), true, chunk_bytes);
  const auto image_start = image.Start();
  const auto file_start = file.Start();
  Check(image_start.ok() == file_start.ok(), "the header reads the same");
  audit::LogRecord from_image;
  audit::LogRecord from_file;
  while (true) {
    const bool more = image.Next(&from_image).value();
    Check(file.Next(&from_file).value() == more, "the same number of records");
    if (!more) {
      break;
    }
    Check(from_image.seq == from_file.seq && from_image.offset == from_file.offset &&
              from_image.end_offset == from_file.end_offset && from_image.hash == from_file.hash &&
              from_image.payload == from_file.payload,
          "the same record");
  }
  Check(image.end() == file.end() && image.end_offset() == file.end_offset() &&
            image.torn_tail_bytes() == file.torn_tail_bytes(),
        "the same end");
}

void CheckIndex(std::string_view bytes) {
  auto whole = audit::DecodeIndexSegment(bytes);
  if (!whole.ok()) {
    Check(whole.status().code() == StatusCode::kCorruption, "an index error is Corruption");
    return;
  }
  Check(audit::EncodeIndexSegment(*whole) == bytes, "an index file re-encodes to its bytes");
  if (!whole->keys.empty()) {
    const std::string& key = whole->keys.back().first;
    auto only = audit::DecodeIndexSegment(bytes, key);
    Check(only.ok() && only->keys.size() == 1 && only->keys[0] == whole->keys.back(),
          "one key's decode is the whole's");
  }
}

void CheckIndexedRecord(std::string_view input) {
  if (input.size() < 16) {
    return;
  }
  audit::KeyRecordRef ref;
  std::memcpy(&ref.seq, input.data(), 8);
  std::memcpy(&ref.offset, input.data() + 8, 8);
  const std::string_view log = input.substr(16);
  const auto start = audit::ReadLogStart(log);
  if (!start.ok()) {
    return;
  }
  const MemoryFile file(log);
  auto payload = audit::ReadIndexedRecord(file, *start, ref);
  if (!payload.ok()) {
    Check(payload.status().code() == StatusCode::kCorruption,
          "an indexed read error is Corruption");
    return;
  }
  const std::string prefix = "{\"seq\":" + std::to_string(ref.seq) + ",";
  Check(payload->starts_with(prefix), "an indexed record has the seq asked for");
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::fuzz;
  if (size < 2) {
    return 0;
  }
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckPieces(rest.substr(1), static_cast<size_t>(rest[0] & 0x3f) + 1);
      break;
    case 1:
      CheckIndex(rest);
      break;
    default:
      CheckIndexedRecord(rest);
      break;
  }
  return 0;
}
