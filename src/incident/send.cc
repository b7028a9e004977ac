// Delivery of the notices over SMTP through libcurl (Debian
// libcurl4-openssl-dev): STARTTLS or implicit TLS, login, one message per
// notice with the .eml's exact bytes, a rate limit, and a state file that
// makes a rerun resume without sending a notice twice. The state file's
// format: docs/formats/incident.md, "send-state"; the command:
// docs/incident.md, "minpanel incident send".
#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "audit/audit.h"
#include "incident/bounded_file.h"
#include "incident/incident.h"
#include "incident/report_text.h"

namespace minpanel::incident {

namespace {

constexpr std::string_view kOutcomeNames[] = {"sending", "sent", "refused", "unsent"};

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char byte) {
    return (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'f');
  });
}

// A notice's path as the state file holds it: relative, plain components.
bool ValidStatePath(std::string_view path) {
  if (path.empty() || path.size() > kSendStatePathBytesMax || path.front() == '/' ||
      path.back() == '/') {
    return false;
  }
  size_t begin = 0;
  while (begin <= path.size()) {
    const size_t end = std::min(path.find('/', begin), path.size());
    const std::string_view part = path.substr(begin, end - begin);
    if (part.empty() || part == "." || part == "..") {
      return false;
    }
    const bool plain = std::all_of(part.begin(), part.end(), [](char byte) {
      return std::isalnum(static_cast<unsigned char>(byte)) != 0 || byte == '.' || byte == '_' ||
             byte == '-';
    });
    if (!plain) {
      return false;
    }
    begin = end + 1;
  }
  return true;
}

template <typename Integer>
bool ParseDecimal(std::string_view text, Integer* value) {
  if (text.empty() || text.size() > 19 || text.front() < '0' || text.front() > '9' ||
      (text.size() > 1 && text.front() == '0')) {
    return false;
  }
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

Result<SendStateLine> ParseStateLine(std::string_view text, uint64_t line_number) {
  const auto corrupt = [line_number](std::string_view why) {
    return Status::Corruption(std::string(kSendStateFileName) + " line " +
                              std::to_string(line_number) + ": " + std::string(why));
  };
  std::vector<std::string_view> fields;
  size_t begin = 0;
  while (fields.size() < 6) {
    const size_t end = std::min(text.find(' ', begin), text.size());
    fields.push_back(text.substr(begin, end - begin));
    if (end == text.size()) {
      break;
    }
    begin = end + 1;
  }
  if (fields.size() != 5) {
    return corrupt("expected 5 fields: outcome, file, sha256, time_ms, smtp_code");
  }
  SendStateLine line;
  const auto outcome = std::find(std::begin(kOutcomeNames), std::end(kOutcomeNames), fields[0]);
  if (outcome == std::end(kOutcomeNames)) {
    return corrupt("unknown outcome (sending, sent, refused or unsent)");
  }
  line.outcome = static_cast<SendOutcome>(outcome - std::begin(kOutcomeNames));
  if (!ValidStatePath(fields[1])) {
    return corrupt("the file is not a plain relative path of at most kSendStatePathBytesMax (" +
                   std::to_string(kSendStatePathBytesMax) + ") bytes");
  }
  line.file = std::string(fields[1]);
  if (fields[2].size() != 64 || !IsLowerHex(fields[2])) {
    return corrupt("sha256: 64 lowercase hex digits");
  }
  line.sha256 = std::string(fields[2]);
  if (!ParseDecimal(fields[3], &line.time_ms)) {
    return corrupt("time_ms: a decimal number");
  }
  if (!ParseDecimal(fields[4], &line.smtp_code) ||
      (line.smtp_code != 0 && (line.smtp_code < 200 || line.smtp_code > 599))) {
    return corrupt("smtp_code: 0 or a reply code from 200 to 599");
  }
  return line;
}

}  // namespace

std::string_view SendOutcomeName(SendOutcome outcome) {
  return kOutcomeNames[static_cast<size_t>(outcome)];
}

Result<SendState> ParseSendState(std::string_view text) {
  if (text.size() > kSendStateBytesMax) {
    return Status::ResourceExhausted(std::string(kSendStateFileName) +
                                     ": larger than kSendStateBytesMax (" +
                                     std::to_string(kSendStateBytesMax) + " bytes)");
  }
  SendState state;
  const std::string magic = std::string(kSendStateMagic) + "\n";
  if (!text.starts_with(magic)) {
    if (magic.starts_with(text)) {
      // A crash while the file was being created: nothing recorded yet.
      state.torn_tail_bytes = text.size();
      return state;
    }
    return Status::Corruption(std::string(kSendStateFileName) + " line 1: not \"" +
                              std::string(kSendStateMagic) +
                              "\" (not a minpanel send state file, "
                              "or a newer version)");
  }
  size_t offset = magic.size();
  uint64_t line_number = 1;
  while (offset < text.size()) {
    ++line_number;
    const size_t end = text.find('\n', offset);
    if (end == std::string_view::npos) {
      state.torn_tail_bytes = text.size() - offset;
      break;
    }
    MP_ASSIGN_OR_RETURN(SendStateLine line,
                        ParseStateLine(text.substr(offset, end - offset), line_number));
    state.last_time_ms = std::max(state.last_time_ms, line.time_ms);
    std::string file = line.file;
    state.last.insert_or_assign(std::move(file), std::move(line));
    ++state.lines;
    offset = end + 1;
  }
  state.valid_bytes = text.size() - state.torn_tail_bytes;
  if (state.last.size() > kSendMessagesMax) {
    return Status::ResourceExhausted(std::string(kSendStateFileName) +
                                     ": more files than kSendMessagesMax (" +
                                     std::to_string(kSendMessagesMax) + ")");
  }
  return state;
}

std::string FormatSendStateLine(const SendStateLine& line) {
  return std::string(SendOutcomeName(line.outcome)) + " " + line.file + " " + line.sha256 + " " +
         std::to_string(line.time_ms) + " " + std::to_string(line.smtp_code) + "\n";
}

namespace {

bool HeaderNameIs(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':') {
    return false;
  }
  for (size_t byte_idx = 0; byte_idx < name.size(); ++byte_idx) {
    if (std::tolower(static_cast<unsigned char>(line[byte_idx])) != name[byte_idx]) {
      return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

// The address of a To: header's value: "<a@b>", "Name <a@b>" or "a@b".
Result<std::string> AddressOf(std::string_view value) {
  value = Trim(value);
  const size_t open = value.find('<');
  if (open != std::string_view::npos) {
    const size_t close = value.find('>', open);
    if (close == std::string_view::npos || !Trim(value.substr(close + 1)).empty() ||
        value.find('<', open + 1) != std::string_view::npos) {
      return Status::InvalidArgument("To: one address in angle brackets");
    }
    value = value.substr(open + 1, close - open - 1);
  }
  if (!DeliverableAddress(value)) {
    return Status::InvalidArgument(
        "To: not one deliverable address (one '@', no spaces, quotes or commas, at most 254 "
        "bytes)");
  }
  return std::string(value);
}

}  // namespace

Result<std::string> NoticeRecipient(std::string_view eml) {
  if (eml.size() > kNoticeBytesMax) {
    return Status::ResourceExhausted("larger than kNoticeBytesMax (" +
                                     std::to_string(kNoticeBytesMax) + " bytes)");
  }
  std::optional<std::string> recipient;
  bool in_headers = true;
  bool in_to = false;
  std::string to_value;
  size_t offset = 0;
  uint64_t line_number = 0;
  while (offset < eml.size()) {
    ++line_number;
    const size_t end = eml.find('\n', offset);
    if (end == std::string_view::npos || end == offset || eml[end - 1] != '\r') {
      if (end == std::string_view::npos && !in_headers) {
        // The last line of the body may end without its CRLF.
        if (eml.size() - offset > kNoticeLineBytesMax) {
          return Status::InvalidArgument("line " + std::to_string(line_number) +
                                         ": longer than kNoticeLineBytesMax (" +
                                         std::to_string(kNoticeLineBytesMax) + " bytes)");
        }
        break;
      }
      return Status::InvalidArgument("line " + std::to_string(line_number) +
                                     ": does not end in CRLF");
    }
    const std::string_view line = eml.substr(offset, end - 1 - offset);
    offset = end + 1;
    if (line.size() > kNoticeLineBytesMax) {
      return Status::InvalidArgument("line " + std::to_string(line_number) +
                                     ": longer than kNoticeLineBytesMax (" +
                                     std::to_string(kNoticeLineBytesMax) + " bytes)");
    }
    if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
      return Status::InvalidArgument("line " + std::to_string(line_number) +
                                     ": a bare CR or a NUL byte");
    }
    if (!in_headers) {
      continue;
    }
    const bool folded = !line.empty() && (line.front() == ' ' || line.front() == '\t');
    if (folded && in_to) {
      to_value += line;
      continue;
    }
    in_to = false;
    if (line.empty()) {
      in_headers = false;
    } else if (HeaderNameIs(line, "to")) {
      if (recipient.has_value() || !to_value.empty()) {
        return Status::InvalidArgument("line " + std::to_string(line_number) +
                                       ": a second To: header (one recipient per notice)");
      }
      in_to = true;
      to_value = std::string(line.substr(3));
      recipient = std::string();
    } else if (HeaderNameIs(line, "cc") || HeaderNameIs(line, "bcc")) {
      return Status::InvalidArgument("line " + std::to_string(line_number) +
                                     ": a Cc: or Bcc: header (one recipient per notice)");
    } else if (!folded && line.find(':') == std::string_view::npos) {
      return Status::InvalidArgument("line " + std::to_string(line_number) +
                                     ": not a header (NAME: value) before the blank line");
    }
  }
  if (in_headers) {
    return Status::InvalidArgument("no blank line between the headers and the body");
  }
  if (!recipient.has_value()) {
    return Status::InvalidArgument("no To: header");
  }
  return AddressOf(to_value);
}

Result<SmtpAuth> ParseSmtpAuth(std::string_view text) {
  if (text.size() > kSmtpAuthFileBytesMax) {
    return Status::ResourceExhausted("larger than kSmtpAuthFileBytesMax (" +
                                     std::to_string(kSmtpAuthFileBytesMax) + " bytes)");
  }
  if (text.ends_with("\r\n")) {
    text.remove_suffix(2);
  } else if (text.ends_with('\n')) {
    text.remove_suffix(1);
  }
  const bool control = std::any_of(text.begin(), text.end(), [](char byte) {
    return static_cast<unsigned char>(byte) < 0x20 || byte == 0x7f;
  });
  const size_t colon = text.find(':');
  if (control || colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("one line USER:PASSWORD (neither empty, no control characters)");
  }
  return SmtpAuth{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// notices/users/*.eml, then notices/admins/*.eml, each sorted by name.
Result<std::vector<std::string>> ListNotices(const std::string& folder) {
  std::vector<std::string> files;
  std::error_code error;
  if (!std::filesystem::is_directory(folder + "/notices", error)) {
    return Status::NotFound(folder +
                            "/notices: no notices (was the folder written with "
                            "--no-notices, or is it not an incident output folder?)");
  }
  for (const std::string_view kind : {"users", "admins"}) {
    const std::string relative = "notices/" + std::string(kind);
    std::vector<std::string> names;
    std::filesystem::directory_iterator entries(folder + "/" + relative, error);
    if (error) {
      continue;  // a folder with admins only, or users only
    }
    for (const auto& entry : entries) {
      const std::string name = entry.path().filename().string();
      if (!name.ends_with(".eml")) {
        continue;
      }
      if (names.size() + files.size() >= kSendMessagesMax) {
        return Status::ResourceExhausted(
            folder + ": more notices than kSendMessagesMax (" + std::to_string(kSendMessagesMax) +
            "); send them with your mail system from notices/mail-merge.csv");
      }
      if (!ValidStatePath(relative + "/" + name)) {
        return Status::InvalidArgument(relative + "/" + name +
                                       ": a notice's file name must be plain (letters, digits, "
                                       ". _ -)");
      }
      names.push_back(relative + "/" + name);
    }
    std::sort(names.begin(), names.end());
    files.insert(files.end(), names.begin(), names.end());
  }
  return files;
}

struct SmtpUrl {
  std::string scheme;
  std::string host;
};

bool IsLocalHost(std::string_view host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

// Checks the URL with libcurl's own parser: smtp or smtps, a host, and no
// credentials in it (they would be on the command line).
Result<SmtpUrl> ParseSmtpUrl(const std::string& url) {
  CURLU* parsed = curl_url();
  if (parsed == nullptr) {
    return Status::ResourceExhausted("libcurl: out of memory");
  }
  SmtpUrl result;
  Status status = Status::Ok();
  if (curl_url_set(parsed, CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    status = Status::InvalidArgument("--smtp: not a URL (smtp://host:587 or smtps://host:465)");
  }
  const auto part = [parsed](CURLUPart which) {
    char* text = nullptr;
    std::string value;
    if (curl_url_get(parsed, which, &text, 0) == CURLUE_OK && text != nullptr) {
      value = text;
    }
    curl_free(text);
    return value;
  };
  if (status.ok()) {
    result.scheme = part(CURLUPART_SCHEME);
    result.host = part(CURLUPART_HOST);
    if (result.scheme != "smtp" && result.scheme != "smtps") {
      status = Status::InvalidArgument("--smtp: the scheme must be smtp:// (STARTTLS) or smtps://");
    } else if (result.host.empty()) {
      status = Status::InvalidArgument("--smtp: no host");
    } else if (!part(CURLUPART_USER).empty() || !part(CURLUPART_PASSWORD).empty()) {
      status = Status::InvalidArgument(
          "--smtp: no credentials in the URL (they would be on the command line); give them "
          "in --auth-file or MINPANEL_SMTP_USER and MINPANEL_SMTP_PASSWORD");
    } else if (!part(CURLUPART_QUERY).empty() || !part(CURLUPART_FRAGMENT).empty()) {
      status = Status::InvalidArgument("--smtp: no query or fragment");
    }
  }
  curl_url_cleanup(parsed);
  if (!status.ok()) {
    return status;
  }
  return result;
}

Status CheckOptions(const SendOptions& options, const SmtpUrl& url) {
  if (options.per_minute == 0 || options.per_minute > kSendPerMinuteMax) {
    return Status::InvalidArgument("--per-minute: from 1 to kSendPerMinuteMax (" +
                                   std::to_string(kSendPerMinuteMax) + ")");
  }
  if (!DeliverableAddress(options.sender)) {
    return Status::InvalidArgument("--sender: one email address, such as security@example.com");
  }
  if (options.insecure_localhost && url.scheme != "smtp") {
    return Status::InvalidArgument("--insecure-localhost: only for smtp:// (smtps:// is TLS)");
  }
  if (options.insecure_localhost && !IsLocalHost(url.host)) {
    return Status::InvalidArgument(
        "--insecure-localhost: the host must be 127.0.0.1, ::1 or localhost (mail to any other "
        "server goes over TLS)");
  }
  return Status::Ok();
}

// The state file, opened for appending and locked for the whole run.
class StateFile {
 public:
  static Result<std::unique_ptr<StateFile>> Open(const std::string& folder, bool dry_run,
                                                 SendState* state) {
    const std::string path = folder + "/" + std::string(kSendStateFileName);
    auto file = std::unique_ptr<StateFile>(new StateFile());
    const int flags = dry_run ? O_RDONLY : (O_RDWR | O_CREAT);
    file->fd_ = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (file->fd_ < 0) {
      if (dry_run && errno == ENOENT) {
        return file;  // nothing sent yet
      }
      return Status::IoError(path + ": " + std::strerror(errno));
    }
    if (::flock(file->fd_, (dry_run ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
      return Status::Unavailable(path +
                                 ": another `minpanel incident send` is running on this "
                                 "folder");
    }
    if (!dry_run && ::fchmod(file->fd_, 0600) != 0) {
      return Status::IoError(path + ": chmod: " + std::strerror(errno));
    }
    MP_ASSIGN_OR_RETURN(
        const std::string text,
        ReadBoundedFile(path, kSendStateBytesMax, "kSendStateBytesMax", FileKind::kPrivate));
    MP_ASSIGN_OR_RETURN(*state, ParseSendState(text));
    if (dry_run) {
      return file;
    }
    // A torn last line is cut off before anything is appended after it.
    if (state->torn_tail_bytes > 0 &&
        ::ftruncate(file->fd_, static_cast<off_t>(state->valid_bytes)) != 0) {
      return Status::IoError(path + ": truncate: " + std::strerror(errno));
    }
    if (::lseek(file->fd_, 0, SEEK_END) < 0) {
      return Status::IoError(path + ": seek: " + std::strerror(errno));
    }
    if (state->valid_bytes == 0) {
      MP_RETURN_IF_ERROR(file->Append(std::string(kSendStateMagic) + "\n"));
      const int folder_fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (folder_fd >= 0) {
        ::fsync(folder_fd);
        ::close(folder_fd);
      }
    }
    return file;
  }

  ~StateFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  // Appends `text` and makes it durable before returning.
  Status Append(std::string_view text) {
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t wrote = ::write(fd_, text.data() + done, text.size() - done);
      if (wrote < 0 && errno == EINTR) {
        continue;
      }
      if (wrote <= 0) {
        return Status::IoError(std::string(kSendStateFileName) +
                               ": write: " + std::strerror(errno));
      }
      done += static_cast<size_t>(wrote);
    }
    if (::fdatasync(fd_) != 0) {
      return Status::IoError(std::string(kSendStateFileName) +
                             ": fdatasync: " + std::strerror(errno));
    }
    return Status::Ok();
  }

 private:
  StateFile() = default;
  int fd_ = -1;
};

// What became of one message handed to the server.
enum class Delivery : uint8_t {
  kSent,       // 250 after the data
  kRefused,    // 5xx for the recipient or the message: recorded, the run goes on
  kDeferred,   // 4xx for the recipient or the message: recorded unsent, the run goes on
  kNotSent,    // the run must stop; the server cannot have the message
  kUncertain,  // the run must stop; the server may have accepted the message
};

struct DeliveryResult {
  Delivery delivery = Delivery::kNotSent;
  uint32_t smtp_code = 0;
  Status status = Status::Ok();  // why the run stops (kNotSent, kUncertain)
};

// The SMTP command libcurl sent last: which step a failure belongs to.
enum class SmtpStep : uint8_t { kConnect, kGreeting, kAuth, kMail, kRcpt, kData };

// Never given anything but the verb: AUTH's continuation lines carry the
// credentials.
int TrackStep(CURL* /*handle*/, curl_infotype type, char* data, size_t size, void* user) {
  if (type != CURLINFO_HEADER_OUT) {
    return 0;
  }
  const std::string_view line(data, size);
  auto* step = static_cast<SmtpStep*>(user);
  const std::pair<std::string_view, SmtpStep> verbs[] = {
      {"EHLO ", SmtpStep::kGreeting},    {"HELO ", SmtpStep::kGreeting},
      {"STARTTLS", SmtpStep::kGreeting}, {"AUTH ", SmtpStep::kAuth},
      {"MAIL FROM:", SmtpStep::kMail},   {"RCPT TO:", SmtpStep::kRcpt},
      {"DATA", SmtpStep::kData}};
  for (const auto& [verb, verb_step] : verbs) {
    if (line.starts_with(verb)) {
      *step = verb_step;
    }
  }
  return 0;
}

struct Upload {
  std::string_view bytes;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* upload = static_cast<Upload*>(user);
  const size_t take = std::min(size * count, upload->bytes.size() - upload->offset);
  std::memcpy(buffer, upload->bytes.data() + upload->offset, take);
  upload->offset += take;
  return take;
}

// One libcurl handle for the run, so that the connection (and its TLS
// session and login) is reused from one message to the next.
class SmtpClient {
 public:
  explicit SmtpClient(const SendOptions& options) : options_(options), handle_(curl_easy_init()) {}
  ~SmtpClient() {
    if (handle_ != nullptr) {
      curl_easy_cleanup(handle_);
    }
  }
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  DeliveryResult Send(const std::string& recipient, std::string_view eml) {
    if (handle_ == nullptr) {
      return {Delivery::kNotSent, 0, Status::ResourceExhausted("libcurl: no handle")};
    }
    curl_slist* recipients = curl_slist_append(nullptr, recipient.c_str());
    Upload upload{eml, 0};
    step_ = SmtpStep::kConnect;
    error_[0] = '\0';
    Configure(recipients, &upload);
    const CURLcode code = curl_easy_perform(handle_);
    curl_slist_free_all(recipients);
    long reply = 0;
    curl_easy_getinfo(handle_, CURLINFO_RESPONSE_CODE, &reply);
    return Classify(code, static_cast<uint32_t>(reply));
  }

 private:
  void Configure(curl_slist* recipients, Upload* upload) {
    curl_easy_reset(handle_);
    curl_easy_setopt(handle_, CURLOPT_URL, options_.url.c_str());
    curl_easy_setopt(handle_, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(handle_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle_, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(kSmtpConnectTimeoutMs));
    curl_easy_setopt(handle_, CURLOPT_TIMEOUT_MS, static_cast<long>(kSmtpMessageTimeoutMs));
    curl_easy_setopt(handle_, CURLOPT_ERRORBUFFER, error_);
    curl_easy_setopt(handle_, CURLOPT_USE_SSL,
                     options_.insecure_localhost ? CURLUSESSL_NONE : CURLUSESSL_ALL);
    if (!options_.ca_file.empty()) {
      curl_easy_setopt(handle_, CURLOPT_CAINFO, options_.ca_file.c_str());
    }
    if (options_.auth.has_value()) {
      curl_easy_setopt(handle_, CURLOPT_USERNAME, options_.auth->user.c_str());
      curl_easy_setopt(handle_, CURLOPT_PASSWORD, options_.auth->password.c_str());
    }
    curl_easy_setopt(handle_, CURLOPT_MAIL_FROM, options_.sender.c_str());
    curl_easy_setopt(handle_, CURLOPT_MAIL_RCPT, recipients);
    curl_easy_setopt(handle_, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(handle_, CURLOPT_READFUNCTION, ReadUpload);
    curl_easy_setopt(handle_, CURLOPT_READDATA, upload);
    curl_easy_setopt(handle_, CURLOPT_INFILESIZE_LARGE,
                     static_cast<curl_off_t>(upload->bytes.size()));
    // The debug callback sees the commands (only their verbs are kept);
    // nothing is printed.
    curl_easy_setopt(handle_, CURLOPT_DEBUGFUNCTION, TrackStep);
    curl_easy_setopt(handle_, CURLOPT_DEBUGDATA, &step_);
    curl_easy_setopt(handle_, CURLOPT_VERBOSE, 1L);
  }

  std::string Where() const {
    return " (" + options_.url + ", " + curl_easy_strerror(last_code_) + ")";
  }

  DeliveryResult Classify(CURLcode code, uint32_t reply) {
    last_code_ = code;
    if (code == CURLE_OK) {
      return {Delivery::kSent, reply, Status::Ok()};
    }
    const bool server_said_no = reply >= 400 && reply <= 599;
    if ((step_ == SmtpStep::kRcpt || step_ == SmtpStep::kData) && server_said_no) {
      return {reply >= 500 ? Delivery::kRefused : Delivery::kDeferred, reply, Status::Ok()};
    }
    if (code == CURLE_LOGIN_DENIED) {
      return {Delivery::kNotSent, reply,
              Status::Unauthenticated("the SMTP server refused the login (reply " +
                                      std::to_string(reply) +
                                      "); check --auth-file or "
                                      "MINPANEL_SMTP_USER / MINPANEL_SMTP_PASSWORD")};
    }
    if (code == CURLE_USE_SSL_FAILED) {
      return {Delivery::kNotSent, reply,
              Status::Unavailable("the SMTP server does not offer STARTTLS" + Where() +
                                  "; notices go over TLS (smtps://, or a server with STARTTLS)")};
    }
    if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT ||
        (code == CURLE_OPERATION_TIMEDOUT && step_ == SmtpStep::kConnect)) {
      return {Delivery::kNotSent, reply,
              Status::Unavailable("cannot reach the SMTP server" + Where())};
    }
    if (code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CONNECT_ERROR ||
        code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM) {
      return {Delivery::kNotSent, reply,
              Status::Unavailable("TLS with the SMTP server failed" + Where() +
                                  "; a private CA goes in --ca-file")};
    }
    if (step_ == SmtpStep::kMail && reply == 530) {
      return {Delivery::kNotSent, reply,
              Status::Unauthenticated(
                  "the SMTP server takes no mail before a login or STARTTLS (reply 530); give "
                  "--auth-file or MINPANEL_SMTP_USER / MINPANEL_SMTP_PASSWORD")};
    }
    if (step_ == SmtpStep::kMail && server_said_no) {
      return {Delivery::kNotSent, reply,
              Status::PermissionDenied("the SMTP server refused the envelope sender --sender "
                                       "(reply " +
                                       std::to_string(reply) + ")")};
    }
    if (step_ == SmtpStep::kData) {
      // The data may have reached the server, which may have accepted it
      // with a reply that never came back.
      return {Delivery::kUncertain, reply,
              Status::Unavailable("the connection failed while the message was being handed "
                                  "over" +
                                  Where() + "; whether the server took it is unknown")};
    }
    return {Delivery::kNotSent, reply,
            Status::Unavailable("the SMTP exchange failed before the message" + Where() +
                                (reply != 0 ? ", reply " + std::to_string(reply) : "") + ")")};
  }

  const SendOptions& options_;
  CURL* handle_ = nullptr;
  SmtpStep step_ = SmtpStep::kConnect;
  CURLcode last_code_ = CURLE_OK;
  char error_[CURL_ERROR_SIZE] = {};
};

// A notice the preflight found to send, with the hash it had then.
struct Pending {
  std::string file;
  std::string sha256;
};

struct Plan {
  std::vector<Pending> to_send;
};

// Reads every notice, checks it can be sent and sorts it by what the state
// file says of it.
Result<Plan> MakePlan(const SendOptions& options, const std::vector<std::string>& files,
                      const SendState& state, SendReport* report) {
  Plan plan;
  const auto tell = [&options](std::string_view what, const std::string& file) {
    if (options.progress) {
      options.progress(std::string(what) + " " + file);
    }
  };
  for (const std::string& file : files) {
    MP_ASSIGN_OR_RETURN(const std::string eml,
                        ReadBoundedFile(options.folder + "/" + file, kNoticeBytesMax,
                                        "kNoticeBytesMax", FileKind::kPrivate));
    if (const auto recipient = NoticeRecipient(eml); !recipient.ok()) {
      return Status::InvalidArgument(file + ": cannot be sent: " + recipient.status().message());
    }
    std::string sha256 = audit::Sha256Hex(eml);
    const auto found = state.last.find(file);
    if (found != state.last.end()) {
      const SendStateLine& line = found->second;
      const bool same = line.sha256 == sha256;
      if (line.outcome == SendOutcome::kSent) {
        ++(same ? report->already_sent : report->changed_after_sent);
        tell(same ? "already-sent" : "changed-after-sent", file);
        continue;
      }
      if (line.outcome == SendOutcome::kRefused && same) {
        ++report->already_refused;
        tell("already-refused", file);
        continue;
      }
      if (line.outcome == SendOutcome::kSending && !options.resend_uncertain) {
        ++report->uncertain;
        tell("uncertain", file);
        continue;
      }
    }
    plan.to_send.push_back({file, std::move(sha256)});
  }
  return plan;
}

// Waits until `interval` has passed since the last message ended: at most
// per_minute messages in any minute, and no burst after a stall.
void Pace(std::chrono::steady_clock::time_point last_end, std::chrono::microseconds interval) {
  std::this_thread::sleep_until(last_end + interval);
}

Status SendOne(const SendOptions& options, const Pending& pending, SmtpClient& client,
               StateFile& state_file, SendReport* report) {
  MP_ASSIGN_OR_RETURN(const std::string eml,
                      ReadBoundedFile(options.folder + "/" + pending.file, kNoticeBytesMax,
                                      "kNoticeBytesMax", FileKind::kPrivate));
  if (audit::Sha256Hex(eml) != pending.sha256) {
    return Status::Corruption(pending.file + ": changed while the run was sending; run again");
  }
  MP_ASSIGN_OR_RETURN(const std::string recipient, NoticeRecipient(eml));
  SendStateLine line{SendOutcome::kSending, pending.file, pending.sha256, WallMs(), 0};
  MP_RETURN_IF_ERROR(state_file.Append(FormatSendStateLine(line)));
  const DeliveryResult result = client.Send(recipient, eml);
  line.time_ms = WallMs();
  line.smtp_code = result.smtp_code;
  std::string told;
  switch (result.delivery) {
    case Delivery::kSent:
      line.outcome = SendOutcome::kSent;
      ++report->sent;
      report->bytes_sent += eml.size();
      told = "sent";
      break;
    case Delivery::kRefused:
      line.outcome = SendOutcome::kRefused;
      ++report->refused;
      told = "refused";
      break;
    case Delivery::kDeferred:
    case Delivery::kNotSent:
      line.outcome = SendOutcome::kUnsent;
      ++report->unsent;
      told = "unsent";
      break;
    case Delivery::kUncertain:
      // The `sending` line stays the last: the next run skips it unless told
      // to send it again.
      ++report->uncertain;
      if (options.progress) {
        options.progress("uncertain " + pending.file);
      }
      return result.status;
  }
  MP_RETURN_IF_ERROR(state_file.Append(FormatSendStateLine(line)));
  if (options.progress) {
    options.progress(told + " " + pending.file +
                     (result.smtp_code != 0 ? " " + std::to_string(result.smtp_code) : ""));
  }
  return result.status;
}

}  // namespace

Result<SendReport> SendNotices(const SendOptions& options) {
  MP_ASSIGN_OR_RETURN(const SmtpUrl url, ParseSmtpUrl(options.url));
  MP_RETURN_IF_ERROR(CheckOptions(options, url));
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> files, ListNotices(options.folder));
  SendState state;
  MP_ASSIGN_OR_RETURN(std::unique_ptr<StateFile> state_file,
                      StateFile::Open(options.folder, options.dry_run, &state));
  SendReport report;
  report.notices = files.size();
  report.state_torn_tail_bytes = state.torn_tail_bytes;
  MP_ASSIGN_OR_RETURN(const Plan plan, MakePlan(options, files, state, &report));
  if (options.dry_run) {
    for (const Pending& pending : plan.to_send) {
      ++report.would_send;
      if (options.progress) {
        options.progress("would-send " + pending.file);
      }
    }
    return report;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SmtpClient client(options);
  const auto interval = std::chrono::microseconds(60'000'000 / options.per_minute);
  // A run that follows one stopped a moment ago keeps its pace.
  const auto since_last_run = std::chrono::milliseconds(WallMs() - state.last_time_ms);
  std::optional<std::chrono::steady_clock::time_point> last_end;
  if (state.last_time_ms > 0 && since_last_run >= std::chrono::milliseconds(0) &&
      since_last_run < interval) {
    last_end = std::chrono::steady_clock::now() - since_last_run;
  }
  for (const Pending& pending : plan.to_send) {
    if (last_end.has_value()) {
      Pace(*last_end, interval);
    }
    report.stopped = SendOne(options, pending, client, *state_file, &report);
    last_end = std::chrono::steady_clock::now();
    if (!report.stopped.ok()) {
      break;
    }
  }
  return report;
}

}  // namespace minpanel::incident
