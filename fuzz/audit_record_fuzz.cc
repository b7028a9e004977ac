// Fuzzes the audit log's readers (docs/formats/audit.md), which must take
// any bytes an attacker or a bad disk leaves without crashing. The first
// input byte picks what the rest is:
//   mode 0: one record payload for DecodeEntry;
//   mode 1: a whole log file image (and, after a 0xff byte, an anchors
//           text, key lines included) for VerifyBytes, with and without a
//           public key, and the LogReader;
//   mode 2: payloads framed by the harness — a valid header, then records
//           separated by 0x00 bytes given correct chain hashes — so the
//           payload decoder is reached through the chain.
// Invariants: decoding fails only with Corruption; a payload that decodes
// re-encodes to bytes that decode to the same encoding; a verified log has
// exactly the records the LogReader passes, numbered from 1 (or from after
// the base of a pruned log's header). fuzz/audit_reader_fuzz.cc fuzzes the
// reader over a file in small pieces and the key index.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audit/audit.h"
#include "fuzz_check.h"

namespace minpanel::fuzz {
namespace {

void CheckPayload(std::string_view payload) {
  auto entry = audit::DecodeEntry(payload);
  if (!entry.ok()) {
    Check(entry.status().code() == StatusCode::kCorruption, "payload error is Corruption");
    return;
  }
  const std::string encoded = audit::EncodeEntry(*entry);
  auto again = audit::DecodeEntry(encoded);
  Check(again.ok(), "re-encoded payload decodes");
  Check(audit::EncodeEntry(*again) == encoded, "re-encoding is stable");
}

void CheckLog(std::string_view log, std::string_view anchors) {
  const audit::VerifyReport report = audit::VerifyBytes(log, anchors);
  // Key lines (key epochs): parsed, and signatures checked under each
  // epoch's key, given some key.
  (void)audit::CurrentAnchorsKey(anchors);
  static const audit::PublicKey kSomeKey{};
  (void)audit::VerifyBytes(log, anchors, &kSomeKey);
  audit::LogReader reader(log);
  const auto start = reader.Start();
  const uint64_t base_seq = start.ok() ? start->base_seq : 0;
  uint64_t records = 0;
  audit::LogRecord record;
  while (reader.Next(&record).value()) {
    Check(record.seq == base_seq + records + 1,
          "records numbered from 1, or from after a pruned log's base");
    Check(record.end_offset <= log.size(), "a record inside the image");
    Check(audit::DecodeEntry(record.payload).ok(), "a record the reader passes decodes");
    ++records;
  }
  Check(reader.end_offset() <= log.size(), "valid prefix inside the image");
  Check(report.records <= records, "verify passes no record the reader does not");
  if (report.ok) {
    Check(report.records == records, "verify and the reader agree");
    Check(reader.end() != audit::LogReader::End::kBroken, "a verified log is not broken");
  }
}

std::string Framed(std::string_view records) {
  std::string log(audit::kFileMagic);
  log.append("\x01\0\0\0\0\0\0\0", 8);
  std::array<uint8_t, audit::kHashBytes> head{};
  size_t start = 0;
  while (start <= records.size()) {
    size_t end = records.find('\0', start);
    if (end == std::string_view::npos) {
      end = records.size();
    }
    const std::string_view payload = records.substr(start, end - start);
    head = audit::ChainHash(head, payload);
    const auto length = static_cast<uint32_t>(payload.size());
    for (size_t byte_idx = 0; byte_idx < 4; ++byte_idx) {
      log.push_back(static_cast<char>((length >> (8 * byte_idx)) & 0xff));
    }
    log.append(payload);
    log.append(reinterpret_cast<const char*>(head.data()), head.size());
    start = end + 1;
  }
  return log;
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel::fuzz;
  if (size == 0) {
    return 0;
  }
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckPayload(rest);
      break;
    case 1: {
      const size_t split = rest.find('\xff');
      if (split == std::string_view::npos) {
        CheckLog(rest, "");
      } else {
        CheckLog(rest.substr(0, split), rest.substr(split + 1));
      }
      break;
    }
    default:
      CheckLog(Framed(rest), "");
      break;
  }
  return 0;
}
