// Text that lb-agent, lb-bridge, lb-controller and lbctl write for people: the UTF-8 decoding
// behind every escape of untrusted text (the log, lbctl's terminal output) and UTC time stamps.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace lb::common {

// The code point of the UTF-8 sequence at text[i] (i < text.size()) and its length in bytes;
// length 0 when the bytes there are not a valid sequence (truncated, overlong, a surrogate,
// above U+10FFFF).
std::pair<char32_t, std::size_t> DecodeUtf8(std::string_view text, std::size_t i);

enum class UtcFormat {
  kMillis,   // 2026-11-24T10:31:02.123Z (RFC 3339)
  kMicros,   // 2026-11-24T10:31:02.123456Z (RFC 3339)
  kCompact,  // 20261124T103102.123456Z (a file name)
};
// `unix_us` (microseconds since the epoch, clamped at 0) as UTC in `format`.
std::string FormatUtc(int64_t unix_us, UtcFormat format);

}  // namespace lb::common
