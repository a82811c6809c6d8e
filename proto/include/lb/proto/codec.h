// The command-socket wire format: one msgpack map per frame (see proto/PROTOCOL.md).
//
//   request:  {"v": 1, "id": <any>, "cmd": <str>, "args": {...}}
//   reply:    {"v": 1, "id": <echoed>, "ok": true,  "result": {...}}
//             {"v": 1, "id": <echoed>, "ok": false, "error": {"code", "message", "details"?}}
//
// Frames are untrusted. Decoding never allocates more than the limits allow (msgpack-c's own
// defaults trust the sizes written in the data), never throws, and returns a Status a person
// can act on. In memory a decoded value is an nlohmann::json: msgpack str and bin both become
// JSON strings (bytes kept as they are), map keys must be strings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lb/proto/backends.h"
#include "lb/proto/status.h"

namespace lb::proto {

inline constexpr int kProtocolVersion = 1;

struct DecodeLimits {
  // Largest frame accepted at all; larger frames are `too_large` without being parsed.
  std::size_t max_frame_bytes = 17 * 1024 * 1024;
  // Largest map or array (entries) and deepest nesting.
  std::size_t max_container_entries = 100000;
  std::size_t max_depth = 32;
  // Most msgpack values (every nil, number, string, container and map key counts one) in one
  // frame, counted by a scan of the bytes before anything is unpacked: a frame of millions of
  // one-byte values would otherwise cost dozens of bytes of memory and a little time each.
  std::size_t max_objects = 2000000;
};

// Decodes one msgpack value that must fill the whole frame.
Result<nlohmann::json> DecodeMsgpack(std::string_view frame, const DecodeLimits& limits);
// Encodes a JSON value as msgpack (objects -> maps, strings -> str, integers keep their sign).
std::string EncodeMsgpack(const nlohmann::json& value);

struct Request {
  nlohmann::json id;  // any value; echoed in the reply
  std::string cmd;
  nlohmann::json args = nlohmann::json::object();
};

// What a frame decoded to. `id` is filled whenever the frame was a map with an "id", even when
// `status` is an error, so that the error reply still carries the caller's id.
struct DecodedRequest {
  Status status;
  Request request;
};

DecodedRequest DecodeRequest(std::string_view frame, const DecodeLimits& limits);
std::string EncodeRequest(const Request& request);

struct Reply {
  nlohmann::json id;
  Status status;          // ok() for an "ok": true reply
  nlohmann::json result;  // the result map when ok
};

std::string EncodeOkReply(const nlohmann::json& id, const nlohmann::json& result);
std::string EncodeErrorReply(const nlohmann::json& id, const Status& status);
// A result that is already one encoded msgpack value (EncodeStatusResult): EncodeOkReply and
// EncodeMsgpack write its bytes into the frame as they are, so an answer packed once can be sent
// to many requests. In memory it is a JSON binary value of subtype kPreEncodedSubtype; only the
// encoder gives it meaning.
inline constexpr std::uint8_t kPreEncodedSubtype = 0x4c;
nlohmann::json PreEncoded(std::string_view msgpack_bytes);

// The `status` result {"backends": [...], "epoch", "seq"} (PROTOCOL.md) packed straight from
// the typed backends, byte for byte what EncodeMsgpack gives for the same result built with
// ToJson, without building it.
std::string EncodeStatusResult(const std::vector<BackendStatus>& backends, uint64_t seq,
                               int64_t epoch);

// The reply as a JSON object (same shape as on the wire), for logs and the bridge.
nlohmann::json ReplyToJson(const Reply& reply);
Result<Reply> DecodeReply(std::string_view frame, const DecodeLimits& limits);

// Argument helpers for command handlers: a missing key yields the default; a key of the wrong
// type yields `bad_request` naming the key and the expected type.
Result<std::string> StringArg(const nlohmann::json& args, std::string_view key,
                              std::string default_value);
Result<bool> BoolArg(const nlohmann::json& args, std::string_view key, bool default_value);

}  // namespace lb::proto
