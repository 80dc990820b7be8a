// Request parsing and frame formatting for the NDJSON protocol.
#include "nsagent/protocol.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <limits>

namespace json = boost::json;

namespace nsagent {
namespace {

op_error bad(std::string msg)
{
    return agent_failure(errc::bad_request, std::move(msg));
}

bool valid_id(const json::value& v)
{
    return v.is_int64() || v.is_uint64() || v.is_string();
}

// A JSON integer that fits `T` and is within [lo, hi].
template <class T>
std::optional<T> integer(const json::value& v, T lo, T hi)
{
    if (v.is_int64()) {
        auto x = v.get_int64();
        if (x >= static_cast<std::int64_t>(lo) && static_cast<std::uint64_t>(x) <= static_cast<std::uint64_t>(hi))
            return static_cast<T>(x);
    } else if (v.is_uint64()) {
        auto x = v.get_uint64();
        if (x >= static_cast<std::uint64_t>(lo) && x <= static_cast<std::uint64_t>(hi))
            return static_cast<T>(x);
    }
    return std::nullopt;
}

} // namespace

json::value u64_to_json(std::uint64_t v)
{
    return json::string(std::to_string(v));
}

std::optional<std::uint64_t> u64_from_json(const json::value& v)
{
    if (v.is_uint64())
        return v.get_uint64();
    if (v.is_int64())
        return v.get_int64() >= 0 ? std::optional<std::uint64_t>(v.get_int64()) : std::nullopt;
    if (v.is_string()) {
        auto s = v.get_string();
        std::uint64_t out = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        if (ec == std::errc() && p == s.data() + s.size() && !s.empty())
            return out;
    }
    return std::nullopt;
}

boost::system::result<selector, op_error> selector_from_json(const json::value& v)
{
    if (!v.is_object())
        return bad("\"ns\" must be an object such as {\"type\":\"net\",\"name\":\"blue\"}");
    const auto& o = v.get_object();
    selector s;
    if (auto* t = o.if_contains("type")) {
        auto* ts = t->if_string();
        auto type = ts ? ns_type_from_string(*ts) : std::nullopt;
        if (!type)
            return bad("\"ns.type\" must be \"net\" or \"mnt\"");
        s.type = type;
    }
    int forms = 0;
    if (auto* n = o.if_contains("name")) {
        ++forms;
        auto* ns = n->if_string();
        if (!ns || ns->empty() || *ns == "." || *ns == ".." || ns->find('/') != json::string::npos ||
            ns->find('\0') != json::string::npos)
            return bad("\"ns.name\" must be a plain /run/netns entry name");
        s.by = selector::form::name;
        s.text = std::string(*ns);
    }
    if (auto* p = o.if_contains("pid")) {
        ++forms;
        auto pid = integer<int>(*p, 1, std::numeric_limits<int>::max());
        if (!pid)
            return bad("\"ns.pid\" must be a positive integer");
        s.by = selector::form::pid;
        s.number = *pid;
    }
    if (auto* p = o.if_contains("path")) {
        ++forms;
        auto* ps = p->if_string();
        if (!ps || ps->empty() || ps->front() != '/' || ps->find('\0') != json::string::npos)
            return bad("\"ns.path\" must be an absolute path");
        s.by = selector::form::path;
        s.text = std::string(*ps);
    }
    if (auto* f = o.if_contains("fd")) {
        ++forms;
        auto idx = integer<int>(*f, 0, 255);
        if (!idx)
            return bad("\"ns.fd\" must be the index of a passed fd (0 for the first)");
        s.by = selector::form::fd;
        s.number = *idx;
    }
    if (forms != 1)
        return bad("\"ns\" needs exactly one of \"name\", \"pid\", \"path\" or \"fd\"");
    if (auto* i = o.if_contains("ino")) {
        auto ino = u64_from_json(*i);
        if (!ino)
            return bad("\"ns.ino\" must be an inode number (integer or decimal string)");
        s.ino = ino;
    }
    if (s.by == selector::form::name) {
        if (s.type && *s.type != ns_type::net)
            return bad("a name selects /run/netns/NAME, which holds network namespaces only; "
                       "select a mount namespace by pid or path");
        s.type = ns_type::net;
    }
    if (s.by == selector::form::pid && !s.type)
        return bad("a pid selector needs \"type\": \"net\" or \"mnt\"");
    return s;
}

json::value to_json(const selector& s)
{
    json::object o;
    if (s.type)
        o["type"] = to_string(*s.type);
    switch (s.by) {
    case selector::form::name: o["name"] = s.text; break;
    case selector::form::pid: o["pid"] = s.number; break;
    case selector::form::path: o["path"] = s.text; break;
    case selector::form::fd: o["fd"] = s.number; break;
    }
    if (s.ino)
        o["ino"] = u64_to_json(*s.ino);
    return o;
}

boost::system::result<request, op_error> parse_request(std::string_view line, json::value& id)
{
    id = nullptr;
    boost::system::error_code ec;
    // The parse tree lives only for this call: a bump allocator over a stack buffer (falling
    // back to the heap for long lines) instead of one malloc and free per node. What the request
    // keeps (id, args, the selector) is copied out to the default resource below.
    unsigned char scratch[4096];
    json::monotonic_resource mr(scratch, sizeof scratch);
    json::value v = json::parse(line, ec, &mr);
    if (ec)
        return bad("not valid JSON: " + ec.message());
    if (!v.is_object())
        return bad("a request must be a JSON object");
    auto& o = v.get_object();

    request r;
    auto* idv = o.if_contains("id");
    if (!idv)
        return bad("missing \"id\"");
    if (!valid_id(*idv))
        return bad("\"id\" must be an integer or a string");
    id = json::value(*idv, json::storage_ptr());
    r.id = id;

    auto* op = o.if_contains("op");
    if (!op)
        return bad("missing \"op\"");
    if (!op->is_string() || op->get_string().empty())
        return bad("\"op\" must be a non-empty string");
    r.op = std::string(op->get_string());

    if (auto* a = o.if_contains("args"); a && !a->is_null()) {
        if (!a->is_object())
            return bad("\"args\" must be an object");
        r.args = json::object(a->get_object(), json::storage_ptr());
    }
    if (auto* t = o.if_contains("timeout_ms"); t && !t->is_null()) {
        auto ms = integer<std::uint32_t>(*t, 1, std::numeric_limits<std::uint32_t>::max());
        if (!ms)
            return bad("\"timeout_ms\" must be a positive integer");
        r.timeout_ms = ms;
    }
    if (auto* f = o.if_contains("fds"); f && !f->is_null()) {
        auto n = integer<std::uint32_t>(*f, 0, 255);
        if (!n)
            return bad("\"fds\" must be an integer from 0 to 255");
        r.fds = *n;
    }
    if (auto* n = o.if_contains("ns"); n && !n->is_null()) {
        auto s = selector_from_json(*n);
        if (!s)
            return s.error();
        r.ns = std::move(*s);
    }
    return r;
}

std::string to_line(const json::value& v)
{
    return json::serialize(v);
}

std::string ok_frame(const json::value& id, const json::value& result, std::size_t fds)
{
    // Spelled out rather than built as an object: that would deep-copy the result (a link or
    // socket table) only to serialise it once. Same keys, same order.
    std::string s = "{\"id\":";
    s += json::serialize(id);
    s += ",\"ok\":true,\"result\":";
    s += json::serialize(result);
    if (fds) {
        s += ",\"fds\":";
        s += std::to_string(fds);
    }
    s += "}\n";
    return s;
}

std::string error_frame(const json::value& id, const op_error& e)
{
    json::object err;
    err["code"] = to_string(wire_code(e.code));
    err["message"] = e.message;
    if (wire_code(e.code) == errc::os_error) {
        err["errno"] = e.code.value();
        err["errno_name"] = errno_name(e.code.value());
    }
    json::object o;
    o["id"] = id;
    o["ok"] = false;
    o["error"] = std::move(err);
    std::string s = json::serialize(o);
    s += '\n';
    return s;
}

std::string event_frame(const json::value& id, std::string_view kind, json::object fields, std::size_t fds)
{
    json::object o;
    o["id"] = id;
    o["event"] = kind;
    for (auto& kv : fields)
        o[kv.key()] = std::move(kv.value());
    if (fds)
        o["fds"] = fds;
    std::string s = json::serialize(o);
    s += '\n';
    return s;
}

} // namespace nsagent
