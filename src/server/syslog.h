// The audit checkpoint syslog sink (audit_checkpoint_syslog; docs/security.md,
// "The audit log"): each signed checkpoint line as one message to the local
// syslog daemon's unix datagram socket (/dev/log, or
// audit_checkpoint_syslog_socket), in the form syslog(3) writes:
// "<PRI>Mmm dd hh:mm:ss minpanel-audit[PID]: LINE", PRI the facility's code
// with severity info. Sent from a WebhookQueue's thread (webhook.h), so that
// an append never waits for the daemon.
//
// Written with a socket of our own rather than syslog(3): glibc's sends only
// to /dev/log (a test needs a receiver of its own) and keeps openlog's
// identity and facility process-wide. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace minpanel::server {

inline constexpr std::string_view kSyslogTag = "minpanel-audit";
// How long one send may wait for a daemon whose socket buffer is full.
inline constexpr int64_t kSyslogSendTimeoutMs = 5000;

// The message for `line`: facility `facility` (syslog.h's LOG_LOCAL4, …),
// severity info, the local time `time_ms`, this process's id.
std::string SyslogMessage(int facility, int64_t time_ms, std::string_view line);
// Sends `message` as one datagram to the unix socket at `socket_path`: the
// error's message, or empty. A QueueSender.
std::string SendSyslog(const std::string& socket_path, const std::string& message);

}  // namespace minpanel::server
