#include "server/webhook.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

namespace minpanel::server {
namespace {

// The receiver's answer body is not read: only its status counts.
size_t DiscardBody(char* /*data*/, size_t size, size_t count, void* /*user*/) {
  return size * count;
}

}  // namespace

// One POST through libcurl within kWebhookPostTimeoutMs, on a handle of its
// own (a queue sends one message at a time, so there is nothing to share).
std::string PostJson(const std::string& url, const std::string& body, const std::string& ca_file) {
  // Once per process, before the first handle (thread-safe since C++11).
  static const CURLcode initialised = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (initialised != CURLE_OK) {
    return std::string("libcurl: ") + curl_easy_strerror(initialised);
  }
  CURL* handle = curl_easy_init();
  if (handle == nullptr) {
    return "libcurl: no handle";
  }
  char error[CURL_ERROR_SIZE] = "";
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  // No "Expect: 100-continue" round trip before the body.
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
  curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(handle, CURLOPT_TIMEOUT_MS, static_cast<long>(kWebhookPostTimeoutMs));
  // Straight to the receiver, whatever http_proxy/https_proxy say.
  curl_easy_setopt(handle, CURLOPT_PROXY, "");
  curl_easy_setopt(handle, CURLOPT_USERAGENT, "minpanel");
  curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(handle, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, DiscardBody);
  curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
  // libcurl's defaults, stated: the certificate must chain to a trusted CA
  // and name the URL's host. There is no switch to turn either off.
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(handle, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  if (!ca_file.empty()) {
    // Only these CAs: not the system's folder beside them.
    curl_easy_setopt(handle, CURLOPT_CAINFO, ca_file.c_str());
    curl_easy_setopt(handle, CURLOPT_CAPATH, nullptr);
  }
  const CURLcode code = curl_easy_perform(handle);
  long status = 0;
  curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(handle);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    return error[0] != '\0' ? std::string(error) : std::string(curl_easy_strerror(code));
  }
  if (status / 100 != 2) {
    return "answered " + std::to_string(status);
  }
  return "";
}

QueueSender JsonPoster(std::string ca_file) {
  return [ca_file = std::move(ca_file)](const std::string& url, const std::string& body) {
    return PostJson(url, body, ca_file);
  };
}

WebhookQueue::WebhookQueue(std::string what, std::string url, size_t queue_max, int64_t drain_ms,
                           QueueSender send, std::string spool_path)
    : what_(std::move(what)),
      queue_max_(queue_max),
      drain_ms_(drain_ms),
      send_(std::move(send)),
      url_(std::move(url)),
      spool_path_(std::move(spool_path)) {
  if (!spool_path_.empty()) {
    LoadSpool();
  }
  thread_ = std::thread([this] { Loop(); });
}

WebhookQueue::~WebhookQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void WebhookQueue::Push(std::string body) {
  {
    std::lock_guard lock(mutex_);
    if (url_.empty()) {
      return;
    }
    if (!spool_path_.empty() && body.find('\n') != std::string::npos) {
      ++dropped_;
      spdlog::error("{}: a message holding a newline cannot be spooled; dropped", what_);
      return;
    }
    if (queue_.size() >= queue_max_) {
      queue_.pop_front();
      ++dropped_;
      spdlog::error("{}: {} messages queued; the oldest dropped", what_, queue_max_);
    }
    queue_.push_back(Message{next_id_++, url_, std::move(body)});
  }
  wake_.notify_one();
}

void WebhookQueue::SetUrl(std::string url) {
  std::lock_guard lock(mutex_);
  url_ = std::move(url);
}

WebhookQueue::Counts WebhookQueue::counts() const {
  std::lock_guard lock(mutex_);
  return Counts{sent_.load(), failed_.load(), dropped_.load(), queue_.size()};
}

void WebhookQueue::LoadSpool() {
  std::ifstream in(spool_path_);
  if (!in) {
    return;
  }
  std::string line;
  if (!std::getline(in, line) || line != kWebhookSpoolMagic) {
    // Set aside for the operator, whole: this queue's own spool would
    // otherwise be renamed over it at its first failure.
    const std::string aside =
        spool_path_ + ".unreadable-" +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count());
    if (::rename(spool_path_.c_str(), aside.c_str()) != 0) {
      spdlog::error(
          "{}: {} does not start with \"{}\" and cannot be set aside ({}); nothing "
          "is spooled this run, so that it is not overwritten",
          what_, spool_path_, kWebhookSpoolMagic, std::strerror(errno));
      spool_unusable_ = true;
      return;
    }
    spdlog::error("{}: {} does not start with \"{}\"; set aside as {}, its messages not sent",
                  what_, spool_path_, kWebhookSpoolMagic, aside);
    return;
  }
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    if (queue_.size() >= queue_max_) {
      queue_.pop_front();
      ++dropped_;
    }
    queue_.push_back(Message{next_id_++, url_, std::move(line)});
  }
  spool_written_ = true;
  spooled_end_id_ = next_id_;
  if (!queue_.empty() && url_.empty()) {
    // The destination was taken out of the configuration since.
    spdlog::warn("{}: {} messages kept from the last run dropped: no destination is configured",
                 what_, queue_.size());
    dropped_ += queue_.size();
    queue_.clear();
    WriteSpool({});
    return;
  }
  if (!queue_.empty()) {
    spdlog::warn("{}: {} messages kept from the last run, to send first", what_, queue_.size());
  }
}

std::vector<std::string> WebhookQueue::BodiesLocked() const {
  std::vector<std::string> bodies;
  bodies.reserve(queue_.size());
  for (const Message& message : queue_) {
    bodies.push_back(message.body);
  }
  return bodies;
}

// Written to a temporary file, fdatasync'ed and renamed over the spool, the
// folder fsync'ed: a crash leaves the old queue or the new one.
void WebhookQueue::WriteSpool(const std::vector<std::string>& bodies) {
  if (spool_unusable_) {
    return;
  }
  const std::string folder = std::filesystem::path(spool_path_).parent_path().string();
  const auto sync_folder = [&folder] {
    const int dir = ::open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  };
  if (bodies.empty()) {
    if (::unlink(spool_path_.c_str()) == 0) {
      sync_folder();
    }
    spool_written_ = false;
    return;
  }
  std::string text(kWebhookSpoolMagic);
  text += '\n';
  for (const std::string& body : bodies) {
    text += body;
    text += '\n';
  }
  const std::string temporary = spool_path_ + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (size_t written = 0; ok && written < text.size();) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    ok = n > 0;
    written += ok ? static_cast<size_t>(n) : 0;
  }
  ok = ok && ::fdatasync(fd) == 0;
  if (fd >= 0) {
    ok = ::close(fd) == 0 && ok;
  }
  ok = ok && ::rename(temporary.c_str(), spool_path_.c_str()) == 0;
  if (!ok) {
    spdlog::error("{}: writing {} failed: {}", what_, spool_path_, std::strerror(errno));
    ::unlink(temporary.c_str());
    return;
  }
  sync_folder();
  spool_written_ = true;
}

void WebhookQueue::SpoolLocked(std::unique_lock<std::mutex>& lock) {
  std::vector<std::string> bodies = BodiesLocked();
  spooled_end_id_ = next_id_;
  lock.unlock();
  WriteSpool(bodies);
  lock.lock();
}

void WebhookQueue::Loop() {
  const bool retry = !spool_path_.empty();
  int64_t backoff_ms = kWebhookRetryFirstMs;
  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_ && !deadline.has_value()) {
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms_);
    }
    if (queue_.empty() || (deadline.has_value() && std::chrono::steady_clock::now() >= *deadline)) {
      if (stopping_) {
        break;
      }
      continue;
    }
    const Message message = queue_.front();
    if (!retry) {
      queue_.pop_front();
    } else if (message.id >= spooled_end_id_) {
      // In the file before it leaves: a crash or a kill while the send
      // waits (up to kWebhookPostTimeoutMs) keeps it for the next start.
      SpoolLocked(lock);
    }
    lock.unlock();
    const std::string error = send_(message.url, message.body);
    lock.lock();
    if (error.empty()) {
      ++sent_;
      backoff_ms = kWebhookRetryFirstMs;
      // A full queue may have dropped it meanwhile: remove it only if still there.
      if (retry && !queue_.empty() && queue_.front().id == message.id) {
        queue_.pop_front();
      }
      if (retry && spool_written_) {
        SpoolLocked(lock);
      }
      continue;
    }
    ++failed_;
    if (!retry) {
      spdlog::error("{}: sending failed: {}", what_, error);
      continue;
    }
    spdlog::error("{}: sending failed: {}; {} queued, retrying in {} ms", what_, error,
                  queue_.size(), backoff_ms);
    SpoolLocked(lock);
    if (stopping_) {
      break;  // a dead receiver must not hold up the shutdown
    }
    wake_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stopping_; });
    backoff_ms = std::min(2 * backoff_ms, kWebhookRetryMaxMs);
  }
  if (queue_.empty()) {
    if (retry && spool_written_) {
      WriteSpool({});
    }
    return;
  }
  if (retry) {
    spdlog::warn("{}: {} messages not sent at shutdown; kept in {} for the next start", what_,
                 queue_.size(), spool_path_);
    WriteSpool(BodiesLocked());
    return;
  }
  // What is left has been logged where it arose; a dead receiver must not
  // hold up the shutdown past the drain time.
  dropped_ += queue_.size();
  spdlog::error("{}: {} messages not sent at shutdown", what_, queue_.size());
}

}  // namespace minpanel::server
