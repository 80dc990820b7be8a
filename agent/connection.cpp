// Connection reader and writer coroutines.
#include "connection.hpp"
#include "stream_job.hpp"

#include "agent.hpp"
#include "log.hpp"

#include "nsagent/protocol.hpp"
#include "nsagent/scm_rights.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

namespace asio = boost::asio;
namespace json = boost::json;

namespace nsagent {
namespace {

constexpr auto use_nothrow_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t write_batch = 64 * 1024;

} // namespace

connection::connection(agent& a, socket_type s)
    : agent_(a),
      sock_(std::move(s)),
      reader_(a.cfg().max_request_bytes),
      read_gate_(sock_.get_executor()),
      write_gate_(sock_.get_executor()),
      partial_deadline_(sock_.get_executor()),
      channel_(std::make_shared<reply_channel>(sock_.native_handle()))
{
    peer_ = peer_of(sock_.native_handle());
}

connection::~connection() = default;

void connection::start()
{
    auto self = shared_from_this();
    loops_ = 2;
    asio::co_spawn(sock_.get_executor(), [self] { return self->read_loop(); }, asio::detached);
    asio::co_spawn(sock_.get_executor(), [self] { return self->write_loop(); }, asio::detached);
}

std::string connection::key(const json::value& id)
{
    // 7 and "7" are different ids: the serialised form keeps them apart.
    return json::serialize(id);
}

bool connection::is_inflight(const json::value& id) const
{
    return inflight_.contains(key(id));
}

connection::request_ptr connection::find(const json::value& id) const
{
    auto it = inflight_.find(key(id));
    return it == inflight_.end() ? nullptr : it->second.req;
}

std::vector<connection::request_ptr> connection::inflight() const
{
    std::vector<request_ptr> out;
    out.reserve(inflight_.size());
    for (auto& [k, e] : inflight_)
        out.push_back(e.req);
    return out;
}

void connection::track(const request_ptr& r)
{
    auto timer = std::make_unique<asio::steady_timer>(sock_.get_executor(), r->deadline);
    std::weak_ptr<pending_request> weak = r;
    agent* a = &agent_;
    timer->async_wait([weak, a](boost::system::error_code ec) {
        if (ec)
            return; // disarmed: the request got its reply
        if (auto r = weak.lock())
            a->on_deadline(r);
    });
    inflight_.emplace(key(r->req.id), entry{r, std::move(timer)});
}

void connection::forget(const pending_request& r)
{
    auto it = inflight_.find(key(r.req.id));
    if (it != inflight_.end() && it->second.req.get() == &r) {
        inflight_bytes_ -= it->second.bytes;
        inflight_.erase(it); // destroying the timer cancels it
    }
    if (bind_pending_ && !handover_ && r.req.op == "agent.bind")
        bind_pending_ = false; // the bind failed: the connection stays with the I/O thread
}

void connection::after_reply()
{
    if (!read_blocked())
        read_gate_.cancel();
    maybe_finish();
}

void connection::deliver(const pending_request& r, std::string frame, std::vector<unique_fd> fds)
{
    forget(r);
    send(std::move(frame), std::move(fds));
    after_reply();
}

void connection::poke_writer()
{
    agent_.count_stashed_reply();
    write_gate_.cancel();
}

void connection::delivered_directly(const pending_request& r)
{
    forget(r);
    after_reply();
}

void connection::send(std::string frame, std::vector<unique_fd> fds)
{
    if (!open_)
        return; // fds close here: nobody is left to receive them
    if (out_.empty())
        channel_->busy(); // from now until the queue drains, only the writer below writes
    unsent_ += frame.size();
    out_.push_back({std::move(frame), std::move(fds), 0});
    write_gate_.cancel();
}

bool connection::read_blocked() const
{
    return bind_pending_ || inflight_.size() >= agent_.cfg().max_inflight_per_connection ||
           unsent_ > agent_.cfg().max_unsent_bytes || inflight_bytes_ > agent_.cfg().max_inflight_bytes;
}

void connection::handle_line(frame_reader::line& line)
{
    json::value id;
    auto rq = parse_request(line.text, id);
    if (!rq) {
        send(error_frame(id, rq.error()));
        return; // the line's fds close with it
    }
    if (line.fds.size() != rq->fds) {
        send(error_frame(id, agent_failure(errc::bad_request,
                                           "the request declares " + std::to_string(rq->fds) + " fds but " +
                                               std::to_string(line.fds.size()) + " came with it; all closed")));
        return;
    }
    if (is_inflight(rq->id)) {
        send(error_frame(id, agent_failure(errc::bad_request, "id " + key(rq->id) +
                                                                  " is already in flight on this connection")));
        return;
    }
    // After an agent.bind, the rest of the stream may belong to a worker: read nothing more
    // until the bind is answered (see hand_over).
    bool bind = rq->op == "agent.bind";
    auto bind_id = rq->id;
    if (bind)
        bind_pending_ = true;
    auto id_key = key(rq->id);
    agent_.dispatch(shared_from_this(), std::move(*rq), std::move(line.fds));
    // Large requests hold memory while they wait: count them, so that a flood of them stops
    // the reading (max_inflight_bytes) instead of growing the agent.
    if (auto it = inflight_.find(id_key); it != inflight_.end() && it->second.bytes == 0) {
        it->second.bytes = line.text.size();
        inflight_bytes_ += it->second.bytes;
    }
    if (bind && !handover_ && !is_inflight(bind_id))
        bind_pending_ = false; // refused at once (policy, bad selector): reading goes on
}

asio::awaitable<void> connection::read_loop()
{
    bool peer_gone = false;
    while (open_ && reading_) {
        if (read_blocked()) {
            // Backpressure: too many requests in flight, or a client not reading its replies.
            read_gate_.expires_at(asio::steady_timer::time_point::max());
            auto [ec] = co_await read_gate_.async_wait(use_nothrow_awaitable);
            (void)ec;
            continue;
        }
        frame_reader::line line;
        auto st = reader_.next(line);
        if (st == frame_reader::status::line) {
            try {
                handle_line(line);
            } catch (const std::exception& e) {
                // A bug, not a client error: one internal reply, and the connection goes on.
                send(error_frame(nullptr, agent_failure(errc::internal, std::string("exception: ") + e.what())));
            }
            continue;
        }
        if (st == frame_reader::status::too_large) {
            send(error_frame(nullptr, agent_failure(errc::too_large, "a request line exceeds max_request_bytes (" +
                                                                         std::to_string(agent_.cfg().max_request_bytes) +
                                                                         "); closing the connection")));
            reading_ = false;
            break;
        }
        watch_partial_line();
        auto [ec] = co_await sock_.async_wait(socket_type::wait_read, use_nothrow_awaitable);
        if (ec) {
            peer_gone = true;
            break;
        }
        boost::system::error_code rec;
        auto n = reader_.receive(sock_.native_handle(), MSG_DONTWAIT, rec, read_chunk);
        if (rec == boost::system::errc::resource_unavailable_try_again)
            continue;
        if (rec) {
            if (rec.value() == EMSGSIZE)
                log_event(log_level::warning, "connection_ctrunc", kv("pid", peer_.pid));
            peer_gone = true;
            break;
        }
        if (n == 0) {
            // End of stream. A client that only shut down its writing side (socat at the end
            // of its input) still reads: answer what is in flight. One that closed is gone.
            pollfd p{sock_.native_handle(), POLLOUT, 0};
            peer_gone = ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR));
            break;
        }
    }
    after_read_end(peer_gone);
    loop_done();
}

// Slow-loris: a client that sends half a line and stalls would otherwise pin its buffer (up to
// max_request_bytes) forever. The deadline runs from the first byte of an incomplete line.
void connection::watch_partial_line()
{
    if (reader_.buffered() == 0) {
        if (partial_armed_) {
            partial_armed_ = false;
            partial_deadline_.cancel();
        }
        return;
    }
    if (partial_armed_)
        return;
    partial_armed_ = true;
    partial_deadline_.expires_after(std::chrono::milliseconds(agent_.cfg().partial_line_timeout_ms));
    std::weak_ptr<connection> weak = weak_from_this();
    partial_deadline_.async_wait([weak](boost::system::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || !self->partial_armed_ || !self->open_)
            return;
        self->send(error_frame(nullptr, agent_failure(errc::timeout, "a request line stayed incomplete for " +
                                                                      std::to_string(self->agent_.cfg().partial_line_timeout_ms) +
                                                                      " ms (partial_line_timeout_ms); closing the connection")));
        self->close_when_flushed();
    });
}

void connection::after_read_end(bool peer_gone)
{
    reading_ = false;
    if (peer_gone) {
        close();
        return;
    }
    maybe_finish();
}

void connection::maybe_finish()
{
    // Once reading has ended, the connection closes after its last reply is written.
    if (!reading_ && inflight_.empty())
        write_gate_.cancel();
}

asio::awaitable<void> connection::write_loop()
{
    while (open_) {
        // The rest of a reply a worker wrote in part goes before anything else.
        if (std::string rest; channel_->take_stash(rest)) {
            unsent_ += rest.size();
            out_.push_front({std::move(rest), {}, 0});
        }
        if (out_.empty() && !channel_->idle())
            continue; // a worker stashed meanwhile
        if (out_.empty() && handover_ && inflight_.empty()) {
            hand_over();
            break;
        }
        if (out_.empty()) {
            if (!reading_ && inflight_.empty())
                break;
            write_gate_.expires_at(asio::steady_timer::time_point::max());
            auto [ec] = co_await write_gate_.async_wait(use_nothrow_awaitable);
            (void)ec;
            continue;
        }
        // Frames without fds are batched into one send; a frame with fds goes alone.
        std::string batch;
        std::vector<int> fd_list;
        std::string_view bytes;
        auto& front = out_.front();
        if (!front.fds.empty() || front.sent > 0 || out_.size() == 1) {
            bytes = std::string_view(front.bytes).substr(front.sent);
            if (front.sent == 0)
                for (auto& fd : front.fds)
                    fd_list.push_back(fd.get());
        } else {
            for (auto& o : out_) {
                if (!o.fds.empty() || batch.size() + o.bytes.size() > write_batch)
                    break;
                batch += o.bytes;
            }
            if (batch.empty())
                batch = front.bytes;
            bytes = batch;
        }
        boost::system::error_code ec;
        auto n = send_with_fds(sock_.native_handle(), bytes, fd_list, MSG_DONTWAIT, ec);
        if (ec == boost::system::errc::resource_unavailable_try_again) {
            auto [wec] = co_await sock_.async_wait(socket_type::wait_write, use_nothrow_awaitable);
            if (wec)
                break;
            continue;
        }
        if (ec)
            break; // EPIPE, ECONNRESET: the client is gone
        // Retire whole frames covered by n, and the sent prefix of a partial one.
        while (n > 0 && !out_.empty()) {
            auto& o = out_.front();
            auto left = o.bytes.size() - o.sent;
            if (n >= left) {
                n -= left;
                unsent_ -= o.bytes.size();
                out_.pop_front();
            } else {
                o.sent += n;
                o.fds.clear(); // they went with the first byte; our copies close now
                n = 0;
            }
        }
        if (reading_ && !read_blocked())
            read_gate_.cancel();
    }
    close();
    loop_done();
}

void connection::close_when_flushed()
{
    reading_ = false;
    read_gate_.cancel();
    boost::system::error_code ec;
    sock_.shutdown(socket_type::shutdown_receive, ec);
    maybe_finish();
}

void connection::close()
{
    if (!open_)
        return;
    open_ = false;
    reading_ = false;
    // Abandon what is still in flight: queued requests never start, running ones have their
    // result dropped. Nobody is left to answer.
    for (auto& [k, e] : inflight_) {
        e.req->claim_final();
        if (e.req->job)
            e.req->job->request_stop("client disconnected");
    }
    inflight_.clear();
    inflight_bytes_ = 0;
    out_.clear();
    unsent_ = 0;
    channel_->shut(); // no worker writes to this fd after this, nor to whatever reuses its number
    boost::system::error_code ec;
    sock_.close(ec);
    read_gate_.cancel();
    write_gate_.cancel();
}

void connection::loop_done()
{
    // A handed-over connection lives on in its bound session, which reports its end.
    if (--loops_ == 0 && !bound_)
        agent_.connection_closed(this);
}

void connection::hand_over()
{
    bound_ = true;
    open_ = false;
    reading_ = false;
    read_gate_.cancel();
    channel_->shut();
    boost::system::error_code ec;
    unique_fd fd(sock_.release(ec));
    auto fn = std::move(handover_);
    handover_ = nullptr;
    if (ec) {
        bound_ = false; // nothing to hand over: the connection just closes
        return;
    }
    fn(std::move(fd), std::move(reader_));
    partial_deadline_.cancel();
}

} // namespace nsagent
