#include "privacy/visitor_ids.h"

#include <sodium.h>

namespace minpanel::privacy {
namespace {

constexpr SecretFileFormat kSaltFileFormat{
    .magic = std::string_view("MPSALT\0\0", 8), .format_version = 1, .kind = "salt file"};
constexpr DaySecretFiles::Names kSaltFileNames{
    .prefix = "salt-", .extension = ".salt", .secret = "salt"};
constexpr uint8_t kDomainVisitor = 'v';

Id128 Hash(const Secret& salt, std::string_view site_domain, std::string_view client_ip,
           std::string_view user_agent) {
  std::array<uint8_t, 16> digest{};
  crypto_generichash_state state;
  crypto_generichash_init(&state, salt.data(), salt.size(), digest.size());
  const uint8_t separator = 0;
  crypto_generichash_update(&state, &kDomainVisitor, 1);
  for (const std::string_view part : {site_domain, client_ip, user_agent}) {
    crypto_generichash_update(&state, reinterpret_cast<const uint8_t*>(part.data()), part.size());
    crypto_generichash_update(&state, &separator, 1);
  }
  crypto_generichash_final(&state, digest.data(), digest.size());
  sodium_memzero(&state, sizeof(state));
  return Id128::FromBytes(digest);
}

}  // namespace

VisitorIds::VisitorIds(std::string folder, std::shared_ptr<FileSystem> file_system,
                       std::shared_ptr<Clock> clock)
    : salts_(std::move(folder), std::move(file_system), kSaltFileFormat, kSaltFileNames),
      clock_(std::move(clock)) {}

VisitorIds::~VisitorIds() { Forget(); }

Result<std::unique_ptr<VisitorIds>> VisitorIds::Open(std::string folder,
                                                     std::shared_ptr<FileSystem> file_system,
                                                     std::shared_ptr<Clock> clock) {
  if (sodium_init() < 0) {
    return Status::Unavailable("libsodium failed to initialise");
  }
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(folder, kSecretFolderMode));
  std::unique_ptr<VisitorIds> ids(
      new VisitorIds(std::move(folder), std::move(file_system), std::move(clock)));
  // No salt is being written before Open returns: every temporary file is
  // what a crash left, and holds salt bytes.
  MP_RETURN_IF_ERROR(
      ids->salts_.RemoveFiles([](int64_t, bool temporary) { return temporary; }).status());
  MP_RETURN_IF_ERROR(ids->DestroyExpired().status());
  return ids;
}

std::string VisitorIds::SaltPath(int64_t day) const { return salts_.PathOf(day); }

Result<size_t> VisitorIds::DestroyExpired() {
  std::lock_guard lock(mutex_);
  return DestroyExpiredLocked(clock_->NowMs());
}

Result<size_t> VisitorIds::DestroyExpiredLocked(int64_t now_ms) {
  // Day D's salt goes at the start of day D + 2.
  const int64_t oldest_kept_day = UtcDayOf(now_ms) - 1;
  salts_.Drop([oldest_kept_day](int64_t day) { return day < oldest_kept_day; });
  MP_ASSIGN_OR_RETURN(
      const size_t removed,
      salts_.RemoveFiles([oldest_kept_day](int64_t day, bool) { return day < oldest_kept_day; }));
  swept_day_ = UtcDayOf(now_ms);
  return removed;
}

void VisitorIds::Forget() {
  std::lock_guard lock(mutex_);
  salts_.Drop([](int64_t) { return true; });
}

bool VisitorIds::SeenRecently(const Id128& visitor) const {
  return current_window_.contains(visitor) || previous_window_.contains(visitor);
}

void VisitorIds::Remember(const Id128& visitor, int64_t now_ms) {
  if (now_ms - window_start_ms_ >= kVisitorSessionMs) {
    // A visitor is remembered for one to two windows: at least a session.
    previous_window_ = std::move(current_window_);
    current_window_ = std::unordered_set<Id128, Id128Hash>();
    window_start_ms_ = now_ms;
  }
  if (current_window_.size() < kRecentVisitorsMax) {
    current_window_.insert(visitor);
  }
}

Result<Id128> VisitorIds::VisitorId(std::string_view site_domain, std::string_view client_ip,
                                    std::string_view user_agent) {
  std::lock_guard lock(mutex_);
  const int64_t now_ms = clock_->NowMs();
  const int64_t today = UtcDayOf(now_ms);
  if (today != swept_day_) {
    MP_RETURN_IF_ERROR(DestroyExpiredLocked(now_ms).status());
  }
  if (!has_window_ || now_ms < window_start_ms_ ||
      now_ms - window_start_ms_ >= 2 * kVisitorSessionMs) {
    // Both windows are stale (or the clock went back): nobody in them was
    // seen within a session.
    previous_window_.clear();
    current_window_.clear();
    window_start_ms_ = now_ms;
    has_window_ = true;
  }
  const auto make_salt = [](Secret* salt) { randombytes_buf(salt->data(), salt->size()); };
  MP_ASSIGN_OR_RETURN(const Secret* current, salts_.Get(today, true, make_salt));
  Id128 visitor = Hash(*current, site_domain, client_ip, user_agent);
  MP_ASSIGN_OR_RETURN(const Secret* previous, salts_.Get(today - 1, false, make_salt));
  if (previous != nullptr) {
    const Id128 yesterday = Hash(*previous, site_domain, client_ip, user_agent);
    if (SeenRecently(yesterday)) {
      visitor = yesterday;  // a visit that crossed midnight
    }
  }
  Remember(visitor, now_ms);
  return visitor;
}

}  // namespace minpanel::privacy
