// Which credentials the anomaly rules watch (docs/security.md, "Anomaly
// rules"; anomaly.h): access keys, which a rule may suspend, and project
// secrets, which a rule only alerts on. The project secret is its
// project's admin credential — the one that enables a suspended key and
// reads the alerts — so suspending it would lock the operator out of the
// project's admin API; its exports are judged after they end and never
// refused by a rule. Pure functions, any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace minpanel::service {

// The decimal digits of a project id (a uint32_t) at most.
inline constexpr size_t kProjectIdDigitsMax = 10;

// "secret:" and a project id of 1 to kProjectIdDigitsMax digits, as
// Authorize names the project secret (kProjectSecretKeyPrefix).
bool IsProjectSecretId(std::string_view id);
// An access key id (IsAccessKeyId) or a project secret id.
bool IsWatchedCredentialId(std::string_view id);
// The name of a watched credential's history file in <data>/key_usage,
// without ".json": an access key's id, "secret-N" for project N's secret
// (no colon in a file name). Precondition: IsWatchedCredentialId(id).
std::string UsageFileNameOf(std::string_view id);

}  // namespace minpanel::service
