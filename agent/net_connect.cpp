// net.connect and net.probe: the worker only creates the sockets (that is what ties them to the
// namespace); connecting and waiting happen here, on the I/O thread, so a black-holed peer never
// holds up the namespace's other requests, and each wait ends at its own deadline.
#include "agent.hpp"
#include "net_endpoint.hpp"
#include "op_registry.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/array.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>

namespace asio = boost::asio;
namespace json = boost::json;

namespace nsagent {
namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

struct connect_target {
    int family = AF_INET;
    int type = SOCK_STREAM;
    endpoint remote;
    std::string text;
    std::chrono::milliseconds timeout{0};
};

boost::system::result<connect_target, op_error> target_of(const json::object& args)
{
    connect_target t;
    auto* a = args.if_contains("address");
    if (!a || !a->is_string())
        return agent_failure(errc::bad_request, "\"args.address\" must be host:port or [v6]:port");
    t.text = std::string(a->get_string());
    t.family = !t.text.empty() && t.text.front() == '[' ? AF_INET6 : AF_INET;
    auto e = parse_endpoint(t.text, t.family);
    if (!e)
        return agent_failure(errc::bad_request, "\"args.address\" must be host:port or [v6]:port");
    t.remote = *e;
    if (auto* p = args.if_contains("proto"); p && !p->is_null()) {
        if (*p == json::value("udp"))
            t.type = SOCK_DGRAM;
        else if (*p != json::value("tcp"))
            return agent_failure(errc::bad_request, "\"args.proto\" must be tcp or udp");
    }
    auto* ms = args.if_contains("timeout_ms");
    if (ms && !(ms->is_int64() && ms->get_int64() > 0))
        return agent_failure(errc::bad_request, "\"args.timeout_ms\" must be a positive integer");
    t.timeout = std::chrono::milliseconds(ms ? ms->get_int64() : 5000);
    return t;
}

// Worker half: `count` non-blocking sockets of the right family, born in this namespace.
op_result make_sockets(op_context& c, int count)
{
    auto t = target_of(c.req.args);
    if (!t)
        return t.error();
    for (int i = 0; i < count; ++i) {
        unique_fd s(::socket(t->family, t->type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!s)
            return os_failure(errno, "socket");
        c.reply_fds.push_back(std::move(s));
    }
    return json::object{};
}

op_result connect_worker(op_context& c)
{
    return make_sockets(c, 1);
}

op_result probe_worker(op_context& c)
{
    auto* n = c.req.args.if_contains("count");
    if (n && !(n->is_int64() && n->get_int64() >= 1 && n->get_int64() <= 100))
        return agent_failure(errc::bad_request, "\"args.count\" must be from 1 to 100");
    return make_sockets(c, n ? static_cast<int>(n->get_int64()) : 1);
}

struct attempt {
    int err = 0;                  // 0: connected
    std::chrono::microseconds took{0};
};

// Connects `fd` to `t`, waiting on the I/O loop until it completes or `deadline` passes.
asio::awaitable<attempt> connect_one(asio::io_context& io, unique_fd& fd, const connect_target& t,
                                     clock_type::time_point deadline)
{
    auto start = clock_type::now();
    attempt a;
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&t.remote.addr), t.remote.len) == 0) {
        a.took = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - start);
        co_return a;
    }
    if (errno != EINPROGRESS) {
        a.err = errno;
        co_return a;
    }
    asio::posix::stream_descriptor sd(io, fd.release());
    asio::steady_timer timer(io, deadline);
    bool expired = false;
    timer.async_wait([&](boost::system::error_code ec) {
        if (!ec) {
            expired = true;
            sd.cancel();
        }
    });
    auto [ec] = co_await sd.async_wait(asio::posix::stream_descriptor::wait_write, use_nothrow_awaitable);
    timer.cancel();
    fd.reset(sd.release());
    a.took = std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - start);
    if (expired || ec) {
        a.err = ETIMEDOUT;
        co_return a;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len);
    a.err = soerr;
    co_return a;
}

clock_type::time_point deadline_of(const pending_request& r, const connect_target& t)
{
    return std::min(r.deadline, clock_type::now() + t.timeout);
}

asio::awaitable<void> finish_connect(agent& ag, std::shared_ptr<pending_request> r)
{
    auto t = target_of(r->req.args);
    auto fds = std::move(r->reply_fds);
    auto a = co_await connect_one(ag.io(), fds.at(0), *t, deadline_of(*r, *t));
    if (a.err) {
        ag.finish(r, os_failure(a.err, "connect " + t->text));
        co_return;
    }
    sockaddr_storage local{}, remote{};
    socklen_t ll = sizeof local, rl = sizeof remote;
    ::getsockname(fds[0].get(), reinterpret_cast<sockaddr*>(&local), &ll);
    ::getpeername(fds[0].get(), reinterpret_cast<sockaddr*>(&remote), &rl);
    ag.finish(r,
              json::object{{"local", endpoint_text(local, ll)},
                           {"remote", endpoint_text(remote, rl)},
                           {"connect_us", a.took.count()}},
              std::move(fds));
}

asio::awaitable<void> finish_probe(agent& ag, std::shared_ptr<pending_request> r)
{
    auto t = target_of(r->req.args);
    auto fds = std::move(r->reply_fds);
    json::array times;
    int last_err = 0;
    bool reachable = false;
    for (auto& fd : fds) {
        if (r->current() == pending_request::state::finished)
            break; // answered meanwhile (deadline, cancel, disconnect)
        auto a = co_await connect_one(ag.io(), fd, *t, deadline_of(*r, *t));
        fd.reset(); // a probe hands out nothing
        if (a.err) {
            last_err = a.err;
            times.push_back(nullptr);
        } else {
            reachable = true;
            times.push_back(a.took.count());
        }
    }
    json::object out{{"reachable", reachable}, {"connect_us", std::move(times)}};
    if (last_err)
        out["errno_name"] = errno_name(last_err);
    ag.finish(r, out);
}

void connect_then(agent& ag, const std::shared_ptr<pending_request>& r)
{
    asio::co_spawn(ag.io(), finish_connect(ag, r), asio::detached);
}

void probe_then(agent& ag, const std::shared_ptr<pending_request>& r)
{
    asio::co_spawn(ag.io(), finish_probe(ag, r), asio::detached);
}

} // namespace

void register_net_connect_ops(op_registry& r)
{
    r.add({"net.connect", op_class::fd, op_site::worker, ns_need::required, ns_type::net, &connect_worker, &connect_then});
    r.add({"net.probe", op_class::fd, op_site::worker, ns_need::required, ns_type::net, &probe_worker, &probe_then});
}

} // namespace nsagent
