// Socket address text.
#include "net_endpoint.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>

namespace nsagent {

std::string ip_text(int family, const void* p)
{
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(family, p, buf, sizeof buf);
    return buf;
}

std::optional<endpoint> parse_endpoint(std::string_view text, int family)
{
    endpoint e;
    if (family == AF_UNIX) {
        auto* un = reinterpret_cast<sockaddr_un*>(&e.addr);
        un->sun_family = AF_UNIX;
        if (text.empty() || text.size() >= sizeof un->sun_path)
            return std::nullopt;
        std::memcpy(un->sun_path, text.data(), text.size());
        if (text.front() == '@')
            un->sun_path[0] = '\0';
        else if (text.front() != '/')
            return std::nullopt;
        e.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + (text.front() == '@' ? 0 : 1));
        return e;
    }
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return std::nullopt;
    std::string host(text.substr(0, colon));
    auto port_text = text.substr(colon + 1);
    unsigned port = 0;
    if (port_text.empty() || port_text.size() > 5)
        return std::nullopt;
    for (char ch : port_text) {
        if (ch < '0' || ch > '9')
            return std::nullopt;
        port = port * 10 + static_cast<unsigned>(ch - '0');
    }
    if (port > 65535)
        return std::nullopt;
    if (family == AF_INET6) {
        if (host.size() < 2 || host.front() != '[' || host.back() != ']')
            return std::nullopt;
        host = host.substr(1, host.size() - 2);
        auto* in6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(static_cast<std::uint16_t>(port));
        if (::inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1)
            return std::nullopt;
        e.len = sizeof(sockaddr_in6);
        return e;
    }
    auto* in = reinterpret_cast<sockaddr_in*>(&e.addr);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1)
        return std::nullopt;
    e.len = sizeof(sockaddr_in);
    return e;
}

std::string endpoint_text(const sockaddr_storage& a, socklen_t len)
{
    switch (a.ss_family) {
    case AF_INET: {
        auto& in = reinterpret_cast<const sockaddr_in&>(a);
        return ip_text(AF_INET, &in.sin_addr) + ":" + std::to_string(ntohs(in.sin_port));
    }
    case AF_INET6: {
        auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
        return "[" + ip_text(AF_INET6, &in6.sin6_addr) + "]:" + std::to_string(ntohs(in6.sin6_port));
    }
    case AF_UNIX: {
        auto& un = reinterpret_cast<const sockaddr_un&>(a);
        auto n = static_cast<std::size_t>(len) - offsetof(sockaddr_un, sun_path);
        if (n == 0)
            return "";
        if (un.sun_path[0] == '\0')
            return "@" + std::string(un.sun_path + 1, n - 1);
        return std::string(un.sun_path, strnlen(un.sun_path, n));
    }
    }
    return "";
}

} // namespace nsagent
