// Fuzz target: the master socket's `show proc` answer (lb::agent::ParseShowProc).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "haproxy_parsers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lb::agent::ParseShowProc(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
