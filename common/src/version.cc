#include "lb/common/version.h"

#ifndef LB_VERSION
#error "LB_VERSION is defined by common/CMakeLists.txt"
#endif

namespace lb::common {

std::string_view Version() { return LB_VERSION; }

}  // namespace lb::common
