// Socket addresses as text, the protocol's way ("127.0.0.1:80", "[::1]:53", "@abstract",
// "/path"), shared by the net ops that bind, connect and report addresses.
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace nsagent {

struct endpoint {
    sockaddr_storage addr{};
    socklen_t len = 0;
};

// Parses `text` for `family` (AF_INET: host:port; AF_INET6: [v6]:port; AF_UNIX: @name or /path).
// Unix paths resolve in the agent's own mount namespace; abstract names are scoped by the
// network namespace of the socket, which is the useful case.
std::optional<endpoint> parse_endpoint(std::string_view text, int family);
std::string endpoint_text(const sockaddr_storage& a, socklen_t len);
// inet_ntop for AF_INET or AF_INET6 bytes.
std::string ip_text(int family, const void* p);

} // namespace nsagent
