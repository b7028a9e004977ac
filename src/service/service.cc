#include "service/service.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <tuple>
#include <filesystem>

#include <date/date.h>
#include <date/tz.h>
#include <simdjson.h>

#include "ingest/plausible_events.h"
#include "ingest/posthog_events.h"
#include "privacy/policy_file.h"

namespace minpanel::service {

struct Service::Counters {
  std::atomic<uint64_t> events_accepted{0};
  std::atomic<uint64_t> events_rejected{0};
  std::atomic<uint64_t> events_duplicate{0};
  std::atomic<uint64_t> profile_updates_accepted{0};
  std::atomic<uint64_t> properties_dropped{0};
  std::atomic<uint64_t> properties_pseudonymised{0};
  std::atomic<uint64_t> values_redacted{0};
  std::atomic<uint64_t> context_fields_discarded{0};
  std::atomic<uint64_t> context_fields_generalised{0};
  std::array<std::atomic<uint64_t>, privacy::kPiiKindCount> detections{};
  // Keyed by (project, rule line, pattern, action); rules match rarely
  // enough (only named properties) for a mutex per request.
  std::mutex rule_mutex;
  std::map<std::tuple<std::string, int64_t, std::string, std::string>, uint64_t> rule_matches;
  std::atomic<uint64_t> export_rows{0};
  std::atomic<uint64_t> queries{0};
  // Per project name: the identity map its last query or export resolved.
  std::mutex identity_mutex;
  std::map<std::string, query::IdentityStats> identity;
};

namespace {

constexpr uint32_t kDataFolderMode = 0700;
// The visitor salts of Plausible's events API, beside the pseudonym keys.
constexpr std::string_view kSaltFolder = "/salts";
constexpr size_t kImportPayloadBytesMax = 10 * 1000 * 1000;  // Mixpanel: 10 MB uncompressed

Status FirstRecordError(const std::vector<ingest::RecordError>& errors) {
  const ingest::RecordError& error = errors.front();
  return Status::InvalidArgument("record " + std::to_string(error.index) + ": " + error.field +
                                 ": " + error.message);
}

// Storage failures become Unavailable: the client should retry later.
Status StorageFailure(const Status& status) {
  return Status::Unavailable("storage failed, nothing was stored, retry later: " +
                             status.message());
}

Result<date::year_month_day> ParseDate(std::string_view text, std::string_view field) {
  int year = 0;
  unsigned month = 0;
  unsigned day = 0;
  const char* end = text.data() + text.size();
  const bool shaped = text.size() == 10 && text[4] == '-' && text[7] == '-';
  if (!shaped || std::from_chars(text.data(), text.data() + 4, year).ptr != text.data() + 4 ||
      std::from_chars(text.data() + 5, text.data() + 7, month).ptr != text.data() + 7 ||
      std::from_chars(text.data() + 8, end, day).ptr != end) {
    return Status::InvalidArgument(std::string(field) + ": expected a date as YYYY-MM-DD");
  }
  const date::year_month_day ymd{date::year{year}, date::month{month}, date::day{day}};
  if (!ymd.ok()) {
    return Status::InvalidArgument(std::string(field) + ": not a calendar date");
  }
  return ymd;
}

// Milliseconds since the epoch at which `day` starts in `zone`.
int64_t DayStartMs(date::local_days day, const date::time_zone* zone) {
  const auto start = zone->to_sys(day, date::choose::earliest);
  return std::chrono::duration_cast<std::chrono::milliseconds>(start.time_since_epoch()).count();
}

Result<std::vector<std::string>> ParseEventNames(std::string_view json) {
  std::vector<std::string> names;
  if (json.empty()) {
    return names;
  }
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  if (parser.parse(json.data(), json.size()).get(array)) {
    return Status::InvalidArgument("event: expected a JSON array of event names");
  }
  for (simdjson::dom::element element : array) {
    std::string_view name;
    if (element.get(name)) {
      return Status::InvalidArgument("event: every item must be a string");
    }
    if (names.size() == query::kExportEventNamesMax) {
      return Status::ResourceExhausted("event: over the limit of " +
                                       std::to_string(query::kExportEventNamesMax) + " names");
    }
    names.emplace_back(name);
  }
  return names;
}

// The export's distinct_ids=["a","b"]: at most kExportDistinctIdsMax strings.
Result<std::vector<std::string>> ParseDistinctIds(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::array array;
  if (parser.parse(json.data(), json.size()).get(array)) {
    return Status::InvalidArgument("distinct_ids: expected a JSON array of distinct ids");
  }
  if (array.size() > query::kExportDistinctIdsMax) {
    return Status::InvalidArgument("distinct_ids: " + std::to_string(array.size()) +
                                   " ids, over the limit of " +
                                   std::to_string(query::kExportDistinctIdsMax) +
                                   " (kExportDistinctIdsMax)");
  }
  std::vector<std::string> ids;
  ids.reserve(array.size());
  for (simdjson::dom::element element : array) {
    std::string_view id;
    if (element.get(id) || id.empty()) {
      return Status::InvalidArgument("distinct_ids: every item must be a non-empty string");
    }
    ids.emplace_back(id);
  }
  return ids;
}

// NDJSON on /import: newline-separated objects become one JSON array.
std::string NdjsonToArray(std::string_view payload) {
  std::string array = "[";
  size_t line_start = 0;
  while (line_start < payload.size()) {
    size_t line_end = payload.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      line_end = payload.size();
    }
    std::string_view line = payload.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) {
      continue;
    }
    if (array.size() > 1) {
      array.push_back(',');
    }
    array.append(line);
  }
  array.push_back(']');
  return array;
}

// How far up from the running binary's folder to look for the database
// that scripts/setup-geoip.sh installs (a build tree sits in the source tree).
constexpr int kGeoSearchLevelsMax = 6;

std::vector<std::string> FindGeoDatabase() {
  std::error_code error;
  std::filesystem::path folder = std::filesystem::read_symlink("/proc/self/exe", error);
  for (int level = 0; level < kGeoSearchLevelsMax && !error && folder.has_parent_path();
       ++level) {
    folder = folder.parent_path();
    std::vector<std::string> paths = privacy::DefaultGeoDatabasePaths(folder.string());
    const bool all_there = std::all_of(paths.begin(), paths.end(), [](const std::string& path) {
      return std::filesystem::exists(path);
    });
    if (all_there) {
      return paths;
    }
    if (folder == folder.root_path()) {
      break;
    }
  }
  return {};
}

// The privacy policy's shared machinery, loaded once: the detectors,
// uap-core's user-agent regexes, the IP geolocation database (if any).
Result<std::shared_ptr<const privacy::PolicyTools>> LoadPolicyTools(const Config& config) {
  auto tools = std::make_shared<privacy::PolicyTools>();
  MP_ASSIGN_OR_RETURN(tools->user_agents,
                      privacy::UserAgentParser::Load(config.user_agent_regexes));
  const std::vector<std::string> geo_files =
      config.geoip_files.empty() ? FindGeoDatabase() : config.geoip_files;
  if (!geo_files.empty()) {
    MP_ASSIGN_OR_RETURN(tools->geo, privacy::GeoDatabase::Open(geo_files));
  }
  return std::shared_ptr<const privacy::PolicyTools>(std::move(tools));
}

}  // namespace

Service::Service(std::shared_ptr<Clock> clock, int data_lock_fd,
                 std::unique_ptr<ProjectRegistry> projects,
                 std::unique_ptr<privacy::KeyStore> keys,
                 std::unique_ptr<privacy::PolicyStore> policies,
                 std::shared_ptr<const privacy::PolicyTools> tools,
                 std::unique_ptr<store::Engine> engine)
    : clock_(std::move(clock)),
      data_lock_fd_(data_lock_fd),
      projects_(std::move(projects)),
      keys_(std::move(keys)),
      policies_(std::move(policies)),
      tools_(std::move(tools)),
      engine_(std::move(engine)),
      counters_(std::make_unique<Counters>()) {}

Service::~Service() {
  (void)Close();
  if (data_lock_fd_ >= 0) {
    ::close(data_lock_fd_);
  }
}

Result<std::string> CheckPolicyText(std::string_view text) {
  MP_ASSIGN_OR_RETURN(const privacy::PolicySpec spec, privacy::ParsePolicy(text));
  return privacy::DescribePolicy(spec);
}

Result<std::unique_ptr<ProjectRegistry>> OpenProjects(const Config& config,
                                                      std::shared_ptr<FileSystem> file_system,
                                                      std::shared_ptr<Clock> clock) {
  MP_RETURN_IF_ERROR(file_system->CreateDirectories(config.data_folder, kDataFolderMode));
  return ProjectRegistry::Open(config.data_folder, std::move(file_system), std::move(clock));
}

Result<ProjectKeyRotation> RotateProjectKey(const Config& config,
                                            std::shared_ptr<FileSystem> file_system,
                                            std::shared_ptr<Clock> clock, std::string_view name,
                                            bool destroy_old) {
  MP_ASSIGN_OR_RETURN(const std::unique_ptr<ProjectRegistry> projects,
                      OpenProjects(config, file_system, std::move(clock)));
  const std::optional<Project> project = projects->FindByName(name);
  if (!project.has_value()) {
    return Status::NotFound("no project named '" + std::string(name) +
                            "' (see minpanel project list)");
  }
  MP_ASSIGN_OR_RETURN(const std::unique_ptr<privacy::KeyStore> keys,
                      privacy::KeyStore::Open(KeyFolder(config), std::move(file_system)));
  auto rotated = keys->Rotate(project->id, destroy_old);
  if (!rotated.ok()) {
    if (rotated.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("project '" + std::string(name) +
                              "' has no pseudonym key yet (nothing was stored): nothing to "
                              "replace");
    }
    return rotated.status();
  }
  return ProjectKeyRotation{*project, *rotated};
}

Result<std::unique_ptr<Service>> Service::Open(const Config& config,
                                               std::shared_ptr<FileSystem> file_system,
                                               std::shared_ptr<Clock> clock) {
  MP_RETURN_IF_ERROR(ValidateConfig(config));
  MP_ASSIGN_OR_RETURN(std::unique_ptr<ProjectRegistry> projects,
                      OpenProjects(config, file_system, clock));
  const std::string lock_path = config.data_folder + "/LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || ::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (lock_fd >= 0) {
      ::close(lock_fd);
    }
    return Status::Unavailable("data folder " + config.data_folder +
                               " is in use by another minpanel process (" + lock_path + ")");
  }
  // From here on, a failure must release the data folder's lock.
  std::unique_ptr<int, void (*)(int*)> lock_guard(new int(lock_fd), [](int* fd) {
    ::close(*fd);
    delete fd;
  });
  MP_ASSIGN_OR_RETURN(std::unique_ptr<privacy::KeyStore> keys,
                      privacy::KeyStore::Open(KeyFolder(config), file_system));
  MP_ASSIGN_OR_RETURN(std::shared_ptr<const privacy::PolicyTools> tools,
                      LoadPolicyTools(config));
  auto policies =
      std::make_unique<privacy::PolicyStore>(config.data_folder + "/policies", file_system, clock);
  std::vector<std::string> names;
  for (const Project& project : projects->List()) {
    names.push_back(project.name);
  }
  MP_ASSIGN_OR_RETURN(const std::vector<std::string> refused, policies->Load(names));
  if (!refused.empty()) {
    return Status::InvalidArgument("privacy policy refused: " + refused.front());
  }
  store::Options store_options;
  store_options.folder = config.data_folder + "/store";
  store_options.file_system = file_system;
  store_options.clock = clock;
  store_options.dedup_window_ms = config.dedup_window_ms;
  store_options.dedup_entries_max = config.dedup_entries_max;
  store_options.memtable_rows_max = config.store_memtable_rows_max;
  store_options.rewrite_older_segments = config.store_rewrite_older_segments;
  store_options.rewrite_every_segment = config.store_rewrite_every_segment;
  store_options.purge_delay_ms = ErasurePurgeDelayMs(config.erasure_purge_deadline_hours);
  store_options.erasure_journal_folder = ErasureJournalFolder(config);
  // Compaction folds each id's rows into its person (docs/identity.md,
  // "Folded segments"), with the links of the project's segment files.
  store_options.subject_fold =
      [](uint32_t /*project_id*/,
         const std::vector<std::shared_ptr<const store::SegmentReader>>& segments)
      -> std::shared_ptr<const store::SubjectFold> {
    Result<std::shared_ptr<const query::IdentityMap>> map = query::ResolveIdentities(segments);
    if (!map.ok()) {
      return nullptr;  // a segment did not read: compaction keeps rows where they are
    }
    return query::SubjectFoldOf(**map);
  };
  MP_ASSIGN_OR_RETURN(std::unique_ptr<store::Engine> engine,
                      store::OpenEmbeddedEngine(store_options));
  MP_ASSIGN_OR_RETURN(
      std::unique_ptr<privacy::VisitorIds> visitor_ids,
      privacy::VisitorIds::Open(KeyFolder(config) + std::string(kSaltFolder), file_system, clock));
  delete lock_guard.release();  // the Service owns the lock from here
  std::unique_ptr<Service> service(new Service(std::move(clock), lock_fd, std::move(projects),
                                               std::move(keys), std::move(policies),
                                               std::move(tools), std::move(engine)));
  service->visitor_ids_ = std::move(visitor_ids);
  MP_ASSIGN_OR_RETURN(service->access_keys_,
                      AccessKeyStore::Open(config.data_folder, file_system, service->clock_));
  service->project_quotas_ = std::make_unique<ProjectQuotas>(service->clock_);
  service->SetAnomalyRules(config.anomaly);
  service->key_usage_ = std::make_shared<KeyUsage>(config.data_folder + "/key_usage", file_system);
  MP_ASSIGN_OR_RETURN(service->address_key_, LoadAddressKey(*file_system, KeyFolder(config)));
  service->key_limiter_ = std::make_unique<KeyLimiter>(service->clock_, service->key_usage_);
  service->key_limit_defaults_ = {config.limits.key_requests_per_second,
                                  config.limits.key_export_rows_per_day,
                                  config.limits.key_export_subjects_per_day};
  service->export_reason_rows_ = config.limits.export_reason_rows;
  MP_ASSIGN_OR_RETURN(service->address_keys_,
                      OpenAuditAddressKeys(config, file_system, service->clock_));
  MP_ASSIGN_OR_RETURN(service->audit_, OpenAuditLog(config, file_system, service->clock_,
                                                    service->address_keys_));
  MP_ASSIGN_OR_RETURN(service->gdpr_tasks_,
                      GdprTasks::Open(config.data_folder, file_system, service->clock_));
  MP_RETURN_IF_ERROR(service->ResumeGdprTasks());
  MP_ASSIGN_OR_RETURN(service->reports_,
                      ReportStore::Open(config.data_folder, file_system, service->clock_));
  MP_ASSIGN_OR_RETURN(service->catalogue_,
                      DataCatalogue::Open(config.data_folder, file_system, service->clock_));
  service->audit_retention_days_ = config.audit_retention_days;
  service->audit_checkpoint_sink_ = config.audit_checkpoint_sink;
  service->file_system_ = file_system;
  service->settings_.Set(config.project_settings);
  service->key_versions_ = service->KeyVersions();
  // The data map's looks at the store start from here (RefreshDataMapStorage).
  const store::Stats stats = service->engine_->GetStats();
  service->datamap_storage_seen_ = {stats.deletions_logged, stats.purges};
  return service;
}

Result<privacy::Policy> Service::PolicyFor(const Project& project) {
  auto key = keys_->GetOrCreate(project.id);
  if (!key.ok()) {
    // A project's key is made on its first event; a full disk then is a
    // storage failure like any other (503, retry), not the client's fault.
    return StorageFailure(key.status());
  }
  // One lookup: the spec and its version are in force together.
  const privacy::VersionedPolicy in_force = policies_->Get(project.name);
  return privacy::Policy(*key, in_force.spec, tools_, in_force.version);
}

Result<Id128> Service::Pseudonym(const Project& project, std::string_view distinct_id) {
  MP_ASSIGN_OR_RETURN(privacy::Policy policy, PolicyFor(project));
  return policy.Pseudonym(distinct_id);
}

Result<Project> Service::Authenticate(const Credentials& credentials) const {
  // /import: a key with the ingest scope or the project secret; never the
  // public token, since /import takes events of any age.
  MP_ASSIGN_OR_RETURN(const Access access,
                      Authorize(credentials, Scope::kIngest, "/import", /*needs_project=*/true));
  if (access.principal.key_id.starts_with("token:")) {
    return Status::Unauthenticated("authentication: the project token is public; /import needs "
                                   "the project secret or a key with the scope 'ingest'");
  }
  return access.project;
}

Result<Project> Service::ProjectForTokens(const std::vector<std::string>& tokens) const {
  if (tokens.empty() || tokens.front().empty()) {
    return Status::Unauthenticated("token: missing (properties.token or $token)");
  }
  for (const std::string& token : tokens) {
    if (token != tokens.front()) {
      return Status::InvalidArgument("token: a request must carry one project token");
    }
  }
  const std::optional<Project> project = projects_->FindByToken(tokens.front());
  if (!project.has_value()) {
    return Status::Unauthenticated("token: not the token of any project");
  }
  return *project;
}

Result<IngestOutcome> Service::IngestMixpanel(const IngestRequest& request) {
  MP_ASSIGN_OR_RETURN(Prepared prepared,
                      ApplyConsent(PrepareMixpanel(request), request.consent_signal));
  return AppendAndFinish(std::move(prepared));
}

void Service::IngestMixpanelAsync(const IngestRequest& request, IngestCallback done) {
  AppendAsync(ApplyConsent(PrepareMixpanel(request), request.consent_signal), std::move(done));
}

void Service::IngestPostHogAsync(const PostHogIngestRequest& request, IngestCallback done) {
  AppendAsync(ApplyConsent(PreparePostHog(request), request.consent_signal), std::move(done));
}

void Service::IngestSegmentAsync(const SegmentIngestRequest& request, IngestCallback done) {
  AppendAsync(ApplyConsent(PrepareSegment(request), request.consent_signal), std::move(done));
}

void Service::IngestPlausibleAsync(const PlausibleIngestRequest& request, IngestCallback done) {
  AppendAsync(ApplyConsent(PreparePlausible(request), request.consent_signal),
              std::move(done));
}

Result<audit::AuditLog::Drained> Service::DrainAuditQueue() { return audit_->DrainQueue(); }

Status Service::DestroyExpiredKeys() {
  const Status salts = visitor_ids_->DestroyExpired().status();
  const Status addresses = address_keys_->DestroyExpired().status();
  return salts.ok() ? addresses : salts;
}

void Service::AppendAsync(Result<Prepared> prepared, IngestCallback done) {
  if (!prepared.ok()) {
    done(prepared.status());
    return;
  }
  store::AppendBatch& batch = prepared->batch;
  if (batch.events.empty() && batch.profile_updates.empty()) {
    done(std::move(prepared->outcome));
    return;
  }
  if (Status admitted = AdmitIngest(batch); !admitted.ok()) {
    done(std::move(admitted));
    return;
  }
  const uint32_t project_id = batch.project_id;
  engine_->AppendAsync(std::move(batch), [this, project_id, outcome = std::move(prepared->outcome),
                                          done = std::move(done)](
                                             Result<store::AppendResult> appended) mutable {
    if (appended.ok()) {
      project_quotas_->CountStored(project_id, appended->log_bytes);
    }
    done(Finish(std::move(outcome), appended));
  });
}

Result<IngestOutcome> Service::AppendAndFinish(Prepared prepared) {
  if (prepared.batch.events.empty() && prepared.batch.profile_updates.empty()) {
    return std::move(prepared.outcome);
  }
  MP_RETURN_IF_ERROR(AdmitIngest(prepared.batch));
  const uint32_t project_id = prepared.batch.project_id;
  Result<store::AppendResult> appended = engine_->Append(std::move(prepared.batch));
  if (appended.ok()) {
    project_quotas_->CountStored(project_id, appended->log_bytes);
  }
  return Finish(std::move(prepared.outcome), appended);
}

Result<IngestOutcome> Service::Finish(IngestOutcome outcome,
                                      const Result<store::AppendResult>& appended) {
  if (!appended.ok()) {
    return StorageFailure(appended.status());
  }
  outcome.stored = appended->events_stored + appended->profile_updates_stored;
  outcome.duplicates = appended->events_duplicate;
  counters_->events_accepted += appended->events_stored;
  counters_->events_duplicate += appended->events_duplicate;
  counters_->profile_updates_accepted += appended->profile_updates_stored;
  return outcome;
}

Result<Service::Prepared> Service::PrepareMixpanel(const IngestRequest& request) {
  if (request.route == ingest::MixpanelRoute::kEngage ||
      request.route == ingest::MixpanelRoute::kGroups) {
    return PrepareProfiles(request);
  }
  if (request.route != ingest::MixpanelRoute::kImport) {
    return PrepareEvents(request, nullptr);
  }
  MP_ASSIGN_OR_RETURN(const Project project, Authenticate(request.credentials));
  if (request.payload.size() > kImportPayloadBytesMax) {
    return Status::ResourceExhausted("body: " + std::to_string(request.payload.size()) +
                                     " bytes of JSON, over the limit of " +
                                     std::to_string(kImportPayloadBytesMax) + " per /import");
  }
  return PrepareEvents(request, &project);
}

Result<Service::Prepared> Service::PreparePostHog(const PostHogIngestRequest& request) {
  ingest::PostHogDecodeOptions options;
  options.now_ms = clock_->NowMs();
  options.client_ip = request.client_ip;
  options.token = request.token;
  options.library = request.library;
  MP_ASSIGN_OR_RETURN(ingest::PostHogBatch decoded,
                      ingest::DecodePostHogEvents(request.payload, options));
  Prepared prepared;
  prepared.outcome.records_total = decoded.records_total;
  if (decoded.events.empty() && decoded.profile_updates.empty()) {
    return prepared;
  }
  if (decoded.token.empty()) {
    return Status::Unauthenticated(
        "api_key: missing (the project token as api_key, token or properties.token)");
  }
  const std::optional<Project> project = projects_->FindByToken(decoded.token);
  if (!project.has_value()) {
    return Status::Unauthenticated("api_key: not the token of any project");
  }
  MP_RETURN_IF_ERROR(ApplyPolicy(*project, std::move(decoded.events), nullptr, &prepared.batch,
                                 "posthog capture"));
  MP_RETURN_IF_ERROR(ApplyProfilePolicy(*project, std::move(decoded.profile_updates),
                                        &prepared.batch, "posthog capture"));
  return prepared;
}

Result<Service::Prepared> Service::PrepareSegment(const SegmentIngestRequest& request) {
  ingest::SegmentDecodeOptions options;
  options.now_ms = clock_->NowMs();
  options.call = request.call;
  options.basic_write_key = request.write_key;
  MP_ASSIGN_OR_RETURN(ingest::SegmentBatch decoded,
                      ingest::DecodeSegment(request.payload, options));
  Prepared prepared;
  prepared.outcome.records_total = decoded.records_total;
  if (decoded.events.empty() && decoded.profile_updates.empty()) {
    return prepared;
  }
  // The write key is the project token: public, like Mixpanel's token.
  if (decoded.write_key.empty()) {
    return Status::Unauthenticated(
        "writeKey: missing (the project token as the Basic auth user or as writeKey)");
  }
  const std::optional<Project> project = projects_->FindByToken(decoded.write_key);
  if (!project.has_value()) {
    return Status::Unauthenticated("writeKey: not the token of any project");
  }
  MP_RETURN_IF_ERROR(
      ApplyPolicy(*project, std::move(decoded.events), nullptr, &prepared.batch, "segment"));
  MP_RETURN_IF_ERROR(ApplyProfilePolicy(*project, std::move(decoded.profile_updates),
                                        &prepared.batch, "segment"));
  return prepared;
}

Result<Service::Prepared> Service::PreparePlausible(const PlausibleIngestRequest& request) {
  ingest::PlausibleDecodeOptions options;
  options.now_ms = clock_->NowMs();
  options.client_ip = request.client_ip;
  options.user_agent = request.user_agent;
  MP_ASSIGN_OR_RETURN(ingest::PlausibleEvent decoded,
                      ingest::DecodePlausibleEvent(request.body, options));
  const std::optional<Project> project = projects_->FindByDomain(decoded.domain);
  if (!project.has_value()) {
    return Status::NotFound("domain: no project lists the site '" + decoded.domain +
                            "' (minpanel project set-domains NAME " + decoded.domain + ")");
  }
  auto visitor = visitor_ids_->VisitorId(decoded.domain, request.client_ip, request.user_agent);
  if (!visitor.ok()) {
    return StorageFailure(visitor.status());
  }
  // Already a keyed value whose key (the day's salt) is destroyed after 48
  // hours: a "psn_" id, which the policy takes as the subject as it is.
  decoded.event.distinct_id = FormatPseudonym(*visitor);
  // Plausible sends no id and never retries, so nothing is a duplicate: the
  // decoder marks the time as the arrival time, for which the policy gives
  // a random insert id (two equal events of one visitor in the same
  // millisecond are two).
  Prepared prepared;
  prepared.outcome.records_total = 1;
  std::vector<RawEvent> events;
  events.push_back(std::move(decoded.event));
  MP_RETURN_IF_ERROR(
      ApplyPolicy(*project, std::move(events), nullptr, &prepared.batch, "plausible /api/event"));
  return prepared;
}

Result<Service::Prepared> Service::PrepareEvents(const IngestRequest& request,
                                                 const Project* authenticated) {
  MP_ASSIGN_OR_RETURN(ingest::MixpanelEvents decoded,
                      DecodeEvents(request.route, request.payload));
  Prepared prepared;
  prepared.outcome.records_total = decoded.records_total;
  counters_->events_rejected += decoded.errors.size();
  if (!decoded.errors.empty() && !request.strict) {
    counters_->events_rejected += decoded.events.size();
    return FirstRecordError(decoded.errors);
  }
  prepared.outcome.errors = std::move(decoded.errors);
  if (decoded.events.empty()) {
    return prepared;
  }
  Project project;
  if (authenticated != nullptr) {
    project = *authenticated;
  } else {
    MP_ASSIGN_OR_RETURN(project, ProjectForTokens(decoded.tokens));
  }
  MP_RETURN_IF_ERROR(ApplyPolicy(project, std::move(decoded.events), &request, &prepared.batch,
                                 MixpanelSource(request.route)));
  return prepared;
}

Result<ingest::MixpanelEvents> Service::DecodeEvents(ingest::MixpanelRoute route,
                                                     std::string_view payload) const {
  ingest::DecodeOptions options;
  options.route = route;
  options.now_ms = clock_->NowMs();
  auto decoded = ingest::DecodeMixpanelEvents(payload, options);
  if (!decoded.ok() && route == ingest::MixpanelRoute::kImport &&
      decoded.status().code() == StatusCode::kInvalidArgument &&
      payload.find('\n') != std::string_view::npos) {
    // Not one JSON value: /import also takes newline-delimited JSON.
    decoded = ingest::DecodeMixpanelEvents(NdjsonToArray(payload), options);
  }
  return decoded;
}

namespace {

// Whether `raw` is a decoy row of a watermarked minpanel export being
// imported again (docs/security.md, "Watermarked exports"): its distinct id
// or insert id is a decoy id of this project's watermark key.
bool IsExportDecoy(const RawEvent& raw, const std::function<const query::WatermarkKey&()>& key) {
  constexpr size_t kHexChars = 32;
  const std::string_view distinct_id = raw.distinct_id;
  if (distinct_id.size() == kPseudonymPrefix.size() + kHexChars &&
      distinct_id.starts_with(kPseudonymPrefix)) {
    const auto subject = Id128::FromHex(distinct_id.substr(kPseudonymPrefix.size()));
    if (subject.has_value() && query::IsDecoySubject(key(), *subject)) {
      return true;
    }
  }
  if (raw.insert_id.has_value() && raw.insert_id->size() == kHexChars) {
    const auto insert_id = Id128::FromHex(*raw.insert_id);
    return insert_id.has_value() && query::IsDecoyInsertId(key(), *insert_id);
  }
  return false;
}

}  // namespace

Status Service::ApplyPolicy(const Project& project, std::vector<RawEvent> events,
                            const IngestRequest* request, store::AppendBatch* batch,
                            std::string_view source) {
  MP_ASSIGN_OR_RETURN(const privacy::Policy policy, PolicyFor(project));
  catalogue_->ObserveEvents(project.id, project.name, policy, source, events);
  batch->project_id = project.id;
  batch->events.reserve(events.size());
  privacy::PolicyCounters policy_counters;
  std::optional<query::WatermarkKey> watermark_key;
  Status key_status;
  const auto watermark = [&]() -> const query::WatermarkKey& {
    if (!watermark_key.has_value()) {
      auto key = keys_->GetOrCreate(project.id);
      key_status = key.status();
      watermark_key = key.ok() ? query::DeriveWatermarkKey(key->bytes) : query::WatermarkKey{};
    }
    return *watermark_key;
  };
  for (RawEvent& raw : events) {
    if (IsExportDecoy(raw, watermark)) {
      continue;
    }
    if (request != nullptr && request->use_client_ip && raw.client_ip.empty()) {
      raw.client_ip = request->client_ip;
    }
    batch->events.push_back(policy.Apply(std::move(raw), &policy_counters));
  }
  MP_RETURN_IF_ERROR(key_status);
  CountPolicy(project, policy, policy_counters);
  return Status::Ok();
}

Status Service::ApplyProfilePolicy(const Project& project, std::vector<RawProfileUpdate> updates,
                                   store::AppendBatch* batch, std::string_view source) {
  if (updates.empty()) {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(const privacy::Policy policy, PolicyFor(project));
  catalogue_->ObserveProfiles(project.id, project.name, policy, source, updates);
  batch->project_id = project.id;
  batch->profile_updates.reserve(batch->profile_updates.size() + updates.size());
  privacy::PolicyCounters policy_counters;
  for (RawProfileUpdate& raw : updates) {
    batch->profile_updates.push_back(policy.Apply(std::move(raw), &policy_counters));
  }
  CountPolicy(project, policy, policy_counters);
  return Status::Ok();
}

Result<IngestOutcome> Service::ImportEvents(const Project& project,
                                            const std::vector<std::string_view>& records) {
  if (records.size() > kImportRecordsMax) {
    return Status::ResourceExhausted("batch: " + std::to_string(records.size()) +
                                     " events, over the limit of " +
                                     std::to_string(kImportRecordsMax) + " (kImportRecordsMax)");
  }
  ingest::DecodeOptions options;
  options.route = ingest::MixpanelRoute::kImport;
  options.now_ms = clock_->NowMs();
  IngestOutcome outcome;
  outcome.records_total = records.size();
  std::vector<RawEvent> events;
  events.reserve(records.size());
  // One decode per record, so that one malformed record is refused alone
  // instead of failing the batch as it would in one JSON array.
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    const std::string_view record = records[record_idx];
    auto decoded = ingest::DecodeMixpanelEvents(record, options);
    if (!decoded.ok()) {
      outcome.errors.push_back({record_idx, "", "record", decoded.status().message()});
      continue;
    }
    if (decoded->records_total != 1) {
      outcome.errors.push_back({record_idx, "", "record", "expected one event object"});
      continue;
    }
    if (!decoded->errors.empty()) {
      ingest::RecordError& error = decoded->errors.front();
      error.index = record_idx;
      outcome.errors.push_back(std::move(error));
      continue;
    }
    events.push_back(std::move(decoded->events.front()));
  }
  counters_->events_rejected += outcome.errors.size();
  if (events.empty()) {
    return outcome;
  }
  Prepared prepared;
  prepared.outcome = std::move(outcome);
  MP_RETURN_IF_ERROR(
      ApplyPolicy(project, std::move(events), nullptr, &prepared.batch, "minpanel import"));
  return AppendAndFinish(std::move(prepared));
}

Result<Service::Prepared> Service::PrepareProfiles(const IngestRequest& request) {
  ingest::DecodeOptions options;
  options.route = request.route;
  options.now_ms = clock_->NowMs();
  MP_ASSIGN_OR_RETURN(ingest::MixpanelProfiles decoded,
                      ingest::DecodeMixpanelProfiles(request.payload, options));
  Prepared prepared;
  prepared.outcome.records_total = decoded.records_total;
  if (!decoded.errors.empty() && !request.strict) {
    return FirstRecordError(decoded.errors);
  }
  prepared.outcome.errors = std::move(decoded.errors);
  if (decoded.updates.empty()) {
    return prepared;
  }
  MP_ASSIGN_OR_RETURN(const Project project, ProjectForTokens(decoded.tokens));
  MP_RETURN_IF_ERROR(ApplyProfilePolicy(project, std::move(decoded.updates), &prepared.batch,
                                        MixpanelSource(request.route)));
  return prepared;
}

Result<query::ExportRequest> Service::ExportRequestOf(const Project& project,
                                                      const ExportOptions& options) {
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(project.time_zone);
  } catch (const std::exception&) {
    return Status::InvalidArgument("project time zone '" + project.time_zone + "' is unknown");
  }
  query::ExportRequest request;
  request.project_id = project.id;
  MP_ASSIGN_OR_RETURN(const date::year_month_day from_day,
                      ParseDate(options.from_date, "from_date"));
  MP_ASSIGN_OR_RETURN(const date::year_month_day to_day, ParseDate(options.to_date, "to_date"));
  request.from_ms = DayStartMs(date::local_days{from_day}, zone);
  // to_date is inclusive: the range ends where the next day starts.
  request.to_ms = DayStartMs(date::local_days{to_day} + date::days{1}, zone);
  if (request.to_ms <= request.from_ms) {
    return Status::InvalidArgument("to_date: must not be before from_date");
  }
  MP_ASSIGN_OR_RETURN(request.event_names, ParseEventNames(options.event_names_json));
  request.limit = options.limit;
  request.watermark = options.watermark;
  if (options.distinct_id.has_value()) {
    MP_ASSIGN_OR_RETURN(request.subject, Pseudonym(project, *options.distinct_id));
  }
  if (options.distinct_ids_json.has_value()) {
    if (options.distinct_id.has_value()) {
      return Status::InvalidArgument(
          "distinct_ids: give either distinct_id or distinct_ids, not both");
    }
    MP_ASSIGN_OR_RETURN(const std::vector<std::string> distinct_ids,
                        ParseDistinctIds(*options.distinct_ids_json));
    // One policy for every id: each pseudonym exactly as distinct_id's.
    MP_ASSIGN_OR_RETURN(const privacy::Policy policy, PolicyFor(project));
    request.subjects.emplace();
    request.subjects->reserve(distinct_ids.size());
    for (const std::string& distinct_id : distinct_ids) {
      request.subjects->push_back(policy.Pseudonym(distinct_id));
    }
  }
  return request;
}

Result<query::ExportSummary> Service::RunExport(
    const Project& project, const ExportOptions& options,
    const std::function<bool(std::string_view)>& sink) {
  MP_ASSIGN_OR_RETURN(const query::ExportRequest request, ExportRequestOf(project, options));
  MP_ASSIGN_OR_RETURN(query::ExportSummary summary,
                      query::ExportJsonLines(*engine_, request, sink));
  counters_->export_rows += summary.rows;
  if (summary.identity.has_value()) {
    std::lock_guard lock(counters_->identity_mutex);
    counters_->identity[project.name] = *summary.identity;
  }
  return summary;
}

Result<std::string> Service::RunQuery(const Project& project, std::string_view query_json,
                                      uint32_t min_group_size, audit::SubjectKeySets* listed) {
  MP_ASSIGN_OR_RETURN(const query::QuerySpec spec, query::ParseQuery(query_json));
  query::QueryContext context;
  context.time_zone = project.time_zone;
  context.now_ms = clock_->NowMs();
  context.min_group_size = min_group_size;
  // Properties the policy stores as a person's pseudonym, as the distinct
  // id (user_id, $device_id, …: privacy's reserved subject-id keys).
  context.subject_id_property = [](std::string_view name) {
    return privacy::ClassifyKey(name) == privacy::ReservedKey::kSubjectId;
  };
  if (query::NamesSubjectIds(spec, context.subject_id_property)) {
    // A raw distinct id (or user_id, …) is matched as the store holds it:
    // its pseudonym under every key version, as an export by distinct id
    // and an access request find it (SubjectsOf). The raw id stays in this
    // call.
    MP_ASSIGN_OR_RETURN(const std::vector<privacy::ProjectKey> keys,
                        keys_->AllVersions(project.id));
    std::vector<privacy::Policy> policies;
    for (const privacy::ProjectKey& key : keys) {
      policies.emplace_back(key);
    }
    context.pseudonyms = [policies = std::move(policies)](std::string_view distinct_id) {
      std::vector<Id128> subjects;
      for (const privacy::Policy& policy : policies) {
        subjects.push_back(policy.Pseudonym(distinct_id));
      }
      return subjects;
    };
  }
  MP_ASSIGN_OR_RETURN(context.segments, engine_->Snapshot(project.id));
  if (query::UsesProfiles(spec)) {
    MP_ASSIGN_OR_RETURN(context.profiles, profile_tables_.Get(*engine_, project.id));
  }
  MP_ASSIGN_OR_RETURN(const query::QueryResult result, query::RunQuery(spec, context));
  if (listed != nullptr) {
    MP_RETURN_IF_ERROR(ListAnswerSubjects(project, spec, result, listed));
  }
  counters_->queries.fetch_add(1, std::memory_order_relaxed);
  if (result.identity.has_value()) {
    std::lock_guard lock(counters_->identity_mutex);
    counters_->identity[project.name] = *result.identity;
  }
  return query::QueryResultToJson(result);
}

ServiceMetrics Service::GetMetrics() const {
  ServiceMetrics metrics;
  metrics.events_accepted = counters_->events_accepted.load();
  metrics.events_rejected = counters_->events_rejected.load();
  metrics.events_duplicate = counters_->events_duplicate.load();
  metrics.profile_updates_accepted = counters_->profile_updates_accepted.load();
  metrics.properties_dropped = counters_->properties_dropped.load();
  metrics.properties_pseudonymised = counters_->properties_pseudonymised.load();
  metrics.values_redacted = counters_->values_redacted.load();
  metrics.context_fields_discarded = counters_->context_fields_discarded.load();
  metrics.context_fields_generalised = counters_->context_fields_generalised.load();
  for (size_t kind_idx = 0; kind_idx < privacy::kPiiKindCount; ++kind_idx) {
    metrics.detections.emplace_back(
        privacy::PiiKindName(static_cast<privacy::PiiKind>(kind_idx)),
        counters_->detections[kind_idx].load());
  }
  std::lock_guard lock(counters_->rule_mutex);
  for (const auto& [rule, matches] : counters_->rule_matches) {
    const auto& [project, line, pattern, action] = rule;
    metrics.rule_matches.push_back({project, line, pattern, action, matches});
  }
  metrics.export_rows = counters_->export_rows.load();
  metrics.queries = counters_->queries.load();
  {
    std::lock_guard lock(counters_->identity_mutex);
    metrics.identity.assign(counters_->identity.begin(), counters_->identity.end());
  }
  metrics.retention_drops = settings_.retention_drops.load();
  metrics.retention_failures = settings_.retention_failures.load();
  metrics.profiles_expired = settings_.profiles_expired.load();
  metrics.consent_dropped = settings_.consent_dropped.load();
  metrics.consent_anonymous = settings_.consent_anonymous.load();
  metrics.datamap_personal_keys = catalogue_->personal_keys.load();
  metrics.datamap_uncatalogued_sightings = catalogue_->keys_not_catalogued.load();
  metrics.datamap_save_failures = catalogue_->save_failures.load();
  for (size_t rule_idx = 0; rule_idx < std::size(kAnomalyRuleNames); ++rule_idx) {
    metrics.anomaly_alerts.emplace_back(kAnomalyRuleNames[rule_idx],
                                        anomaly_alerts_[rule_idx].load());
  }
  metrics.keys_suspended = keys_suspended_.load();
  metrics.key_usage_failures = key_usage_failures_.load();
  return metrics;
}

store::Stats Service::GetStoreStats() const { return engine_->GetStats(); }

void Service::CountPolicy(const Project& project, const privacy::Policy& policy,
                          const privacy::PolicyCounters& counters) {
  if (!counters.rule_hits.empty()) {
    const std::vector<privacy::PropertyRule>& rules = policy.spec().rules;
    std::lock_guard lock(counters_->rule_mutex);
    for (size_t rule_idx = 0; rule_idx < counters.rule_hits.size(); ++rule_idx) {
      if (counters.rule_hits[rule_idx] == 0) {
        continue;
      }
      const privacy::PropertyRule& rule = rules[rule_idx];
      counters_->rule_matches[{project.name, rule.line, rule.pattern,
                               std::string(privacy::ActionName(rule.action))}] +=
          counters.rule_hits[rule_idx];
    }
  }
  counters_->properties_dropped += counters.properties_dropped;
  counters_->properties_pseudonymised += counters.properties_pseudonymised;
  counters_->values_redacted += counters.values_redacted;
  counters_->context_fields_discarded += counters.context_fields_discarded;
  counters_->context_fields_generalised += counters.context_fields_generalised;
  for (size_t kind_idx = 0; kind_idx < privacy::kPiiKindCount; ++kind_idx) {
    if (counters.detections.by_kind[kind_idx] != 0) {
      counters_->detections[kind_idx] += counters.detections.by_kind[kind_idx];
    }
  }
}

Result<std::vector<std::string>> Service::Reload() {
  // A key rotated by another process (`minpanel project rotate-key`) is read
  // again on the next event; until now the cached one stayed in force.
  keys_->Forget();
  const std::vector<Project> projects_before = projects_->List();
  MP_RETURN_IF_ERROR(projects_->Reload());
  AuditProjectChanges(projects_before);
  const std::vector<AccessKey> keys_before = access_keys_->List();
  MP_RETURN_IF_ERROR(access_keys_->Reload());
  AuditKeyChanges(keys_before);
  std::vector<std::string> names;
  for (const Project& project : projects_->List()) {
    names.push_back(project.name);
  }
  MP_ASSIGN_OR_RETURN(std::vector<std::string> notes, policies_->Load(names));
  const Status geo = ReloadGeoDatabase();
  if (!geo.ok()) {
    notes.push_back("geolocation database kept: " + geo.message());
  }
  return notes;
}

Status Service::ReloadGeoDatabase() {
  if (tools_->geo == nullptr) {
    return Status::Ok();
  }
  // PolicyTools is shared read-only; the database swaps its own mapping
  // under its own lock, so this is the one mutation it allows.
  return const_cast<privacy::GeoDatabase&>(*tools_->geo).ReloadIfChanged();
}

Status Service::Close() {
  if (catalogue_ != nullptr && !catalogue_->Save().ok()) {
    ++catalogue_->save_failures;  // its counts since the last write are lost, nothing else
  }
  const Status engine_closed = engine_ ? engine_->Close() : Status::Ok();
  const Status audit_closed = audit_ ? audit_->Close() : Status::Ok();
  return engine_closed.ok() ? audit_closed : engine_closed;
}

}  // namespace minpanel::service
