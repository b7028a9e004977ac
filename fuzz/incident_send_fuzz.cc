// The parsers of `incident send`: the state file (docs/formats/incident.md,
// "send-state"), the recipient of a notice and the login file. Any bytes
// give a value or a clean error; a parsed state accounts for every byte and
// each of its lines formats back to a line that parses the same; a
// recipient is one deliverable address.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "incident/incident.h"

namespace {

namespace incident = minpanel::incident;
using minpanel::fuzz::Check;

void FuzzState(std::string_view text) {
  const auto state = incident::ParseSendState(text);
  if (!state.ok()) {
    return;
  }
  Check(state->valid_bytes + state->torn_tail_bytes == text.size(), "every byte accounted for");
  Check(state->last.size() <= state->lines, "a file per line at most");
  for (const auto& [file, line] : state->last) {
    Check(file == line.file, "keyed by its file");
    Check(!file.empty() && file.size() <= incident::kSendStatePathBytesMax, "path length");
    Check(file != ".." && !file.starts_with("../") && !file.ends_with("/..") &&
              file.find("/../") == std::string::npos,
          "no parent folder");
    Check(file.front() != '/', "relative path");
    Check(line.sha256.size() == 64, "sha256 length");
    Check(line.time_ms <= state->last_time_ms, "the latest time");
    const std::string again =
        std::string(incident::kSendStateMagic) + "\n" + incident::FormatSendStateLine(line);
    const auto reparsed = incident::ParseSendState(again);
    Check(reparsed.ok() && reparsed->last.size() == 1, "a formatted line parses");
    const incident::SendStateLine& copy = reparsed->last.begin()->second;
    Check(copy.outcome == line.outcome && copy.file == line.file && copy.sha256 == line.sha256 &&
              copy.time_ms == line.time_ms && copy.smtp_code == line.smtp_code,
          "a formatted line parses the same");
  }
}

void FuzzRecipient(std::string_view text) {
  const auto recipient = incident::NoticeRecipient(text);
  if (!recipient.ok()) {
    return;
  }
  Check(!recipient->empty() && recipient->size() <= 254, "address length");
  Check(std::count(recipient->begin(), recipient->end(), '@') == 1, "one @");
  Check(std::none_of(recipient->begin(), recipient->end(),
                     [](char byte) {
                       return static_cast<unsigned char>(byte) <= 0x20 || byte == ',' ||
                              byte == '<' || byte == '>' || byte == '"';
                     }),
        "no separators or control bytes");
}

void FuzzAuth(std::string_view text) {
  const auto auth = incident::ParseSmtpAuth(text);
  if (!auth.ok()) {
    return;
  }
  Check(!auth->user.empty() && auth->user.find(':') == std::string::npos, "user");
  Check(!auth->password.empty(), "password");
  Check(auth->user.size() + 1 + auth->password.size() <= text.size(), "inside the text");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      // Mostly past the magic line, where the lines are.
      FuzzState(text);
      FuzzState(std::string(incident::kSendStateMagic) + "\n" + std::string(text));
      break;
    }
    case 1:
      FuzzRecipient(text);
      break;
    default:
      FuzzAuth(text);
      break;
  }
  return 0;
}
