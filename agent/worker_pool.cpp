// Worker lifecycle: start on first use, and every way of retiring.
#include "worker_pool.hpp"

#include <algorithm>
#include <thread>

#include "log.hpp"

#include <fcntl.h>

namespace nsagent {
namespace {

std::string worker_fields(const ns_worker& w)
{
    return kv("ns", to_string(w.id())) + kv("tid", w.tid());
}

} // namespace

worker_pool::worker_pool(boost::asio::io_context& home, const config& cfg, completion done, failure fail)
    : max_spinners_(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2)),
      home_(home),
      cfg_(cfg),
      done_(std::move(done)),
      fail_(std::move(fail))
{
}

bool worker_pool::try_begin_spin() noexcept
{
    int n = spinners_.load(std::memory_order_relaxed);
    while (n < max_spinners_)
        if (spinners_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed))
            return true;
    return false;
}

worker_pool::~worker_pool() = default;

const worker_pool::worker_ptr* worker_pool::find(const ns_id& id) const
{
    auto it = live_.find(id);
    return it == live_.end() ? nullptr : &it->second;
}

worker_pool::worker_ptr worker_pool::start_worker(ns_id id, unique_fd fd, std::optional<op_error>& err)
{
    auto w = std::make_shared<ns_worker>(*this, id, std::move(fd), cfg_.queue_depth);
    if (auto ec = w->start(cfg_.worker_stack_kib * 1024)) {
        err = os_failure(ec.value(), "pthread_create");
        return nullptr;
    }
    ++started_;
    live_.emplace(id, w);
    return w;
}

bool worker_pool::make_room()
{
    if (live_.size() < cfg_.max_workers)
        return true;
    // The thread budget: at the cap, the least recently used idle worker makes room.
    worker_ptr lru;
    for (auto& [id, w] : live_)
        if (w->active == 0 && w->current() == ns_worker::state::ready && (!lru || w->last_used < lru->last_used))
            lru = w;
    if (!lru)
        return false;
    retire(lru, "lru");
    return true;
}

std::optional<op_error> worker_pool::submit(ns_handle& h, const request_ptr& r, const anchor& a)
{
    worker_ptr w;
    if (auto* found = find(h.id)) {
        w = *found;
    } else {
        if (!make_room())
            return agent_failure(errc::busy, "max_workers (" + std::to_string(cfg_.max_workers) +
                                                 ") reached and every worker is busy");
        std::optional<op_error> err;
        w = start_worker(h.id, std::move(h.fd), err);
        if (!w)
            return err;
    }
    r->worker = w;
    add_anchor(w, a, std::move(h.pidfd));
    if (!w->submit(r))
        return agent_failure(errc::busy, "the worker's queue is full (queue_depth " +
                                             std::to_string(cfg_.queue_depth) + ")");
    ++w->active;
    w->last_used = clock::now();
    return std::nullopt;
}

void worker_pool::retire(worker_ptr w, const char* reason)
{
    // By value: `w` may refer to the map entry that the erase below destroys.
    live_.erase(w->id());
    retiring_.insert(w);
    ++retired_[reason];
    forget_anchors(w);
    w->retire();
    log_event(log_level::info, "worker_retire", worker_fields(*w) + kv("reason", reason));
}

bool worker_pool::release(const ns_id& id)
{
    auto* w = find(id);
    if (!w)
        return false;
    retire(*w, "released");
    return true;
}

void worker_pool::add_anchor(const worker_ptr& w, const anchor& a, unique_fd pidfd)
{
    if (a.connection)
        w->fd_anchors.insert(a.connection);
    if (!a.path.empty())
        w->path_anchors.insert(a.path);
    if (a.pid && pidfd && !w->pid_anchors.contains(a.pid)) {
        // A pidfd turns readable when its process exits: one poll on the I/O loop, no thread.
        auto sd = std::make_unique<boost::asio::posix::stream_descriptor>(home_, pidfd.release());
        std::weak_ptr<ns_worker> weak = w;
        int pid = a.pid;
        sd->async_wait(boost::asio::posix::stream_descriptor::wait_read, [this, weak, pid](boost::system::error_code ec) {
            auto w = weak.lock();
            if (ec || !w)
                return;
            w->pid_anchors.erase(pid);
            log_event(log_level::debug, "anchor_gone", worker_fields(*w) + kv("pid", pid));
            release_if_unanchored(w);
        });
        w->pid_anchors.emplace(pid, std::move(sd));
    }
}

void worker_pool::release_if_unanchored(const worker_ptr& w)
{
    auto it = live_.find(w->id());
    if (it == live_.end() || it->second != w || w->anchored())
        return;
    // Whatever still waits in its queue was aimed at a namespace that is gone (or going):
    // answer it instead of running it.
    auto queued = w->take_queue();
    retire(w, "anchor_gone");
    for (auto& r : queued)
        fail_(r, agent_failure(errc::ns_not_found, "the namespace went away (its last name, process or "
                                                   "fd-passing connection is gone) before this request ran"));
}

void worker_pool::forget_anchors(const worker_ptr& w)
{
    w->pid_anchors.clear();
}

void worker_pool::drop_anchor(const void* conn)
{
    std::vector<worker_ptr> touched;
    for (auto& [id, w] : live_)
        if (w->fd_anchors.erase(conn))
            touched.push_back(w);
    for (auto& w : touched)
        release_if_unanchored(w);
}

void worker_pool::check_path_anchors()
{
    std::vector<worker_ptr> touched;
    for (auto& [id, w] : live_) {
        for (auto it = w->path_anchors.begin(); it != w->path_anchors.end();) {
            auto now = identify_path(*it, id.type);
            if (now && *now == id) {
                ++it;
                continue;
            }
            log_event(log_level::debug, "anchor_gone", worker_fields(*w) + kv("path", *it));
            it = w->path_anchors.erase(it);
            touched.push_back(w);
        }
    }
    for (auto& w : touched)
        release_if_unanchored(w);
}

void worker_pool::sweep_idle(clock::time_point now)
{
    std::vector<worker_ptr> idle;
    for (auto& [id, w] : live_)
        if (w->active == 0 && w->current() == ns_worker::state::ready &&
            now - w->last_used >= std::chrono::seconds(cfg_.idle_timeout_s))
            idle.push_back(w);
    for (auto& w : idle)
        retire(w, "idle");
}

void worker_pool::retire_all()
{
    std::vector<worker_ptr> all;
    for (auto& [id, w] : live_)
        all.push_back(w);
    for (auto& w : all)
        retire(w, "shutdown");
}

void worker_pool::resubmit(const worker_ptr& old, std::vector<request_ptr> reqs, const char* why)
{
    if (reqs.empty())
        return;
    // A fresh worker for the same namespace, from a dup of the old one's fd: the namespace may
    // have no other name left to reopen it by.
    unique_fd fd(::fcntl(old->ns_fd(), F_DUPFD_CLOEXEC, 3));
    ns_handle h{old->id(), std::move(fd), {}};
    for (auto& r : reqs) {
        if (r->current() == pending_request::state::finished)
            continue;
        std::optional<op_error> err;
        if (!h.fd && !find(h.id))
            err = os_failure(errno, std::string("dup namespace fd after ") + why);
        else
            err = submit(h, r);
        if (err)
            fail_(r, *err);
    }
    // The fresh worker keeps the old one's anchors: it serves the same clients.
    if (auto* fresh = find(old->id())) {
        for (auto* conn : old->fd_anchors)
            add_anchor(*fresh, {conn, {}, 0}, {});
        for (auto& path : old->path_anchors)
            add_anchor(*fresh, {nullptr, path, 0}, {});
        for (auto& [pid, sd] : old->pid_anchors)
            add_anchor(*fresh, {nullptr, {}, pid}, unique_fd(::fcntl(sd->native_handle(), F_DUPFD_CLOEXEC, 3)));
    }
}

void worker_pool::mark_wedged(const worker_ptr& w)
{
    if (w->current() == ns_worker::state::wedged)
        return;
    auto it = live_.find(w->id());
    if (it != live_.end() && it->second == w)
        live_.erase(it);
    retiring_.erase(w);
    wedged_.insert(w);
    ++retired_["wedged"];
    auto queued = w->wedge();
    log_event(log_level::warning, "worker_wedged", worker_fields(*w) + kv("requeued", static_cast<long long>(queued.size())));
    resubmit(w, std::move(queued), "wedge");
    forget_anchors(w);
}

void worker_pool::on_started(const worker_ptr& w, const std::optional<op_error>& failure)
{
    if (!failure) {
        if (w->current() == ns_worker::state::starting)
            w->mark_ready();
        log_event(log_level::info, "worker_start", worker_fields(*w));
        return;
    }
    // A failed start leaves no thread behind: join it now (it is returning), then fail what
    // was queued for it with the reason.
    auto it = live_.find(w->id());
    if (it != live_.end() && it->second == w)
        live_.erase(it);
    retiring_.erase(w);
    ++retired_["start_failed"];
    forget_anchors(w);
    w->join();
    log_event(log_level::warning, "worker_start_failed", worker_fields(*w) + kv("error", failure->message));
    for (auto& r : w->take_queue())
        fail_(r, *failure);
}

void worker_pool::on_left(const worker_ptr& w, const request_ptr& r)
{
    if (w->active > 0)
        --w->active;
    w->last_used = clock::now();
    if (r->op_returned.load(std::memory_order_acquire))
        done_(r);
    if (w->current() == ns_worker::state::wedged && wedged_.erase(w))
        log_event(log_level::info, "worker_unwedged", worker_fields(*w));
}

void worker_pool::on_exited(const worker_ptr& w)
{
    w->join();
    retiring_.erase(w);
    log_event(log_level::debug, "worker_exit", worker_fields(*w));
}

void worker_pool::on_unfit(const worker_ptr& w, const char* reason)
{
    log_event(log_level::err, "worker_unfit", worker_fields(*w) + kv("reason", reason));
    auto it = live_.find(w->id());
    if (it != live_.end() && it->second == w)
        live_.erase(it);
    ++retired_[reason];
    retiring_.insert(w);
    auto queued = w->take_queue();
    w->retire();
    resubmit(w, std::move(queued), (std::string(reason) + " worker").c_str());
    forget_anchors(w);
}

} // namespace nsagent
