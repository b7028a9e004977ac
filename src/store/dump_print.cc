#include "store/dump_print.h"

#include <iomanip>
#include <sstream>

namespace minpanel::store {

void PrintString(std::string_view text, std::ostream& out) {
  out << '"';
  for (const char c : text) {
    const auto byte = static_cast<uint8_t>(c);
    if (c == '"' || c == '\\') {
      out << '\\' << c;
    } else if (byte < 0x20 || byte == 0x7f) {
      out << "\\x"
          << "0123456789abcdef"[byte >> 4] << "0123456789abcdef"[byte & 15];
    } else {
      out << c;
    }
  }
  out << '"';
}

void PrintDouble(double value, std::ostream& out) {
  std::ostringstream text;
  text << std::setprecision(17) << value;
  const std::string printed = text.str();
  out << printed;
  if (printed.find_first_of(".eEn") == std::string::npos) {
    out << ".0";
  }
}

void PrintValue(const Value& value, std::ostream& out) {
  switch (value.type()) {
    case Value::Type::kNull:
      out << "null";
      return;
    case Value::Type::kBool:
      out << (value.as_bool() ? "true" : "false");
      return;
    case Value::Type::kInt:
      out << value.as_int();
      return;
    case Value::Type::kDouble:
      PrintDouble(value.as_double(), out);
      return;
    case Value::Type::kString:
      PrintString(value.as_string(), out);
      return;
    case Value::Type::kList: {
      out << '[';
      const char* separator = "";
      for (const std::string& item : value.as_list()) {
        out << separator;
        PrintString(item, out);
        separator = ", ";
      }
      out << ']';
      return;
    }
  }
}

void PrintPolicyVersion(uint32_t policy_version, std::ostream& out) {
  if (policy_version == kPolicyVersionUnknown) {
    out << "unknown";
  } else {
    out << policy_version;
  }
}

}  // namespace minpanel::store
