// The one adapter around msgpack-c. Every msgpack exception stops here.
#include "lb/proto/codec.h"

#include <algorithm>
#include <msgpack.hpp>
#include <vector>

namespace lb::proto {
namespace {

using nlohmann::json;

Status ToJson(const msgpack::object& obj, std::size_t depth, const DecodeLimits& limits,
              json* out) {
  if (depth > limits.max_depth) {
    return Status(ErrorCode::kBadRequest,
                  "message nested deeper than " + std::to_string(limits.max_depth) + " levels");
  }
  switch (obj.type) {
    case msgpack::type::NIL:
      *out = nullptr;
      return Status::Ok();
    case msgpack::type::BOOLEAN:
      *out = obj.via.boolean;
      return Status::Ok();
    case msgpack::type::POSITIVE_INTEGER:
      *out = obj.via.u64;
      return Status::Ok();
    case msgpack::type::NEGATIVE_INTEGER:
      *out = obj.via.i64;
      return Status::Ok();
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      *out = obj.via.f64;
      return Status::Ok();
    case msgpack::type::STR:
      *out = std::string(obj.via.str.ptr, obj.via.str.size);
      return Status::Ok();
    case msgpack::type::BIN:
      *out = std::string(obj.via.bin.ptr, obj.via.bin.size);
      return Status::Ok();
    case msgpack::type::ARRAY: {
      // Built in place: a 1,000-server status is some 15,000 values.
      *out = json::array();
      json::array_t& array = *out->get_ptr<json::array_t*>();
      array.resize(obj.via.array.size);
      for (uint32_t i = 0; i < obj.via.array.size; ++i) {
        Status s = ToJson(obj.via.array.ptr[i], depth + 1, limits, &array[i]);
        if (!s.ok()) return s;
      }
      return Status::Ok();
    }
    case msgpack::type::MAP: {
      *out = json::object();
      json::object_t& object = *out->get_ptr<json::object_t*>();
      for (uint32_t i = 0; i < obj.via.map.size; ++i) {
        const msgpack::object_kv& kv = obj.via.map.ptr[i];
        std::string key;
        if (kv.key.type == msgpack::type::STR) {
          key.assign(kv.key.via.str.ptr, kv.key.via.str.size);
        } else if (kv.key.type == msgpack::type::BIN) {
          key.assign(kv.key.via.bin.ptr, kv.key.via.bin.size);
        } else {
          return Status(ErrorCode::kBadRequest, "map keys must be strings");
        }
        // Keys usually come sorted (every encoder here writes them so): the hint makes each
        // insertion constant time then. A key seen twice keeps its last value.
        auto it = object.emplace_hint(object.end(), std::move(key), nullptr);
        Status s = ToJson(kv.val, depth + 1, limits, &it->second);
        if (!s.ok()) return s;
      }
      return Status::Ok();
    }
    case msgpack::type::EXT:
      return Status(ErrorCode::kBadRequest, "msgpack ext types are not accepted");
  }
  return Status(ErrorCode::kBadRequest, "unknown msgpack type");
}

// Length of the well-formed UTF-8 sequence that starts at s[i], or 0 when there is none.
std::size_t Utf8Length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  std::size_t n;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2, cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3, cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff)) {
    return 0;
  }
  return n;
}

bool IsUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = Utf8Length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// `s` with every byte that is not part of well-formed UTF-8 replaced by U+FFFD.
std::string ValidUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Text that is not UTF-8 (a config in Latin-1, say) travels as bin, byte for byte, so that
// every msgpack reader can decode the frame.
void PackText(msgpack::packer<msgpack::sbuffer>& pk, std::string_view s) {
  if (IsUtf8(s)) {
    pk.pack_str(static_cast<uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  } else {
    pk.pack_bin(static_cast<uint32_t>(s.size()));
    pk.pack_bin_body(s.data(), static_cast<uint32_t>(s.size()));
  }
}

void Pack(msgpack::packer<msgpack::sbuffer>& pk, const json& value) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      pk.pack_nil();
      break;
    case json::value_t::boolean:
      value.get<bool>() ? pk.pack_true() : pk.pack_false();
      break;
    case json::value_t::number_integer:
      pk.pack_int64(value.get<int64_t>());
      break;
    case json::value_t::number_unsigned:
      pk.pack_uint64(value.get<uint64_t>());
      break;
    case json::value_t::number_float:
      pk.pack_double(value.get<double>());
      break;
    case json::value_t::string:
      PackText(pk, value.get_ref<const std::string&>());
      break;
    case json::value_t::binary: {
      const auto& b = value.get_binary();
      if (b.has_subtype() && b.subtype() == kPreEncodedSubtype) {
        pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
        break;
      }
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
      break;
    }
    case json::value_t::array:
      pk.pack_array(static_cast<uint32_t>(value.size()));
      for (const auto& item : value) Pack(pk, item);
      break;
    case json::value_t::object:
      pk.pack_map(static_cast<uint32_t>(value.size()));
      for (const auto& [key, item] : value.items()) {
        pk.pack_str(static_cast<uint32_t>(key.size()));
        pk.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
        Pack(pk, item);
      }
      break;
  }
}

// Counts the msgpack values of `frame` without unpacking them: the type byte of each value says
// how many bytes follow and how many values a container holds. kTooLarge past `max_objects`;
// anything malformed is left to msgpack-c, which reports it (so this returns OK for it).
Status CountObjects(std::string_view frame, std::size_t max_objects, std::size_t max_depth) {
  const auto* p = reinterpret_cast<const unsigned char*>(frame.data());
  const std::size_t size = frame.size();
  std::size_t pos = 0, objects = 0;
  // Values still to read in each open container (map: 2 per entry).
  std::vector<uint64_t> open;
  auto big_endian = [&](std::size_t at, int bytes, uint64_t* out) {
    if (at + static_cast<std::size_t>(bytes) > size) return false;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | p[at + i];
    *out = v;
    return true;
  };
  while (pos < size) {
    if (++objects > max_objects) {
      return Status(ErrorCode::kTooLarge,
                    "message holds more than " + std::to_string(max_objects) + " msgpack values");
    }
    const unsigned char b = p[pos++];
    uint64_t skip = 0, children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      // fixint, nil, bool
    } else if (b >= 0x80 && b <= 0x8f) {
      children = 2 * static_cast<uint64_t>(b & 0x0f);
    } else if (b >= 0x90 && b <= 0x9f) {
      children = b & 0x0f;
    } else if (b >= 0xa0 && b <= 0xbf) {
      skip = b & 0x1f;
    } else {
      uint64_t n = 0;
      switch (b) {
        case 0xc4:
        case 0xd9:
          if (!big_endian(pos, 1, &n)) return Status::Ok();
          skip = 1 + n;
          break;
        case 0xc5:
        case 0xda:
          if (!big_endian(pos, 2, &n)) return Status::Ok();
          skip = 2 + n;
          break;
        case 0xc6:
        case 0xdb:
          if (!big_endian(pos, 4, &n)) return Status::Ok();
          skip = 4 + n;
          break;
        case 0xc7:
          if (!big_endian(pos, 1, &n)) return Status::Ok();
          skip = 2 + n;
          break;
        case 0xc8:
          if (!big_endian(pos, 2, &n)) return Status::Ok();
          skip = 3 + n;
          break;
        case 0xc9:
          if (!big_endian(pos, 4, &n)) return Status::Ok();
          skip = 5 + n;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xd4:
          skip = 2;
          break;
        case 0xd5:
          skip = 3;
          break;
        case 0xd6:
          skip = 5;
          break;
        case 0xd7:
          skip = 9;
          break;
        case 0xd8:
          skip = 17;
          break;
        case 0xdc:
          if (!big_endian(pos, 2, &n)) return Status::Ok();
          skip = 2;
          children = n;
          break;
        case 0xdd:
          if (!big_endian(pos, 4, &n)) return Status::Ok();
          skip = 4;
          children = n;
          break;
        case 0xde:
          if (!big_endian(pos, 2, &n)) return Status::Ok();
          skip = 2;
          children = 2 * n;
          break;
        case 0xdf:
          if (!big_endian(pos, 4, &n)) return Status::Ok();
          skip = 4;
          children = 2 * n;
          break;
        default:
          return Status::Ok();  // 0xc1: never used; msgpack-c says so
      }
    }
    if (skip > size - pos) return Status::Ok();  // truncated: msgpack-c says so
    pos += skip;
    // This value fills one slot of its container; finished containers close.
    while (!open.empty() && open.back() == 0) open.pop_back();
    if (!open.empty()) --open.back();
    if (children > 0) {
      if (open.size() >= max_depth) return Status::Ok();  // msgpack-c reports the depth
      open.push_back(children);
    }
    while (!open.empty() && open.back() == 0) open.pop_back();
    if (open.empty()) break;  // one value: trailing bytes are msgpack-c's to report
  }
  return Status::Ok();
}

void PackKey(msgpack::packer<msgpack::sbuffer>& pk, std::string_view key) {
  pk.pack_str(static_cast<uint32_t>(key.size()));
  pk.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
}

// Keys in the order a JSON object iterates them (sorted), as EncodeMsgpack writes ToJson's maps.
void PackServer(msgpack::packer<msgpack::sbuffer>& pk, const ServerStatus& s) {
  pk.pack_map(14);
  PackKey(pk, "address");
  PackText(pk, s.address);
  PackKey(pk, "backup");
  s.backup ? pk.pack_true() : pk.pack_false();
  PackKey(pk, "check_code");
  pk.pack_int64(s.check_code);
  PackKey(pk, "check_duration_ms");
  pk.pack_int64(s.check_duration_ms);
  PackKey(pk, "check_failures");
  pk.pack_int64(s.check_failures);
  PackKey(pk, "check_status");
  PackText(pk, s.check_status);
  PackKey(pk, "current_sessions");
  pk.pack_int64(s.current_sessions);
  PackKey(pk, "downtime_s");
  pk.pack_int64(s.downtime_s);
  PackKey(pk, "last_chk");
  PackText(pk, s.last_chk);
  PackKey(pk, "name");
  PackText(pk, s.name);
  PackKey(pk, "seconds_since_change");
  pk.pack_int64(s.seconds_since_change);
  PackKey(pk, "status");
  PackText(pk, s.status);
  PackKey(pk, "total_sessions");
  pk.pack_int64(s.total_sessions);
  PackKey(pk, "weight");
  pk.pack_int64(s.weight);
}

}  // namespace

json PreEncoded(std::string_view msgpack_bytes) {
  return json::binary(std::vector<std::uint8_t>(msgpack_bytes.begin(), msgpack_bytes.end()),
                      kPreEncodedSubtype);
}

std::string EncodeStatusResult(const std::vector<BackendStatus>& backends, uint64_t seq,
                               int64_t epoch) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(buffer);
  pk.pack_map(3);
  PackKey(pk, "backends");
  pk.pack_array(static_cast<uint32_t>(backends.size()));
  for (const BackendStatus& b : backends) {
    pk.pack_map(3);
    PackKey(pk, "name");
    PackText(pk, b.name);
    PackKey(pk, "servers");
    pk.pack_array(static_cast<uint32_t>(b.servers.size()));
    for (const ServerStatus& s : b.servers) PackServer(pk, s);
    PackKey(pk, "status");
    PackText(pk, b.status);
  }
  PackKey(pk, "epoch");
  pk.pack_int64(epoch);
  PackKey(pk, "seq");
  pk.pack_uint64(seq);
  return std::string(buffer.data(), buffer.size());
}

Result<json> DecodeMsgpack(std::string_view frame, const DecodeLimits& limits) {
  if (frame.size() > limits.max_frame_bytes) {
    return Status(ErrorCode::kTooLarge, "message of " + std::to_string(frame.size()) +
                                            " bytes exceeds the limit of " +
                                            std::to_string(limits.max_frame_bytes) + " bytes");
  }
  if (frame.empty()) return Status(ErrorCode::kBadRequest, "empty frame; expected a msgpack map");
  if (Status counted = CountObjects(frame, limits.max_objects, limits.max_depth); !counted.ok()) {
    return counted;
  }
  // Every size written in the data is capped before anything is allocated: a 5-byte map header
  // claiming 2^31 entries must not allocate 2^31 entries. Every entry takes at least one byte of
  // the frame, so no container can truthfully hold more entries than the frame has bytes.
  const std::size_t entries = std::min(limits.max_container_entries, frame.size());
  msgpack::unpack_limit limit(entries, entries, frame.size(), frame.size(), frame.size(),
                              limits.max_depth);
  try {
    std::size_t offset = 0;
    // Strings and binaries point into `frame` (which outlives `handle`) instead of being copied
    // into msgpack's zone: ToJson copies each once, and a 16 MB config is not held twice.
    auto reference = [](msgpack::type::object_type type, std::size_t, void*) {
      return type == msgpack::type::STR || type == msgpack::type::BIN;
    };
    msgpack::object_handle handle =
        msgpack::unpack(frame.data(), frame.size(), offset, +reference, nullptr, limit);
    if (offset != frame.size()) {
      return Status(ErrorCode::kBadRequest,
                    "frame holds " + std::to_string(frame.size() - offset) +
                        " trailing bytes after the msgpack value; send exactly one value");
    }
    json out;
    Status s = ToJson(handle.get(), 0, limits, &out);
    if (!s.ok()) return s;
    return out;
  } catch (const msgpack::depth_size_overflow&) {
    return Status(ErrorCode::kBadRequest, "message nested too deeply");
  } catch (const msgpack::size_overflow& e) {
    const bool container = dynamic_cast<const msgpack::array_size_overflow*>(&e) != nullptr ||
                           dynamic_cast<const msgpack::map_size_overflow*>(&e) != nullptr;
    if (container && entries < limits.max_container_entries) {
      // More entries claimed than the frame has bytes: cut short, not too large.
      return Status(ErrorCode::kBadRequest,
                    "frame is not valid msgpack (truncated: a container claims more entries "
                    "than the frame has bytes)");
    }
    return Status(ErrorCode::kTooLarge, std::string("msgpack value above the limits: ") + e.what());
  } catch (const msgpack::insufficient_bytes&) {
    return Status(ErrorCode::kBadRequest, "frame is not valid msgpack (truncated)");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kBadRequest, std::string("frame is not valid msgpack: ") + e.what());
  }
}

std::string EncodeMsgpack(const json& value) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(buffer);
  Pack(pk, value);
  return std::string(buffer.data(), buffer.size());
}

DecodedRequest DecodeRequest(std::string_view frame, const DecodeLimits& limits) {
  DecodedRequest out;
  Result<json> decoded = DecodeMsgpack(frame, limits);
  if (!decoded.ok()) {
    out.status = decoded.status();
    return out;
  }
  json& msg = decoded.value();
  if (!msg.is_object()) {
    out.status = Status(ErrorCode::kBadRequest,
                        std::string("request must be a msgpack map, got ") + msg.type_name());
    return out;
  }
  if (auto it = msg.find("id"); it != msg.end()) out.request.id = *it;
  auto v = msg.find("v");
  if (v != msg.end() && !(v->is_number_integer() && v->get<int64_t>() == kProtocolVersion)) {
    out.status =
        Status(ErrorCode::kBadRequest, "unsupported protocol version " +
                                           v->dump(-1, ' ', false, json::error_handler_t::replace) +
                                           "; this agent speaks v1");
    return out;
  }
  auto cmd = msg.find("cmd");
  if (cmd == msg.end()) {
    out.status = Status(ErrorCode::kBadRequest, "request has no \"cmd\" key");
    return out;
  }
  if (!cmd->is_string()) {
    out.status = Status(ErrorCode::kBadRequest, "\"cmd\" must be a string");
    return out;
  }
  out.request.cmd = cmd->get<std::string>();
  if (auto args = msg.find("args"); args != msg.end() && !args->is_null()) {
    if (!args->is_object()) {
      out.status = Status(ErrorCode::kBadRequest, "\"args\" must be a map");
      return out;
    }
    out.request.args = std::move(*args);
  }
  return out;
}

std::string EncodeRequest(const Request& request) {
  json msg = {{"v", kProtocolVersion},
              {"id", request.id},
              {"cmd", request.cmd},
              {"args", request.args.is_null() ? json::object() : request.args}};
  return EncodeMsgpack(msg);
}

std::string EncodeOkReply(const json& id, const json& result) {
  return EncodeMsgpack({{"v", kProtocolVersion}, {"id", id}, {"ok", true}, {"result", result}});
}

namespace {
json ErrorToJson(const Status& status) {
  // A message is for a person: it is always text, whatever bytes haproxy quoted into it.
  json error = {{"code", std::string(ErrorCodeName(status.code()))},
                {"message", ValidUtf8(status.message())}};
  if (!status.details().is_null()) error["details"] = status.details();
  return error;
}
}  // namespace

std::string EncodeErrorReply(const json& id, const Status& status) {
  return EncodeMsgpack(
      {{"v", kProtocolVersion}, {"id", id}, {"ok", false}, {"error", ErrorToJson(status)}});
}

json ReplyToJson(const Reply& reply) {
  json out = {{"v", kProtocolVersion}, {"id", reply.id}, {"ok", reply.status.ok()}};
  if (reply.status.ok()) {
    out["result"] = reply.result;
  } else {
    out["error"] = ErrorToJson(reply.status);
  }
  return out;
}

Result<Reply> DecodeReply(std::string_view frame, const DecodeLimits& limits) {
  Result<json> decoded = DecodeMsgpack(frame, limits);
  if (!decoded.ok()) return decoded.status();
  json& msg = decoded.value();
  if (!msg.is_object()) return Status(ErrorCode::kBadRequest, "reply is not a msgpack map");
  Reply reply;
  if (auto it = msg.find("id"); it != msg.end()) reply.id = *it;
  auto ok = msg.find("ok");
  if (ok == msg.end() || !ok->is_boolean()) {
    return Status(ErrorCode::kBadRequest, "reply has no boolean \"ok\"");
  }
  if (ok->get<bool>()) {
    if (auto it = msg.find("result"); it != msg.end()) reply.result = std::move(*it);
    return reply;
  }
  auto error = msg.find("error");
  if (error == msg.end() || !error->is_object()) {
    return Status(ErrorCode::kBadRequest, "error reply has no \"error\" map");
  }
  auto text = [&](const char* key, const char* missing) {
    auto it = error->find(key);
    return it != error->end() && it->is_string() ? it->get<std::string>() : std::string(missing);
  };
  std::string code = text("code", "internal");
  std::string message = text("message", "");
  json details = error->contains("details") ? (*error)["details"] : json(nullptr);
  reply.status = Status(ErrorCodeFromName(code), message, details);
  if (reply.status.ok()) reply.status = Status(ErrorCode::kInternal, message, details);
  return reply;
}

Result<std::string> StringArg(const json& args, std::string_view key, std::string default_value) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return default_value;
  if (!it->is_string()) {
    return Status(ErrorCode::kBadRequest,
                  "argument \"" + std::string(key) + "\" must be a string, got " + it->type_name());
  }
  return it->get<std::string>();
}

Result<bool> BoolArg(const json& args, std::string_view key, bool default_value) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return default_value;
  if (!it->is_boolean()) {
    return Status(ErrorCode::kBadRequest, "argument \"" + std::string(key) +
                                              "\" must be a boolean, got " + it->type_name());
  }
  return it->get<bool>();
}

}  // namespace lb::proto
