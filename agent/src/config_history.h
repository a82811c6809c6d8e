// The `history` and `rollback` commands (proto/PROTOCOL.md): the configs ConfigStore kept, with
// their time, sha256 and outcome, and which of them a rollback applies. A rollback is an ordinary
// reload of a kept file (same worker, same checks, same events); nothing here touches haproxy.
// Pure functions over what ConfigStore::History() lists, apart from ListKeptConfigs which reads
// the files; thread-safe (the query pool runs them).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config_store.h"
#include "lb/proto/status.h"

namespace lb::agent {

struct KeptConfig {
  ConfigStore::HistoryEntry entry;
  std::string sha256;  // "" when the file could not be read
  bool live = false;   // the newest entry whose text is the live config
};

// Every kept config, newest first, with its sha256; `live_sha256` marks the live one.
std::vector<KeptConfig> ListKeptConfigs(const ConfigStore& store, const std::string& live_sha256);

// The `history` result: {"history_dir", "keep", "live_sha256", "entries": [{"n", "id",
// "time_unix_ms", "time", "outcome", "sha256", "bytes", "live"}]}, n = 0 the newest.
nlohmann::json HistoryResult(const ConfigStore& store, const std::vector<KeptConfig>& kept,
                             const std::string& live_sha256);

// Which entry a `rollback` with `args` applies: "n" (its number in `history`) or "id"; without
// either, the newest entry that was live (applied, was_live, replaced) and is not the live
// config. "sha256", when given, must be that entry's (the list changed since the caller read
// it otherwise). kBadRequest with what exists when nothing matches.
proto::Result<std::size_t> ChooseRollback(const std::vector<KeptConfig>& kept,
                                          const nlohmann::json& args);

}  // namespace lb::agent
