// Dispatch, the single final-reply path, the listener, and drain on stop.
#include "agent.hpp"

#include "bound_session.hpp"

#include "connection.hpp"
#include "gpu_worker.hpp"
#include "log.hpp"
#include "service_manager.hpp"

#include "nsagent/protocol.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace asio = boost::asio;
namespace json = boost::json;

namespace nsagent {
namespace {

constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

[[noreturn]] void startup_error(const std::string& path, const std::string& what, int err)
{
    throw std::runtime_error(path + ": " + what + ": " + errno_name(err) + " (" + std::strerror(err) + ")");
}

void make_parent_dirs(const std::string& path)
{
    for (auto pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
        std::string dir = path.substr(0, pos);
        if (::mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST)
            startup_error(dir, "cannot create the socket's directory", errno);
    }
}

} // namespace

unique_fd bind_listener(const std::string& path)
{
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path)
        startup_error(path, "socket path too long", ENAMETOOLONG);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    make_parent_dirs(path);

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error(path + ": exists and is not a socket; refusing to replace it");
        // Someone listening there is a live agent: never steal its socket. Nobody listening
        // (ECONNREFUSED) means a stale file from an agent that died: replace it.
        unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
            throw std::runtime_error(path + ": another agent is listening there; refusing to start");
        if (errno != ECONNREFUSED)
            startup_error(path, "cannot tell whether the existing socket is live", errno);
        if (::unlink(path.c_str()) < 0 && errno != ENOENT)
            startup_error(path, "cannot remove the stale socket", errno);
        log_event(log_level::notice, "stale_socket_replaced", kv("path", path));
    } else if (errno != ENOENT) {
        startup_error(path, "lstat", errno);
    }

    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!s)
        startup_error(path, "socket", errno);
    // Created 0660 from the start (umask), so there is no window with a wider mode.
    mode_t old = ::umask(0117);
    int rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    int err = errno;
    ::umask(old);
    if (rc < 0)
        startup_error(path, "bind", err);
    if (::chmod(path.c_str(), 0660) < 0)
        startup_error(path, "chmod 0660", errno);
    if (::listen(s.get(), SOMAXCONN) < 0)
        startup_error(path, "listen", errno);
    return s;
}

long current_thread_count()
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Threads:", 0) == 0)
            return std::stol(line.substr(8));
    return -1;
}

agent::agent(asio::io_context& io, const config& cfg, const op_registry& ops, unique_fd listener)
    : io_(io),
      cfg_(cfg),
      ops_(ops),
      acceptor_(io, asio::local::stream_protocol(), listener.release()),
      signals_(io, SIGTERM, SIGINT, SIGHUP),
      pool_(
          io, cfg, [this](const request_ptr& r) { complete(r); },
          [this](const request_ptr& r, const op_error& e) { finish(r, e); }),
      audit_(cfg.audit),
      policy_(cfg.policy)
{
}

agent::~agent() = default;

void agent::start()
{
    reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    base_threads_ = current_thread_count();
    wait_for_signal();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    asio::co_spawn(io_, sweep_loop(), asio::detached);
    asio::co_spawn(io_, netns_watch_loop(), asio::detached);
    if (!cfg_.metrics_listen.empty())
        start_metrics_http();
    log_event(log_level::notice, "ready", kv("base_threads", base_threads_));
    // Only now: the listener works, so a client that systemd lets in will be served.
    notify_ready("serving");
    if (auto every = watchdog_interval())
        asio::co_spawn(io_, watchdog_loop(*every), asio::detached);
}

void agent::wait_for_signal()
{
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
        if (ec)
            return;
        if (sig == SIGHUP) {
            // systemctl reload sends it. Connections, workers and in-flight requests stay.
            log_event(log_level::notice, "signal", kv("signal", "SIGHUP") + kv("action", "reload_policy"));
            reload_policy();
            wait_for_signal();
            return;
        }
        log_event(log_level::notice, "signal", kv("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        begin_drain();
    });
}

void agent::reload_policy()
{
    if (config_path_.empty()) {
        log_event(log_level::notice, "reload", kv("result", "ignored") + kv("reason", "no config file"));
        return;
    }
    auto next = load_config(config_path_, true);
    if (!next) {
        // A broken file must never open the agent up or lock everyone out: the old policy stays.
        log_event(log_level::err, "reload",
                  kv("result", "rejected") + kv("reason", next.error()) + kv("kept_rules", policy_.size()));
        return;
    }
    // Only the policy is live; the other keys size threads, queues and sockets at start.
    std::string restart;
    auto differs = [&](bool d, const char* key) {
        if (d)
            restart += std::string(restart.empty() ? "" : ",") + key;
    };
    differs(next->queue_depth != cfg_.queue_depth, "queue_depth");
    differs(next->default_timeout_ms != cfg_.default_timeout_ms, "default_timeout_ms");
    differs(next->max_workers != cfg_.max_workers, "max_workers");
    differs(next->idle_timeout_s != cfg_.idle_timeout_s, "idle_timeout_s");
    differs(next->max_connections != cfg_.max_connections, "max_connections");
    differs(next->audit != cfg_.audit, "audit");
    differs(next->metrics_listen != cfg_.metrics_listen, "metrics_listen");
    policy_ = std::move(next->policy);
    log_event(log_level::notice, "reload",
              kv("result", "applied") + kv("rules", policy_.size()) +
                  (restart.empty() ? std::string() : kv("needs_restart", restart)));
}

void agent::refuse_one_for_lack_of_fds(int err)
{
    // The reserve fd makes room for one accept, so that the waiting client learns why instead
    // of hanging in the backlog; then it is taken back for the next time.
    reserve_fd_.reset();
    unique_fd c(::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (c) {
        auto msg = error_frame(nullptr, os_failure(err, "the agent is out of file descriptors (" + errno_name(err) +
                                                            "); this connection is closed, try again later"));
        ::send(c.get(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    c.reset();
    reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

asio::awaitable<void> agent::accept_loop()
{
    asio::steady_timer backoff(io_);
    while (!draining_) {
        auto [ec, sock] = co_await acceptor_.async_accept(use_nothrow_awaitable);
        if (draining_ || ec == asio::error::operation_aborted)
            break;
        if (ec) {
            // EMFILE/ENFILE leave the connection pending: accepting again at once would spin.
            log_event(log_level::warning, "accept_failed", kv("error", errno_name(ec.value())));
            if (ec.value() == EMFILE || ec.value() == ENFILE)
                refuse_one_for_lack_of_fds(ec.value());
            backoff.expires_after(std::chrono::milliseconds(100));
            auto [wec] = co_await backoff.async_wait(use_nothrow_awaitable);
            (void)wec;
            continue;
        }
        ++accepted_;
        if (conns_.size() >= cfg_.max_connections) {
            // Told why, then closed: a best-effort write on a fresh socket does not block.
            auto msg = error_frame(nullptr, agent_failure(errc::busy, "max_connections (" +
                                                                          std::to_string(cfg_.max_connections) +
                                                                          ") reached; try again later"));
            boost::system::error_code wec;
            sock.non_blocking(true, wec);
            ::send(sock.native_handle(), msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            sock.close(wec);
            log_event(log_level::warning, "connection_refused", kv("reason", "max_connections"));
            continue;
        }
        auto c = std::make_shared<connection>(*this, std::move(sock));
        conns_.emplace(c.get(), c);
        log_event(log_level::debug, "connect",
                  kv("pid", c->peer().pid) + kv("uid", c->peer().uid) + kv("pidfd", c->peer().pidfd ? "yes" : "no"));
        c->start();
    }
}

// `ip netns del` unmounts and unlinks /run/netns/NAME: inotify tells at once, so workers anchored
// by that name let go without waiting for the periodic re-check (which stays, as the fallback,
// and covers /run/netns appearing later).
asio::awaitable<void> agent::netns_watch_loop()
{
    asio::steady_timer retry(io_);
    while (!draining_) {
        unique_fd in(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
        if (in && ::inotify_add_watch(in.get(), "/run/netns", IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF) >= 0) {
            asio::posix::stream_descriptor sd(io_, in.release());
            alignas(inotify_event) char buf[4096];
            for (;;) {
                auto [ec] = co_await sd.async_wait(asio::posix::stream_descriptor::wait_read, use_nothrow_awaitable);
                if (ec || draining_)
                    co_return;
                bool self_gone = false;
                for (;;) {
                    ssize_t n = ::read(sd.native_handle(), buf, sizeof buf);
                    if (n <= 0)
                        break;
                    for (char* p = buf; p < buf + n;) {
                        auto* ev = reinterpret_cast<inotify_event*>(p);
                        self_gone |= (ev->mask & (IN_DELETE_SELF | IN_IGNORED)) != 0;
                        p += sizeof(inotify_event) + ev->len;
                    }
                }
                pool_.check_path_anchors();
                if (self_gone)
                    break; // /run/netns itself went away: watch it again once it is back
            }
        }
        retry.expires_after(std::chrono::seconds(5));
        auto [ec] = co_await retry.async_wait(use_nothrow_awaitable);
        if (ec)
            co_return;
    }
}

// WATCHDOG=1 from the event loop itself: if the loop stalls, the pings stop and systemd acts.
asio::awaitable<void> agent::watchdog_loop(std::chrono::microseconds every)
{
    asio::steady_timer t(io_);
    while (!draining_) {
        notify_watchdog();
        t.expires_after(every);
        auto [ec] = co_await t.async_wait(use_nothrow_awaitable);
        if (ec)
            break;
    }
}

asio::awaitable<void> agent::sweep_loop()
{
    asio::steady_timer t(io_);
    // Anchors are re-checked every 250 ms, so that a removed namespace is let go well within a
    // second; idle retirement rides along.
    while (!draining_) {
        t.expires_after(std::chrono::milliseconds(250));
        auto [ec] = co_await t.async_wait(use_nothrow_awaitable);
        if (ec || draining_)
            break;
        pool_.check_path_anchors();
        pool_.sweep_idle(clock::now());
    }
}

void agent::dispatch(const std::shared_ptr<connection>& c, request&& rq, std::vector<unique_fd> fds)
{
    ++requests_;
    const op_spec* spec = ops_.find(rq.op);
    auto reject = [&](errc code, std::string msg) {
        ++replies_[std::string(to_string(code))];
        c->send(error_frame(rq.id, agent_failure(code, rq.op + ": " + msg)));
    };
    if (!spec)
        return reject(errc::unknown_op, "no such op; agent.hello lists the ops");
    if (draining_)
        return reject(errc::shutting_down, "the agent is shutting down");
    // Denied requests never create or enter a worker.
    if (auto denied = check_class(policy_, c->peer(), spec->cls)) {
        ++replies_["permission_denied"];
        log_event(log_level::notice, "denied", kv("uid", c->peer().uid) + kv("pid", c->peer().pid) + kv("op", rq.op));
        audit_.record(c->peer(), rq.op, "", "permission_denied");
        return c->send(error_frame(rq.id, agent_failure(errc::permission_denied, rq.op + ": " + denied->message)));
    }
    if (spec->ns == ns_need::required && !rq.ns)
        return reject(errc::bad_request, "needs \"ns\", a namespace selector");
    if (spec->ns == ns_need::none && rq.ns)
        return reject(errc::bad_request, "takes no \"ns\"");

    auto timeout = std::chrono::milliseconds(rq.timeout_ms.value_or(cfg_.default_timeout_ms));
    auto r = std::make_shared<pending_request>(std::move(rq), *spec, std::move(fds), clock::now() + timeout);
    r->conn = c;
    if (spec->site == op_site::worker && !spec->then)
        r->channel = c->channel();
    c->track(r);

    if (spec->ns == ns_need::required) {
        auto known = resolve_known(*r->req.ns);
        auto h = known ? boost::system::result<ns_handle, op_error>(std::move(*known)) : resolve(*r->req.ns, r->fds);
        if (!h)
            return finish(r, h.error());
        if (spec->type && h->id.type != *spec->type)
            return finish(r, agent_failure(errc::ns_type_mismatch,
                                           "needs a " + std::string(to_string(*spec->type)) + " namespace, got " +
                                               to_string(h->id)));
        r->ns = h->id;
        if (auto denied = check_namespace(policy_, c->peer(), h->id))
            return finish(r, *denied);
        if (spec->as_client)
            r->as = fs_identity_for(c->peer());
        if (spec->site == op_site::worker) {
            worker_pool::anchor anchor;
            switch (r->req.ns->by) {
            case selector::form::fd: anchor.connection = c.get(); break;
            case selector::form::pid: anchor.pid = r->req.ns->number; break;
            case selector::form::name: anchor.path = "/run/netns/" + r->req.ns->text; break;
            case selector::form::path: anchor.path = r->req.ns->text; break;
            }
            if (auto err = pool_.submit(*h, r, anchor))
                finish(r, *err);
            return;
        }
    }
    run_inline(r, c);
}

std::optional<ns_handle> agent::resolve_known(const selector& s) const
{
    // A name or path of a namespace that already has a worker needs no fd: one stat(2) gives
    // its identity, and the live worker (which verified that identity on the namespace itself
    // when it started) proves the file is that namespace. nsfs inode numbers are unique
    // across types on their device, so a match cannot be a file of another kind. This saves
    // the open, the NS_GET_NSTYPE ioctl and the close of every later request by name.
    if ((s.by != selector::form::name && s.by != selector::form::path) || !s.type)
        return std::nullopt;
    std::string path = s.by == selector::form::name ? "/run/netns/" + s.text : s.text;
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0)
        return std::nullopt;
    ns_id id{*s.type, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
    if (!pool_.find(id))
        return std::nullopt;
    return ns_handle{id, {}, {}};
}

std::optional<client_identity> agent::fs_identity_for(const peer_identity& who) const
{
    // fs ops of other users are checked against their own permissions, on the worker. Root's
    // (and "fs_identity": "agent" clients') run as root: a non-root agent (User= in the unit)
    // must still create root-owned files for them, not files of its own uid.
    auto* rule = who.uid != 0 ? match_rule(policy_, who) : nullptr;
    if (rule && !rule->fs_as_agent)
        return client_identity{who.uid, who.gid, who.groups};
    if (agent_uid_ != 0)
        return client_identity{0, 0, {}};
    return std::nullopt;
}

void agent::bind_connection(const request_ptr& r)
{
    auto c = r->conn.lock();
    if (!c || !c->is_open())
        return finish(r, *r->result); // nobody left to bind
    if (c->inflight_count() > 1)
        return finish(r, agent_failure(errc::bad_request,
                                       "needs every earlier request on this connection answered first; " +
                                           std::to_string(c->inflight_count() - 1) + " still in flight"));
    auto* found = pool_.find(*r->ns);
    if (!found)
        return finish(r, agent_failure(errc::ns_not_found, "the namespace's worker retired before the bind completed"));
    worker_pool::worker_ptr w = *found;

    // What the client may do there is fixed now, from the policy in force.
    bound_grant grant;
    const peer_identity& who = c->peer();
    if (who.uid != 0)
        if (auto* rule = match_rule(policy_, who))
            grant.allow = rule->allow;
    grant.as = fs_identity_for(who);
    auto audited = std::make_shared<peer_identity>();
    audited->pid = who.pid;
    audited->uid = who.uid;
    audited->gid = who.gid;
    audited->groups = who.groups;
    audited->comm = who.comm;
    std::string ns_text = to_string(w->id());
    grant.audit = [this, audited, ns_text](std::string_view op, std::string_view result) {
        asio::post(io_, [this, audited, ns_text, op = std::string(op), result = std::string(result)] {
            audit_.record(*audited, op, ns_text, result);
        });
    };

    c->hand_over_after_reply([this, w, grant = std::move(grant), husk = c.get()](unique_fd sock, frame_reader rest) mutable {
        // The worker may have retired while the reply was written: then the client sees the
        // connection close, as it would had the namespace gone a moment later.
        if (w->current() != ns_worker::state::ready || pool_.find(w->id()) == nullptr || *pool_.find(w->id()) != w) {
            connection_closed(husk);
            return;
        }
        ++w->active; // a bound connection keeps its worker from idling out or LRU eviction
        ++bound_sessions_;
        ++binds_;
        auto on_end = [this, w, husk] {
            asio::post(io_, [this, w, husk] {
                if (w->active > 0)
                    --w->active;
                w->last_used = clock::now();
                --bound_sessions_;
                connection_closed(husk);
            });
        };
        w->adopt(std::make_shared<bound_session>(*w, ops_, std::move(sock), std::move(rest), std::move(grant),
                                                 std::move(on_end)));
    });
    finish(r, *r->result, std::move(r->reply_fds));
}

void agent::run_inline(const request_ptr& r, const std::shared_ptr<connection>& c)
{
    if (!r->try_start())
        return;
    op_context ctx{r->req, r->fds, r->ns ? &*r->ns : nullptr, nullptr, this, c.get(), {}, {}};
    op_result res = agent_failure(errc::internal, "op did not run");
    try {
        res = r->spec->fn(ctx);
    } catch (const std::exception& e) {
        res = agent_failure(errc::internal, std::string("exception: ") + e.what());
    }
    // A loop op with a second half (pkt.analyze starting its stream) continues there.
    if (r->spec->then && res) {
        r->result = std::move(res);
        r->reply_fds = std::move(ctx.reply_fds);
        r->handoff = std::move(ctx.handoff);
        r->spec->then(*this, r);
        return;
    }
    finish(r, res, std::move(ctx.reply_fds));
}

void agent::start_stream(const request_ptr& r, stream_job::body_fn body)
{
    if (r->current() == pending_request::state::finished)
        return; // answered meanwhile (its deadline, a disconnect)
    if (draining_)
        return finish(r, agent_failure(errc::shutting_down, "the agent is shutting down"));
    if (streams_.size() >= cfg_.max_streams)
        return finish(r, agent_failure(errc::busy, "max_streams (" + std::to_string(cfg_.max_streams) +
                                                       ") captures and analyses are running; retry later"));
    std::weak_ptr<pending_request> weak = r;
    auto job = std::make_shared<stream_job>(
        [this, weak](std::string kind, json::object fields, std::vector<unique_fd> fds) {
            asio::post(io_, [this, weak, kind = std::move(kind), fields = std::move(fields), fds = std::move(fds)]() mutable {
                if (auto r = weak.lock())
                    send_event(r, kind, std::move(fields), std::move(fds));
            });
        });
    r->job = job;
    streams_.emplace(r.get(), r);
    ++streams_started_;
    job->start(std::move(body), [this, r](op_result res) {
        asio::post(io_, [this, r, res = std::move(res)] {
            finish(r, res);
            r->job->join();
            streams_.erase(r.get());
        });
    });
}

void agent::send_event(const request_ptr& r, std::string_view kind, json::object fields, std::vector<unique_fd> fds)
{
    if (r->current() == pending_request::state::finished)
        return;
    if (auto c = r->conn.lock(); c && c->is_open()) {
        std::string frame = event_frame(r->req.id, kind, std::move(fields), fds.size()); // before fds moves
        c->send(std::move(frame), std::move(fds));
    }
}

void agent::complete(const request_ptr& r)
{
    // The worker wrote the reply itself: only the bookkeeping is left.
    if (r->replied_directly) {
        ++direct_replies_;
        account(r, *r->result);
        if (auto c = r->conn.lock())
            c->delivered_directly(*r);
        return;
    }
    // A worker op with a loop half continues here, unless it failed or was already answered.
    if (r->spec->then && *r->result && r->current() != pending_request::state::finished) {
        r->spec->then(*this, r);
        return;
    }
    finish(r, *r->result, std::move(r->reply_fds));
}

void agent::finish(const request_ptr& r, const op_result& res, std::vector<unique_fd> fds)
{
    if (r->claim_final())
        send_final(r, res, std::move(fds));
}

void agent::account(const request_ptr& r, const op_result& res)
{
    std::string code = res ? std::string("ok") : std::string(to_string(wire_code(res.error().code)));
    ++by_op_code_[{r->req.op, code}];
    ++replies_[code];
    // Every mutation and every fd handed out leaves a trace of who did it, where, and how it went.
    if (r->spec->cls != op_class::read)
        if (auto c = r->conn.lock())
            audit_.record(c->peer(), r->req.op, r->ns ? to_string(*r->ns) : std::string(),
                          res || code != "os_error" ? code : code + ":" + errno_name(res.error().code.value()));
}

void agent::send_final(const request_ptr& r, const op_result& res, std::vector<unique_fd> fds)
{
    account(r, res);
    if (!res)
        fds.clear();
    std::string frame = final_frame(*r, res, fds.size());
    if (auto c = r->conn.lock())
        c->deliver(*r, std::move(frame), std::move(fds));
}

void agent::on_deadline(const request_ptr& r)
{
    if (r->job && r->current() != pending_request::state::finished) {
        r->job->request_stop("deadline");
        return;
    }
    auto prev = r->claim_final();
    if (!prev)
        return;
    bool running = *prev == pending_request::state::running;
    // Still running past its deadline: the syscall cannot be interrupted, so the worker is
    // wedged. The namespace gets a fresh worker; this one is never joined.
    if (running && !r->op_returned.load(std::memory_order_acquire) && r->worker)
        pool_.mark_wedged(r->worker);
    auto ms = r->req.timeout_ms.value_or(cfg_.default_timeout_ms);
    send_final(r,
               agent_failure(errc::timeout, "deadline of " + std::to_string(ms) + " ms passed while " +
                                                (running ? "running" : "queued")),
               {});
}

bool agent::cancel(const request_ptr& r)
{
    // A stream answers for itself, with what it has so far.
    if (r->job && r->current() != pending_request::state::finished) {
        r->job->request_stop("cancelled");
        return true;
    }
    if (!r->claim_final())
        return false;
    send_final(r, agent_failure(errc::cancelled, "cancelled by agent.cancel"), {});
    return true;
}

void agent::connection_closed(const connection* c)
{
    pool_.drop_anchor(c);
    conns_.erase(c);
}

std::size_t agent::inflight_total() const
{
    std::size_t n = 0;
    for (auto& [p, c] : conns_)
        n += c->inflight_count();
    return n;
}

void agent::begin_drain()
{
    if (draining_)
        return;
    draining_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    log_event(log_level::notice, "drain_start", kv("inflight", static_cast<long long>(inflight_total())));
    notify_stopping();
    // Captures and analyses end now and answer with what they have: their final replies count
    // as answered requests like any other.
    for (auto& [p, r] : streams_)
        r->job->request_stop("the agent is shutting down");
    asio::co_spawn(io_, drain_loop(), asio::detached);
}

asio::awaitable<void> agent::drain_loop()
{
    asio::steady_timer t(io_);
    auto tick = [&]() -> asio::awaitable<void> {
        t.expires_after(std::chrono::milliseconds(5));
        auto [ec] = co_await t.async_wait(use_nothrow_awaitable);
        (void)ec;
    };
    auto deadline = clock::now() + std::chrono::milliseconds(cfg_.drain_timeout_ms);
    while (inflight_total() > 0 && clock::now() < deadline)
        co_await tick();

    // Past the drain deadline: whatever is left gets shutting_down, exactly once.
    // Every reply is claimed before any stuck worker is marked wedged: marking one moves its
    // queue to a fresh worker, which must find those requests already answered, not serve them
    // while the agent shuts down.
    std::size_t cut = 0;
    std::vector<std::shared_ptr<ns_worker>> stuck;
    for (auto& [p, c] : conns_) {
        for (auto& r : c->inflight()) {
            auto prev = r->claim_final();
            if (!prev)
                continue;
            if (*prev == pending_request::state::running && !r->op_returned && r->worker)
                stuck.push_back(r->worker);
            send_final(r, agent_failure(errc::shutting_down, "the agent stopped before this request finished"), {});
            ++cut;
        }
    }
    for (auto& w : stuck)
        pool_.mark_wedged(w);
    // Stream threads were told to stop at the drain's start and poll for it; their replies
    // were claimed above if still missing. Join them: no thread outlives the agent.
    for (auto& [p, r] : streams_)
        r->job->join();
    streams_.clear();
    pool_.retire_all();
    for (auto& [p, c] : conns_)
        c->close_when_flushed();

    // Join every worker that is not wedged, and give writers a moment to flush.
    auto flush_deadline = clock::now() + std::chrono::seconds(2);
    while ((!pool_.quiet() || !conns_.empty()) && clock::now() < flush_deadline)
        co_await tick();
    std::vector<std::shared_ptr<connection>> left;
    for (auto& [p, c] : conns_)
        left.push_back(c);
    for (auto& c : left)
        c->close();
    log_event(log_level::notice, "drain_done",
              kv("answered_shutting_down", static_cast<long long>(cut)) +
                  kv("wedged", static_cast<long long>(pool_.wedged())) +
                  kv("unjoined", static_cast<long long>(pool_.live().size() + pool_.retiring())));
    signals_.cancel();
    io_.stop();
}

json::object agent::stats() const
{
    json::object o;
    o["pid"] = ::getpid();
    o["threads"] = current_thread_count();
    o["base_threads"] = base_threads_;
    json::array workers;
    auto now = clock::now();
    for (auto& [id, w] : pool_.live()) {
        json::object wo;
        wo["ns"] = json::object{{"type", to_string(id.type)}, {"dev", u64_to_json(id.dev)}, {"ino", u64_to_json(id.ino)}};
        wo["tid"] = w->tid();
        wo["queue_depth"] = w->queued();
        wo["active"] = w->active;
        wo["ops"] = w->ops();
        wo["errors"] = w->errors();
        wo["spin_hits"] = w->spins_won();
        wo["idle_ms"] = w->active ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(now - w->last_used).count();
        wo["state"] = to_string(w->current());
        wo["max_queue_depth"] = w->max_queued();
        wo["age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now - w->started_at()).count();
        auto qw = w->queue_wait.read(), ex = w->exec_time.read();
        // Upper bounds of the histogram buckets holding p50 and p99, in milliseconds.
        wo["queue_wait_ms"] = json::object{{"p50", qw.quantile(0.5) * 1e3}, {"p99", qw.quantile(0.99) * 1e3}};
        wo["exec_ms"] = json::object{{"p50", ex.quantile(0.5) * 1e3}, {"p99", ex.quantile(0.99) * 1e3}};
        workers.push_back(std::move(wo));
    }
    o["workers"] = std::move(workers);
    o["wedged"] = pool_.wedged();
    o["retiring"] = pool_.retiring();
    o["workers_started"] = pool_.started_total();
    json::object retired;
    for (auto& [k, v] : pool_.retired())
        retired[k] = v;
    o["retired"] = std::move(retired);
    o["connections"] = conns_.size();
    o["bound_connections"] = bound_sessions_;
    o["binds"] = binds_;
    o["direct_replies"] = direct_replies_;
    o["direct_replies_partial"] = stashed_replies_;
    o["connections_accepted"] = accepted_;
    o["streams"] = streams_.size();
    o["streams_started"] = streams_started_;
    o["inflight"] = inflight_total();
    std::size_t unsent = 0;
    for (auto& [p, c] : conns_)
        unsent += c->unsent_bytes();
    o["unsent_bytes"] = unsent;
    o["requests"] = requests_;
    json::object replies;
    for (auto& [k, v] : replies_)
        replies[k] = v;
    o["replies"] = std::move(replies);
    o["uptime_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_at_).count();
    o["draining"] = draining_;
    if (gpu_)
        o["gpu"] = json::object{{"ready", gpu_->ready()},
                                {"status", gpu_->status()},
                                {"batches", gpu_->batches()},
                                {"packets", gpu_->packets()}};
    if (!metrics_endpoint_.empty())
        o["metrics_listen"] = metrics_endpoint_;
    return o;
}

} // namespace nsagent
