// The erasure journal of the embedded engine: every erasure of subjects and
// every property purge the store retires (a purge dropped it from the
// manifest once no file held its rows or values) is first appended here,
// durably, with its log position, so that the erasures and property purges
// made after a backup can be re-applied to a restore of it (docs/privacy.md,
// "Backup and restore"). Until it retires, a deletion is
// in the manifest or the log, which ReadErasures reads too. Internal to the
// store module; the public reader is store::ErasuresSince (online_copy.h).
//
// `<journal folder>/ERASURES` (Options::erasure_journal_folder, outside
// the data folder): magic "MPERJ\r\n\x1a", version u32 (1), then records
// of u32 payload length, u32 CRC-32 of the payload, and the payload: log
// file varint, log offset varint, the deletion body (docs/formats/wal.md,
// "Deletion payload"). A torn or damaged tail ends the journal for readers
// (the next append starts after it, so nothing later is read past it: the
// writer first cuts such a tail).
#pragma once

#include <string>
#include <vector>

#include "core/core.h"
#include "store/manifest.h"

namespace minpanel::store {

inline constexpr char kErasureJournalName[] = "ERASURES";

// The number of a log file from its name (NNNNNN.log); 0 when it is not one.
uint64_t LogFileNumber(const std::string& name);

// Whether a deletion is journalled (and restored): an erasure of subjects
// or a property purge. Time drops and profile expiries are not: the
// retention rules apply them again.
bool Journalled(const Deletion& deletion);

// Appends the journalled deletions among `deletions` to the journal in
// `journal_folder` (created 0700 if missing), synced before it returns.
Status AppendErasureJournal(FileSystem& file_system, const std::string& journal_folder,
                            const std::vector<Deletion>& deletions);

// Every journalled deletion (erasure of subjects or property purge) the
// store in `store_folder` holds: retired (the
// journal in `journal_folder`; empty: none), in force (the manifest) and
// logged since its last flush (the log), each once, in log order. Reads
// only; a server may be writing.
Result<std::vector<Deletion>> ReadErasures(FileSystem& file_system, const std::string& store_folder,
                                           const std::string& journal_folder);

}  // namespace minpanel::store
