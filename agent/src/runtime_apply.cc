#include "runtime_apply.h"

#include <thread>

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

Status RunRuntimePlan(HaproxyControl& control, const RuntimePlan& plan,
                      std::chrono::milliseconds drain_timeout, std::vector<std::string>* sent) {
  std::size_t i = 0;
  while (i < plan.commands.size()) {
    std::vector<std::string> batch;
    std::size_t bytes = 0;
    while (i < plan.commands.size() &&
           (batch.empty() || bytes + plan.commands[i].size() + 6 <= kBatchBytes)) {
      bytes += plan.commands[i].size() + 6;
      batch.push_back(plan.commands[i++]);
    }
    sent->insert(sent->end(), batch.begin(), batch.end());
    auto answer = control.WorkerCommands(batch);
    if (!answer.ok()) return answer.status();
    if (auto refused = RuntimeRefusals(*answer); !refused.empty()) {
      return Status(ErrorCode::kReloadFailed,
                    "haproxy refused a runtime command: " + Quote(refused));
    }
  }
  const auto deadline = Clock::now() + drain_timeout;
  for (const RuntimeRemoval& r : plan.removals) {
    const std::string command = "del server " + r.backend + "/" + r.server;
    sent->push_back(command);
    while (true) {
      auto answer = control.WorkerCommand(command);
      if (!answer.ok()) return answer.status();
      auto refused = RuntimeRefusals(*answer);
      if (refused.empty()) break;
      const bool busy = refused.size() == 1 && refused[0].find("still has") != std::string::npos;
      if (!busy) {
        return Status(ErrorCode::kReloadFailed,
                      "haproxy refused \"" + command + "\": " + Quote(refused));
      }
      if (Clock::now() >= deadline) {
        return Status(ErrorCode::kTimeout, "server " + r.backend + "/" + r.server +
                                               " still had connections after " +
                                               std::to_string(drain_timeout.count()) +
                                               " ms in maintenance (runtime_drain_timeout)");
      }
      std::this_thread::sleep_for(kDrainPoll);
    }
  }
  return Status::Ok();
}

}  // namespace lb::agent
