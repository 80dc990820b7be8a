// rtnetlink request/response over libmnl.
#include "netlink_socket.hpp"

#include <libmnl/libmnl.h>
#include <linux/netlink.h>

#include <cerrno>
#include <ctime>
#include <string>

namespace nsagent {

boost::system::result<std::shared_ptr<netlink_socket>, op_error> netlink_socket::open(int bus)
{
    mnl_socket* nl = mnl_socket_open2(bus, SOCK_CLOEXEC);
    if (!nl)
        return os_failure(errno, "socket(AF_NETLINK, " + std::to_string(bus) + ")");
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        mnl_socket_close(nl);
        return os_failure(err, "bind netlink socket");
    }
    // Ask the kernel to check dump requests strictly and to add error messages to NACKs.
    int one = 1;
    mnl_socket_setsockopt(nl, NETLINK_GET_STRICT_CHK, &one, sizeof one);
    mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, sizeof one);
    return std::shared_ptr<netlink_socket>(new netlink_socket(nl, mnl_socket_get_portid(nl)));
}

netlink_socket::netlink_socket(mnl_socket* nl, unsigned portid)
    : nl_(nl), portid_(portid), seq_(static_cast<unsigned>(std::time(nullptr))), out_(MNL_SOCKET_BUFFER_SIZE),
      in_(32768)
{
}

netlink_socket::~netlink_socket()
{
    mnl_socket_close(nl_);
}

namespace {

int trampoline(const nlmsghdr* nlh, void* data)
{
    (*static_cast<const std::function<void(const nlmsghdr*)>*>(data))(nlh);
    return MNL_CB_OK;
}

int attr_trampoline(const nlattr* a, void* data)
{
    (*static_cast<const std::function<void(const nlattr*)>*>(data))(a);
    return MNL_CB_OK;
}

} // namespace

void for_each_attr(const nlmsghdr* m, std::size_t header, const std::function<void(const nlattr*)>& each)
{
    mnl_attr_parse(m, static_cast<unsigned>(header), &attr_trampoline,
                   const_cast<std::function<void(const nlattr*)>*>(&each));
}

std::optional<op_error> netlink_socket::talk(nlmsghdr* nlh, const std::function<void(const nlmsghdr*)>& each,
                                             std::string_view what)
{
    nlh->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0)
        return os_failure(errno, std::string(what) + ": netlink send");
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl_, in_.data(), in_.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return os_failure(errno, std::string(what) + ": netlink receive");
        }
        int rc = mnl_cb_run(in_.data(), static_cast<size_t>(n), seq_, portid_, &trampoline,
                            const_cast<std::function<void(const nlmsghdr*)>*>(&each));
        if (rc == MNL_CB_ERROR)
            return os_failure(errno, std::string(what));
        if (rc == MNL_CB_STOP)
            return std::nullopt;
    }
}

} // namespace nsagent
