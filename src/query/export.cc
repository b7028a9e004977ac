#include <charconv>
#include <cmath>

#include "query/query.h"

namespace minpanel::query {

void AppendJsonNumber(double value, std::string* out) {
  if (!std::isfinite(value)) {
    out->append("null");
    return;
  }
  char buffer[40];
  std::to_chars_result written{};
  const bool negative_zero = value == 0.0 && std::signbit(value);  // "-0" keeps its sign
  if (value == std::trunc(value) && std::fabs(value) < 9.0e15 && !negative_zero) {
    written = std::to_chars(buffer, buffer + sizeof(buffer), static_cast<int64_t>(value));
  } else {
    written = std::to_chars(buffer, buffer + sizeof(buffer), value);  // shortest exact
  }
  out->append(buffer, written.ptr);
}

void AppendJsonValue(const Value& value, std::string* out) {
  switch (value.type()) {
    case Value::Type::kNull:
      out->append("null");
      return;
    case Value::Type::kBool:
      out->append(value.as_bool() ? "true" : "false");
      return;
    case Value::Type::kInt:
      out->append(std::to_string(value.as_int()));
      return;
    case Value::Type::kDouble:
      AppendJsonNumber(value.as_double(), out);
      return;
    case Value::Type::kString:
      AppendJsonString(value.as_string(), out);
      return;
    case Value::Type::kList: {
      out->push_back('[');
      for (size_t item_idx = 0; item_idx < value.as_list().size(); ++item_idx) {
        if (item_idx > 0) {
          out->push_back(',');
        }
        AppendJsonString(value.as_list()[item_idx], out);
      }
      out->push_back(']');
      return;
    }
  }
}

void AppendJsonString(std::string_view text, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (byte < 0x20) {
      switch (c) {
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          out->append("\\u00");
          out->push_back(kHex[byte >> 4]);
          out->push_back(kHex[byte & 0xF]);
      }
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

void AppendEventJsonLine(const Event& event, std::string* out) {
  out->append("{\"event\":");
  AppendJsonString(event.name, out);
  // Mixpanel exports whole seconds; the milliseconds stay in the store.
  out->append(",\"properties\":{\"time\":");
  const int64_t seconds =
      event.time_ms >= 0 ? event.time_ms / 1000 : -((-event.time_ms + 999) / 1000);
  out->append(std::to_string(seconds));
  out->append(",\"distinct_id\":\"");
  out->append(FormatPseudonym(event.subject));
  out->append("\",\"$insert_id\":\"");
  out->append(event.insert_id.ToHex());
  out->push_back('"');
  for (const Property& property : event.properties) {
    out->push_back(',');
    AppendJsonString(property.key, out);
    out->push_back(':');
    AppendJsonValue(property.value, out);
  }
  out->append("}}\n");
}

Result<ExportSummary> ExportJsonLines(store::Engine& engine, const ExportRequest& request,
                                      const std::function<bool(std::string_view)>& sink) {
  store::ScanRequest scan;
  scan.project_id = request.project_id;
  scan.from_ms = request.from_ms;
  scan.to_ms = request.to_ms;
  scan.event_names = request.event_names;
  scan.subject = request.subject;

  ExportSummary summary;
  std::string chunk;
  chunk.reserve(kExportChunkBytes + 4096);
  bool sink_open = true;
  const Status scanned = engine.Scan(scan, [&](const Event& event) {
    AppendEventJsonLine(event, &chunk);
    ++summary.rows;
    if (chunk.size() >= kExportChunkBytes) {
      summary.bytes += chunk.size();
      sink_open = sink(chunk);
      chunk.clear();
    }
    return sink_open && (request.limit == 0 || summary.rows < request.limit);
  });
  MP_RETURN_IF_ERROR(scanned);
  if (sink_open && !chunk.empty()) {
    summary.bytes += chunk.size();
    sink(chunk);
  }
  return summary;
}

}  // namespace minpanel::query
