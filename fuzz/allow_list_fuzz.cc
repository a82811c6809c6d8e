// Fuzz target: a CURVE allow-list file (lb::common::ParseAllowList): Z85 keys, zcert
// public-key lines, comments.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "lb/common/allow_list.h"
#include "lb/common/curve_socket.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto keys = lb::common::ParseAllowList(text, "fuzz-allow-list");
  if (keys.ok()) {
    for (const auto& key : *keys) {
      if (!lb::common::IsZ85Key(key)) std::abort();  // only valid keys may be allowed
    }
  }
  return 0;
}
