// Config file loading. Unknown keys are errors: a typo must not silently keep a default.
#include "config.hpp"
#include "packet_engine.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <grp.h>
#include <pwd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

namespace json = boost::json;

namespace nsagent {
namespace {

using setter = std::function<std::string(config&, const json::value&)>;

template <class T>
setter number(T config::*field, std::uint64_t lo, std::uint64_t hi)
{
    return [=](config& c, const json::value& v) -> std::string {
        std::uint64_t x = 0;
        if (v.is_int64() && v.get_int64() >= 0)
            x = static_cast<std::uint64_t>(v.get_int64());
        else if (v.is_uint64())
            x = v.get_uint64();
        else
            return "must be a non-negative integer";
        if (x < lo || x > hi)
            return "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
        c.*field = static_cast<T>(x);
        return {};
    };
}

std::string parse_policy(config& c, const json::value& v)
{
    if (!v.is_array())
        return "must be an array of rules";
    c.policy.clear();
    int index = 0;
    for (auto& r : v.get_array()) {
        std::string where = "rule " + std::to_string(index++) + ": ";
        if (!r.is_object())
            return where + "must be an object";
        policy_rule rule;
        rule.text = json::serialize(r);
        for (auto& kv : r.get_object()) {
            auto k = kv.key();
            auto& val = kv.value();
            if (k == "uid" || k == "gid") {
                if (!val.is_int64() || val.get_int64() < 0 || val.get_int64() > 0xfffffffeLL)
                    return where + "\"" + std::string(k) + "\" must be a numeric id";
                (k == "uid" ? rule.uid : rule.gid) = static_cast<std::uint32_t>(val.get_int64());
            } else if (k == "user" || k == "group") {
                if (!val.is_string())
                    return where + "\"" + std::string(k) + "\" must be a name";
                std::string name(val.get_string());
                if (k == "user") {
                    passwd* pw = ::getpwnam(name.c_str());
                    if (!pw)
                        return where + "no user named \"" + name + "\"";
                    rule.uid = pw->pw_uid;
                } else {
                    group* gr = ::getgrnam(name.c_str());
                    if (!gr)
                        return where + "no group named \"" + name + "\"";
                    rule.gid = gr->gr_gid;
                }
            } else if (k == "allow") {
                if (!val.is_array())
                    return where + "\"allow\" must be an array of op classes";
                for (auto& a : val.get_array()) {
                    static const std::set<std::string> classes = {"read", "write", "fd", "capture"};
                    if (!a.is_string() || !classes.contains(std::string(a.get_string())))
                        return where + "\"allow\" takes read, write, fd and capture";
                    rule.allow.insert(std::string(a.get_string()));
                }
            } else if (k == "namespaces") {
                if (!val.is_array())
                    return where + "\"namespaces\" must be an array of patterns";
                for (auto& p : val.get_array()) {
                    if (!p.is_string())
                        return where + "\"namespaces\" takes \"name:GLOB\" and \"owner:self\"";
                    std::string s(p.get_string());
                    if (s.rfind("name:", 0) != 0 && s != "owner:self")
                        return where + "\"namespaces\" takes \"name:GLOB\" and \"owner:self\", not \"" + s + "\"";
                    rule.namespaces.push_back(s);
                }
            } else if (k == "host") {
                if (!val.is_bool())
                    return where + "\"host\" must be true or false";
                rule.host = val.get_bool();
            } else if (k == "fs_identity") {
                if (!val.is_string() || (val.get_string() != "client" && val.get_string() != "agent"))
                    return where + "\"fs_identity\" is \"client\" (the default) or \"agent\"";
                rule.fs_as_agent = val.get_string() == "agent";
            } else {
                return where + "unknown key \"" + std::string(k) + "\"";
            }
        }
        if (!rule.uid && !rule.gid)
            return where + "needs \"uid\", \"user\", \"gid\" or \"group\"";
        c.policy.push_back(std::move(rule));
    }
    return {};
}

const std::map<std::string, setter, std::less<>>& keys()
{
    static const std::map<std::string, setter, std::less<>> k = {
        {"socket",
         [](config& c, const json::value& v) -> std::string {
             if (!v.is_string() || v.get_string().empty() || v.get_string().front() != '/')
                 return "must be an absolute path";
             c.socket_path = std::string(v.get_string());
             return {};
         }},
        {"metrics_listen",
         [](config& c, const json::value& v) -> std::string {
             if (!v.is_string())
                 return "must be host:port, e.g. \"127.0.0.1:9477\" (empty: off)";
             c.metrics_listen = std::string(v.get_string());
             return {};
         }},
        {"policy", [](config& c, const json::value& v) -> std::string { return parse_policy(c, v); }},
        {"audit",
         [](config& c, const json::value& v) -> std::string {
             if (!v.is_string() || !(v.get_string() == "syslog" || v.get_string() == "off" ||
                                     (!v.get_string().empty() && v.get_string().front() == '/')))
                 return "must be \"syslog\", \"off\" or an absolute file path";
             c.audit = std::string(v.get_string());
             return {};
         }},
        {"pkt_engine",
         [](config& c, const json::value& v) -> std::string {
             if (!v.is_string() || !(v.get_string() == "cpu" || v.get_string() == "cuda" || v.get_string() == "auto"))
                 return "must be \"cpu\", \"cuda\" or \"auto\"";
             c.pkt_engine = std::string(v.get_string());
             return {};
         }},
        {"rss_key",
         [](config& c, const json::value& v) -> std::string {
             if (!v.is_string() || !pkt::parse_rss_key(v.get_string()))
                 return "must be 80 hex digits (40 bytes), \"default\" or \"symmetric\"";
             c.rss_key = std::string(v.get_string());
             return {};
         }},
        {"max_streams", number(&config::max_streams, 1, 1024)},
        {"gpu_min_batch", number(&config::gpu_min_batch, 1, 1u << 24)},
        {"pkt_batch", number(&config::pkt_batch, 1, 1u << 24)},
        {"queue_depth", number(&config::queue_depth, 1, 1 << 20)},
        {"default_timeout_ms", number(&config::default_timeout_ms, 1, 24u * 3600 * 1000)},
        {"max_workers", number(&config::max_workers, 1, 1 << 20)},
        {"idle_timeout_s", number(&config::idle_timeout_s, 1, 7u * 24 * 3600)},
        {"max_request_bytes", number(&config::max_request_bytes, 256, std::size_t{256} << 20)},
        {"max_inflight_per_connection", number(&config::max_inflight_per_connection, 1, 1 << 20)},
        {"max_unsent_bytes", number(&config::max_unsent_bytes, 4096, std::size_t{1} << 32)},
        {"max_inflight_bytes", number(&config::max_inflight_bytes, 4096, std::size_t{1} << 32)},
        {"drain_timeout_ms", number(&config::drain_timeout_ms, 0, 600000)},
        {"max_connections", number(&config::max_connections, 1, 1 << 20)},
        {"partial_line_timeout_ms", number(&config::partial_line_timeout_ms, 1, 24u * 3600 * 1000)},
        {"worker_stack_kib", number(&config::worker_stack_kib, 64, 65536)},
        {"worker_spin_us", number(&config::worker_spin_us, 0, 100000)},
        {"fs_max_read_bytes", number(&config::fs_max_read_bytes, 1, std::size_t{64} << 20)},
    };
    return k;
}

} // namespace

boost::system::result<config, std::string> load_config(const std::string& path, bool must_exist)
{
    auto fail = [](std::string msg) {
        return boost::system::result<config, std::string>(boost::system::in_place_error, std::move(msg));
    };
    config c;
    std::ifstream in(path);
    if (!in) {
        if (errno == ENOENT && !must_exist)
            return c;
        return fail(path + ": cannot read: " + std::strerror(errno));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    boost::system::error_code ec;
    json::value v = json::parse(ss.str(), ec);
    if (ec)
        return fail(path + ": not valid JSON: " + ec.message());
    if (!v.is_object())
        return fail(path + ": must be a JSON object");
    for (auto& kv : v.get_object()) {
        auto it = keys().find(kv.key());
        if (it == keys().end())
            return fail(path + ": unknown key \"" + std::string(kv.key()) + "\"");
        if (auto err = it->second(c, kv.value()); !err.empty())
            return fail(path + ": \"" + std::string(kv.key()) + "\" " + err);
    }
    return c;
}

} // namespace nsagent
