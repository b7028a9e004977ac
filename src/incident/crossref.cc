// The cross-reference: leaked rows to accounts (user id, email, canonical
// email) and organisations, the categories each account lost, and the
// operator's timeline with the GDPR deadline.
#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <iterator>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "incident/huge_pages.h"
#include "incident/incident.h"

namespace minpanel::incident {

void Impact::Warn(std::string file, uint64_t line, std::string message) {
  if (warnings.size() >= kWarningsListedMax) {
    ++warnings_not_listed;
    return;
  }
  warnings.push_back({std::move(file), line, std::move(message)});
}

std::string_view MatchMethodName(MatchMethod method) {
  switch (method) {
    case MatchMethod::kUserId:
      return "user_id";
    case MatchMethod::kEmail:
      return "email";
    case MatchMethod::kEmailPlusAddress:
      return "email_plus_address";
    case MatchMethod::kEmailGmailDots:
      return "email_gmail_dots";
    case MatchMethod::kOrgId:
      return "org_id";
  }
  return "user_id";
}

namespace {

constexpr uint32_t Bit(MatchMethod method) { return 1u << static_cast<uint32_t>(method); }
constexpr uint32_t Bit(Category category) { return 1u << static_cast<uint32_t>(category); }
constexpr uint32_t kNoAccount = UINT32_MAX;
// How many rows ahead of the one being matched its look-ups are prepared.
constexpr size_t kPrefetchRows = 16;
// How many rows ahead Apply starts bringing in the affected account a
// leaked row adds to.
constexpr size_t kApplyPrefetchRows = 8;

// The local part without its "+tag" (no Gmail rule): tells a plus-address
// match from a Gmail-dots one.
std::string StripPlus(std::string_view normalized) {
  const size_t at = normalized.rfind('@');
  const size_t plus = normalized.find('+');
  if (at == std::string_view::npos || plus == std::string_view::npos || plus == 0 || plus > at) {
    return std::string(normalized);
  }
  return std::string(normalized.substr(0, plus)) + std::string(normalized.substr(at));
}

std::string_view FirstCell(const Table& table, size_t row, const std::vector<size_t>& columns) {
  for (const size_t column : columns) {
    const std::string_view value = table.Cell(row, column);
    if (!value.empty()) {
      return value;
    }
  }
  return {};
}

// Case-insensitive (ASCII) search for a lower-case `needle`, without
// copying the text: it runs once per account row.
bool ContainsFolded(std::string_view text, std::string_view needle) {
  if (text.size() < needle.size()) {
    return false;
  }
  for (size_t start = 0; start + needle.size() <= text.size(); ++start) {
    size_t matched = 0;
    while (matched < needle.size() &&
           std::tolower(static_cast<unsigned char>(text[start + matched])) == needle[matched]) {
      ++matched;
    }
    if (matched == needle.size()) {
      return true;
    }
  }
  return false;
}

bool EqualsFolded(std::string_view text, std::string_view lower) {
  return text.size() == lower.size() && ContainsFolded(text, lower);
}

bool IsAdminRole(std::string_view role) {
  return ContainsFolded(role, "admin") || ContainsFolded(role, "owner") ||
         EqualsFolded(role, "true") || EqualsFolded(role, "1") || EqualsFolded(role, "yes");
}

// Hashing for maps keyed by std::string that are looked up by string_view
// (heterogeneous look-up): no string is made to find a key.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
template <typename Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

// Account rows found by a string each row has (its user id, normalised or
// canonical email): open addressing, linear probing, 8 bytes a slot (32 bits
// of the key's hash and the row), at most half full. The keys stay where
// they are (the accounts table, the index's email arena): a slot whose hash
// bits match is checked against its row's key, so a hash collision never
// matches. 10M accounts take 128 MiB a table, where a map of strings took
// over a gigabyte.
class RowHash {
 public:
  void Reserve(size_t count) {
    size_t slots = 16;
    while (slots < 2 * count) {
      slots *= 2;
    }
    AssignHuge(&slots_, slots, uint64_t{0});
    mask_ = slots - 1;
    count_ = 0;
  }
  static uint64_t Hash(std::string_view key) { return std::hash<std::string_view>{}(key); }
  // Brings the first slot of `hash` towards the cache: the look-ups of a
  // chunk's rows are asked for some rows ahead, so their misses overlap.
  void Prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & mask_]); }
  // The row in the first slot of `hash` when its tag matches, else
  // kNoAccount: the likely answer, for prefetching its key.
  uint32_t Likely(uint64_t hash) const {
    const uint64_t entry = slots_[hash & mask_];
    return entry != 0 && (entry >> 32) == (hash >> 32) ? static_cast<uint32_t>(entry) - 1
                                                       : kNoAccount;
  }
  // The row whose key is `key`, or kNoAccount.
  template <typename KeyOf>
  uint32_t Find(std::string_view key, const KeyOf& key_of) const {
    return FindHashed(key, Hash(key), key_of);
  }
  // Find, with the key's Hash already made.
  template <typename KeyOf>
  uint32_t FindHashed(std::string_view key, uint64_t hash, const KeyOf& key_of) const {
    const uint64_t tag = hash >> 32;
    for (uint64_t slot = hash & mask_;; slot = (slot + 1) & mask_) {
      const uint64_t entry = slots_[slot];
      if (entry == 0) {
        return kNoAccount;
      }
      const uint32_t row = static_cast<uint32_t>(entry) - 1;
      if ((entry >> 32) == tag && key_of(row) == key) {
        return row;
      }
    }
  }
  // Adds `row` under `key` (whose Hash is `hash`) unless a row has that key
  // already: returns that row, or kNoAccount once added. At most Reserve's
  // count rows.
  template <typename KeyOf>
  uint32_t InsertHashed(std::string_view key, uint64_t hash, uint32_t row, const KeyOf& key_of) {
    const uint64_t tag = hash >> 32;
    for (uint64_t slot = hash & mask_;; slot = (slot + 1) & mask_) {
      const uint64_t entry = slots_[slot];
      if (entry == 0) {
        slots_[slot] = (tag << 32) | (uint64_t{row} + 1);
        ++count_;
        return kNoAccount;
      }
      const uint32_t other = static_cast<uint32_t>(entry) - 1;
      if ((entry >> 32) == tag && key_of(other) == key) {
        return other;
      }
    }
  }
  // InsertHashed for a set whose size is not known ahead (the
  // organisations): the table doubles, every key hashed again through
  // `key_of`, before it would be over half full. Reserve first.
  template <typename KeyOf>
  uint32_t InsertGrowing(std::string_view key, uint64_t hash, uint32_t row, const KeyOf& key_of) {
    if (2 * (count_ + 1) > slots_.size()) {
      std::vector<uint64_t> old_slots(2 * slots_.size(), 0);
      old_slots.swap(slots_);
      mask_ = slots_.size() - 1;
      for (const uint64_t entry : old_slots) {
        if (entry == 0) {
          continue;
        }
        uint64_t slot = Hash(key_of(static_cast<uint32_t>(entry) - 1)) & mask_;
        while (slots_[slot] != 0) {
          slot = (slot + 1) & mask_;
        }
        slots_[slot] = entry;
      }
    }
    return InsertHashed(key, hash, row, key_of);
  }

 private:
  std::vector<uint64_t> slots_;  // (hash >> 32) << 32 | (row + 1); 0: empty
  uint64_t mask_ = 0;
  size_t count_ = 0;  // rows added
};

struct AccountIndex {
  const Table* accounts = nullptr;
  size_t user_column = SIZE_MAX;  // the accounts' first user id column
  RowHash by_user_id;
  RowHash by_email;
  // The first account of each canonical email; the others that share it
  // (rare: "ann@x" and "ann+work@x") in `canonical_others`, by first account.
  RowHash by_canonical;
  std::unordered_map<uint32_t, std::vector<uint32_t>> canonical_others;
  // Each account's normalised email in one arena: offset << 24 | length
  // (an email is far below 16 MiB: a row is at most kRowBytesMax); 0 and
  // "" when it has none.
  std::string email_arena;
  std::vector<uint64_t> email_at;

  std::string_view UserId(uint32_t row) const { return accounts->Cell(row, user_column); }
  std::string_view NormalizedEmail(uint32_t row) const {
    const uint64_t at = email_at[row];
    return std::string_view(email_arena).substr(at >> 24, at & 0xFFFFFF);
  }
  uint32_t FindUserId(std::string_view user_id) const {
    if (user_column == SIZE_MAX) {
      return kNoAccount;
    }
    return by_user_id.Find(user_id, [this](uint32_t row) { return UserId(row); });
  }
  uint32_t FindEmail(std::string_view normalized) const {
    return by_email.Find(normalized, [this](uint32_t row) { return NormalizedEmail(row); });
  }
  uint32_t FindCanonical(std::string_view canonical) const {
    return by_canonical.Find(canonical, [this](uint32_t row) {
      return CanonicalizeEmail(NormalizedEmail(row)).address;
    });
  }
};

// The warnings one indexing thread finds, said (Impact::Warn) in file order
// once both threads are done: each keeps its first kWarningsListedMax (no
// later one of its own can be listed before them) and counts the rest.
struct IndexWarnings {
  struct Pending {
    uint32_t row = 0;
    std::string message;
  };
  std::vector<Pending> listed;
  uint64_t not_listed = 0;

  void Add(size_t row, std::string message) {
    if (listed.size() >= kWarningsListedMax) {
      ++not_listed;
      return;
    }
    listed.push_back({static_cast<uint32_t>(row), std::move(message)});
  }
};

// The user id thread's and the email thread's warnings, in the order one
// thread indexing the rows in file order would have said them: by row, a
// row's user id warning before its email's.
void WarnInFileOrder(const Table& accounts, const IndexWarnings& user_ids,
                     const IndexWarnings& emails, Impact* impact) {
  size_t user_idx = 0;
  size_t email_idx = 0;
  while (user_idx < user_ids.listed.size() || email_idx < emails.listed.size()) {
    const bool user_first =
        email_idx == emails.listed.size() ||
        (user_idx < user_ids.listed.size() &&
         user_ids.listed[user_idx].row <= emails.listed[email_idx].row);
    const IndexWarnings::Pending& pending =
        user_first ? user_ids.listed[user_idx++] : emails.listed[email_idx++];
    impact->Warn("accounts", accounts.Line(pending.row), pending.message);
  }
  impact->warnings_not_listed += user_ids.not_listed + emails.not_listed;
}

// Calls add(row, cell, hash) for each row of `table` whose cell in
// `column` is not empty, in file order, the cell hashed and its slot in
// `hashes` prefetched kPrefetchRows rows before, so that the table's
// cache misses overlap. `add` may grow `hashes` (a prefetch made before
// is then wasted, nothing worse).
template <typename Add>
void ForEachCellPrefetched(const Table& table, size_t column, const RowHash& hashes,
                           const Add& add) {
  struct Prepared {
    std::string_view cell;
    uint64_t hash = 0;
  };
  std::array<Prepared, kPrefetchRows> ring;
  const size_t rows = table.row_count();
  const auto prepare = [&](size_t row, Prepared* prepared) {
    prepared->cell = table.Cell(row, column);
    if (!prepared->cell.empty()) {
      prepared->hash = RowHash::Hash(prepared->cell);
      hashes.Prefetch(prepared->hash);
    }
  };
  for (size_t ahead = 0; ahead < std::min(rows, kPrefetchRows); ++ahead) {
    prepare(ahead, &ring[ahead]);
  }
  for (size_t row = 0; row < rows; ++row) {
    Prepared& prepared = ring[row % kPrefetchRows];
    if (!prepared.cell.empty()) {
      add(row, prepared.cell, prepared.hash);
    }
    if (row + kPrefetchRows < rows) {
      prepare(row + kPrefetchRows, &prepared);
    }
  }
}

void IndexUserIds(const Table& accounts, AccountIndex* index, IndexWarnings* warnings) {
  if (index->user_column == SIZE_MAX) {
    return;
  }
  const auto user_id_of = [index](uint32_t row) { return index->UserId(row); };
  ForEachCellPrefetched(
      accounts, index->user_column, index->by_user_id,
      [&](size_t row, std::string_view user_id, uint64_t hash) {
        if (index->by_user_id.InsertHashed(user_id, hash, static_cast<uint32_t>(row),
                                           user_id_of) != kNoAccount) {
          warnings->Add(row, "duplicate user id (the first account with it is used)");
        }
      });
}

// An account row's email keys: its first email cell normalised (or why it
// cannot be), hashed, and canonicalised, hashed.
struct EmailKeys {
  std::string_view email;  // the row's first email cell
  Status normalized_status;
  std::string normalized;  // reused: no allocation per account
  uint64_t email_hash = 0;
  CanonicalEmail canonical;  // reused too
  uint64_t canonical_hash = 0;
};

void MakeEmailKeys(const Table& accounts, size_t row, const std::vector<size_t>& email_columns,
                   EmailKeys* keys) {
  keys->email = FirstCell(accounts, row, email_columns);
  if (keys->email.empty()) {
    return;
  }
  keys->normalized_status = NormalizeEmailTo(keys->email, &keys->normalized);
  if (!keys->normalized_status.ok()) {
    return;
  }
  keys->email_hash = RowHash::Hash(keys->normalized);
  CanonicalizeEmailTo(keys->normalized, &keys->canonical);
  keys->canonical_hash = RowHash::Hash(keys->canonical.address);
}

// The email keys of a block of rows, made by the user id thread once its
// own table is done (EmailBlocks), kept until the email thread adds them.
struct MadeEmailKeys {
  enum State : uint8_t { kNone, kOk, kFailed };
  struct Row {
    uint64_t email_hash = 0;
    uint64_t canonical_hash = 0;
    uint64_t text_at = 0;  // the normalised email, then the canonical one, in `text`
    uint32_t normalized_bytes = 0;
    uint32_t canonical_bytes = 0;
    State state = kNone;
  };
  std::vector<Row> rows;
  std::string text;
  std::vector<std::string> failures;  // the kFailed rows' messages, in row order

  std::string_view Normalized(const Row& row) const {
    return std::string_view(text).substr(row.text_at, row.normalized_bytes);
  }
  std::string_view Canonical(const Row& row) const {
    return std::string_view(text).substr(row.text_at + row.normalized_bytes, row.canonical_bytes);
  }
};

// The accounts' rows in blocks, for the emails' index: the email thread
// takes them from the front, making each row's keys and adding them in file
// order; the user id thread, once its own table is done, takes blocks from
// the back and only makes their keys (normalising and canonicalising: most
// of the work), which the email thread adds when it gets there. The tables
// are the same as one thread's; the last second or so of the index, when
// one core idled, is shared.
class EmailBlocks {
 public:
  static constexpr size_t kRows = size_t{1} << 16;

  explicit EmailBlocks(size_t rows)
      : rows_(rows), back_((rows + kRows - 1) / kRows), made_(back_) {}

  size_t count() const { return made_.size(); }
  size_t Begin(size_t block) const { return block * kRows; }
  size_t End(size_t block) const { return std::min(rows_, (block + 1) * kRows); }

  // The email thread, at `block`: true if it is the thread's own to make
  // (no block before it is the helper's), false if the helper took it.
  bool TakeFront(size_t block) {
    std::lock_guard lock(mutex_);
    if (block < back_) {
      front_ = block + 1;
      return true;
    }
    return false;
  }
  // The helper: the last block nobody has taken, if one is left.
  std::optional<size_t> TakeBack() {
    std::lock_guard lock(mutex_);
    if (back_ <= front_) {
      return std::nullopt;
    }
    return --back_;
  }
  void Made(size_t block, std::unique_ptr<MadeEmailKeys> keys) {
    {
      std::lock_guard lock(mutex_);
      made_[block] = std::move(keys);
    }
    made_cv_.notify_all();
  }
  // The keys the helper made for `block`, once it has made them.
  std::unique_ptr<MadeEmailKeys> WaitMade(size_t block) {
    std::unique_lock lock(mutex_);
    made_cv_.wait(lock, [&] { return made_[block] != nullptr; });
    return std::move(made_[block]);
  }

 private:
  const size_t rows_;
  std::mutex mutex_;
  std::condition_variable made_cv_;
  size_t front_ = 0;  // blocks before it are the email thread's
  size_t back_;       // blocks from it on are the helper's
  std::vector<std::unique_ptr<MadeEmailKeys>> made_;
};

// The user id thread's share of the emails' index: keys of blocks from the
// back until the email thread reaches them.
size_t MakeEmailBlocks(const Table& accounts, const std::vector<size_t>& email_columns,
                       EmailBlocks* blocks) {
  size_t made_blocks = 0;
  EmailKeys keys;
  while (const std::optional<size_t> block = blocks->TakeBack()) {
    auto made = std::make_unique<MadeEmailKeys>();
    const size_t begin = blocks->Begin(*block);
    const size_t end = blocks->End(*block);
    made->rows.resize(end - begin);
    for (size_t row = begin; row < end; ++row) {
      MadeEmailKeys::Row& out = made->rows[row - begin];
      MakeEmailKeys(accounts, row, email_columns, &keys);
      if (keys.email.empty()) {
        continue;
      }
      if (!keys.normalized_status.ok()) {
        out.state = MadeEmailKeys::kFailed;
        made->failures.push_back(keys.normalized_status.message());
        continue;
      }
      out.state = MadeEmailKeys::kOk;
      out.email_hash = keys.email_hash;
      out.canonical_hash = keys.canonical_hash;
      out.text_at = made->text.size();
      out.normalized_bytes = static_cast<uint32_t>(keys.normalized.size());
      out.canonical_bytes = static_cast<uint32_t>(keys.canonical.address.size());
      made->text += keys.normalized;
      made->text += keys.canonical.address;
    }
    blocks->Made(*block, std::move(made));
    ++made_blocks;
  }
  return made_blocks;
}

// One row's email keys added to the index, in file order.
void AddEmail(AccountIndex* index, size_t row, std::string_view normalized, uint64_t email_hash,
              std::string_view canonical, uint64_t canonical_hash, IndexWarnings* warnings) {
  const auto email_of = [index](uint32_t account) { return index->NormalizedEmail(account); };
  const auto canonical_of = [index](uint32_t account) {
    return CanonicalizeEmail(index->NormalizedEmail(account)).address;
  };
  const uint32_t account = static_cast<uint32_t>(row);
  // Stored first: the look-ups below read the row's key from the arena.
  index->email_at[row] = (uint64_t{index->email_arena.size()} << 24) | normalized.size();
  index->email_arena += normalized;
  if (index->by_email.InsertHashed(normalized, email_hash, account, email_of) != kNoAccount) {
    warnings->Add(row, "duplicate email (the first account with it is used)");
  }
  const uint32_t first =
      index->by_canonical.InsertHashed(canonical, canonical_hash, account, canonical_of);
  if (first != kNoAccount) {
    index->canonical_others[first].push_back(account);
  }
}

// The email thread's own block: each row's keys made kPrefetchRows rows
// before it is added, and its slots prefetched, so that the tables' cache
// misses overlap.
void IndexEmailBlock(const Table& accounts, const std::vector<size_t>& email_columns, size_t begin,
                     size_t end, AccountIndex* index, IndexWarnings* warnings) {
  std::array<EmailKeys, kPrefetchRows> ring;
  const auto prepare = [&](size_t row, EmailKeys* keys) {
    MakeEmailKeys(accounts, row, email_columns, keys);
    if (!keys->email.empty() && keys->normalized_status.ok()) {
      index->by_email.Prefetch(keys->email_hash);
      index->by_canonical.Prefetch(keys->canonical_hash);
    }
  };
  for (size_t ahead = begin; ahead < std::min(end, begin + kPrefetchRows); ++ahead) {
    prepare(ahead, &ring[ahead % kPrefetchRows]);
  }
  for (size_t row = begin; row < end; ++row) {
    EmailKeys& keys = ring[row % kPrefetchRows];
    if (!keys.email.empty()) {
      if (!keys.normalized_status.ok()) {
        warnings->Add(row, "the email cannot be used: " + keys.normalized_status.message());
      } else {
        AddEmail(index, row, keys.normalized, keys.email_hash, keys.canonical.address,
                 keys.canonical_hash, warnings);
      }
    }
    if (row + kPrefetchRows < end) {
      prepare(row + kPrefetchRows, &keys);
    }
  }
}

// A block whose keys the user id thread made: added in file order, the
// slots prefetched kPrefetchRows rows ahead.
void AddMadeEmailBlock(const MadeEmailKeys& made, size_t begin, AccountIndex* index,
                       IndexWarnings* warnings) {
  const size_t count = made.rows.size();
  const auto prefetch = [&](size_t at) {
    const MadeEmailKeys::Row& row = made.rows[at];
    if (row.state == MadeEmailKeys::kOk) {
      index->by_email.Prefetch(row.email_hash);
      index->by_canonical.Prefetch(row.canonical_hash);
    }
  };
  for (size_t at = 0; at < std::min(count, kPrefetchRows); ++at) {
    prefetch(at);
  }
  size_t failure_idx = 0;
  for (size_t at = 0; at < count; ++at) {
    const MadeEmailKeys::Row& row = made.rows[at];
    if (row.state == MadeEmailKeys::kFailed) {
      warnings->Add(begin + at, "the email cannot be used: " + made.failures[failure_idx++]);
    } else if (row.state == MadeEmailKeys::kOk) {
      AddEmail(index, begin + at, made.Normalized(row), row.email_hash, made.Canonical(row),
               row.canonical_hash, warnings);
    }
    if (at + kPrefetchRows < count) {
      prefetch(at + kPrefetchRows);
    }
  }
}

// The email thread: every block in file order, its own made here, the
// helper's added once made.
void IndexEmails(const Table& accounts, const std::vector<size_t>& email_columns,
                 EmailBlocks* blocks, AccountIndex* index, IndexWarnings* warnings) {
  for (size_t block = 0; block < blocks->count(); ++block) {
    if (blocks->TakeFront(block)) {
      IndexEmailBlock(accounts, email_columns, blocks->Begin(block), blocks->End(block), index,
                      warnings);
    } else {
      const std::unique_ptr<MadeEmailKeys> made = blocks->WaitMade(block);
      AddMadeEmailBlock(*made, blocks->Begin(block), index, warnings);
    }
  }
}

// What a leaked row matched, found from the index alone (MatchRow), so
// that rows can be matched on one thread while the impact is added up on
// another.
struct RowMatch {
  uint32_t account = kNoAccount;
  uint32_t methods = 0;
  bool ambiguous = false;
  // Emails that matched another account than the user id's: one warning each.
  uint8_t conflicts = 0;
  // The known organisation of the row's org id (its first org column's
  // with a value), or kNoOrg: for a row matching no account its org-only
  // match, for one that does the org id its accounts may take.
  uint32_t known_org = UINT32_MAX;
  std::vector<uint32_t> extra_accounts;  // the other accounts of an ambiguous match
};

// A row's first user id column's and first email column's keys, made a
// few rows before the row is matched (PrepareRow), so that their slots can
// be prefetched: at 10M accounts every look-up misses the cache, and each
// misses it again on the way to the account's key (a user id: where the
// row's cells are listed, the list, the cell's bytes; an email: its place in
// the arena, its bytes). Those steps are taken a few rows apart
// (PrefetchStep), each reading what the one before brought in.
struct PreparedRow {
  std::string_view user_id;  // the first user id column's cell
  uint64_t user_id_hash = 0;
  bool email_ok = false;  // the first email column's cell normalised
  std::string normalized_email;
  uint64_t email_hash = 0;
  // The accounts the slots point at when their tags match (the likely
  // answers), found by the first PrefetchStep; kNoAccount: nothing to fetch.
  uint32_t likely_user = kNoAccount;
  uint32_t likely_email = kNoAccount;
};

void PrepareRow(const Table& leaked, size_t row, const std::vector<size_t>& user_columns,
                const std::vector<size_t>& email_columns, const AccountIndex& index,
                PreparedRow* prepared) {
  prepared->user_id = user_columns.empty() ? std::string_view()
                                           : leaked.Cell(row, user_columns[0]);
  prepared->likely_user = kNoAccount;
  prepared->likely_email = kNoAccount;
  if (!prepared->user_id.empty() && index.user_column != SIZE_MAX) {
    prepared->user_id_hash = RowHash::Hash(prepared->user_id);
    index.by_user_id.Prefetch(prepared->user_id_hash);
  }
  prepared->email_ok = false;
  const std::string_view email =
      email_columns.empty() ? std::string_view() : leaked.Cell(row, email_columns[0]);
  if (!email.empty() && NormalizeEmailTo(email, &prepared->normalized_email).ok()) {
    prepared->email_ok = true;
    prepared->email_hash = RowHash::Hash(prepared->normalized_email);
    index.by_email.Prefetch(prepared->email_hash);
  }
}

// The steps between a row's prefetched slots and its look-ups, taken
// kPrefetchStepRows rows apart: 1, the likely accounts found in the slots
// and where their keys are listed fetched; 2, the user id's cell list and
// the email's bytes; 3, the user id's bytes.
constexpr size_t kPrefetchSteps = 3;
constexpr size_t kPrefetchStepRows = kPrefetchRows / (kPrefetchSteps + 1);

void PrefetchStep(size_t step, PreparedRow* prepared, const AccountIndex& index) {
  if (step == 1) {
    if (!prepared->user_id.empty() && index.user_column != SIZE_MAX) {
      prepared->likely_user = index.by_user_id.Likely(prepared->user_id_hash);
      if (prepared->likely_user != kNoAccount) {
        index.accounts->PrefetchRow(prepared->likely_user);
      }
    }
    if (prepared->email_ok) {
      prepared->likely_email = index.by_email.Likely(prepared->email_hash);
      if (prepared->likely_email != kNoAccount) {
        __builtin_prefetch(&index.email_at[prepared->likely_email]);
      }
    }
  } else if (step == 2) {
    if (prepared->likely_user != kNoAccount) {
      index.accounts->PrefetchCellList(prepared->likely_user);
    }
    if (prepared->likely_email != kNoAccount) {
      __builtin_prefetch(index.email_arena.data() + (index.email_at[prepared->likely_email] >> 24));
    }
  } else if (prepared->likely_user != kNoAccount) {
    index.accounts->PrefetchCell(prepared->likely_user, index.user_column);
  }
}

RowMatch MatchRow(const Table& leaked, size_t row, const std::vector<size_t>& user_columns,
                  const std::vector<size_t>& email_columns, const AccountIndex& index,
                  const PreparedRow& prepared, std::string* normalized_scratch,
                  CanonicalEmail* canonical_scratch) {
  RowMatch match;
  for (size_t column_idx = 0; column_idx < user_columns.size(); ++column_idx) {
    uint32_t found = kNoAccount;
    if (column_idx == 0) {
      if (!prepared.user_id.empty() && index.user_column != SIZE_MAX) {
        found = index.by_user_id.FindHashed(prepared.user_id, prepared.user_id_hash,
                                            [&index](uint32_t account) {
                                              return index.UserId(account);
                                            });
      }
    } else {
      const std::string_view user_id = leaked.Cell(row, user_columns[column_idx]);
      found = user_id.empty() ? kNoAccount : index.FindUserId(user_id);
    }
    if (found != kNoAccount) {
      match.account = found;
      match.methods |= Bit(MatchMethod::kUserId);
      break;
    }
  }
  for (size_t column_idx = 0; column_idx < email_columns.size(); ++column_idx) {
    std::string_view normalized;
    uint32_t exact = kNoAccount;
    if (column_idx == 0) {
      if (!prepared.email_ok) {
        continue;
      }
      normalized = prepared.normalized_email;
      exact = index.by_email.FindHashed(
          normalized, prepared.email_hash,
          [&index](uint32_t account) { return index.NormalizedEmail(account); });
    } else {
      const std::string_view email = leaked.Cell(row, email_columns[column_idx]);
      if (email.empty() || !NormalizeEmailTo(email, normalized_scratch).ok()) {
        continue;
      }
      normalized = *normalized_scratch;
      exact = index.FindEmail(normalized);
    }
    if (exact != kNoAccount) {
      if (match.account == kNoAccount || match.account == exact) {
        match.account = exact;
        match.methods |= Bit(MatchMethod::kEmail);
      } else if (match.conflicts < UINT8_MAX) {
        ++match.conflicts;  // one per email column: at most kColumnsMax
      }
      continue;
    }
    if (match.account != kNoAccount) {
      continue;
    }
    CanonicalizeEmailTo(normalized, canonical_scratch);
    const uint32_t canonical = index.FindCanonical(canonical_scratch->address);
    if (canonical == kNoAccount) {
      continue;
    }
    std::vector<uint32_t> candidates = {canonical};
    const auto others = index.canonical_others.find(canonical);
    if (others != index.canonical_others.end()) {
      candidates.insert(candidates.end(), others->second.begin(), others->second.end());
    }
    const std::string leaked_plain = StripPlus(normalized);
    for (const uint32_t account : candidates) {
      const bool plus_only = StripPlus(index.NormalizedEmail(account)) == leaked_plain;
      match.methods |=
          Bit(plus_only ? MatchMethod::kEmailPlusAddress : MatchMethod::kEmailGmailDots);
      if (match.account == kNoAccount) {
        match.account = account;
      } else {
        match.extra_accounts.push_back(account);
      }
    }
    match.ambiguous = candidates.size() > 1;
  }
  return match;
}

constexpr uint32_t kNoOrg = UINT32_MAX;
// The known organisations' table's first size: it doubles as they are found.
constexpr size_t kKnownOrgsReserved = 1024;

// Strings copied together in blocks that never move, so that views of them
// stay valid as more are added.
class StableArena {
 public:
  std::string_view Add(std::string_view text) {
    if (blocks_.empty() || text.size() > capacity_ - used_) {
      capacity_ = std::max(kBlockBytes, text.size());
      blocks_.push_back(std::make_unique_for_overwrite<char[]>(capacity_));
      used_ = 0;
    }
    char* at = blocks_.back().get() + used_;
    std::copy(text.begin(), text.end(), at);
    used_ += text.size();
    return std::string_view(at, text.size());
  }

 private:
  static constexpr size_t kBlockBytes = size_t{1} << 20;
  std::vector<std::unique_ptr<char[]>> blocks_;
  size_t capacity_ = 0;  // of the last block
  size_t used_ = 0;      // of the last block
};

// The organisations: those the accounts and orgs files name ("known"),
// numbered as first seen, with each account row's known organisation, so
// that the millions of look-ups by account go through a vector, not a map
// of strings; and the few only the leaked file names, by id.
struct OrgTable {
  RowHash known;                            // org id -> known number (KnownOf)
  std::vector<std::string_view> known_ids;  // known number -> org id, in known_bytes
  // The known org ids side by side (about 5 MB for 500,000), so that a
  // key compared with one — every accounts row's here, every leaked org id
  // in Match — reads there, not at a random place among the accounts' cells.
  StableArena known_bytes;
  std::vector<int64_t> slot_of_known;  // known number -> index into Impact::orgs, or -1
  std::vector<uint32_t> account_org;   // accounts row -> known number of its org id, or kNoOrg
  StringMap<size_t> unknown;           // other org ids -> index into Impact::orgs

  // The known number of `org_id`, or kNoOrg.
  uint32_t KnownOf(std::string_view org_id) const {
    return known.Find(org_id, [this](uint32_t number) { return known_ids[number]; });
  }
};

size_t NewOrg(std::string_view org_id, Impact* impact) {
  impact->orgs.emplace_back();
  impact->orgs.back().org_id = std::string(org_id);
  return impact->orgs.size() - 1;
}

size_t KnownOrgSlot(uint32_t known, OrgTable* orgs, Impact* impact) {
  int64_t& slot = orgs->slot_of_known[known];
  if (slot < 0) {
    slot = static_cast<int64_t>(NewOrg(orgs->known_ids[known], impact));
  }
  return static_cast<size_t>(slot);
}

// The organisation's index into Impact::orgs, made when it has none yet.
size_t OrgSlot(std::string_view org_id, OrgTable* orgs, Impact* impact) {
  const uint32_t known = orgs->KnownOf(org_id);
  if (known != kNoOrg) {
    return KnownOrgSlot(known, orgs, impact);
  }
  const auto found = orgs->unknown.find(org_id);
  if (found != orgs->unknown.end()) {
    return found->second;
  }
  const size_t slot = NewOrg(org_id, impact);
  orgs->unknown.emplace(std::string(org_id), slot);
  return slot;
}

// The organisation's index into Impact::orgs, or -1 when it has none.
int64_t ExistingOrgSlot(std::string_view org_id, const OrgTable& orgs) {
  const uint32_t known = orgs.KnownOf(org_id);
  if (known != kNoOrg) {
    return orgs.slot_of_known[known];
  }
  const auto found = orgs.unknown.find(org_id);
  return found == orgs.unknown.end() ? -1 : static_cast<int64_t>(found->second);
}

// The distinct exposures of the affected accounts while the leaked rows
// are added (Apply): a row's (its categories and its columns with a value)
// numbered once, and an account's — the union of its rows' — made once per
// pair met, so that an account holds a number, not lists of its own.
// Numbered in order of first use; Finish renumbers those the accounts end
// with in accounts order (impact.json's), leaving out the unions' steps.
class ExposureTable {
 public:
  // `category_of_column`: per leaked column, its kind's category bit (0
  // for none).
  explicit ExposureTable(std::vector<uint32_t> category_of_column)
      : category_of_column_(std::move(category_of_column)) {}

  // The exposure of leaked row `row`: its cells' categories, with payment
  // and credentials where `sensitive_cells` (ScanSensitiveCells's) marks a
  // cell of the row.
  uint32_t OfRow(const Table& leaked, const std::vector<uint8_t>& sensitive_cells, size_t row) {
    const size_t column_count = leaked.columns().size();
    uint32_t categories = 0;
    columns_.clear();
    // In ascending column order, each once (Table::ForEachCell).
    leaked.ForEachCell(row, [&](size_t column, std::string_view) {
      columns_.push_back(static_cast<uint16_t>(column));  // < kColumnsMax
      categories |= category_of_column_[column];
      if (!sensitive_cells.empty()) {
        const uint8_t bits = sensitive_cells[row * column_count + column];
        categories |= (bits & 1) != 0 ? Bit(Category::kPayment) : 0;
        categories |= (bits & 2) != 0 ? Bit(Category::kCredentials) : 0;
      }
    });
    return Intern(categories);
  }

  // The exposure of an account with exposures `left` and `right`.
  uint32_t Union(uint32_t left, uint32_t right) {
    const auto [found, added] = unions_.try_emplace((uint64_t{left} << 32) | right, 0);
    if (!added) {
      return found->second;
    }
    const Exposure& one = exposures_[left];
    const Exposure& other = exposures_[right];
    columns_.clear();
    std::set_union(one.columns.begin(), one.columns.end(), other.columns.begin(),
                   other.columns.end(), std::back_inserter(columns_));
    found->second = Intern(one.categories | other.categories);
    return found->second;
  }

  size_t size() const { return exposures_.size(); }
  Exposure& operator[](uint32_t exposure) { return exposures_[exposure]; }

 private:
  // The number of (categories, columns_).
  uint32_t Intern(uint32_t categories) {
    key_.assign(reinterpret_cast<const char*>(&categories), sizeof(categories));
    key_.append(reinterpret_cast<const char*>(columns_.data()),
                columns_.size() * sizeof(columns_[0]));
    // Rows in a row are often alike.
    if (key_ == last_key_) {
      return last_;
    }
    const auto [found, added] = ids_.try_emplace(key_, static_cast<uint32_t>(exposures_.size()));
    if (added) {
      exposures_.push_back({categories, columns_});
    }
    last_key_ = key_;
    last_ = found->second;
    return last_;
  }

  std::vector<uint32_t> category_of_column_;
  std::vector<Exposure> exposures_;
  StringMap<uint32_t> ids_;  // the categories' bytes, then the columns'
  std::unordered_map<uint64_t, uint32_t> unions_;  // left << 32 | right
  std::vector<uint16_t> columns_;                  // reused: no allocation per row
  std::string key_;
  std::string last_key_;
  uint32_t last_ = 0;
};

// Strings numbered as first seen (the countries the leaked rows give their
// accounts: a few, each kept once).
class TextTable {
 public:
  uint32_t Intern(std::string_view text) {
    const auto found = ids_.find(text);
    if (found != ids_.end()) {
      return found->second;
    }
    const uint32_t id = static_cast<uint32_t>(texts_.size());
    texts_.emplace_back(text);
    ids_.emplace(std::string(text), id);
    return id;
  }
  size_t size() const { return texts_.size(); }
  const std::string& operator[](uint32_t id) const { return texts_[id]; }

 private:
  StringMap<uint32_t> ids_;
  std::vector<std::string> texts_;
};

// What AddAdmins takes from the accounts file, found apart from the
// affected accounts (every account row's role read: 10M at 10M accounts),
// so that it runs on a second thread while Finish puts those in file order.
struct AccountAdmins {
  // Account rows with a known organisation and an admin's role, in file order.
  std::vector<uint32_t> admin_rows;
  // Per known organisation, its first account row with an organisation
  // name, or kNoAccount; empty when the accounts have no such column.
  std::vector<uint32_t> first_named_row;
};

AccountAdmins FindAccountAdmins(const CrossrefInput& input, const OrgTable& orgs) {
  AccountAdmins admins;
  const Table& accounts = *input.accounts;
  const std::vector<size_t> role_columns = input.account_columns->ColumnsOf(ColumnKind::kRole);
  const std::vector<size_t> org_name_columns =
      input.account_columns->ColumnsOf(ColumnKind::kOrgName);
  if (input.account_columns->ColumnsOf(ColumnKind::kOrgId).empty()) {
    return admins;
  }
  if (!org_name_columns.empty()) {
    admins.first_named_row.assign(orgs.known_ids.size(), kNoAccount);
  }
  for (size_t row = 0; row < accounts.row_count(); ++row) {
    // The row's org id (its first org column) is a known one, if any.
    const uint32_t known = orgs.account_org[row];
    if (known == kNoOrg) {
      continue;
    }
    if (!org_name_columns.empty() && admins.first_named_row[known] == kNoAccount &&
        !FirstCell(accounts, row, org_name_columns).empty()) {
      admins.first_named_row[known] = static_cast<uint32_t>(row);
    }
    if (IsAdminRole(FirstCell(accounts, row, role_columns))) {
      admins.admin_rows.push_back(static_cast<uint32_t>(row));
    }
  }
  return admins;
}

void AddAdmins(const CrossrefInput& input, const AccountAdmins& account_admins, OrgTable* orgs,
               Impact* impact, const AccountIndex& index) {
  const Table& accounts = *input.accounts;
  const std::vector<size_t> org_name_columns =
      input.account_columns->ColumnsOf(ColumnKind::kOrgName);
  // An affected organisation's name: the first that one of its account
  // rows gives.
  for (size_t known = 0; known < account_admins.first_named_row.size(); ++known) {
    const int64_t slot = orgs->slot_of_known[known];
    const uint32_t row = account_admins.first_named_row[known];
    if (slot >= 0 && row != kNoAccount) {
      impact->orgs[static_cast<size_t>(slot)].name =
          std::string(FirstCell(accounts, row, org_name_columns));
    }
  }
  for (const uint32_t row : account_admins.admin_rows) {
    const int64_t slot = orgs->slot_of_known[orgs->account_org[row]];
    if (slot >= 0) {
      impact->orgs[static_cast<size_t>(slot)].admin_account_rows.push_back(row);
    }
  }
  if (input.orgs == nullptr) {
    return;
  }
  const Table& org_file = *input.orgs;
  const Recognition& org_recognition = *input.org_columns;
  const std::vector<size_t> id_columns = org_recognition.ColumnsOf(ColumnKind::kOrgId);
  if (id_columns.empty()) {
    return;
  }
  const std::vector<size_t> name_columns = [&] {
    std::vector<size_t> names = org_recognition.ColumnsOf(ColumnKind::kOrgName);
    const std::vector<size_t> full = org_recognition.ColumnsOf(ColumnKind::kFullName);
    names.insert(names.end(), full.begin(), full.end());
    return names;
  }();
  const std::vector<size_t> admin_email_columns =
      org_recognition.ColumnsOf(ColumnKind::kAdminEmail);
  const std::vector<size_t> admin_id_columns = org_recognition.ColumnsOf(ColumnKind::kAdminUserId);
  for (size_t row = 0; row < org_file.row_count(); ++row) {
    const int64_t slot = ExistingOrgSlot(org_file.Cell(row, id_columns[0]), *orgs);
    if (slot < 0) {
      continue;
    }
    OrgImpact& org = impact->orgs[static_cast<size_t>(slot)];
    const std::string_view name = FirstCell(org_file, row, name_columns);
    if (!name.empty()) {
      org.name = std::string(name);
    }
    for (const size_t column : admin_id_columns) {
      const std::string_view admin_id = org_file.Cell(row, column);
      const uint32_t account = admin_id.empty() ? kNoAccount : index.FindUserId(admin_id);
      if (account != kNoAccount) {
        org.admin_account_rows.push_back(account);
      }
    }
    for (const size_t column : admin_email_columns) {
      // A list of admins may share one cell, separated by ; or ,.
      std::string_view list = org_file.Cell(row, column);
      while (!list.empty()) {
        const size_t cut = list.find_first_of(";,");
        const std::string_view item = list.substr(0, cut);
        list = cut == std::string_view::npos ? std::string_view() : list.substr(cut + 1);
        const Result<std::string> normalized = NormalizeEmail(item);
        if (!normalized.ok()) {
          continue;
        }
        const uint32_t account = index.FindEmail(*normalized);
        if (account != kNoAccount) {
          org.admin_account_rows.push_back(account);
        } else {
          org.admin_emails.push_back(*normalized);
        }
      }
    }
  }
  for (OrgImpact& org : impact->orgs) {
    std::sort(org.admin_account_rows.begin(), org.admin_account_rows.end());
    org.admin_account_rows.erase(
        std::unique(org.admin_account_rows.begin(), org.admin_account_rows.end()),
        org.admin_account_rows.end());
    std::sort(org.admin_emails.begin(), org.admin_emails.end());
    org.admin_emails.erase(std::unique(org.admin_emails.begin(), org.admin_emails.end()),
                           org.admin_emails.end());
  }
}

void CollectKnownOrgs(const CrossrefInput& input, OrgTable* orgs) {
  const auto known_id = [orgs](uint32_t number) { return orgs->known_ids[number]; };
  const auto add = [orgs, &known_id](const Table& table, const Recognition& columns,
                                     std::vector<uint32_t>* org_of_row) {
    const std::vector<size_t> org_columns = columns.ColumnsOf(ColumnKind::kOrgId);
    if (org_columns.empty()) {
      return;
    }
    ForEachCellPrefetched(
        table, org_columns[0], orgs->known,
        [&](size_t row, std::string_view org_id, uint64_t hash) {
          const uint32_t number = static_cast<uint32_t>(orgs->known_ids.size());
          uint32_t found = orgs->known.InsertGrowing(org_id, hash, number, known_id);
          if (found == kNoOrg) {
            found = number;
            orgs->known_ids.push_back(orgs->known_bytes.Add(org_id));
          }
          if (org_of_row != nullptr) {
            (*org_of_row)[row] = found;
          }
        });
  };
  orgs->known.Reserve(kKnownOrgsReserved);
  orgs->account_org.assign(input.accounts->row_count(), kNoOrg);
  add(*input.accounts, *input.account_columns, &orgs->account_org);
  if (input.orgs != nullptr) {
    add(*input.orgs, *input.org_columns, nullptr);
  }
  orgs->slot_of_known.assign(orgs->known_ids.size(), -1);
}

// How many affected accounts ahead AssignOrgs brings in the organisation
// it will add to (a step at a time: the organisation, then the end of its
// accounts' list).
constexpr size_t kAssignPrefetchAccounts = 16;

// The affected accounts (in file order, CrossrefStream::Finish) added to
// their organisations: their first org column's (a known one), else
// another org column's, else the leaked file's. At 10M accounts each is
// far from the last one's, so the organisations are found first (and
// their lists given the room they need), then each account added with
// the organisation of the ones ahead brought in.
void AssignOrgs(const CrossrefInput& input, OrgTable* orgs, Impact* impact) {
  const std::vector<size_t> account_org_columns =
      input.account_columns->ColumnsOf(ColumnKind::kOrgId);
  const size_t account_count = impact->accounts.size();
  std::vector<uint32_t> slot_of_account(account_count, kNoOrg);
  std::vector<uint32_t> accounts_of_slot;
  for (size_t account_idx = 0; account_idx < account_count; ++account_idx) {
    const AccountImpact& account = impact->accounts[account_idx];
    const uint32_t known = orgs->account_org[account.account_row];
    size_t slot = 0;
    if (known != kNoOrg) {
      slot = KnownOrgSlot(known, orgs, impact);
    } else {
      std::string_view org_id =
          FirstCell(*input.accounts, account.account_row, account_org_columns);
      if (org_id.empty()) {
        org_id = impact->LeakedOrgId(account);
      }
      if (org_id.empty()) {
        continue;
      }
      slot = OrgSlot(org_id, orgs, impact);
    }
    slot_of_account[account_idx] = static_cast<uint32_t>(slot);  // < kRowsMax
    accounts_of_slot.resize(std::max(accounts_of_slot.size(), slot + 1), 0);
    ++accounts_of_slot[slot];
  }
  for (size_t slot = 0; slot < accounts_of_slot.size(); ++slot) {
    impact->orgs[slot].affected_accounts.reserve(accounts_of_slot[slot]);
  }
  const auto org_ahead = [&](size_t account_idx) -> const OrgImpact* {
    if (account_idx >= account_count || slot_of_account[account_idx] == kNoOrg) {
      return nullptr;
    }
    return &impact->orgs[slot_of_account[account_idx]];
  };
  for (size_t account_idx = 0; account_idx < account_count; ++account_idx) {
    if (const OrgImpact* ahead = org_ahead(account_idx + kAssignPrefetchAccounts)) {
      __builtin_prefetch(&ahead->affected_accounts);
      __builtin_prefetch(&ahead->accounts_by_category.front(), 1);
      __builtin_prefetch(&ahead->accounts_by_category.back(), 1);
    }
    if (const OrgImpact* ahead = org_ahead(account_idx + kAssignPrefetchAccounts / 2)) {
      __builtin_prefetch(ahead->affected_accounts.data() + ahead->affected_accounts.size(), 1);
    }
    if (slot_of_account[account_idx] == kNoOrg) {
      continue;
    }
    OrgImpact& org = impact->orgs[slot_of_account[account_idx]];
    org.affected_accounts.push_back(account_idx);
    const uint32_t categories = impact->ExposureOf(impact->accounts[account_idx]).categories;
    for (size_t category = 0; category < kCategoryCount; ++category) {
      org.accounts_by_category[category] += (categories >> category) & 1;
    }
  }
}

void CountTotals(const CrossrefInput& input, Impact* impact) {
  const std::vector<size_t> account_country =
      input.account_columns->ColumnsOf(ColumnKind::kCountry);
  // Counted by number (the accounts share a few exposures and leaked
  // countries), the accounts file's countries by name.
  std::vector<uint64_t> accounts_of_exposure(impact->exposures.size(), 0);
  std::vector<uint64_t> accounts_of_leaked_country(impact->leaked_countries.size(), 0);
  StringMap<uint64_t> countries;
  for (const AccountImpact& account : impact->accounts) {
    ++accounts_of_exposure[account.exposure];
    // The country the leaked file gave for the account, else the accounts file's.
    if (account.leaked_country != kNoIndex) {
      ++accounts_of_leaked_country[account.leaked_country];
      continue;
    }
    std::string_view country = FirstCell(*input.accounts, account.account_row, account_country);
    if (country.empty()) {
      country = "unknown";
    }
    const auto found = countries.find(country);
    if (found != countries.end()) {
      ++found->second;
    } else {
      countries.emplace(std::string(country), 1);
    }
  }
  for (size_t exposure = 0; exposure < accounts_of_exposure.size(); ++exposure) {
    const uint32_t categories = impact->exposures[exposure].categories;
    for (size_t category = 0; category < kCategoryCount; ++category) {
      impact->accounts_by_category[category] +=
          ((categories >> category) & 1) * accounts_of_exposure[exposure];
    }
  }
  for (size_t country = 0; country < accounts_of_leaked_country.size(); ++country) {
    if (accounts_of_leaked_country[country] > 0) {
      countries[impact->leaked_countries[country]] += accounts_of_leaked_country[country];
    }
  }
  impact->accounts_by_country.assign(countries.begin(), countries.end());
  std::sort(impact->accounts_by_country.begin(), impact->accounts_by_country.end(),
            [](const auto& left, const auto& right) {
              return left.second != right.second ? left.second > right.second
                                                 : left.first < right.first;
            });
  for (size_t category = 0; category < kCategoryCount; ++category) {
    if (input.leaked_columns->HasCategory(static_cast<Category>(category))) {
      impact->file_categories |= 1u << category;
    }
  }
}

// A line of the leaked file that matched an account already affected.
struct MoreLine {
  uint32_t account_row;
  uint64_t line;
};

}  // namespace

struct CrossrefStream::State {
  CrossrefInput input;
  std::vector<size_t> user_columns;
  std::vector<size_t> email_columns;
  std::vector<size_t> org_columns;
  std::vector<size_t> country_columns;
  Impact impact;
  AccountIndex index;
  OrgTable orgs;
  // The affected accounts where their rows are: an entry per account row,
  // affected when first_leaked_line is not 0 (lines are 1-based), so that
  // a leaked row adds to its account's entry without an index between,
  // and Finish puts the affected ones in file order by closing the gaps, a
  // pass along the array (a permutation of millions of entries missed the
  // cache at each). Until Finish an entry's `exposure` is a number of
  // `exposures`, its `leaked_country` of `countries`, its `leaked_org_id`
  // a known organisation's number or (known count +) one of
  // `unknown_org_ids`, and its `more_leaked_lines` counts the entries of
  // `more_lines` that are its.
  std::vector<AccountImpact> account_of_row;
  std::unique_ptr<ExposureTable> exposures;
  TextTable countries;
  TextTable unknown_org_ids;  // leaked org ids the accounts took that no file knows
  std::vector<MoreLine> more_lines;  // each account's lines after its first, in file order
  size_t email_blocks_made_beside = 0;

  // The account's entry, to be written (Apply, rows ahead).
  void PrefetchAccount(uint32_t account) const {
    if (account != kNoAccount) {
      __builtin_prefetch(&account_of_row[account], 1);
    }
  }
  // The org id a leaked row that matched an account gives it, numbered
  // (kNoIndex: none).
  uint32_t LeakedOrgNumber(const Table& leaked, size_t row, const RowMatch& match) {
    if (match.known_org != kNoOrg) {
      return match.known_org;
    }
    const std::string_view org_id = FirstCell(leaked, row, org_columns);
    if (org_id.empty()) {
      return kNoIndex;
    }
    return static_cast<uint32_t>(orgs.known_ids.size()) + unknown_org_ids.Intern(org_id);
  }
  // The affected accounts in file order into `impact`, with their tables:
  // `account_of_row` emptied into impact->accounts.
  void PutInFileOrder(Impact* impact);

  std::string_view LeakedOrgText(uint32_t number) const {
    const size_t known_count = orgs.known_ids.size();
    return number < known_count ? orgs.known_ids[number]
                                : std::string_view(unknown_org_ids[static_cast<uint32_t>(
                                      number - known_count)]);
  }
};

CrossrefStream::CrossrefStream(std::unique_ptr<State> state) : state_(std::move(state)) {}
CrossrefStream::~CrossrefStream() = default;

Result<std::unique_ptr<CrossrefStream>> CrossrefStream::Start(const CrossrefInput& input) {
  auto state = std::make_unique<State>();
  state->input = input;
  const Recognition& leaked_columns = *input.leaked_columns;
  state->user_columns = leaked_columns.ColumnsOf(ColumnKind::kUserId);
  state->email_columns = leaked_columns.ColumnsOf(ColumnKind::kEmail);
  state->org_columns = leaked_columns.ColumnsOf(ColumnKind::kOrgId);
  state->country_columns = leaked_columns.ColumnsOf(ColumnKind::kCountry);
  std::vector<uint32_t> category_of_column;
  for (const ColumnRecognition& column : leaked_columns.columns) {
    const Category category = CategoryOf(column.kind);
    category_of_column.push_back(category == Category::kNone ? 0 : Bit(category));
  }
  state->exposures = std::make_unique<ExposureTable>(std::move(category_of_column));
  if (state->user_columns.empty() && state->email_columns.empty() && state->org_columns.empty()) {
    return Status::InvalidArgument(
        "the leaked file has no column recognised as user_id, email or org_id; name one with "
        "--map leaked.COLUMN=user_id (or =email, =org_id)");
  }
  const Recognition& account_recognition = *input.account_columns;
  if (account_recognition.ColumnsOf(ColumnKind::kUserId).empty() &&
      account_recognition.ColumnsOf(ColumnKind::kEmail).empty()) {
    return Status::InvalidArgument(
        "the accounts file has no column recognised as user_id or email; name one with --map "
        "accounts.COLUMN=user_id (or =email)");
  }
  // The accounts indexed on two threads: the user ids and the known
  // organisations on one, the emails on this one (the heavier: each is
  // normalised and canonicalised), which the first helps once its own work
  // is done (EmailBlocks). Their warnings are said in file order after.
  const Table& accounts = *input.accounts;
  AccountIndex& index = state->index;
  const std::vector<size_t> account_user_columns =
      account_recognition.ColumnsOf(ColumnKind::kUserId);
  index.accounts = &accounts;
  index.user_column = account_user_columns.empty() ? SIZE_MAX : account_user_columns[0];
  // Each thread also makes its own tables (at 10M accounts each hash table
  // is 256 MiB of slots, written once to be cleared).
  IndexWarnings user_id_warnings;
  IndexWarnings email_warnings;
  const std::vector<size_t> account_email_columns =
      account_recognition.ColumnsOf(ColumnKind::kEmail);
  EmailBlocks email_blocks(accounts.row_count());
  std::thread user_ids([&] {
    index.by_user_id.Reserve(accounts.row_count());
    IndexUserIds(accounts, &index, &user_id_warnings);
    CollectKnownOrgs(input, &state->orgs);
    AssignHuge(&state->account_of_row, input.accounts->row_count(), AccountImpact{});
    state->email_blocks_made_beside =
        MakeEmailBlocks(accounts, account_email_columns, &email_blocks);
  });
  index.by_email.Reserve(accounts.row_count());
  index.by_canonical.Reserve(accounts.row_count());
  AssignHuge(&index.email_at, accounts.row_count(), uint64_t{0});
  IndexEmails(accounts, account_email_columns, &email_blocks, &index, &email_warnings);
  user_ids.join();
  WarnInFileOrder(accounts, user_id_warnings, email_warnings, &state->impact);
  return std::unique_ptr<CrossrefStream>(new CrossrefStream(std::move(state)));
}

struct CrossrefStream::Matches {
  std::vector<RowMatch> rows;
};

std::unique_ptr<CrossrefStream::Matches> CrossrefStream::Match(const Table& leaked) const {
  const State& state = *state_;
  auto matches = std::make_unique<Matches>();
  matches->rows.reserve(leaked.row_count());
  // Row r's keys are prepared (and their slots prefetched) at row r -
  // kPrefetchRows, and the way to the accounts the slots point at fetched a
  // step at a time (PrefetchStep) every kPrefetchStepRows rows after.
  std::array<PreparedRow, kPrefetchRows> ring;
  std::string normalized_scratch;
  CanonicalEmail canonical_scratch;
  const size_t rows = leaked.row_count();
  for (size_t ahead = 0; ahead < std::min(rows, kPrefetchRows); ++ahead) {
    PrepareRow(leaked, ahead, state.user_columns, state.email_columns, state.index, &ring[ahead]);
  }
  for (size_t row = 0; row < rows; ++row) {
    for (size_t step = 1; step <= kPrefetchSteps; ++step) {
      const size_t ahead = row + kPrefetchRows - step * kPrefetchStepRows;
      if (ahead < rows) {
        PrefetchStep(step, &ring[ahead % kPrefetchRows], state.index);
      }
    }
    RowMatch match = MatchRow(leaked, row, state.user_columns, state.email_columns, state.index,
                              ring[row % kPrefetchRows], &normalized_scratch,
                              &canonical_scratch);
    if (row + kPrefetchRows < rows) {
      PrepareRow(leaked, row + kPrefetchRows, state.user_columns, state.email_columns,
                 state.index, &ring[row % kPrefetchRows]);
    }
    const std::string_view org_id = FirstCell(leaked, row, state.org_columns);
    match.known_org = org_id.empty() ? kNoOrg : state.orgs.KnownOf(org_id);
    matches->rows.push_back(std::move(match));
  }
  return matches;
}

void CrossrefStream::Add(const Table& leaked, const std::vector<uint8_t>& sensitive_cells) {
  Apply(leaked, sensitive_cells, *Match(leaked));
}

void CrossrefStream::Apply(const Table& leaked, const std::vector<uint8_t>& sensitive_cells,
                           const Matches& matches) {
  State& state = *state_;
  Impact& impact = state.impact;
  const size_t rows = leaked.row_count();
  for (size_t row = 0; row < rows; ++row) {
    // The affected account of the row ahead (at 10M accounts each is far
    // from the last).
    if (row + kApplyPrefetchRows < rows) {
      state.PrefetchAccount(matches.rows[row + kApplyPrefetchRows].account);
    }
    const RowMatch& match = matches.rows[row];
    for (uint8_t conflict = 0; conflict < match.conflicts; ++conflict) {
      impact.Warn("leaked", leaked.Line(row),
                  "the user id and the email match different accounts; the user id's is used");
    }
    if (match.account != kNoAccount) {
      ++impact.leaked_rows_matched_account;
      for (size_t method = 0; method < impact.leaked_rows_by_method.size(); ++method) {
        impact.leaked_rows_by_method[method] += (match.methods >> method) & 1;
      }
      const uint64_t line = leaked.Line(row);
      const uint32_t exposure = state.exposures->OfRow(leaked, sensitive_cells, row);
      for (size_t account_idx = 0; account_idx <= match.extra_accounts.size(); ++account_idx) {
        const uint32_t account =
            account_idx == 0 ? match.account : match.extra_accounts[account_idx - 1];
        AccountImpact& affected = state.account_of_row[account];
        if (affected.first_leaked_line == 0) {
          affected.first_leaked_line = line;
          affected.exposure = exposure;
        } else {
          ++affected.more_leaked_lines;  // at most one a leaked row: < kRowsMax
          state.more_lines.push_back({account, line});
          if (affected.exposure != exposure) {
            affected.exposure = state.exposures->Union(affected.exposure, exposure);
          }
        }
        affected.methods |= static_cast<uint8_t>(match.methods);
        affected.ambiguous = affected.ambiguous || match.ambiguous;
        if (affected.leaked_country == kNoIndex) {
          const std::string_view country = FirstCell(leaked, row, state.country_columns);
          if (!country.empty()) {
            affected.leaked_country = state.countries.Intern(country);
          }
        }
        if (affected.leaked_org_id == kNoIndex) {
          affected.leaked_org_id = state.LeakedOrgNumber(leaked, row, match);
        }
      }
      continue;
    }
    if (match.known_org != UINT32_MAX) {
      ++impact.leaked_rows_matched_org_only;
      impact.leaked_rows_by_method[static_cast<size_t>(MatchMethod::kOrgId)] += 1;
      ++impact.orgs[KnownOrgSlot(match.known_org, &state.orgs, &impact)].leaked_rows_org_only;
      continue;
    }
    ++impact.leaked_rows_unmatched;
    const bool has_key = !FirstCell(leaked, row, state.user_columns).empty() ||
                         !FirstCell(leaked, row, state.email_columns).empty() ||
                         !FirstCell(leaked, row, state.org_columns).empty();
    impact.unmatched.push_back(
        {leaked.Line(row), has_key ? "its user id, email and org id match no account or "
                                     "organisation"
                                   : "it has no user id, email or org id"});
  }
}

namespace {

// The affected accounts' lines after their first, into
// impact.more_leaked_lines account after account (in account rows' order),
// each entry's more_leaked_lines_begin set: the begins are counted first,
// each entry's at its end, then the lines placed from the last back, each
// at its entry's begin less one, which leaves the begin where it belongs.
void PlaceMoreLines(std::vector<AccountImpact>* account_of_row,
                    const std::vector<MoreLine>& more_lines,
                    Impact* impact) {
  if (more_lines.empty()) {
    return;
  }
  uint64_t end = 0;
  for (AccountImpact& entry : *account_of_row) {
    end += entry.more_leaked_lines;
    entry.more_leaked_lines_begin = end;
  }
  impact->more_leaked_lines.resize(more_lines.size());
  for (size_t line_idx = more_lines.size(); line_idx-- > 0;) {
    const MoreLine& more = more_lines[line_idx];
    impact->more_leaked_lines[--(*account_of_row)[more.account_row].more_leaked_lines_begin] =
        more.line;
  }
}

}  // namespace

void CrossrefStream::State::PutInFileOrder(Impact* impact) {
  State& state = *this;
  std::vector<AccountImpact>& entries = state.account_of_row;
  PlaceMoreLines(&entries, state.more_lines, impact);
  state.more_lines = {};
  // One pass along the entries: the affected ones moved down over the
  // gaps, their exposures, countries and org ids numbered in order of
  // first use.
  std::vector<uint32_t> exposure_number(state.exposures->size(), kNoIndex);
  std::vector<uint32_t> country_number(state.countries.size(), kNoIndex);
  std::vector<uint32_t> org_number(state.orgs.known_ids.size() + state.unknown_org_ids.size(),
                                   kNoIndex);
  size_t kept = 0;
  for (size_t row = 0; row < entries.size(); ++row) {
    AccountImpact entry = entries[row];
    if (entry.first_leaked_line == 0) {
      continue;
    }
    entry.account_row = static_cast<uint32_t>(row);
    uint32_t& exposure = exposure_number[entry.exposure];
    if (exposure == kNoIndex) {
      exposure = static_cast<uint32_t>(impact->exposures.size());
      impact->exposures.push_back(std::move((*state.exposures)[entry.exposure]));
    }
    entry.exposure = exposure;
    if (entry.leaked_country != kNoIndex) {
      uint32_t& country = country_number[entry.leaked_country];
      if (country == kNoIndex) {
        country = static_cast<uint32_t>(impact->leaked_countries.size());
        impact->leaked_countries.push_back(state.countries[entry.leaked_country]);
      }
      entry.leaked_country = country;
    }
    if (entry.leaked_org_id != kNoIndex) {
      uint32_t& org = org_number[entry.leaked_org_id];
      if (org == kNoIndex) {
        org = static_cast<uint32_t>(impact->leaked_org_ids.size());
        impact->leaked_org_ids.emplace_back(state.LeakedOrgText(entry.leaked_org_id));
      }
      entry.leaked_org_id = org;
    }
    entries[kept++] = entry;
  }
  entries.resize(kept);
  if (kept < entries.capacity() / 2) {
    entries.shrink_to_fit();  // few affected: the room for every account given back
  }
  impact->accounts = std::move(entries);
}

Impact CrossrefStream::Finish() {
  State& state = *state_;
  const CrossrefInput& input = state.input;
  state.impact.leaked_rows_seen = input.leaked->rows_seen();
  state.impact.leaked_rows_rejected = input.leaked->rejected().size();
  // The accounts file's admins found on another thread meanwhile (a read
  // of every account row, none of it written here).
  AccountAdmins account_admins;
  std::thread admins_finder([&] { account_admins = FindAccountAdmins(input, state.orgs); });
  Impact impact = std::move(state.impact);
  // Accounts in file order, so outputs are stable whatever the leaked order.
  state.PutInFileOrder(&impact);
  // The totals by category and country on another thread: they read the
  // affected accounts and write fields of `impact` that nothing below
  // touches.
  std::thread totals([&] { CountTotals(input, &impact); });
  AssignOrgs(input, &state.orgs, &impact);
  admins_finder.join();
  AddAdmins(input, account_admins, &state.orgs, &impact, state.index);
  std::sort(
      impact.orgs.begin(), impact.orgs.end(),
      [](const OrgImpact& left, const OrgImpact& right) { return left.org_id < right.org_id; });
  totals.join();
  return impact;
}

size_t CrossrefStream::email_blocks_made_beside() const { return state_->email_blocks_made_beside; }

Result<Impact> Crossref(const CrossrefInput& input) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<CrossrefStream> stream, CrossrefStream::Start(input));
  stream->Add(*input.leaked, input.leaked_columns->sensitive_cells);
  return stream->Finish();
}

namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

namespace {

// Chunks in flight between two threads of the second reading: at most
// kChunksInFlight wait in each queue, so memory holds a few chunks, never the
// file.
constexpr size_t kChunksInFlight = 2;
// Threads that scan chunks and look their rows up, each a chunk at a time:
// the heaviest work of the second reading (two thirds of its CPU), so on
// two cores it takes both while the reading and the adding up, lighter,
// fit between.
constexpr size_t kMatchThreads = 2;

// A bounded queue between one producer and one consumer: Push waits while it
// is full, Pop while it is empty; Close ends it (Pop then returns nullptr
// once it is empty).
template <typename Item>
class ChunkQueue {
 public:
  void Push(std::unique_ptr<Item> item) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return items_.size() < kChunksInFlight; });
    items_.push_back(std::move(item));
    changed_.notify_all();
  }
  std::unique_ptr<Item> Pop() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return !items_.empty() || closed_; });
    if (items_.empty()) {
      return nullptr;
    }
    std::unique_ptr<Item> item = std::move(items_.front());
    items_.pop_front();
    changed_.notify_all();
    return item;
  }
  void Close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Item>> items_;
  bool closed_ = false;
};

// A chunk of the second reading, read, then scanned and looked up.
struct LeakedChunk {
  uint64_t sequence = 0;  // the chunk's place in the file: 0, 1, 2, ...
  Table rows;
  std::vector<uint8_t> sensitive_cells;
  std::unique_ptr<CrossrefStream::Matches> matches;
};

// Chunks added up, kept for the reader to read into again (their tables'
// buffers keep their capacity: MoveRowsTo swaps them), so that the second
// reading does not allocate a chunk's 20-30 MB, and fault its pages in,
// afresh for every chunk of the file (at 10M rows 153 chunks). Never more
// chunks than were ever in flight at once: one is made only when none is
// here.
class SpareChunks {
 public:
  void Put(std::unique_ptr<LeakedChunk> chunk) {
    chunk->matches.reset();
    std::lock_guard lock(mutex_);
    chunks_.push_back(std::move(chunk));
  }
  // Frees the spare chunks: the reading is over (else they would stay
  // through Finish, the run's peak of memory).
  void Release() {
    std::lock_guard lock(mutex_);
    chunks_.clear();
  }
  // A spare chunk, or a new one when none is spare.
  std::unique_ptr<LeakedChunk> Take() {
    std::lock_guard lock(mutex_);
    if (chunks_.empty()) {
      return std::make_unique<LeakedChunk>();
    }
    std::unique_ptr<LeakedChunk> chunk = std::move(chunks_.back());
    chunks_.pop_back();
    return chunk;
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<LeakedChunk>> chunks_;
};

// Chunks handed back in file order by several producers, each of which may
// finish its chunks out of order: Pop gives the chunk whose sequence is next
// and waits for it. Push waits while kChunksInFlight chunks wait, unless its
// chunk is the next one (else a producer holding the next chunk could wait
// behind chunks that cannot leave before it). Pop returns nullptr once every
// producer has called Close and nothing is left.
class OrderedChunkQueue {
 public:
  explicit OrderedChunkQueue(size_t producers) : producers_open_(producers) {}
  void Push(std::unique_ptr<LeakedChunk> chunk) {
    std::unique_lock lock(mutex_);
    const uint64_t sequence = chunk->sequence;
    changed_.wait(lock,
                  [&] { return items_.size() < kChunksInFlight || sequence == next_; });
    items_.emplace_back(std::move(chunk));
    changed_.notify_all();
  }
  std::unique_ptr<LeakedChunk> Pop() {
    std::unique_lock lock(mutex_);
    auto next = items_.end();
    changed_.wait(lock, [&] {
      next = std::find_if(items_.begin(), items_.end(),
                          [this](const auto& chunk) { return chunk->sequence == next_; });
      return next != items_.end() || producers_open_ == 0;
    });
    if (next == items_.end()) {
      return nullptr;
    }
    std::unique_ptr<LeakedChunk> chunk = std::move(*next);
    items_.erase(next);
    ++next_;
    changed_.notify_all();
    return chunk;
  }
  void Close() {
    std::lock_guard lock(mutex_);
    --producers_open_;
    changed_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::unique_ptr<LeakedChunk>> items_;
  uint64_t next_ = 0;
  size_t producers_open_;
};

}  // namespace

Result<Recognition> RecogniseLeakedFile(const std::string& leaked_path,
                                        const std::vector<ColumnOverride>& overrides,
                                        const privacy::Detectors& detectors, size_t chunk_rows) {
  MP_ASSIGN_OR_RETURN(std::unique_ptr<TableStream> stream, TableStream::Open(leaked_path));
  ColumnSampler sampler(detectors);
  Table chunk;
  while (true) {
    MP_ASSIGN_OR_RETURN(const bool more, stream->Next(&chunk, chunk_rows));
    if (!more) {
      break;
    }
    sampler.Add(chunk);
  }
  return sampler.Decide(chunk, "leaked", overrides);
}

Result<std::unique_ptr<StreamedCrossref>> CrossrefLeakedFile(
    const std::string& leaked_path, CrossrefInput* input,
    const std::vector<ColumnOverride>& overrides, const privacy::Detectors& detectors,
    size_t chunk_rows) {
  const auto recognise_start = std::chrono::steady_clock::now();
  MP_ASSIGN_OR_RETURN(Recognition leaked_columns,
                      RecogniseLeakedFile(leaked_path, overrides, detectors, chunk_rows));
  const double recognise_s = SecondsSince(recognise_start);
  MP_ASSIGN_OR_RETURN(
      std::unique_ptr<StreamedCrossref> result,
      CrossrefRecognisedLeakedFile(leaked_path, input, std::move(leaked_columns), detectors,
                                   chunk_rows));
  result->recognise_s = recognise_s;
  return result;
}

Result<std::unique_ptr<StreamedCrossref>> CrossrefRecognisedLeakedFile(
    const std::string& leaked_path, CrossrefInput* input, Recognition leaked_columns,
    const privacy::Detectors& detectors, size_t chunk_rows) {
  auto result = std::make_unique<StreamedCrossref>();
  result->leaked_columns = std::move(leaked_columns);
  // Every cell scanned, every row matched: read on one thread, scanned and
  // looked up on kMatchThreads others (a chunk each), added up here, in
  // file order.
  const auto match_start = std::chrono::steady_clock::now();
  input->leaked = &result->leaked;
  input->leaked_columns = &result->leaked_columns;
  MP_ASSIGN_OR_RETURN(std::unique_ptr<CrossrefStream> crossref, CrossrefStream::Start(*input));
  result->index_s = SecondsSince(match_start);
  MP_ASSIGN_OR_RETURN(std::unique_ptr<TableStream> stream, TableStream::Open(leaked_path));
  const size_t recognised_columns = result->leaked_columns.columns.size();
  ChunkQueue<LeakedChunk> read;
  OrderedChunkQueue matched(kMatchThreads);
  SpareChunks spare;
  Status read_status;
  std::thread reader([&] {
    for (uint64_t sequence = 0;; ++sequence) {
      const Result<bool> more = stream->Next(&result->leaked, chunk_rows);
      if (!more.ok()) {
        read_status = more.status();
        break;
      }
      // A column the first reading did not see (or one it saw missing at
      // the end): the file changed in between.
      const size_t columns = result->leaked.columns().size();
      if (columns > recognised_columns || (!*more && columns != recognised_columns)) {
        read_status = Status::InvalidArgument(
            leaked_path +
            ": the file changed between its two readings (its columns differ); run again on a "
            "copy that nothing writes");
        break;
      }
      if (!*more) {
        break;
      }
      std::unique_ptr<LeakedChunk> chunk = spare.Take();
      chunk->sequence = sequence;
      result->leaked.MoveRowsTo(&chunk->rows);
      read.Push(std::move(chunk));
    }
    read.Close();
  });
  // Each matcher's scan counts, added to the recognition's once the threads
  // are done.
  std::array<Recognition, kMatchThreads> scanned;
  std::array<std::thread, kMatchThreads> matchers;
  for (size_t matcher_idx = 0; matcher_idx < kMatchThreads; ++matcher_idx) {
    scanned[matcher_idx].columns.resize(recognised_columns);
    matchers[matcher_idx] = std::thread([&, matcher_idx] {
      while (std::unique_ptr<LeakedChunk> chunk = read.Pop()) {
        ScanSensitiveCells(chunk->rows, detectors, &scanned[matcher_idx],
                           &chunk->sensitive_cells);
        chunk->matches = crossref->Match(chunk->rows);
        matched.Push(std::move(chunk));
      }
      matched.Close();
    });
  }
  while (std::unique_ptr<LeakedChunk> chunk = matched.Pop()) {
    crossref->Apply(chunk->rows, chunk->sensitive_cells, *chunk->matches);
    spare.Put(std::move(chunk));
  }
  reader.join();
  for (std::thread& matcher : matchers) {
    matcher.join();
  }
  // The spare chunks, and the buffers the stream's table got back from
  // the last one (swapped for an empty table's), are freed before Finish.
  spare.Release();
  {
    Table emptied;
    result->leaked.MoveRowsTo(&emptied);
  }
  MP_RETURN_IF_ERROR(read_status);
  for (size_t column = 0; column < recognised_columns; ++column) {
    ColumnRecognition& info = result->leaked_columns.columns[column];
    for (const Recognition& counted : scanned) {
      const ColumnRecognition& counts = counted.columns[column];
      info.values_non_empty += counts.values_non_empty;
      info.card_values += counts.card_values;
      info.iban_values += counts.iban_values;
      info.credential_values += counts.credential_values;
    }
  }
  const auto finish_start = std::chrono::steady_clock::now();
  result->impact = crossref->Finish();
  result->finish_s = SecondsSince(finish_start);
  result->match_s = SecondsSince(match_start);
  return result;
}

// ---- Timeline

namespace {

int64_t DaysFromCivil(int64_t year, uint32_t month, uint32_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const uint32_t year_of_era = static_cast<uint32_t>(year - era * 400);
  const uint32_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const uint32_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + static_cast<int64_t>(day_of_era) - 719468;
}

bool ReadDigits(std::string_view text, size_t offset, size_t count, int64_t* value) {
  if (offset + count > text.size()) {
    return false;
  }
  int64_t result = 0;
  for (size_t idx = offset; idx < offset + count; ++idx) {
    if (text[idx] < '0' || text[idx] > '9') {
      return false;
    }
    result = result * 10 + (text[idx] - '0');
  }
  *value = result;
  return true;
}

}  // namespace

Result<int64_t> ParseIsoTime(std::string_view text, std::string_view field) {
  const auto invalid = [&]() {
    return Status::InvalidArgument(std::string(field) + " \"" + std::string(text.substr(0, 64)) +
                                   "\": expected ISO-8601 like 2026-03-01T14:30:00Z or "
                                   "2026-03-01T15:30:00+01:00");
  };
  int64_t year = 0;
  int64_t month = 0;
  int64_t day = 0;
  int64_t hour = 0;
  int64_t minute = 0;
  int64_t second = 0;
  if (!ReadDigits(text, 0, 4, &year) || text.size() < 16 || text[4] != '-' ||
      !ReadDigits(text, 5, 2, &month) || text[7] != '-' || !ReadDigits(text, 8, 2, &day) ||
      (text[10] != 'T' && text[10] != ' ') || !ReadDigits(text, 11, 2, &hour) || text[13] != ':' ||
      !ReadDigits(text, 14, 2, &minute)) {
    return invalid();
  }
  size_t offset = 16;
  if (offset < text.size() && text[offset] == ':') {
    if (!ReadDigits(text, offset + 1, 2, &second)) {
      return invalid();
    }
    offset += 3;
    if (offset < text.size() && (text[offset] == '.' || text[offset] == ',')) {
      ++offset;
      while (offset < text.size() && text[offset] >= '0' && text[offset] <= '9') {
        ++offset;
      }
    }
  }
  static constexpr int64_t kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDaysInMonth[month - 1] || hour > 23 ||
      minute > 59 || second > 60) {
    return invalid();
  }
  int64_t offset_s = 0;
  if (offset >= text.size()) {
    return Status::InvalidArgument(std::string(field) +
                                   ": give the time zone (Z or ±HH:MM); a deadline cannot be "
                                   "computed from a local time");
  }
  if (text[offset] == 'Z' && offset + 1 == text.size()) {
    offset_s = 0;
  } else if (text[offset] == '+' || text[offset] == '-') {
    int64_t offset_hours = 0;
    int64_t offset_minutes = 0;
    const bool colon = offset + 3 < text.size() && text[offset + 3] == ':';
    if (!ReadDigits(text, offset + 1, 2, &offset_hours) ||
        !ReadDigits(text, offset + (colon ? 4 : 3), 2, &offset_minutes) ||
        offset + (colon ? 6 : 5) != text.size() || offset_hours > 23 || offset_minutes > 59) {
      return invalid();
    }
    offset_s = (offset_hours * 3600 + offset_minutes * 60) * (text[offset] == '-' ? -1 : 1);
  } else {
    return invalid();
  }
  const int64_t days =
      DaysFromCivil(year, static_cast<uint32_t>(month), static_cast<uint32_t>(day));
  return days * 86400 + hour * 3600 + minute * 60 + std::min<int64_t>(second, 59) - offset_s;
}

std::string FormatIsoTime(int64_t seconds) {
  int64_t days = seconds / 86400;
  int64_t rest = seconds % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  // civil_from_days (H. Hinnant).
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1;
  const int64_t month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  char text[128];
  std::snprintf(text, sizeof(text), "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ",
                static_cast<long long>(year), static_cast<long long>(month),
                static_cast<long long>(day), static_cast<long long>(rest / 3600),
                static_cast<long long>(rest / 60 % 60), static_cast<long long>(rest % 60));
  return text;
}

Result<Timeline> MakeTimeline(std::optional<std::string> detected,
                              std::optional<std::string> contained,
                              std::optional<std::string> notified) {
  Timeline timeline;
  if (detected.has_value()) {
    MP_ASSIGN_OR_RETURN(timeline.detected_s, ParseIsoTime(*detected, "--detected"));
    timeline.deadline_s = *timeline.detected_s + int64_t{kGdprNotificationHours} * 3600;
  }
  if (contained.has_value()) {
    MP_ASSIGN_OR_RETURN(timeline.contained_s, ParseIsoTime(*contained, "--contained"));
  }
  if (notified.has_value()) {
    MP_ASSIGN_OR_RETURN(timeline.notified_s, ParseIsoTime(*notified, "--notified"));
  }
  if (timeline.detected_s && timeline.contained_s && *timeline.contained_s < *timeline.detected_s) {
    return Status::InvalidArgument("--contained is before --detected");
  }
  if (timeline.detected_s && timeline.notified_s && *timeline.notified_s < *timeline.detected_s) {
    return Status::InvalidArgument("--notified is before --detected");
  }
  return timeline;
}

}  // namespace minpanel::incident
