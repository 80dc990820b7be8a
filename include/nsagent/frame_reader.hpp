// Splits a Unix stream into NDJSON lines and hands each line the fds that the kernel delivered
// with it (SCM_RIGHTS), tracked by stream position. Used by the agent and by clients.
#pragma once

#include "nsagent/unique_fd.hpp"

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nsagent {

// Why by position: one recvmsg can return the bytes of earlier frames together with a later
// frame's fds. The protocol sends a frame that carries fds alone, in one sendmsg, and the kernel
// stops a read right after the first skb that carries fds. So the fds of one read belong to the
// last line that starts inside that read, whatever lines came before it.
//
// Not thread-safe: one reader per connection.
class frame_reader {
public:
    explicit frame_reader(std::size_t max_line) : max_line_(max_line) {}

    // Space to receive into; call commit() with what recvmsg filled.
    std::span<char> prepare(std::size_t n);
    // Records `n` bytes received into the prepared space, and the fds that came with them.
    void commit(std::size_t n, std::vector<unique_fd> fds);

    // One recvmsg from `sock` (with `flags`, e.g. MSG_DONTWAIT) of up to `chunk` bytes into the
    // buffer, with the fds that came along. Returns the byte count (0: end of stream); errors as
    // recv_with_fds gives them (EAGAIN, EMSGSIZE for truncated control data, ...).
    std::size_t receive(int sock, int flags, boost::system::error_code& ec, std::size_t chunk = 64 * 1024);

    struct line {
        std::string_view text;   // without '\n'; valid until the next prepare()/next()
        std::vector<unique_fd> fds; // the fds delivered with this line, in order
    };
    enum class status { line, need_more, too_large };

    // The next complete, non-blank line. too_large: a line (complete or not) exceeds max_line.
    status next(line& out);

    std::size_t buffered() const noexcept { return len_ - pos_; }
    std::size_t queued_fds() const noexcept;

private:
    struct batch {
        std::uint64_t begin; // stream offset of the read's first byte
        std::uint64_t end;   // stream offset one past its last byte
        std::vector<unique_fd> fds;
    };

    std::size_t max_line_;
    std::string buf_;            // storage; bytes [0, len_) are data, the rest is room
    std::size_t len_ = 0;
    std::size_t pos_ = 0;        // first unconsumed byte in buf_
    std::size_t scan_ = 0;       // bytes from pos_ already searched for '\n'
    std::size_t prepared_ = 0;   // size of the last prepare(), not yet committed
    std::uint64_t base_ = 0;     // stream offset of buf_[0]
    std::deque<batch> batches_;
};

} // namespace nsagent
