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

struct context {
    const std::function<void(const nlmsghdr*)>* each;
    std::string* ext_ack;
};

int trampoline(const nlmsghdr* nlh, void* data)
{
    (*static_cast<const std::function<void(const nlmsghdr*)>*>(data))(nlh);
    return MNL_CB_OK;
}

// NLMSG_ERROR: 0 is the ACK; otherwise keep the kernel's extended-ACK text (NETLINK_EXT_ACK),
// which says why ("Nexthop device is not up"), and report the errno.
int error_cb(const nlmsghdr* nlh, void* data)
{
    auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr)))
        return MNL_CB_ERROR;
    if (err->error == 0)
        return MNL_CB_STOP;
    auto& text = *static_cast<std::string*>(data);
    text.clear();
    if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
        // The TLVs follow the echoed request: all of it, or only its header when capped.
        std::size_t offset = sizeof(nlmsgerr);
        if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
            offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
        mnl_attr_parse(
            nlh, static_cast<unsigned>(offset),
            [](const nlattr* a, void* out) {
                if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG)
                    *static_cast<std::string*>(out) = mnl_attr_get_str(a);
                return MNL_CB_OK;
            },
            &text);
    }
    errno = -err->error;
    return MNL_CB_ERROR;
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
        // With a control array, libmnl applies none of its defaults, so every control type
        // is spelled out: NOOP goes on, DONE ends a dump, OVERRUN is an error, and ERROR is
        // error_cb. A control callback gets the data pointer of data messages, hence `context`.
        mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
        ctl[NLMSG_NOOP] = [](const nlmsghdr*, void*) { return MNL_CB_OK; };
        ctl[NLMSG_DONE] = [](const nlmsghdr*, void*) { return MNL_CB_STOP; };
        ctl[NLMSG_OVERRUN] = [](const nlmsghdr*, void*) {
            errno = ENOSPC;
            return MNL_CB_ERROR;
        };
        ctl[NLMSG_ERROR] = [](const nlmsghdr* m, void* data) {
            return error_cb(m, static_cast<context*>(data)->ext_ack);
        };
        context ctx{&each, &ext_ack_};
        ext_ack_.clear();
        int rc = mnl_cb_run2(in_.data(), static_cast<size_t>(n), seq_, portid_,
                             [](const nlmsghdr* m, void* data) {
                                 return trampoline(m, const_cast<std::function<void(const nlmsghdr*)>*>(
                                                          static_cast<context*>(data)->each));
                             },
                             &ctx, ctl, NLMSG_MIN_TYPE);
        if (rc == MNL_CB_ERROR) {
            int err = errno;
            std::string w(what);
            if (!ext_ack_.empty())
                w += " (kernel: " + ext_ack_ + ")";
            return os_failure(err, w);
        }
        if (rc == MNL_CB_STOP)
            return std::nullopt;
    }
}

} // namespace nsagent
