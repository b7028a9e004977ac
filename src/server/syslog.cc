#include "server/syslog.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace minpanel::server {

std::string SyslogMessage(int facility, int64_t time_ms, std::string_view line) {
  const time_t seconds = static_cast<time_t>(time_ms / 1000);
  struct tm local {};
  localtime_r(&seconds, &local);
  char stamp[32] = {};
  // syslog(3)'s "%h %e %T": "Nov  7 16:40:01".
  std::strftime(stamp, sizeof(stamp), "%b %e %T", &local);
  return "<" + std::to_string(facility | LOG_INFO) + ">" + stamp + " " + std::string(kSyslogTag) +
         "[" + std::to_string(::getpid()) + "]: " + std::string(line);
}

std::string SendSyslog(const std::string& socket_path, const std::string& message) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    return "the socket path is too long";  // the config refuses it first
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  const int socket_fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (socket_fd < 0) {
    return std::string("socket: ") + std::strerror(errno);
  }
  timeval timeout{};
  timeout.tv_sec = kSyslogSendTimeoutMs / 1000;
  (void)::setsockopt(socket_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  const ssize_t sent = ::sendto(socket_fd, message.data(), message.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int error = errno;
  ::close(socket_fd);
  if (sent < 0) {
    return socket_path + ": " + std::strerror(error);
  }
  return "";
}

}  // namespace minpanel::server
