// sd-daemon calls.
#include "service_manager.hpp"

#include <systemd/sd-daemon.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <stdexcept>

namespace nsagent {

std::optional<unique_fd> socket_from_service_manager()
{
    int n = sd_listen_fds(1); // 1: unset LISTEN_FDS, so nothing the agent runs inherits them
    if (n <= 0)
        return std::nullopt;
    if (n > 1)
        throw std::runtime_error("systemd passed " + std::to_string(n) + " sockets; nsagent.socket should pass one");
    int fd = SD_LISTEN_FDS_START;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0)
        throw std::runtime_error("the socket systemd passed is not a listening Unix stream socket");
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    return unique_fd(fd);
}

void notify_ready(const std::string& status)
{
    sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}

void notify_status(const std::string& status)
{
    sd_notify(0, ("STATUS=" + status).c_str());
}

void notify_stopping()
{
    sd_notify(0, "STOPPING=1\nSTATUS=draining");
}

void notify_watchdog()
{
    sd_notify(0, "WATCHDOG=1");
}

std::optional<std::chrono::microseconds> watchdog_interval()
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return std::nullopt;
    return std::chrono::microseconds(usec / 2);
}

} // namespace nsagent
