// The set of pinned workers: one per namespace identity, started on first use, retired when
// idle, least recently used at the cap, released, wedged or misplaced. I/O thread only.
#pragma once

#include "config.hpp"
#include "ns_id.hpp"
#include "ns_worker.hpp"

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace nsagent {

// How a request reached its namespace (see ns_worker's anchors).
struct worker_anchor {
    const void* connection = nullptr; // {"fd"}: the connection that passed the fd
    std::string path;                 // name and path selectors: the file that names it
    int pid = 0;                      // pid selectors; the pidfd comes in the handle
};

class worker_pool {
public:
    using clock = std::chrono::steady_clock;
    using request_ptr = std::shared_ptr<pending_request>;
    using worker_ptr = std::shared_ptr<ns_worker>;
    // Called for each request whose op returned; the request's result is set.
    using completion = std::function<void(const request_ptr&)>;
    // Called for each request the pool must fail (its worker could not start, or was lost).
    using failure = std::function<void(const request_ptr&, const op_error&)>;

    worker_pool(boost::asio::io_context& home, const config& cfg, completion done, failure fail);
    ~worker_pool();

    // Queues `r` on the worker of h.id, starting one (with h.fd) when there is none.
    // Errors: busy (a full queue, or max_workers reached with no idle worker to retire),
    // os_error (the thread could not be created).
    using anchor = worker_anchor;
    std::optional<op_error> submit(ns_handle& h, const request_ptr& r, const anchor& a = {});
    // A connection closed: workers anchored only to it retire ("anchor_gone").
    void drop_anchor(const void* conn);
    // Re-checks every path anchor (a name removed, or pointing elsewhere now).
    void check_path_anchors();

    // Retires the worker of `id`, if any; its queued requests still run.
    bool release(const ns_id& id);
    // The request's op overran its deadline: the worker is wedged. Its queue moves to a fresh
    // worker for the same namespace.
    void mark_wedged(const worker_ptr& w);
    // Retires workers idle for idle_timeout_s.
    void sweep_idle(clock::time_point now);
    // Retires every live worker (shutdown). Workers still running an op are wedged instead.
    void retire_all();
    // No worker thread left to join (wedged ones are never joined).
    bool quiet() const noexcept { return live_.empty() && retiring_.empty(); }

    const worker_ptr* find(const ns_id& id) const;
    const std::unordered_map<ns_id, worker_ptr, ns_id_hash>& live() const noexcept { return live_; }
    std::size_t retiring() const noexcept { return retiring_.size(); }
    std::size_t wedged() const noexcept { return wedged_.size(); }
    std::uint64_t started_total() const noexcept { return started_; }
    // Retirements by reason: idle, lru, released, wedged, misplaced, identity_not_restored,
    // start_failed, shutdown.
    const std::map<std::string, std::uint64_t>& retired() const noexcept { return retired_; }

    boost::asio::io_context& home() noexcept { return home_; }
    // Worker threads: at most half the CPUs' worth of workers spin at once (worker_spin_us),
    // so spinning never takes the CPUs the I/O thread and the clients need.
    bool try_begin_spin() noexcept;
    void end_spin() noexcept { spinners_.fetch_sub(1, std::memory_order_relaxed); }
    const config& cfg() const noexcept { return cfg_; }

    // Reports from worker threads, posted to the I/O thread.
    void on_started(const worker_ptr& w, const std::optional<op_error>& failure);
    void on_left(const worker_ptr& w, const request_ptr& r);
    void on_exited(const worker_ptr& w);
    // The worker may not serve again (it found itself in the wrong namespace, or its
    // per-op identity did not restore): it retires and its queue goes to a fresh worker.
    void on_unfit(const worker_ptr& w, const char* reason);

private:
    std::atomic<int> spinners_{0};
    const int max_spinners_;
    worker_ptr start_worker(ns_id id, unique_fd fd, std::optional<op_error>& err);
    bool make_room();
    void retire(worker_ptr w, const char* reason);
    void add_anchor(const worker_ptr& w, const anchor& a, unique_fd pidfd);
    void release_if_unanchored(const worker_ptr& w);
    // Drops anchors of a worker leaving the live set, on this thread: pidfd watchers belong to
    // the I/O loop and must not be destroyed on a worker thread.
    static void forget_anchors(const worker_ptr& w);
    void resubmit(const worker_ptr& old, std::vector<request_ptr> reqs, const char* why);

    boost::asio::io_context& home_;
    const config& cfg_;
    completion done_;
    failure fail_;
    std::unordered_map<ns_id, worker_ptr, ns_id_hash> live_;
    std::unordered_set<worker_ptr> retiring_; // exiting; joined in on_exited
    std::unordered_set<worker_ptr> wedged_;   // detached; dropped if their op ever returns
    std::map<std::string, std::uint64_t> retired_;
    std::uint64_t started_ = 0;
};

} // namespace nsagent
