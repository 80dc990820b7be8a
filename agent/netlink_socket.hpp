// One rtnetlink socket per network-namespace worker, opened on that worker's thread (so it
// belongs to the namespace for life) and reused for every netlink op there. libmnl does the
// message work; this wraps sequence numbers, the receive loop and errors as values.
#pragma once

#include "nsagent/error.hpp"

#include <boost/system/result.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct mnl_socket;
struct nlmsghdr;
struct nlattr;

namespace nsagent {

class netlink_socket {
public:
    // Opens and binds a netlink socket of `bus` (NETLINK_ROUTE, NETLINK_SOCK_DIAG) in the
    // calling thread's network namespace.
    static boost::system::result<std::shared_ptr<netlink_socket>, op_error> open(int bus);
    ~netlink_socket();
    netlink_socket(const netlink_socket&) = delete;
    netlink_socket& operator=(const netlink_socket&) = delete;

    // A message buffer for one request; put the header with mnl_nlmsg_put_header(buffer()).
    char* buffer() noexcept { return out_.data(); }

    // Sends `nlh` (its seq is set here) and calls `each` for every reply message until the
    // dump ends or the ACK arrives. A netlink error becomes an os_error naming `what`. The
    // whole reply is always consumed, so the next request starts on a clean socket.
    std::optional<op_error> talk(nlmsghdr* nlh, const std::function<void(const nlmsghdr*)>& each,
                                 std::string_view what);

private:
    netlink_socket(mnl_socket* nl, unsigned portid);

    mnl_socket* nl_;
    unsigned portid_;
    unsigned seq_;
    std::string ext_ack_; // the kernel's extended-ACK message for the last error, if any
    std::vector<char> out_;
    std::vector<char> in_;
};

// Calls `each` for every attribute of `m` after its family header of `header` bytes
// (libmnl's mnl_attr_parse; its mnl_attr_for_each macro is C only).
void for_each_attr(const nlmsghdr* m, std::size_t header, const std::function<void(const nlattr*)>& each);

} // namespace nsagent
