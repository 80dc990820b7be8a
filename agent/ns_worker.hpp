// A pinned worker: one OS thread that enters one namespace once, never leaves it, and runs
// every op for that namespace. The seed's "single owner" for a thread-affine resource.
#pragma once

#include "latency_histogram.hpp"
#include "ns_id.hpp"
#include "op_registry.hpp"
#include "pending_request.hpp"

#include "nsagent/unique_fd.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/system/error_code.hpp>

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

namespace nsagent {

class worker_pool;
class bound_session;

class ns_worker : public std::enable_shared_from_this<ns_worker> {
public:
    using clock = std::chrono::steady_clock;
    using request_ptr = std::shared_ptr<pending_request>;
    enum class state : std::uint8_t { starting, ready, retiring, wedged };

    ns_worker(worker_pool& pool, ns_id id, unique_fd nsfd, std::size_t queue_depth);
    ~ns_worker();
    ns_worker(const ns_worker&) = delete;
    ns_worker& operator=(const ns_worker&) = delete;

    // I/O thread. Creates the pinned thread, which enters the namespace and then reports to
    // worker_pool::on_started. Call it only from a thread in the agent's own namespaces: a
    // thread inherits its creator's. Returns the pthread_create error.
    boost::system::error_code start(std::size_t stack_bytes);

    // I/O thread. Queues `r`; false when the queue holds queue_depth requests already.
    bool submit(request_ptr r);
    // I/O thread. Takes back every queued request (not the running one).
    std::vector<request_ptr> take_queue();
    // I/O thread. No more submits; the queue drains, then the thread exits and reports to
    // worker_pool::on_exited.
    void retire();
    // I/O thread. The worker is stuck in an op past its deadline: it is never joined, and its
    // thread exits on its own if the op ever returns. Takes back its queue.
    std::vector<request_ptr> wedge();
    // I/O thread, after on_exited or a failed start.
    void join();
    // I/O thread. Serves `s` (a namespace-bound connection, agent.bind) on this worker's own
    // event loop from now on; retire() and wedge() stop it.
    void adopt(std::shared_ptr<bound_session> s);

    // Worker thread: runs one op as this worker does for queued requests (fs identity switch
    // and checked restore, exceptions as internal errors, the exec_time histogram, counters).
    op_result run_op(const op_spec& spec, op_context& ctx, const std::optional<client_identity>& as);
    // Worker thread: true once the thread may no longer serve (its identity did not restore);
    // the pool has then been told, and the worker retires.
    bool unfit();
    worker_env& env() noexcept { return env_; }
    boost::asio::io_context& io() noexcept { return io_; }
    // Worker thread: a bound session ended.
    void forget(const bound_session* s);

    const ns_id& id() const noexcept { return id_; }
    int ns_fd() const noexcept { return nsfd_.get(); }
    pid_t tid() const noexcept { return tid_.load(std::memory_order_relaxed); }
    state current() const noexcept { return state_.load(std::memory_order_relaxed); }
    std::size_t queued() const;
    std::uint64_t ops() const noexcept { return ops_.load(std::memory_order_relaxed); }
    std::uint64_t errors() const noexcept { return errors_.load(std::memory_order_relaxed); }
    // Requests that arrived while the worker spun, so it needed no wake-up.
    std::uint64_t spins_won() const noexcept { return spins_won_.load(std::memory_order_relaxed); }
    std::size_t max_queued() const noexcept { return max_queued_.load(std::memory_order_relaxed); }
    clock::time_point started_at() const noexcept { return started_at_; }
    // Time from queue to start, and time in the op, for every request the worker ran.
    latency_histogram queue_wait, exec_time;

    // I/O thread bookkeeping, owned by the pool.
    std::size_t active = 0;          // submitted and not yet left the worker
    // Anchors: what the worker has been reached through, and so what keeps it wanted. When the
    // last one is gone (the connection that passed the fd closed, the process exited, the name
    // was removed or now names another namespace), the worker retires and the agent stops
    // pinning a dead container's namespace. I/O thread only.
    std::set<const void*> fd_anchors;
    std::set<std::string> path_anchors;
    std::map<int, std::unique_ptr<boost::asio::posix::stream_descriptor>> pid_anchors; // pid -> its pidfd
    bool anchored() const noexcept { return !fd_anchors.empty() || !path_anchors.empty() || !pid_anchors.empty(); }
    clock::time_point last_used = clock::now();
    void mark_ready() noexcept { state_ = state::ready; }

private:
    static void* trampoline(void* arg);
    void thread_main();
    std::optional<op_error> enter();
    bool in_place() const;
    void drain();
    void stop_sessions();
    // The thread is leaving by unwinding: answers the running request, tells the pool.
    void died();
    // Waits awake, up to worker_spin_us, for the next request; true if one came.
    bool spin_for_work();

    worker_pool& pool_;
    const ns_id id_;
    const unique_fd nsfd_;
    const std::size_t queue_depth_;

    boost::asio::io_context io_{1};
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
    pthread_t thread_{};
    bool joinable_ = false;

    mutable std::mutex mu_;
    std::deque<request_ptr> queue_;
    std::atomic<std::size_t> queued_now_{0}; // queue_.size(), for a spinning worker to watch
    bool wake_posted_ = false; // a drain() is posted and has not yet emptied the queue

    std::atomic<state> state_{state::starting};
    std::atomic<pid_t> tid_{0};
    std::atomic<std::uint64_t> ops_{0}, errors_{0}, spins_won_{0};
    std::atomic<std::size_t> max_queued_{0};
    const clock::time_point started_at_ = clock::now();
    std::atomic<bool> abandoned_{false}; // wedged: stop after the running op
    bool unfit_ = false; // worker thread only: its identity did not restore; serve nothing more
    bool unfit_reported_ = false;
    clock::time_point idle_since_{};  // worker thread only: when it last ran out of work
    bool hot_ = false;                 // worker thread only: its last idle gap was within the spin
    std::vector<std::shared_ptr<bound_session>> sessions_; // worker thread only
    request_ptr running_;                                   // worker thread only: in run_op now
    unique_fd procfs_;                  // worker thread only
    worker_env env_;                    // worker thread only
};

std::string_view to_string(ns_worker::state s) noexcept;

} // namespace nsagent
