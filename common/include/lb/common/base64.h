// Base64 (RFC 4648, the standard alphabet, with padding): the state file keeps non-UTF-8
// arguments that way, and etcd's JSON gateway carries every key and value that way.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lb::common {

std::string Base64Encode(std::string_view bytes);
// nullopt for text that is not canonical padded base64 (a length not a multiple of 4, a
// character outside the alphabet, padding anywhere but at the end).
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace lb::common
