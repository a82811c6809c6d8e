// Fuzz target: haproxy's `show info` answer (lb::agent::ParseShowInfo).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "haproxy_parsers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lb::agent::ParseShowInfo(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
