// Port forwarding into a namespace, on one Asio event loop.
#include "forwarder.hpp"

#include "nsagent/frame_reader.hpp"
#include "nsagent/protocol.hpp"
#include "nsagent/scm_rights.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

namespace asio = boost::asio;
namespace json = boost::json;

namespace nsagent {
namespace {

constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t splice_chunk = 1 << 16;

// One connection to the agent, shared by every forwarded connection: requests carry ids, and a
// single reader routes each reply (with its fd) to the waiting coroutine.
class agent_link {
public:
    agent_link(asio::io_context& io, asio::local::stream_protocol::socket s) : io_(io), sock_(std::move(s)) {}

    struct reply {
        json::object frame;
        std::vector<unique_fd> fds;
    };

    void start() { asio::co_spawn(io_, read_loop(), asio::detached); }

    // Sends `req` and waits for its final frame. Empty on a lost agent.
    asio::awaitable<std::optional<reply>> call(json::object req)
    {
        auto id = next_id_++;
        req["id"] = id;
        auto line = json::serialize(req) + "\n";
        auto waiter = std::make_shared<pending>(io_);
        pending_[id] = waiter;
        auto [ec, n] = co_await asio::async_write(sock_, asio::buffer(line), use_nothrow_awaitable);
        (void)n;
        if (ec) {
            pending_.erase(id);
            co_return std::nullopt;
        }
        if (!waiter->done) {
            waiter->wake.expires_at(asio::steady_timer::time_point::max());
            auto [wec] = co_await waiter->wake.async_wait(use_nothrow_awaitable);
            (void)wec;
        }
        co_return std::move(waiter->result);
    }

    bool alive() const { return alive_; }

private:
    struct pending {
        explicit pending(asio::io_context& io) : wake(io) {}
        asio::steady_timer wake;
        bool done = false;
        std::optional<reply> result;
    };

    asio::awaitable<void> read_loop()
    {
        frame_reader reader(std::size_t{64} << 20);
        while (alive_) {
            frame_reader::line line;
            auto st = reader.next(line);
            if (st == frame_reader::status::line) {
                boost::system::error_code ec;
                auto v = json::parse(line.text, ec);
                if (ec || !v.is_object() || !v.get_object().contains("ok"))
                    continue; // events and junk: the forwarder asks for none
                auto* id = v.get_object().if_contains("id");
                if (!id || !id->is_int64())
                    continue;
                auto it = pending_.find(id->get_int64());
                if (it == pending_.end())
                    continue;
                it->second->result = reply{std::move(v.get_object()), std::move(line.fds)};
                it->second->done = true;
                it->second->wake.cancel();
                pending_.erase(it);
                continue;
            }
            auto [ec] = co_await sock_.async_wait(asio::socket_base::wait_read, use_nothrow_awaitable);
            boost::system::error_code rec;
            auto n = ec ? 0 : reader.receive(sock_.native_handle(), MSG_DONTWAIT, rec);
            if (rec == boost::system::errc::resource_unavailable_try_again)
                continue;
            if (ec || rec || n == 0)
                alive_ = false;
        }
        // The agent is gone: wake every waiter with nothing.
        for (auto& [id, p] : pending_) {
            p->done = true;
            p->wake.cancel();
        }
        pending_.clear();
    }

    asio::io_context& io_;
    asio::local::stream_protocol::socket sock_;
    std::map<std::int64_t, std::shared_ptr<pending>> pending_;
    std::int64_t next_id_ = 1;
    bool alive_ = true;
};

// Moves bytes from `from` to `to` through a pipe with splice(2): no copy through user space.
// At end of stream it shuts down the writing side of `to`, so half-close travels through.
asio::awaitable<void> pump(asio::posix::stream_descriptor& from, asio::posix::stream_descriptor& to)
{
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        co_return;
    unique_fd rd(p[0]), wr(p[1]);
    for (;;) {
        ssize_t n = ::splice(from.native_handle(), nullptr, wr.get(), nullptr, splice_chunk,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EAGAIN) {
            auto [ec] = co_await from.async_wait(asio::posix::descriptor_base::wait_read, use_nothrow_awaitable);
            if (ec)
                break;
            continue;
        }
        if (n <= 0)
            break; // end of stream, or an error: either way this direction is done
        while (n > 0) {
            ssize_t m = ::splice(rd.get(), nullptr, to.native_handle(), nullptr, static_cast<size_t>(n),
                                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (m < 0 && errno == EAGAIN) {
                auto [ec] = co_await to.async_wait(asio::posix::descriptor_base::wait_write, use_nothrow_awaitable);
                if (ec)
                    co_return;
                continue;
            }
            if (m <= 0)
                co_return;
            n -= m;
        }
    }
    ::shutdown(to.native_handle(), SHUT_WR);
}

asio::awaitable<void> forward_one(asio::io_context& io, agent_link& link, const forward_options& opt,
                                  asio::ip::tcp::socket local)
{
    json::object req{{"op", "net.connect"},
                     {"ns", to_json(opt.ns)},
                     {"args", {{"address", opt.to}, {"timeout_ms", opt.connect_timeout_ms}}},
                     {"timeout_ms", opt.connect_timeout_ms + 1000}};
    auto r = co_await link.call(std::move(req));
    if (!r || !r->frame.contains("ok") || !r->frame.at("ok").as_bool() || r->fds.empty()) {
        std::string why = !r ? "the agent went away" : json::serialize(r->frame.contains("error") ? r->frame.at("error") : json::value());
        std::fprintf(stderr, "nsctl: forward: connect to %s failed: %s\n", opt.to.c_str(), why.c_str());
        co_return; // closing `local` tells the client
    }
    asio::posix::stream_descriptor a(io, local.release());
    asio::posix::stream_descriptor b(io, r->fds[0].release());
    // SPLICE_F_NONBLOCK covers only the pipe: the sockets themselves must be non-blocking, or a
    // splice from an idle peer stalls the whole loop.
    for (int fd : {a.native_handle(), b.native_handle()})
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    // Both directions on this one loop; the connection ends when both have ended.
    int left = 2;
    asio::steady_timer both_done(io, asio::steady_timer::time_point::max());
    auto run = [&](asio::posix::stream_descriptor& x, asio::posix::stream_descriptor& y) -> asio::awaitable<void> {
        co_await pump(x, y);
        if (--left == 0)
            both_done.cancel();
    };
    asio::co_spawn(io, run(a, b), asio::detached);
    asio::co_spawn(io, run(b, a), asio::detached);
    auto [ec] = co_await both_done.async_wait(use_nothrow_awaitable);
    (void)ec;
}

asio::awaitable<void> accept_loop(asio::io_context& io, asio::ip::tcp::acceptor& acceptor, agent_link& link,
                                  const forward_options& opt)
{
    for (;;) {
        auto [ec, s] = co_await acceptor.async_accept(use_nothrow_awaitable);
        if (ec == asio::error::operation_aborted || !acceptor.is_open())
            co_return;
        if (ec)
            continue;
        if (!link.alive()) {
            std::fprintf(stderr, "nsctl: forward: the agent went away; stopping\n");
            acceptor.close();
            io.stop();
            co_return;
        }
        asio::co_spawn(io, forward_one(io, link, opt, std::move(s)), asio::detached);
    }
}

} // namespace

int run_forwarder(const forward_options& opt)
{
    asio::io_context io{1};
    asio::local::stream_protocol::socket agent_sock(io);
    boost::system::error_code ec;
    agent_sock.connect(asio::local::stream_protocol::endpoint(opt.agent_socket), ec);
    if (ec) {
        std::fprintf(stderr, "nsctl: cannot reach the agent at %s: %s\n", opt.agent_socket.c_str(), ec.message().c_str());
        return 3;
    }
    auto colon = opt.listen.rfind(':');
    if (colon == std::string::npos) {
        std::fprintf(stderr, "nsctl: --listen must be host:port\n");
        return 2;
    }
    auto host = opt.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[')
        host = host.substr(1, host.size() - 2);
    auto addr = asio::ip::make_address(host, ec);
    if (ec) {
        std::fprintf(stderr, "nsctl: --listen %s: %s\n", opt.listen.c_str(), ec.message().c_str());
        return 2;
    }
    unsigned short port = static_cast<unsigned short>(std::stoi(opt.listen.substr(colon + 1)));
    asio::ip::tcp::acceptor acceptor(io);
    asio::ip::tcp::endpoint ep(addr, port);
    acceptor.open(ep.protocol(), ec);
    if (!ec)
        acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(ep, ec);
    if (!ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        std::fprintf(stderr, "nsctl: forward: listen on %s: %s\n", opt.listen.c_str(), ec.message().c_str());
        return 1;
    }
    auto bound = acceptor.local_endpoint();
    std::string shown = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
    std::cout << "forwarding " << shown << ":" << bound.port() << " -> " << describe(opt.ns) << " " << opt.to << std::endl;

    agent_link link(io, std::move(agent_sock));
    link.start();
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
        // Stop cleanly: no new connections; the loop ends, and with it every relay.
        acceptor.close();
        io.stop();
    });
    std::signal(SIGPIPE, SIG_IGN);
    asio::co_spawn(io, accept_loop(io, acceptor, link, opt), asio::detached);
    io.run();
    return 0;
}

} // namespace nsagent
