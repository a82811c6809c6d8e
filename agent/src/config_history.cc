#include "config_history.h"

#include <time.h>

#include <cstdio>

#include "lb/common/sha256.h"
#include "lb/common/text.h"

namespace lb::agent {
namespace {

using nlohmann::json;
using proto::ErrorCode;
using proto::Result;
using proto::Status;

bool WasLive(const std::string& outcome) {
  return outcome == "applied" || outcome == "was_live" || outcome == "replaced";
}

}  // namespace

std::vector<KeptConfig> ListKeptConfigs(const ConfigStore& store, const std::string& live_sha256) {
  std::vector<KeptConfig> kept;
  bool live_found = false;
  for (auto& entry : store.History()) {
    KeptConfig config;
    auto text = store.ReadEntry(entry);
    if (text.ok()) config.sha256 = common::Sha256Hex(*text);
    config.entry = std::move(entry);
    if (!live_found && !live_sha256.empty() && config.sha256 == live_sha256 &&
        (WasLive(config.entry.outcome) || config.entry.outcome == "pending")) {
      config.live = live_found = true;
    }
    kept.push_back(std::move(config));
  }
  return kept;
}

json HistoryResult(const ConfigStore& store, const std::vector<KeptConfig>& kept,
                   const std::string& live_sha256) {
  json entries = json::array();
  for (std::size_t n = 0; n < kept.size(); ++n) {
    const KeptConfig& k = kept[n];
    entries.push_back(
        {{"n", n},
         {"id", k.entry.id},
         {"time_unix_ms", k.entry.time_unix_us / 1000},
         {"time", common::FormatUtc(k.entry.time_unix_us, common::UtcFormat::kMicros)},
         {"outcome", k.entry.outcome},
         {"sha256", k.sha256},
         {"bytes", k.entry.bytes},
         {"live", k.live}});
  }
  return json{{"history_dir", store.history_dir()},
              {"keep", store.history_keep()},
              {"live_sha256", live_sha256},
              {"entries", std::move(entries)}};
}

Result<std::size_t> ChooseRollback(const std::vector<KeptConfig>& kept, const json& args) {
  if (!args.is_object()) return Status(ErrorCode::kBadRequest, "args must be a map");
  if (kept.empty()) {
    return Status(ErrorCode::kBadRequest,
                  "no kept config to roll back to (the history is empty: history_keep = 0, or "
                  "nothing was applied yet)");
  }
  const std::string range = "0 to " + std::to_string(kept.size() - 1);
  std::size_t chosen = kept.size();
  if (auto n = args.find("n"); n != args.end()) {
    if (!n->is_number_integer() || n->get<int64_t>() < 0) {
      return Status(ErrorCode::kBadRequest,
                    "argument \"n\" must be an entry number of `history` (" + range + ")");
    }
    if (n->get<int64_t>() >= static_cast<int64_t>(kept.size())) {
      return Status(ErrorCode::kBadRequest, "no entry " + std::to_string(n->get<int64_t>()) +
                                                " in the history: it holds " + range);
    }
    chosen = static_cast<std::size_t>(n->get<int64_t>());
  } else if (auto id = args.find("id"); id != args.end()) {
    if (!id->is_string()) {
      return Status(ErrorCode::kBadRequest, "argument \"id\" must be a string (an entry's id)");
    }
    for (std::size_t i = 0; i < kept.size() && chosen == kept.size(); ++i) {
      if (kept[i].entry.id == id->get<std::string>()) chosen = i;
    }
    if (chosen == kept.size()) {
      return Status(ErrorCode::kBadRequest, "no entry with id \"" +
                                                id->get<std::string>().substr(0, 64) +
                                                "\" in the history (see `history`)");
    }
  } else {
    std::string live_sha;
    for (const auto& k : kept) {
      if (k.live) live_sha = k.sha256;
    }
    for (std::size_t i = 0; i < kept.size() && chosen == kept.size(); ++i) {
      if (WasLive(kept[i].entry.outcome) && !kept[i].sha256.empty() && kept[i].sha256 != live_sha) {
        chosen = i;
      }
    }
    if (chosen == kept.size()) {
      return Status(ErrorCode::kBadRequest,
                    "no kept config other than the live one was ever live; name an entry with "
                    "\"n\" (" +
                        range + ")");
    }
  }
  if (kept[chosen].sha256.empty()) {
    return Status(ErrorCode::kInternal,
                  "history entry " + kept[chosen].entry.path + " cannot be read any more");
  }
  if (auto sha = args.find("sha256"); sha != args.end()) {
    if (!sha->is_string() || sha->get<std::string>() != kept[chosen].sha256) {
      return Status(ErrorCode::kConflict,
                    "history entry " + std::to_string(chosen) + " is " + kept[chosen].sha256 +
                        ", not the sha256 given: the history changed; nothing was changed",
                    json{{"sha256", kept[chosen].sha256}});
    }
  }
  return chosen;
}

}  // namespace lb::agent
