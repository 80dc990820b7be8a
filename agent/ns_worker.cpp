// The pinned worker thread: enter once, serve, never go back.
#include "ns_worker.hpp"

#include "bound_session.hpp"
#include "connection.hpp"

#include "worker_pool.hpp"

#include <boost/asio/post.hpp>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cerrno>
#include <exception>

namespace nsagent {

std::string_view to_string(ns_worker::state s) noexcept
{
    switch (s) {
    case ns_worker::state::starting: return "starting";
    case ns_worker::state::ready: return "ready";
    case ns_worker::state::retiring: return "retiring";
    case ns_worker::state::wedged: return "wedged";
    }
    return "ready";
}

ns_worker::ns_worker(worker_pool& pool, ns_id id, unique_fd nsfd, std::size_t queue_depth)
    : pool_(pool), id_(id), nsfd_(std::move(nsfd)), queue_depth_(queue_depth)
{
    guard_.emplace(io_.get_executor());
}

ns_worker::~ns_worker() = default;

boost::system::error_code ns_worker::start(std::size_t stack_bytes)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack_bytes);
    // The worker blocks every signal, so that SIGTERM and friends reach the I/O thread and no
    // syscall of an op is cut short by EINTR. A thread inherits its creator's mask.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    auto* self = new std::shared_ptr<ns_worker>(shared_from_this());
    int rc = pthread_create(&thread_, &attr, &ns_worker::trampoline, self);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        delete self;
        return {rc, boost::system::system_category()};
    }
    joinable_ = true;
    return {};
}

void* ns_worker::trampoline(void* arg)
{
    // The thread holds its worker alive: a wedged worker outlives the pool's interest in it.
    std::unique_ptr<std::shared_ptr<ns_worker>> self(static_cast<std::shared_ptr<ns_worker>*>(arg));
    (*self)->thread_main();
    return nullptr;
}

std::optional<op_error> ns_worker::enter()
{
    // The thread's own host procfs entry, opened before setns: inside a container's mount
    // namespace /proc is the container's procfs, where this tid does not exist.
    procfs_.reset(::open("/proc/thread-self", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!procfs_)
        return os_failure(errno, "open /proc/thread-self");
    // A mount-namespace setns is refused (EINVAL) in a multi-threaded process unless this
    // thread stops sharing its fs_struct (root, cwd, umask) with the others first.
    if (id_.type == ns_type::mnt) {
        if (::unshare(CLONE_FS) < 0)
            return os_failure(errno, "unshare(CLONE_FS)");
        // The umask lives in fs_struct, now this thread's own: 0 makes requested modes exact,
        // whatever umask the agent was started with (systemd's UMask=, a shell's 022).
        ::umask(0);
    }
    // Always the explicit type: RestrictNamespaces= in the unit refuses setns(fd, 0).
    if (::setns(nsfd_.get(), clone_flag(id_.type)) < 0)
        return os_failure(errno, "setns");
    if (!in_place())
        return agent_failure(errc::internal, "setns returned success but the thread is not in " + to_string(id_));
    return std::nullopt;
}

bool ns_worker::in_place() const
{
    struct stat st {};
    const char* link = id_.type == ns_type::net ? "ns/net" : "ns/mnt";
    return ::fstatat(procfs_.get(), link, &st, 0) == 0 && static_cast<std::uint64_t>(st.st_ino) == id_.ino &&
           static_cast<std::uint64_t>(st.st_dev) == id_.dev;
}

void ns_worker::thread_main()
{
    tid_ = ::gettid();
    auto failure = enter();
    env_ = worker_env{&pool_.cfg(), id_, procfs_.get(), tid_.load(), nullptr, nullptr};
    auto self = shared_from_this();
    boost::asio::post(pool_.home(), [self, failure] { self->pool_.on_started(self, failure); });
    if (failure)
        return;
    // A thread that leaves io_.run() by unwinding (pthread_exit in an op, a cancellation) must
    // still answer its request, hand back its queue and be joined.
    struct unwind_guard {
        ns_worker& w;
        bool done = false;
        ~unwind_guard()
        {
            if (!done)
                w.died();
        }
    } guard{*this};
    io_.run();
    guard.done = true;
    // Per-worker sockets (netlink) hold their namespace: close them with the thread, not
    // whenever the last reference to this object goes.
    env_ = worker_env{};
    if (abandoned_)
        return; // wedged and detached: the pool no longer waits for this thread
    boost::asio::post(pool_.home(), [self] { self->pool_.on_exited(self); });
}

bool ns_worker::submit(request_ptr r)
{
    std::lock_guard lk(mu_);
    if (queue_.size() >= queue_depth_)
        return false;
    r->enqueued_at = clock::now();
    queue_.push_back(std::move(r));
    queued_now_.store(queue_.size(), std::memory_order_release);
    if (queue_.size() > max_queued_.load(std::memory_order_relaxed))
        max_queued_.store(queue_.size(), std::memory_order_relaxed);
    // One wake-up drains everything queued by then: a burst costs one wake, not one per request.
    if (!wake_posted_) {
        wake_posted_ = true;
        boost::asio::post(io_, [this] { drain(); });
    }
    return true;
}

std::size_t ns_worker::queued() const
{
    std::lock_guard lk(mu_);
    return queue_.size();
}

std::vector<ns_worker::request_ptr> ns_worker::take_queue()
{
    std::lock_guard lk(mu_);
    std::vector<request_ptr> out(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
    queue_.clear();
    queued_now_.store(0, std::memory_order_relaxed);
    active -= std::min(active, out.size());
    return out;
}

void ns_worker::retire()
{
    state_ = state::retiring;
    // Posted after any pending drain(), so queued requests still run first. Bound sessions
    // end too: their connections close once the request in hand is answered.
    boost::asio::post(io_, [this] {
        stop_sessions();
        guard_.reset();
    });
}

std::vector<ns_worker::request_ptr> ns_worker::wedge()
{
    state_ = state::wedged;
    abandoned_ = true;
    auto taken = take_queue();
    boost::asio::post(io_, [this] {
        stop_sessions();
        guard_.reset();
    });
    if (joinable_) {
        pthread_detach(thread_);
        joinable_ = false;
    }
    return taken;
}

void ns_worker::join()
{
    if (joinable_) {
        pthread_join(thread_, nullptr);
        joinable_ = false;
    }
}

void ns_worker::drain()
{
    auto self = shared_from_this();
    for (;;) {
        request_ptr r;
        {
            std::unique_lock lk(mu_);
            if (unfit_) { // this thread may no longer serve: the pool takes its queue back
                wake_posted_ = false;
                return;
            }
            if (queue_.empty()) {
                lk.unlock();
                // The next request of a busy client usually comes a round trip after the
                // last reply. Staying awake that long (wake_posted_ stays set, so submit()
                // posts nothing) saves the thread wake-up that otherwise dominates a request.
                // Only a worker whose last idle gap was that short spins: one visited now
                // and then (a first request, a round-robin over many namespaces) would only
                // burn the CPU.
                idle_since_ = clock::now();
                if (hot_ && spin_for_work())
                    continue;
                lk.lock();
                if (queue_.empty()) {
                    wake_posted_ = false;
                    return;
                }
            }
            r = std::move(queue_.front());
            queue_.pop_front();
            queued_now_.store(queue_.size(), std::memory_order_relaxed);
        }
        if (idle_since_ != clock::time_point{}) {
            // The gap until the request was queued, not until this thread got to it: a slow
            // wake-up must not make a busy client look idle.
            hot_ = r->enqueued_at - idle_since_ <= std::chrono::microseconds(pool_.cfg().worker_spin_us);
            idle_since_ = {};
        }
        // Never serve from anywhere but the target. A worker that finds itself elsewhere hands
        // the request back and retires; the pool gives the namespace a fresh worker.
        if (!in_place()) {
            {
                std::lock_guard lk(mu_);
                queue_.push_front(std::move(r));
                queued_now_.store(queue_.size(), std::memory_order_relaxed);
                wake_posted_ = false;
            }
            boost::asio::post(pool_.home(), [self] { self->pool_.on_unfit(self, "misplaced"); });
            return;
        }
        // A request whose deadline passed while queued never runs; its timer answers it.
        auto began = clock::now();
        bool left = false; // on_left posted already
        if (began < r->deadline && r->try_start()) {
            queue_wait.record(began - r->enqueued_at);
            op_context ctx{r->req, r->fds, r->ns ? &*r->ns : nullptr, &env_, nullptr, nullptr, {}, {}};
            running_ = r;
            r->result = run_op(*r->spec, ctx, r->as);
            running_ = nullptr;
            r->reply_fds = std::move(ctx.reply_fds);
            r->handoff = std::move(ctx.handoff);
            // The client gets its reply now, from this thread, if the connection's writer is
            // idle; the I/O thread only does the bookkeeping then.
            if (r->channel && r->reply_fds.empty()) {
                auto o = r->channel->try_write(
                    final_frame(*r, *r->result), [&] { return r->claim_final().has_value(); },
                    [&] {
                        r->replied_directly = true;
                        r->op_returned.store(true, std::memory_order_release);
                        boost::asio::post(pool_.home(), [self, r] { self->pool_.on_left(self, r); });
                        left = true;
                    });
                if (o == reply_channel::outcome::stashed)
                    boost::asio::post(pool_.home(), [conn = r->conn] {
                        if (auto c = conn.lock())
                            c->poke_writer();
                    });
            }
            r->op_returned.store(true, std::memory_order_release);
        }
        if (!left)
            boost::asio::post(pool_.home(), [self, r] { self->pool_.on_left(self, r); });
        if (unfit()) {
            std::lock_guard lk(mu_);
            wake_posted_ = false;
            return;
        }
        if (abandoned_)
            return;
    }
}

bool ns_worker::spin_for_work()
{
    auto budget = std::chrono::microseconds(pool_.cfg().worker_spin_us);
    if (budget.count() == 0 || abandoned_ || !pool_.try_begin_spin())
        return false;
    auto until = clock::now() + budget;
    bool found = false;
    while (!(found = queued_now_.load(std::memory_order_acquire) > 0) && clock::now() < until) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    pool_.end_spin();
    if (found)
        spins_won_.fetch_add(1, std::memory_order_relaxed);
    return found;
}

namespace {

// Runs the op, turning its exceptions into errors. The forced unwind of pthread_exit is not an
// error and must go on (ns_worker::died answers for the request). Catching it binds a reference
// to an exception object that glibc's forced unwinding never creates, which UBSan reports as a
// null reference; so this one function is left out of UBSan (the op it calls is not).
__attribute__((no_sanitize_undefined)) op_result call_op(const op_spec& spec, op_context& ctx)
{
    try {
        return spec.fn(ctx);
    } catch (const std::exception& e) {
        return agent_failure(errc::internal, std::string("exception: ") + e.what());
    } catch (abi::__forced_unwind&) {
        throw;
    } catch (...) {
        return agent_failure(errc::internal, "unknown exception");
    }
}

} // namespace

op_result ns_worker::run_op(const op_spec& spec, op_context& ctx, const std::optional<client_identity>& as)
{
    auto began = clock::now();
    op_result res = agent_failure(errc::internal, "op did not run");
    std::optional<scoped_fs_identity> who;
    if (as)
        who.emplace(*as);
    if (who && who->error()) {
        res = *who->error();
    } else {
        res = call_op(spec, ctx);
    }
    // A thread whose identity or capabilities did not come back exactly serves no one else:
    // it retires after this reply, and the namespace gets a fresh worker.
    if (who && !who->restore())
        unfit_ = true;
    exec_time.record(clock::now() - began);
    ops_.fetch_add(1, std::memory_order_relaxed);
    if (!res)
        errors_.fetch_add(1, std::memory_order_relaxed);
    return res;
}

void ns_worker::died()
{
    auto self = shared_from_this();
    if (auto r = std::exchange(running_, nullptr)) {
        r->result = agent_failure(errc::internal, "the worker thread exited during the op; the namespace gets a fresh worker");
        r->op_returned.store(true, std::memory_order_release);
        boost::asio::post(pool_.home(), [self, r] { self->pool_.on_left(self, r); });
    }
    env_ = worker_env{};
    boost::asio::post(pool_.home(), [self] { self->pool_.on_unfit(self, "thread_exited"); });
    if (!abandoned_)
        boost::asio::post(pool_.home(), [self] { self->pool_.on_exited(self); });
}

bool ns_worker::unfit()
{
    if (unfit_ && !unfit_reported_) {
        unfit_reported_ = true;
        auto self = shared_from_this();
        boost::asio::post(pool_.home(), [self] { self->pool_.on_unfit(self, "identity_not_restored"); });
    }
    return unfit_;
}

void ns_worker::adopt(std::shared_ptr<bound_session> s)
{
    boost::asio::post(io_, [this, s] {
        sessions_.push_back(s);
        s->start();
    });
}

void ns_worker::forget(const bound_session* s)
{
    std::erase_if(sessions_, [s](const auto& p) { return p.get() == s; });
}

void ns_worker::stop_sessions()
{
    // stop() ends each session's loop; the sessions forget themselves as they finish.
    auto all = sessions_;
    for (auto& s : all)
        s->stop();
}

} // namespace nsagent
