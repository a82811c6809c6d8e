// Fuzz target: one frame arriving on the agent's command socket.
//
// Does what CommandServer::Run and Agent::Handle do with an untrusted frame, minus the sockets
// and the work: DecodeRequest with the agent's limits, the error or ok reply encoded with the
// caller's id, and the argument parsing of every command (ReloadRequestFromArgs for reload and
// validate, StringArg for status). Also DecodeReply (what the bridge and lbctl do with the
// agent's answer), the fleet client's reading of a controller message (DecodeMsgpack then
// ParseFleetMessage, and a push's args as a reload) and a round-trip property: whatever decodes
// re-encodes to a frame that decodes to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "fleet_state.h"
#include "lb/common/settings.h"
#include "lb/proto/codec.h"
#include "reload_pipeline.h"

namespace {

lb::proto::DecodeLimits AgentLimits() {
  lb::proto::DecodeLimits limits;
  // As Agent::Run: room for the largest config plus the envelope of the message.
  limits.max_frame_bytes = lb::common::Settings().agent.max_config_bytes + 64 * 1024;
  return limits;
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

  auto value = lb::proto::DecodeMsgpack(frame, limits);
  if (value.ok()) {
    auto message = lb::agent::ParseFleetMessage(*value);
    if (message.ok()) {
      if (auto* push = std::get_if<lb::agent::FleetPush>(&*message)) {
        (void)push->target.ToString();
        if (push->args.is_object()) (void)lb::agent::ReloadRequestFromArgs(push->args);
      }
    }
    // Compared as encodings, not as JSON values: NaN != NaN.
    const std::string encoded = lb::proto::EncodeMsgpack(*value);
    auto again = lb::proto::DecodeMsgpack(encoded, limits);
    if (!again.ok() || lb::proto::EncodeMsgpack(*again) != encoded) {
      std::abort();  // the codec lost or changed a value
    }
  }
  return 0;
}
