#include "privacy/geo.h"

#include <gtest/gtest.h>
#include <maxminddb.h>

#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <thread>
#include <utility>
#include <vector>

namespace minpanel::privacy {

// Readable failure messages for GeoLocation.
void PrintTo(const GeoLocation& location, std::ostream* out) {
  *out << "{" << location.country_code << ", " << location.region << ", " << location.city << "}";
}

namespace {

namespace fs = std::filesystem;

// The repository root, where scripts/setup-geoip.sh installs the database.
std::string RepoRoot() { return MINPANEL_SOURCE_DIR; }

std::string Ipv4Path() { return DefaultGeoDatabasePaths(RepoRoot())[0]; }
std::string Ipv6Path() { return DefaultGeoDatabasePaths(RepoRoot())[1]; }

// The database is a real dependency, not an optional one: without it these
// tests fail and say how to install it.
void ExpectDatabaseInstalled() {
  for (const std::string& path : DefaultGeoDatabasePaths(RepoRoot())) {
    ASSERT_TRUE(fs::exists(path)) << "the geo database is not installed: " << path
                                  << " is missing; run scripts/setup-geoip.sh";
  }
}

class GeoDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
    Result<std::unique_ptr<GeoDatabase>> opened =
        GeoDatabase::Open(DefaultGeoDatabasePaths(RepoRoot()));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    database_ = std::move(opened).value();
  }

  std::string CountryOf(std::string_view ip) const {
    const std::optional<GeoLocation> location = database_->Lookup(ip, GeoPrecision::kCountry);
    return location.has_value() ? location->country_code : "<none>";
  }

  std::unique_ptr<GeoDatabase> database_;
};

// Large providers whose country DB-IP has long agreed on: Google Public DNS
// and Quad9 (US), the RIPE NCC's own network in Amsterdam (NL).
TEST_F(GeoDatabaseTest, WellKnownIpv4AddressesResolveToTheirCountry) {
  EXPECT_EQ(CountryOf("8.8.8.8"), "US");
  EXPECT_EQ(CountryOf("9.9.9.9"), "US");
  EXPECT_EQ(CountryOf("193.0.6.139"), "NL");
}

TEST_F(GeoDatabaseTest, Ipv6AddressesResolve) {
  EXPECT_EQ(CountryOf("2001:67c:2e8:22::c100:68b"), "NL");
  // Google's resolver moves between countries in the data; that it has one
  // is what matters here.
  const std::string google = CountryOf("2001:4860:4860::8888");
  EXPECT_EQ(google.size(), 2u) << google;
}

TEST_F(GeoDatabaseTest, Ipv4MappedIpv6IsLookedUpAsIpv4) {
  EXPECT_EQ(CountryOf("::ffff:8.8.8.8"), "US");
  EXPECT_EQ(CountryOf("::ffff:10.0.0.1"), "<none>");
}

TEST_F(GeoDatabaseTest, PrecisionTrimsFields) {
  const std::optional<GeoLocation> country = database_->Lookup("8.8.8.8", GeoPrecision::kCountry);
  ASSERT_TRUE(country.has_value());
  EXPECT_EQ(country->country_code, "US");
  EXPECT_EQ(country->region, "");
  EXPECT_EQ(country->city, "");

  const std::optional<GeoLocation> region = database_->Lookup("8.8.8.8", GeoPrecision::kRegion);
  ASSERT_TRUE(region.has_value());
  EXPECT_EQ(region->country_code, "US");
  EXPECT_FALSE(region->region.empty());
  EXPECT_EQ(region->city, "");

  const std::optional<GeoLocation> city = database_->Lookup("8.8.8.8", GeoPrecision::kCity);
  ASSERT_TRUE(city.has_value());
  EXPECT_EQ(city->country_code, "US");
  EXPECT_EQ(city->region, region->region);
  EXPECT_FALSE(city->city.empty());
}

// DB-IP writes "Amsterdam (Amsterdam-Centrum)"; the district is finer than a city.
TEST_F(GeoDatabaseTest, CityKeepsNoDistrict) {
  for (const char* ip : {"193.0.6.139", "9.9.9.9", "208.67.222.222", "8.8.8.8"}) {
    const std::optional<GeoLocation> location = database_->Lookup(ip, GeoPrecision::kCity);
    ASSERT_TRUE(location.has_value()) << ip;
    EXPECT_EQ(location->city.find('('), std::string::npos) << ip << " → " << location->city;
  }
}

TEST_F(GeoDatabaseTest, NonPublicAddressesAreNotLookedUp) {
  for (const char* ip :
       {"10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "127.0.0.1", "0.0.0.0",
        "169.254.10.10", "100.64.0.1", "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1",
        "224.0.0.1", "240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "fc00::1",
        "fd12:3456:789a::1", "ff02::1", "2001:db8::1", "2001::1", "3fff::1", "64:ff9b::808:808",
        "::ffff:192.168.0.1", "::ffff:127.0.0.1"}) {
    EXPECT_EQ(database_->Lookup(ip, GeoPrecision::kCity), std::nullopt) << ip;
  }
}

TEST_F(GeoDatabaseTest, TextThatIsNotAnAddressGivesNothing) {
  const std::string too_long(kGeoIpTextBytesMax + 1, '1');
  for (std::string_view text :
       {std::string_view(""), std::string_view("not an ip"), std::string_view("8.8.8"),
        std::string_view("256.8.8.8"), std::string_view(" 8.8.8.8"), std::string_view("8.8.8.8 "),
        std::string_view("8.8.8.8:443"), std::string_view("[2001:4860:4860::8888]"),
        std::string_view("fe80::1%eth0"), std::string_view("2001:4860:4860::8888::1"),
        std::string_view("8.8.8.8\0garbage", 15), std::string_view(too_long)}) {
    EXPECT_EQ(database_->Lookup(text, GeoPrecision::kCity), std::nullopt) << text;
  }
}

TEST_F(GeoDatabaseTest, AttributionNamesDbIp) {
  EXPECT_EQ(database_->attribution(), kDbIpAttribution);
  EXPECT_NE(database_->attribution().find("db-ip.com"), std::string_view::npos);
}

// A folder of its own under the system temp folder, removed with the test.
class TempFolder {
 public:
  TempFolder() {
    std::string pattern = (fs::temp_directory_path() / "minpanel-geo-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TempFolder() {
    if (!path_.empty()) {
      std::error_code ignored;
      fs::remove_all(path_, ignored);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string ReadPrefix(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::string data(bytes, '\0');
  in.read(data.data(), static_cast<std::streamsize>(bytes));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

// Replaces `path` the way an update does: a new file renamed over the old one.
// The new file is a symbolic link to `target`, which avoids copying 70 MB;
// stat and MMDB_open both follow it, so it looks like a new file to them.
void ReplaceWithLink(const std::string& path, const std::string& target) {
  const std::string staging = path + ".new";
  fs::remove(staging);
  fs::create_symlink(target, staging);
  fs::rename(staging, path);
}

// Writes a minimal MaxMind DB file (format: https://maxmind.github.io/MaxMind-DB/)
// holding a few IPv4 prefixes, so that the MaxMind layout and the metadata
// are tested without GeoLite2, whose licence keeps it out of the repository.
class MmdbWriter {
 public:
  // Sizes from 29 to 284 take one extra byte holding size - 29.
  static std::string String(std::string_view text) {
    if (text.size() < 29) {
      return std::string(1, static_cast<char>(0x40 | text.size())) + std::string(text);
    }
    return std::string{static_cast<char>(0x40 | 29), static_cast<char>(text.size() - 29)} +
           std::string(text);
  }
  static std::string Map(const std::vector<std::pair<std::string, std::string>>& entries) {
    std::string out(1, static_cast<char>(0xE0 | entries.size()));
    for (const auto& [key, value] : entries) {
      out += String(key) + value;
    }
    return out;
  }
  // Arrays are an extended type: size in the control byte, then type 11 - 7.
  static std::string Array(const std::vector<std::string>& items) {
    std::string out = {static_cast<char>(items.size()), 4};
    for (const std::string& item : items) {
      out += item;
    }
    return out;
  }
  static std::string Unsigned(uint8_t control, uint64_t value, size_t bytes) {
    std::string out(1, static_cast<char>(control));
    for (size_t byte_idx = bytes; byte_idx > 0; --byte_idx) {
      out += static_cast<char>((value >> (8 * (byte_idx - 1))) & 0xFF);
    }
    return out;
  }
  static std::string Uint16(uint16_t value) { return Unsigned(0xA2, value, 2); }
  static std::string Uint32(uint32_t value) { return Unsigned(0xC4, value, 4); }
  static std::string Uint64(uint64_t value) { return std::string(1, 8) + Unsigned(2, value, 8); }

  // Maps `prefix`/`length_bits` (IPv4) to `record`, an encoded data value.
  void Add(uint32_t prefix, uint32_t length_bits, const std::string& record) {
    const uint32_t data_offset = static_cast<uint32_t>(data_.size());
    data_ += record;
    size_t node_idx = 0;
    for (uint32_t bit_idx = 0; bit_idx < length_bits; ++bit_idx) {
      const size_t side = (prefix >> (31 - bit_idx)) & 1;
      Slot& slot = nodes_[node_idx][side];
      if (bit_idx + 1 == length_bits) {
        slot = {SlotKind::kData, data_offset};
        return;
      }
      if (slot.kind != SlotKind::kNode) {
        slot = {SlotKind::kNode, static_cast<uint32_t>(nodes_.size())};
      }
      node_idx = slot.value;
      // Last: growing the vector invalidates `slot`.
      if (node_idx == nodes_.size()) {
        nodes_.push_back({});
      }
    }
  }

  std::string Build(std::string_view database_type) const {
    const auto node_count = static_cast<uint32_t>(nodes_.size());
    std::string out;
    for (const auto& node : nodes_) {
      for (const Slot& slot : node) {
        uint32_t value = node_count;
        if (slot.kind == SlotKind::kNode) {
          value = slot.value;
        } else if (slot.kind == SlotKind::kData) {
          value = node_count + 16 + slot.value;
        }
        out += Unsigned(0, value, 3).substr(1);
      }
    }
    out += std::string(16, '\0') + data_;
    out += "\xAB\xCD\xEFMaxMind.com";
    out += Map({{"node_count", Uint32(node_count)},
                {"record_size", Uint16(24)},
                {"ip_version", Uint16(4)},
                {"database_type", String(database_type)},
                {"languages", Array({String("en")})},
                {"binary_format_major_version", Uint16(2)},
                {"binary_format_minor_version", Uint16(0)},
                {"build_epoch", Uint64(1700000000)},
                {"description", Map({{"en", String("minpanel test")}})}});
    return out;
  }

 private:
  enum class SlotKind : uint8_t { kEmpty, kNode, kData };
  struct Slot {
    SlotKind kind = SlotKind::kEmpty;
    uint32_t value = 0;
  };
  std::vector<std::array<Slot, 2>> nodes_ = {{}};
  std::string data_;
};

std::string Names(std::string_view english) {
  return MmdbWriter::Map({{"names", MmdbWriter::Map({{"en", MmdbWriter::String(english)}})}});
}

// 8.0.0.0/8 → Sweden, Stockholm County, Stockholm; 9.0.0.0/8 has only a
// registered country; 11.0.0.0/8 has a malformed country code.
std::string MaxMindLayoutFile(std::string_view database_type) {
  MmdbWriter writer;
  writer.Add(0x08000000, 8,
             MmdbWriter::Map(
                 {{"city", Names("Stockholm")},
                  {"country", MmdbWriter::Map({{"iso_code", MmdbWriter::String("SE")}})},
                  {"subdivisions", MmdbWriter::Array({Names("Stockholm County")})}}));
  writer.Add(0x09000000, 8,
             MmdbWriter::Map({{"registered_country",
                               MmdbWriter::Map({{"iso_code", MmdbWriter::String("DE")}})}}));
  writer.Add(0x0B000000, 8,
             MmdbWriter::Map({{"country", MmdbWriter::Map({{"iso_code", MmdbWriter::String(
                                                                            "Sweden")}})}}));
  return writer.Build(database_type);
}

TEST(GeoDatabaseLayoutTest, MaxMindNestedLayoutIsRead) {
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/GeoLite2-City.mmdb";
  WriteFile(path, MaxMindLayoutFile("GeoLite2-City"));
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const GeoDatabase& database = **opened;

  const GeoLocation stockholm{"SE", "Stockholm County", "Stockholm"};
  EXPECT_EQ(database.Lookup("8.1.2.3", GeoPrecision::kCity), stockholm);
  EXPECT_EQ(database.Lookup("8.1.2.3", GeoPrecision::kRegion),
            (GeoLocation{"SE", "Stockholm County", ""}));
  EXPECT_EQ(database.Lookup("9.9.9.9", GeoPrecision::kCity), (GeoLocation{"DE", "", ""}));
  EXPECT_EQ(database.Lookup("11.0.0.1", GeoPrecision::kCity), std::nullopt);
  EXPECT_EQ(database.Lookup("12.0.0.1", GeoPrecision::kCity), std::nullopt);
  EXPECT_EQ(database.Lookup("2a00:1450::1", GeoPrecision::kCity), std::nullopt);
  EXPECT_EQ(database.attribution(), kGeoLite2Attribution);
}

TEST(GeoDatabaseLayoutTest, FlatLayoutDropsTheDistrict) {
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  MmdbWriter writer;
  writer.Add(0x08000000, 8,
             MmdbWriter::Map({{"country_code", MmdbWriter::String("NL")},
                              {"state1", MmdbWriter::String("North Holland")},
                              {"state2", MmdbWriter::String("")},
                              {"city", MmdbWriter::String("Amsterdam (Amsterdam-Centrum)")}}));
  const std::string path = folder.path() + "/city.mmdb";
  WriteFile(path, writer.Build("city ipv4"));
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ((*opened)->Lookup("8.8.8.8", GeoPrecision::kCity),
            (GeoLocation{"NL", "North Holland", "Amsterdam"}));
  EXPECT_EQ((*opened)->attribution(), kDbIpAttribution);
}

// ip-location-db's repackaging of GeoLite2 says what it is only in its name.
TEST(GeoDatabaseLayoutTest, GeoLite2FileNameGivesMaxMindAttribution) {
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/geolite2-city-ipv4.mmdb";
  WriteFile(path, MaxMindLayoutFile("city ipv4"));
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ((*opened)->attribution(), kGeoLite2Attribution);
}

TEST(GeoDatabaseOpenTest, MissingFileIsNotFoundAndNamesThePath) {
  const Result<std::unique_ptr<GeoDatabase>> opened =
      GeoDatabase::Open({"/nonexistent/minpanel/geo.mmdb"});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kNotFound);
  EXPECT_NE(opened.status().message().find("/nonexistent/minpanel/geo.mmdb"), std::string::npos);
  EXPECT_NE(opened.status().message().find("scripts/setup-geoip.sh"), std::string::npos);
}

TEST(GeoDatabaseOpenTest, NoFilesOrTooManyIsInvalidArgument) {
  EXPECT_EQ(GeoDatabase::Open({}).status().code(), StatusCode::kInvalidArgument);
  const std::vector<std::string> too_many(kGeoFilesMax + 1, "/nonexistent.mmdb");
  EXPECT_EQ(GeoDatabase::Open(too_many).status().code(), StatusCode::kInvalidArgument);
}

TEST(GeoDatabaseOpenTest, GarbageFileIsCorruptionAndNamesThePath) {
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/garbage.mmdb";
  WriteFile(path, std::string(4096, 'x'));
  const Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kCorruption);
  EXPECT_NE(opened.status().message().find(path), std::string::npos);
}

// The metadata sits at the end of an MMDB file, so a truncated download
// (the first megabyte of the real file) must be refused, not half-used.
TEST(GeoDatabaseOpenTest, TruncatedFileIsCorruption) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/truncated.mmdb";
  WriteFile(path, ReadPrefix(Ipv4Path(), 1 << 20));
  EXPECT_EQ(GeoDatabase::Open({path}).status().code(), StatusCode::kCorruption);
}

TEST(GeoDatabaseOpenTest, OneMissingFileAmongSeveralFailsTheOpen) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  const Result<std::unique_ptr<GeoDatabase>> opened =
      GeoDatabase::Open({Ipv4Path(), "/nonexistent/ipv6.mmdb"});
  EXPECT_EQ(opened.status().code(), StatusCode::kNotFound);
}

TEST(GeoDatabaseReloadTest, ReplacedFileIsPickedUpAndAFailedReloadKeepsTheOldMapping) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/city.mmdb";
  ReplaceWithLink(path, Ipv4Path());
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  GeoDatabase& database = **opened;
  EXPECT_TRUE(database.Lookup("8.8.8.8", GeoPrecision::kCountry).has_value());
  EXPECT_FALSE(database.Lookup("2001:67c:2e8:22::c100:68b", GeoPrecision::kCountry).has_value());

  // Unchanged: nothing to do.
  EXPECT_TRUE(database.ReloadIfChanged().ok());
  EXPECT_TRUE(database.Lookup("8.8.8.8", GeoPrecision::kCountry).has_value());

  // Replaced by the IPv6 file, which holds no IPv4 ranges: the answers change.
  ReplaceWithLink(path, Ipv6Path());
  ASSERT_TRUE(database.ReloadIfChanged().ok());
  EXPECT_FALSE(database.Lookup("8.8.8.8", GeoPrecision::kCountry).has_value());
  EXPECT_EQ(database.Lookup("2001:67c:2e8:22::c100:68b", GeoPrecision::kCountry)->country_code,
            "NL");

  // Replaced by a truncated file: the reload fails, says why, and the IPv6
  // mapping stays in use.
  const std::string truncated = folder.path() + "/truncated.mmdb";
  WriteFile(truncated, ReadPrefix(Ipv4Path(), 1 << 20));
  fs::rename(truncated, path);
  const Status corrupt = database.ReloadIfChanged();
  EXPECT_EQ(corrupt.code(), StatusCode::kCorruption);
  EXPECT_NE(corrupt.message().find(path), std::string::npos);
  EXPECT_EQ(database.Lookup("2001:67c:2e8:22::c100:68b", GeoPrecision::kCountry)->country_code,
            "NL");

  // Removed: NotFound, and still the IPv6 mapping.
  fs::remove(path);
  EXPECT_EQ(database.ReloadIfChanged().code(), StatusCode::kNotFound);
  EXPECT_TRUE(database.Lookup("2001:67c:2e8:22::c100:68b", GeoPrecision::kCountry).has_value());

  // Back again: the next check recovers.
  ReplaceWithLink(path, Ipv4Path());
  ASSERT_TRUE(database.ReloadIfChanged().ok());
  EXPECT_EQ(database.Lookup("8.8.8.8", GeoPrecision::kCountry)->country_code, "US");
}

// Each thread caches recent answers; two databases open at once in one
// thread must never answer from each other's entries.
TEST(GeoDatabaseReloadTest, TwoDatabasesInOneThreadKeepTheirOwnAnswers) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  Result<std::unique_ptr<GeoDatabase>> ipv4 = GeoDatabase::Open({Ipv4Path()});
  Result<std::unique_ptr<GeoDatabase>> ipv6 = GeoDatabase::Open({Ipv6Path()});
  ASSERT_TRUE(ipv4.ok() && ipv6.ok());
  for (int round = 0; round < 3; ++round) {
    EXPECT_EQ((*ipv4)->Lookup("8.8.8.8", GeoPrecision::kCountry)->country_code, "US");
    EXPECT_FALSE((*ipv6)->Lookup("8.8.8.8", GeoPrecision::kCountry).has_value());
    // The same address at another precision is another entry.
    EXPECT_TRUE((*ipv4)->Lookup("8.8.8.8", GeoPrecision::kCity).has_value());
    EXPECT_EQ((*ipv4)->Lookup("8.8.8.8", GeoPrecision::kCountry)->region, "");
  }
}

// An answer that holds for a whole /24 (/48) is cached for the block and
// serves its neighbours: every answer must equal the one a fresh thread (an
// empty cache) gets for that address alone.
TEST(GeoDatabaseCacheTest, BlockAnswersEqualUncachedAnswers) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open(DefaultGeoDatabasePaths(RepoRoot()));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const GeoDatabase& database = **opened;
  std::vector<std::string> addresses;
  for (const char* network : {"81.2", "151.101", "200.160", "41.203", "8.8"}) {
    for (int step = 0; step < 65536; step += 251) {
      addresses.push_back(std::string(network) + "." + std::to_string(step >> 8) + "." +
                          std::to_string(step & 0xFF));
    }
  }
  for (int host = 1; host < 200; host += 7) {
    addresses.push_back("2a00:1450:4001:80b::" + std::to_string(host));
    addresses.push_back("2001:67c:2e8:" + std::to_string(host) + "::1");
  }
  for (const GeoPrecision precision : {GeoPrecision::kCity, GeoPrecision::kCountry}) {
    for (int pass = 0; pass < 2; ++pass) {
      for (const std::string& address : addresses) {
        std::optional<GeoLocation> cached = database.Lookup(address, precision);
        std::optional<GeoLocation> fresh;
        std::thread([&] { fresh = database.Lookup(address, precision); }).join();
        ASSERT_EQ(cached, fresh) << address;
      }
    }
  }
}

// The lookup as geo.cc made it before its record reading and its cache were
// made faster: libmaxminddb alone, one MMDB_aget_value per field (the layout
// test first, then the country again), no cache. The oracle for
// FasterLookupAnswersAsTheReferenceDoes.
class ReferenceGeo {
 public:
  explicit ReferenceGeo(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) {
      files_.emplace_back();
      opened_ = opened_ && MMDB_open(path.c_str(), MMDB_MODE_MMAP, &files_.back()) == MMDB_SUCCESS;
    }
  }
  ~ReferenceGeo() {
    for (MMDB_s& file : files_) {
      MMDB_close(&file);
    }
  }
  ReferenceGeo(const ReferenceGeo&) = delete;
  ReferenceGeo& operator=(const ReferenceGeo&) = delete;

  bool opened() const { return opened_; }

  // For public addresses only (the caller makes sure); not IPv4-mapped IPv6.
  std::optional<GeoLocation> Lookup(const std::string& ip, GeoPrecision precision) {
    for (MMDB_s& file : files_) {
      int address_error = 0;
      int mmdb_error = MMDB_SUCCESS;
      MMDB_lookup_result_s result = MMDB_lookup_string(&file, ip.c_str(), &address_error,
                                                       &mmdb_error);
      if (address_error != 0) {
        return std::nullopt;
      }
      if (mmdb_error != MMDB_SUCCESS || !result.found_entry) {
        continue;  // an IPv6 address and an IPv4-only file, or not in this file
      }
      return Read(&result.entry, precision);
    }
    return std::nullopt;
  }

 private:
  static std::string ReadString(MMDB_entry_s* entry, std::vector<const char*> path) {
    path.push_back(nullptr);
    MMDB_entry_data_s data{};
    if (MMDB_aget_value(entry, &data, path.data()) != MMDB_SUCCESS || !data.has_data ||
        data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size > kGeoFieldBytesMax) {
      return {};
    }
    return std::string(data.utf8_string, data.data_size);
  }

  static std::string WithoutDistrict(std::string city) {
    const size_t open = city.rfind(" (");
    if (open != std::string::npos && city.ends_with(')')) {
      city.resize(open);
    }
    return city;
  }

  static std::optional<GeoLocation> Read(MMDB_entry_s* entry, GeoPrecision precision) {
    const char* flat_country[] = {"country_code", nullptr};
    MMDB_entry_data_s data{};
    const bool flat = MMDB_aget_value(entry, &data, flat_country) == MMDB_SUCCESS && data.has_data;
    GeoLocation location;
    if (flat) {
      location.country_code = ReadString(entry, {"country_code"});
      if (precision >= GeoPrecision::kRegion) {
        location.region = ReadString(entry, {"state1"});
      }
      if (precision >= GeoPrecision::kCity) {
        location.city = WithoutDistrict(ReadString(entry, {"city"}));
      }
    } else {
      location.country_code = ReadString(entry, {"country", "iso_code"});
      if (location.country_code.empty()) {
        location.country_code = ReadString(entry, {"registered_country", "iso_code"});
      }
      if (precision >= GeoPrecision::kRegion) {
        location.region = ReadString(entry, {"subdivisions", "0", "names", "en"});
      }
      if (precision >= GeoPrecision::kCity) {
        location.city = WithoutDistrict(ReadString(entry, {"city", "names", "en"}));
      }
    }
    const std::string& code = location.country_code;
    if (code.size() != 2 || code[0] < 'A' || code[0] > 'Z' || code[1] < 'A' || code[1] > 'Z') {
      return std::nullopt;
    }
    return location;
  }

  std::vector<MMDB_s> files_;
  bool opened_ = true;
};

// Public addresses all over the IPv4 space (an odd multiplier permutes the
// /24 blocks; the /8s that hold special-purpose ranges are left out), with a
// few neighbours in the same block for some, and IPv6 addresses in networks
// of several registries. More blocks than the per-thread cache holds.
std::vector<std::string> ManyPublicAddresses() {
  std::vector<std::string> addresses;
  uint32_t random = 0x2545f491;
  const auto next = [&random] {
    random ^= random << 13;
    random ^= random >> 17;
    random ^= random << 5;
    return random;
  };
  uint32_t block_idx = 0;
  while (addresses.size() < 30'000) {
    const uint32_t block = (block_idx++ * 2654435761u) & 0xFFFFFF;
    const uint32_t first = block >> 16;
    if (first == 0 || first > 223 || first == 10 || first == 100 || first == 127 ||
        first == 169 || first == 172 || first == 192 || first == 198) {
      continue;
    }
    const std::string prefix = std::to_string(first) + "." + std::to_string((block >> 8) & 0xFF) +
                               "." + std::to_string(block & 0xFF) + ".";
    const int neighbours = block_idx % 8 == 0 ? 4 : 1;
    for (int host_idx = 0; host_idx < neighbours; ++host_idx) {
      addresses.push_back(prefix + std::to_string(1 + next() % 254));
    }
  }
  for (const char* network : {"2001:4860", "2a00:1450", "2400:cb00", "2600:1f18", "2a03:2880",
                              "2c0f:fb50", "2804:14c", "2406:da00", "2a02:26f0", "2620:0"}) {
    for (int address_idx = 0; address_idx < 300; ++address_idx) {
      char text[64];
      std::snprintf(text, sizeof(text), "%s:%x:%x::%x", network, next() % 0x10000,
                    next() % 0x10000, 1 + next() % 0xFFFF);
      addresses.push_back(text);
    }
  }
  return addresses;
}

// The faster record reading and the larger cache give exactly the answers of
// the reference, over tens of thousands of addresses of the real database,
// at every precision, fresh and cached, in an order that evicts entries.
TEST(GeoDatabaseCacheTest, FasterLookupAnswersAsTheReferenceDoes) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  const std::vector<std::string> paths = DefaultGeoDatabasePaths(RepoRoot());
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open(paths);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ReferenceGeo reference(paths);
  ASSERT_TRUE(reference.opened());
  const std::vector<std::string> addresses = ManyPublicAddresses();
  size_t found = 0;
  size_t compared = 0;
  for (const GeoPrecision precision :
       {GeoPrecision::kCity, GeoPrecision::kCountry, GeoPrecision::kRegion}) {
    for (int pass = 0; pass < 2; ++pass) {
      for (const std::string& address : addresses) {
        const std::optional<GeoLocation> expected = reference.Lookup(address, precision);
        ASSERT_EQ((*opened)->Lookup(address, precision), expected) << address;
        found += expected.has_value() ? 1 : 0;
        ++compared;
      }
    }
  }
  // Most public addresses are located; the comparison is not one of nothings.
  EXPECT_GT(found, compared * 3 / 4) << found << " of " << compared;
}

// The same on the MaxMind layout (nested records, a registered country only,
// a malformed country, an address no record holds).
TEST(GeoDatabaseLayoutTest, NestedLayoutAnswersAsTheReferenceDoes) {
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/GeoLite2-City.mmdb";
  WriteFile(path, MaxMindLayoutFile("GeoLite2-City"));
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ReferenceGeo reference({path});
  ASSERT_TRUE(reference.opened());
  for (const GeoPrecision precision :
       {GeoPrecision::kCity, GeoPrecision::kRegion, GeoPrecision::kCountry}) {
    for (const char* address : {"8.1.2.3", "8.200.0.1", "9.9.9.9", "11.0.0.1", "12.0.0.1"}) {
      EXPECT_EQ((*opened)->Lookup(address, precision), reference.Lookup(address, precision))
          << address;
    }
  }
}

// Lookups on other threads while the file flips between two databases must
// each see one whole mapping: 8.8.8.8 is either US (IPv4 file) or unknown
// (IPv6 file), never anything else and never a crash.
TEST(GeoDatabaseReloadTest, LookupsDuringReloadsSeeOneWholeMapping) {
  ASSERT_NO_FATAL_FAILURE(ExpectDatabaseInstalled());
  TempFolder folder;
  ASSERT_FALSE(folder.path().empty());
  const std::string path = folder.path() + "/city.mmdb";
  ReplaceWithLink(path, Ipv4Path());
  Result<std::unique_ptr<GeoDatabase>> opened = GeoDatabase::Open({path});
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  GeoDatabase& database = **opened;

  constexpr int kReloads = 20;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> unexpected{0};
  std::atomic<uint64_t> lookups{0};
  std::thread reader([&] {
    while (!done.load()) {
      const std::optional<GeoLocation> location =
          database.Lookup("8.8.8.8", GeoPrecision::kCity);
      if (location.has_value() && location->country_code != "US") {
        unexpected.fetch_add(1);
      }
      lookups.fetch_add(1);
    }
  });
  for (int reload_idx = 0; reload_idx < kReloads; ++reload_idx) {
    // Each reload waits for a lookup since the last one, so that lookups
    // interleave with the reloads even when a loaded machine is slow to
    // schedule the reader (it then did none at all, and the test failed).
    const uint64_t seen = lookups.load();
    while (lookups.load() == seen) {
      std::this_thread::yield();
    }
    ReplaceWithLink(path, reload_idx % 2 == 0 ? Ipv6Path() : Ipv4Path());
    EXPECT_TRUE(database.ReloadIfChanged().ok());
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(unexpected.load(), 0u);
  EXPECT_GT(lookups.load(), 0u);
}

}  // namespace
}  // namespace minpanel::privacy
