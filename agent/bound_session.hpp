// A namespace-bound connection (agent.bind): after the bind, the client's socket is served by
// its namespace's worker on the worker's own event loop. Every request runs in that namespace,
// read, run and answered on one thread with no hand-off: the seed's "single owner" taken to the
// socket. Worker thread only, except where noted.
#pragma once

#include "fs_identity.hpp"
#include "ns_id.hpp"
#include "op_registry.hpp"

#include "nsagent/frame_reader.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace nsagent {

class ns_worker;

// What the client may do on the bound connection, decided on the I/O thread at bind time from
// the policy then in force (a later SIGHUP applies to new binds, not to this one).
struct bound_grant {
    std::optional<std::set<std::string>> allow; // op classes; empty optional: all (uid 0)
    std::optional<client_identity> as;          // fs ops' identity (see fs_identity.hpp)
    // Records a mutation or an fd handed out in the audit trail; callable from any thread.
    std::function<void(std::string_view op, std::string_view result)> audit;
};

class bound_session : public std::enable_shared_from_this<bound_session> {
public:
    // `reader` holds whatever the client sent after its agent.bind line (it may pipeline).
    // `on_end` runs once, on the worker thread, when the session is over.
    bound_session(ns_worker& w, const op_registry& ops, unique_fd sock, frame_reader reader, bound_grant grant,
                  std::function<void()> on_end);
    ~bound_session();
    bound_session(const bound_session&) = delete;
    bound_session& operator=(const bound_session&) = delete;

    void start();
    // Ends the session: lines already received get shutting_down, then the socket closes.
    void stop();

private:
    using socket_type = boost::asio::local::stream_protocol::socket;
    boost::asio::awaitable<void> run();
    // The reply frame to one line; reply fds (net.socket, fs.open) go to `fds`.
    std::string handle(frame_reader::line& line, std::vector<unique_fd>& fds);
    // Writes `bytes` (with `fds` on the first byte), waiting for the socket as needed.
    boost::asio::awaitable<bool> write(std::string_view bytes, std::vector<unique_fd> fds = {});
    void finish();

    ns_worker& worker_;
    const op_registry& ops_;
    socket_type sock_;
    frame_reader reader_;
    bound_grant grant_;
    std::function<void()> on_end_;
    bool stopping_ = false;
};

} // namespace nsagent
