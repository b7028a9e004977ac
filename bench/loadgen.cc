// loadgen: a small HTTP/1.1 load generator for bench/ingest.sh, much lighter
// than the server it measures.
//
// One thread, one epoll set, non-blocking sockets, keep-alive connections with
// one request in flight each (as wrk does). Request bodies come from the
// templates that bench/ingest/make_templates.mjs writes: a body split at the
// place where every event's $insert_id ends, one segment per line. loadgen
// joins the segments once at start-up with a placeholder token and remembers
// where each token sits; before each request it overwrites every token in
// place with a 12-hex per-request counter (or its 16-character base64 for
// /track bodies, whose segments are 3-byte aligned so the token's base64 is a
// piece of the body's base64), so every event of every request is unique
// while a request costs a few KB of memcpy and one sendmsg, not a copy of the
// body. A template is not reused while a connection is still sending it.
//
// A response counts as acknowledged when its status is --expect-status (200;
// Plausible's /api/event answers 202) and its body equals --expect-body. Responses must carry Content-Length. After the measured
// window ends no new request is started; requests in flight are waited for (up
// to --timeout-s), so `acknowledged_total` is exact and `unanswered` counts
// requests that were sent, at least in part, but never answered (the server
// may or may not have stored them).
//
// Output: one JSON line on stdout, diagnostics (first refusal, first error)
// on stderr. `requests`, `acknowledged`, `refused`, `non_2xx`, the latency
// percentiles (microseconds, upper bound of a 1.6 % bucket) and the rates
// cover answers that arrived inside the measured window of `duration_s`;
// `requests_per_s` counts acknowledged requests and `events_per_s` is that
// times --batch-events. `errors` (with errors_connect, _read, _write,
// _timeout, _protocol), `acknowledged_total`, `refused_total` and
// `unanswered` cover the whole run. `cpu_*` is loadgen's own rusage.
// It only connects to a loopback IPv4 address and stops by itself after
// warm-up + duration + at most one timeout, or after --requests-max requests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minpanel::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kConnectionsMax = 1024;
constexpr double kDurationSMax = 3600;
constexpr double kTimeoutSMax = 300;
constexpr uint64_t kRequestsMaxDefault = 100'000'000;
constexpr size_t kTemplatesMax = 4096;
constexpr uintmax_t kTemplateFileBytesMax = 64 << 20;
constexpr size_t kHeadersMax = 32;
constexpr size_t kResponseHeaderBytesMax = 16 << 10;
constexpr size_t kResponseBodyBytesMax = 1 << 20;
constexpr size_t kTokenHexDigits = 12;
constexpr size_t kTokenBase64Chars = 16;
constexpr uint64_t kTokenMax = (uint64_t{1} << 48) - 1;
constexpr auto kReconnectDelay = std::chrono::milliseconds(50);
constexpr int kEpollWaitMsMax = 10;
constexpr size_t kRefusalBytesShown = 200;

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) {
    Status status;
    status.message_ = std::move(message);
    status.ok_ = false;
    return status;
  }
  bool ok() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  bool ok_ = true;
  std::string message_;
};

enum class TokenEncoding { kHex, kBase64 };

struct Options {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  uint32_t connections = 16;
  double duration_s = 15;
  double warmup_s = 0;
  double timeout_s = 30;
  std::string path = "/import";
  std::vector<std::string> headers;
  std::string bodies_dir;
  uint32_t batch_events = 1;
  std::string expect_body = "1";
  uint16_t expect_status = 200;
  TokenEncoding token_encoding = TokenEncoding::kHex;
  std::string body_prefix;
  uint64_t requests_max = kRequestsMaxDefault;
  bool print_request = false;
};

// One request: the head (request line and headers) and a body whose tokens
// are rewritten before each use.
struct RequestTemplate {
  std::string head;
  std::string body;
  std::vector<uint32_t> token_offsets;
  bool sending = false;
};

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Encodes 12 bytes (a multiple of 3, so no padding) into 16 characters.
void Base64Encode12(const char* in, char* out) {
  for (size_t group_idx = 0; group_idx < 4; ++group_idx) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(in + group_idx * 3);
    const uint32_t n = (uint32_t{bytes[0]} << 16) | (uint32_t{bytes[1]} << 8) | bytes[2];
    out[group_idx * 4 + 0] = kBase64Alphabet[(n >> 18) & 63];
    out[group_idx * 4 + 1] = kBase64Alphabet[(n >> 12) & 63];
    out[group_idx * 4 + 2] = kBase64Alphabet[(n >> 6) & 63];
    out[group_idx * 4 + 3] = kBase64Alphabet[n & 63];
  }
}

void PatchTokens(RequestTemplate& request, uint64_t token, TokenEncoding encoding) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  char hex[kTokenHexDigits];
  for (size_t digit_idx = 0; digit_idx < kTokenHexDigits; ++digit_idx) {
    hex[kTokenHexDigits - 1 - digit_idx] = kHexDigits[(token >> (4 * digit_idx)) & 15];
  }
  char base64[kTokenBase64Chars];
  const char* text = hex;
  size_t text_bytes = kTokenHexDigits;
  if (encoding == TokenEncoding::kBase64) {
    Base64Encode12(hex, base64);
    text = base64;
    text_bytes = kTokenBase64Chars;
  }
  char* body = request.body.data();
  for (const uint32_t offset : request.token_offsets) {
    std::memcpy(body + offset, text, text_bytes);
  }
}

std::vector<std::string> SplitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) {
      end = text.size();
    }
    lines.emplace_back(text, begin, end - begin);
    begin = end + 1;
  }
  return lines;
}

Status ReadFile(const std::filesystem::path& path, std::string* text) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) {
    return Status::Error(path.string() + ": " + error.message());
  }
  if (size > kTemplateFileBytesMax) {
    return Status::Error(path.string() + ": larger than kTemplateFileBytesMax (64 MiB)");
  }
  std::ifstream file(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << file.rdbuf();
  if (!file) {
    return Status::Error(path.string() + ": cannot read");
  }
  *text = buffer.str();
  return Status::Ok();
}

// Joins the segments of one template with placeholder tokens. For base64
// bodies every segment but the last must be whole base64 quanta (no padding),
// which make_templates.mjs guarantees by 3-byte alignment.
Status BuildBody(const Options& options, const std::string& name,
                 const std::vector<std::string>& segments, RequestTemplate* request) {
  if (segments.empty()) {
    return Status::Error(name + ": empty template");
  }
  const bool base64 = options.token_encoding == TokenEncoding::kBase64;
  const size_t token_bytes = base64 ? kTokenBase64Chars : kTokenHexDigits;
  request->body = options.body_prefix;
  for (size_t segment_idx = 0; segment_idx < segments.size(); ++segment_idx) {
    const std::string& segment = segments[segment_idx];
    const bool last = segment_idx + 1 == segments.size();
    if (base64 && !last && (segment.size() % 4 != 0 || segment.find('=') != std::string::npos)) {
      return Status::Error(name + ": base64 segment " + std::to_string(segment_idx) +
                           " is not 3-byte aligned");
    }
    request->body += segment;
    if (!last) {
      if (request->body.size() > UINT32_MAX) {
        return Status::Error(name + ": body too large");
      }
      request->token_offsets.push_back(static_cast<uint32_t>(request->body.size()));
      request->body.append(token_bytes, base64 ? 'A' : '0');
    }
  }
  return Status::Ok();
}

std::string BuildHead(const Options& options, size_t body_bytes) {
  std::string head = "POST " + options.path + " HTTP/1.1\r\nHost: " + options.host + ":" +
                     std::to_string(options.port) + "\r\n";
  for (const std::string& header : options.headers) {
    head += header + "\r\n";
  }
  head += "Content-Length: " + std::to_string(body_bytes) + "\r\n\r\n";
  return head;
}

// Loads every *.txt file of the folder, in name order. If there are fewer
// templates than connections they are repeated, so that a free template
// always exists while the others are being sent.
Status LoadTemplates(const Options& options, std::vector<RequestTemplate>* templates) {
  std::vector<std::filesystem::path> paths;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(options.bodies_dir, error)) {
    if (entry.is_regular_file() && entry.path().extension() == ".txt") {
      paths.push_back(entry.path());
    }
  }
  if (error) {
    return Status::Error(options.bodies_dir + ": " + error.message());
  }
  if (paths.empty() || paths.size() > kTemplatesMax) {
    return Status::Error(options.bodies_dir + ": needs 1 to 4096 *.txt templates");
  }
  std::sort(paths.begin(), paths.end());
  for (const auto& path : paths) {
    std::string text;
    if (Status status = ReadFile(path, &text); !status.ok()) {
      return status;
    }
    RequestTemplate request;
    if (Status status = BuildBody(options, path.string(), SplitLines(text), &request);
        !status.ok()) {
      return status;
    }
    request.head = BuildHead(options, request.body.size());
    templates->push_back(std::move(request));
  }
  for (size_t copy_idx = 0; templates->size() < options.connections; ++copy_idx) {
    templates->push_back((*templates)[copy_idx]);
  }
  return Status::Ok();
}

// Log-linear latency histogram in microseconds: exact below 128, then 64
// sub-buckets per power of two (at most 1.6 % too high). Fixed size.
class LatencyHistogram {
 public:
  void Record(uint64_t value_us) {
    ++counts_[BucketIndex(value_us)];
    ++count_;
    max_us_ = std::max(max_us_, value_us);
  }
  uint64_t count() const { return count_; }
  uint64_t max_us() const { return max_us_; }

  // The upper bound of the bucket holding the value at `percent`, capped at
  // the largest recorded value.
  uint64_t Percentile(double percent) const {
    if (count_ == 0) {
      return 0;
    }
    const auto rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(percent / 100.0 * count_)));
    uint64_t seen = 0;
    for (size_t bucket_idx = 0; bucket_idx < counts_.size(); ++bucket_idx) {
      seen += counts_[bucket_idx];
      if (seen >= rank) {
        return std::min(BucketUpperBound(bucket_idx), max_us_);
      }
    }
    return max_us_;
  }

 private:
  static constexpr int kSubBucketBits = 6;
  static constexpr size_t kExactMax = 128;
  static constexpr size_t kBucketCount = kExactMax + (64 - 7) * (size_t{1} << kSubBucketBits);

  static size_t BucketIndex(uint64_t value) {
    if (value < kExactMax) {
      return value;
    }
    const int exponent = 63 - std::countl_zero(value);
    const uint64_t sub_bucket = (value >> (exponent - kSubBucketBits)) & 63;
    return kExactMax + (exponent - 7) * 64 + sub_bucket;
  }
  static uint64_t BucketUpperBound(size_t index) {
    if (index < kExactMax) {
      return index;
    }
    const size_t exponent = (index - kExactMax) / 64 + 7;
    const uint64_t sub_bucket = (index - kExactMax) % 64;
    const uint64_t lower = (64 + sub_bucket) << (exponent - kSubBucketBits);
    return lower + (uint64_t{1} << (exponent - kSubBucketBits)) - 1;
  }

  std::array<uint64_t, kBucketCount> counts_{};
  uint64_t count_ = 0;
  uint64_t max_us_ = 0;
};

enum class ErrorKind { kConnect, kRead, kWrite, kTimeout, kProtocol };

struct Counters {
  // Responses completed inside the measured window.
  uint64_t requests = 0;
  uint64_t acknowledged = 0;
  uint64_t refused = 0;
  uint64_t non_2xx = 0;
  LatencyHistogram latency;
  // Over the whole run: warm-up, window and drain.
  uint64_t requests_started = 0;
  uint64_t acknowledged_total = 0;
  uint64_t refused_total = 0;
  uint64_t unanswered = 0;
  std::array<uint64_t, 5> errors{};
  std::string first_refusal;
  std::string first_error;
};

enum class ConnectionState { kClosed, kConnecting, kIdle, kSending, kReceiving };

struct Connection {
  int fd = -1;
  ConnectionState state = ConnectionState::kClosed;
  uint32_t epoll_events = 0;
  RequestTemplate* request = nullptr;
  size_t bytes_sent = 0;
  Clock::time_point request_started;
  Clock::time_point reconnect_at;
  std::string response;
};

// A parsed response head; body_bytes is its Content-Length.
struct ResponseHead {
  int status = 0;
  size_t head_bytes = 0;
  size_t body_bytes = 0;
  bool close = false;
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
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

// Parses a complete head (through the blank line). Returns an error for
// anything but a Content-Length response.
Status ParseResponseHead(std::string_view text, size_t head_bytes, ResponseHead* head) {
  head->head_bytes = head_bytes;
  const std::string_view head_text = text.substr(0, head_bytes - 2);
  size_t line_end = head_text.find("\r\n");
  const std::string_view status_line = head_text.substr(0, line_end);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      std::from_chars(status_line.data() + 9, status_line.data() + 12, head->status).ec !=
          std::errc()) {
    return Status::Error("bad status line");
  }
  bool has_length = false;
  while (line_end != std::string_view::npos && line_end + 2 < head_text.size()) {
    const size_t begin = line_end + 2;
    line_end = head_text.find("\r\n", begin);
    const std::string_view line = head_text.substr(begin, line_end - begin);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return Status::Error("bad header line");
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = Trim(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "Content-Length")) {
      if (std::from_chars(value.data(), value.data() + value.size(), head->body_bytes).ec !=
          std::errc()) {
        return Status::Error("bad Content-Length");
      }
      has_length = true;
    } else if (EqualsIgnoreCase(name, "Connection") && EqualsIgnoreCase(value, "close")) {
      head->close = true;
    } else if (EqualsIgnoreCase(name, "Transfer-Encoding")) {
      return Status::Error("Transfer-Encoding is not supported");
    }
  }
  if (!has_length) {
    return Status::Error("response without Content-Length");
  }
  if (head->body_bytes > kResponseBodyBytesMax) {
    return Status::Error("response body over kResponseBodyBytesMax (1 MiB)");
  }
  return Status::Ok();
}

class LoadGenerator {
 public:
  LoadGenerator(const Options& options, std::vector<RequestTemplate> templates,
                sockaddr_in address)
      : options_(options), templates_(std::move(templates)), address_(address) {}
  ~LoadGenerator() {
    for (Connection& connection : connections_) {
      if (connection.fd >= 0) {
        close(connection.fd);
      }
    }
    if (epoll_fd_ >= 0) {
      close(epoll_fd_);
    }
  }

  Status Run();
  void PrintReport(double wall_s) const;

 private:
  bool Stopping(Clock::time_point now) const {
    return now >= measure_end_ || counters_.requests_started >= options_.requests_max;
  }
  bool InWindow(Clock::time_point now) const { return now >= measure_start_ && now < measure_end_; }
  bool AnyInFlight() const;
  void Tick(Clock::time_point now);
  void HandleEvent(Connection& connection, uint32_t events);
  void Connect(Connection& connection);
  void FinishConnect(Connection& connection);
  void StartRequest(Connection& connection);
  void ContinueSend(Connection& connection);
  void ContinueReceive(Connection& connection);
  bool TryCompleteResponse(Connection& connection);
  void CountResponse(const Connection& connection, const ResponseHead& head,
                     std::string_view body);
  void Watch(Connection& connection, uint32_t events);
  void Fail(Connection& connection, ErrorKind kind, std::string_view detail);
  void Close(Connection& connection, Clock::time_point reconnect_at);

  const Options& options_;
  std::vector<RequestTemplate> templates_;
  sockaddr_in address_;
  std::vector<Connection> connections_;
  int epoll_fd_ = -1;
  size_t next_template_idx_ = 0;
  uint64_t next_token_ = 1;
  Clock::time_point start_;
  Clock::time_point measure_start_;
  Clock::time_point measure_end_;
  Clock::time_point hard_end_;
  Clock::time_point last_completion_;
  Counters counters_;
};

Status LoadGenerator::Run() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    return Status::Error(std::string("epoll_create1: ") + std::strerror(errno));
  }
  using Seconds = std::chrono::duration<double>;
  start_ = Clock::now();
  measure_start_ = start_ + std::chrono::duration_cast<Clock::duration>(Seconds(options_.warmup_s));
  measure_end_ =
      measure_start_ + std::chrono::duration_cast<Clock::duration>(Seconds(options_.duration_s));
  hard_end_ = measure_end_ + std::chrono::duration_cast<Clock::duration>(Seconds(options_.timeout_s));
  last_completion_ = measure_start_;
  connections_.resize(options_.connections);
  for (Connection& connection : connections_) {
    Connect(connection);
  }
  std::array<epoll_event, kConnectionsMax> events;
  while (true) {
    const Clock::time_point now = Clock::now();
    if (Stopping(now) && !AnyInFlight()) {
      break;
    }
    if (now >= hard_end_) {
      for (Connection& connection : connections_) {
        if (connection.state == ConnectionState::kSending ||
            connection.state == ConnectionState::kReceiving) {
          Fail(connection, ErrorKind::kTimeout, "no answer before the run's hard end");
        }
      }
      break;
    }
    Tick(now);
    const int ready = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()),
                                 kEpollWaitMsMax);
    if (ready < 0 && errno != EINTR) {
      return Status::Error(std::string("epoll_wait: ") + std::strerror(errno));
    }
    for (int event_idx = 0; event_idx < ready; ++event_idx) {
      HandleEvent(connections_[events[event_idx].data.u32], events[event_idx].events);
    }
  }
  return Status::Ok();
}

bool LoadGenerator::AnyInFlight() const {
  return std::any_of(connections_.begin(), connections_.end(), [](const Connection& connection) {
    return connection.state == ConnectionState::kSending ||
           connection.state == ConnectionState::kReceiving;
  });
}

// Time-driven work: request timeouts, reconnects, idle connections.
void LoadGenerator::Tick(Clock::time_point now) {
  const auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.timeout_s));
  for (Connection& connection : connections_) {
    const bool in_flight = connection.state == ConnectionState::kSending ||
                           connection.state == ConnectionState::kReceiving;
    if (in_flight && now - connection.request_started > timeout) {
      Fail(connection, ErrorKind::kTimeout, "request timed out");
    }
    if (Stopping(now)) {
      continue;
    }
    if (connection.state == ConnectionState::kClosed && now >= connection.reconnect_at) {
      Connect(connection);
    }
    if (connection.state == ConnectionState::kIdle) {
      StartRequest(connection);
    }
  }
}

void LoadGenerator::HandleEvent(Connection& connection, uint32_t events) {
  switch (connection.state) {
    case ConnectionState::kConnecting:
      FinishConnect(connection);
      break;
    case ConnectionState::kSending:
      ContinueSend(connection);
      break;
    case ConnectionState::kReceiving:
      ContinueReceive(connection);
      break;
    case ConnectionState::kIdle:
      // The server closed a keep-alive connection between requests.
      if ((events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP | EPOLLIN)) != 0) {
        Close(connection, Clock::now());
      }
      break;
    case ConnectionState::kClosed:
      break;
  }
}

void LoadGenerator::Connect(Connection& connection) {
  connection.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (connection.fd < 0) {
    Fail(connection, ErrorKind::kConnect, std::strerror(errno));
    return;
  }
  const int one = 1;
  setsockopt(connection.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  connection.epoll_events = 0;
  epoll_event event{};
  event.data.u32 = static_cast<uint32_t>(&connection - connections_.data());
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, connection.fd, &event);
  connection.response.clear();
  const int result =
      connect(connection.fd, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_));
  if (result == 0) {
    connection.state = ConnectionState::kIdle;
  } else if (errno == EINPROGRESS) {
    connection.state = ConnectionState::kConnecting;
    Watch(connection, EPOLLOUT);
  } else {
    Fail(connection, ErrorKind::kConnect, std::strerror(errno));
  }
}

void LoadGenerator::FinishConnect(Connection& connection) {
  int error = 0;
  socklen_t length = sizeof(error);
  if (getsockopt(connection.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
    error = errno;
  }
  if (error != 0) {
    Fail(connection, ErrorKind::kConnect, std::strerror(error));
    return;
  }
  connection.state = ConnectionState::kIdle;
  Watch(connection, EPOLLRDHUP);
  if (!Stopping(Clock::now())) {
    StartRequest(connection);
  }
}

// Picks the next template nobody is sending, gives its tokens this request's
// counter and starts writing.
void LoadGenerator::StartRequest(Connection& connection) {
  if (next_token_ > kTokenMax) {
    return;
  }
  // Terminates: there are at least as many templates as connections, and
  // this connection is not sending any.
  RequestTemplate* request = nullptr;
  while (request == nullptr) {
    RequestTemplate& candidate = templates_[next_template_idx_];
    next_template_idx_ = (next_template_idx_ + 1) % templates_.size();
    if (!candidate.sending) {
      request = &candidate;
    }
  }
  PatchTokens(*request, next_token_++, options_.token_encoding);
  request->sending = true;
  connection.request = request;
  connection.bytes_sent = 0;
  connection.response.clear();
  connection.request_started = Clock::now();
  connection.state = ConnectionState::kSending;
  ++counters_.requests_started;
  ContinueSend(connection);
}

void LoadGenerator::ContinueSend(Connection& connection) {
  RequestTemplate& request = *connection.request;
  const size_t total_bytes = request.head.size() + request.body.size();
  while (connection.bytes_sent < total_bytes) {
    std::array<iovec, 2> parts;
    size_t part_count = 0;
    if (connection.bytes_sent < request.head.size()) {
      parts[part_count++] = {request.head.data() + connection.bytes_sent,
                             request.head.size() - connection.bytes_sent};
      parts[part_count++] = {request.body.data(), request.body.size()};
    } else {
      const size_t body_sent = connection.bytes_sent - request.head.size();
      parts[part_count++] = {request.body.data() + body_sent, request.body.size() - body_sent};
    }
    msghdr message{};
    message.msg_iov = parts.data();
    message.msg_iovlen = part_count;
    const ssize_t sent = sendmsg(connection.fd, &message, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) {
      continue;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      Watch(connection, EPOLLOUT);
      return;
    }
    if (sent < 0) {
      Fail(connection, ErrorKind::kWrite, std::strerror(errno));
      return;
    }
    connection.bytes_sent += static_cast<size_t>(sent);
  }
  // The kernel has copied the whole request; its template may be reused.
  request.sending = false;
  connection.state = ConnectionState::kReceiving;
  Watch(connection, EPOLLIN | EPOLLRDHUP);
}

void LoadGenerator::ContinueReceive(Connection& connection) {
  std::array<char, 64 << 10> buffer;
  while (true) {
    const ssize_t received = recv(connection.fd, buffer.data(), buffer.size(), 0);
    if (received < 0 && errno == EINTR) {
      continue;
    }
    if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (received < 0) {
      Fail(connection, ErrorKind::kRead, std::strerror(errno));
      return;
    }
    if (received == 0) {
      Fail(connection, ErrorKind::kRead, "connection closed before the whole response");
      return;
    }
    connection.response.append(buffer.data(), static_cast<size_t>(received));
    if (TryCompleteResponse(connection)) {
      return;
    }
  }
}

// Returns true when the connection is done with this response (answered,
// or failed).
bool LoadGenerator::TryCompleteResponse(Connection& connection) {
  const std::string& text = connection.response;
  const size_t blank_line = text.find("\r\n\r\n");
  if (blank_line == std::string::npos) {
    if (text.size() > kResponseHeaderBytesMax) {
      Fail(connection, ErrorKind::kProtocol, "response head over kResponseHeaderBytesMax");
      return true;
    }
    return false;
  }
  ResponseHead head;
  if (Status status = ParseResponseHead(text, blank_line + 4, &head); !status.ok()) {
    Fail(connection, ErrorKind::kProtocol, status.message());
    return true;
  }
  const size_t total_bytes = head.head_bytes + head.body_bytes;
  if (text.size() < total_bytes) {
    return false;
  }
  if (text.size() > total_bytes) {
    Fail(connection, ErrorKind::kProtocol, "bytes after the response");
    return true;
  }
  CountResponse(connection, head, std::string_view(text).substr(head.head_bytes));
  connection.request = nullptr;
  if (head.close) {
    Close(connection, Clock::now());
    return true;
  }
  connection.state = ConnectionState::kIdle;
  Watch(connection, EPOLLRDHUP);
  if (!Stopping(Clock::now())) {
    StartRequest(connection);
  }
  return true;
}

void LoadGenerator::CountResponse(const Connection& connection, const ResponseHead& head,
                                  std::string_view body) {
  const Clock::time_point now = Clock::now();
  const bool acknowledged = head.status == options_.expect_status && body == options_.expect_body;
  if (acknowledged) {
    ++counters_.acknowledged_total;
  } else {
    ++counters_.refused_total;
    if (counters_.first_refusal.empty()) {
      counters_.first_refusal = std::to_string(head.status) + " " +
                                std::string(body.substr(0, kRefusalBytesShown));
    }
  }
  if (!InWindow(now)) {
    return;
  }
  last_completion_ = now;
  ++counters_.requests;
  counters_.acknowledged += acknowledged ? 1 : 0;
  counters_.refused += acknowledged ? 0 : 1;
  counters_.non_2xx += (head.status < 200 || head.status > 299) ? 1 : 0;
  const auto latency =
      std::chrono::duration_cast<std::chrono::microseconds>(now - connection.request_started);
  counters_.latency.Record(static_cast<uint64_t>(latency.count()));
}

void LoadGenerator::Watch(Connection& connection, uint32_t events) {
  if (connection.epoll_events == events) {
    return;
  }
  epoll_event event{};
  event.events = events;
  event.data.u32 = static_cast<uint32_t>(&connection - connections_.data());
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection.fd, &event);
  connection.epoll_events = events;
}

void LoadGenerator::Fail(Connection& connection, ErrorKind kind, std::string_view detail) {
  ++counters_.errors[static_cast<size_t>(kind)];
  if (counters_.first_error.empty()) {
    static constexpr std::array<const char*, 5> kNames = {"connect", "read", "write", "timeout",
                                                          "protocol"};
    counters_.first_error = std::string(kNames[static_cast<size_t>(kind)]) + ": " +
                            std::string(detail);
  }
  if (connection.state == ConnectionState::kSending ||
      connection.state == ConnectionState::kReceiving) {
    // Sent, at least in part, and never answered: the server may have stored it.
    ++counters_.unanswered;
  }
  Close(connection, Clock::now() + kReconnectDelay);
}

void LoadGenerator::Close(Connection& connection, Clock::time_point reconnect_at) {
  if (connection.request != nullptr) {
    connection.request->sending = false;
    connection.request = nullptr;
  }
  if (connection.fd >= 0) {
    close(connection.fd);  // Also removes it from the epoll set.
  }
  connection.fd = -1;
  connection.state = ConnectionState::kClosed;
  connection.epoll_events = 0;
  connection.reconnect_at = reconnect_at;
}

void LoadGenerator::PrintReport(double wall_s) const {
  using Seconds = std::chrono::duration<double>;
  Clock::time_point window_end = measure_end_;
  if (counters_.requests_started >= options_.requests_max) {
    window_end = std::min(window_end, last_completion_);
  }
  const double duration_s = std::max(1e-6, Seconds(window_end - measure_start_).count());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double user_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6;
  const double system_s = usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
  const Counters& c = counters_;
  uint64_t errors = 0;
  for (const uint64_t count : c.errors) {
    errors += count;
  }
  if (!c.first_refusal.empty()) {
    std::fprintf(stderr, "loadgen: first refusal: %s\n", c.first_refusal.c_str());
  }
  if (!c.first_error.empty()) {
    std::fprintf(stderr, "loadgen: first error: %s\n", c.first_error.c_str());
  }
  std::printf(
      "{\"requests\":%" PRIu64 ",\"acknowledged\":%" PRIu64 ",\"refused\":%" PRIu64
      ",\"non_2xx\":%" PRIu64 ",\"events_per_s\":%.0f,\"requests_per_s\":%.1f,\"p50_us\":%" PRIu64
      ",\"p99_us\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"errors\":%" PRIu64
      ",\"errors_connect\":%" PRIu64 ",\"errors_read\":%" PRIu64 ",\"errors_write\":%" PRIu64
      ",\"errors_timeout\":%" PRIu64 ",\"errors_protocol\":%" PRIu64
      ",\"acknowledged_total\":%" PRIu64 ",\"refused_total\":%" PRIu64 ",\"unanswered\":%" PRIu64
      ",\"duration_s\":%.3f,\"wall_s\":%.3f,\"cpu_user_s\":%.3f,\"cpu_system_s\":%.3f"
      ",\"cpu_percent\":%.1f}\n",
      c.requests, c.acknowledged, c.refused, c.non_2xx,
      static_cast<double>(c.acknowledged) * options_.batch_events / duration_s,
      static_cast<double>(c.acknowledged) / duration_s, c.latency.Percentile(50),
      c.latency.Percentile(99), c.latency.max_us(), errors, c.errors[0], c.errors[1], c.errors[2],
      c.errors[3], c.errors[4], c.acknowledged_total, c.refused_total, c.unanswered, duration_s,
      wall_s, user_s, system_s, 100.0 * (user_s + system_s) / std::max(wall_s, 1e-6));
}

constexpr char kUsage[] =
    "usage: loadgen --port N --bodies DIR [--host 127.0.0.1] [--connections 16]\n"
    "               [--duration-s 15] [--warmup-s 0] [--timeout-s 30] [--path /import]\n"
    "               [--header 'K: V']... [--batch-events N] [--expect-body 1]\n"
    "               [--expect-status 200]\n"
    "               [--token-encoding hex|base64] [--body-prefix data=]\n"
    "               [--requests-max N] [--print-request]\n";

template <typename T>
bool ParseNumber(std::string_view text, T* value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

Status ParseOption(std::string_view name, std::string_view value, Options* options) {
  bool ok = true;
  if (name == "--host") {
    options->host = std::string(value);
  } else if (name == "--port") {
    ok = ParseNumber(value, &options->port) && options->port != 0;
  } else if (name == "--connections") {
    ok = ParseNumber(value, &options->connections) && options->connections >= 1 &&
         options->connections <= kConnectionsMax;
  } else if (name == "--duration-s") {
    ok = ParseNumber(value, &options->duration_s) && options->duration_s > 0 &&
         options->duration_s <= kDurationSMax;
  } else if (name == "--warmup-s") {
    ok = ParseNumber(value, &options->warmup_s) && options->warmup_s >= 0 &&
         options->warmup_s <= kDurationSMax;
  } else if (name == "--timeout-s") {
    ok = ParseNumber(value, &options->timeout_s) && options->timeout_s > 0 &&
         options->timeout_s <= kTimeoutSMax;
  } else if (name == "--path") {
    ok = !value.empty() && value.front() == '/' &&
         value.find_first_of(" \r\n") == std::string_view::npos;
    options->path = std::string(value);
  } else if (name == "--header") {
    ok = value.find(':') != std::string_view::npos &&
         value.find_first_of("\r\n") == std::string_view::npos &&
         options->headers.size() < kHeadersMax;
    options->headers.emplace_back(value);
  } else if (name == "--bodies") {
    options->bodies_dir = std::string(value);
  } else if (name == "--batch-events") {
    ok = ParseNumber(value, &options->batch_events) && options->batch_events >= 1;
  } else if (name == "--expect-body") {
    options->expect_body = std::string(value);
  } else if (name == "--expect-status") {
    ok = ParseNumber(value, &options->expect_status) && options->expect_status >= 200 &&
         options->expect_status <= 299;
  } else if (name == "--token-encoding") {
    ok = value == "hex" || value == "base64";
    options->token_encoding = value == "base64" ? TokenEncoding::kBase64 : TokenEncoding::kHex;
  } else if (name == "--body-prefix") {
    options->body_prefix = std::string(value);
  } else if (name == "--requests-max") {
    ok = ParseNumber(value, &options->requests_max) && options->requests_max >= 1;
  } else {
    return Status::Error("unknown option " + std::string(name));
  }
  if (!ok) {
    return Status::Error("bad value for " + std::string(name) + ": " + std::string(value));
  }
  return Status::Ok();
}

Status ParseArguments(int argc, char** argv, Options* options) {
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    const std::string_view name = argv[arg_idx];
    if (name == "--print-request") {
      options->print_request = true;
      continue;
    }
    if (arg_idx + 1 >= argc) {
      return Status::Error(std::string(name) + " needs a value");
    }
    if (Status status = ParseOption(name, argv[++arg_idx], options); !status.ok()) {
      return status;
    }
  }
  if (options->port == 0 || options->bodies_dir.empty()) {
    return Status::Error("--port and --bodies are required");
  }
  return Status::Ok();
}

// Only loopback: this tool must never load anything but the local server.
Status ResolveLoopback(const Options& options, sockaddr_in* address) {
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  *address = {};
  address->sin_family = AF_INET;
  address->sin_port = htons(options.port);
  if (inet_pton(AF_INET, host.c_str(), &address->sin_addr) != 1) {
    return Status::Error("--host must be an IPv4 address in 127.0.0.0/8: " + options.host);
  }
  if ((ntohl(address->sin_addr.s_addr) >> 24) != 127) {
    return Status::Error("--host must be a loopback address (127.0.0.0/8): " + options.host);
  }
  return Status::Ok();
}

int Main(int argc, char** argv) {
  const Clock::time_point process_start = Clock::now();
  Options options;
  sockaddr_in address{};
  Status status = ParseArguments(argc, argv, &options);
  if (status.ok()) {
    status = ResolveLoopback(options, &address);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "loadgen: %s\n%s", status.message().c_str(), kUsage);
    return 2;
  }
  std::vector<RequestTemplate> templates;
  if (status = LoadTemplates(options, &templates); !status.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", status.message().c_str());
    return 1;
  }
  if (options.print_request) {
    PatchTokens(templates[0], 1, options.token_encoding);
    std::fwrite(templates[0].head.data(), 1, templates[0].head.size(), stdout);
    std::fwrite(templates[0].body.data(), 1, templates[0].body.size(), stdout);
    return 0;
  }
  LoadGenerator generator(options, std::move(templates), address);
  if (status = generator.Run(); !status.ok()) {
    std::fprintf(stderr, "loadgen: %s\n", status.message().c_str());
    return 1;
  }
  generator.PrintReport(std::chrono::duration<double>(Clock::now() - process_start).count());
  return 0;
}

}  // namespace
}  // namespace minpanel::bench

int main(int argc, char** argv) { return minpanel::bench::Main(argc, argv); }
