#include "cli/record_reader.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <zlib.h>

namespace minpanel::cli {
namespace {

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
constexpr unsigned kZlibBufferBytes = 256u << 10;

bool IsJsonWhitespace(char byte) {
  return byte == ' ' || byte == '\t' || byte == '\r' || byte == '\n';
}

bool IsBlank(std::string_view text) {
  return text.find_first_not_of(" \t\r") == std::string_view::npos;
}

std::string_view TrimTrailingWhitespace(std::string_view text) {
  while (!text.empty() && IsJsonWhitespace(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

Result<bool> HasGzipMagic(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return Status::IoError(path + ": " + std::strerror(errno));
  }
  unsigned char magic[2] = {0, 0};
  const size_t read = std::fread(magic, 1, sizeof(magic), file);
  std::fclose(file);
  return read == sizeof(magic) && magic[0] == 0x1f && magic[1] == 0x8b;
}

}  // namespace

struct RecordReader::GzFile {
  gzFile handle = nullptr;
  std::string path;
  ~GzFile() {
    if (handle != nullptr) {
      gzclose(handle);
    }
  }
};

std::string_view FileFormatName(FileFormat format) {
  switch (format) {
    case FileFormat::kJsonLines:
      return "lines";
    case FileFormat::kJsonArray:
      return "array";
    case FileFormat::kUnknown:
      break;
  }
  return "unknown";
}

Result<FileFormat> ParseFileFormat(std::string_view name) {
  for (FileFormat format : {FileFormat::kUnknown, FileFormat::kJsonLines, FileFormat::kJsonArray}) {
    if (FileFormatName(format) == name) {
      return format;
    }
  }
  return Status::InvalidArgument("unknown file format '" + std::string(name) + "'");
}

RecordReader::RecordReader(std::unique_ptr<GzFile> file, bool compressed, const ReadPosition& start)
    : file_(std::move(file)), compressed_(compressed), position_(start) {}

RecordReader::~RecordReader() = default;

Result<std::unique_ptr<RecordReader>> RecordReader::Open(const std::string& path,
                                                         const ReadPosition& start) {
  MP_ASSIGN_OR_RETURN(const bool compressed, HasGzipMagic(path));
  auto file = std::make_unique<GzFile>();
  file->path = path;
  file->handle = gzopen(path.c_str(), "rb");
  if (file->handle == nullptr) {
    return Status::IoError(path + ": cannot open: " + std::strerror(errno));
  }
  gzbuffer(file->handle, kZlibBufferBytes);
  if (start.offset > 0) {
    struct stat info {};
    if (!compressed &&
        (::stat(path.c_str(), &info) != 0 || static_cast<uint64_t>(info.st_size) < start.offset)) {
      return Status::InvalidArgument(path + ": resume offset " + std::to_string(start.offset) +
                                     " lies past the end of the file");
    }
    // For a gzip file zlib decompresses up to the offset: slow but exact.
    if (gzseek(file->handle, static_cast<z_off_t>(start.offset), SEEK_SET) !=
        static_cast<z_off_t>(start.offset)) {
      int zlib_error = Z_OK;
      return Status::IoError(path + ": cannot seek to " + std::to_string(start.offset) + ": " +
                             gzerror(file->handle, &zlib_error));
    }
  }
  return std::unique_ptr<RecordReader>(new RecordReader(std::move(file), compressed, start));
}

uint64_t RecordReader::compressed_offset() const {
  const z_off_t offset = gzoffset(file_->handle);
  return offset < 0 ? 0 : static_cast<uint64_t>(offset);
}

Result<bool> RecordReader::Fill() {
  if (chunk_position_ < chunk_.size()) {
    return true;
  }
  chunk_.resize(kReadChunkBytes);
  chunk_position_ = 0;
  const int read = gzread(file_->handle, chunk_.data(), static_cast<unsigned>(chunk_.size()));
  int zlib_error = Z_OK;
  const char* message = gzerror(file_->handle, &zlib_error);
  if (read < 0 || (zlib_error != Z_OK && zlib_error != Z_STREAM_END)) {
    chunk_.clear();
    return Status::IoError(file_->path + ": read failed at byte " +
                           std::to_string(position_.offset) + ": " + message);
  }
  chunk_.resize(static_cast<size_t>(read));
  return read > 0;
}

void RecordReader::Take(std::string_view bytes, Record* record) {
  record->text_bytes += bytes.size();
  if (record->text_bytes <= kRecordTextBytesMax) {
    record->text.append(bytes);
  } else if (!record->text.empty()) {
    std::string().swap(record->text);
  }
  chunk_position_ += bytes.size();
  position_.offset += bytes.size();
}

Result<bool> RecordReader::DetectFormat() {
  MP_ASSIGN_OR_RETURN(bool available, Fill());
  if (available && position_.offset == 0 && std::string_view(chunk_).starts_with(kByteOrderMark)) {
    chunk_position_ += kByteOrderMark.size();
    position_.offset += kByteOrderMark.size();
  }
  while (true) {
    MP_ASSIGN_OR_RETURN(available, Fill());
    if (!available) {
      position_.format = FileFormat::kJsonLines;
      return false;
    }
    const char byte = chunk_[chunk_position_];
    if (!IsJsonWhitespace(byte)) {
      break;
    }
    // Leading blank lines count, so that line numbers match an editor's.
    position_.line += byte == '\n' ? 1 : 0;
    ++chunk_position_;
    ++position_.offset;
  }
  if (chunk_[chunk_position_] == '[') {
    ++chunk_position_;
    ++position_.offset;
    position_.format = FileFormat::kJsonArray;
  } else {
    position_.format = FileFormat::kJsonLines;
  }
  return true;
}

Result<bool> RecordReader::Next(Record* record) {
  *record = Record{};
  if (position_.format == FileFormat::kUnknown) {
    MP_ASSIGN_OR_RETURN(const bool any, DetectFormat());
    if (!any) {
      return false;
    }
  }
  MP_ASSIGN_OR_RETURN(const bool found, position_.format == FileFormat::kJsonArray
                                            ? NextElement(record)
                                            : NextLine(record));
  if (found) {
    record->number = ++position_.record;
    record->after = position_;
  }
  return found;
}

Result<bool> RecordReader::NextLine(Record* record) {
  record->line = position_.line + 1;
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool available, Fill());
    if (!available) {
      // The last line need not end with a newline.
      return record->text_bytes > 0 && (record->too_long() || !IsBlank(record->text));
    }
    const std::string_view rest = std::string_view(chunk_).substr(chunk_position_);
    const size_t newline = rest.find('\n');
    if (newline == std::string_view::npos) {
      Take(rest, record);
      continue;
    }
    Take(rest.substr(0, newline), record);
    ++chunk_position_;
    ++position_.offset;
    ++position_.line;
    if (record->too_long() || !IsBlank(record->text)) {
      return true;
    }
    *record = Record{};
    record->line = position_.line + 1;
  }
}

Result<bool> RecordReader::SkipToElement() {
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool available, Fill());
    if (!available) {
      return Status::InvalidArgument("line " + std::to_string(position_.line + 1) +
                                     ": the file ends before the array's closing ']'");
    }
    const char byte = chunk_[chunk_position_];
    if (!IsJsonWhitespace(byte)) {
      if (byte == ']') {
        ++chunk_position_;
        ++position_.offset;
        position_.array_closed = true;
        return false;
      }
      return true;
    }
    position_.line += byte == '\n' ? 1 : 0;
    ++chunk_position_;
    ++position_.offset;
  }
}

Status RecordReader::ExpectEnd() {
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool available, Fill());
    if (!available) {
      return Status::Ok();
    }
    const char byte = chunk_[chunk_position_];
    if (!IsJsonWhitespace(byte)) {
      return Status::InvalidArgument("line " + std::to_string(position_.line + 1) +
                                     ": data after the array's closing ']'");
    }
    position_.line += byte == '\n' ? 1 : 0;
    ++chunk_position_;
    ++position_.offset;
  }
}

Result<bool> RecordReader::NextElement(Record* record) {
  if (!position_.array_closed) {
    MP_ASSIGN_OR_RETURN(const bool has_element, SkipToElement());
    if (has_element) {
      MP_RETURN_IF_ERROR(ReadElement(record));
      return true;
    }
  }
  MP_RETURN_IF_ERROR(ExpectEnd());
  return false;
}

// Scans one array element up to the ',' or ']' that ends it at depth zero,
// tracking strings so that brackets and commas inside them do not count.
// The element itself is left for the decoder to judge.
size_t RecordReader::ElementScanner::FindEnd(std::string_view bytes, uint64_t* lines) {
  for (size_t byte_idx = 0; byte_idx < bytes.size(); ++byte_idx) {
    const char byte = bytes[byte_idx];
    *lines += byte == '\n' ? 1 : 0;
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (byte == '\\') {
        escaped = true;
      } else if (byte == '"') {
        in_string = false;
      }
    } else if (byte == '"') {
      in_string = true;
    } else if (byte == '{' || byte == '[') {
      ++depth;
    } else if ((byte == '}' || byte == ']') && depth > 0) {
      --depth;
    } else if (depth == 0 && (byte == ',' || byte == ']')) {
      return byte_idx;
    }
  }
  return std::string_view::npos;
}

Status RecordReader::ReadElement(Record* record) {
  record->line = position_.line + 1;
  ElementScanner scanner;
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool available, Fill());
    if (!available) {
      return Status::InvalidArgument("line " + std::to_string(record->line) +
                                     ": the file ends inside an array element");
    }
    const std::string_view rest = std::string_view(chunk_).substr(chunk_position_);
    const size_t end = scanner.FindEnd(rest, &position_.line);
    if (end == std::string_view::npos) {
      Take(rest, record);
      continue;
    }
    position_.array_closed = rest[end] == ']';
    Take(rest.substr(0, end), record);
    ++chunk_position_;
    ++position_.offset;
    if (!record->too_long()) {
      record->text.resize(TrimTrailingWhitespace(record->text).size());
    }
    return Status::Ok();
  }
}

}  // namespace minpanel::cli
