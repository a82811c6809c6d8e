#include "prometheus_text.h"

#include <charconv>
#include <cmath>

namespace lb::bridge::prometheus {
namespace {

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Backslash and newline always; the double quote only inside a label value.
std::string Escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Family& Family::Add(Labels labels, double value) {
  samples.push_back(Sample{"", std::move(labels), value});
  return *this;
}

Family& Family::AddHistogram(const Labels& labels, const std::vector<double>& bounds,
                             const std::vector<uint64_t>& cumulative, double sum, uint64_t count) {
  for (std::size_t i = 0; i < bounds.size() && i < cumulative.size(); ++i) {
    Labels with_le = labels;
    with_le.emplace_back("le", FormatValue(bounds[i]));
    samples.push_back(Sample{"_bucket", std::move(with_le), static_cast<double>(cumulative[i])});
  }
  Labels inf = labels;
  inf.emplace_back("le", "+Inf");
  samples.push_back(Sample{"_bucket", std::move(inf), static_cast<double>(count)});
  samples.push_back(Sample{"_sum", labels, sum});
  samples.push_back(Sample{"_count", labels, static_cast<double>(count)});
  return *this;
}

std::string EscapeLabelValue(std::string_view value) { return Escape(value, /*quote=*/true); }

std::string EscapeHelp(std::string_view help) { return Escape(help, /*quote=*/false); }

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

std::string Encode(const std::vector<Family>& families) {
  std::string out;
  for (const Family& family : families) {
    out += "# HELP " + family.name + " " + EscapeHelp(family.help) + "\n";
    out += "# TYPE " + family.name + " ";
    out += TypeName(family.type);
    out += "\n";
    for (const Sample& sample : family.samples) {
      out += family.name;
      out += sample.suffix;
      if (!sample.labels.empty()) {
        out += "{";
        for (std::size_t i = 0; i < sample.labels.size(); ++i) {
          if (i > 0) out += ",";
          out += sample.labels[i].first + "=\"" + EscapeLabelValue(sample.labels[i].second) + "\"";
        }
        out += "}";
      }
      out += " " + FormatValue(sample.value) + "\n";
    }
  }
  return out;
}

}  // namespace lb::bridge::prometheus
