// sendmsg/recvmsg with SCM_RIGHTS: the only way frames and fds cross the agent's socket.
#pragma once

#include "nsagent/unique_fd.hpp"

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace nsagent {

// The kernel's cap on fds in one SCM_RIGHTS message (SCM_MAX_FD).
inline constexpr std::size_t max_fds_per_message = 253;

// One recvmsg into `buf`. Received fds are appended to `fds` (close-on-exec). Returns the byte
// count (0 at end of stream), or an error: EAGAIN from a non-blocking socket, or EMSGSIZE when
// the control data was truncated (MSG_CTRUNC), which the protocol treats as fatal.
std::size_t recv_with_fds(int sock, std::span<char> buf, std::vector<unique_fd>& fds, int flags,
                          boost::system::error_code& ec);

// One sendmsg of `bytes` with `fds` attached (none if empty), MSG_NOSIGNAL always. Returns bytes
// sent, which may be fewer than asked; the fds went with the first byte.
std::size_t send_with_fds(int sock, std::string_view bytes, std::span<const int> fds, int flags,
                          boost::system::error_code& ec);

} // namespace nsagent
