// Text helpers shared by the zcert certificate reader and the allow-list parser (private to
// lb_curve).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lb::common::zcert {

// Largest certificate or allow-list file read: a list of a million keys is ~45 MB; nothing
// legitimate comes near this.
inline constexpr std::size_t kMaxFileBytes = 64 * 1024 * 1024;

// `s` without leading and trailing blanks (space, tab, CR, LF).
std::string Trim(std::string_view s);

// The value of a zcert `name = "value"` line (quotes removed), or nullopt when the line is not
// that key.
std::optional<std::string> Value(std::string_view line, std::string_view name);

}  // namespace lb::common::zcert
