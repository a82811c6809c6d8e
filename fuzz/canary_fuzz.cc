// Not a parser: a target that aborts on exactly one input, the one in fuzz/corpus/canary/.
// tests/scripts/fuzz_crash_test.sh runs `scripts/fuzz canary` and expects it to fail, which
// proves that a crashing target makes scripts/fuzz (and so CI) exit non-zero. scripts/fuzz runs
// it only when asked by name.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr std::string_view kTrigger = "lb-agent fuzz canary: abort here\n";
  if (std::string_view(reinterpret_cast<const char*>(data), size) == kTrigger) std::abort();
  return 0;
}
