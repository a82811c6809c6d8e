#include "runtime_apply.h"

#include <cstdlib>
#include <sstream>
#include <thread>

#include "server_state.h"

namespace lb::agent {
namespace {

using proto::ErrorCode;
using proto::Status;
using Clock = std::chrono::steady_clock;

// Bytes of commands per connection: well under the CLI's 16 KB request buffer (tune.bufsize).
constexpr std::size_t kBatchBytes = 8000;
constexpr std::chrono::milliseconds kDrainPoll{10};

bool IsSuccessLine(std::string_view line) {
  return line == "New server registered." || line == "Server deleted." ||
         line.rfind("IP changed from", 0) == 0 || line.rfind("no need to change the addr", 0) == 0;
}

std::string Quote(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "\"" : "; \"") + l + "\"";
  return out;
}

// True when every connection haproxy holds to the server is idle (`show servers conn`: used_cur
// is 0, idle_cur is not).
bool IdleOnly(HaproxyControl& control, const RuntimeRemoval& r) {
  auto text = control.WorkerCommand("show servers conn " + r.backend);
  if (!text.ok()) return false;
  std::size_t pos = 0;
  std::vector<std::string> columns;
  const std::string key = r.backend + "/" + r.server;
  while (pos < text->size()) {
    std::size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    std::istringstream line(text->substr(pos, nl - pos));
    pos = nl + 1;
    std::vector<std::string> words;
    for (std::string w; line >> w;) words.push_back(w);
    if (words.empty()) continue;
    if (words[0] == "#") {
      columns.assign(words.begin() + 1, words.end());
      continue;
    }
    if (words[0] != key) continue;
    auto at = [&](const char* name) -> long {
      for (std::size_t i = 0; i < columns.size() && i < words.size(); ++i) {
        if (columns[i] == name) return std::strtol(words[i].c_str(), nullptr, 10);
      }
      return -1;
    };
    return at("used_cur") == 0 && at("idle_cur") > 0;
  }
  return false;
}

}  // namespace

std::vector<std::string> RuntimeRefusals(std::string_view answer) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < answer.size()) {
    std::size_t nl = answer.find('\n', pos);
    if (nl == std::string_view::npos) nl = answer.size();
    std::string_view line = answer.substr(pos, nl - pos);
    pos = nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (!line.empty() && !IsSuccessLine(line)) out.emplace_back(line.substr(0, 200));
  }
  return out;
}

// Sends `commands` in batches of up to kBatchBytes; a refusal stops it, except haproxy's "still
// has connections" to a `del server` when `busy_ok`.
Status SendInBatches(HaproxyControl& control, const std::vector<std::string>& commands,
                     bool busy_ok) {
  std::size_t i = 0;
  while (i < commands.size()) {
    std::vector<std::string> batch;
    std::size_t bytes = 0;
    while (i < commands.size() &&
           (batch.empty() || bytes + commands[i].size() + 6 <= kBatchBytes)) {
      bytes += commands[i].size() + 6;
      batch.push_back(commands[i++]);
    }
    auto answer = control.WorkerCommands(batch);
    if (!answer.ok()) return answer.status();
    std::vector<std::string> refused;
    for (auto& line : RuntimeRefusals(*answer)) {
      if (!(busy_ok && line.find("still has") != std::string::npos)) refused.push_back(line);
    }
    if (!refused.empty()) {
      return Status(ErrorCode::kReloadFailed,
                    "haproxy refused a runtime command: " + Quote(refused));
    }
  }
  return Status::Ok();
}

Status RunRuntimePlan(HaproxyControl& control, const RuntimePlan& plan,
                      std::chrono::milliseconds drain_timeout, std::vector<std::string>* sent) {
  sent->insert(sent->end(), plan.commands.begin(), plan.commands.end());
  if (Status s = SendInBatches(control, plan.commands, false); !s.ok()) return s;
  // Removals: every pending `del server` in one batch, then what still runs is read back;
  // haproxy refuses a server that still has connections, which is waited for.
  const auto deadline = Clock::now() + drain_timeout;
  std::vector<RuntimeRemoval> pending = plan.removals;
  bool first = true;
  while (!pending.empty()) {
    std::vector<std::string> deletes;
    for (const RuntimeRemoval& r : pending)
      deletes.push_back("del server " + r.backend + "/" + r.server);
    if (first) sent->insert(sent->end(), deletes.begin(), deletes.end());
    first = false;
    if (Status s = SendInBatches(control, deletes, true); !s.ok()) return s;
    auto text = control.WorkerCommand("show servers state");
    auto running =
        text.ok() ? ParseServersState(*text) : proto::Result<ServersState>(text.status());
    if (!running.ok()) return running.status();
    std::vector<RuntimeRemoval> busy;
    for (const RuntimeRemoval& r : pending) {
      if (running->Find(r.backend, r.server) != nullptr) busy.push_back(r);
    }
    pending = std::move(busy);
    if (pending.empty()) break;
    if (Clock::now() >= deadline) {
      std::string names;
      for (const RuntimeRemoval& r : pending) {
        names += (names.empty() ? "" : ", ") + r.backend + "/" + r.server;
      }
      return Status(ErrorCode::kTimeout, std::string(pending.size() == 1 ? "server " : "servers ") +
                                             names + " still had connections after " +
                                             std::to_string(drain_timeout.count()) +
                                             " ms in maintenance (runtime_drain_timeout)");
    }
    // A connection that ended after the server entered maintenance stays in haproxy 2.6's idle
    // pool until pool-purge-delay (5 s by default) and blocks the deletion; entering
    // maintenance again purges it (through DRAIN, which takes no new request either).
    std::vector<std::string> purges;
    for (const RuntimeRemoval& r : pending) {
      if (!IdleOnly(control, r)) continue;
      const std::string id = r.backend + "/" + r.server;
      purges.push_back("set server " + id + " state drain");
      purges.push_back("set server " + id + " state maint");
    }
    if (!purges.empty()) {
      sent->insert(sent->end(), purges.begin(), purges.end());
      if (Status s = SendInBatches(control, purges, false); !s.ok()) return s;
      continue;
    }
    std::this_thread::sleep_for(kDrainPoll);
  }
  return Status::Ok();
}

}  // namespace lb::agent
