// A small blocking client for the agent's socket, used by nsctl and the tests. It follows
// docs/protocol.md: NDJSON frames, replies matched by id, fds tracked by stream position.
#pragma once

#include "nsagent/frame_reader.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/json/object.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nsagent {

// $NSAGENT_SOCKET, else /run/nsagent/nsagent.sock.
std::string default_socket_path();

// One frame as received: the JSON object and the fds that came with it.
struct frame {
    boost::json::object value;
    std::vector<unique_fd> fds;

    bool is_final() const { return value.contains("ok"); }
    bool ok() const;
    // error.code of a failed final frame, or "" for a success or an event.
    std::string error_code() const;
    std::string error_message() const;
};

// Not thread-safe: one thread uses one client.
class client {
public:
    // Connects to `path`. Fails with the connect() errno (ENOENT, ECONNREFUSED, EACCES, ...).
    static boost::system::result<client> connect(const std::string& path);

    // Sends one frame; `line` is a JSON object without the trailing '\n'. A frame that carries
    // fds goes alone, in one sendmsg, as the protocol requires.
    boost::system::error_code send_line(std::string_view line, std::span<const int> fds = {});

    // The next frame of any id, final or event; first any kept back by call(). timeout_ms < 0
    // waits forever. Errors: ETIMEDOUT, ECONNRESET (the agent closed the connection), EPROTO.
    boost::system::result<frame> next_frame(int timeout_ms = -1);

    // Sends `req` (an "id" is added when absent) and waits for its final frame. Event frames of
    // this id go to `events` when given; frames of other ids are kept for next_frame().
    boost::system::result<frame> call(boost::json::object req, std::span<const int> fds = {},
                                      int timeout_ms = -1, std::vector<frame>* events = nullptr);

    int native_handle() const noexcept { return sock_.get(); }

private:
    explicit client(unique_fd s) : sock_(std::move(s)) {}

    unique_fd sock_;
    frame_reader reader_{std::size_t{64} << 20};
    std::deque<frame> kept_;
    std::int64_t next_id_ = 1;
};

} // namespace nsagent
