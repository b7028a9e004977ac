// How `minpanel debug dump` prints values, shared by the log, segment and
// manifest dumps: every stored byte readable on one line.
#pragma once

#include <ostream>
#include <string_view>

#include "core/event.h"

namespace minpanel::store {

// Quotes text, escaping quotes, backslashes and control bytes so that any
// bytes print on one line; other bytes (UTF-8 included) print as they are.
void PrintString(std::string_view text, std::ostream& out);

// Enough digits to tell any two doubles apart, and always marked as a
// double (0 prints as 0.0, unlike the int 0).
void PrintDouble(double value, std::ostream& out);

// null, true/false, ints, doubles (PrintDouble), strings and lists of
// strings (PrintString).
void PrintValue(const Value& value, std::ostream& out);

// An event's policy version: the number, or "unknown" (kPolicyVersionUnknown:
// stored by a binary from before events recorded it).
void PrintPolicyVersion(uint32_t policy_version, std::ostream& out);

}  // namespace minpanel::store
