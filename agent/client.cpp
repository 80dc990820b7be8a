// Blocking protocol client.
#include "nsagent/client.hpp"

#include "nsagent/scm_rights.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace json = boost::json;
using boost::system::error_code;
using boost::system::system_category;

namespace nsagent {

std::string default_socket_path()
{
    if (const char* p = std::getenv("NSAGENT_SOCKET"); p && *p)
        return p;
    return "/run/nsagent/nsagent.sock";
}

bool frame::ok() const
{
    auto* v = value.if_contains("ok");
    return v && v->is_bool() && v->get_bool();
}

std::string frame::error_code() const
{
    if (auto* e = value.if_contains("error"); e && e->is_object())
        if (auto* c = e->get_object().if_contains("code"); c && c->is_string())
            return std::string(c->get_string());
    return {};
}

std::string frame::error_message() const
{
    if (auto* e = value.if_contains("error"); e && e->is_object())
        if (auto* c = e->get_object().if_contains("message"); c && c->is_string())
            return std::string(c->get_string());
    return {};
}

boost::system::result<client> client::connect(const std::string& path)
{
    sockaddr_un addr{};
    if (path.size() >= sizeof addr.sun_path)
        return error_code(ENAMETOOLONG, system_category());
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s)
        return error_code(errno, system_category());
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
        return error_code(errno, system_category());
    return client(std::move(s));
}

error_code client::send_line(std::string_view line, std::span<const int> fds)
{
    std::string buf;
    buf.reserve(line.size() + 1);
    buf.append(line);
    buf.push_back('\n');
    std::string_view rest = buf;
    while (!rest.empty()) {
        error_code ec;
        auto n = send_with_fds(sock_.get(), rest, fds, 0, ec);
        if (ec)
            return ec;
        fds = {}; // the fds went with the first byte
        rest.remove_prefix(n);
    }
    return {};
}

boost::system::result<frame> client::next_frame(int timeout_ms)
{
    if (!kept_.empty()) {
        frame f = std::move(kept_.front());
        kept_.pop_front();
        return f;
    }
    using clock = std::chrono::steady_clock;
    auto deadline = clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        frame_reader::line line;
        auto st = reader_.next(line);
        if (st == frame_reader::status::line) {
            error_code ec;
            json::value v = json::parse(line.text, ec);
            if (ec || !v.is_object())
                return error_code(EPROTO, system_category());
            return frame{std::move(v.get_object()), std::move(line.fds)};
        }
        if (st == frame_reader::status::too_large)
            return error_code(EMSGSIZE, system_category());

        if (timeout_ms >= 0) {
            // Rounded up: a remainder under 1 ms must still poll, not time out unread.
            auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
            if (left <= 0)
                return error_code(ETIMEDOUT, system_category());
            pollfd p{sock_.get(), POLLIN, 0};
            int r = ::poll(&p, 1, static_cast<int>(left));
            if (r < 0 && errno != EINTR)
                return error_code(errno, system_category());
            if (r <= 0)
                continue;
        }
        error_code ec;
        auto n = reader_.receive(sock_.get(), 0, ec);
        if (ec)
            return ec;
        if (n == 0)
            return error_code(ECONNRESET, system_category());
    }
}

boost::system::result<frame> client::call(json::object req, std::span<const int> fds, int timeout_ms,
                                          std::vector<frame>* events)
{
    if (!req.contains("id"))
        req["id"] = next_id_++;
    json::value id = req["id"];
    if (!fds.empty())
        req["fds"] = fds.size();
    if (auto ec = send_line(json::serialize(req), fds))
        return ec;
    std::deque<frame> others;
    for (;;) {
        auto f = next_frame(timeout_ms);
        if (!f) {
            for (auto& o : others)
                kept_.push_back(std::move(o));
            return f.error();
        }
        auto* fid = f->value.if_contains("id");
        if (fid && *fid == id) {
            if (f->is_final()) {
                for (auto& o : others)
                    kept_.push_back(std::move(o));
                return std::move(*f);
            }
            if (events)
                events->push_back(std::move(*f));
            continue;
        }
        others.push_back(std::move(*f));
    }
}

} // namespace nsagent
