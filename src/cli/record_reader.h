// RecordReader: splits an import file into the JSON text of its records
// without parsing them, in bounded memory, for `minpanel import`.
//
// The file is either one JSON array of event objects or JSON lines (one
// event object per line, Mixpanel's export format); the first character
// that is not whitespace (after an optional UTF-8 byte order mark) decides:
// '[' means an array. Either may be gzip-compressed: zlib detects the gzip
// magic bytes and reads a plain file as is.
//
// Each record carries the uncompressed offset and scanner phase at which to
// resume after it, so an interrupted import restarts exactly after the last
// acknowledged record. Internal to the cli module; thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/core.h"

namespace minpanel::cli {

// A record's text is kept up to this many bytes (JSON syntax and escapes on
// top of the decoder's per-event limit); a longer one is skipped and
// reported as too long, so one huge line cannot exhaust memory.
inline constexpr size_t kRecordTextBytesMax = 2u << 20;
// Bytes asked of zlib per read.
inline constexpr size_t kReadChunkBytes = 1u << 20;

enum class FileFormat : uint8_t { kUnknown, kJsonLines, kJsonArray };

std::string_view FileFormatName(FileFormat format);
Result<FileFormat> ParseFileFormat(std::string_view name);

// Where a reader stands between two records: enough to resume there.
struct ReadPosition {
  FileFormat format = FileFormat::kUnknown;  // unknown: nothing read yet
  uint64_t offset = 0;                       // uncompressed bytes consumed
  uint64_t line = 0;                         // newlines consumed (the next record is on line + 1)
  uint64_t record = 0;                       // records returned so far
  bool array_closed = false;                 // the array's closing ']' was consumed
};

struct Record {
  std::string text;         // the record's JSON, empty when too long
  uint64_t text_bytes = 0;  // its full length, even when too long
  uint64_t line = 0;        // 1-based line where the record starts
  uint64_t number = 0;      // 1-based position among the file's records
  ReadPosition after;       // resume here to continue after this record
  bool too_long() const { return text_bytes > kRecordTextBytesMax; }
};

class RecordReader {
 public:
  // Opens `path` (plain or gzip) and moves to `start` (decompressing up to
  // it for a gzip file). IoError when the file cannot be read;
  // InvalidArgument when `start` lies past its end.
  static Result<std::unique_ptr<RecordReader>> Open(const std::string& path,
                                                    const ReadPosition& start);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // Reads the next record into `record`; false at the end of the file.
  // IoError on a read or gzip error; InvalidArgument when the array is not
  // closed or is followed by anything but whitespace.
  Result<bool> Next(Record* record);

  // Whether the file is gzip-compressed.
  bool compressed() const { return compressed_; }
  // Compressed bytes consumed so far (equal to position().offset for a plain
  // file), for progress against the file's size.
  uint64_t compressed_offset() const;
  const ReadPosition& position() const { return position_; }

 private:
  struct GzFile;
  struct ElementScanner {
    uint32_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    // The index of the ',' or ']' ending the element in `bytes`, or npos;
    // adds the newlines scanned to `lines`.
    size_t FindEnd(std::string_view bytes, uint64_t* lines);
  };
  RecordReader(std::unique_ptr<GzFile> file, bool compressed, const ReadPosition& start);
  // Makes at least one unread byte available; false at the end of the file.
  Result<bool> Fill();
  Result<bool> DetectFormat();
  Result<bool> NextLine(Record* record);
  Result<bool> NextElement(Record* record);
  Status ReadElement(Record* record);
  Result<bool> SkipToElement();
  Status ExpectEnd();
  void Take(std::string_view bytes, Record* record);

  std::unique_ptr<GzFile> file_;
  bool compressed_ = false;
  ReadPosition position_;
  std::string chunk_;
  size_t chunk_position_ = 0;
};

}  // namespace minpanel::cli
