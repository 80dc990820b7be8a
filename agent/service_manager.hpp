// systemd integration through libsystemd's sd-daemon: a listening socket passed by socket
// activation, readiness and status notifications, and watchdog pings. Every call is a no-op
// when the agent was not started by systemd.
#pragma once

#include "nsagent/unique_fd.hpp"

#include <chrono>
#include <optional>
#include <string>

namespace nsagent {

// The listening socket systemd passed (LISTEN_FDS), if any. Throws std::runtime_error when the
// passed fds are not exactly one listening Unix stream socket.
std::optional<unique_fd> socket_from_service_manager();

void notify_ready(const std::string& status);
void notify_status(const std::string& status);
void notify_stopping();
void notify_watchdog();
// Half of WatchdogSec= when the watchdog is on: how often to ping.
std::optional<std::chrono::microseconds> watchdog_interval();

} // namespace nsagent
