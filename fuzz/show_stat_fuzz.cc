// Fuzz target: haproxy's `show stat` CSV (ParseShowStat, ParseCompleteShowStat) and what the
// agent builds from it for `status` (BackendsFromStats for all backends and for one by name).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "haproxy_parsers.h"
#include "lb/proto/backends.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view csv(reinterpret_cast<const char*>(data), size);
  (void)lb::agent::ParseCompleteShowStat(csv);
  auto rows = lb::agent::ParseShowStat(csv);
  if (!rows.ok()) return 0;
  for (const std::string& backend :
       {std::string("*"), rows->empty() ? std::string("app") : (*rows)[0].pxname}) {
    auto backends = lb::agent::BackendsFromStats(*rows, backend);
    if (!backends.ok()) continue;
    for (const auto& b : *backends) (void)lb::proto::ToJson(b);
  }
  return 0;
}
