// ReplyFn: how the answer to a command travels back to whoever asked (the command socket, a
// fleet push). Called exactly once, from any thread.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "lb/proto/status.h"

namespace lb::agent {

using ReplyFn = std::function<void(const proto::Status&, const nlohmann::json& result)>;

}  // namespace lb::agent
