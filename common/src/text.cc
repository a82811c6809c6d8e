#include "lb/common/text.h"

#include <time.h>

#include <cstdio>

namespace lb::common {

std::pair<char32_t, std::size_t> DecodeUtf8(std::string_view text, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[i + k]); };
  const unsigned char b0 = byte(0);
  std::size_t length = 0;
  char32_t cp = 0;
  char32_t min = 0;
  if (b0 < 0x80) return {b0, 1};
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {0, 0};
  }
  if (i + length > text.size()) return {0, 0};
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return {0, 0};
    cp = (cp << 6) | (byte(k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {0, 0};
  return {cp, length};
}

std::string FormatUtc(int64_t unix_us, UtcFormat format) {
  if (unix_us < 0) unix_us = 0;
  const time_t seconds = static_cast<time_t>(unix_us / 1000000);
  const int micros = static_cast<int>(unix_us % 1000000);
  struct tm tm {};
  gmtime_r(&seconds, &tm);
  char text[64];
  const int year = tm.tm_year + 1900;
  const int month = tm.tm_mon + 1;
  switch (format) {
    case UtcFormat::kMillis:
      std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, month,
                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros / 1000);
      break;
    case UtcFormat::kMicros:
      std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", year, month,
                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
      break;
    case UtcFormat::kCompact:
      std::snprintf(text, sizeof text, "%04d%02d%02dT%02d%02d%02d.%06dZ", year, month, tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
      break;
  }
  return text;
}

}  // namespace lb::common
