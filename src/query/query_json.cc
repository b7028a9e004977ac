// QueryResultToJson: the answer body of docs/queries.md ("Results").
#include <algorithm>

#include "query/query.h"

namespace minpanel::query {
namespace {

void AppendInt(int64_t value, std::string* out) { out->append(std::to_string(value)); }

template <typename T>
void AppendOptional(const std::optional<T>& value, std::string* out) {
  if (!value) {
    out->append("null");
  } else if constexpr (std::is_same_v<T, double>) {
    AppendJsonNumber(*value, out);
  } else {
    AppendInt(static_cast<int64_t>(*value), out);
  }
}

void AppendKey(std::string_view key, std::string* out) {
  AppendJsonString(key, out);
  out->push_back(':');
}

// "event":NAME, or "any_event":true for a selector of every event.
void AppendEventLabel(std::string_view event, bool any_event, std::string* out) {
  if (any_event) {
    out->append("\"any_event\":true");
    return;
  }
  AppendKey("event", out);
  AppendJsonString(event, out);
}

// "breakdown":[...] or "other":true, followed by a comma.
void AppendGroup(const GroupKey& group, std::string* out) {
  if (group.other) {
    out->append("\"other\":true,");
    return;
  }
  AppendKey("breakdown", out);
  out->push_back('[');
  for (size_t value_idx = 0; value_idx < group.values.size(); ++value_idx) {
    if (value_idx > 0) {
      out->push_back(',');
    }
    AppendJsonValue(group.values[value_idx], out);
  }
  out->append("],");
}

// ,"suppressed":[i, ...] when any cell of a list is withheld (k-suppression).
void AppendSuppressed(std::string_view key, const std::vector<uint32_t>& suppressed,
                      std::string* out) {
  if (suppressed.empty()) {
    return;
  }
  out->push_back(',');
  AppendKey(key, out);
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < suppressed.size(); ++item_idx) {
    if (item_idx > 0) {
      out->push_back(',');
    }
    AppendInt(suppressed[item_idx], out);
  }
  out->push_back(']');
}

// A count, or null when withheld.
void AppendCount(uint64_t count, bool suppressed, std::string* out) {
  if (suppressed) {
    out->append("null");
  } else {
    AppendInt(static_cast<int64_t>(count), out);
  }
}

template <typename T, typename F>
void AppendArray(const std::vector<T>& items, F&& append_item, std::string* out) {
  out->push_back('[');
  for (size_t item_idx = 0; item_idx < items.size(); ++item_idx) {
    if (item_idx > 0) {
      out->push_back(',');
    }
    append_item(items[item_idx]);
  }
  out->push_back(']');
}

void AppendSegmentation(const QueryResult& result, std::string* out) {
  out->append(",\"unit\":");
  AppendJsonString(TimeUnitName(result.unit), out);
  out->append(",\"measure\":");
  AppendJsonString(MeasureName(result.measure), out);
  out->append(",\"buckets\":");
  AppendArray(result.buckets, [&](const Bucket& bucket) { AppendJsonString(bucket.label, out); },
              out);
  out->append(",\"bucket_starts_ms\":");
  AppendArray(result.buckets, [&](const Bucket& bucket) { AppendInt(bucket.start_ms, out); }, out);
  out->append(",\"series\":");
  AppendArray(
      result.series,
      [&](const SegmentationSeries& series) {
        out->push_back('{');
        AppendEventLabel(series.event, series.any_event, out);
        out->push_back(',');
        if (series.group.other || !series.group.values.empty()) {
          AppendGroup(series.group, out);
        }
        AppendKey("values", out);
        AppendArray(series.values, [&](const std::optional<double>& value) {
          AppendOptional(value, out);
        }, out);
        out->push_back(',');
        AppendKey("total", out);
        AppendOptional(series.total, out);
        AppendSuppressed("suppressed", series.suppressed, out);
        if (series.total_suppressed) {
          out->append(",\"total_suppressed\":true");
        }
        out->push_back('}');
      },
      out);
}

void AppendFunnelSteps(const FunnelGroup& group, std::string* out) {
  AppendKey("steps", out);
  AppendArray(
      group.steps,
      [&](const FunnelStepResult& step) {
        out->push_back('{');
        AppendEventLabel(step.event, step.any_event, out);
        out->append(",\"subjects\":");
        AppendCount(step.subjects, step.suppressed, out);
        out->append(",\"step_conversion\":");
        AppendJsonNumber(step.step_conversion, out);
        out->append(",\"overall_conversion\":");
        AppendJsonNumber(step.overall_conversion, out);
        out->append(",\"median_ms\":");
        AppendOptional(step.median_ms, out);
        out->append(",\"p90_ms\":");
        AppendOptional(step.p90_ms, out);
        if (step.suppressed) {
          out->append(",\"suppressed\":true");
        }
        out->append(",\"time_to_convert\":");
        if (step.time_to_convert.empty()) {
          out->append("null");
        } else {
          AppendArray(
              step.time_to_convert,
              [&](const std::optional<uint64_t>& count) { AppendOptional(count, out); }, out);
        }
        AppendSuppressed("time_to_convert_suppressed", step.time_to_convert_suppressed, out);
        out->push_back('}');
      },
      out);
}

void AppendFunnel(const QueryResult& result, std::string* out) {
  if (result.funnel.empty()) {
    return;
  }
  out->push_back(',');
  AppendFunnelSteps(result.funnel[0], out);
  out->append(",\"groups\":[");
  for (size_t group_idx = 1; group_idx < result.funnel.size(); ++group_idx) {
    if (group_idx > 1) {
      out->push_back(',');
    }
    out->push_back('{');
    AppendGroup(*result.funnel[group_idx].group, out);
    AppendFunnelSteps(result.funnel[group_idx], out);
    out->push_back('}');
  }
  out->push_back(']');
  out->append(",\"time_to_convert_buckets_ms\":");
  AppendArray(
      result.time_to_convert_buckets_ms, [&](int64_t bound) { AppendInt(bound, out); }, out);
}

void AppendRetentionGroup(const RetentionGroup& group, std::string* out) {
  AppendKey("size", out);
  AppendCount(group.size, group.size_suppressed, out);
  if (group.size_suppressed) {
    out->append(",\"size_suppressed\":true");
  }
  out->append(",\"cohorts\":");
  AppendArray(
      group.cohorts,
      [&](const RetentionCohort& cohort) {
        out->push_back('{');
        AppendKey("start", out);
        AppendJsonString(cohort.start.label, out);
        out->append(",\"start_ms\":");
        AppendInt(cohort.start.start_ms, out);
        out->append(",\"size\":");
        AppendCount(cohort.size, cohort.size_suppressed, out);
        if (cohort.size_suppressed) {
          out->append(",\"size_suppressed\":true");
        }
        out->append(",\"counts\":");
        AppendArray(cohort.counts, [&](const std::optional<uint64_t>& count) {
          AppendOptional(count, out);
        }, out);
        out->append(",\"rates\":");
        AppendArray(cohort.rates, [&](const std::optional<double>& rate) {
          AppendOptional(rate, out);
        }, out);
        out->append(",\"incomplete_from\":");
        AppendOptional(cohort.incomplete_from, out);
        AppendSuppressed("suppressed", cohort.suppressed, out);
        out->push_back('}');
      },
      out);
  out->append(",\"total\":{\"counts\":");
  for (size_t period = 0; period < group.total_counts.size(); ++period) {
    out->push_back(period == 0 ? '[' : ',');
    const bool hidden = std::find(group.total_suppressed.begin(), group.total_suppressed.end(),
                                  period) != group.total_suppressed.end();
    AppendCount(group.total_counts[period], hidden, out);
  }
  out->append(group.total_counts.empty() ? "[]" : "]");
  out->append(",\"rates\":");
  AppendArray(group.total_rates, [&](const std::optional<double>& rate) {
    AppendOptional(rate, out);
  }, out);
  AppendSuppressed("suppressed", group.total_suppressed, out);
  out->push_back('}');
}

void AppendRetention(const QueryResult& result, std::string* out) {
  out->append(",\"unit\":");
  AppendJsonString(TimeUnitName(result.unit), out);
  out->append(",\"mode\":");
  AppendJsonString(result.mode == RetentionMode::kOn ? "on" : "on_or_after", out);
  if (result.retention.empty()) {
    return;
  }
  out->push_back(',');
  AppendRetentionGroup(result.retention[0], out);
  out->append(",\"groups\":[");
  for (size_t group_idx = 1; group_idx < result.retention.size(); ++group_idx) {
    if (group_idx > 1) {
      out->push_back(',');
    }
    out->push_back('{');
    AppendGroup(*result.retention[group_idx].group, out);
    AppendRetentionGroup(result.retention[group_idx], out);
    out->push_back('}');
  }
  out->push_back(']');
}

}  // namespace

std::string QueryResultToJson(const QueryResult& result) {
  std::string out = "{\"kind\":";
  AppendJsonString(QueryKindName(result.kind), &out);
  out.append(",\"time_zone\":");
  AppendJsonString(result.time_zone, &out);
  out.append(",\"from_ms\":");
  AppendInt(result.from_ms, &out);
  out.append(",\"to_ms\":");
  AppendInt(result.to_ms, &out);
  if (result.min_group_size > 1) {
    out.append(",\"min_group_size\":");
    AppendInt(result.min_group_size, &out);
    out.append(",\"suppressed_cells\":");
    AppendInt(static_cast<int64_t>(result.suppressed_cells), &out);
  }
  switch (result.kind) {
    case QueryKind::kSegmentation:
      AppendSegmentation(result, &out);
      break;
    case QueryKind::kFunnel:
      AppendFunnel(result, &out);
      break;
    case QueryKind::kRetention:
      AppendRetention(result, &out);
      break;
  }
  out.append(",\"stats\":{\"segments\":");
  AppendInt(static_cast<int64_t>(result.stats.segments), &out);
  out.append(",\"blocks_total\":");
  AppendInt(static_cast<int64_t>(result.stats.blocks_total), &out);
  out.append(",\"blocks_read\":");
  AppendInt(static_cast<int64_t>(result.stats.blocks_read), &out);
  out.append(",\"rows_read\":");
  AppendInt(static_cast<int64_t>(result.stats.rows_read), &out);
  out.push_back('}');
  if (result.previous != nullptr) {
    out.append(",\"previous\":");
    out.append(QueryResultToJson(*result.previous));
  }
  out.push_back('}');
  return out;
}

}  // namespace minpanel::query
