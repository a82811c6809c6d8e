// Status and Result<T>: how every expected failure travels through lb-agent.
//
// A Status is either OK or an ErrorCode with a message a person can act on, plus optional
// code-specific details (for example the sha256 that won for `superseded`, or haproxy's own
// error lines for `invalid_config`). Nothing in lb-agent throws across a component boundary:
// exceptions from msgpack, json, cppzmq and httplib are caught in the one adapter that calls
// each library and turned into a Status there.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace lb::proto {

// The error codes of the wire protocol (see proto/PROTOCOL.md). Their spelling on the wire is
// ErrorCodeName(); adding a code is a protocol change.
enum class ErrorCode {
  kOk,
  kBadRequest,          // malformed frame or arguments
  kUnknownCommand,      // `cmd` names no command
  kTooLarge,            // frame or config above the configured limit
  kInvalidConfig,       // refused by `haproxy -c` or by the agent's own checks
  kReloadFailed,        // haproxy did not take the new config; see details.rolled_back
  kConflict,            // expect_sha256 differs from the live config
  kSuperseded,          // a newer queued reload won; details.sha256 names it
  kHaproxyUnavailable,  // stats/master socket unreachable, haproxy not running
  kTimeout,             // a deadline passed (child process, socket, agent)
  kInternal,            // a bug or an OS failure the caller cannot fix
  kUnavailable,         // the agent itself cannot be reached (used by clients and the bridge)
};

// "bad_request", "unknown_command", ... Never returns an empty string.
std::string_view ErrorCodeName(ErrorCode code);
// Inverse of ErrorCodeName; unknown names map to kInternal.
ErrorCode ErrorCodeFromName(std::string_view name);

class Status {
 public:
  Status() = default;  // OK
  Status(ErrorCode code, std::string message, nlohmann::json details = nullptr)
      : code_(code), message_(std::move(message)), details_(std::move(details)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // A JSON object with code-specific fields, or null.
  const nlohmann::json& details() const { return details_; }
  nlohmann::json& mutable_details() { return details_; }

  // "invalid_config: <message>", or "ok".
  std::string ToString() const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
  nlohmann::json details_;
};

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Precondition: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }
  const T& operator*() const { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace lb::proto
