// The version every binary reports (--version, `ping`, `info`): the project version of the
// top-level CMakeLists.txt, compiled into this library's version.cc and nowhere else.
#pragma once

#include <string_view>

namespace lb::common {

// "0.1.0".
std::string_view Version();

}  // namespace lb::common
