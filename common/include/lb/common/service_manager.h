// What lb-agent, lb-bridge and lb-controller tell systemd about themselves (Type=notify): the
// sd_notify(3) protocol, written here rather than linked from libsystemd: one datagram of
// "KEY=value" lines to the unix socket named by $NOTIFY_SOCKET ('@' for the abstract namespace).
// Without NOTIFY_SOCKET (a terminal, supervisord, a container) every call does nothing.
//
// DESIGN: InitServiceManager() reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once, in
// main() before any thread starts, and removes them from the environment, so that no child
// (haproxy, managed mode) talks to systemd on the daemon's behalf. The daemon then says:
//   READY=1      once it serves: its sockets are bound and (lb-agent, managed mode) haproxy
//                serves, or is known not to (STATUS= says why);
//   RELOADING=1  when SIGHUP starts a re-read, READY=1 when it is done (ExecReload);
//   STOPPING=1   when it starts shutting down;
//   WATCHDOG=1   from the loop that proves it alive, at half of WatchdogSec at most
//                (ServiceWatchdog); a daemon whose loop hangs is restarted by systemd.
// Thread-safe after InitServiceManager().
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace lb::common {

// Reads and unsets NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. Call once, in main(), before
// threads start.
void InitServiceManager();

// Sends `state` ("READY=1\nSTATUS=serving"). False when there is no service manager or the
// datagram could not be sent (nothing else can be done about it).
bool NotifyServiceManager(std::string_view state);

// The lines above, with an optional STATUS= (a sentence `systemctl status` shows).
void NotifyReady(std::string_view status = "");
void NotifyReloading();
void NotifyStopping();

// The watchdog interval systemd expects pings within (WatchdogSec=), or 0 when off.
std::chrono::microseconds WatchdogInterval();

// Sends WATCHDOG=1 when half of the interval has passed since the last ping. Cheap: call it on
// every turn of the loop that must stay alive.
void ServiceWatchdog();

}  // namespace lb::common
