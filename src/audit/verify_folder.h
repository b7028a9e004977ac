// Internal to the audit module: VerifyFolder with a visitor, shared by
// VerifyFolder (log_reader.cc) and VerifyFolderAndSubjectFiles
// (subject_files_check.cc), which checks each record's subject file as the
// walk passes it. Kept out of audit.h so that its includers are not rebuilt.
#pragma once

#include <string>

#include "audit/audit.h"

namespace minpanel::audit::internal {

// Opens `folder`'s `log` (NotFound when there is none) and `anchors` (when
// present) and walks the log with VerifyLog, calling `visit` with each record.
Result<VerifyReport> VerifyFolderVisiting(const std::string& folder, FileSystem& file_system,
                                          const PublicKey* public_key,
                                          const RecordVisitor& visit);

}  // namespace minpanel::audit::internal
