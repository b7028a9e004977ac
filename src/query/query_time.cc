// Calendar buckets in an IANA zone (howardhinnant-date, with the system's
// tzdata in /usr/share/zoneinfo: USE_OS_TZDB=1 through the date::date-tz
// CMake target).
//
// Day, week (Monday first) and month buckets start at local midnight; a
// midnight a DST gap skips starts at the transition. Hour buckets are the
// real hours: an hour a fall-back repeats is two buckets, labelled with
// their offsets.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include <date/tz.h>

#include "query/query_internal.h"

namespace minpanel::query {
namespace internal {
namespace {

using std::chrono::milliseconds;
using SysMs = date::sys_time<milliseconds>;
using LocalMs = date::local_time<milliseconds>;

int64_t ToMs(SysMs time) { return time.time_since_epoch().count(); }

// The first instant of the local day (or week, or month) holding `local`.
date::local_days FloorLocalDay(TimeUnit unit, LocalMs local) {
  const date::local_days day = date::floor<date::days>(local);
  if (unit == TimeUnit::kWeek) {
    const date::weekday weekday{day};
    return day - (weekday - date::Monday);
  }
  if (unit == TimeUnit::kMonth) {
    const date::year_month_day ymd{day};
    return date::local_days{ymd.year() / ymd.month() / 1};
  }
  return day;
}

date::local_days NextLocalDay(TimeUnit unit, date::local_days day) {
  if (unit == TimeUnit::kWeek) {
    return day + date::days{7};
  }
  if (unit == TimeUnit::kMonth) {
    const date::year_month_day ymd{day};
    return date::local_days{(ymd.year() / ymd.month() + date::months{1}) / 1};
  }
  return day + date::days{1};
}

int64_t LocalDayStart(const date::time_zone* zone, date::local_days day) {
  const LocalMs local = date::local_time<milliseconds>{day.time_since_epoch()};
  return ToMs(zone->to_sys(local, date::choose::earliest));
}

// The start of the real hour holding `time_ms`: the instant the local clock
// last showed minute 0.
int64_t HourStart(const date::time_zone* zone, int64_t time_ms) {
  const SysMs sys{milliseconds{time_ms}};
  const auto info = zone->get_info(date::floor<std::chrono::seconds>(sys));
  const int64_t offset_ms = info.offset.count() * 1000;
  const int64_t local_ms = time_ms + offset_ms;
  const int64_t hour_ms = 3600 * 1000;
  const int64_t floored = local_ms - ((local_ms % hour_ms) + hour_ms) % hour_ms;
  int64_t start = floored - offset_ms;
  // A transition inside the hour (rare: 30-minute DST) starts a new bucket.
  // (Compared in seconds first: the first period of a zone begins at a
  // time too early to express in milliseconds.)
  const int64_t transition_s = info.begin.time_since_epoch().count();
  if (transition_s > start / 1000) {
    start = std::max(start, transition_s * 1000);
  }
  return start;
}

void AppendTwoDigits(uint32_t value, std::string* out) {
  out->push_back(static_cast<char>('0' + value / 10));
  out->push_back(static_cast<char>('0' + value % 10));
}

}  // namespace

Result<const date::time_zone*> LocateZone(std::string_view name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return Status::InvalidArgument("time_zone: unknown time zone '" +
                                   std::string(name.substr(0, 64)) + "'");
  }
}

Result<TimeBuckets> TimeBuckets::Make(const date::time_zone* zone, TimeUnit unit, int64_t from_ms,
                                      int64_t to_ms, size_t extra, size_t buckets_max) {
  TimeBuckets buckets;
  buckets.zone_ = zone;
  buckets.unit_ = unit;
  auto add = [&](int64_t start) -> bool {
    if (buckets.starts_.size() > buckets_max + extra + 1) {
      return false;
    }
    buckets.starts_.push_back(start);
    return true;
  };
  if (unit == TimeUnit::kHour) {
    int64_t start = HourStart(zone, from_ms);
    while (true) {
      if (!add(start)) {
        break;
      }
      if (start >= to_ms && buckets.range_count_ == 0) {
        buckets.range_count_ = buckets.starts_.size() - 1;
      }
      if (buckets.range_count_ != 0 && buckets.starts_.size() == buckets.range_count_ + extra + 1) {
        break;
      }
      start = HourStart(zone, start + 3600 * 1000);
    }
  } else {
    const LocalMs local = zone->to_local(SysMs{milliseconds{from_ms}});
    date::local_days day = FloorLocalDay(unit, local);
    while (true) {
      const int64_t start = LocalDayStart(zone, day);
      if (!add(start)) {
        break;
      }
      if (start >= to_ms && buckets.range_count_ == 0) {
        buckets.range_count_ = buckets.starts_.size() - 1;
      }
      if (buckets.range_count_ != 0 && buckets.starts_.size() == buckets.range_count_ + extra + 1) {
        break;
      }
      day = NextLocalDay(unit, day);
    }
  }
  if (buckets.range_count_ == 0 || buckets.range_count_ > buckets_max) {
    return Status::InvalidArgument("unit: the range holds more than " +
                                   std::to_string(buckets_max) + " " +
                                   std::string(TimeUnitName(unit)) +
                                   " buckets (kSegmentationBucketsMax)");
  }
  if (unit == TimeUnit::kHour || unit == TimeUnit::kDay || unit == TimeUnit::kWeek) {
    const int64_t width = buckets.starts_[1] - buckets.starts_[0];
    bool uniform = true;
    for (size_t bucket_idx = 1; bucket_idx < buckets.starts_.size(); ++bucket_idx) {
      uniform = uniform && buckets.starts_[bucket_idx] - buckets.starts_[bucket_idx - 1] == width;
    }
    buckets.uniform_width_ms_ = uniform ? width : 0;
  }
  return buckets;
}

int64_t TimeBuckets::IndexBySearch(int64_t time_ms) const {
  if (time_ms < starts_.front()) {
    return -1;
  }
  if (time_ms >= starts_.back()) {
    return static_cast<int64_t>(count());
  }
  if (uniform_width_ms_ != 0) {
    return (time_ms - starts_.front()) / uniform_width_ms_;
  }
  const auto it = std::upper_bound(starts_.begin(), starts_.end(), time_ms);
  return (it - starts_.begin()) - 1;
}

Bucket TimeBuckets::Label(size_t bucket_idx) const {
  Bucket bucket;
  bucket.start_ms = starts_[bucket_idx];
  const SysMs sys{milliseconds{bucket.start_ms}};
  const auto info = zone_->get_info(date::floor<std::chrono::seconds>(sys));
  const int64_t offset_s = info.offset.count();
  const LocalMs local = date::local_time<milliseconds>{
      sys.time_since_epoch() + milliseconds{offset_s * 1000}};
  const date::local_days day = date::floor<date::days>(local);
  const date::year_month_day ymd{day};
  char text[32];
  std::snprintf(text, sizeof(text), "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
  bucket.label = text;
  if (unit_ == TimeUnit::kHour) {
    const auto time_of_day = date::make_time(local - day);
    bucket.label.push_back('T');
    AppendTwoDigits(static_cast<uint32_t>(time_of_day.hours().count()), &bucket.label);
    bucket.label.push_back(':');
    AppendTwoDigits(static_cast<uint32_t>(time_of_day.minutes().count()), &bucket.label);
    const int64_t offset_abs = offset_s < 0 ? -offset_s : offset_s;
    bucket.label.push_back(offset_s < 0 ? '-' : '+');
    AppendTwoDigits(static_cast<uint32_t>(offset_abs / 3600), &bucket.label);
    bucket.label.push_back(':');
    AppendTwoDigits(static_cast<uint32_t>(offset_abs % 3600 / 60), &bucket.label);
  }
  return bucket;
}

}  // namespace internal

Result<int64_t> ResolveTime(const TimeSpec& time, std::string_view time_zone, int64_t now_ms) {
  if (time.relative != TimeSpec::Relative::kNone) {
    if (now_ms == 0) {
      return Status::InvalidArgument("a relative time needs the server's clock");
    }
    const int64_t minutes_per_unit = time.relative == TimeSpec::Relative::kMinutes ? 1
                                     : time.relative == TimeSpec::Relative::kHours ? 60
                                                                                    : 24 * 60;
    if (time.relative_count * minutes_per_unit > kQueryRangeDaysMax * 24 * 60) {
      return Status::InvalidArgument("reaches back more than " +
                                     std::to_string(kQueryRangeDaysMax) +
                                     " days (kQueryRangeDaysMax)");
    }
    switch (time.relative) {
      case TimeSpec::Relative::kNow:
        return now_ms;
      case TimeSpec::Relative::kMinutes:
        return now_ms - time.relative_count * 60 * 1000;
      case TimeSpec::Relative::kHours:
        return now_ms - time.relative_count * 3600 * 1000;
      default:
        break;
    }
    MP_ASSIGN_OR_RETURN(const date::time_zone* zone, internal::LocateZone(time_zone));
    const auto local = zone->to_local(internal::SysMs{std::chrono::milliseconds{now_ms}});
    const date::local_days day =
        date::floor<date::days>(local) - date::days{time.relative_count};
    return internal::LocalDayStart(zone, day);
  }
  if (!time.local) {
    return time.utc_ms;
  }
  const date::year_month_day ymd{date::year{time.year}, date::month{time.month},
                                 date::day{time.day}};
  if (!ymd.ok()) {
    return Status::InvalidArgument("no such date");
  }
  const date::local_time<std::chrono::milliseconds> local{
      date::local_days{ymd}.time_since_epoch() + std::chrono::hours{time.hour} +
      std::chrono::minutes{time.minute} + std::chrono::seconds{time.second} +
      std::chrono::milliseconds{time.millisecond}};
  if (time_zone == "UTC") {
    return static_cast<int64_t>(local.time_since_epoch().count());
  }
  MP_ASSIGN_OR_RETURN(const date::time_zone* zone, internal::LocateZone(time_zone));
  return internal::ToMs(zone->to_sys(local, date::choose::earliest));
}

}  // namespace minpanel::query
