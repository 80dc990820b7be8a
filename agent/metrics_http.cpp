// The optional Prometheus scrape endpoint (config metrics_listen): GET /metrics over HTTP/1.1,
// served by Boost.Beast on the agent's own I/O loop, one request per connection.
#include "agent.hpp"
#include "log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace nsagent {
namespace {

constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> serve(agent& a, asio::ip::tcp::socket sock)
{
    beast::tcp_stream stream(std::move(sock));
    // A scraper that stalls cannot hold a connection open for long.
    stream.expires_after(std::chrono::seconds(10));
    beast::flat_buffer buf(8192);
    http::request<http::empty_body> req;
    auto [ec, n] = co_await http::async_read(stream, buf, req, use_nothrow_awaitable);
    (void)n;
    if (ec)
        co_return;
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(false);
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
    } else if (req.target() != "/metrics") {
        res.result(http::status::not_found);
        res.body() = "nsagent serves /metrics only\n";
    } else {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4");
        if (req.method() == http::verb::get)
            res.body() = a.metrics_text();
    }
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow_awaitable);
    (void)wec;
    (void)wn;
    beast::error_code sec;
    stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, sec);
}

struct metrics_listener {
    explicit metrics_listener(asio::io_context& io) : acceptor(io) {}
    asio::ip::tcp::acceptor acceptor;
};

asio::awaitable<void> scrape_accept_loop(agent& a, std::shared_ptr<metrics_listener> l)
{
    while (!a.draining()) {
        auto [ec, s] = co_await l->acceptor.async_accept(use_nothrow_awaitable);
        if (ec == asio::error::operation_aborted || a.draining())
            co_return;
        if (ec)
            continue;
        asio::co_spawn(l->acceptor.get_executor(), serve(a, std::move(s)), asio::detached);
    }
}

} // namespace

void agent::start_metrics_http()
{
    auto colon = cfg_.metrics_listen.rfind(':');
    boost::system::error_code ec;
    auto host = cfg_.metrics_listen.substr(0, colon == std::string::npos ? 0 : colon);
    if (host.size() > 2 && host.front() == '[')
        host = host.substr(1, host.size() - 2);
    auto addr = asio::ip::make_address(host, ec);
    unsigned port = 0;
    if (!ec && colon != std::string::npos)
        port = static_cast<unsigned>(std::strtoul(cfg_.metrics_listen.c_str() + colon + 1, nullptr, 10));
    auto l = std::make_shared<metrics_listener>(io_);
    if (!ec) {
        asio::ip::tcp::endpoint ep(addr, static_cast<unsigned short>(port));
        l->acceptor.open(ep.protocol(), ec);
        if (!ec)
            l->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec)
            l->acceptor.bind(ep, ec);
        if (!ec)
            l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        // Metrics are optional: the agent serves its socket regardless, and says why not here.
        log_event(log_level::err, "metrics_listen_failed", kv("listen", cfg_.metrics_listen) + kv("error", ec.message()));
        return;
    }
    auto bound = l->acceptor.local_endpoint();
    std::string shown = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string()) +
                        ":" + std::to_string(bound.port());
    set_metrics_endpoint(shown);
    log_event(log_level::notice, "metrics_listening", kv("listen", shown));
    metrics_http_ = l;
    asio::co_spawn(io_, scrape_accept_loop(*this, l), asio::detached);
}

} // namespace nsagent
