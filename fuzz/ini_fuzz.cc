// Fuzz target: the INI reader (lb::common::ParseIni) that reads lb-agent.cfg.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "lb/common/ini.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::map<std::string, int> section_lines;
  (void)lb::common::ParseIni(text, "fuzz.cfg", &section_lines);
  return 0;
}
