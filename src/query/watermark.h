// Export watermarks (issue 6; docs/security.md, "Watermarked exports"): each
// raw export of a time range carries synthetic decoy subjects unique to it,
// shaped like its real rows, so that a leaked copy — or a fragment of one
// that holds a decoy row — names the export it came from.
//
// A decoy is recognisable only with the project's watermark key (derived
// from its pseudonym key, so kept with the pseudonym keys, outside the data
// folder): a decoy subject's or insert id's low 64 bits are a keyed hash of
// its high 64 bits, and its high 64 bits a keyed hash of the export's nonce
// and the decoy's number. The export's audit record keeps the nonce; a
// tracer recomputes the decoys of every watermarked export and looks them up
// in the leaked rows.
//
// Functions are pure; a DecoyMixer belongs to one export (one thread).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <random>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/core.h"

namespace minpanel::query {

inline constexpr size_t kWatermarkKeyBytes = 32;
// Decoy rows an export carries per 1,000 real rows, about (the decoys'
// rows per subject follow the real subjects').
inline constexpr uint64_t kDecoyRowsPerMille = 20;
// Decoy subjects per export: at least, and at most (which bounds what a
// tracer recomputes per export).
inline constexpr uint64_t kDecoySubjectsMin = 3;
inline constexpr uint64_t kDecoySubjectsMax = 1000;
// Real rows held back at the start of an export to model the decoys on
// (names, property keys, values, times and rows per subject).
inline constexpr size_t kDecoyPoolRows = 1024;
inline constexpr uint64_t kDecoyRowsPerSubjectMax = 200;

using WatermarkKey = std::array<uint8_t, kWatermarkKeyBytes>;

// The watermark key of a project, from its pseudonym key (one-way: the
// watermark key does not give the pseudonym key away).
WatermarkKey DeriveWatermarkKey(const std::array<uint8_t, 32>& pseudonym_key);

struct ExportWatermark {
  WatermarkKey key{};
  Id128 nonce;  // unique to the export, kept in its audit record
};

// The subject of decoy `decoy_idx` of the export with `nonce`, and the
// insert id of its row `row_idx`.
Id128 DecoySubject(const WatermarkKey& key, const Id128& nonce, uint64_t decoy_idx);
Id128 DecoyInsertId(const WatermarkKey& key, const Id128& nonce, uint64_t decoy_idx,
                    uint64_t row_idx);
// Whether `id` is a decoy subject (or a decoy insert id) made with `key`.
// A real pseudonym passes by chance with probability 2^-64.
bool IsDecoySubject(const WatermarkKey& key, const Id128& id);
bool IsDecoyInsertId(const WatermarkKey& key, const Id128& id);

// Reading a leaked file (`minpanel audit trace`; fuzz/trace_fuzz.cc): every
// run of exactly 32 hex digits in `text`, either case, wherever it stands
// ("psn_" + 32 hex digits included), is a candidate decoy subject or insert
// id, so the file's format does not matter and a fragment with columns
// removed, reordered or renamed still traces while one id column survives.
// A longer or shorter run is none. Linear in text.size(); at most
// text.size() / 32 ids.
std::unordered_set<Id128, Id128Hash> LeakedIds(std::string_view text);

// An export's watermark as its audit records keep it: "<nonce hex>"
// (export.start) or "<nonce hex>:<decoy subjects>" (export). Sets `nonce`,
// and `decoys` (capped at kDecoySubjectsMax) when the count is there; false
// when `text` does not start with 32 hex digits.
bool ParseWatermarkField(std::string_view text, Id128* nonce, uint64_t* decoys);

// How many decoy subjects an export of about `rows_expected` real rows
// carries, when its real subjects have `rows_per_subject` rows on average.
uint64_t DecoySubjectCount(uint64_t rows_expected, double rows_per_subject);

// Mixes the decoys of one export into its stream of real events, which
// come in export order (runs sorted by subject). The first kDecoyPoolRows
// real events are held back; from them the decoys are made: each decoy's
// row count is a real subject's, each row copies the name and time of a
// real row and takes each of that row's property keys with the value of
// another real row of the same name. Each decoy is handed to `emit` just
// before the first real event whose subject sorts after it, so the decoys
// sit where their subject ids place them; the rest come at the end.
class DecoyMixer {
 public:
  // Takes each row in export order; `decoy` says whether it is one of the
  // decoys' rows (which an export's row limit does not count) or a real
  // event. Returns false to stop the export.
  using Emit = std::function<bool(const Event& event, bool decoy)>;
  DecoyMixer(const ExportWatermark& watermark, uint64_t rows_expected, Emit emit);
  // A real event; false once `emit` said stop.
  bool Add(const Event& event);
  // Hands over what is held back and the decoys not yet placed.
  bool Finish();
  uint64_t decoy_subjects() const { return decoys_.size(); }
  uint64_t decoy_rows() const { return decoy_rows_; }

 private:
  struct Decoy {
    Id128 subject;
    uint64_t index = 0;
    uint64_t rows = 0;
  };
  void MakeDecoys();
  bool Pass(const Event& event);
  bool EmitDecoy(const Decoy& decoy);

  ExportWatermark watermark_;
  uint64_t rows_expected_;
  Emit emit_;
  std::vector<Event> pool_;
  bool primed_ = false;
  std::vector<Decoy> decoys_;  // sorted by subject
  size_t next_decoy_ = 0;
  uint64_t decoy_rows_ = 0;
  bool open_ = true;
};

}  // namespace minpanel::query
