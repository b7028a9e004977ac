// Internal to the incident module: the table readers with their CSV fast
// path switched off, so tests and fuzz/incident_stream_fuzz.cc can check
// that lines split without libcsv read exactly as libcsv reads them.
#pragma once

#include <string_view>

#include "incident/incident.h"

namespace minpanel::incident {

// ParseTable, with `plain_lines` false: every CSV line fed to libcsv.
Result<Table> ParseTableWith(std::string_view text, bool plain_lines);

}  // namespace minpanel::incident
