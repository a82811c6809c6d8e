// Fuzz target: lb-agent.cfg to typed settings (lb::common::ParseSettings): the INI reader plus
// every key's parser and the checks across keys.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lb/common/settings.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)lb::common::ParseSettings(text, "fuzz.cfg", "/etc/lb-agent");
  return 0;
}
