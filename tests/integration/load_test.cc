// Load: 64 concurrent clients for LB_LOAD_SECONDS (default 60) against the real lb-agent, a real
// haproxy and the real lb-bridge. Half speak ZeroMQ to the agent's command socket (one REQ
// socket per client thread), half HTTP to the bridge (one keep-alive connection per client
// thread). Each sends `status` (/getBackends) nine times out of ten and `reload` (/reload) the
// tenth, alternating between two valid configs, back to back.
//
// Claims: every request is answered; every answer is a success or `superseded` (a reload that
// queued behind a running one while a newer one queued too: ReloadWorker's coalescing); both
// processes are alive at the end; and their memory is flat: the RSS growth between the end of
// a warm-up and the end, divided by the requests served meanwhile, stays below a few bytes per
// request (a leak of one small allocation per request would be well above it). Under
// AddressSanitizer, whose allocator's RSS climbs regardless, LeakSanitizer at the processes'
// clean exit judges leaks instead.
//
// The figures are printed as a table and appended to LB_LOAD_REPORT (default
// /tmp/notes/load-report.txt).
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <zmq.hpp>

#include "harness.h"

namespace lb::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kZmqClients = 32;
constexpr int kHttpClients = 32;
constexpr int kReloadEvery = 10;  // the 10th request of each client is a reload
constexpr int kWarmupSeconds = 5;
// Allowed RSS growth after the warm-up: allocator noise (the arenas and caches of 64 client and
// 64 bridge threads still settling; measured +0.3 MiB for the agent, +1.0 MiB for the bridge
// over 60 s) plus a few bytes per request. The report prints the smallest per-request leak
// that would have failed the run (slack / requests + kMaxBytesPerRequest).
constexpr int64_t kSlackBytes = 4 * 1024 * 1024;
constexpr double kMaxBytesPerRequest = 16.0;
constexpr milliseconds kAnswerTimeout(60000);

int LoadSeconds() {
  if (const char* s = std::getenv("LB_LOAD_SECONDS"); s != nullptr && std::atoi(s) > 0) {
    return std::atoi(s);
  }
  return 60;
}

std::string ReportPath() {
  if (const char* s = std::getenv("LB_LOAD_REPORT"); s != nullptr && *s != '\0') return s;
  return "/tmp/notes/load-report.txt";
}

bool Sanitized() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

enum Kind { kZmqStatus, kZmqReload, kHttpStatus, kHttpReload, kKinds };
const char* const kKindNames[kKinds] = {"zmq status", "zmq reload", "http /getBackends",
                                        "http /reload"};

// What one client saw; merged after the run.
struct Tally {
  int64_t sent[kKinds] = {};
  int64_t ok[kKinds] = {};
  int64_t superseded[kKinds] = {};
  int64_t errors[kKinds] = {};      // answered, but neither success nor superseded
  int64_t unanswered[kKinds] = {};  // no answer within kAnswerTimeout, or the connection broke
  std::vector<double> latency_ms[kKinds];
  std::vector<std::string> samples;  // the first few errors, for the failure message

  void Merge(const Tally& t) {
    for (int k = 0; k < kKinds; ++k) {
      sent[k] += t.sent[k];
      ok[k] += t.ok[k];
      superseded[k] += t.superseded[k];
      errors[k] += t.errors[k];
      unanswered[k] += t.unanswered[k];
      latency_ms[k].insert(latency_ms[k].end(), t.latency_ms[k].begin(), t.latency_ms[k].end());
    }
    for (const auto& s : t.samples) {
      if (samples.size() < 10) samples.push_back(s);
    }
  }
  void Sample(const std::string& s) {
    if (samples.size() < 10) samples.push_back(s);
  }
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  std::size_t i = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(i, values.size() - 1)];
}

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    frontend_ = FreePort();
    configs_[0] = HaproxyConfig(frontend_, {{"a", a_.port()}});
    configs_[1] = HaproxyConfig(frontend_, {{"b", b_.port()}});
    WriteFile(agent_.config_path(), configs_[0]);
    agent_.StartAgent();
    agent_.StartBridge();
  }

  const std::string& NextConfig() { return configs_[reload_turn_++ % 2]; }

  // One ZeroMQ client: a REQ socket of its own, replaced after a missed answer.
  void ZmqClient(zmq::context_t& context, Tally& t) {
    auto connect = [&] {
      auto s = std::make_unique<zmq::socket_t>(context, zmq::socket_type::req);
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::rcvtimeo, static_cast<int>(kAnswerTimeout.count()));
      s->connect(agent_.endpoint());
      return s;
    };
    auto socket = connect();
    for (int64_t n = 1; !stop_; ++n) {
      const Kind kind = n % kReloadEvery == 0 ? kZmqReload : kZmqStatus;
      json args = kind == kZmqReload ? json{{"config", NextConfig()}} : json::object();
      const std::string frame = proto::EncodeRequest(
          {json(n), kind == kZmqReload ? "reload" : "status", std::move(args)});
      const auto start = Clock::now();
      ++t.sent[kind];
      zmq::message_t reply;
      const bool got = socket->send(zmq::buffer(frame), zmq::send_flags::none).has_value() &&
                       socket->recv(reply).has_value();
      t.latency_ms[kind].push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      ++answered_;
      if (!got) {
        ++t.unanswered[kind];
        t.Sample(std::string(kKindNames[kind]) + ": no answer");
        socket = connect();
        continue;
      }
      auto decoded = proto::DecodeReply(reply.to_string_view(), proto::DecodeLimits{});
      if (!decoded.ok()) {
        ++t.errors[kind];
        t.Sample(std::string(kKindNames[kind]) + ": " + decoded.status().ToString());
      } else if (decoded->status.ok()) {
        ++t.ok[kind];
      } else if (kind == kZmqReload && decoded->status.code() == proto::ErrorCode::kSuperseded) {
        ++t.superseded[kind];
      } else {
        ++t.errors[kind];
        t.Sample(std::string(kKindNames[kind]) + ": " + decoded->status.ToString());
      }
    }
  }

  // One HTTP client: a keep-alive connection to the bridge (httplib reconnects when the bridge
  // closes it after its keep-alive maximum).
  void HttpClient(Tally& t) {
    httplib::Client client("127.0.0.1", agent_.bridge_port());
    client.set_keep_alive(true);
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(static_cast<time_t>(kAnswerTimeout.count() / 1000), 0);
    client.set_write_timeout(10, 0);
    for (int64_t n = 1; !stop_; ++n) {
      const Kind kind = n % kReloadEvery == 0 ? kHttpReload : kHttpStatus;
      const auto start = Clock::now();
      ++t.sent[kind];
      httplib::Result res =
          kind == kHttpReload
              ? client.Post("/reload", json{{"config", NextConfig()}}.dump(), "application/json")
              : client.Post("/getBackends", "", "text/plain");
      t.latency_ms[kind].push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      ++answered_;
      if (!res) {
        ++t.unanswered[kind];
        t.Sample(std::string(kKindNames[kind]) + ": " + httplib::to_string(res.error()));
        continue;
      }
      json body = json::parse(res->body, nullptr, /*allow_exceptions=*/false);
      const bool success = res->status == 200 && body.is_object() && body.value("success", false);
      if (success) {
        ++t.ok[kind];
      } else if (kind == kHttpReload && res->status == 409 && body.is_object() &&
                 body.value("code", "") == "superseded") {
        ++t.superseded[kind];
      } else {
        ++t.errors[kind];
        t.Sample(std::string(kKindNames[kind]) + ": HTTP " + std::to_string(res->status) + " " +
                 res->body.substr(0, 300));
      }
    }
  }

  HttpBackend a_{"a"};
  HttpBackend b_{"b"};
  AgentFixture agent_{Keys{}, Keys{{"agent_timeout", "60"}}};
  int frontend_ = 0;
  std::string configs_[2];
  std::atomic<uint64_t> reload_turn_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> answered_{0};  // requests finished, any outcome
};

TEST_F(LoadTest, SixtyFourClientsOverZmqAndHttpAllAnsweredMemoryFlat) {
  const int seconds = LoadSeconds();
  ASSERT_GT(seconds, kWarmupSeconds) << "LB_LOAD_SECONDS must exceed the warm-up";
  const pid_t agent_pid = agent_.agent_pid();
  const pid_t bridge_pid = agent_.bridge_pid();

  zmq::context_t context;
  std::vector<Tally> tallies(kZmqClients + kHttpClients);
  std::vector<std::thread> clients;
  const auto start = Clock::now();
  for (int i = 0; i < kZmqClients; ++i) {
    clients.emplace_back([&, i] { ZmqClient(context, tallies[i]); });
  }
  for (int i = 0; i < kHttpClients; ++i) {
    clients.emplace_back([&, i] { HttpClient(tallies[kZmqClients + i]); });
  }

  std::this_thread::sleep_for(std::chrono::seconds(kWarmupSeconds));
  const long agent_rss_start = VmRssKiB(agent_pid);
  const long bridge_rss_start = VmRssKiB(bridge_pid);
  const int64_t answered_at_warm = answered_;
  // RSS every 5 s, to show the trend in the report.
  std::string agent_series = std::to_string(agent_rss_start);
  std::string bridge_series = std::to_string(bridge_rss_start);
  const auto end = start + std::chrono::seconds(seconds);
  for (auto next = Clock::now() + std::chrono::seconds(5); next < end;
       next += std::chrono::seconds(5)) {
    std::this_thread::sleep_until(next);
    agent_series += " " + std::to_string(VmRssKiB(agent_pid));
    bridge_series += " " + std::to_string(VmRssKiB(bridge_pid));
  }
  std::this_thread::sleep_until(end);
  stop_ = true;
  for (auto& c : clients) c.join();
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  const long agent_rss_end = VmRssKiB(agent_pid);
  const long bridge_rss_end = VmRssKiB(bridge_pid);
  const int64_t measured_requests = answered_ - answered_at_warm;

  Tally total;
  for (const auto& t : tallies) total.Merge(t);
  int64_t http_measured = 0;  // share of HTTP among the measured requests, for the bridge
  int64_t all = 0, http_all = 0;
  for (int k = 0; k < kKinds; ++k) {
    all += total.sent[k];
    if (k == kHttpStatus || k == kHttpReload) http_all += total.sent[k];
  }
  http_measured = all > 0 ? measured_requests * http_all / all : 0;

  const double agent_growth = (agent_rss_end - agent_rss_start) * 1024.0;
  const double bridge_growth = (bridge_rss_end - bridge_rss_start) * 1024.0;
  const double agent_per_request = measured_requests > 0 ? agent_growth / measured_requests : 0;
  const double bridge_per_request = http_measured > 0 ? bridge_growth / http_measured : 0;

  std::ostringstream table;
  char when[64];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", std::localtime(&now));
  table << "load test " << when << (Sanitized() ? " (AddressSanitizer build)" : "") << ": "
        << kZmqClients << " ZeroMQ + " << kHttpClients << " HTTP clients, 1 reload per "
        << kReloadEvery << " requests, " << std::fixed << std::setprecision(1) << elapsed_s
        << " s (LB_LOAD_SECONDS=" << seconds << ")\n";
  table << std::left << std::setw(20) << "kind" << std::right << std::setw(9) << "sent"
        << std::setw(9) << "ok" << std::setw(11) << "superseded" << std::setw(8) << "errors"
        << std::setw(11) << "unanswered" << std::setw(10) << "p50 ms" << std::setw(10) << "p99 ms"
        << std::setw(10) << "max ms"
        << "\n";
  for (int k = 0; k < kKinds; ++k) {
    table << std::left << std::setw(20) << kKindNames[k] << std::right << std::setw(9)
          << total.sent[k] << std::setw(9) << total.ok[k] << std::setw(11) << total.superseded[k]
          << std::setw(8) << total.errors[k] << std::setw(11) << total.unanswered[k]
          << std::setprecision(2) << std::setw(10) << Percentile(total.latency_ms[k], 0.5)
          << std::setw(10) << Percentile(total.latency_ms[k], 0.99) << std::setw(10)
          << Percentile(total.latency_ms[k], 1.0) << "\n";
  }
  table << std::setprecision(1) << "requests: " << all << " (" << all / elapsed_s
        << "/s); after the " << kWarmupSeconds << " s warm-up: " << measured_requests << " ("
        << http_measured << " through the bridge)\n";
  auto detectable = [](int64_t requests) {
    return requests > 0 ? static_cast<double>(kSlackBytes) / requests + kMaxBytesPerRequest : 0;
  };
  if (Sanitized()) table << "(RSS bound not asserted under ASan: LeakSanitizer judges leaks)\n";
  table << std::setprecision(2) << "RSS agent:  " << agent_rss_start << " KiB after warm-up -> "
        << agent_rss_end << " KiB at the end (" << agent_per_request
        << " bytes per request; a leak above " << detectable(measured_requests) << " would fail)\n";
  table << "RSS bridge: " << bridge_rss_start << " KiB after warm-up -> " << bridge_rss_end
        << " KiB at the end (" << bridge_per_request << " bytes per request; a leak above "
        << detectable(http_measured) << " would fail)\n";
  table << "RSS KiB every 5 s, agent:  " << agent_series << "\n";
  table << "RSS KiB every 5 s, bridge: " << bridge_series << "\n";
  json info = agent_.Ok("info");
  table << "agent: " << info["agent"].value("reload_runs", int64_t{0}) << " reload runs, "
        << info["agent"].value("reloads_superseded", int64_t{0}) << " superseded; haproxy "
        << info["haproxy"].value("reloads", 0) << " reloads\n";
  for (const auto& s : total.samples) table << "  error: " << s << "\n";
  std::cout << table.str() << std::flush;
  {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(ReportPath()).parent_path(), ec);
    std::ofstream report(ReportPath(), std::ios::app);
    report << table.str() << "\n";
  }

  for (int k = 0; k < kKinds; ++k) {
    SCOPED_TRACE(kKindNames[k]);
    EXPECT_GT(total.sent[k], 0);
    EXPECT_EQ(total.unanswered[k], 0) << "requests without an answer";
    EXPECT_EQ(total.errors[k], 0) << "answers other than success or superseded";
    EXPECT_EQ(total.sent[k],
              total.ok[k] + total.superseded[k] + total.errors[k] + total.unanswered[k]);
  }
  EXPECT_EQ(total.superseded[kZmqStatus] + total.superseded[kHttpStatus], 0);
  EXPECT_TRUE(agent_.AgentRunning()) << "lb-agent died under load";
  EXPECT_TRUE(agent_.BridgeRunning()) << "lb-bridge died under load";
  EXPECT_TRUE(agent_.Ok("ping")["pong"]);

  // A clean exit: under the sanitizers LeakSanitizer reports every leaked block here.
  agent_.StopBridge();
  agent_.StopAgent();
  const std::string bridge_log = ReadFile(agent_.dir().File("bridge.log"));
  for (const char* report : {"ERROR: LeakSanitizer", "ERROR: AddressSanitizer", "runtime error"}) {
    EXPECT_EQ(agent_.AgentLog().find(report), std::string::npos) << "lb-agent: " << report;
    EXPECT_EQ(bridge_log.find(report), std::string::npos) << "lb-bridge: " << report;
  }

  ASSERT_GT(agent_rss_start, 0);
  ASSERT_GT(bridge_rss_start, 0);
  EXPECT_GT(measured_requests, 1000) << "too few requests to judge memory";
  if (Sanitized()) {
    // ASan's allocator keeps freed memory in quarantine and per-thread caches and its RSS climbs
    // for minutes whatever the program does (measured: +8 MiB agent, +53 MiB bridge over 60 s,
    // against +0.3 / +1.0 MiB without ASan): there LeakSanitizer, above, judges leaks.
    return;
  }
  EXPECT_LT(agent_growth, kSlackBytes + kMaxBytesPerRequest * measured_requests)
      << "lb-agent RSS grew " << agent_growth / 1024 << " KiB over " << measured_requests
      << " requests";
  EXPECT_LT(bridge_growth, kSlackBytes + kMaxBytesPerRequest * http_measured)
      << "lb-bridge RSS grew " << bridge_growth / 1024 << " KiB over " << http_measured
      << " requests";
}

}  // namespace
}  // namespace lb::testing
