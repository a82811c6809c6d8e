#include "lb/proto/status.h"

#include <array>

namespace lb::proto {
namespace {

struct CodeName {
  ErrorCode code;
  std::string_view name;
};

constexpr std::array<CodeName, 12> kNames = {{
    {ErrorCode::kOk, "ok"},
    {ErrorCode::kBadRequest, "bad_request"},
    {ErrorCode::kUnknownCommand, "unknown_command"},
    {ErrorCode::kTooLarge, "too_large"},
    {ErrorCode::kInvalidConfig, "invalid_config"},
    {ErrorCode::kReloadFailed, "reload_failed"},
    {ErrorCode::kConflict, "conflict"},
    {ErrorCode::kSuperseded, "superseded"},
    {ErrorCode::kHaproxyUnavailable, "haproxy_unavailable"},
    {ErrorCode::kTimeout, "timeout"},
    {ErrorCode::kInternal, "internal"},
    {ErrorCode::kUnavailable, "unavailable"},
}};

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  for (const auto& entry : kNames) {
    if (entry.code == code) return entry.name;
  }
  return "internal";
}

ErrorCode ErrorCodeFromName(std::string_view name) {
  for (const auto& entry : kNames) {
    if (entry.name == name) return entry.code;
  }
  return ErrorCode::kInternal;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(ErrorCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace lb::proto
