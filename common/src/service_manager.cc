#include "lb/common/service_manager.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lb::common {
namespace {

using Clock = std::chrono::steady_clock;

struct State {
  std::string socket_path;  // as in NOTIFY_SOCKET; empty: no service manager
  std::chrono::microseconds watchdog{0};
  std::atomic<int64_t> last_ping_us{0};  // Clock time of the last WATCHDOG=1
};

State& Global() {
  static State state;
  return state;
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
      .count();
}

}  // namespace

void InitServiceManager() {
  State& state = Global();
  state.socket_path.clear();
  state.watchdog = std::chrono::microseconds(0);
  if (const char* path = std::getenv("NOTIFY_SOCKET"); path != nullptr) state.socket_path = path;
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  // WATCHDOG_PID, when set, names the process the watchdog is meant for.
  const bool for_us = pid == nullptr || std::strtoll(pid, nullptr, 10) == getpid();
  if (usec != nullptr && for_us) {
    const long long value = std::strtoll(usec, nullptr, 10);
    if (value > 0) state.watchdog = std::chrono::microseconds(value);
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  state.last_ping_us = NowUs();
}

bool NotifyServiceManager(std::string_view message) {
  const std::string& path = Global().socket_path;
  if (path.empty()) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof address.sun_path) return false;
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') address.sun_path[0] = '\0';  // the abstract namespace
  const socklen_t length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '/'));
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ssize_t sent;
  do {
    sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  close(fd);
  return sent == static_cast<ssize_t>(message.size());
}

namespace {
void NotifyWithStatus(std::string state, std::string_view status) {
  if (!status.empty()) {
    state += "\nSTATUS=";
    // One line: a newline would start another assignment.
    for (char c : status) state += (c == '\n' || c == '\r') ? ' ' : c;
  }
  NotifyServiceManager(state);
}
}  // namespace

void NotifyReady(std::string_view status) { NotifyWithStatus("READY=1", status); }

void NotifyReloading() {
  // MONOTONIC_USEC lets systemd >= 253 tell this reload from an earlier one; older versions
  // ignore it.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long usec = static_cast<long long>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
  NotifyServiceManager("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void NotifyStopping() { NotifyServiceManager("STOPPING=1"); }

std::chrono::microseconds WatchdogInterval() { return Global().watchdog; }

void ServiceWatchdog() {
  State& state = Global();
  if (state.watchdog.count() <= 0) return;
  const int64_t now = NowUs();
  int64_t last = state.last_ping_us.load();
  if (now - last < state.watchdog.count() / 2) return;
  // One thread pings per interval even when several call this at once.
  if (!state.last_ping_us.compare_exchange_strong(last, now)) return;
  NotifyServiceManager("WATCHDOG=1");
}

}  // namespace lb::common
