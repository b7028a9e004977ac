// Fuzzes Plausible's /api/event decoder: the input is the body as received.
// Checks that a decoded event stays within every limit of
// docs/formats/plausible.md, that its domain is normalised (normalising it
// again changes nothing) and that a refusal always says why.
#include <cstddef>
#include <cstdint>

#include "fuzz_check.h"
#include "ingest/plausible_events.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace minpanel;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  ingest::PlausibleDecodeOptions options;
  options.now_ms = fuzz::kDecodeNowMs;
  options.client_ip = "198.51.100.7";
  options.user_agent = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0";
  const auto decoded = ingest::DecodePlausibleEvent(body, options);
  if (!decoded.ok()) {
    fuzz::Check(!decoded.status().message().empty(), "error without a message");
    return 0;
  }
  const RawEvent& event = decoded->event;
  fuzz::Check(!event.name.empty() && event.name.size() <= ingest::kPlausibleEventNameBytesMax,
              "name");
  fuzz::Check(event.time_ms == fuzz::kDecodeNowMs, "the server's time");
  fuzz::Check(event.distinct_id.empty() && !event.insert_id.has_value(), "no client ids");
  fuzz::Check(!event.page_url.empty() && event.page_url.size() <= ingest::kPlausibleUrlBytesMax,
              "url");
  fuzz::Check(event.referrer.size() <= ingest::kPlausibleUrlBytesMax, "referrer");
  fuzz::Check(event.client_ip == options.client_ip && event.user_agent == options.user_agent,
              "context from the request");
  fuzz::Check(
      !decoded->domain.empty() && decoded->domain.size() <= ingest::kPlausibleDomainBytesMax,
      "domain length");
  const auto again = ingest::NormalisePlausibleDomain(decoded->domain);
  fuzz::Check(again.ok() && *again == decoded->domain, "domain normalised once and for all");
  // Custom props plus at most four properties of the decoder's own.
  fuzz::Check(event.properties.size() <= ingest::kPlausiblePropsMax + 4, "props count");
  fuzz::CheckProperties(event.properties);
  for (const Property& property : event.properties) {
    fuzz::Check(property.value.type() != Value::Type::kList, "props are scalars");
    if (property.value.type() == Value::Type::kString) {
      fuzz::Check(property.value.as_string().size() <= ingest::kPlausiblePropValueBytesMax,
                  "prop value length");
    }
  }
  return 0;
}
