// Fuzzes the data map's catalogue reader (docs/formats/datamap.md), which
// the service reads from <data>/datamap.json at every start: the input is
// the file's bytes. Invariants: opening fails only with Corruption and never
// crashes; what opens holds at most the limits of keys and sources per
// project; and after one more observed event, a write and a reopen read
// back the same items (gone_ms and gone_why included).
//
// The seeds in fuzz/corpus/datamap_fuzz: a catalogue of two projects
// (version 1), and one with keys no longer stored (version 2).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_check.h"
#include "service/datamap.h"

namespace minpanel::fuzz {
namespace {

constexpr uint32_t kProjectsChecked = 4;  // ids 0..3: the seed's and small mutations'

const std::string& Folder() {
  static const std::string folder = [] {
    const std::string path =
        (std::filesystem::temp_directory_path() / ("datamap_fuzz-" + std::to_string(::getpid())))
            .string();
    std::filesystem::create_directories(path);
    return path;
  }();
  return folder;
}

bool SameItems(const std::vector<service::SeenItem>& a, const std::vector<service::SeenItem>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t item_idx = 0; item_idx < a.size(); ++item_idx) {
    const service::SeenItem& x = a[item_idx];
    const service::SeenItem& y = b[item_idx];
    if (x.kind != y.kind || x.name != y.name || x.library != y.library ||
        x.first_seen_ms != y.first_seen_ms || x.last_seen_ms != y.last_seen_ms ||
        x.volume != y.volume || x.action != y.action || x.why != y.why ||
        x.value_detections != y.value_detections || x.gone_ms != y.gone_ms ||
        x.gone_why != y.gone_why) {
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace minpanel::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  {
    std::ofstream out(fuzz::Folder() + "/datamap.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto file_system = NewPosixFileSystem();
  auto clock = std::make_shared<FakeClock>(1'700'000'000'000);
  auto catalogue = service::DataCatalogue::Open(fuzz::Folder(), file_system, clock);
  if (!catalogue.ok()) {
    fuzz::Check(catalogue.status().code() == StatusCode::kCorruption, "only Corruption");
    return 0;
  }
  for (uint32_t project_id = 0; project_id < fuzz::kProjectsChecked; ++project_id) {
    size_t keys = 0;
    size_t sources = 0;
    for (const service::SeenItem& item : (*catalogue)->ItemsOf(project_id)) {
      fuzz::Check(item.project_id == project_id, "an item of another project");
      (item.kind == "source" ? sources : keys) += 1;
      fuzz::Check(item.gone_ms == 0 || (item.gone_ms > 0 && (item.kind == "event" ||
                                                             item.kind == "context")),
                  "only keys are gone, at a time after 0");
    }
    fuzz::Check(keys <= service::kDataMapKeysPerProjectMax, "keys per project");
    fuzz::Check(sources <= service::kDataMapSourcesPerProjectMax, "sources per project");
  }
  static const privacy::Policy policy{privacy::ProjectKey{}};
  RawEvent event;
  event.name = "fuzz";
  event.distinct_id = "fuzz-subject";
  event.properties.push_back({"plan", Value::String("pro")});
  (*catalogue)->ObserveEvents(1, "fuzz", policy, "mixpanel /track", {event});
  fuzz::Check((*catalogue)->Save().ok(), "the catalogue writes");
  auto again = service::DataCatalogue::Open(fuzz::Folder(), file_system, clock);
  fuzz::Check(again.ok(), "what was written opens");
  for (uint32_t project_id = 0; project_id < fuzz::kProjectsChecked; ++project_id) {
    fuzz::Check(fuzz::SameItems((*catalogue)->ItemsOf(project_id), (*again)->ItemsOf(project_id)),
                "the same items after a write");
  }
  return 0;
}
