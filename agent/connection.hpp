// One client connection: reads NDJSON requests (with fds) and writes frames, with bounded
// in-flight requests and a bounded queue of unsent replies. I/O thread only.
#pragma once

#include "access_policy.hpp"
#include "pending_request.hpp"
#include "reply_channel.hpp"

#include "nsagent/frame_reader.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/value.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nsagent {

class agent;

class connection : public std::enable_shared_from_this<connection> {
public:
    using request_ptr = std::shared_ptr<pending_request>;
    using socket_type = boost::asio::local::stream_protocol::socket;

    connection(agent& a, socket_type s);
    ~connection();

    // Starts the reader and writer coroutines.
    void start();

    // Queues one frame. A frame with fds is sent alone, in one sendmsg, its fds with its first byte.
    void send(std::string frame, std::vector<unique_fd> fds = {});

    // In-flight tracking: the id must be unique among this connection's in-flight requests.
    bool is_inflight(const boost::json::value& id) const;
    // Tracks `r` and arms its deadline timer.
    void track(const request_ptr& r);
    // Delivers `r`'s final frame: untracks it, disarms its timer, queues the frame.
    void deliver(const pending_request& r, std::string frame, std::vector<unique_fd> fds);
    // `r`'s reply was written by its worker (reply_channel): untracks it.
    void delivered_directly(const pending_request& r);
    // A worker left part of a reply in the channel: the writer sends it.
    void poke_writer();
    const std::shared_ptr<reply_channel>& channel() const noexcept { return channel_; }
    request_ptr find(const boost::json::value& id) const;
    std::vector<request_ptr> inflight() const;
    std::size_t inflight_count() const noexcept { return inflight_.size(); }
    std::size_t unsent_bytes() const noexcept { return unsent_; }

    bool is_open() const noexcept { return open_; }
    // Shutdown: stop reading; close once every queued frame is written.
    void close_when_flushed();
    // Closes now. Queued requests are abandoned: they never run and get no reply.
    void close();

    const peer_identity& peer() const noexcept { return peer_; }

    // agent.bind succeeded: once its reply is written (and nothing else is in flight), the
    // socket and whatever the client already sent after the bind go to `fn`, and this object
    // stays behind as a husk (anchors, connection count) until agent::connection_closed.
    using handover_fn = std::function<void(unique_fd, frame_reader)>;
    void hand_over_after_reply(handover_fn fn) { handover_ = std::move(fn); }

private:
    struct entry {
        request_ptr req;
        std::unique_ptr<boost::asio::steady_timer> timer;
        std::size_t bytes = 0; // the request line's size, counted in inflight_bytes_
    };
    struct outgoing {
        std::string bytes;
        std::vector<unique_fd> fds;
        std::size_t sent = 0;
    };

    boost::asio::awaitable<void> read_loop();
    boost::asio::awaitable<void> write_loop();
    void handle_line(frame_reader::line& line);
    void after_read_end(bool peer_gone);
    void loop_done();
    bool read_blocked() const;
    void maybe_finish();
    void watch_partial_line();
    void hand_over();
    void forget(const pending_request& r);
    void after_reply();
    static std::string key(const boost::json::value& id);

    agent& agent_;
    socket_type sock_;
    frame_reader reader_;
    peer_identity peer_;
    std::map<std::string, entry> inflight_;
    std::deque<outgoing> out_;
    std::size_t unsent_ = 0;
    std::size_t inflight_bytes_ = 0; // request bytes held by requests in flight (args and all)
    boost::asio::steady_timer read_gate_;  // wakes the reader when backpressure lifts
    boost::asio::steady_timer write_gate_; // wakes the writer when a frame is queued
    boost::asio::steady_timer partial_deadline_; // a half-sent line must complete by then
    bool partial_armed_ = false;
    bool open_ = true;
    bool reading_ = true;
    bool bind_pending_ = false; // an agent.bind is in flight: read nothing more until it ends
    bool bound_ = false;        // handed over to a worker (agent.bind)
    handover_fn handover_;
    std::shared_ptr<reply_channel> channel_; // workers write final replies through it when idle
    int loops_ = 0;
};

} // namespace nsagent
