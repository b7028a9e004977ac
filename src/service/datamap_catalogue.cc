// The data map's catalogue of what the ingest path has seen (datamap.h;
// docs/formats/datamap.md).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>

#include "incident/incident.h"
#include "query/query.h"
#include "service/datamap.h"
#include "service/registry_file.h"

namespace minpanel::service {
namespace {

constexpr std::string_view kFileName = "/datamap.json";
constexpr std::string_view kFileFormat = "minpanel-datamap";
// Version 2 added `gone_ms` and `gone_why` (a key no longer stored): a
// version 1 reader would drop them on its next write and call the key
// stored again, so it refuses the file instead. Version 1 files are read.
constexpr int64_t kFileFormatVersion = 2;
constexpr uint32_t kFileMode = 0600;

constexpr std::string_view kKindEvent = "event";
constexpr std::string_view kKindProfile = "profile";
constexpr std::string_view kKindContext = "context";
constexpr std::string_view kKindSource = "source";
constexpr std::string_view kKindPurge = "purge";

bool IsSource(const SeenItem& item) { return item.kind == kKindSource; }
bool IsPurge(const SeenItem& item) { return item.kind == kKindPurge; }

uint32_t DetectionBits(std::string_view text, const privacy::Detectors& detectors) {
  // Redact first: it remembers the short texts it found clean on this
  // thread, which is nearly every value; only a find is scanned again for
  // its kinds.
  if (!detectors.Redact(text, nullptr).has_value()) {
    return 0;
  }
  std::vector<privacy::Detection> found;
  detectors.Scan(text, &found);
  uint32_t bits = 0;
  for (const privacy::Detection& detection : found) {
    bits |= 1U << static_cast<uint32_t>(detection.kind);
  }
  return bits;
}

// The detectors' finds in one value: a string, or a list's first item.
uint32_t ValueDetections(const Value& value, const privacy::Detectors& detectors) {
  if (value.type() == Value::Type::kString) {
    return DetectionBits(value.as_string(), detectors);
  }
  if (value.type() == Value::Type::kList && !value.as_list().empty()) {
    return DetectionBits(value.as_list().front(), detectors);
  }
  return 0;
}

// A name as kept: the detectors' marks in place of what they found, so
// that no key or SDK name brings personal data into the file.
std::string KeptName(std::string_view name, const privacy::Detectors& detectors) {
  auto redacted = detectors.Redact(name, nullptr);
  return redacted.has_value() ? std::move(*redacted) : std::string(name);
}

incident::Category NameCategory(std::string_view name) {
  return incident::CategoryOf(incident::KindOfName(name));
}

// The category a detector's find puts a value in.
std::string_view DetectionCategory(uint32_t bits) {
  using privacy::PiiKind;
  const auto has = [bits](PiiKind kind) {
    return (bits & (1U << static_cast<uint32_t>(kind))) != 0;
  };
  if (has(PiiKind::kEmail) || has(PiiKind::kPhone)) {
    return "contact";
  }
  if (has(PiiKind::kCard) || has(PiiKind::kIban)) {
    return "payment";
  }
  if (has(PiiKind::kJwt) || has(PiiKind::kApiKey) || has(PiiKind::kSecret)) {
    return "credentials";
  }
  if (has(PiiKind::kIpAddress)) {
    return "location";
  }
  return "";
}

std::string_view ContextCategory(std::string_view name) {
  if (name == "distinct_id") {
    return "internal id";
  }
  if (name == "ip") {
    return "location";
  }
  if (name == "user_agent" || name == "library") {
    return "device";
  }
  if (name == "referrer") {
    return "referrer";
  }
  return "behavioural";  // page_url: the pages a person visits
}

}  // namespace

std::string_view MixpanelSource(ingest::MixpanelRoute route) {
  switch (route) {
    case ingest::MixpanelRoute::kImport:
      return "mixpanel /import";
    case ingest::MixpanelRoute::kEngage:
      return "mixpanel /engage";
    case ingest::MixpanelRoute::kGroups:
      return "mixpanel /groups";
    case ingest::MixpanelRoute::kTrack:
      break;
  }
  return "mixpanel /track";
}

std::string_view CategoryOfItem(const SeenItem& item) {
  if (IsSource(item)) {
    return "";
  }
  if (item.kind == kKindContext) {
    return ContextCategory(item.name);
  }
  const privacy::ReservedKey reserved = privacy::ClassifyKey(item.name);
  if (reserved == privacy::ReservedKey::kSubjectId || reserved == privacy::ReservedKey::kGroupId) {
    return "internal id";
  }
  switch (NameCategory(item.name)) {
    case incident::Category::kIdentity:
    case incident::Category::kAccount:
      return "identity";
    case incident::Category::kContact:
      return "contact";
    case incident::Category::kLocation:
      return "location";
    case incident::Category::kDevice:
      return "device";
    case incident::Category::kReferrer:
      return "referrer";
    case incident::Category::kInternalIds:
      return "internal id";
    case incident::Category::kCredentials:
      return "credentials";
    case incident::Category::kPayment:
      return "payment";
    case incident::Category::kContent:
      return "free text";
    case incident::Category::kActivity:
    case incident::Category::kNone:
      break;
  }
  if (reserved == privacy::ReservedKey::kPerson ||
      reserved == privacy::ReservedKey::kProfilePerson) {
    return "identity";
  }
  if (reserved == privacy::ReservedKey::kReferrerCopy) {
    return "referrer";
  }
  const std::string_view detected = DetectionCategory(item.value_detections);
  return detected.empty() ? "behavioural" : detected;
}

bool ItemStored(const SeenItem& item, const StoredKeys& stored) {
  if (item.kind == kKindContext) {
    // The subject is on every row; what the policy derives from the other
    // fields (country, browser, path, host, mp_lib) may be empty for a
    // value it cannot read, so no key of its own says more than this.
    return stored.any_event;
  }
  if (item.kind == kKindEvent) {
    return stored.event_keys.contains(item.name);
  }
  return true;
}

std::vector<std::string> PersonalSignals(const SeenItem& item) {
  std::vector<std::string> signals;
  if (item.kind != kKindEvent && item.kind != kKindProfile) {
    return signals;
  }
  const incident::ColumnKind name_kind = incident::KindOfName(item.name);
  const incident::Category category = incident::CategoryOf(name_kind);
  const bool personal_name =
      category == incident::Category::kIdentity || category == incident::Category::kContact ||
      category == incident::Category::kLocation || category == incident::Category::kCredentials ||
      category == incident::Category::kPayment;
  if (personal_name) {
    signals.push_back("name:" + std::string(incident::ColumnKindName(name_kind)));
  } else if (privacy::IsPersonKey(privacy::ClassifyKey(item.name), item.kind == kKindProfile)) {
    signals.push_back("name:person");
  }
  for (size_t kind_idx = 0; kind_idx < privacy::kPiiKindCount; ++kind_idx) {
    if ((item.value_detections & (1U << kind_idx)) != 0) {
      signals.push_back("value:" +
                        std::string(privacy::PiiKindName(static_cast<privacy::PiiKind>(kind_idx))));
    }
  }
  return signals;
}

// One batch's items, keyed by kind, then the raw name (a key's policy and
// detectors run once per batch, not once per event).
struct DataCatalogue::Batch {
  std::unordered_map<std::string, SeenItem> items;
  std::string lookup;  // reused: Find runs per property per event, on the ingest path

  SeenItem* Find(std::string_view kind, std::string_view name, std::string_view library,
                 bool* created) {
    lookup.clear();
    lookup.append(kind).push_back('\0');
    lookup.append(name).push_back('\0');
    lookup.append(library);
    auto found = items.find(lookup);
    *created = found == items.end();
    if (*created) {
      found = items.emplace(lookup, SeenItem{}).first;
    }
    ++found->second.volume;
    return &found->second;
  }
};

void DataCatalogue::ObserveEvents(uint32_t project_id, std::string_view project_name,
                                  const privacy::Policy& policy, std::string_view source,
                                  const std::vector<RawEvent>& events) {
  if (events.empty()) {
    return;
  }
  const privacy::Detectors& detectors = policy.tools().detectors;
  const privacy::PolicySpec& spec = policy.spec();
  Batch batch;
  bool created = false;
  const auto context = [&](std::string_view name, privacy::Action action, std::string_view why) {
    SeenItem* item = batch.Find(kKindContext, name, "", &created);
    if (created) {
      item->kind = kKindContext;
      item->name = name;
      item->action = privacy::ActionName(action);
      item->why = why;
    }
  };
  for (const RawEvent& raw : events) {
    const std::string_view library =
        std::string_view(raw.library).substr(0, kDataMapLibraryBytesMax);
    SeenItem* source_item = batch.Find(kKindSource, source, library, &created);
    if (created) {
      source_item->kind = kKindSource;
      source_item->name = source;
      source_item->library = KeptName(library, detectors);
    }
    context("distinct_id", privacy::Action::kPseudonymise, "always (keyed with the project's key)");
    if (!raw.client_ip.empty()) {
      context("ip", spec.ip, "policy: ip");
    }
    if (!raw.user_agent.empty()) {
      context("user_agent", spec.user_agent, "policy: user_agent");
    }
    if (!raw.page_url.empty()) {
      context("page_url", spec.page_url, "policy: page_url");
    }
    if (!raw.referrer.empty()) {
      context("referrer", spec.referrer, "policy: referrer");
    }
    if (!raw.library.empty()) {
      context("library", spec.library, "policy: library");
    }
    for (const Property& property : raw.properties) {
      SeenItem* item = batch.Find(kKindEvent, property.key, "", &created);
      if (created) {
        item->kind = kKindEvent;
        item->name = KeptName(property.key, detectors);
        item->action = privacy::ActionName(policy.ActionFor(property.key, false, &item->why));
        item->value_detections = ValueDetections(property.value, detectors);
      }
    }
  }
  Merge(project_id, project_name, batch);
}

void DataCatalogue::ObserveProfiles(uint32_t project_id, std::string_view project_name,
                                    const privacy::Policy& policy, std::string_view source,
                                    const std::vector<RawProfileUpdate>& updates) {
  if (updates.empty()) {
    return;
  }
  const privacy::Detectors& detectors = policy.tools().detectors;
  Batch batch;
  bool created = false;
  for (const RawProfileUpdate& raw : updates) {
    SeenItem* source_item = batch.Find(kKindSource, source, "", &created);
    if (created) {
      source_item->kind = kKindSource;
      source_item->name = source;
    }
    const bool user_profile = raw.group_key.empty();
    for (const Property& property : raw.properties) {
      SeenItem* item = batch.Find(kKindProfile, property.key, "", &created);
      if (created) {
        item->kind = kKindProfile;
        item->name = KeptName(property.key, detectors);
        item->action =
            privacy::ActionName(policy.ActionFor(property.key, user_profile, &item->why));
        item->value_detections = ValueDetections(property.value, detectors);
      }
    }
  }
  Merge(project_id, project_name, batch);
}

void DataCatalogue::Merge(uint32_t project_id, std::string_view project_name, Batch& batch) {
  const int64_t now_ms = clock_->NowMs();
  std::vector<std::pair<std::string, std::string>> warnings;
  {
    std::lock_guard lock(mutex_);
    for (auto& [lookup, seen] : batch.items) {
      ItemKey key{project_id, seen.kind, seen.name, seen.library};
      auto found = items_.find(key);
      if (found != items_.end()) {
        SeenItem& item = found->second;
        item.last_seen_ms = now_ms;
        item.volume += seen.volume;
        item.gone_ms = 0;  // stored again
        item.gone_why.clear();
        if (!IsSource(item)) {
          item.action = std::move(seen.action);
          item.why = std::move(seen.why);
          item.value_detections |= seen.value_detections;
        }
        continue;
      }
      size_t& count =
          IsSource(seen) ? sources_per_project_[project_id] : keys_per_project_[project_id];
      const size_t count_max =
          IsSource(seen) ? kDataMapSourcesPerProjectMax : kDataMapKeysPerProjectMax;
      if (count >= count_max) {
        ++not_catalogued_[project_id];
        ++keys_not_catalogued;
        dirty_ = true;
        continue;
      }
      ++count;
      seen.project_id = project_id;
      seen.first_seen_ms = now_ms;
      seen.last_seen_ms = now_ms;
      const std::vector<std::string> signals = PersonalSignals(seen);
      if (!signals.empty()) {
        std::string detectors;
        for (const std::string& signal : signals) {
          detectors += (detectors.empty() ? "" : ", ") + signal;
        }
        warnings.emplace_back(seen.kind + " property '" + seen.name + "'", std::move(detectors));
      }
      items_.emplace(std::move(key), std::move(seen));
    }
    dirty_ = true;
  }
  for (const auto& [what, detectors] : warnings) {
    ++personal_keys;
    // Only the key's name (as kept, after the detectors) and the detectors
    // that fired: never a value.
    spdlog::warn("data map: new {} in project '{}' looks personal ({}); see the data map", what,
                 project_name, detectors);
  }
  SaveIfDue();
}

void DataCatalogue::RecordPurge(uint32_t project_id, std::string_view key,
                                std::string_view event_name, std::string_view action,
                                std::string_view key_id, uint64_t audit_seq) {
  const int64_t now_ms = clock_->NowMs();
  {
    std::lock_guard lock(mutex_);
    dirty_ = true;
    ItemKey item_key{project_id, std::string(kKindPurge), std::string(key),
                     std::string(event_name)};
    auto found = items_.find(item_key);
    if (found == items_.end()) {
      size_t& count = purges_per_project_[project_id];
      if (count >= kDataMapPurgesPerProjectMax) {
        ++not_catalogued_[project_id];
        ++keys_not_catalogued;
        return;
      }
      ++count;
      SeenItem item;
      item.project_id = project_id;
      item.kind = kKindPurge;
      item.name = key;
      item.library = event_name;
      item.first_seen_ms = now_ms;
      found = items_.emplace(std::move(item_key), std::move(item)).first;
    }
    SeenItem& item = found->second;
    item.last_seen_ms = now_ms;
    ++item.volume;
    item.action = action;
    item.why = key_id;
    item.audit_seq = audit_seq;
  }
  SaveIfDue();
}

size_t DataCatalogue::MarkGone(uint32_t project_id, const StoredKeys& stored,
                               int64_t seen_before_ms, std::string_view why) {
  const int64_t now_ms = clock_->NowMs();
  size_t marked = 0;
  {
    std::lock_guard lock(mutex_);
    const auto begin = items_.lower_bound(ItemKey{project_id, "", "", ""});
    for (auto entry = begin; entry != items_.end() && entry->second.project_id == project_id;
         ++entry) {
      SeenItem& item = entry->second;
      if ((item.kind != kKindEvent && item.kind != kKindContext) || item.action == "drop") {
        continue;  // a key the policy drops was never stored: nothing to learn
      }
      if (ItemStored(item, stored)) {
        if (item.gone_ms != 0) {
          item.gone_ms = 0;  // held again (a restore, or a mark raced with an append)
          item.gone_why.clear();
          dirty_ = true;
        }
        continue;
      }
      if (item.gone_ms != 0 || item.last_seen_ms >= seen_before_ms) {
        continue;
      }
      item.gone_ms = now_ms;
      item.gone_why = why;
      dirty_ = true;
      ++marked;
    }
  }
  keys_gone += marked;
  SaveIfDue();
  return marked;
}

size_t DataCatalogue::ForgetGone(uint32_t project_id, int64_t gone_before_ms) {
  size_t removed = 0;
  {
    std::lock_guard lock(mutex_);
    auto entry = items_.lower_bound(ItemKey{project_id, "", "", ""});
    while (entry != items_.end() && entry->second.project_id == project_id) {
      const SeenItem& item = entry->second;
      if (item.gone_ms == 0 || item.gone_ms >= gone_before_ms) {
        ++entry;
        continue;
      }
      --keys_per_project_[project_id];  // only keys are marked gone, never sources or purges
      entry = items_.erase(entry);
      dirty_ = true;
      ++removed;
    }
  }
  keys_forgotten += removed;
  SaveIfDue();
  return removed;
}

std::vector<SeenItem> DataCatalogue::ItemsOf(uint32_t project_id) const {
  std::lock_guard lock(mutex_);
  std::vector<SeenItem> items;
  const auto begin = items_.lower_bound(ItemKey{project_id, "", "", ""});
  for (auto item = begin; item != items_.end() && item->second.project_id == project_id; ++item) {
    if (!IsPurge(item->second)) {
      items.push_back(item->second);
    }
  }
  return items;
}

std::vector<SeenItem> DataCatalogue::PurgesOf(uint32_t project_id) const {
  std::lock_guard lock(mutex_);
  std::vector<SeenItem> purges;
  const auto begin = items_.lower_bound(ItemKey{project_id, std::string(kKindPurge), "", ""});
  for (auto item = begin; item != items_.end() && item->second.project_id == project_id &&
                          IsPurge(item->second);
       ++item) {
    purges.push_back(item->second);
  }
  return purges;
}

uint64_t DataCatalogue::KeysNotCatalogued(uint32_t project_id) const {
  std::lock_guard lock(mutex_);
  const auto found = not_catalogued_.find(project_id);
  return found == not_catalogued_.end() ? 0 : found->second;
}

void DataCatalogue::SaveIfDue() {
  {
    std::lock_guard lock(mutex_);
    if (!dirty_ || clock_->NowMs() - saved_ms_ < kDataMapSaveIntervalMs) {
      return;
    }
  }
  if (!Save().ok()) {
    ++save_failures;
  }
}

Status DataCatalogue::Save() {
  std::lock_guard save_lock(save_mutex_);
  std::string text;
  {
    std::lock_guard lock(mutex_);
    if (!dirty_) {
      return Status::Ok();
    }
    text = Serialise();
    dirty_ = false;
    saved_ms_ = clock_->NowMs();
  }
  const Status written = file_system_->WriteFileAtomically(path_, text, kFileMode);
  if (!written.ok()) {
    std::lock_guard lock(mutex_);
    dirty_ = true;
  }
  return written;
}

std::string DataCatalogue::Serialise() const {
  std::string text = "{\"format\":\"" + std::string(kFileFormat) +
                     "\",\"version\":" + std::to_string(kFileFormatVersion) + ",\"items\":[\n";
  bool first = true;
  const auto append_item = [&](const SeenItem& item) {
    text += first ? "" : ",\n";
    first = false;
    text += "{\"project_id\":" + std::to_string(item.project_id) + ",\"kind\":";
    query::AppendJsonString(item.kind, &text);
    text += ",\"name\":";
    query::AppendJsonString(item.name, &text);
    text += ",\"library\":";
    query::AppendJsonString(item.library, &text);
    text += ",\"first_seen_ms\":" + std::to_string(item.first_seen_ms) +
            ",\"last_seen_ms\":" + std::to_string(item.last_seen_ms) +
            ",\"volume\":" + std::to_string(item.volume) + ",\"action\":";
    query::AppendJsonString(item.action, &text);
    text += ",\"why\":";
    query::AppendJsonString(item.why, &text);
    text += ",\"value_detections\":" + std::to_string(item.value_detections);
    if (IsPurge(item)) {
      text += ",\"audit_seq\":" + std::to_string(item.audit_seq);
    }
    if (item.gone_ms != 0) {
      text += ",\"gone_ms\":" + std::to_string(item.gone_ms) + ",\"gone_why\":";
      query::AppendJsonString(item.gone_why, &text);
    }
    text += "}";
  };
  for (const auto& [key, item] : items_) {
    append_item(item);
  }
  // The sightings past the limits, as one item per project.
  for (const auto& [project_id, count] : not_catalogued_) {
    SeenItem item;
    item.project_id = project_id;
    item.kind = "not_catalogued";
    item.volume = count;
    append_item(item);
  }
  text += "\n]}\n";
  return text;
}

namespace {

Result<SeenItem> ParseSeenItem(simdjson::dom::element entry) {
  SeenItem item;
  uint64_t project_id = 0;
  std::string_view kind;
  std::string_view name;
  std::string_view library;
  std::string_view action;
  std::string_view why;
  uint64_t detections = 0;
  if (entry["project_id"].get(project_id) || entry["kind"].get(kind) || entry["name"].get(name) ||
      entry["library"].get(library) || entry["first_seen_ms"].get(item.first_seen_ms) ||
      entry["last_seen_ms"].get(item.last_seen_ms) || entry["volume"].get(item.volume) ||
      entry["action"].get(action) || entry["why"].get(why) ||
      entry["value_detections"].get(detections) || project_id > UINT32_MAX ||
      detections >= (1U << privacy::kPiiKindCount)) {
    return Status::Corruption("datamap.json: an item lacks a field or has a wrong one");
  }
  item.project_id = static_cast<uint32_t>(project_id);
  item.kind = kind;
  item.name = name;
  item.library = library;
  item.action = action;
  item.why = why;
  item.value_detections = static_cast<uint32_t>(detections);
  // Purges only (the field came with them; version 1 files lack it).
  if (entry["audit_seq"].get(item.audit_seq) != simdjson::SUCCESS) {
    item.audit_seq = 0;
  }
  // Keys no longer stored only (version 2).
  std::string_view gone_why;
  if (entry["gone_ms"].get(item.gone_ms) != simdjson::SUCCESS) {
    item.gone_ms = 0;
  } else if (entry["gone_why"].get(gone_why) != simdjson::SUCCESS || item.gone_ms <= 0 ||
             (item.kind != kKindEvent && item.kind != kKindContext)) {
    return Status::Corruption("datamap.json: an item's gone_ms or gone_why is wrong");
  }
  item.gone_why = gone_why;
  return item;
}

}  // namespace

Result<std::unique_ptr<DataCatalogue>> DataCatalogue::Open(const std::string& data_folder,
                                                           std::shared_ptr<FileSystem> file_system,
                                                           std::shared_ptr<Clock> clock) {
  std::unique_ptr<DataCatalogue> catalogue(new DataCatalogue(
      data_folder + std::string(kFileName), std::move(file_system), std::move(clock)));
  MP_ASSIGN_OR_RETURN(
      std::vector<SeenItem> items,
      internal::ReadListFile<SeenItem>(*catalogue->file_system_, catalogue->path_, kFileFormat,
                                       kFileFormatVersion, "items", "data map", ParseSeenItem));
  for (SeenItem& item : items) {
    if (item.kind == "not_catalogued") {
      catalogue->not_catalogued_[item.project_id] += item.volume;
      continue;
    }
    const bool source = IsSource(item);
    const bool purge = IsPurge(item);
    size_t& count = source  ? catalogue->sources_per_project_[item.project_id]
                    : purge ? catalogue->purges_per_project_[item.project_id]
                            : catalogue->keys_per_project_[item.project_id];
    const size_t count_max = source  ? kDataMapSourcesPerProjectMax
                             : purge ? kDataMapPurgesPerProjectMax
                                     : kDataMapKeysPerProjectMax;
    if (count >= count_max) {
      continue;  // a file written under a larger limit
    }
    ++count;
    ItemKey key{item.project_id, item.kind, item.name, item.library};
    catalogue->items_.emplace(std::move(key), std::move(item));
  }
  catalogue->saved_ms_ = catalogue->clock_->NowMs();
  return catalogue;
}

}  // namespace minpanel::service
