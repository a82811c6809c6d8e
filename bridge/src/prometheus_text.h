// The Prometheus text exposition format, version 0.0.4, written by hand: what GET /metrics
// answers. Pure and thread-safe; no sockets.
//
//   # HELP <name> <help, with \ and newline escaped>
//   # TYPE <name> counter|gauge|histogram
//   <name><suffix>{<label>="<value, with \, " and newline escaped>",...} <value>
//
// Every family gets its HELP and TYPE lines, even without samples. A histogram's samples are
// <name>_bucket{...,le="<bound>"} for each bound and le="+Inf", then <name>_sum and <name>_count.
// Metric and label names are the caller's constants (checked by the unit test, not at run
// time); label values may be anything and are escaped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lb::bridge::prometheus {

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string suffix;  // "" or, in a histogram, "_bucket", "_sum", "_count"
  Labels labels;
  double value = 0;
};

struct Family {
  std::string name;  // counters end in _total
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<Sample> samples;

  // One sample of a counter or gauge.
  Family& Add(Labels labels, double value);
  // One labelled histogram: cumulative[i] observations <= bounds[i]; `count` is the +Inf bucket.
  Family& AddHistogram(const Labels& labels, const std::vector<double>& bounds,
                       const std::vector<uint64_t>& cumulative, double sum, uint64_t count);
};

// "a\b" -> "a\\b", "\"" -> "\\\"", newline -> "\\n"; everything else as it is.
std::string EscapeLabelValue(std::string_view value);
// HELP text: backslash and newline escaped.
std::string EscapeHelp(std::string_view help);
// Shortest text that reads back as the same double: "3", "0.005", "+Inf", "-Inf", "NaN".
std::string FormatValue(double value);

std::string Encode(const std::vector<Family>& families);

}  // namespace lb::bridge::prometheus
