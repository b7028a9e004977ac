// SegmentReader and OpenSegment: footer validation at open, per-block and
// per-column reads and decoding on demand.
#include <algorithm>
#include <tuple>

#include "store/segment.h"
#include "store/wal_format.h"

namespace minpanel::store {

// Where a reader's stored bytes come from. Both kinds may be read from many
// threads at once (the image is immutable; a file is read with pread).
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  // Bytes in the segment, as at open.
  virtual uint64_t size() const = 0;
  // Sets `*bytes` to the `length` bytes at `offset`, or fewer where the
  // source ends: a view of the image, or of `*buffer` after reading the file
  // into it (so valid while `*buffer` is not changed).
  virtual Status Read(uint64_t offset, size_t length, std::string* buffer,
                      std::string_view* bytes) const = 0;
};

namespace {

class ImageSource final : public SegmentSource {
 public:
  explicit ImageSource(std::string image) : image_(std::move(image)) {}
  uint64_t size() const override { return image_.size(); }
  Status Read(uint64_t offset, size_t length, std::string* /*buffer*/,
              std::string_view* bytes) const override {
    *bytes = offset < image_.size()
                 ? std::string_view(image_).substr(static_cast<size_t>(offset), length)
                 : std::string_view();
    return Status::Ok();
  }

 private:
  const std::string image_;
};

class FileSource final : public SegmentSource {
 public:
  FileSource(std::unique_ptr<RandomAccessFile> file, uint64_t size)
      : file_(std::move(file)), size_(size) {}
  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, size_t length, std::string* buffer,
              std::string_view* bytes) const override {
    MP_RETURN_IF_ERROR(file_->ReadAt(offset, length, buffer));
    *bytes = *buffer;
    return Status::Ok();
  }

 private:
  const std::unique_ptr<RandomAccessFile> file_;
  const uint64_t size_;
};

// Per-thread buffers for bytes that live only during one call, so that
// reading a chunk allocates nothing once a thread's buffers have grown:
// StoredBuffer holds a compressed chunk's stored bytes inside ReadChunk;
// DecodedBuffer holds a chunk decompressed only to be decoded into the
// caller's arrays (times, subjects, insert ids, key versions, name codes,
// map entries) inside the Read* call that takes it. Nothing that outlives
// the call may view them, and no call that holds one calls another that
// takes the same one. A buffer grown past kThreadBufferBytesKept (a rare huge
// chunk) is freed after use rather than kept by an idle thread.
constexpr size_t kThreadBufferBytesKept = 8u << 20;

class ThreadBuffer {
 public:
  explicit ThreadBuffer(std::string* buffer) : buffer_(buffer) {}
  ~ThreadBuffer() {
    if (buffer_->capacity() > kThreadBufferBytesKept) {
      std::string().swap(*buffer_);
    }
  }
  ThreadBuffer(const ThreadBuffer&) = delete;
  ThreadBuffer& operator=(const ThreadBuffer&) = delete;
  std::string* get() const { return buffer_; }

 private:
  std::string* buffer_;
};

std::string* StoredBuffer() {
  thread_local std::string buffer;
  return &buffer;
}

std::string* DecodedBuffer() {
  thread_local std::string buffer;
  return &buffer;
}

std::string PropertyColumnName(std::string_view key) {
  return "property \"" + std::string(key) + "\"";
}

// I/O errors stay IoError (the disk, not the file, may be at fault);
// everything else about a segment's bytes is Corruption.
StatusCode SegmentErrorCode(const Status& status) {
  return status.code() == StatusCode::kIoError ? StatusCode::kIoError : StatusCode::kCorruption;
}

}  // namespace

std::optional<uint32_t> SegmentDictionary::Find(std::string_view text) const {
  const auto found = std::lower_bound(entries.begin(), entries.end(), text);
  if (found == entries.end() || *found != text) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(found - entries.begin());
}

PropertyColumnOutput PropertyColumn::Output() {
  return PropertyColumnOutput{&tags,         &ints,         &doubles,    &strings,
                              &string_codes, &list_offsets, &list_items, &list_item_codes};
}

Value PropertyColumn::ValueAt(size_t row_idx) const {
  switch (tags[row_idx]) {
    case PropertyTag::kAbsent:
    case PropertyTag::kNull:
      return Value::Null();
    case PropertyTag::kFalse:
      return Value::Bool(false);
    case PropertyTag::kTrue:
      return Value::Bool(true);
    case PropertyTag::kInt:
      return Value::Int(ints[row_idx]);
    case PropertyTag::kDouble:
      return Value::Double(doubles[row_idx]);
    case PropertyTag::kString:
      return Value::String(std::string(StringAt(row_idx)));
    case PropertyTag::kList: {
      StringList items;
      items.reserve(list_offsets[row_idx + 1] - list_offsets[row_idx]);
      for (uint32_t item_idx = list_offsets[row_idx]; item_idx < list_offsets[row_idx + 1];
           ++item_idx) {
        items.emplace_back(list_items[item_idx]);
      }
      return Value::List(std::move(items));
    }
  }
  return Value::Null();
}

SegmentReader::SegmentReader(std::unique_ptr<const SegmentSource> source, std::string name,
                             SegmentFooter footer, uint32_t version)
    : source_(std::move(source)), name_(std::move(name)), footer_(std::move(footer)) {
  summary_.format_version = version;
  summary_.file_bytes = source_->size();
  BuildIndexes();
}

SegmentReader::SegmentReader() = default;

SegmentReader::~SegmentReader() = default;

Result<std::unique_ptr<SegmentReader>> SegmentReader::Open(std::string image, std::string name) {
  return OpenSource(std::make_unique<ImageSource>(std::move(image)), std::move(name));
}

Result<std::unique_ptr<SegmentReader>> SegmentReader::Open(std::unique_ptr<RandomAccessFile> file,
                                                           std::string name) {
  Result<uint64_t> size = file->Size();
  if (!size.ok()) {
    return Status(SegmentErrorCode(size.status()), "segment " + name + ": " + size.status().message());
  }
  return OpenSource(std::make_unique<FileSource>(std::move(file), *size), std::move(name));
}

// Reads the header and the trailer, then the footer the trailer locates,
// and validates them; the data region is read chunk by chunk later.
Result<std::unique_ptr<SegmentReader>> SegmentReader::OpenSource(
    std::unique_ptr<const SegmentSource> source, std::string name) {
  auto fail = [&](const Status& status) {
    return Status(SegmentErrorCode(status), "segment " + name + ": " + status.message());
  };
  const uint64_t size = source->size();
  if (size < kSegmentHeaderBytes + kSegmentTrailerBytes) {
    return fail(Status::Corruption("file of " + std::to_string(size) +
                                   " bytes is shorter than a header and a trailer"));
  }
  // Each part is read into its own buffer: the views must stay valid together.
  std::string header_buffer;
  std::string trailer_buffer;
  std::string footer_buffer;
  std::string_view header_bytes;
  std::string_view trailer_bytes;
  std::string_view footer_bytes;
  auto read = [&](uint64_t offset, uint64_t length, std::string* buffer, std::string_view* bytes) {
    Status status = source->Read(offset, static_cast<size_t>(length), buffer, bytes);
    if (status.ok() && bytes->size() != length) {
      status = Status::Corruption("file of " + std::to_string(size) +
                                  " bytes ends early while being opened");
    }
    return status;
  };
  if (Status status = read(0, kSegmentHeaderBytes, &header_buffer, &header_bytes); !status.ok()) {
    return fail(status);
  }
  auto version = DecodeSegmentHeader(header_bytes);
  if (!version.ok()) {
    return fail(version.status());
  }
  if (Status status = read(size - kSegmentTrailerBytes, kSegmentTrailerBytes, &trailer_buffer,
                           &trailer_bytes);
      !status.ok()) {
    return fail(status);
  }
  auto trailer = DecodeSegmentTrailer(trailer_bytes);
  if (!trailer.ok()) {
    return fail(trailer.status());
  }
  if (trailer->format_version != *version) {
    return fail(Status::Corruption("header version " + std::to_string(*version) +
                                   " differs from trailer version " +
                                   std::to_string(trailer->format_version)));
  }
  const uint64_t outside_footer = kSegmentHeaderBytes + kSegmentTrailerBytes;
  if (trailer->footer_bytes > size - outside_footer) {
    return fail(Status::Corruption("footer of " + std::to_string(trailer->footer_bytes) +
                                   " bytes does not fit in the file"));
  }
  const uint64_t data_bytes = size - outside_footer - trailer->footer_bytes;
  if (Status status = read(kSegmentHeaderBytes + data_bytes, trailer->footer_bytes, &footer_buffer,
                           &footer_bytes);
      !status.ok()) {
    return fail(status);
  }
  if (Crc32(0, footer_bytes) != trailer->footer_crc32) {
    return fail(Status::Corruption("footer checksum mismatch"));
  }
  auto footer = DecodeSegmentFooter(footer_bytes, data_bytes, *version);
  if (!footer.ok()) {
    return fail(Status::Corruption("footer: " + footer.status().message()));
  }
  return std::unique_ptr<SegmentReader>(
      new SegmentReader(std::move(source), std::move(name), std::move(footer).value(), *version));
}

void SegmentReader::BuildIndexes() {
  summary_.project_id = footer_.project_id;
  summary_.row_count = footer_.row_count;
  summary_.subject_count = footer_.subject_count;
  summary_.time_min_ms = footer_.time_min_ms;
  summary_.time_max_ms = footer_.time_max_ms;
  summary_.subject_min = footer_.subject_min;
  summary_.subject_max = footer_.subject_max;
  summary_.block_rows_max = footer_.block_rows_max;
  summary_.fold_generation = footer_.fold_generation;
  for (const FooterBlock& block : footer_.blocks) {
    summary_.stored_subject_runs += block.stored_runs.size();
    blocks_.push_back(SegmentBlockInfo{block.first_row, block.row_count, block.time_min_ms,
                                       block.time_max_ms, block.subject_first, block.subject_last,
                                       block.subject_run_count});
  }
  for (const FooterEventName& name : footer_.event_names) {
    event_names_.push_back(EventNameInfo{name.name, name.row_count});
  }
  // Merge the column keys and the map keys (both sorted, disjoint).
  size_t column_idx = 0;
  size_t map_idx = 0;
  while (column_idx < footer_.columns.size() || map_idx < footer_.map_keys.size()) {
    const bool take_column = map_idx == footer_.map_keys.size() ||
                             (column_idx < footer_.columns.size() &&
                              footer_.columns[column_idx].key < footer_.map_keys[map_idx].key);
    PropertyKeyInfo& info = property_keys_.emplace_back();
    if (take_column) {
      const FooterColumn& column = footer_.columns[column_idx];
      info = PropertyKeyInfo{column.key,      column.row_count,
                             column.tag_mask, PropertyStorage::kColumn,
                             column.encoding, column.dictionary_size};
      key_positions_.push_back(static_cast<uint32_t>(column_idx++));
    } else {
      const FooterMapKey& key = footer_.map_keys[map_idx];
      const bool strings =
          (key.tag_mask & (TagBit(PropertyTag::kString) | TagBit(PropertyTag::kList))) != 0;
      info = PropertyKeyInfo{key.key,
                             key.row_count,
                             key.tag_mask,
                             PropertyStorage::kMap,
                             strings ? StringEncoding::kPlain : StringEncoding::kNone,
                             0};
      key_positions_.push_back(static_cast<uint32_t>(map_idx++));
    }
  }
  for (const FooterMapKey& key : footer_.map_keys) {
    map_tag_masks_.push_back(key.tag_mask);
  }
  dictionaries_.resize(footer_.columns.size());
}

bool SegmentReader::BlockHoldsName(size_t block_idx, uint32_t name_code) const {
  const std::string& bitmap = footer_.blocks[block_idx].name_bitmap;
  return name_code / 8 < bitmap.size() &&
         (static_cast<uint8_t>(bitmap[name_code / 8]) >> (name_code % 8)) & 1;
}

std::optional<uint32_t> SegmentReader::FindEventName(std::string_view name) const {
  const auto found = std::lower_bound(
      event_names_.begin(), event_names_.end(), name,
      [](const EventNameInfo& info, std::string_view wanted) { return info.name < wanted; });
  if (found == event_names_.end() || found->name != name) {
    return std::nullopt;
  }
  return static_cast<uint32_t>(found - event_names_.begin());
}

const PropertyKeyInfo* SegmentReader::FindPropertyKey(std::string_view key) const {
  const auto found = std::lower_bound(
      property_keys_.begin(), property_keys_.end(), key,
      [](const PropertyKeyInfo& info, std::string_view wanted) { return info.key < wanted; });
  if (found == property_keys_.end() || found->key != key) {
    return nullptr;
  }
  return &*found;
}

std::vector<size_t> SegmentReader::MatchingBlocks(const BlockFilter& filter) const {
  std::vector<size_t> matching;
  for (size_t block_idx = 0; block_idx < blocks_.size(); ++block_idx) {
    const SegmentBlockInfo& block = blocks_[block_idx];
    if (block.time_max_ms < filter.time_min_ms || block.time_min_ms > filter.time_max_ms) {
      continue;
    }
    if (filter.subject_min.has_value() && block.subject_last < *filter.subject_min) {
      continue;
    }
    if (filter.subject_max.has_value() && *filter.subject_max < block.subject_first) {
      continue;
    }
    const bool any_name =
        filter.name_codes.empty() ||
        std::any_of(filter.name_codes.begin(), filter.name_codes.end(),
                    [&](uint32_t code) { return BlockHoldsName(block_idx, code); });
    if (any_name) {
      matching.push_back(block_idx);
    }
  }
  return matching;
}

Status SegmentReader::Error(std::string_view column, size_t block_idx, const Status& status) const {
  std::string where = "segment " + name_ + ": " + std::string(column);
  if (block_idx != SIZE_MAX) {
    where += ", block " + std::to_string(block_idx);
  }
  return Status(SegmentErrorCode(status), where + ": " + status.message());
}

// An uncompressed chunk is read straight into `scratch` (or viewed in the
// image), so `*raw` outlives the call as the caller expects; a compressed
// one is read into this thread's StoredBuffer and decompressed into
// `scratch`. DecompressChunk checks the checksum either way.
Status SegmentReader::ReadChunk(const ChunkRef& ref, std::string* scratch,
                                std::string_view* raw) const {
  const bool compressed = ref.codec != SegmentCodec::kNone;
  const ThreadBuffer stored_buffer(StoredBuffer());
  std::string_view stored;
  MP_RETURN_IF_ERROR(source_->Read(ref.offset, static_cast<size_t>(ref.stored_bytes),
                                   compressed ? stored_buffer.get() : scratch, &stored));
  if (stored.size() != ref.stored_bytes) {
    return Status::Corruption("chunk of " + std::to_string(ref.stored_bytes) + " bytes at offset " +
                              std::to_string(ref.offset) + " is cut short: the file now ends at " +
                              std::to_string(ref.offset + stored.size()) + " bytes, not " +
                              std::to_string(source_->size()) + " as when it was opened");
  }
  return DecompressChunk(stored, ref, compressed ? scratch : stored_buffer.get(), raw);
}

Status SegmentReader::ReadChunkGranules(const ChunkRef& ref, size_t rows,
                                        const std::span<const uint32_t>* selected,
                                        std::string* scratch,
                                        std::vector<ChunkGranule>* granules) const {
  granules->clear();
  if (ref.codec != SegmentCodec::kGranules) {
    std::string_view raw;
    MP_RETURN_IF_ERROR(ReadChunk(ref, scratch, &raw));
    granules->push_back(ChunkGranule{0, static_cast<uint32_t>(rows), ref.present_count, raw});
    return Status::Ok();
  }
  const ThreadBuffer stored_buffer(StoredBuffer());
  std::string_view stored;
  MP_RETURN_IF_ERROR(source_->Read(ref.offset, static_cast<size_t>(ref.stored_bytes),
                                   stored_buffer.get(), &stored));
  if (stored.size() != ref.stored_bytes) {
    return Status::Corruption("chunk of " + std::to_string(ref.stored_bytes) + " bytes at offset " +
                              std::to_string(ref.offset) + " is cut short");
  }
  const uint32_t crc = Crc32(0, stored);
  if (crc != ref.crc32) {
    return Status::Corruption("checksum mismatch (stored " + std::to_string(ref.crc32) +
                              ", computed " + std::to_string(crc) + ")");
  }
  thread_local std::vector<GranuleRef> directory;
  MP_RETURN_IF_ERROR(DecodeGranuleDirectory(stored, ref, rows, &directory));
  // The granules to decompress: every one, or those holding a selected row.
  thread_local std::vector<const GranuleRef*> wanted;
  wanted.clear();
  size_t slot = 0;
  uint64_t raw_bytes = 0;
  for (const GranuleRef& granule : directory) {
    const uint64_t end = uint64_t{granule.row_begin} + granule.row_count;
    bool hit = selected == nullptr;
    while (selected != nullptr && slot < selected->size() && (*selected)[slot] < end) {
      hit = true;
      ++slot;
    }
    if (hit) {
      wanted.push_back(&granule);
      raw_bytes += granule.raw_bytes;
    }
  }
  scratch->resize(static_cast<size_t>(raw_bytes));
  size_t at = 0;
  for (const GranuleRef* granule : wanted) {
    MP_RETURN_IF_ERROR(DecompressGranule(stored, *granule, scratch->data() + at));
    granules->push_back(ChunkGranule{granule->row_begin, granule->row_count, granule->present_count,
                                     std::string_view(scratch->data() + at,
                                                      static_cast<size_t>(granule->raw_bytes))});
    at += static_cast<size_t>(granule->raw_bytes);
  }
  return Status::Ok();
}

Status SegmentReader::ReadGranuleDirectory(size_t block_idx, size_t chunk_idx,
                                           std::vector<GranuleRef>* granules) const {
  granules->clear();
  const ChunkRef& ref = footer_.blocks[block_idx].chunks[chunk_idx];
  if (ref.codec != SegmentCodec::kGranules) {
    return Status::Ok();
  }
  std::string stored_bytes;
  std::string_view stored;
  Status status = source_->Read(ref.offset, static_cast<size_t>(ref.stored_bytes), &stored_bytes,
                                &stored);
  if (status.ok() && (stored.size() != ref.stored_bytes || Crc32(0, stored) != ref.crc32)) {
    status = Status::Corruption("chunk is cut short or fails its checksum");
  }
  if (status.ok()) {
    status = DecodeGranuleDirectory(stored, ref, footer_.blocks[block_idx].row_count, granules);
  }
  return status.ok() ? status : Error("granules", block_idx, status);
}

Status SegmentReader::ReadColumnChunk(size_t block_idx, size_t chunk_idx, std::string* scratch,
                                      std::string_view* raw) const {
  return ReadChunk(footer_.blocks[block_idx].chunks[chunk_idx], scratch, raw);
}

Status SegmentReader::ReadTimes(size_t block_idx, std::vector<int64_t>* times) const {
  if (masked_base_) {
    return MaskedReadTimes(block_idx, times);
  }
  const FooterBlock& block = footer_.blocks[block_idx];
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kTime), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeTimes(raw, block.row_count, block.time_min_ms, block.time_max_ms,
                         TimeEncodingOf(summary_.format_version, block.time_min_ms,
                                        block.time_max_ms),
                         times);
  }
  return status.ok() ? status : Error("column time", block_idx, status);
}

Status SegmentReader::ReadTimesOfRows(size_t block_idx, std::span<const uint32_t> selected,
                                      std::vector<int64_t>* times) const {
  if (masked_base_) {
    return masked_base_->ReadTimesOfRows(block_idx, BaseRows(block_idx, selected), times);
  }
  const FooterBlock& block = footer_.blocks[block_idx];
  if (!selected.empty() && selected.back() >= block.row_count) {
    return Error("column time", block_idx,
                 Status::InvalidArgument("selected row " + std::to_string(selected.back()) +
                                         " is past the block's " +
                                         std::to_string(block.row_count) + " rows"));
  }
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kTime), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeTimesOfRows(raw, block.row_count, block.time_min_ms, block.time_max_ms,
                               TimeEncodingOf(summary_.format_version, block.time_min_ms,
                                              block.time_max_ms),
                               selected, times);
  }
  return status.ok() ? status : Error("column time", block_idx, status);
}

Status SegmentReader::ReadSubjects(size_t block_idx, SubjectRuns* runs) const {
  if (masked_base_) {
    return MaskedReadSubjects(block_idx, runs);
  }
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kSubject), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeSubjects(raw, footer_.blocks[block_idx], &runs->subjects, &runs->run_lengths);
  }
  return status.ok() ? status : Error("column subject", block_idx, status);
}

Status SegmentReader::ReadInsertIds(size_t block_idx, std::vector<Id128>* insert_ids) const {
  if (masked_base_) {
    return MaskedReadInsertIds(block_idx, insert_ids);
  }
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kInsertId), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeInsertIds(raw, footer_.blocks[block_idx].row_count, insert_ids);
  }
  return status.ok() ? status : Error("column insert_id", block_idx, status);
}

Status SegmentReader::ReadKeyVersions(size_t block_idx, std::vector<uint32_t>* key_versions) const {
  if (masked_base_) {
    return MaskedReadKeyVersions(block_idx, key_versions);
  }
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kKeyVersion), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeKeyVersions(raw, footer_.blocks[block_idx].row_count, key_versions);
  }
  return status.ok() ? status : Error("column key_version", block_idx, status);
}

Status SegmentReader::ReadPolicyVersions(size_t block_idx,
                                         std::vector<uint32_t>* policy_versions) const {
  if (masked_base_) {
    return MaskedReadPolicyVersions(block_idx, policy_versions);
  }
  const FooterBlock& block = footer_.blocks[block_idx];
  if (!footer_.has_policy_versions) {
    policy_versions->assign(block.row_count, kPolicyVersionUnknown);
    return Status::Ok();
  }
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status = ReadChunk(block.policy_versions, scratch.get(), &raw);
  if (status.ok()) {
    status = DecodePolicyVersions(raw, block.row_count, policy_versions);
  }
  return status.ok() ? status : Error("column policy_version", block_idx, status);
}

Status SegmentReader::ReadNameCodes(size_t block_idx, std::vector<uint32_t>* name_codes) const {
  if (masked_base_) {
    return MaskedReadNameCodes(block_idx, name_codes);
  }
  const FooterBlock& block = footer_.blocks[block_idx];
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kName), scratch.get(), &raw);
  if (status.ok()) {
    status = DecodeNameCodes(raw, block.row_count, footer_.event_names.size(), block.name_bitmap,
                             name_codes);
  }
  return status.ok() ? status : Error("column name", block_idx, status);
}

Status SegmentReader::CountNames(size_t block_idx, std::vector<uint64_t>* counts) const {
  if (masked_base_) {
    std::vector<uint32_t> name_codes;
    MP_RETURN_IF_ERROR(ReadNameCodes(block_idx, &name_codes));
    counts->assign(event_names_.size(), 0);
    for (const uint32_t code : name_codes) {
      ++(*counts)[code];
    }
    return Status::Ok();
  }
  const FooterBlock& block = footer_.blocks[block_idx];
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kName), scratch.get(), &raw);
  if (status.ok()) {
    status =
        CountNameCodes(raw, block.row_count, footer_.event_names.size(), block.name_bitmap, counts);
  }
  return status.ok() ? status : Error("column name", block_idx, status);
}

Result<std::shared_ptr<const SegmentDictionary>> SegmentReader::Dictionary(
    size_t column_idx) const {
  std::lock_guard lock(dictionaries_mutex_);
  if (dictionaries_[column_idx] != nullptr) {
    return dictionaries_[column_idx];
  }
  const FooterColumn& column = footer_.columns[column_idx];
  auto dictionary = std::make_shared<SegmentDictionary>();
  std::string_view raw;
  Status status = ReadChunk(column.dictionary, &dictionary->bytes, &raw);
  if (status.ok()) {
    // The dictionary owns its bytes, so it may outlive the reader.
    if (raw.data() != dictionary->bytes.data()) {
      dictionary->bytes.assign(raw);
    }
    status = DecodeDictionary(dictionary->bytes, column.dictionary_size, &dictionary->entries);
  }
  if (!status.ok()) {
    return Error("dictionary of " + PropertyColumnName(column.key), SIZE_MAX, status);
  }
  dictionaries_[column_idx] = dictionary;
  return dictionaries_[column_idx];
}

Result<std::shared_ptr<const SegmentDictionary>> SegmentReader::ReadDictionary(
    std::string_view key) const {
  if (masked_base_) {
    const size_t hidden_key = HiddenKeyIndex(key);
    if (hidden_key != SIZE_MAX && hidden_keys_[hidden_key].every_row) {
      return Status::NotFound("segment " + name_ + " has no dictionary for " +
                              PropertyColumnName(key) + " (its values are purged)");
    }
    return masked_base_->ReadDictionary(key);
  }
  const PropertyKeyInfo* info = FindPropertyKey(key);
  if (info == nullptr || info->encoding != StringEncoding::kDictionary) {
    return Status::NotFound("segment " + name_ + " has no dictionary for " +
                            PropertyColumnName(key));
  }
  return Dictionary(key_positions_[static_cast<size_t>(info - property_keys_.data())]);
}

Status SegmentReader::ReadOwnColumn(size_t block_idx, size_t column_idx,
                                    PropertyColumn* column) const {
  return ReadOwnColumnRows(block_idx, column_idx, nullptr, column);
}

Status SegmentReader::ReadOwnColumnRows(size_t block_idx, size_t column_idx,
                                        const std::span<const uint32_t>* selected,
                                        PropertyColumn* column) const {
  const FooterColumn& footer_column = footer_.columns[column_idx];
  const ChunkRef& ref = footer_.blocks[block_idx].chunks[kFixedColumnCount + column_idx];
  PropertyColumnFormat format;
  format.encoding = footer_column.encoding;
  format.tag_mask = footer_column.tag_mask;
  format.present_count = ref.present_count;
  column->dictionary_.reset();
  if (footer_column.encoding == StringEncoding::kDictionary) {
    MP_ASSIGN_OR_RETURN(column->dictionary_, Dictionary(column_idx));
    format.dictionary = column->dictionary_->entries;
  }
  thread_local std::vector<ChunkGranule> granules;
  const size_t rows = footer_.blocks[block_idx].row_count;
  Status status = ReadChunkGranules(ref, rows, selected, column->bytes_.get(), &granules);
  if (status.ok()) {
    PropertyColumnOutput output = column->Output();
    if (selected == nullptr && footer_column.encoding == StringEncoding::kDictionary &&
        !column->dictionary_string_views) {
      column->strings.clear();
      output.strings = nullptr;  // codes only
    }
    status = selected == nullptr
                 ? DecodePropertyColumn(granules, rows, format, output)
                 : DecodePropertyColumnGranuleRows(granules, rows, format, *selected, output);
  }
  return status.ok() ? status
                     : Error("column " + PropertyColumnName(footer_column.key), block_idx, status);
}

Status SegmentReader::ReadMapKey(size_t block_idx, uint32_t key_code,
                                 PropertyColumn* column) const {
  const ChunkRef& ref = footer_.blocks[block_idx].chunks.back();
  column->dictionary_.reset();
  thread_local std::vector<ChunkGranule> granules;
  const size_t rows = footer_.blocks[block_idx].row_count;
  Status status = ReadChunkGranules(ref, rows, nullptr, column->bytes_.get(), &granules);
  if (status.ok()) {
    status = DecodeMapKey(granules, rows, map_tag_masks_, key_code, column->Output());
  }
  return status.ok() ? status : Error("column properties map", block_idx, status);
}

Status SegmentReader::ReadProperty(size_t block_idx, std::string_view key,
                                   PropertyColumn* column) const {
  if (masked_base_) {
    return MaskedReadProperty(block_idx, key, column);
  }
  const PropertyKeyInfo* info = FindPropertyKey(key);
  if (info == nullptr) {
    // An empty chunk with no present rows decodes as absent everywhere.
    column->dictionary_.reset();
    return DecodePropertyColumn(std::string_view(), footer_.blocks[block_idx].row_count,
                                PropertyColumnFormat{}, column->Output());
  }
  const uint32_t position = key_positions_[static_cast<size_t>(info - property_keys_.data())];
  if (info->storage == PropertyStorage::kColumn) {
    return ReadOwnColumn(block_idx, position, column);
  }
  return ReadMapKey(block_idx, position, column);
}

// The base's row of each selected row of a view: past the hidden rows
// before it.
std::vector<uint32_t> SegmentReader::BaseRows(size_t block_idx,
                                              std::span<const uint32_t> selected) const {
  const std::vector<uint32_t>& hidden = hidden_rows_[block_idx];
  std::vector<uint32_t> base_rows;
  base_rows.reserve(selected.size());
  size_t hidden_idx = 0;
  for (const uint32_t view_row : selected) {
    while (hidden_idx < hidden.size() && hidden[hidden_idx] <= view_row + hidden_idx) {
      ++hidden_idx;
    }
    base_rows.push_back(static_cast<uint32_t>(view_row + hidden_idx));
  }
  return base_rows;
}

Status SegmentReader::ReadInsertIdsOfRows(size_t block_idx, std::span<const uint32_t> selected,
                                          std::vector<Id128>* insert_ids) const {
  if (masked_base_) {
    return masked_base_->ReadInsertIdsOfRows(block_idx, BaseRows(block_idx, selected), insert_ids);
  }
  const size_t rows = footer_.blocks[block_idx].row_count;
  const ThreadBuffer scratch(DecodedBuffer());
  std::string_view raw;
  Status status =
      ReadColumnChunk(block_idx, static_cast<size_t>(FixedColumn::kInsertId), scratch.get(), &raw);
  if (status.ok() && raw.size() != rows * 16) {
    status = Status::Corruption("insert id chunk is " + std::to_string(raw.size()) + " bytes for " +
                                std::to_string(rows) + " rows");
  }
  if (status.ok() && !selected.empty() && selected.back() >= rows) {
    status = Status::InvalidArgument("selected row " + std::to_string(selected.back()) +
                                     " is past the block's " + std::to_string(rows) + " rows");
  }
  if (!status.ok()) {
    return Error("column insert_id", block_idx, status);
  }
  insert_ids->resize(selected.size());
  for (size_t slot = 0; slot < selected.size(); ++slot) {
    const char* id = raw.data() + size_t{16} * selected[slot];
    (*insert_ids)[slot] = Id128{GetFixed64(id), GetFixed64(id + 8)};
  }
  return Status::Ok();
}

Status SegmentReader::ReadPropertiesOfRows(size_t block_idx, std::span<const uint32_t> selected,
                                           std::vector<PropertyColumn>* columns) const {
  if (masked_base_) {
    const std::vector<uint32_t> base_rows = BaseRows(block_idx, selected);
    MP_RETURN_IF_ERROR(masked_base_->ReadPropertiesOfRows(block_idx, base_rows, columns));
    StripHiddenKeysOfRows(block_idx, base_rows, columns);
    return Status::Ok();
  }
  columns->resize(property_keys_.size());
  std::vector<PropertyColumnOutput> map_outputs(footer_.map_keys.size());
  PropertyColumn* map_holder = nullptr;  // keeps the map chunk's bytes
  for (size_t key_idx = 0; key_idx < property_keys_.size(); ++key_idx) {
    PropertyColumn& column = (*columns)[key_idx];
    const uint32_t position = key_positions_[key_idx];
    if (property_keys_[key_idx].storage == PropertyStorage::kColumn) {
      MP_RETURN_IF_ERROR(ReadOwnColumnRows(block_idx, position, &selected, &column));
      continue;
    }
    column.dictionary_.reset();
    map_outputs[position] = column.Output();
    if (map_holder == nullptr) {
      map_holder = &column;
    }
  }
  if (map_holder == nullptr) {
    return Status::Ok();
  }
  const ChunkRef& ref = footer_.blocks[block_idx].chunks.back();
  thread_local std::vector<ChunkGranule> granules;
  const size_t rows = footer_.blocks[block_idx].row_count;
  Status status = ReadChunkGranules(ref, rows, &selected, map_holder->bytes_.get(), &granules);
  if (status.ok()) {
    status = DecodeMapGranuleRows(granules, rows, map_tag_masks_, selected, map_outputs);
  }
  return status.ok() ? status : Error("column properties map", block_idx, status);
}

Status SegmentReader::ReadMapEntries(size_t block_idx, std::string* scratch,
                                     std::vector<MapEntryView>* entries) const {
  entries->clear();
  if (masked_base_) {
    MP_RETURN_IF_ERROR(masked_base_->ReadMapEntries(block_idx, scratch, entries));
    StripHiddenMapEntries(block_idx, entries);
    const std::vector<uint32_t>& hidden = hidden_rows_[block_idx];
    if (hidden.size() == 1 && hidden.front() == kAllRowsHidden) {
      entries->clear();
      return Status::Ok();
    }
    // Drop the hidden rows' entries and number the rest as the view's rows.
    size_t kept = 0;
    size_t hidden_idx = 0;
    for (size_t entry_idx = 0; entry_idx < entries->size(); ++entry_idx) {
      MapEntryView entry = (*entries)[entry_idx];
      while (hidden_idx < hidden.size() && hidden[hidden_idx] < entry.row) {
        ++hidden_idx;
      }
      if (hidden_idx < hidden.size() && hidden[hidden_idx] == entry.row) {
        continue;
      }
      entry.row -= static_cast<uint32_t>(hidden_idx);
      (*entries)[kept++] = entry;
    }
    entries->resize(kept);
    return Status::Ok();
  }
  const ChunkRef& ref = footer_.blocks[block_idx].chunks.back();
  if (ref.raw_bytes == 0 && ref.present_count == 0) {
    return Status::Ok();
  }
  thread_local std::vector<ChunkGranule> granules;
  Status status =
      ReadChunkGranules(ref, footer_.blocks[block_idx].row_count, nullptr, scratch, &granules);
  for (size_t granule_idx = 0; status.ok() && granule_idx < granules.size(); ++granule_idx) {
    const ChunkGranule& granule = granules[granule_idx];
    MapChunkReader reader(granule.raw, granule.row_count, footer_.map_keys.size());
    status = reader.ForEach(
        granule.present_count, map_tag_masks_,
        [&](size_t row_idx, uint32_t key_code, PropertyTag tag, std::string_view value_bytes) {
          entries->push_back(MapEntryView{static_cast<uint32_t>(granule.row_begin + row_idx),
                                          key_code, tag, value_bytes});
        });
  }
  return status.ok() ? status : Error("column properties map", block_idx, status);
}

// Adds each row's map entries to `events`, which hold the row's own-column
// properties sorted by key, and merges them into key order.
Status SegmentReader::ReadMapEntries(size_t block_idx, std::vector<Event>* events) const {
  const ChunkRef& ref = footer_.blocks[block_idx].chunks.back();
  if (ref.raw_bytes == 0 && ref.present_count == 0) {
    return Status::Ok();
  }
  const ThreadBuffer scratch(DecodedBuffer());
  thread_local std::vector<ChunkGranule> granules;
  Status status = ReadChunkGranules(ref, events->size(), nullptr, scratch.get(), &granules);
  std::vector<size_t> own_counts(events->size());
  for (size_t row_idx = 0; row_idx < events->size(); ++row_idx) {
    own_counts[row_idx] = (*events)[row_idx].properties.size();
  }
  for (size_t granule_idx = 0; status.ok() && granule_idx < granules.size(); ++granule_idx) {
    const ChunkGranule& granule = granules[granule_idx];
    Status value_status;
    MapChunkReader reader(granule.raw, granule.row_count, footer_.map_keys.size());
    status = reader.ForEach(
        granule.present_count, map_tag_masks_,
        [&](size_t row_idx, uint32_t key_code, PropertyTag tag, std::string_view value_bytes) {
          Property& property = (*events)[granule.row_begin + row_idx].properties.emplace_back();
          property.key = footer_.map_keys[key_code].key;
          if (value_status.ok()) {
            value_status = DecodeMapValue(tag, value_bytes, &property.value);
          }
        });
    if (status.ok()) {
      status = value_status;
    }
  }
  if (!status.ok()) {
    return Error("column properties map", block_idx, status);
  }
  for (size_t row_idx = 0; row_idx < events->size(); ++row_idx) {
    Properties& properties = (*events)[row_idx].properties;
    if (own_counts[row_idx] > 0 && own_counts[row_idx] < properties.size()) {
      std::inplace_merge(
          properties.begin(), properties.begin() + static_cast<ptrdiff_t>(own_counts[row_idx]),
          properties.end(), [](const Property& a, const Property& b) { return a.key < b.key; });
    }
  }
  return Status::Ok();
}

// Rows must be sorted by (subject, time, insert id); the subjects' order was
// checked with their chunk, so this checks time and insert id within runs.
Status SegmentReader::CheckRowOrder(size_t block_idx, const std::vector<int64_t>& times,
                                    const SubjectRuns& runs,
                                    const std::vector<Id128>& insert_ids) const {
  size_t row_idx = 0;
  for (const uint32_t length : runs.run_lengths) {
    for (size_t run_row = 1; run_row < length; ++run_row) {
      const size_t at = row_idx + run_row;
      if (std::tie(times[at], insert_ids[at]) < std::tie(times[at - 1], insert_ids[at - 1])) {
        return Error("rows", block_idx,
                     Status::Corruption("row " + std::to_string(at) +
                                        " is out of (subject, time, insert id) order"));
      }
    }
    row_idx += length;
  }
  return Status::Ok();
}

Status SegmentReader::ReadEvents(size_t block_idx, std::vector<Event>* events) const {
  if (masked_base_) {
    return MaskedReadEvents(block_idx, events);
  }
  const size_t rows = footer_.blocks[block_idx].row_count;
  std::vector<int64_t> times;
  SubjectRuns runs;
  std::vector<Id128> insert_ids;
  std::vector<uint32_t> key_versions;
  std::vector<uint32_t> policy_versions;
  std::vector<uint32_t> name_codes;
  MP_RETURN_IF_ERROR(ReadTimes(block_idx, &times));
  MP_RETURN_IF_ERROR(ReadSubjects(block_idx, &runs));
  MP_RETURN_IF_ERROR(ReadInsertIds(block_idx, &insert_ids));
  MP_RETURN_IF_ERROR(ReadKeyVersions(block_idx, &key_versions));
  MP_RETURN_IF_ERROR(ReadPolicyVersions(block_idx, &policy_versions));
  MP_RETURN_IF_ERROR(ReadNameCodes(block_idx, &name_codes));
  MP_RETURN_IF_ERROR(CheckRowOrder(block_idx, times, runs, insert_ids));
  events->resize(rows);
  size_t run_idx = 0;
  uint32_t run_left = runs.run_lengths[0];
  for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
    if (run_left == 0) {
      run_left = runs.run_lengths[++run_idx];
    }
    --run_left;
    Event& event = (*events)[row_idx];
    event.name = footer_.event_names[name_codes[row_idx]].name;
    event.time_ms = times[row_idx];
    event.subject = runs.subjects[run_idx];
    event.insert_id = insert_ids[row_idx];
    event.key_version = key_versions[row_idx];
    event.policy_version = policy_versions[row_idx];
    event.properties.clear();
  }
  for (const StoredSubjectRun& stored : footer_.blocks[block_idx].stored_runs) {
    for (uint32_t row_idx = stored.row_begin; row_idx < stored.row_begin + stored.row_count;
         ++row_idx) {
      (*events)[row_idx].subject = stored.subject;
    }
  }
  PropertyColumn column;
  for (size_t column_idx = 0; column_idx < footer_.columns.size(); ++column_idx) {
    MP_RETURN_IF_ERROR(ReadOwnColumn(block_idx, column_idx, &column));
    for (size_t row_idx = 0; row_idx < rows; ++row_idx) {
      if (column.tags[row_idx] != PropertyTag::kAbsent) {
        (*events)[row_idx].properties.push_back(
            Property{footer_.columns[column_idx].key, column.ValueAt(row_idx)});
      }
    }
  }
  return ReadMapEntries(block_idx, events);
}

Status SegmentReader::ReadStoredSubjects(size_t block_idx,
                                         std::vector<StoredSubjectRun>* runs) const {
  if (masked_base_) {
    return MaskedReadStoredSubjects(block_idx, runs);
  }
  *runs = footer_.blocks[block_idx].stored_runs;
  return Status::Ok();
}

Status SegmentReader::Verify() const {
  if (masked_base_) {
    return masked_base_->Verify();
  }
  std::vector<Event> events;
  for (size_t block_idx = 0; block_idx < footer_.blocks.size(); ++block_idx) {
    MP_RETURN_IF_ERROR(ReadEvents(block_idx, &events));
  }
  for (size_t column_idx = 0; column_idx < footer_.columns.size(); ++column_idx) {
    if (footer_.columns[column_idx].encoding == StringEncoding::kDictionary) {
      MP_RETURN_IF_ERROR(Dictionary(column_idx).status());
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<SegmentReader>> OpenSegment(FileSystem& file_system,
                                                   const std::string& path) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, file_system.OpenRandomAccess(path));
  return SegmentReader::Open(std::move(file), path);
}

}  // namespace minpanel::store
