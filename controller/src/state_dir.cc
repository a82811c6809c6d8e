#include "state_dir.h"

#include <filesystem>
#include <map>
#include <vector>

#include "lb/common/base64.h"
#include "lb/common/file.h"
#include "lb/proto/codec.h"

namespace lb::controller {
namespace {

using common::Base64Decode;
using common::Base64Encode;
using nlohmann::json;
using proto::ErrorCode;
using proto::FleetTarget;
using proto::Result;
using proto::Status;

constexpr int kFormat = 2;
// The state file holds whole configs; far above any sane number of them.
constexpr size_t kMaxStateBytes = 1024 * 1024 * 1024;

// {"json": args} when the args are valid UTF-8 throughout, else {"msgpack_base64": "..."}.
json EncodeArgs(const json& args) {
  try {
    (void)args.dump();  // throws on a string that is not UTF-8
    return {{"json", args}};
  } catch (const json::exception&) {
    return {{"msgpack_base64", Base64Encode(proto::EncodeMsgpack(args))}};
  }
}

Result<json> DecodeArgs(const json& entry) {
  if (entry.is_object() && entry.contains("json")) return entry["json"];
  if (entry.is_object() && entry.contains("msgpack_base64") &&
      entry["msgpack_base64"].is_string()) {
    auto bytes = Base64Decode(entry["msgpack_base64"].get<std::string>());
    if (!bytes) return Status(ErrorCode::kInternal, "bad base64");
    proto::DecodeLimits limits;
    limits.max_frame_bytes = kMaxStateBytes;
    return proto::DecodeMsgpack(*bytes, limits);
  }
  return Status(ErrorCode::kInternal,
                "an args entry is neither {\"json\"} nor {\"msgpack_base64\"}");
}

// Writes the args of every push once, and each push as {"version", "target", "cmd", "args":
// index, "ts_ms"}.
class PushWriter {
 public:
  json Push(const StoredPush& push) {
    static const json* const empty = new json(json::object());
    const json* a = push.args ? push.args.get() : empty;
    auto [it, inserted] = index_.emplace(a, args_.size());
    if (inserted) args_.push_back(EncodeArgs(*a));
    return {{"version", push.version},
            {"target", proto::EncodeTarget(push.target)},
            {"cmd", push.cmd},
            {"args", it->second},
            {"ts_ms", push.ts_ms}};
  }
  json TakeArgs() { return std::move(args_); }

 private:
  json args_ = json::array();
  std::map<const json*, size_t> index_;  // shared args are written once
};

}  // namespace

std::string_view DesiredBecauseName(DesiredBecause because) {
  return because == DesiredBecause::kOperator ? "operator" : "applied";
}

nlohmann::json EncodeStateDocument(const PersistentState& state) {
  PushWriter writer;
  json targets = json::array();
  for (const auto& [key, target] : state.targets) {
    json entry = {{"key", key},
                  {"desired", nullptr},
                  {"because", DesiredBecauseName(target.because)},
                  {"pending", nullptr},
                  {"awaiting", target.awaiting},
                  {"rejected_version", target.rejected_version}};
    if (target.desired) entry["desired"] = writer.Push(*target.desired);
    if (target.pending) entry["pending"] = writer.Push(*target.pending);
    targets.push_back(std::move(entry));
  }
  json file = {{"format", kFormat},
               {"controller", state.controller_id},
               {"latest", state.latest},
               {"targets", std::move(targets)},
               {"agent_keys", state.agent_keys}};
  file["args"] = writer.TakeArgs();
  return file;
}

std::string EncodeState(const PersistentState& state) {
  return EncodeStateDocument(state).dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Status BadState(const std::string& origin, const std::string& what) {
  return Status(ErrorCode::kInternal,
                origin + ": " + what +
                    " (restore it from a backup; starting from an empty state would restart "
                    "versions at 1, below what agents already processed)");
}

Result<PersistentState> DecodeState(std::string_view text, const std::string& origin) {
  json file;
  try {
    file = json::parse(text);
  } catch (const json::exception& e) {
    return BadState(origin, std::string("not JSON: ") + e.what());
  }
  return DecodeStateDocument(file, origin);
}

Result<PersistentState> DecodeStateDocument(const nlohmann::json& file, const std::string& origin) {
  auto bad = [&](const std::string& what) { return BadState(origin, what); };
  if (!file.is_object()) return bad("not a JSON object");
  const json format = file.value("format", json());
  if (format != json(1) && format != json(kFormat))
    return bad("unknown \"format\", expected 1 or 2");
  PersistentState state;
  if (!file.contains("latest") || !file["latest"].is_number_unsigned()) {
    return bad("\"latest\" is not a whole number");
  }
  state.latest = file["latest"].get<uint64_t>();
  if (file.contains("controller") && file["controller"].is_string()) {
    state.controller_id = file["controller"].get<std::string>();
  }
  std::vector<std::shared_ptr<const json>> args;
  if (!file.contains("args") || !file["args"].is_array()) return bad("\"args\" is not a list");
  for (const auto& entry : file["args"]) {
    auto decoded = DecodeArgs(entry);
    if (!decoded.ok()) {
      return bad("args entry " + std::to_string(args.size()) + ": " + decoded.status().message());
    }
    args.push_back(std::make_shared<const json>(std::move(*decoded)));
  }
  auto read_push = [&](const json& entry) -> Result<StoredPush> {
    if (!entry.is_object()) return bad("a push is not an object");
    StoredPush push;
    if (!entry.contains("version") || !entry["version"].is_number_unsigned()) {
      return bad("a push has no whole-number \"version\"");
    }
    push.version = entry["version"].get<uint64_t>();
    const std::string which = "push " + std::to_string(push.version);
    if (push.version == 0 || push.version > state.latest) {
      return bad(which + " is not in 1.." + std::to_string(state.latest) + " (\"latest\")");
    }
    auto target = proto::ParseTarget(entry.value("target", json()));
    if (!target.ok()) return bad(which + ": " + target.status().message());
    push.target = *target;
    if (!entry.contains("cmd") || !entry["cmd"].is_string()) return bad(which + " has no \"cmd\"");
    push.cmd = entry["cmd"].get<std::string>();
    if (!entry.contains("args") || !entry["args"].is_number_unsigned() ||
        entry["args"].get<uint64_t>() >= args.size()) {
      return bad(which + " names no stored args");
    }
    push.args = args[entry["args"].get<uint64_t>()];
    if (entry.contains("ts_ms") && entry["ts_ms"].is_number_integer()) {
      push.ts_ms = entry["ts_ms"].get<int64_t>();
    }
    return push;
  };
  // A push belongs under its own target's key.
  auto check_key = [&](const StoredPush& push, const std::string& key) -> Status {
    if (proto::TargetKey(push.target) != key) {
      return bad("push " + std::to_string(push.version) + " for " + proto::TargetKey(push.target) +
                 " is stored under target " + key);
    }
    return Status::Ok();
  };
  if (format == json(1)) {
    // Format 1: one push per target, each its desired state.
    if (!file.contains("pushes") || !file["pushes"].is_array())
      return bad("\"pushes\" is not a list");
    for (const auto& entry : file["pushes"]) {
      auto push = read_push(entry);
      if (!push.ok()) return push.status();
      const std::string key = proto::TargetKey(push->target);
      TargetState& target = state.targets[key];
      if (target.desired) return bad("two pushes for target " + key);
      target.desired = std::move(*push);
    }
    return state;
  }
  if (!file.contains("targets") || !file["targets"].is_array()) {
    return bad("\"targets\" is not a list");
  }
  for (const auto& entry : file["targets"]) {
    if (!entry.is_object() || !entry.contains("key") || !entry["key"].is_string()) {
      return bad("a target has no \"key\"");
    }
    const std::string key = entry["key"].get<std::string>();
    if (!proto::TargetFromKey(key)) return bad("target key \"" + key + "\" names no target");
    if (state.targets.count(key) != 0) return bad("target " + key + " is stored twice");
    TargetState& target = state.targets[key];
    for (const char* which : {"desired", "pending"}) {
      if (!entry.contains(which) || entry[which].is_null()) continue;
      auto push = read_push(entry[which]);
      if (!push.ok()) return push.status();
      if (Status s = check_key(*push, key); !s.ok()) return s;
      (std::string_view(which) == "desired" ? target.desired : target.pending) = std::move(*push);
    }
    const std::string because = entry.value("because", std::string("applied"));
    if (because != "applied" && because != "operator") {
      return bad("target " + key + ": \"because\" is neither applied nor operator");
    }
    target.because = because == "operator" ? DesiredBecause::kOperator : DesiredBecause::kApplied;
    if (entry.contains("awaiting") && entry["awaiting"].is_array()) {
      for (const auto& id : entry["awaiting"]) {
        if (!id.is_string()) return bad("target " + key + ": \"awaiting\" holds a non-string");
        target.awaiting.insert(id.get<std::string>());
      }
    }
    if (entry.contains("rejected_version") && entry["rejected_version"].is_number_unsigned()) {
      target.rejected_version = entry["rejected_version"].get<uint64_t>();
    }
  }
  if (file.contains("agent_keys")) {
    if (!file["agent_keys"].is_object()) return bad("\"agent_keys\" is not an object");
    for (const auto& [id, key] : file["agent_keys"].items()) {
      if (!key.is_string()) return bad("the pinned key of agent " + id + " is not a string");
      state.agent_keys[id] = key.get<std::string>();
    }
  }
  return state;
}

StateDir::StateDir(std::string dir, std::unique_ptr<common::ExclusiveLock> lock)
    : dir_(std::move(dir)),
      state_file_((std::filesystem::path(dir_) / kStateFileName).string()),
      lock_(std::move(lock)) {}

StateDir::~StateDir() = default;  // releases the lock

Result<std::unique_ptr<StateDir>> StateDir::Open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return common::OsError("mkdir", dir, ec.value());
  const std::string lock_path = (std::filesystem::path(dir) / kLockFileName).string();
  auto lock = common::ExclusiveLock::Acquire(lock_path, 0600);
  if (!lock.ok()) {
    if (lock.status().code() != ErrorCode::kConflict) return lock.status();
    const json& details = lock.status().details();
    return Status(
        ErrorCode::kInternal,
        "state dir " + dir + " is in use by another lb-controller" +
            (details.contains("pid") ? " (pid " + std::to_string(details["pid"].get<long>()) + ")"
                                     : std::string()) +
            "; one state dir serves one live controller");
  }
  return std::unique_ptr<StateDir>(new StateDir(dir, std::move(*lock)));
}

Result<PersistentState> StateDir::Load() {
  auto text = common::ReadSmallFileIfExists(state_file_, kMaxStateBytes);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return PersistentState();
  return DecodeState(**text, state_file_);
}

Status StateDir::Save(const PersistentState& state) {
  common::AtomicWriteOptions options;
  options.new_file_mode = 0600;  // it holds whole configs
  return common::WriteFileAtomically(state_file_, EncodeState(state), options);
}

}  // namespace lb::controller
