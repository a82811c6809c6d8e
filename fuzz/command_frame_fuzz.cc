// Fuzz target: one frame arriving on the agent's command socket.
//
// Does what CommandServer::Run and Agent::Handle do with an untrusted frame, minus the sockets
// and the work: DecodeRequest with the agent's limits, the error or ok reply encoded with the
// caller's id, and the argument parsing of every command (ReloadRequestFromArgs for reload and
// validate, StringArg for status). Also DecodeReply (what the bridge and lbctl do with the
// agent's answer), every fleet message through proto/fleet.h as each end reads it (the agent: a
// controller message, and a push's args as a reload; lb-controller: an agent message and the
// args of each control command; lbctl: the control results), and two round-trip properties:
// whatever decodes re-encodes to a frame that decodes to the same value, and whatever a fleet
// parser accepts re-encodes to a message it accepts again, unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "lb/proto/fleet.h"
#include "reload_pipeline.h"

namespace {

lb::proto::DecodeLimits AgentLimits() {
  lb::proto::DecodeLimits limits;
  // As Agent::Run: room for the largest config plus the envelope of the message.
  limits.max_frame_bytes = lb::common::Settings().agent.max_config_bytes + 64 * 1024;
  limits.max_objects = 10000;
  return limits;
}

// Values of a decoded message as the object-count limit counts them: each value, container and
// map key one (a map key seen twice collapses into one here, so this is at most the frame's).
std::size_t CountValues(const nlohmann::json& value) {
  std::size_t n = 1;
  if (value.is_object()) {
    for (const auto& [key, item] : value.items()) n += 1 + CountValues(item);
  } else if (value.is_array()) {
    for (const auto& item : value) n += CountValues(item);
  }
  return n;
}

// What `parse` accepts, `encode` writes back as a message `parse` accepts again, unchanged.
template <typename Parse, typename Encode>
void ExpectStable(const nlohmann::json& message, Parse parse, Encode encode) {
  auto parsed = parse(message);
  if (!parsed.ok()) return;
  const nlohmann::json encoded = encode(*parsed);
  auto again = parse(encoded);
  if (!again.ok() || encode(*again) != encoded) std::abort();
}

void ReadFleetMessages(const nlohmann::json& message) {
  namespace proto = lb::proto;
  // The agent's fleet client.
  auto controller = proto::ParseControllerMessage(message);
  if (controller.ok()) {
    if (auto* push = std::get_if<proto::FleetPush>(&*controller)) {
      (void)proto::TargetKey(push->target);
      if (push->args.is_object()) (void)lb::agent::ReloadRequestFromArgs(push->args);
    }
  }
  ExpectStable(message, proto::ParsePush, proto::EncodePush);
  ExpectStable(message, proto::ParseBeacon, proto::EncodeBeacon);
  // lb-controller: what agents and control clients send.
  (void)proto::ParseAgentMessage(message);
  ExpectStable(message, proto::ParseHello, proto::EncodeHello);
  ExpectStable(message, proto::ParseAck, proto::EncodeAck);
  ExpectStable(message, proto::ParsePushRequest, proto::EncodePushRequest);
  ExpectStable(message, proto::ParseAgentsRequest, proto::EncodeAgentsRequest);
  ExpectStable(message, proto::ParseAcksRequest, proto::EncodeAcksRequest);
  // lbctl: the control results.
  ExpectStable(message, proto::ParsePushResult, proto::EncodePushResult);
  ExpectStable(message, proto::ParseAgentsResult, proto::EncodeAgentsResult);
  ExpectStable(message, proto::ParseAcksResult, proto::EncodeAcksResult);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lb::proto::DecodeLimits limits = AgentLimits();
  const std::string_view frame(reinterpret_cast<const char*>(data), size);

  lb::proto::DecodedRequest decoded = lb::proto::DecodeRequest(frame, limits);
  if (!decoded.status.ok()) {
    (void)lb::proto::EncodeErrorReply(decoded.request.id, decoded.status);
  } else {
    const nlohmann::json& args = decoded.request.args;
    auto reload = lb::agent::ReloadRequestFromArgs(args);
    auto backend = lb::proto::StringArg(args, "backend", "scaling_nodes");
    auto force = lb::proto::BoolArg(args, "force", false);
    const lb::proto::Status& status = !reload.ok()    ? reload.status()
                                      : !backend.ok() ? backend.status()
                                                      : force.status();
    if (status.ok()) {
      (void)lb::proto::EncodeOkReply(decoded.request.id, args);
    } else {
      (void)lb::proto::EncodeErrorReply(decoded.request.id, status);
    }
  }

  auto reply = lb::proto::DecodeReply(frame, limits);
  if (reply.ok()) (void)lb::proto::ReplyToJson(*reply);

  // The object-count limit (checked by a scan before unpacking) never lets more values through.
  lb::proto::DecodeLimits few = limits;
  few.max_objects = 16;
  auto small = lb::proto::DecodeMsgpack(frame, few);
  if (small.ok() && CountValues(*small) > 16) std::abort();

  auto value = lb::proto::DecodeMsgpack(frame, limits);
  if (value.ok()) {
    ReadFleetMessages(*value);
    // Compared as encodings, not as JSON values: NaN != NaN.
    const std::string encoded = lb::proto::EncodeMsgpack(*value);
    auto again = lb::proto::DecodeMsgpack(encoded, limits);
    if (!again.ok() || lb::proto::EncodeMsgpack(*again) != encoded) {
      std::abort();  // the codec lost or changed a value
    }
  }
  return 0;
}
