// What granules cost and save per chunk, to choose which chunks the writer
// cuts into granules (SegmentWriteOptions::granule_ratio_min;
// docs/formats/segment.md, "Granules").
//
// Usage: segment_granules_bench SEGMENT_FILE [BLOCKS]
//
// Reads the events of the first BLOCKS blocks (default 24) of a segment file
// and encodes them twice, every property and map chunk whole and every one
// in granules (kGranuleRowsDefault, no size threshold). For each chunk it
// times, as the readers do it (median of several passes, CPU of this
// thread): decompressing the whole chunk (a scan reads it so, and an export
// did before granules); decompressing all its granules (a scan of a
// granular chunk); and one granule on average (an export of a few subjects
// reads about one granule of a block). Prints one line per chunk:
//   key raw_bytes whole_stored granules whole_us all_granules_us one_granule_us
//   granular_stored
// then, per class of compression ratio (raw bytes / stored bytes, whole),
// the means: what the export saves per chunk read (whole - one granule)
// against what a scan loses (all granules - whole).
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/core.h"
#include "store/segment.h"
#include "store/segment_format.h"

namespace minpanel::store {
namespace {

double ThreadCpuUs() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e6 + static_cast<double>(now.tv_nsec) / 1e3;
}

// The median over `passes` of the CPU microseconds `work` takes, `repeat`
// times each pass (divided back).
template <typename Work>
double MedianUs(int passes, int repeat, Work&& work) {
  std::vector<double> samples;
  for (int pass = 0; pass < passes; ++pass) {
    const double begin = ThreadCpuUs();
    for (int repeat_idx = 0; repeat_idx < repeat; ++repeat_idx) {
      work();
    }
    samples.push_back((ThreadCpuUs() - begin) / repeat);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

void Check(const Status& status) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    std::exit(1);
  }
}

std::string_view Stored(const std::string& image, const ChunkRef& ref) {
  return std::string_view(image).substr(ref.offset, ref.stored_bytes);
}

struct Totals {
  uint64_t chunks = 0;
  double whole_us = 0;
  double all_granules_us = 0;
  double one_granule_us = 0;
};

int Run(const char* path, size_t blocks_max) {
  const std::shared_ptr<FileSystem> file_system = NewPosixFileSystem();
  auto reader = OpenSegment(*file_system, path);
  Check(reader.status());
  std::vector<Event> events;
  std::vector<Event> block_events;
  for (size_t block_idx = 0; block_idx < std::min(blocks_max, (*reader)->block_count());
       ++block_idx) {
    Check((*reader)->ReadEvents(block_idx, &block_events));
    events.insert(events.end(), block_events.begin(), block_events.end());
  }
  SegmentWriteOptions options;
  options.project_id = (*reader)->summary().project_id;
  options.granule_rows = 0;
  auto whole_image = EncodeSegment(events, options);
  Check(whole_image.status());
  options.granule_rows = kGranuleRowsDefault;
  options.granule_ratio_min = 0;
  auto granular_image = EncodeSegment(events, options);
  Check(granular_image.status());
  auto whole = SegmentReader::Open(*whole_image, "whole");
  auto granular = SegmentReader::Open(*granular_image, "granular");
  Check(whole.status());
  Check(granular.status());
  const SegmentFooter& whole_footer = (*whole)->footer();
  const SegmentFooter& granular_footer = (*granular)->footer();

  // Classes by compression ratio: below 2, 4, 6, 7, 8, 10, 15, the rest.
  const std::vector<double> ratio_bounds = {2, 4, 6, 7, 8, 10, 15};
  std::vector<Totals> totals(ratio_bounds.size() + 1);
  std::string raw;
  std::string buffer;
  std::vector<GranuleRef> directory;
  for (size_t block_idx = 0; block_idx < whole_footer.blocks.size(); ++block_idx) {
    const FooterBlock& whole_block = whole_footer.blocks[block_idx];
    const FooterBlock& granular_block = granular_footer.blocks[block_idx];
    for (size_t chunk_idx = kFixedColumnCount; chunk_idx < whole_block.chunks.size();
         ++chunk_idx) {
      const ChunkRef& whole_ref = whole_block.chunks[chunk_idx];
      const ChunkRef& granular_ref = granular_block.chunks[chunk_idx];
      if (granular_ref.codec != SegmentCodec::kGranules) {
        continue;  // empty, or one granule: nothing to choose
      }
      const std::string_view whole_stored = Stored(*whole_image, whole_ref);
      const std::string_view granular_stored = Stored(*granular_image, granular_ref);
      Check(DecodeGranuleDirectory(granular_stored, granular_ref, whole_block.row_count,
                                   &directory));
      buffer.resize(granular_ref.raw_bytes);
      const double whole_us = MedianUs(7, 20, [&] {
        std::string_view view;
        Check(DecompressChunk(whole_stored, whole_ref, &raw, &view));
      });
      const double all_us = MedianUs(7, 20, [&] {
        for (const GranuleRef& granule : directory) {
          Check(DecompressGranule(granular_stored, granule, buffer.data()));
        }
      });
      // One granule: the directory read and one granule's decompression, as
      // an export does for one wanted subject, averaged over the granules.
      const double one_us = MedianUs(7, 20, [&] {
        std::vector<GranuleRef> one_directory;
        for (const GranuleRef& granule : directory) {
          Check(DecodeGranuleDirectory(granular_stored, granular_ref, whole_block.row_count,
                                       &one_directory));
          Check(DecompressGranule(granular_stored, granule, buffer.data()));
        }
      }) / static_cast<double>(directory.size());
      const std::string key = chunk_idx - kFixedColumnCount < whole_footer.columns.size()
                                  ? whole_footer.columns[chunk_idx - kFixedColumnCount].key
                                  : std::string("(map)");
      std::printf("%s %llu %llu %zu %.2f %.2f %.2f %llu\n", key.c_str(),
                  static_cast<unsigned long long>(whole_ref.raw_bytes),
                  static_cast<unsigned long long>(whole_ref.stored_bytes), directory.size(),
                  whole_us, all_us, one_us,
                  static_cast<unsigned long long>(granular_ref.stored_bytes));
      const double ratio = static_cast<double>(whole_ref.raw_bytes) /
                           static_cast<double>(std::max<uint64_t>(1, whole_ref.stored_bytes));
      size_t ratio_class = 0;
      while (ratio_class < ratio_bounds.size() && ratio >= ratio_bounds[ratio_class]) {
        ++ratio_class;
      }
      Totals& total = totals[ratio_class];
      ++total.chunks;
      total.whole_us += whole_us;
      total.all_granules_us += all_us;
      total.one_granule_us += one_us;
    }
  }
  std::printf("# compression ratio class: chunks, per chunk: export saves (whole - one "
              "granule) us, scan loses (all granules - whole) us\n");
  for (size_t ratio_class = 0; ratio_class < totals.size(); ++ratio_class) {
    const Totals& total = totals[ratio_class];
    if (total.chunks == 0) {
      continue;
    }
    const double chunks = static_cast<double>(total.chunks);
    std::printf("# ratio %s %.0f: %llu chunks, saves %.2f, loses %.2f\n",
                ratio_class < ratio_bounds.size() ? "<" : ">=",
                ratio_class < ratio_bounds.size() ? ratio_bounds[ratio_class]
                                                  : ratio_bounds.back(),
                static_cast<unsigned long long>(total.chunks),
                (total.whole_us - total.one_granule_us) / chunks,
                (total.all_granules_us - total.whole_us) / chunks);
  }
  return 0;
}

}  // namespace
}  // namespace minpanel::store

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: segment_granules_bench SEGMENT_FILE [BLOCKS]\n");
    return 2;
  }
  return minpanel::store::Run(argv[1], argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 24);
}
