// SCM_RIGHTS send and receive.
#include "nsagent/scm_rights.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace nsagent {

std::size_t recv_with_fds(int sock, std::span<char> buf, std::vector<unique_fd>& fds, int flags,
                          boost::system::error_code& ec)
{
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do
        n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        ec.assign(errno, boost::system::system_category());
        return 0;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.emplace_back(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        ec.assign(EMSGSIZE, boost::system::system_category());
        return 0;
    }
    ec.clear();
    return static_cast<std::size_t>(n);
}

std::size_t send_with_fds(int sock, std::string_view bytes, std::span<const int> fds, int flags,
                          boost::system::error_code& ec)
{
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds.empty()) {
        if (fds.size() > max_fds_per_message) {
            ec.assign(E2BIG, boost::system::system_category());
            return 0;
        }
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n;
    do
        n = ::sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        ec.assign(errno, boost::system::system_category());
        return 0;
    }
    ec.clear();
    return static_cast<std::size_t>(n);
}

} // namespace nsagent
