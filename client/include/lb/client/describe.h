// How durations are shown to a person in the clients' messages.
#pragma once

#include <chrono>
#include <string>

namespace lb::client {

// "30 s", "0.5 s", "0.25 s".
std::string DescribeSeconds(std::chrono::milliseconds duration);

}  // namespace lb::client
