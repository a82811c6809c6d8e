// The /v1 API against its OpenAPI document (bridge/openapi.json), with a real lb-bridge,
// lb-agent and haproxy, bearer tokens on.
//
// The document is read at run time from GET /v1/openapi.json (and must be the repository's
// file byte for byte). Every operation it lists must have a case in Cases() below, or the test
// fails: a route added to the document without a test cannot go unnoticed. Every answer a case
// gets is checked against the operation's declared responses: the status is declared, the
// Content-Type is one the response declares, its declared headers are present, and a JSON body
// satisfies the schema (the subset the document uses: $ref, type, enum, required, properties,
// items). Each case also asserts what the answer must be (the status, and the effect: traffic,
// the live file). Then every operation is called without a token (401 as declared, but for
// GET /healthz), and every path with each method it does not list (405, Allow = its methods).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;

const std::string kToken = "contract-test-token-0123456789abcdef";

// One HTTP exchange, as the checks see it.
struct Exchange {
  std::string label;  // what the case did, for failure messages
  int status = 0;
  httplib::Headers headers;
  std::string body;
  bool answered = false;
  std::string error;  // why there is no answer
};

std::string MediaType(const std::string& content_type) {
  std::string type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  return type;
}

// --- A checker for the JSON Schema subset of the document ----------------------------------

bool HasType(const json& value, const std::string& type) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "boolean") return value.is_boolean();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "null") return value.is_null();
  return false;
}

const json& Resolve(const json& doc, const json& schema) {
  if (schema.is_object() && schema.contains("$ref")) {
    const std::string ref = schema["$ref"].get<std::string>();
    EXPECT_EQ(ref.rfind("#/", 0), 0u) << "only local references: " << ref;
    return Resolve(doc, doc.at(json::json_pointer(ref.substr(1))));
  }
  return schema;
}

// Appends to `errors` every way `value` breaks `schema`; `where` is a JSON path for messages.
void CheckSchema(const json& doc, const json& schema_or_ref, const json& value,
                 const std::string& where, std::vector<std::string>& errors) {
  const json& schema = Resolve(doc, schema_or_ref);
  static const std::set<std::string> kKnown = {"type",  "enum",        "required", "properties",
                                               "items", "description", "default",  "$ref"};
  for (const auto& [key, unused] : schema.items()) {
    if (!kKnown.count(key)) errors.push_back(where + ": the checker does not know \"" + key + "\"");
  }
  if (schema.contains("type")) {
    std::vector<std::string> types;
    if (schema["type"].is_array()) {
      for (const json& t : schema["type"]) types.push_back(t.get<std::string>());
    } else {
      types.push_back(schema["type"].get<std::string>());
    }
    bool ok = false;
    for (const std::string& t : types) ok = ok || HasType(value, t);
    if (!ok) {
      errors.push_back(where + ": " + value.dump() + " is not " + schema["type"].dump());
      return;
    }
  }
  if (schema.contains("enum")) {
    bool found = false;
    for (const json& allowed : schema["enum"]) found = found || allowed == value;
    if (!found) errors.push_back(where + ": " + value.dump() + " not in " + schema["enum"].dump());
  }
  if (value.is_object()) {
    // Copies, not temporaries: a range-for over a member of a temporary would dangle.
    const json required = schema.value("required", json::array());
    const json properties = schema.value("properties", json::object());
    for (const json& name : required) {
      if (!value.contains(name.get<std::string>())) {
        errors.push_back(where + ": required property \"" + name.get<std::string>() + "\" missing");
      }
    }
    for (const auto& [name, sub] : properties.items()) {
      if (value.contains(name)) CheckSchema(doc, sub, value[name], where + "." + name, errors);
    }
  }
  if (value.is_array() && schema.contains("items")) {
    for (size_t i = 0; i < value.size(); ++i) {
      CheckSchema(doc, schema["items"], value[i], where + "[" + std::to_string(i) + "]", errors);
    }
  }
}

// --- The fixture ----------------------------------------------------------------------------

class RestApiContractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    const std::string tokens = agent_.dir().File("tokens");
    WriteFile(tokens, kToken + "\n");
    ASSERT_EQ(chmod(tokens.c_str(), 0600), 0);
    agent_.SetSecurityKeys({{"bridge_tokens_file", tokens}});
    WriteFile(agent_.config_path(), HaproxyConfig(frontend_, {{"a", a_.port()}}));
    agent_.StartAgent();
    agent_.StartBridge();
    Exchange doc = Send("GET", "/v1/openapi.json");
    ASSERT_EQ(doc.status, 200) << doc.error << doc.body;
    doc_ = json::parse(doc.body, nullptr, false);
    ASSERT_TRUE(doc_.is_object()) << "GET /v1/openapi.json is not JSON";
  }

  // One request; `token` false: without Authorization.
  Exchange Send(const std::string& method, const std::string& path, const std::string& body = "",
                httplib::Headers headers = {}, bool token = true) {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(30, 0);
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.headers = std::move(headers);
    if (token) req.headers.emplace("Authorization", "Bearer " + kToken);
    if (!body.empty() && !req.has_header("Content-Type")) {
      req.headers.emplace("Content-Type", "text/plain");
    }
    req.body = body;
    Exchange out;
    out.label = method + " " + path;
    auto res = client.send(req);
    if (!res) {
      out.error = "no answer: " + httplib::to_string(res.error());
      return out;
    }
    out.answered = true;
    out.status = res->status;
    out.headers = res->headers;
    out.body = res->body;
    return out;
  }

  // GET /v1/events: the status and headers, and the stream's first bytes.
  Exchange FirstEvents(bool token = true) {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(30, 0);
    httplib::Headers headers;
    if (token) headers.emplace("Authorization", "Bearer " + kToken);
    headers.emplace("Last-Event-ID", "1");
    Exchange out;
    out.label = "GET /v1/events";
    client.Get(
        "/v1/events", headers,
        [&](const httplib::Response& res) {
          out.answered = true;
          out.status = res.status;
          out.headers = res.headers;
          return true;
        },
        [&](const char* data, size_t size) {
          out.body.append(data, size);
          return false;  // the first chunk is enough
        });
    return out;
  }

  // The operation object of `method` (lower case) on the document's `path`.
  const json& Operation(const std::string& path, const std::string& method) {
    return doc_.at("paths").at(path).at(method);
  }

  // Checks `exchange` against what the document declares for the operation.
  void Conforms(const std::string& path, const std::string& method, const Exchange& exchange) {
    SCOPED_TRACE(exchange.label + " -> " + std::to_string(exchange.status) + " " +
                 exchange.body.substr(0, 300));
    ASSERT_TRUE(exchange.answered) << exchange.error;
    checked_.insert(method + " " + path);
    const json& responses = Operation(path, method).at("responses");
    const std::string code = std::to_string(exchange.status);
    ASSERT_TRUE(responses.contains(code))
        << "status " << code << " is not declared for " << method << " " << path;
    const json& response = Resolve(doc_, responses[code]);
    const json declared_headers = response.value("headers", json::object());
    for (const auto& [name, unused] : declared_headers.items()) {
      EXPECT_TRUE(exchange.headers.count(name) > 0) << "declared header " << name << " missing";
    }
    if (!response.contains("content")) {
      EXPECT_EQ(exchange.body, "") << "no content is declared";
      return;
    }
    auto ct = exchange.headers.find("Content-Type");
    ASSERT_NE(ct, exchange.headers.end()) << "no Content-Type";
    const std::string type = MediaType(ct->second);
    ASSERT_TRUE(response["content"].contains(type))
        << "Content-Type " << type << " is not declared: " << response["content"].dump();
    const json& schema = response["content"][type].value("schema", json::object());
    if (type == "application/json") {
      json body = json::parse(exchange.body, nullptr, false);
      ASSERT_FALSE(body.is_discarded()) << "not JSON";
      std::vector<std::string> errors;
      CheckSchema(doc_, schema, body, "body", errors);
      for (const std::string& e : errors) ADD_FAILURE() << e;
    } else {
      EXPECT_EQ(Resolve(doc_, schema).value("type", ""), "string") << "a text body is a string";
    }
  }

  // Calls `method` `path` (lower case method, the document's path) the ways its case says.
  using Case = std::function<void(RestApiContractTest&)>;
  static std::map<std::string, Case> Cases();

  // The path with its parameters filled in, for calls that are not about them.
  std::string Concrete(const std::string& path) {
    std::string out = path;
    const size_t open = out.find("{name}");
    if (open != std::string::npos) out.replace(open, 6, "scaling_nodes");
    return out;
  }

  HttpBackend a_{"backend-a"};
  HttpBackend b_{"backend-b"};
  AgentFixture agent_;
  int frontend_ = 0;
  json doc_;
  std::set<std::string> checked_;  // "get /v1/config": operations with a checked answer
};

std::string Etag(const std::string& config_path) { return "\"" + Sha256OfFile(config_path) + "\""; }

std::map<std::string, RestApiContractTest::Case> RestApiContractTest::Cases() {
  std::map<std::string, Case> cases;
  cases["get /v1/backends"] = [](RestApiContractTest& t) {
    Exchange e = t.Send("GET", "/v1/backends");
    t.Conforms("/v1/backends", "get", e);
    ASSERT_EQ(e.status, 200);
    json body = json::parse(e.body);
    ASSERT_EQ(body["backends"].size(), 1u) << e.body;
    EXPECT_EQ(body["backends"][0]["name"], "scaling_nodes");
    EXPECT_EQ(body["backends"][0]["servers"][0]["name"], "a");
  };
  cases["get /v1/backends/{name}"] = [](RestApiContractTest& t) {
    Exchange known = t.Send("GET", "/v1/backends/scaling_nodes");
    t.Conforms("/v1/backends/{name}", "get", known);
    EXPECT_EQ(known.status, 200);
    EXPECT_EQ(json::parse(known.body, nullptr, false)["servers"][0]["name"], "a");
    Exchange unknown = t.Send("GET", "/v1/backends/nope");
    t.Conforms("/v1/backends/{name}", "get", unknown);
    EXPECT_EQ(unknown.status, 404);
    json body = json::parse(unknown.body, nullptr, false);
    EXPECT_EQ(body["code"], "not_found");
    EXPECT_EQ(body["details"]["backends"], json::array({"scaling_nodes"}));
  };
  cases["get /v1/info"] = [](RestApiContractTest& t) {
    Exchange e = t.Send("GET", "/v1/info");
    t.Conforms("/v1/info", "get", e);
    EXPECT_EQ(e.status, 200);
    EXPECT_EQ(json::parse(e.body, nullptr, false)["config"]["sha256"],
              Sha256OfFile(t.agent_.config_path()));
  };
  cases["get /v1/config"] = [](RestApiContractTest& t) {
    const std::string etag = Etag(t.agent_.config_path());
    Exchange full = t.Send("GET", "/v1/config");
    t.Conforms("/v1/config", "get", full);
    EXPECT_EQ(full.status, 200);
    EXPECT_EQ(full.body, ReadFile(t.agent_.config_path()));
    auto it = full.headers.find("ETag");
    EXPECT_TRUE(it != full.headers.end() && it->second == etag);
    Exchange same = t.Send("GET", "/v1/config", "", {{"If-None-Match", "\"x\", W/" + etag}});
    t.Conforms("/v1/config", "get", same);
    EXPECT_EQ(same.status, 304);
    Exchange other = t.Send("GET", "/v1/config", "", {{"If-None-Match", "\"other\""}});
    t.Conforms("/v1/config", "get", other);
    EXPECT_EQ(other.status, 200);
    Exchange bad = t.Send("GET", "/v1/config", "", {{"If-None-Match", "unquoted"}});
    t.Conforms("/v1/config", "get", bad);
    EXPECT_EQ(bad.status, 400);
  };
  cases["put /v1/config"] = [](RestApiContractTest& t) {
    const std::string path = t.agent_.config_path();
    const std::string before = ReadFile(path);
    const std::string old_etag = Etag(path);
    const std::string to_b = HaproxyConfig(t.frontend_, {{"b", t.b_.port()}});

    Exchange invalid = t.Send("PUT", "/v1/config", to_b + "  nonsense\n");
    t.Conforms("/v1/config", "put", invalid);
    EXPECT_EQ(invalid.status, 422);
    EXPECT_EQ(ReadFile(path), before);
    Exchange empty = t.Send("PUT", "/v1/config");
    t.Conforms("/v1/config", "put", empty);
    EXPECT_EQ(empty.status, 400);

    Exchange applied = t.Send("PUT", "/v1/config", to_b, {{"If-Match", old_etag}});
    t.Conforms("/v1/config", "put", applied);
    ASSERT_EQ(applied.status, 200);
    json result = json::parse(applied.body);
    EXPECT_EQ(result["outcome"], "applied");
    EXPECT_EQ(result["verified"], true);
    EXPECT_EQ(result["sha256"], Sha256OfFile(path));
    EXPECT_EQ(ReadFile(path), to_b);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(HttpGetBody(t.frontend_), "backend-b");

    // The old ETag is stale now: 412, and nothing changes.
    Exchange stale = t.Send("PUT", "/v1/config", before, {{"If-Match", old_etag}});
    t.Conforms("/v1/config", "put", stale);
    EXPECT_EQ(stale.status, 412);
    json conflict = json::parse(stale.body, nullptr, false);
    EXPECT_EQ(conflict["code"], "conflict");
    EXPECT_EQ(conflict["details"]["sha256"], Sha256OfFile(path));
    EXPECT_EQ(ReadFile(path), to_b);

    Exchange unchanged = t.Send("PUT", "/v1/config?force=true", to_b, {{"If-Match", "*"}});
    t.Conforms("/v1/config", "put", unchanged);
    EXPECT_EQ(unchanged.status, 200);
    EXPECT_EQ(json::parse(unchanged.body, nullptr, false)["outcome"], "unchanged");
  };
  cases["post /v1/config/validate"] = [](RestApiContractTest& t) {
    const std::string path = t.agent_.config_path();
    const std::string before = ReadFile(path);
    const std::string to_b = HaproxyConfig(t.frontend_, {{"b", t.b_.port()}, {"b2", t.b_.port()}});
    Exchange valid = t.Send("POST", "/v1/config/validate", to_b);
    t.Conforms("/v1/config/validate", "post", valid);
    EXPECT_EQ(valid.status, 200);
    EXPECT_EQ(json::parse(valid.body, nullptr, false)["valid"], true);
    Exchange invalid = t.Send("POST", "/v1/config/validate", to_b + "  nonsense\n");
    t.Conforms("/v1/config/validate", "post", invalid);
    EXPECT_EQ(invalid.status, 422);
    EXPECT_EQ(json::parse(invalid.body, nullptr, false)["code"], "invalid_config");
    EXPECT_EQ(ReadFile(path), before) << "validate changed the live config";
  };
  cases["get /v1/events"] = [](RestApiContractTest& t) {
    Exchange e = t.FirstEvents();
    t.Conforms("/v1/events", "get", e);
    EXPECT_EQ(e.status, 200);
    EXPECT_EQ(e.body.rfind(": connected", 0), 0u) << e.body;
  };
  cases["get /v1/openapi.json"] = [](RestApiContractTest& t) {
    Exchange e = t.Send("GET", "/v1/openapi.json");
    t.Conforms("/v1/openapi.json", "get", e);
    EXPECT_EQ(e.status, 200);
    EXPECT_EQ(e.body, ReadFile(std::string(LB_SOURCE_DIR) + "/bridge/openapi.json"))
        << "the bridge serves another document than the repository's";
  };
  cases["get /healthz"] = [](RestApiContractTest& t) {
    Exchange e = t.Send("GET", "/healthz");
    t.Conforms("/healthz", "get", e);
    EXPECT_EQ(e.status, 200);
    Exchange anonymous = t.Send("GET", "/healthz", "", {}, /*token=*/false);
    t.Conforms("/healthz", "get", anonymous);
    EXPECT_EQ(anonymous.status, 200);
  };
  return cases;
}

const std::vector<std::string> kMethods = {"get", "put", "post", "delete", "patch", "options"};

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

TEST_F(RestApiContractTest, EveryOperationOfTheDocumentAnswersAsDeclared) {
  const std::map<std::string, Case> cases = Cases();
  std::set<std::string> in_document;
  for (const auto& [path, item] : doc_.at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      if (std::find(kMethods.begin(), kMethods.end(), method) == kMethods.end()) continue;
      const std::string key = method + " " + path;
      in_document.insert(key);
      SCOPED_TRACE(key);
      auto it = cases.find(key);
      if (it == cases.end()) {
        ADD_FAILURE() << key << " is in the document but has no case in this test";
        continue;
      }
      it->second(*this);
      EXPECT_TRUE(checked_.count(key)) << "the case of " << key << " checked no answer";
    }
  }
  for (const auto& [key, unused] : cases) {
    EXPECT_TRUE(in_document.count(key)) << key << " has a case but is not in the document";
  }
}

TEST_F(RestApiContractTest, EveryOperationButTheHealthCheckNeedsTheToken) {
  for (const auto& [path, item] : doc_.at("paths").items()) {
    for (const auto& [method, operation] : item.items()) {
      if (std::find(kMethods.begin(), kMethods.end(), method) == kMethods.end()) continue;
      SCOPED_TRACE(method + " " + path);
      // An empty requirement ({}) in the operation's security: callable without a token.
      const json security = operation.value("security", doc_.at("security"));
      bool anonymous_only = true;
      for (const json& requirement : security)
        anonymous_only = anonymous_only && requirement.empty();
      Exchange e = path == "/v1/events"
                       ? FirstEvents(/*token=*/false)
                       : Send(Upper(method), Concrete(path), method == "get" ? "" : "x", {},
                              /*token=*/false);
      Conforms(path, method, e);
      if (anonymous_only) {
        EXPECT_EQ(e.status, 200);
      } else {
        EXPECT_EQ(e.status, 401);
        EXPECT_EQ(json::parse(e.body, nullptr, false)["code"], "unauthorized");
      }
    }
  }
  EXPECT_EQ(ReadFile(agent_.config_path()), HaproxyConfig(frontend_, {{"a", a_.port()}}));
}

TEST_F(RestApiContractTest, AMethodThePathDoesNotListIs405WithItsMethodsInAllow) {
  for (const auto& [path, item] : doc_.at("paths").items()) {
    std::set<std::string> allowed;
    for (const auto& [method, operation] : item.items()) {
      if (std::find(kMethods.begin(), kMethods.end(), method) != kMethods.end()) {
        allowed.insert(Upper(method));
      }
    }
    if (allowed.count("GET")) allowed.insert("HEAD");
    for (const std::string& method : kMethods) {
      if (allowed.count(Upper(method))) continue;
      // A body, so that a POST, PUT, PATCH or DELETE reaches the routes as clients send them.
      Exchange e = Send(Upper(method), Concrete(path), "x");
      SCOPED_TRACE(e.label + " -> " + e.body);
      ASSERT_TRUE(e.answered) << e.error;
      EXPECT_EQ(e.status, 405);
      std::set<std::string> allow;
      auto header = e.headers.find("Allow");
      ASSERT_NE(header, e.headers.end());
      std::istringstream words(header->second);
      for (std::string word; std::getline(words, word, ',');) {
        allow.insert(word.substr(word.find_first_not_of(' ')));
      }
      EXPECT_EQ(allow, allowed) << header->second;
      json body = json::parse(e.body, nullptr, false);
      std::vector<std::string> errors;
      CheckSchema(doc_, json{{"$ref", "#/components/schemas/Error"}}, body, "body", errors);
      for (const std::string& error : errors) ADD_FAILURE() << error;
      EXPECT_EQ(body["code"], "method_not_allowed");
    }
  }
}

}  // namespace
}  // namespace lb::testing
