// A namespace-bound connection served on its worker's event loop.
#include "bound_session.hpp"

#include "ns_worker.hpp"

#include "nsagent/protocol.hpp"
#include "nsagent/scm_rights.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

namespace nsagent {
namespace asio = boost::asio;
namespace {

constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t write_batch = 64 * 1024;

} // namespace

bound_session::bound_session(ns_worker& w, const op_registry& ops, unique_fd sock, frame_reader reader,
                             bound_grant grant, std::function<void()> on_end)
    : worker_(w),
      ops_(ops),
      // Registered with the worker's own io_context: its epoll now waits for this socket too.
      sock_(w.io(), asio::local::stream_protocol(), sock.release()),
      reader_(std::move(reader)),
      grant_(std::move(grant)),
      on_end_(std::move(on_end))
{
}

bound_session::~bound_session()
{
    finish(); // a session that never ran (its worker retired first) still lets the agent know
}

void bound_session::finish()
{
    if (auto f = std::exchange(on_end_, nullptr))
        f();
}

void bound_session::start()
{
    auto self = shared_from_this();
    asio::co_spawn(sock_.get_executor(), [self] { return self->run(); }, asio::detached);
}

void bound_session::stop()
{
    stopping_ = true;
    boost::system::error_code ec;
    sock_.cancel(ec); // wakes a pending read or write wait
}

asio::awaitable<bool> bound_session::write(std::string_view bytes, std::vector<unique_fd> fds)
{
    std::vector<int> list;
    for (auto& fd : fds)
        list.push_back(fd.get());
    while (!bytes.empty()) {
        boost::system::error_code ec;
        auto n = send_with_fds(sock_.native_handle(), bytes, list, MSG_DONTWAIT, ec);
        if (ec == boost::system::errc::resource_unavailable_try_again) {
            if (stopping_)
                co_return false; // shutdown does not wait for a client that does not read
            auto [wec] = co_await sock_.async_wait(socket_type::wait_write, use_nothrow_awaitable);
            if (wec)
                co_return false;
            continue;
        }
        if (ec)
            co_return false; // the client is gone
        bytes.remove_prefix(n);
        list.clear(); // they went with the first byte
    }
    co_return true;
}

asio::awaitable<void> bound_session::run()
{
    auto self = shared_from_this(); // the worker's list may let go while this runs
    std::string out;                 // replies to the lines received so far, written as one
    bool alive = true;
    while (alive) {
        frame_reader::line line;
        auto st = reader_.next(line);
        if (st == frame_reader::status::line) {
            if (stopping_) {
                boost::json::value id;
                (void)parse_request(line.text, id); // only for the id, if it has one
                out += error_frame(id, agent_failure(errc::shutting_down, "the namespace's worker is stopping; "
                                                                          "this bound connection closes"));
                continue;
            }
            std::vector<unique_fd> fds;
            std::string frame = handle(line, fds);
            if (!fds.empty()) {
                // A frame with fds goes alone, after everything before it.
                bool ok = co_await write(out);
                out.clear();
                if (ok)
                    ok = co_await write(frame, std::move(fds));
                alive = ok;
            } else {
                out += frame;
            }
            if (worker_.unfit())
                stopping_ = true;
            if (out.size() >= write_batch) {
                alive = co_await write(out);
                out.clear();
            }
            continue;
        }
        if (st == frame_reader::status::too_large) {
            out += error_frame(nullptr, agent_failure(errc::too_large, "a request line exceeds max_request_bytes; "
                                                                      "closing the connection"));
            alive = false;
        }
        if (!out.empty()) {
            bool ok = co_await write(out);
            out.clear();
            alive = alive && ok;
        }
        if (!alive || stopping_)
            break;
        auto [ec] = co_await sock_.async_wait(socket_type::wait_read, use_nothrow_awaitable);
        if (ec && !stopping_)
            break;
        if (stopping_)
            continue; // answer what is already buffered, then close
        boost::system::error_code rec;
        auto n = reader_.receive(sock_.native_handle(), MSG_DONTWAIT, rec);
        if (rec == boost::system::errc::resource_unavailable_try_again)
            continue;
        if (rec || n == 0)
            break; // closed (a half-closed client has every reply by now)
    }
    boost::system::error_code ec;
    sock_.close(ec);
    worker_.forget(this);
    finish();
}

std::string bound_session::handle(frame_reader::line& line, std::vector<unique_fd>& fds)
{
    const ns_id& ns = worker_.id();
    boost::json::value id;
    auto rq = parse_request(line.text, id);
    if (!rq)
        return error_frame(id, rq.error());
    auto fail = [&](errc code, const std::string& msg) {
        return error_frame(id, agent_failure(code, rq->op + " " + to_string(ns) + ": " + msg));
    };
    if (line.fds.size() != rq->fds)
        return fail(errc::bad_request, "the request declares " + std::to_string(rq->fds) + " fds but " +
                                           std::to_string(line.fds.size()) + " came with it; all closed");
    if (rq->ns)
        return fail(errc::bad_request, "this connection is bound to " + to_string(ns) +
                                           "; requests on it take no \"ns\" (open another connection for others)");
    const op_spec* spec = ops_.find(rq->op);
    if (!spec)
        return fail(errc::unknown_op, "no such op; agent.hello lists the ops");
    // Ops that need the agent's I/O thread (agent.*, ns.release, the connecting half of
    // net.connect/probe) are not served here.
    if (spec->site != op_site::worker || spec->ns != ns_need::required || spec->then)
        return fail(errc::bad_request, "not available on a bound connection; use a connection that is not bound");
    if (spec->type && *spec->type != ns.type)
        return fail(errc::ns_type_mismatch, "needs a " + std::string(to_string(*spec->type)) + " namespace");
    if (grant_.allow && !grant_.allow->contains(std::string(to_string(spec->cls)))) {
        if (grant_.audit)
            grant_.audit(rq->op, "permission_denied");
        return fail(errc::permission_denied, "the policy does not allow " + std::string(to_string(spec->cls)) +
                                                 " ops to this client");
    }
    std::vector<unique_fd> passed = std::move(line.fds);
    op_context ctx{*rq, passed, &ns, &worker_.env(), nullptr, nullptr, {}, {}};
    auto res = worker_.run_op(*spec, ctx, spec->as_client ? grant_.as : std::nullopt);
    if (spec->cls != op_class::read && grant_.audit)
        grant_.audit(rq->op, res ? std::string("ok") : std::string(to_string(wire_code(res.error().code))));
    if (!res) {
        op_error e = res.error();
        e.message = rq->op + " " + to_string(ns) + ": " + e.message;
        return error_frame(id, e);
    }
    fds = std::move(ctx.reply_fds);
    return ok_frame(id, *res, fds.size());
}

} // namespace nsagent
