// The msgpack codec: round trips, and every way an untrusted frame can be wrong.
#include "lb/proto/codec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace lb::proto {
namespace {

using nlohmann::json;

// Builds a frame from raw bytes (msgpack written by hand, for types json cannot express).
std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

// A msgpack str header + body for a short (< 32 bytes) string.
std::string FixStr(const std::string& s) { return Bytes({0xa0 | static_cast<int>(s.size())}) + s; }

// A msgpack bin8 header + body.
std::string Bin8(const std::string& s) { return Bytes({0xc4, static_cast<int>(s.size())}) + s; }

std::string NestedArrays(int depth) {
  json value = 1;
  for (int i = 0; i < depth; ++i) value = json::array({value});
  return EncodeMsgpack(json{{"v", 1}, {"cmd", "status"}, {"args", {{"deep", value}}}});
}

TEST(CodecTest, RequestRoundTrips) {
  Request request;
  request.id = "req-1";
  request.cmd = "reload";
  request.args = {{"config", "global\n  daemon\n"},
                  {"force", true},
                  {"n", -42},
                  {"big", 1ULL << 40},
                  {"ratio", 1.5},
                  {"list", {1, "two", nullptr}}};
  DecodedRequest decoded = DecodeRequest(EncodeRequest(request), DecodeLimits());
  ASSERT_TRUE(decoded.status.ok()) << decoded.status.ToString();
  EXPECT_EQ(decoded.request.id, request.id);
  EXPECT_EQ(decoded.request.cmd, "reload");
  EXPECT_EQ(decoded.request.args, request.args);
  EXPECT_EQ(decoded.request.args["n"].get<int64_t>(), -42);
}

TEST(CodecTest, RequestRoundTripsIdsOfAnyType) {
  for (const json& id : {json(7), json("abc"), json({{"client", "x"}, {"seq", 3}}), json(nullptr),
                         json::array({1, 2})}) {
    Request request;
    request.id = id;
    request.cmd = "status";
    DecodedRequest decoded = DecodeRequest(EncodeRequest(request), DecodeLimits());
    ASSERT_TRUE(decoded.status.ok()) << decoded.status.ToString();
    EXPECT_EQ(decoded.request.id, id);
    EXPECT_EQ(decoded.request.args, json::object());
  }
}

TEST(CodecTest, OkReplyRoundTrips) {
  json result = {{"outcome", "applied"}, {"sha256", std::string(64, 'a')}, {"warnings", {"w1"}}};
  Result<Reply> reply = DecodeReply(EncodeOkReply(json(12), result), DecodeLimits());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->id, json(12));
  EXPECT_TRUE(reply->status.ok());
  EXPECT_EQ(reply->result, result);
}

TEST(CodecTest, ErrorReplyRoundTripsWithDetails) {
  Status status(ErrorCode::kReloadFailed, "haproxy did not take the new config",
                json{{"rolled_back", true}, {"sha256", "abc"}});
  Result<Reply> reply = DecodeReply(EncodeErrorReply(json("id-9"), status), DecodeLimits());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->id, json("id-9"));
  EXPECT_EQ(reply->status.code(), ErrorCode::kReloadFailed);
  EXPECT_EQ(reply->status.message(), "haproxy did not take the new config");
  EXPECT_EQ(reply->status.details(), (json{{"rolled_back", true}, {"sha256", "abc"}}));
}

TEST(CodecTest, ErrorReplyWithoutDetailsHasNullDetails) {
  Status status(ErrorCode::kConflict, "the live config changed");
  Result<Reply> reply = DecodeReply(EncodeErrorReply(json(1), status), DecodeLimits());
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status.code(), ErrorCode::kConflict);
  EXPECT_TRUE(reply->status.details().is_null());
}

TEST(CodecTest, HugeMapHeaderIsRejectedQuickly) {
  // A map32 header claiming ~2^31 entries, and nothing else: must fail fast, not allocate.
  const std::string frame = Bytes({0xdf, 0x80, 0x00, 0xc2, 0x00});
  const auto start = std::chrono::steady_clock::now();
  DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(decoded.status.ok());
  EXPECT_TRUE(decoded.status.code() == ErrorCode::kTooLarge ||
              decoded.status.code() == ErrorCode::kBadRequest)
      << decoded.status.ToString();
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

TEST(CodecTest, HugeArrayHeaderIsRejected) {
  const std::string frame = Bytes({0xdd, 0x7f, 0xff, 0xff, 0xff});
  Result<json> decoded = DecodeMsgpack(frame, DecodeLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_TRUE(decoded.status().code() == ErrorCode::kTooLarge ||
              decoded.status().code() == ErrorCode::kBadRequest)
      << decoded.status().ToString();
}

TEST(CodecTest, HugeStringHeaderIsRejected) {
  // str32 claiming 2 GiB of text in a 9-byte frame.
  const std::string frame = Bytes({0xdb, 0x7f, 0xff, 0xff, 0xff, 'a', 'b', 'c', 'd'});
  Result<json> decoded = DecodeMsgpack(frame, DecodeLimits());
  ASSERT_FALSE(decoded.ok());
  EXPECT_TRUE(decoded.status().code() == ErrorCode::kTooLarge ||
              decoded.status().code() == ErrorCode::kBadRequest)
      << decoded.status().ToString();
}

// {"v":1,"cmd":"status","args":{"list":[0,1,...,n-1]}} holds 1 + 2 + 2 + 2 + n values: the
// outer map, three keys with their values (args counts as one), the key "list", the array and
// its n items.
std::string RequestWithList(int n) {
  json list = json::array();
  for (int i = 0; i < n; ++i) list.push_back(i % 100);
  return EncodeMsgpack(json{{"v", 1}, {"cmd", "status"}, {"args", {{"list", list}}}});
}

TEST(CodecTest, ObjectCountIsLimitedBeforeUnpacking) {
  const std::string frame = RequestWithList(1000);  // 1,009 values
  DecodeLimits limits;
  limits.max_objects = 1009;
  DecodedRequest exact = DecodeRequest(frame, limits);
  EXPECT_TRUE(exact.status.ok()) << exact.status.ToString();
  limits.max_objects = 1008;
  DecodedRequest over = DecodeRequest(frame, limits);
  ASSERT_FALSE(over.status.ok());
  EXPECT_EQ(over.status.code(), ErrorCode::kTooLarge);
  EXPECT_NE(over.status.message().find("1008 msgpack values"), std::string::npos)
      << over.status.message();
}

TEST(CodecTest, ObjectCountSeesValuesInsideNestedContainersAndExtTypes) {
  // [[1, {"a": nil}], ext8(2 bytes), "x"]: 1 + 1 + 1 + 1 + 2 + 1 + 1 = 8 values.
  const std::string frame =
      Bytes({0x93, 0x92, 0x01, 0x81, 0xa1, 'a', 0xc0, 0xc7, 0x02, 0x05, 0x00, 0x00, 0xa1, 'x'});
  DecodeLimits limits;
  limits.max_objects = 7;
  Result<json> decoded = DecodeMsgpack(frame, limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kTooLarge) << decoded.status().ToString();
  limits.max_objects = 8;
  // Within the count, the ext value itself is what the codec refuses (not JSON).
  Result<json> counted = DecodeMsgpack(frame, limits);
  EXPECT_NE(counted.status().code(), ErrorCode::kTooLarge) << counted.status().ToString();
}

TEST(CodecTest, AMillionTinyValuesAreRefusedByCountNotByMemory) {
  // 1,000,000 nils in an array32: 1 MB of frame that msgpack-c would turn into ~24 MB of
  // objects. The agent's limit (10,000) refuses it by count before unpacking.
  std::string frame = Bytes({0xdd, 0x00, 0x0f, 0x42, 0x40});
  frame.append(1000000, static_cast<char>(0xc0));
  DecodeLimits limits;
  limits.max_objects = 10000;
  Result<json> decoded = DecodeMsgpack(frame, limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), ErrorCode::kTooLarge) << decoded.status().ToString();
  EXPECT_NE(decoded.status().message().find("10000 msgpack values"), std::string::npos);
}

TEST(CodecTest, GarbageBytesAreBadRequest) {
  // 0xc1 is the one byte msgpack never uses.
  DecodedRequest decoded = DecodeRequest(Bytes({0xc1, 0xc1, 0xc1}), DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
}

TEST(CodecTest, EmptyFrameIsBadRequest) {
  DecodedRequest decoded = DecodeRequest("", DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
}

// Headers claiming up to the entry limit, with no data behind them: refused as truncated before
// msgpack-c allocates room for the claimed entries (found slow under ASan by fuzz/command_frame).
TEST(CodecTest, ContainerClaimingMoreEntriesThanTheFrameHasBytesIsTruncated) {
  for (const std::string& frame : {Bytes({0xde, 0xea, 0x60}),                     // map of 60000
                                   Bytes({0xdd, 0x00, 0x01, 0x86, 0x9f}),         // array of 99999
                                   Bytes({0x81, 0xa1, 0x61, 0xdc, 0xff, 0xff})})  // nested array
  {
    DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
    EXPECT_NE(decoded.status.message().find("truncated"), std::string::npos)
        << decoded.status.ToString();
  }
}

TEST(CodecTest, TruncatedMsgpackIsBadRequest) {
  Request request;
  request.id = 1;
  request.cmd = "status";
  request.args = {{"backend", "scaling_nodes"}};
  const std::string frame = EncodeRequest(request);
  for (std::size_t cut = 1; cut < frame.size(); ++cut) {
    DecodedRequest decoded = DecodeRequest(frame.substr(0, cut), DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest)
        << "cut at " << cut << ": " << decoded.status.ToString();
  }
}

TEST(CodecTest, TrailingBytesAreBadRequest) {
  Request request;
  request.cmd = "status";
  DecodedRequest decoded = DecodeRequest(EncodeRequest(request) + Bytes({0x00}), DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
  EXPECT_NE(decoded.status.message().find("trailing"), std::string::npos)
      << decoded.status.message();
}

TEST(CodecTest, NonMapRequestIsBadRequest) {
  for (const json& value : {json::array({"status"}), json(5), json("status"), json(nullptr)}) {
    DecodedRequest decoded = DecodeRequest(EncodeMsgpack(value), DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest)
        << value.dump() << ": " << decoded.status.ToString();
  }
}

TEST(CodecTest, MissingCmdIsBadRequestAndIdIsEchoed) {
  DecodedRequest decoded = DecodeRequest(
      EncodeMsgpack({{"v", 1}, {"id", "abc"}, {"args", json::object()}}), DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest);
  EXPECT_NE(decoded.status.message().find("cmd"), std::string::npos) << decoded.status.message();
  EXPECT_EQ(decoded.request.id, json("abc"));
}

TEST(CodecTest, IdOfAnyTypeIsEchoedWhenRequestIsInvalid) {
  const json ids[] = {json("abc"),           json(42),  json(-3), json({{"a", 1}, {"b", {1, 2}}}),
                      json::array({1, "x"}), json(true)};
  for (const json& id : ids) {
    // Missing cmd.
    DecodedRequest missing = DecodeRequest(EncodeMsgpack({{"id", id}}), DecodeLimits());
    EXPECT_FALSE(missing.status.ok());
    EXPECT_EQ(missing.request.id, id) << "missing cmd, id " << id.dump();
    // Non-string cmd.
    DecodedRequest bad_cmd = DecodeRequest(EncodeMsgpack({{"id", id}, {"cmd", 3}}), DecodeLimits());
    EXPECT_FALSE(bad_cmd.status.ok());
    EXPECT_EQ(bad_cmd.request.id, id) << "non-string cmd, id " << id.dump();
    // Wrong version.
    DecodedRequest bad_v =
        DecodeRequest(EncodeMsgpack({{"id", id}, {"v", 2}, {"cmd", "status"}}), DecodeLimits());
    EXPECT_FALSE(bad_v.status.ok());
    EXPECT_EQ(bad_v.request.id, id) << "wrong v, id " << id.dump();
    // Args not a map.
    DecodedRequest bad_args = DecodeRequest(
        EncodeMsgpack({{"id", id}, {"cmd", "status"}, {"args", {1, 2}}}), DecodeLimits());
    EXPECT_FALSE(bad_args.status.ok());
    EXPECT_EQ(bad_args.request.id, id) << "args not a map, id " << id.dump();
  }
}

TEST(CodecTest, NonStringCmdIsBadRequest) {
  for (const json& cmd : {json(1), json(nullptr), json::array({"status"}), json(true)}) {
    DecodedRequest decoded = DecodeRequest(EncodeMsgpack({{"v", 1}, {"cmd", cmd}}), DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << cmd.dump();
  }
}

TEST(CodecTest, ArgsThatAreNotAMapAreBadRequest) {
  for (const json& args : {json::array({1}), json("x"), json(3), json(false)}) {
    DecodedRequest decoded =
        DecodeRequest(EncodeMsgpack({{"v", 1}, {"cmd", "status"}, {"args", args}}), DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << args.dump();
    EXPECT_NE(decoded.status.message().find("args"), std::string::npos) << decoded.status.message();
  }
}

TEST(CodecTest, MissingOrNullArgsDecodeAsEmptyMap) {
  for (const json& msg :
       {json{{"v", 1}, {"cmd", "status"}}, json{{"v", 1}, {"cmd", "status"}, {"args", nullptr}}}) {
    DecodedRequest decoded = DecodeRequest(EncodeMsgpack(msg), DecodeLimits());
    ASSERT_TRUE(decoded.status.ok()) << decoded.status.ToString();
    EXPECT_EQ(decoded.request.args, json::object());
  }
}

TEST(CodecTest, WrongVersionIsBadRequest) {
  for (const json& v : {json(2), json(0), json("1"), json(1.5), json(nullptr)}) {
    DecodedRequest decoded =
        DecodeRequest(EncodeMsgpack({{"v", v}, {"cmd", "status"}}), DecodeLimits());
    EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << "v = " << v.dump();
  }
}

// Fuzz input fuzz/corpus/command_frame/crash-version-invalid-utf8: quoting a version that is a
// str of invalid UTF-8 in the error message threw out of DecodeRequest (json::dump), which
// terminated the agent.
TEST(CodecTest, WrongVersionOfInvalidUtf8IsBadRequest) {
  // {"v": "\xff", "cmd": "x"}: msgpack str (not bin) holding a byte that is not UTF-8.
  const std::string frame =
      Bytes({0x82}) + FixStr("v") + FixStr("\xff") + FixStr("cmd") + FixStr("x");
  DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest);
  EXPECT_NE(decoded.status.message().find("unsupported protocol version"), std::string::npos)
      << decoded.status.message();
  // The error reply that quotes it still encodes.
  EXPECT_FALSE(EncodeErrorReply(decoded.request.id, decoded.status).empty());
}

TEST(CodecTest, NestingDeeperThanMaxDepthIsBadRequest) {
  DecodeLimits limits;
  limits.max_depth = 4;
  DecodedRequest shallow = DecodeRequest(NestedArrays(1), limits);
  EXPECT_TRUE(shallow.status.ok()) << shallow.status.ToString();
  DecodedRequest deep = DecodeRequest(NestedArrays(10), limits);
  EXPECT_EQ(deep.status.code(), ErrorCode::kBadRequest) << deep.status.ToString();
}

TEST(CodecTest, DefaultDepthLimitStopsAbsurdNesting) {
  // 10000 nested fixarrays of one element: must be refused, not recurse 10000 deep.
  std::string frame = Bytes({0x81}) + FixStr("cmd");
  for (int i = 0; i < 10000; ++i) frame += Bytes({0x91});
  frame += Bytes({0x01});
  DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
}

TEST(CodecTest, MapWithIntegerKeysIsBadRequest) {
  // {1: "x"}
  DecodedRequest top = DecodeRequest(Bytes({0x81, 0x01}) + FixStr("x"), DecodeLimits());
  EXPECT_EQ(top.status.code(), ErrorCode::kBadRequest) << top.status.ToString();
  // {"cmd": "status", "args": {1: "x"}}
  std::string nested = Bytes({0x82}) + FixStr("cmd") + FixStr("status") + FixStr("args") +
                       Bytes({0x81, 0x01}) + FixStr("x");
  DecodedRequest inner = DecodeRequest(nested, DecodeLimits());
  EXPECT_EQ(inner.status.code(), ErrorCode::kBadRequest) << inner.status.ToString();
}

TEST(CodecTest, OversizedFrameIsTooLarge) {
  DecodeLimits limits;
  limits.max_frame_bytes = 16;
  Request request;
  request.cmd = "reload";
  request.args = {{"config", std::string(100, 'x')}};
  DecodedRequest decoded = DecodeRequest(EncodeRequest(request), limits);
  EXPECT_EQ(decoded.status.code(), ErrorCode::kTooLarge) << decoded.status.ToString();
  Result<Reply> reply = DecodeReply(EncodeOkReply(1, {{"text", std::string(100, 'y')}}), limits);
  EXPECT_EQ(reply.status().code(), ErrorCode::kTooLarge) << reply.status().ToString();
}

TEST(CodecTest, FrameAtTheSizeLimitIsAccepted) {
  Request request;
  request.cmd = "status";
  const std::string frame = EncodeRequest(request);
  DecodeLimits limits;
  limits.max_frame_bytes = frame.size();
  EXPECT_TRUE(DecodeRequest(frame, limits).status.ok());
}

TEST(CodecTest, BinTypedStringsDecodeAsStrings) {
  // {"id": bin "r1", bin "cmd": bin "status", "args": {"config": bin "global\n"}}
  std::string frame = Bytes({0x83}) + FixStr("id") + Bin8("r1") + Bin8("cmd") + Bin8("status") +
                      FixStr("args") + Bytes({0x81}) + FixStr("config") + Bin8("global\n");
  DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
  ASSERT_TRUE(decoded.status.ok()) << decoded.status.ToString();
  EXPECT_EQ(decoded.request.id, json("r1"));
  EXPECT_EQ(decoded.request.cmd, "status");
  EXPECT_EQ(decoded.request.args, (json{{"config", "global\n"}}));
}

TEST(CodecTest, BinBytesAreKeptAsTheyAre) {
  const std::string raw("a\0\xff\x80z", 5);
  Result<json> decoded = DecodeMsgpack(Bin8(raw), DecodeLimits());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ASSERT_TRUE(decoded->is_string());
  EXPECT_EQ(decoded->get<std::string>(), raw);
}

TEST(CodecTest, ExtTypesAreBadRequest) {
  // fixext1 type 1, data 0x00, inside a map value.
  std::string frame = Bytes({0x81}) + FixStr("cmd") + Bytes({0xd4, 0x01, 0x00});
  DecodedRequest decoded = DecodeRequest(frame, DecodeLimits());
  EXPECT_EQ(decoded.status.code(), ErrorCode::kBadRequest) << decoded.status.ToString();
}

TEST(CodecTest, ReplyWithoutOkIsBadRequest) {
  Result<Reply> reply = DecodeReply(EncodeMsgpack({{"v", 1}, {"id", 1}}), DecodeLimits());
  EXPECT_EQ(reply.status().code(), ErrorCode::kBadRequest);
  Result<Reply> not_map = DecodeReply(EncodeMsgpack(json::array({1})), DecodeLimits());
  EXPECT_EQ(not_map.status().code(), ErrorCode::kBadRequest);
}

TEST(CodecTest, StringArgTypeErrorNamesTheKey) {
  json args = {{"backend", 5}, {"name", "web"}};
  Result<std::string> bad = StringArg(args, "backend", "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(bad.status().message().find("\"backend\""), std::string::npos)
      << bad.status().message();
  Result<std::string> good = StringArg(args, "name", "x");
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, "web");
  Result<std::string> missing = StringArg(args, "other", "fallback");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(*missing, "fallback");
}

TEST(CodecTest, BoolArgTypeErrorNamesTheKey) {
  json args = {{"force", "yes"}, {"dry", true}};
  Result<bool> bad = BoolArg(args, "force", false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kBadRequest);
  EXPECT_NE(bad.status().message().find("\"force\""), std::string::npos) << bad.status().message();
  Result<bool> good = BoolArg(args, "dry", false);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(*good);
  Result<bool> missing = BoolArg(args, "other", true);
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(*missing);
}

TEST(CodecTest, StatusResultIsPackedAsTheJsonPathWouldPackIt) {
  BackendStatus app{"app", "UP", {}};
  ServerStatus up;
  up.name = "web1";
  up.address = "10.0.0.1:80";
  up.status = "UP";
  up.weight = 1;
  up.check_status = "L7OK";
  up.last_chk = "HTTP status check returned code <200>";
  up.check_code = 200;
  up.check_duration_ms = 3;
  up.current_sessions = 7;
  up.total_sessions = 123456789012;
  up.seconds_since_change = 86400;
  up.backup = true;
  ServerStatus odd;  // defaults: -1s, empty strings, and a name that is not UTF-8
  odd.name = "caf\xe9";
  app.servers = {up, odd};
  BackendStatus empty{"other", "DOWN", {}};
  const std::vector<BackendStatus> backends = {app, empty};
  for (uint64_t seq : {uint64_t{0}, uint64_t{42}, UINT64_MAX}) {
    json list = json::array();
    for (const auto& b : backends) list.push_back(ToJson(b));
    const json result = {{"backends", list}, {"seq", seq}, {"epoch", int64_t{1700000000123}}};
    EXPECT_EQ(EncodeStatusResult(backends, seq, 1700000000123), EncodeMsgpack(result));
  }
  EXPECT_EQ(
      EncodeStatusResult({}, 1, -1),
      EncodeMsgpack({{"backends", json::array()}, {"seq", uint64_t{1}}, {"epoch", int64_t{-1}}}));
}

TEST(CodecTest, PreEncodedResultIsSplicedIntoTheReply) {
  const json result = {{"backends", json::array({{{"name", "app"}}})}, {"seq", 3}};
  const std::string packed = EncodeMsgpack(result);
  EXPECT_EQ(EncodeOkReply("id-1", PreEncoded(packed)), EncodeOkReply("id-1", result));
  Result<Reply> reply = DecodeReply(EncodeOkReply(7, PreEncoded(packed)), {});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->result, result);
  EXPECT_EQ(reply->id, 7);
}

}  // namespace
}  // namespace lb::proto
