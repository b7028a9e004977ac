// Content-Encoding parsing and bounded, streaming gzip/deflate inflation.
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <limits>

#include "ingest/ingest.h"
#include "ingest/text_util.h"

namespace minpanel::ingest {
namespace {

// The first output buffer; it doubles up to the limit, so small bodies never
// allocate the limit up front.
constexpr size_t kInflateInitialBytes = 64 * 1024;
constexpr int kGzipWindowBits = 16 + MAX_WBITS;
constexpr int kZlibWindowBits = MAX_WBITS;
constexpr int kRawDeflateWindowBits = -MAX_WBITS;

bool EqualsIgnoreCase(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) {
    return false;
  }
  for (size_t char_idx = 0; char_idx < text.size(); ++char_idx) {
    if (std::tolower(static_cast<unsigned char>(text[char_idx])) != lower[char_idx]) {
      return false;
    }
  }
  return true;
}

bool HasGzipMagic(std::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

// HTTP "deflate" means a zlib stream (RFC 9110), but some clients send raw
// deflate; a zlib header is recognisable by its method nibble and checksum.
bool HasZlibHeader(std::string_view bytes) {
  if (bytes.size() < 2) {
    return false;
  }
  const auto cmf = static_cast<uint8_t>(bytes[0]);
  const auto flg = static_cast<uint8_t>(bytes[1]);
  return (cmf & 0x0F) == Z_DEFLATED && (cmf * 256 + flg) % 31 == 0;
}

size_t SaturatingMultiply(size_t a, size_t b) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) {
    return std::numeric_limits<size_t>::max();
  }
  return a * b;
}

struct InflateLimits {
  size_t output_bytes_max = 0;
  size_t ratio_max = 0;
  size_t effective_max = 0;  // the smaller of the two, in bytes
};

Status OverLimit(const InflateLimits& limits) {
  if (limits.effective_max == limits.output_bytes_max) {
    return Status::ResourceExhausted("body: decompressed size over the limit of " +
                                     std::to_string(limits.output_bytes_max) + " bytes");
  }
  return Status::ResourceExhausted("body: compression ratio over the limit of " +
                                   std::to_string(limits.ratio_max) +
                                   ":1 (a decompression bomb)");
}

// Owns a z_stream so every exit path releases zlib's state.
class Inflater {
 public:
  Inflater() = default;
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  ~Inflater() {
    if (initialised_) {
      inflateEnd(&stream_);
    }
  }
  bool Init(int window_bits) {
    initialised_ = inflateInit2(&stream_, window_bits) == Z_OK;
    return initialised_;
  }
  z_stream* stream() { return &stream_; }

 private:
  z_stream stream_{};
  bool initialised_ = false;
};

// Makes room for more output, or reports that the limit is reached.
Status GrowOutput(std::string* out, size_t written, const InflateLimits& limits) {
  // One byte past the limit is allowed so that "exactly at the limit" and
  // "over it" can be told apart.
  const size_t capacity_max = limits.effective_max == std::numeric_limits<size_t>::max()
                                  ? limits.effective_max
                                  : limits.effective_max + 1;
  if (written >= capacity_max) {
    return OverLimit(limits);
  }
  const size_t doubled = std::max(kInflateInitialBytes, SaturatingMultiply(out->size(), 2));
  out->resize(std::min(doubled, capacity_max));
  return Status::Ok();
}

Result<std::string> Inflate(std::string_view body, int window_bits, const InflateLimits& limits) {
  if (body.size() > std::numeric_limits<uInt>::max()) {
    return Status::ResourceExhausted("body: compressed body over 4 GiB");
  }
  Inflater inflater;
  if (!inflater.Init(window_bits)) {
    return Status::Unavailable("body: cannot initialise zlib");
  }
  z_stream* stream = inflater.stream();
  stream->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  stream->avail_in = static_cast<uInt>(body.size());
  std::string out;
  size_t written = 0;
  while (true) {
    if (written == out.size()) {
      MP_RETURN_IF_ERROR(GrowOutput(&out, written, limits));
    }
    const size_t room = std::min<size_t>(out.size() - written, std::numeric_limits<uInt>::max());
    stream->next_out = reinterpret_cast<Bytef*>(out.data() + written);
    stream->avail_out = static_cast<uInt>(room);
    const int code = inflate(stream, Z_NO_FLUSH);
    written += room - stream->avail_out;
    if (written > limits.effective_max) {
      return OverLimit(limits);
    }
    if (code == Z_STREAM_END) {
      // gzip allows several members back to back (RFC 1952 section 2.2).
      const std::string_view rest(reinterpret_cast<const char*>(stream->next_in),
                                  stream->avail_in);
      if (rest.empty()) {
        break;
      }
      if (window_bits != kGzipWindowBits || !HasGzipMagic(rest)) {
        return Status::InvalidArgument("body: trailing bytes after the compressed stream");
      }
      inflateReset(stream);
      continue;
    }
    if (code == Z_OK) {
      continue;
    }
    if (code == Z_BUF_ERROR && stream->avail_out == 0) {
      continue;  // only out of output space; grow and go on
    }
    if (code == Z_BUF_ERROR) {
      return Status::InvalidArgument("body: truncated compressed stream");
    }
    if (code == Z_MEM_ERROR) {
      return Status::ResourceExhausted("body: out of memory while decompressing");
    }
    return Status::InvalidArgument(std::string("body: corrupt compressed stream: ") +
                                   (stream->msg != nullptr ? stream->msg : "bad data"));
  }
  out.resize(written);
  return out;
}

}  // namespace

Result<ContentEncoding> ParseContentEncoding(std::string_view header) {
  const std::string_view coding = internal::TrimAsciiWhitespace(header);
  if (coding.empty() || EqualsIgnoreCase(coding, "identity")) {
    return ContentEncoding::kIdentity;
  }
  if (EqualsIgnoreCase(coding, "gzip") || EqualsIgnoreCase(coding, "x-gzip")) {
    return ContentEncoding::kGzip;
  }
  if (EqualsIgnoreCase(coding, "deflate")) {
    return ContentEncoding::kDeflate;
  }
  return Status::InvalidArgument(
      "Content-Encoding: unsupported coding (accepted: gzip, x-gzip, deflate, identity)");
}

bool NeedsDecompression(std::string_view body, ContentEncoding encoding) {
  return encoding != ContentEncoding::kIdentity || HasGzipMagic(body);
}

Result<std::string> DecompressBody(std::string_view body, ContentEncoding encoding,
                                   size_t output_bytes_max, size_t ratio_max) {
  InflateLimits limits;
  limits.output_bytes_max = output_bytes_max;
  limits.ratio_max = ratio_max;
  limits.effective_max = std::min(output_bytes_max, SaturatingMultiply(ratio_max, body.size()));
  switch (encoding) {
    case ContentEncoding::kIdentity:
      // posthog-js sends gzip as text/plain with no Content-Encoding at all.
      if (HasGzipMagic(body)) {
        return Inflate(body, kGzipWindowBits, limits);
      }
      return std::string(body);
    case ContentEncoding::kGzip:
      return Inflate(body, kGzipWindowBits, limits);
    case ContentEncoding::kDeflate:
      return Inflate(body, HasZlibHeader(body) ? kZlibWindowBits : kRawDeflateWindowBits, limits);
  }
  return Status::InvalidArgument("body: unknown content encoding");
}

}  // namespace minpanel::ingest
