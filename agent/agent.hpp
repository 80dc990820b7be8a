// The agent: owns the listener, the connections, the worker pool and the op catalogue, and is
// the one place where a request becomes exactly one final reply. I/O thread only.
#pragma once

#include "audit_log.hpp"
#include "config.hpp"
#include "op_registry.hpp"
#include "pending_request.hpp"
#include "stream_job.hpp"
#include "worker_pool.hpp"

#include "nsagent/unique_fd.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

namespace nsagent {

class connection;
class gpu_worker;

// Binds the agent's socket at `path` with mode 0660, creating its directory. A stale socket
// file (nobody listening) is replaced; a live one, or a file that is not a socket, is refused.
// Throws std::runtime_error naming the path and the cause.
unique_fd bind_listener(const std::string& path);

class agent {
public:
    using request_ptr = std::shared_ptr<pending_request>;
    using clock = std::chrono::steady_clock;

    // `listener` is a bound, listening socket (bind_listener, or one passed by systemd).
    agent(boost::asio::io_context& io, const config& cfg, const op_registry& ops, unique_fd listener);
    ~agent();

    // Starts accepting, the idle sweep, and SIGTERM/SIGINT handling. Measures the base thread
    // count, so call it once every fixed thread exists and before any worker.
    void start();
    // Stops accepting, finishes in-flight work until drain_timeout_ms, answers the rest
    // shutting_down, retires every worker, then stops the io_context.
    void begin_drain();

    // From a connection: a parsed request with the fds that came with it.
    void dispatch(const std::shared_ptr<connection>& c, request&& rq, std::vector<unique_fd> fds);
    // agent.bind, after its worker half: answers it and hands the connection to the worker.
    void bind_connection(const request_ptr& r);
    // The request's deadline passed.
    void on_deadline(const request_ptr& r);
    // agent.cancel: answers `r` cancelled if it has no final reply yet.
    bool cancel(const request_ptr& r);
    void connection_closed(const connection* c);

    // The one way to a final reply: answers `r` unless another path already did (a timeout, a
    // cancel, a disconnect). Fds of a reply that lost the race close here.
    void finish(const request_ptr& r, const op_result& res, std::vector<unique_fd> fds = {});
    boost::asio::io_context& io() noexcept { return io_; }

    // Stream ops (pkt.capture, pkt.analyze): runs `body` on its own thread for `r`, whose final
    // reply is the body's result. Answers busy past max_streams. From the op's loop half.
    void start_stream(const request_ptr& r, stream_job::body_fn body);
    // A non-final frame for `r`, unless it was answered already (then `fds` close). I/O thread.
    void send_event(const request_ptr& r, std::string_view kind, boost::json::object fields,
                    std::vector<unique_fd> fds);
    std::size_t streams() const noexcept { return streams_.size(); }
    // The CUDA worker (nsagentd starts it before the agent); null: CPU engine only.
    void set_gpu(gpu_worker* g) noexcept { gpu_ = g; }
    gpu_worker* gpu() const noexcept { return gpu_; }

    boost::json::object stats() const;
    // The same data in the Prometheus text exposition format (version 0.0.4).
    std::string metrics_text() const;
    const op_registry& ops() const noexcept { return ops_; }
    const config& cfg() const noexcept { return cfg_; }
    worker_pool& pool() noexcept { return pool_; }
    bool draining() const noexcept { return draining_; }
    void set_metrics_endpoint(std::string e) { metrics_endpoint_ = std::move(e); }
    // Where SIGHUP reloads the policy from. Without it, SIGHUP changes nothing.
    void set_config_source(std::string path) { config_path_ = std::move(path); }
    // The policy in force (the config's at start, then the last one SIGHUP loaded).
    const nsagent::policy& policy() const noexcept { return policy_; }
    std::size_t wedged_workers() const noexcept { return pool_.wedged(); }
    void count_stashed_reply() noexcept { ++stashed_replies_; }

private:
    void run_inline(const request_ptr& r, const std::shared_ptr<connection>& c);
    // The identity of a name or path selector whose namespace already has a worker; empty
    // otherwise (then resolve() opens it).
    std::optional<ns_handle> resolve_known(const selector& s) const;
    void wait_for_signal();
    void reload_policy();
    // The fs identity `who`'s fs ops run with (see fs_identity.hpp); empty: the thread's own.
    std::optional<client_identity> fs_identity_for(const peer_identity& who) const;
    void complete(const request_ptr& r);
    void send_final(const request_ptr& r, const op_result& res, std::vector<unique_fd> fds);
    // Counters and the audit trail for a final reply, however it was delivered.
    void account(const request_ptr& r, const op_result& res);
    std::size_t inflight_total() const;
    boost::asio::awaitable<void> accept_loop();
    void refuse_one_for_lack_of_fds(int err);
    boost::asio::awaitable<void> sweep_loop();
    boost::asio::awaitable<void> drain_loop();
    boost::asio::awaitable<void> netns_watch_loop();
    boost::asio::awaitable<void> watchdog_loop(std::chrono::microseconds every);
    void start_metrics_http();

    boost::asio::io_context& io_;
    const config& cfg_;
    const op_registry& ops_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
    boost::asio::signal_set signals_;
    worker_pool pool_;
    std::map<const connection*, std::shared_ptr<connection>> conns_;
    bool draining_ = false;
    long base_threads_ = 0;
    clock::time_point started_at_ = clock::now();
    std::uint64_t accepted_ = 0;
    std::uint64_t requests_ = 0;
    std::map<std::string, std::uint64_t> replies_; // final frames by code ("ok" for success)
    std::map<std::pair<std::string, std::string>, std::uint64_t> by_op_code_; // (op, code) -> final frames
    audit_log audit_;
    nsagent::policy policy_;  // swapped only here, on the I/O thread; workers never read it
    std::string config_path_;
    unique_fd reserve_fd_; // /dev/null, given up to accept-and-refuse a client when out of fds
    uid_t agent_uid_ = ::geteuid();
    std::uint64_t bound_sessions_ = 0; // connections handed to their worker (agent.bind) now
    std::uint64_t binds_ = 0;          // ... since start
    std::uint64_t direct_replies_ = 0; // final replies their worker wrote (reply_channel)
    std::uint64_t stashed_replies_ = 0; // ... of which the socket took only a part at first // non-root when run as User=nsagent with ambient caps
    std::map<const pending_request*, request_ptr> streams_; // stream ops whose thread runs
    std::uint64_t streams_started_ = 0;
    gpu_worker* gpu_ = nullptr;
    std::string metrics_endpoint_; // where /metrics is served, once listening
    std::shared_ptr<void> metrics_http_; // the HTTP listener (metrics_http.cpp), when configured
};

// The agent's thread count from /proc/self/status, or -1.
long current_thread_count();

} // namespace nsagent
