// GET /metrics without sockets: the Prometheus text encoder, route templates, the bridge's
// request counters, the `metrics` result's JSON mapping and the agent's MetricsRecorder.
#include "metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "metrics_recorder.h"
#include "prometheus_text.h"

namespace lb {
namespace {

using bridge::prometheus::Encode;
using bridge::prometheus::EscapeLabelValue;
using bridge::prometheus::Family;
using bridge::prometheus::FormatValue;
using bridge::prometheus::MetricType;
using nlohmann::json;

TEST(PrometheusTextTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(EscapeLabelValue("two\nlines"), "two\\nlines");
  Family f{"x_total", "h", MetricType::kCounter, {}};
  f.Add({{"v", "\\\"\n"}}, 1);
  EXPECT_EQ(Encode({f}),
            "# HELP x_total h\n# TYPE x_total counter\nx_total{v=\"\\\\\\\"\\n\"} 1\n");
}

TEST(PrometheusTextTest, HelpEscapesBackslashAndNewlineButNotQuotes) {
  Family f{"g", "a \\ b\n\"c\"", MetricType::kGauge, {}};
  EXPECT_EQ(Encode({f}), "# HELP g a \\\\ b\\n\"c\"\n# TYPE g gauge\n");
}

TEST(PrometheusTextTest, HistogramHasEveryBucketThenInfSumAndCount) {
  Family f{"d_seconds", "d", MetricType::kHistogram, {}};
  f.AddHistogram({{"k", "v"}}, {0.005, 0.5, 10}, {1, 3, 3}, 2.75, 4);
  EXPECT_EQ(Encode({f}),
            "# HELP d_seconds d\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{k=\"v\",le=\"0.005\"} 1\n"
            "d_seconds_bucket{k=\"v\",le=\"0.5\"} 3\n"
            "d_seconds_bucket{k=\"v\",le=\"10\"} 3\n"
            "d_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{k=\"v\"} 2.75\n"
            "d_seconds_count{k=\"v\"} 4\n");
}

TEST(PrometheusTextTest, ValuesAreShortestRoundTripTextAndSpecialValuesAreSpelledOut) {
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1733230000.123), "1733230000.123");
  EXPECT_EQ(FormatValue(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(PrometheusTextTest, ObservedHistogramCountsEachValueInEveryBucketAtOrAboveIt) {
  proto::Histogram h = proto::Histogram::WithBounds({0.1, 1});
  h.Observe(0.1);  // on a bound: in that bucket (le is "less or equal")
  h.Observe(0.5);
  h.Observe(7);
  EXPECT_EQ(h.cumulative, (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(h.count, 3u);
  EXPECT_DOUBLE_EQ(h.sum, 7.6);
}

TEST(RouteTemplateTest, KnownRoutesKeepTheirNameAndEveryOtherPathIsOther) {
  EXPECT_EQ(bridge::RouteTemplate("/reload"), "/reload");
  EXPECT_EQ(bridge::RouteTemplate("/metrics"), "/metrics");
  EXPECT_EQ(bridge::RouteTemplate("/v1/backends/web"), "/v1/backends/{name}");
  EXPECT_EQ(bridge::RouteTemplate("/v1/backends/web/extra"), "other");
  EXPECT_EQ(bridge::RouteTemplate("/v1/backends/"), "other");
  EXPECT_EQ(bridge::RouteTemplate("/attacker-chosen-0001"), "other");
  EXPECT_EQ(bridge::RouteTemplate("/reload/"), "other");
  EXPECT_EQ(bridge::RouteTemplate(""), "other");
}

TEST(RequestMetricsTest, CountsByRouteTemplateAndCodeWithoutTheRawPath) {
  bridge::RequestMetrics requests;
  requests.Count("/reload", 200);
  requests.Count("/reload", 200);
  requests.Count("/reload", 422);
  for (int i = 0; i < 100; ++i) requests.Count("/x" + std::to_string(i), 404);
  requests.Count("/healthz", 9999);
  const std::string text = Encode({requests.Family()});
  EXPECT_NE(text.find("lbagent_bridge_requests_total{route=\"/reload\",code=\"200\"} 2\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("lbagent_bridge_requests_total{route=\"/reload\",code=\"422\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("lbagent_bridge_requests_total{route=\"other\",code=\"404\"} 100\n"),
            std::string::npos);
  EXPECT_NE(text.find("lbagent_bridge_requests_total{route=\"/healthz\",code=\"other\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(text.find("/x1"), std::string::npos);
}

proto::AgentMetrics SampleMetrics() {
  proto::AgentMetrics m;
  m.reloads = {{"applied", 2}, {"invalid_config", 1}};
  m.updates = {{"reload", 1}, {"runtime", 1}, {"unchanged", 0}};
  m.rollbacks = {{"automatic", 0}, {"command", 0}};
  m.reload_duration.Observe(0.02);
  m.haproxy_up = true;
  m.old_workers = 1;
  m.config_sha256 = std::string(64, 'a');
  m.events_published = {{"reload", 3}, {"heartbeat", 9}};
  m.event_seq = 7;
  m.event_epoch_ms = 1733230000000;
  m.start_time_seconds = 1733230000.5;
  return m;
}

TEST(AgentMetricsTest, JsonRoundTripKeepsEveryField) {
  const proto::AgentMetrics m = SampleMetrics();
  auto back = proto::AgentMetricsFromJson(proto::ToJson(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->reloads, m.reloads);
  EXPECT_EQ(back->updates, m.updates);
  EXPECT_EQ(back->reload_duration.bounds, m.reload_duration.bounds);
  EXPECT_EQ(back->reload_duration.cumulative, m.reload_duration.cumulative);
  EXPECT_EQ(back->reload_duration.count, 1u);
  EXPECT_EQ(back->old_workers, std::optional<int64_t>(1));
  EXPECT_EQ(back->config_sha256, m.config_sha256);
  EXPECT_EQ(back->events_published, m.events_published);
  EXPECT_EQ(back->event_seq, 7u);
  EXPECT_EQ(back->event_epoch_ms, m.event_epoch_ms);
  EXPECT_DOUBLE_EQ(back->start_time_seconds, m.start_time_seconds);
}

TEST(AgentMetricsTest, RepliesThatCouldCreateSeriesOrBreakTheHistogramAreRefused) {
  json good = proto::ToJson(SampleMetrics());
  auto refused = [](json j, const std::string& field) {
    auto r = proto::AgentMetricsFromJson(j);
    EXPECT_FALSE(r.ok()) << j.dump();
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), proto::ErrorCode::kBadRequest);
      EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
    }
  };
  json j = good;
  j["reloads"]["Bad Label\n"] = 1;
  refused(j, "reloads");
  j = good;
  for (int i = 0; i < 65; ++i) j["updates"]["k" + std::to_string(i)] = 1;
  refused(j, "updates");
  j = good;
  j["reloads"]["applied"] = -1;
  refused(j, "reloads.applied");
  j = good;
  j["reload_duration_seconds"]["cumulative"][0] = 5;  // more than count
  refused(j, "reload_duration_seconds.cumulative");
  j = good;
  j["reload_duration_seconds"]["le"][1] = 0.001;  // not increasing
  refused(j, "reload_duration_seconds.le");
  j = good;
  j["haproxy"]["up"] = "yes";
  refused(j, "up");
  j = good;
  j["config"]["sha256"] = std::string(65, 'a');
  refused(j, "config.sha256");
  refused(json::array(), "result");
}

TEST(AgentFamiliesTest, EveryFamilyHasTheLbagentPrefixAndTheConfigIsAnInfoMetric) {
  proto::AgentMetrics m = SampleMetrics();
  bridge::RequestMetrics requests;
  const std::string text = bridge::MetricsPage(&m, requests, 2);
  EXPECT_NE(text.find("lbagent_agent_up 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lbagent_reloads_total{outcome=\"applied\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("lbagent_updates_total{via=\"runtime\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("lbagent_reload_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("lbagent_config_info{sha256=\"" + std::string(64, 'a') + "\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("lbagent_haproxy_old_workers 1\n"), std::string::npos);
  EXPECT_NE(text.find("lbagent_bridge_sse_streams 2\n"), std::string::npos);
  EXPECT_EQ(text.find("lbagent_fleet_"), std::string::npos) << "fleet is off";
  for (size_t at = 0; (at = text.find("# TYPE ", at)) != std::string::npos; at += 7) {
    EXPECT_EQ(text.compare(at + 7, 8, "lbagent_"), 0) << text.substr(at, 60);
  }
  m.fleet_enabled = true;
  m.controller_connected = true;
  EXPECT_NE(bridge::MetricsPage(&m, requests, 0).find("lbagent_fleet_controller_connected 1\n"),
            std::string::npos);
  const std::string down = bridge::MetricsPage(nullptr, requests, 0);
  EXPECT_NE(down.find("lbagent_agent_up 0\n"), std::string::npos) << down;
  EXPECT_NE(down.find("# TYPE lbagent_bridge_requests_total counter\n"), std::string::npos);
  EXPECT_EQ(down.find("lbagent_reloads_total"), std::string::npos);
}

TEST(MetricsRecorderTest, CountsOutcomesUpdatesRollbacksAndDurations) {
  agent::MetricsRecorder recorder;
  recorder.ReloadAnswered(proto::Status::Ok(), {{"outcome", "applied"}, {"applied_via", "runtime"}},
                          "command");
  recorder.ReloadAnswered(proto::Status::Ok(), {{"outcome", "applied"}, {"applied_via", "reload"}},
                          "rollback");
  recorder.ReloadAnswered(proto::Status::Ok(),
                          {{"outcome", "unchanged"}, {"applied_via", "unchanged"}}, "fleet");
  recorder.ReloadAnswered(
      proto::Status(proto::ErrorCode::kReloadFailed, "refused", {{"rolled_back", true}}), nullptr,
      "command");
  recorder.ReloadAnswered(proto::Status(proto::ErrorCode::kInvalidConfig, "bad"), nullptr,
                          "command");
  recorder.ReloadAnswered(proto::Status(proto::ErrorCode::kTooLarge, "big"), nullptr, "command");
  recorder.ReloadTimed(std::chrono::milliseconds(30));
  recorder.ReloadTimed(std::chrono::seconds(60));

  proto::AgentMetrics m;
  recorder.Snapshot(&m);
  EXPECT_EQ(m.reloads["applied"], 2u);
  EXPECT_EQ(m.reloads["unchanged"], 1u);
  EXPECT_EQ(m.reloads["rolled_back"], 1u);
  EXPECT_EQ(m.reloads["invalid_config"], 1u);
  EXPECT_EQ(m.reloads["too_large"], 1u);
  EXPECT_EQ(m.reloads["conflict"], 0u) << "known outcomes are there at 0";
  EXPECT_EQ(m.updates["runtime"], 1u);
  EXPECT_EQ(m.updates["reload"], 1u);
  EXPECT_EQ(m.updates["unchanged"], 1u);
  EXPECT_EQ(m.rollbacks["automatic"], 1u);
  EXPECT_EQ(m.rollbacks["command"], 1u);
  EXPECT_EQ(m.reload_duration.count, 2u);
  EXPECT_EQ(m.reload_duration.cumulative.back(), 1u) << "60 s is above the last bound";
  EXPECT_NEAR(m.reload_duration.sum, 60.03, 1e-9);
}

}  // namespace
}  // namespace lb
