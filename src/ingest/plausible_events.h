// Plausible's events API (POST /api/event, sent by plausible-tracker and
// Plausible's script tag) → the canonical RawEvent, the same structure the
// Mixpanel and PostHog decoders produce.
//
// One request carries one event and no visitor id: the caller makes the
// visitor id (a keyed hash of a daily salt, the site's domain, the client
// address and the user agent; privacy/visitor_ids.h) and the event time
// (the server's clock; Plausible sends none).
//
// Every function is pure and thread-safe; the decoder reuses two JSON
// parsers per thread (the body, and `p` when it is a JSON string), and a
// decoded event never points into its input. Wire rules:
// docs/formats/plausible.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/core.h"
#include "ingest/ingest.h"

namespace minpanel::ingest {

// The body of one /api/event request (one event). Plausible's own events
// are a few hundred bytes; this leaves room for kPlausiblePropsMax props at
// their limits and a long URL.
inline constexpr size_t kPlausibleBodyBytesMax = 128 << 10;
// Plausible's own limits: event names of at most 120 bytes, at most 30
// custom props per event, prop values of at most 2000 bytes. Keys keep
// minpanel's limit (kPropertyKeyBytesMax, 255 bytes; Plausible allows 300).
inline constexpr size_t kPlausibleEventNameBytesMax = 120;
inline constexpr size_t kPlausiblePropsMax = 30;
inline constexpr size_t kPlausiblePropValueBytesMax = 2000;
// The page URL and the referrer.
inline constexpr size_t kPlausibleUrlBytesMax = 8192;
// A site domain (a DNS name is at most 253 bytes).
inline constexpr size_t kPlausibleDomainBytesMax = 253;
// `w`: window.innerWidth in CSS pixels.
inline constexpr int64_t kPlausibleScreenWidthMax = 100'000;
// Revenue: an ISO 4217 code and an amount of at most this absolute value.
inline constexpr double kPlausibleRevenueAmountMax = 1e15;

// The property names the decoder writes besides the custom props, which
// keep the names the client gave them.
inline constexpr std::string_view kPlausibleScreenSizeKey = "$screen_size";
inline constexpr std::string_view kPlausibleRevenueAmountKey = "$revenue_amount";
inline constexpr std::string_view kPlausibleRevenueCurrencyKey = "$revenue_currency";
inline constexpr std::string_view kPlausibleInteractiveKey = "$interactive";

struct PlausibleDecodeOptions {
  // Server receive time: the event's time.
  int64_t now_ms = 0;
  // The request's client address (the socket peer or what a trusted proxy
  // reported) and User-Agent header: copied into the RawEvent's context
  // fields, which the policy generalises and discards.
  std::string_view client_ip;
  std::string_view user_agent;
};

// One decoded event.
struct PlausibleEvent {
  // The site, normalised by NormalisePlausibleDomain: it picks the project.
  std::string domain;
  // name, time_ms (= now_ms), page_url, referrer, client_ip, user_agent,
  // library ("plausible") and properties; distinct_id is left empty for the
  // caller's visitor id, and there is no insert id (Plausible sends none).
  RawEvent event;
};

// Decodes one /api/event body: a JSON object with short (n, u, d, r, w, h,
// p, m, $, i) or long (name, url, domain, referrer, screen_width, hashMode,
// props, meta, revenue, interactive) member names, whatever the
// Content-Type (the tracker sends text/plain). `p`/`props` (and the older
// `m`/`meta`) is an object or a JSON-encoded string of one, whose values
// must be strings, numbers, booleans or null. Errors name the member and the
// rule or limit: InvalidArgument for a bad or missing member,
// ResourceExhausted over kPlausibleBodyBytesMax, kPlausiblePropsMax or
// kJsonDepthMax. Unknown members are ignored, as Plausible ignores them.
Result<PlausibleEvent> DecodePlausibleEvent(std::string_view body,
                                            const PlausibleDecodeOptions& options);

// A site domain as the decoder and the project settings compare it:
// lowercased, without a leading "www." and a trailing dot. InvalidArgument
// when it is empty, over kPlausibleDomainBytesMax bytes, or not made of
// letters, digits, '-' and '.' (with an optional ":port").
Result<std::string> NormalisePlausibleDomain(std::string_view domain);

// Plausible's screen size class of a window width: "Mobile" below 576
// pixels, "Tablet" below 992, "Laptop" below 1440, else "Desktop". The
// exact width is not kept (it narrows down a device).
std::string_view PlausibleScreenSize(int64_t width);

}  // namespace minpanel::ingest
