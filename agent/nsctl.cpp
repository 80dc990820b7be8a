// nsctl: the operator's command line for nsagentd. Human tables by default, raw JSON with --json.
#include "forwarder.hpp"
#include "packet_commands.hpp"
#include "text_format.hpp"

#include "nsagent/client.hpp"
#include "nsagent/protocol.hpp"
#include "nsagent/selector.hpp"

#include <CLI/CLI.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <poll.h>
#include <termios.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <cstdio>
#include <map>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace json = boost::json;
namespace base64 = boost::beast::detail::base64;
using namespace nsagent;

namespace {

// Exit statuses, documented in --help.
constexpr int exit_ok = 0, exit_op_error = 1, exit_usage = 2, exit_unreachable = 3;

struct options {
    std::string socket = default_socket_path();
    bool json_out = false;
    int timeout_ms = 30000;
    std::string type;
};

struct usage_error {
    std::string what;
};

// Prints rows as aligned columns, the first row being the header.
void print_table(const std::vector<std::vector<std::string>>& rows)
{
    std::cout << format_table(rows);
}

std::string text(const json::value& v)
{
    if (v.is_string())
        return std::string(v.get_string());
    if (v.is_null())
        return "-";
    return json::serialize(v);
}

// A millisecond figure from agent.stats, shortest form ("0.25").
std::string ms(const json::value& v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v.to_number<double>());
    return buf;
}

std::string at(const json::object& o, std::string_view k)
{
    auto* v = o.if_contains(k);
    return v ? text(*v) : "-";
}

class session {
public:
    explicit session(const options& o) : opt_(o) {}

    // Runs one op and returns its result, or exits the process with the right status.
    json::value call(std::string op, std::optional<selector> ns = {}, json::object args = {})
    {
        auto f = exchange(op, ns, std::move(args));
        if (!f.ok())
            fail(f);
        return f.value.at("result");
    }

    frame exchange(const std::string& op, const std::optional<selector>& ns, json::object args)
    {
        if (!cl_) {
            auto c = client::connect(opt_.socket);
            if (!c) {
                std::fprintf(stderr, "nsctl: cannot reach the agent at %s: %s\n", opt_.socket.c_str(),
                             c.error().message().c_str());
                std::exit(exit_unreachable);
            }
            cl_.emplace(std::move(*c));
        }
        json::object req{{"op", op}};
        if (ns) {
            auto named = to_json(*ns);
            if (!bound_ || *bound_ != named) // a bound connection takes no "ns"
                req["ns"] = std::move(named);
        }
        if (!args.empty())
            req["args"] = std::move(args);
        req["timeout_ms"] = opt_.timeout_ms;
        auto f = cl_->call(std::move(req), {}, opt_.timeout_ms + 5000);
        if (!f) {
            std::fprintf(stderr, "nsctl: lost the agent at %s during %s: %s\n", opt_.socket.c_str(), op.c_str(),
                         f.error().message().c_str());
            std::exit(exit_unreachable);
        }
        return std::move(*f);
    }

    [[noreturn]] void fail(const frame& f)
    {
        if (opt_.json_out)
            std::cout << json::serialize(f.value) << '\n';
        std::fprintf(stderr, "nsctl: %s: %s\n", f.error_code().c_str(), f.error_message().c_str());
        std::exit(exit_op_error);
    }

    // As call(), but returns the whole success frame with its fds.
    frame call_with_fds(std::string op, std::optional<selector> ns = {}, json::object args = {})
    {
        auto f = exchange(op, ns, std::move(args));
        if (!f.ok())
            fail(f);
        return f;
    }

    // For a command that makes many calls to one namespace: binds the connection to it
    // (agent.bind), so that later calls naming it are served by its worker directly, with no
    // hand-off per call. If the bind fails, calls go multiplexed and report errors themselves.
    void bind(const selector& ns)
    {
        if (exchange("agent.bind", ns, {}).ok())
            bound_ = to_json(ns);
    }

    // As call(), but a failed op is returned, not fatal.
    frame call_raw(std::string op, std::optional<selector> ns = {}, json::object args = {})
    {
        return exchange(op, ns, std::move(args));
    }

    bool raw(const json::value& result)
    {
        if (opt_.json_out)
            std::cout << json::serialize(result) << '\n';
        return opt_.json_out;
    }

private:
    const options& opt_;
    std::optional<client> cl_;
    std::optional<json::value> bound_; // the selector this connection is bound to (agent.bind)
};

selector ns_arg(const std::string& arg, const options& o)
{
    std::optional<ns_type> type;
    if (!o.type.empty()) {
        type = ns_type_from_string(o.type);
        if (!type)
            throw usage_error{"--type must be net or mnt"};
    } else if (arg.rfind("pid:", 0) == 0) {
        type = ns_type::net; // the common case; --type mnt for the mount namespace
    }
    std::string err;
    auto s = parse_selector_arg(arg, type, err);
    if (!s)
        throw usage_error{err};
    return *s;
}

std::string joined(const json::value& arr, const char* sep);

void cmd_hello(session& s)
{
    auto r = s.call("agent.hello");
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    std::cout << "protocol " << at(o, "protocol") << ", nsagentd " << at(o, "version") << "\n\n";
    std::vector<std::vector<std::string>> rows{{"OP", "CLASS"}};
    for (auto& op : o.at("ops").as_array())
        rows.push_back({at(op.as_object(), "name"), at(op.as_object(), "class")});
    print_table(rows);
}

void cmd_ping(session& s)
{
    auto r = s.call("agent.ping");
    if (!s.raw(r))
        std::cout << "pong\n";
}

void cmd_stats(session& s)
{
    auto r = s.call("agent.stats");
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    std::cout << "threads " << at(o, "threads") << " (base " << at(o, "base_threads") << " + "
              << o.at("workers").as_array().size() << " workers + " << at(o, "streams") << " captures/analyses; "
              << at(o, "wedged") << " wedged, " << at(o, "retiring") << " retiring)  connections " << at(o, "connections")
              << "  in flight " << at(o, "inflight") << "  requests " << at(o, "requests") << "\n";
    if (auto* gpu = o.if_contains("gpu"))
        std::cout << "gpu: " << (gpu->at("ready").as_bool() ? "ready, " : "") << text(gpu->at("status")) << " ("
                  << at(gpu->as_object(), "batches") << " batches, " << at(gpu->as_object(), "packets") << " packets)\n";
    auto& ws = o.at("workers").as_array();
    if (ws.empty())
        return;
    std::cout << '\n';
    std::vector<std::vector<std::string>> rows{
        {"NS", "TID", "STATE", "QUEUE", "MAXQ", "OPS", "ERRORS", "WAIT p50/p99", "EXEC p50/p99", "IDLE"}};
    for (auto& w : ws) {
        auto& wo = w.as_object();
        auto& ns = wo.at("ns").as_object();
        auto& qw = wo.at("queue_wait_ms").as_object();
        auto& ex = wo.at("exec_ms").as_object();
        rows.push_back({at(ns, "type") + ":[" + at(ns, "ino") + "]", at(wo, "tid"), at(wo, "state"),
                        at(wo, "queue_depth"), at(wo, "max_queue_depth"), at(wo, "ops"), at(wo, "errors"),
                        "<=" + ms(qw.at("p50")) + "/" + ms(qw.at("p99")) + "ms",
                        "<=" + ms(ex.at("p50")) + "/" + ms(ex.at("p99")) + "ms", at(wo, "idle_ms") + "ms"});
    }
    print_table(rows);
}

// ---- doctor ---------------------------------------------------------------------------

// The inode of /proc/PID/task/TID/ns/TYPE (or /proc/PID/ns/TYPE with tid 0); 0 if unreadable.
std::uint64_t ns_inode(long pid, long tid, const char* type)
{
    std::string path = "/proc/" + std::to_string(pid) + (tid ? "/task/" + std::to_string(tid) : std::string()) + "/ns/" + type;
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_ino) : 0;
}

// Threads inherit namespaces, and a thread left in the wrong one would do the next request's
// work there: every task of the agent must be in the agent's own namespaces, or be a live
// worker in its target (the other type staying the agent's). Exit 0 if so, 1 if not.
int cmd_doctor(session& s)
{
    auto st = s.call("agent.stats").as_object();
    long pid = std::stol(at(st, "pid"));
    std::map<long, std::pair<std::string, std::uint64_t>> workers; // tid -> (type, ino)
    for (auto& w : st.at("workers").as_array()) {
        auto& ns = w.as_object().at("ns").as_object();
        workers[std::stol(at(w.as_object(), "tid"))] = {at(ns, "type"), std::stoull(at(ns, "ino"))};
    }
    std::uint64_t own_net = ns_inode(pid, 0, "net"), own_mnt = ns_inode(pid, 0, "mnt");
    std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
    DIR* d = ::opendir(task_dir.c_str());
    if (!d || !own_net || !own_mnt) {
        if (d)
            ::closedir(d);
        std::fprintf(stderr, "nsctl: doctor: cannot read %s (%s); run it as root or as the agent's user\n",
                     task_dir.c_str(), std::strerror(errno));
        return exit_op_error;
    }
    std::vector<long> tids;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.')
            tids.push_back(std::stol(e->d_name));
    ::closedir(d);
    std::sort(tids.begin(), tids.end());

    int problems = 0;
    json::array out;
    std::vector<std::vector<std::string>> rows{{"TID", "ROLE", "NET", "MNT", "VERDICT"}};
    for (long tid : tids) {
        auto net = ns_inode(pid, tid, "net"), mnt = ns_inode(pid, tid, "mnt");
        if (!net && !mnt)
            continue; // exited while we looked
        std::string role = "agent", verdict = "ok";
        std::uint64_t want_net = own_net, want_mnt = own_mnt;
        if (auto it = workers.find(tid); it != workers.end()) {
            role = "worker " + it->second.first + ":[" + std::to_string(it->second.second) + "]";
            (it->second.first == "net" ? want_net : want_mnt) = it->second.second;
        }
        if (net != want_net || mnt != want_mnt) {
            ++problems;
            verdict = "WRONG: should be net:[" + std::to_string(want_net) + "] mnt:[" + std::to_string(want_mnt) + "]";
        }
        rows.push_back({std::to_string(tid), role, "net:[" + std::to_string(net) + "]", "mnt:[" + std::to_string(mnt) + "]",
                        verdict});
        out.push_back(json::object{{"tid", tid}, {"role", role}, {"net", std::to_string(net)},
                                   {"mnt", std::to_string(mnt)}, {"ok", verdict == "ok"}});
    }
    if (!s.raw(json::object{{"tasks", out}, {"problems", problems}})) {
        print_table(rows);
        std::cout << tids.size() << " tasks, " << workers.size() << " live workers, " << problems
                  << (problems == 1 ? " problem" : " problems") << "\n";
    }
    return problems ? exit_op_error : exit_ok;
}

// ---- top ------------------------------------------------------------------------------

volatile std::sig_atomic_t top_stop = 0;

// utime + stime of one thread, in clock ticks, from /proc/PID/task/TID/stat.
std::optional<unsigned long long> thread_ticks(long pid, long tid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
    std::string line;
    if (!std::getline(in, line))
        return std::nullopt;
    auto close = line.rfind(')'); // comm may hold spaces; fields resume after its ')'
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14)
            utime = std::stoull(field);
        if (i == 15)
            stime = std::stoull(field);
    }
    return utime + stime;
}

struct top_sample {
    json::object stats;
    std::map<long, unsigned long long> ticks; // tid -> cpu ticks
    std::map<long, std::int64_t> ops;         // tid -> ops
    std::chrono::steady_clock::time_point at;
};

top_sample take_sample(session& s)
{
    top_sample t;
    t.stats = s.call("agent.stats").as_object();
    t.at = std::chrono::steady_clock::now();
    long pid = t.stats.at("pid").to_number<long>();
    for (auto& w : t.stats.at("workers").as_array()) {
        long tid = w.at("tid").to_number<long>();
        if (auto k = thread_ticks(pid, tid))
            t.ticks[tid] = *k;
        t.ops[tid] = w.at("ops").to_number<std::int64_t>();
    }
    return t;
}

std::string top_frame(const top_sample& a, const top_sample& b)
{
    std::ostringstream out;
    auto& st = b.stats;
    double dt = std::chrono::duration<double>(b.at - a.at).count();
    long pid = st.at("pid").to_number<long>();
    std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    out << "nsagentd pid " << pid << "  threads " << at(st, "threads") << " (base " << at(st, "base_threads") << " + "
        << st.at("workers").as_array().size() << " workers, " << at(st, "wedged") << " wedged)  connections "
        << at(st, "connections") << "  RSS " << human_bytes(static_cast<double>(resident * ::sysconf(_SC_PAGESIZE))) << "\n\n";
    std::vector<std::vector<std::string>> rows{{"NS", "TID", "OPS/S", "WAIT p50/p99", "EXEC p50/p99", "QUEUE", "CPU%"}};
    double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    for (auto& w : st.at("workers").as_array()) {
        auto& wo = w.as_object();
        long tid = wo.at("tid").to_number<long>();
        double ops = 0, cpu = 0;
        if (a.ops.contains(tid) && dt > 0)
            ops = static_cast<double>(b.ops.at(tid) - a.ops.at(tid)) / dt;
        if (a.ticks.contains(tid) && b.ticks.contains(tid) && dt > 0)
            cpu = static_cast<double>(b.ticks.at(tid) - a.ticks.at(tid)) / hz / dt * 100;
        char o[32], c[32];
        std::snprintf(o, sizeof o, "%.1f", ops);
        std::snprintf(c, sizeof c, "%.1f", cpu);
        auto& ns = wo.at("ns").as_object();
        rows.push_back({at(ns, "type") + ":[" + at(ns, "ino") + "]", at(wo, "tid"), o,
                        ms(wo.at("queue_wait_ms").at("p50")) + "/" + ms(wo.at("queue_wait_ms").at("p99")) + "ms",
                        ms(wo.at("exec_ms").at("p50")) + "/" + ms(wo.at("exec_ms").at("p99")) + "ms",
                        at(wo, "queue_depth"), c});
    }
    std::streambuf* old = std::cout.rdbuf(out.rdbuf());
    print_table(rows);
    std::cout.rdbuf(old);
    return out.str();
}

// Like top -H for the agent's workers. --once prints one frame (rates over half a second).
int cmd_top(session& s, bool once)
{
    if (once) {
        auto a = take_sample(s);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        std::cout << top_frame(a, take_sample(s));
        return exit_ok;
    }
    termios saved{};
    bool raw = ::isatty(0) && ::tcgetattr(0, &saved) == 0;
    if (raw) {
        termios t = saved;
        t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
        ::tcsetattr(0, TCSANOW, &t);
    }
    std::signal(SIGINT, [](int) { top_stop = 1; });
    auto prev = take_sample(s);
    while (!top_stop) {
        pollfd p{0, POLLIN, 0};
        int r = ::poll(&p, 1, 1000);
        if (r > 0) {
            char ch = 0;
            if (::read(0, &ch, 1) <= 0 || ch == 'q' || ch == 'Q')
                break;
        }
        if (top_stop)
            break;
        auto next = take_sample(s);
        std::cout << "\x1b[H\x1b[2J" << top_frame(prev, next) << "\n(q or Ctrl-C to quit)" << std::flush;
        prev = std::move(next);
    }
    if (raw)
        ::tcsetattr(0, TCSANOW, &saved);
    std::cout << '\n';
    return exit_ok;
}

void cmd_metrics(session& s)
{
    auto r = s.call("agent.metrics");
    if (!s.raw(r))
        std::cout << text(r.as_object().at("text"));
}

void cmd_ls(session& s)
{
    auto r = s.call("ns.list");
    if (s.raw(r))
        return;
    std::vector<std::vector<std::string>> rows{{"TYPE", "INODE", "NAMES", "PIDS", "WORKER", "PINNED-BY"}};
    for (auto& e : r.as_array()) {
        auto& o = e.as_object();
        std::string names = joined(o.at("names"), ",");
        auto& pids = o.at("pids").as_array();
        std::string p = pids.empty() ? "-" : std::to_string(pids.size()) + " (" + at(o, "first_command") + ")";
        rows.push_back({at(o, "type"), at(o, "ino"), names.empty() ? "-" : names, p,
                        o.contains("worker_tid") ? "tid " + at(o, "worker_tid") : "-", joined(o.at("pinned_by"), ",")});
    }
    print_table(rows);
}

void cmd_ns_ping(session& s, const selector& sel)
{
    auto r = s.call("ns.ping", sel);
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    std::cout << describe(sel) << ": served by worker tid " << at(o, "tid") << " in inode " << at(o, "ino") << "\n";
}

void cmd_ns_release(session& s, const selector& sel)
{
    auto r = s.call("ns.release", sel);
    if (s.raw(r))
        return;
    std::cout << describe(sel) << ": "
              << (r.as_object().at("released").as_bool() ? "worker released" : "no worker held it") << "\n";
}

std::string joined(const json::value& arr, const char* sep)
{
    std::string s;
    for (auto& v : arr.as_array())
        s += (s.empty() ? "" : sep) + text(v);
    return s;
}

// `ip -br link`: name, state, address, flags.
void cmd_net_links(session& s, const selector& sel)
{
    auto r = s.call("net.links", sel);
    if (s.raw(r))
        return;
    std::vector<std::vector<std::string>> rows;
    for (auto& l : r.as_array()) {
        auto& o = l.as_object();
        std::string name = at(o, "ifname");
        if (o.contains("link"))
            name += "@" + at(o, "link");
        else if (o.contains("link_index"))
            name += "@if" + at(o, "link_index");
        rows.push_back({name, at(o, "operstate"), at(o, "address"), "<" + joined(o.at("flags"), ",") + ">"});
    }
    print_table(rows);
}

// `ip -br addr`: name, state, then every address with its prefix length.
void cmd_net_addrs(session& s, const selector& sel)
{
    auto links = s.call("net.links", sel);
    auto r = s.call("net.addrs", sel);
    if (s.raw(r))
        return;
    std::map<std::string, std::string> state;
    for (auto& l : links.as_array())
        state[at(l.as_object(), "ifname")] = at(l.as_object(), "operstate");
    std::vector<std::vector<std::string>> rows;
    for (auto& l : r.as_array()) {
        auto& o = l.as_object();
        std::string addrs;
        for (auto& a : o.at("addr_info").as_array())
            addrs += (addrs.empty() ? "" : " ") + at(a.as_object(), "local") + "/" + at(a.as_object(), "prefixlen");
        rows.push_back({at(o, "ifname"), state[at(o, "ifname")], addrs});
    }
    print_table(rows);
}

// `ip route`: one route a line.
void cmd_net_routes(session& s, const selector& sel, const std::string& family, const std::string& table)
{
    json::object args{{"family", family}};
    if (!table.empty()) {
        if (std::all_of(table.begin(), table.end(), ::isdigit))
            args["table"] = std::stoll(table);
        else
            args["table"] = table;
    }
    auto r = s.call("net.routes", sel, std::move(args));
    if (s.raw(r))
        return;
    for (auto& e : r.as_array()) {
        auto& o = e.as_object();
        std::string line = o.contains("type") ? at(o, "type") + " " : "";
        line += at(o, "dst");
        for (auto [key, word] : {std::pair{"gateway", "via"}, {"dev", "dev"}, {"protocol", "proto"}, {"scope", "scope"},
                                 {"prefsrc", "src"}, {"metric", "metric"}, {"pref", "pref"}, {"table", "table"}})
            if (o.contains(key))
                line += std::string(" ") + word + " " + at(o, key);
        for (auto& f : o.at("flags").as_array())
            line += " " + text(f);
        std::cout << line << '\n';
    }
}

// `sysctl NAME` / `sysctl NAME=VALUE` style.
void cmd_net_sysctl(session& s, const selector& sel, const std::string& name, const std::string& value)
{
    json::object args{{"name", name}};
    if (!value.empty())
        args["value"] = value;
    auto r = s.call(value.empty() ? "net.sysctl_get" : "net.sysctl_set", sel, std::move(args));
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    std::cout << name << " = " << at(o, "value");
    if (o.contains("previous"))
        std::cout << " (was " << at(o, "previous") << ")";
    std::cout << '\n';
}

// Prints what a mutation changed, or the raw result.
void print_change(session& s, const json::value& r)
{
    if (s.raw(r))
        return;
    std::cout << json::serialize(r) << '\n';
}

// `nsctl net set NS IFNAME up|down|mtu N ...`
void cmd_net_set(session& s, const selector& sel, const std::string& ifname, const std::vector<std::string>& what)
{
    json::object args{{"ifname", ifname}};
    for (std::size_t i = 0; i < what.size(); ++i) {
        if (what[i] == "up" || what[i] == "down")
            args["up"] = what[i] == "up";
        else if (what[i] == "mtu" && i + 1 < what.size() && !what[i + 1].empty() &&
                 std::all_of(what[i + 1].begin(), what[i + 1].end(), ::isdigit))
            args["mtu"] = std::stoll(what[++i]);
        else
            throw usage_error{"net set: expected up, down or mtu N, got \"" + what[i] + "\""};
    }
    print_change(s, s.call("net.link_set", sel, std::move(args)));
}

// `nsctl net route add|del NS DST [via GW] [dev IF] [table T]`
json::object route_args(const std::string& dst, const std::vector<std::string>& rest)
{
    json::object args{{"dst", dst}};
    for (std::size_t i = 0; i < rest.size(); i += 2) {
        if (i + 1 >= rest.size())
            throw usage_error{"net route: \"" + rest[i] + "\" needs a value"};
        if (rest[i] == "via")
            args["gateway"] = rest[i + 1];
        else if (rest[i] == "dev")
            args["dev"] = rest[i + 1];
        else if (rest[i] == "table")
            args["table"] = rest[i + 1];
        else
            throw usage_error{"net route: expected via GW, dev IF or table T, got \"" + rest[i] + "\""};
    }
    return args;
}

// `ss -tn`-style: State Recv-Q Send-Q Local Peer.
void cmd_net_sockets(session& s, const selector& sel, const std::string& proto, const std::string& state)
{
    auto r = s.call("net.sockets", sel, {{"proto", proto}, {"state", state}});
    if (s.raw(r))
        return;
    std::vector<std::vector<std::string>> rows{{"State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Inode"}};
    for (auto& e : r.as_array()) {
        auto& o = e.as_object();
        rows.push_back({at(o, "state"), at(o, "recv_q"), at(o, "send_q"), at(o, "local"), at(o, "remote"), at(o, "inode")});
    }
    print_table(rows);
}

// `nsctl net probe NS HOST:PORT`: exit 0 when reachable, 1 when not.
int cmd_net_probe(session& s, const selector& sel, const std::string& address, int count)
{
    auto r = s.call("net.probe", sel, {{"address", address}, {"count", count}});
    bool reachable = r.as_object().at("reachable").as_bool();
    if (!s.raw(r)) {
        std::cout << address << (reachable ? " is reachable" : " is not reachable") << " from " << describe(sel);
        if (reachable) {
            std::string times;
            for (auto& t : r.as_object().at("connect_us").as_array())
                times += (times.empty() ? "" : ", ") + (t.is_null() ? std::string("failed") : text(t) + " us");
            std::cout << " (connect: " << times << ")";
        } else {
            std::cout << " (" << at(r.as_object(), "errno_name") << ")";
        }
        std::cout << '\n';
    }
    return reachable ? exit_ok : exit_op_error;
}

// ---- fs ---------------------------------------------------------------------------------

std::string b64_encode(std::string_view s)
{
    std::string out(base64::encoded_size(s.size()), '\0');
    out.resize(base64::encode(out.data(), s.data(), s.size()));
    return out;
}

std::string b64_decode(std::string_view s)
{
    std::string out(base64::decoded_size(s.size()) + 3, '\0');
    out.resize(base64::decode(out.data(), s.data(), s.size()).first);
    return out;
}

// "drwxr-xr-x" from the type and the octal mode.
std::string mode_string(const std::string& type, const std::string& octal)
{
    unsigned m = static_cast<unsigned>(std::stoul(octal, nullptr, 8));
    std::string s = type == "dir" ? "d" : type == "symlink" ? "l" : type == "fifo" ? "p" : type == "socket" ? "s" :
                    type == "char" ? "c" : type == "block" ? "b" : "-";
    const char* rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; ++i)
        s += (m >> (8 - i) & 1) ? rwx[i] : '-';
    if (m & 04000) s[3] = s[3] == 'x' ? 's' : 'S';
    if (m & 02000) s[6] = s[6] == 'x' ? 's' : 'S';
    if (m & 01000) s[9] = s[9] == 'x' ? 't' : 'T';
    return s;
}

void cmd_fs_ls(session& s, const selector& sel, const std::string& path)
{
    s.bind(sel); // one fs.list per page and one fs.stat per entry, all in one namespace
    std::vector<std::vector<std::string>> rows;
    std::string cursor;
    json::array all;
    for (int page = 0; page < 100000; ++page) {
        json::object args{{"path", path}, {"limit", 1000}};
        if (!cursor.empty())
            args["after"] = cursor;
        auto r = s.call("fs.list", sel, std::move(args));
        for (auto& e : r.as_object().at("entries").as_array())
            all.push_back(e);
        if (!r.as_object().contains("next"))
            break;
        cursor = text(r.as_object().at("next"));
    }
    if (s.raw(json::object{{"entries", all}}))
        return;
    std::string base = path == "/" ? "" : path;
    for (auto& e : all) {
        auto name = at(e.as_object(), "name");
        auto st = s.call("fs.stat", sel, {{"path", base + "/" + name}, {"follow", false}}).as_object();
        std::string mtime = at(st, "mtime").substr(0, 16);
        mtime[10] = ' ';
        std::string shown = name;
        if (at(st, "type") == "symlink")
            shown += " -> " + at(s.call("fs.readlink", sel, {{"path", base + "/" + name}}).as_object(), "target");
        rows.push_back({mode_string(at(st, "type"), at(st, "mode")), at(st, "nlink"), at(st, "uid"), at(st, "gid"),
                        at(st, "size"), mtime, shown});
    }
    print_table(rows);
}

void cmd_fs_stat(session& s, const selector& sel, const std::string& path)
{
    auto r = s.call("fs.stat", sel, {{"path", path}, {"follow", false}});
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    std::cout << "  Path: " << path << "\n  Type: " << at(o, "type") << "  Mode: " << mode_string(at(o, "type"), at(o, "mode"))
              << " (" << at(o, "mode") << ")\n  Size: " << at(o, "size") << "  Links: " << at(o, "nlink")
              << "  Uid: " << at(o, "uid") << "  Gid: " << at(o, "gid") << "\n Inode: " << at(o, "ino")
              << "  Device: " << at(o, "dev") << "  Mount root: " << (o.at("mount_root").as_bool() ? "yes" : "no")
              << "\nModify: " << at(o, "mtime") << "\n";
}

void cmd_fs_cat(session& s, const selector& sel, const std::string& path)
{
    // Streamed in pieces under the agent's fs_max_read_bytes (1 MiB by default).
    constexpr std::int64_t piece = 256 * 1024;
    for (std::int64_t off = 0;; off += piece) {
        auto r = s.call("fs.read", sel, {{"path", path}, {"offset", off}, {"length", piece}}).as_object();
        auto data = b64_decode(r.at("data_b64").as_string());
        std::cout.write(data.data(), static_cast<std::streamsize>(data.size()));
        if (r.at("eof").as_bool() || data.empty())
            break;
    }
    std::cout.flush();
}

void cmd_fs_mounts(session& s, const selector& sel)
{
    auto r = s.call("fs.mounts", sel);
    if (s.raw(r))
        return;
    std::vector<std::vector<std::string>> rows{{"TARGET", "SOURCE", "FSTYPE", "OPTIONS", "PROPAGATION"}};
    for (auto& m : r.as_array()) {
        auto& o = m.as_object();
        std::string source = at(o, "source");
        if (at(o, "root") != "/")
            source += "[" + at(o, "root") + "]";
        rows.push_back({at(o, "mount_point"), source, at(o, "fstype"), at(o, "options"), at(o, "propagation")});
    }
    print_table(rows);
}

void cmd_fs_df(session& s, const selector& sel, const std::string& path)
{
    auto r = s.call("fs.statvfs", sel, {{"path", path}});
    if (s.raw(r))
        return;
    auto& o = r.as_object();
    auto num = [&](const char* k) { return std::stod(at(o, k)); };
    double bs = num("block_size"), size = num("blocks") * bs, avail = num("blocks_avail") * bs,
           used = (num("blocks") - num("blocks_free")) * bs;
    int pct = size > 0 ? static_cast<int>((used * 100 + size - 1) / size) : 0;
    print_table({{"Type", "Size", "Used", "Avail", "Use%", "Path"},
                 {at(o, "fstype"), human_bytes(size), human_bytes(used), human_bytes(avail), std::to_string(pct) + "%", path}});
}

// Copies between a local fd and an fd from fs.open, with progress on a terminal.
bool copy_fd(int from, int to, std::uint64_t total, const char* verb)
{
    std::vector<char> buf(1 << 20);
    std::uint64_t done = 0;
    bool tty = ::isatty(2);
    for (;;) {
        ssize_t n = ::read(from, buf.data(), buf.size());
        if (n < 0)
            return false;
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = ::write(to, buf.data() + off, static_cast<size_t>(n - off));
            if (w <= 0)
                return false;
            off += w;
        }
        done += static_cast<std::uint64_t>(n);
        if (tty && total > (4u << 20))
            std::fprintf(stderr, "\r%s %s / %s", verb, human_bytes(static_cast<double>(done)).c_str(),
                         human_bytes(static_cast<double>(total)).c_str());
    }
    if (tty && total > (4u << 20))
        std::fprintf(stderr, "\n");
    return true;
}

int cmd_fs_get(session& s, const selector& sel, const std::string& path, const std::string& local)
{
    frame f = s.call_with_fds("fs.open", sel, {{"path", path}, {"flags", "r"}});
    unique_fd out(::open(local.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!out) {
        std::fprintf(stderr, "nsctl: %s: %s\n", local.c_str(), std::strerror(errno));
        return exit_op_error;
    }
    auto size = std::stoull(at(f.value.at("result").as_object(), "size"));
    if (!copy_fd(f.fds.at(0).get(), out.get(), size, "get")) {
        std::fprintf(stderr, "nsctl: copy to %s: %s\n", local.c_str(), std::strerror(errno));
        return exit_op_error;
    }
    return exit_ok;
}

int cmd_fs_put(session& s, const selector& sel, const std::string& local, const std::string& path)
{
    unique_fd in(::open(local.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!in || ::fstat(in.get(), &st) < 0) {
        std::fprintf(stderr, "nsctl: %s: %s\n", local.c_str(), std::strerror(errno));
        return exit_op_error;
    }
    constexpr off_t small = 512 * 1024;
    if (st.st_size <= small) {
        // Small: one atomic fs.write, which itself falls back to in place on a mount point.
        std::string data(static_cast<std::size_t>(st.st_size), '\0');
        if (::read(in.get(), data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
            std::fprintf(stderr, "nsctl: read %s: %s\n", local.c_str(), std::strerror(errno));
            return exit_op_error;
        }
        auto r = s.call("fs.write", sel, {{"path", path}, {"data_b64", b64_encode(data)}}).as_object();
        if (!r.at("atomic").as_bool())
            std::fprintf(stderr, "nsctl: %s is a mount point (a bind-mounted file): written in place, not atomically\n",
                         path.c_str());
        return exit_ok;
    }
    // Large: stream into a temporary file through fs.open, then rename it over the target, so a
    // reader sees the old file or the new one, never a half-written one.
    std::string target = path;
    bool in_place = false;
    {
        json::object args{{"path", path}};
        auto probe = s.call_raw("fs.stat", sel, args);
        if (probe.ok() && probe.value.at("result").at("mount_root").as_bool())
            in_place = true;
    }
    auto slash = path.find_last_of('/');
    if (!in_place)
        target = path.substr(0, slash + 1) + ".nsagent-tmp-nsctl-" + std::to_string(::getpid());
    frame f = s.call_with_fds("fs.open", sel, {{"path", target}, {"flags", "w"}, {"create", true}});
    if (!copy_fd(in.get(), f.fds.at(0).get(), static_cast<std::uint64_t>(st.st_size), "put") || ::fsync(f.fds[0].get()) < 0) {
        std::fprintf(stderr, "nsctl: copy into %s: %s\n", target.c_str(), std::strerror(errno));
        if (!in_place)
            s.call_raw("fs.remove", sel, {{"path", target}});
        return exit_op_error;
    }
    if (in_place) {
        std::fprintf(stderr, "nsctl: %s is a mount point (a bind-mounted file): written in place, not atomically\n", path.c_str());
        return exit_ok;
    }
    s.call("fs.rename", sel, {{"from", target}, {"to", path}});
    return exit_ok;
}

} // namespace

int main(int argc, char** argv)
{
    options o;
    CLI::App app{"nsctl: talk to nsagentd, which runs operations inside network and mount namespaces.\n\n"
                 "NS arguments: NAME (/run/netns/NAME, network only), pid:PID (a process's namespace;\n"
                 "--type picks net or mnt, net by default), or a path such as /proc/PID/ns/mnt."};
    app.fallthrough();
    app.require_subcommand(1);
    app.add_option("--socket", o.socket, "Agent socket (default: $NSAGENT_SOCKET, else /run/nsagent/nsagent.sock)");
    app.add_flag("--json", o.json_out, "Print the raw JSON result instead of a table (before or after the command)");
    app.add_option("--timeout", o.timeout_ms, "Deadline for each request, in ms")->check(CLI::Range(1, 86400000));
    app.footer("Exit status: 0 ok, 1 the operation failed (code and message on stderr), 2 usage error,\n"
               "3 the agent could not be reached.\n\n"
               "Examples:\n"
               "  nsctl stats\n"
               "  nsctl ns ping blue\n"
               "  nsctl ns ping --type mnt pid:1234\n"
               "  nsctl --json ls");

    std::string ns_text;
    auto* hello = app.add_subcommand("hello", "Protocol version, agent version and the op catalogue");
    auto* ping = app.add_subcommand("ping", "Check that the agent answers");
    auto* stats = app.add_subcommand("stats", "Threads, workers and counters (agent.stats)");
    bool top_once = false;
    auto* top = app.add_subcommand("top", "Live view of the workers, like top -H (q or Ctrl-C quits)");
    top->add_flag("--once", top_once, "Print one frame and exit, for scripts");
    auto* doctor = app.add_subcommand("doctor", "Check that every thread of the agent is in the agent's own namespaces "
                                                "or is a live worker in its target; exit 1 if not");
    auto* metrics = app.add_subcommand("metrics", "All counters in the Prometheus text format (agent.metrics)");
    auto* ls = app.add_subcommand("ls", "Namespaces on the host, lsns-style, and which have a worker");
    auto* ns = app.add_subcommand("ns", "Per-namespace commands");
    ns->require_subcommand(1);
    ns->add_option("--type", o.type, "Namespace type: net or mnt")->check(CLI::IsMember({"net", "mnt"}));
    auto* ns_ping = ns->add_subcommand("ping", "Run an empty op on the namespace's pinned worker");
    ns_ping->add_option("NS", ns_text, "The namespace")->required();
    auto* ns_release = ns->add_subcommand("release", "Retire the namespace's worker; the agent stops pinning it");
    ns_release->add_option("NS", ns_text, "The namespace")->required();

    auto* net = app.add_subcommand("net", "Network namespace state (NS: NAME, pid:PID or a path)");
    net->require_subcommand(1);
    std::string family = "inet", table;
    auto* net_links = net->add_subcommand("links", "Links, like ip -br link");
    net_links->add_option("NS", ns_text, "The network namespace")->required();
    auto* net_addrs = net->add_subcommand("addrs", "Addresses, like ip -br addr");
    net_addrs->add_option("NS", ns_text, "The network namespace")->required();
    auto* net_routes = net->add_subcommand("routes", "Routes of one table, like ip route");
    net_routes->add_option("NS", ns_text, "The network namespace")->required();
    net_routes->add_option("--family", family, "inet or inet6")->check(CLI::IsMember({"inet", "inet6"}));
    net_routes->add_option("--table", table, "main (default), local, default, or a number");
    std::string ifname, cidr, dst;
    std::vector<std::string> rest;
    auto* net_set = net->add_subcommand("set", "Change a link: up, down, mtu N");
    net_set->add_option("NS", ns_text, "The network namespace")->required();
    net_set->add_option("IFNAME", ifname, "The link")->required();
    net_set->add_option("WHAT", rest, "up | down | mtu N")->required();
    auto* net_addr = net->add_subcommand("addr", "Add or delete an address");
    net_addr->require_subcommand(1);
    auto* net_addr_add = net_addr->add_subcommand("add", "Add IFNAME CIDR");
    auto* net_addr_del = net_addr->add_subcommand("del", "Delete IFNAME CIDR");
    for (auto* sub : {net_addr_add, net_addr_del}) {
        sub->add_option("NS", ns_text, "The network namespace")->required();
        sub->add_option("IFNAME", ifname, "The link")->required();
        sub->add_option("CIDR", cidr, "Address with prefix length, e.g. 10.1.0.2/24")->required();
    }
    auto* net_route = net->add_subcommand("route", "Add or delete a route");
    net_route->require_subcommand(1);
    auto* net_route_add = net_route->add_subcommand("add", "Add DST [via GW] [dev IF] [table T]");
    auto* net_route_del = net_route->add_subcommand("del", "Delete DST [via GW] [dev IF] [table T]");
    for (auto* sub : {net_route_add, net_route_del}) {
        sub->add_option("NS", ns_text, "The network namespace")->required();
        sub->add_option("DST", dst, "default, or a prefix such as 10.1.0.0/24")->required();
        sub->add_option("ARGS", rest, "via GW, dev IF, table T");
    }
    std::string sock_proto = "tcp", sock_state = "all";
    auto* net_sockets = net->add_subcommand("sockets", "TCP or UDP sockets of the namespace, like ss -tan");
    net_sockets->add_option("NS", ns_text, "The network namespace")->required();
    net_sockets->add_option("--proto", sock_proto, "tcp or udp")->check(CLI::IsMember({"tcp", "udp"}));
    net_sockets->add_option("--state", sock_state, "listen, established or all")
        ->check(CLI::IsMember({"listen", "established", "all"}));
    auto* fs = app.add_subcommand("fs", "Files of a mount namespace (NS: pid:PID or a path such as /proc/PID/ns/mnt)");
    fs->require_subcommand(1);
    std::string fs_path, fs_local;
    bool recursive = false, parents = false;
    auto fs_sub = [&](const char* name, const char* help) {
        auto* c = fs->add_subcommand(name, help);
        c->add_option("NS", ns_text, "The mount namespace")->required();
        return c;
    };
    auto* fs_ls = fs_sub("ls", "List a directory, like ls -l");
    auto* fs_stat = fs_sub("stat", "File status, like stat");
    auto* fs_cat = fs_sub("cat", "Print a file");
    auto* fs_df = fs_sub("df", "Space of the filesystem holding PATH, like df -h");
    for (auto* c : {fs_ls, fs_stat, fs_cat, fs_df})
        c->add_option("PATH", fs_path, "Absolute path inside the namespace")->required();
    auto* fs_mounts = fs_sub("mounts", "The namespace's mount table, like findmnt --list");
    auto* fs_get = fs_sub("get", "Copy PATH out of the namespace into LOCAL_FILE");
    fs_get->add_option("PATH", fs_path, "Absolute path inside the namespace")->required();
    fs_get->add_option("LOCAL_FILE", fs_local, "Where to write it here")->required();
    auto* fs_put = fs_sub("put", "Copy LOCAL_FILE to PATH, atomically (in place, and said so, for a bind-mounted file)");
    fs_put->add_option("LOCAL_FILE", fs_local, "The file to send")->required();
    fs_put->add_option("PATH", fs_path, "Absolute path inside the namespace")->required();
    auto* fs_rm = fs_sub("rm", "Remove a file or an empty directory (-r: a whole tree, on one filesystem)");
    fs_rm->add_option("PATH", fs_path, "Absolute path inside the namespace")->required();
    fs_rm->add_flag("-r,--recursive", recursive, "Remove a directory and everything below it");
    auto* fs_mkdir = fs_sub("mkdir", "Make a directory");
    fs_mkdir->add_option("PATH", fs_path, "Absolute path inside the namespace")->required();
    fs_mkdir->add_flag("-p,--parents", parents, "Make parents as needed; no error if it exists");

    forward_options fwd;
    auto* net_forward = net->add_subcommand(
        "forward", "Forward local TCP connections into the namespace (like kubectl port-forward); Ctrl-C stops");
    net_forward->add_option("NS", ns_text, "The network namespace")->required();
    net_forward->add_option("--listen", fwd.listen, "Local host:port to accept on (default 127.0.0.1:0, any free port)");
    net_forward->add_option("--to", fwd.to, "host:port to connect to, as seen inside the namespace")->required();
    std::string probe_address;
    int probe_count = 1;
    auto* net_probe = net->add_subcommand("probe", "Can the namespace reach HOST:PORT over TCP? Exit 0 if so, 1 if not");
    net_probe->add_option("NS", ns_text, "The network namespace")->required();
    net_probe->add_option("ADDRESS", probe_address, "host:port or [v6]:port")->required();
    net_probe->add_option("-c,--count", probe_count, "Connection attempts")->check(CLI::Range(1, 100));
    std::string sysctl_name, sysctl_value;
    auto* net_sysctl = net->add_subcommand("sysctl", "Read, or with VALUE write, a net.* sysctl of the namespace");
    net_sysctl->add_option("NS", ns_text, "The network namespace")->required();
    net_sysctl->add_option("NAME", sysctl_name, "A key under net., e.g. net.ipv4.ip_forward")->required();
    net_sysctl->add_option("VALUE", sysctl_value, "The new value");

    auto* pkt = app.add_subcommand("pkt", "Packet capture in a network namespace, and packet analysis");
    pkt->require_subcommand(1);
    capture_options cap;
    std::string cap_ns;
    auto* pkt_capture = pkt->add_subcommand(
        "capture", "Capture on an interface inside NS, like tcpdump there; print the top flows and checksum errors at the end");
    pkt_capture->add_option("NS", cap_ns, "The network namespace")->required();
    pkt_capture->add_option("-i,--interface", cap.ifname, "Interface inside the namespace, e.g. eth0 or lo")->required();
    pkt_capture->add_option("-c,--count", cap.count, "Stop after N packets");
    pkt_capture->add_option("--duration", cap.duration_s, "Stop after S seconds (fractions allowed)")->check(CLI::Range(0.0, 86400.0));
    pkt_capture->add_option("-f,--filter", cap.filter, "tcpdump filter expression, e.g. \"tcp port 443\"");
    pkt_capture->add_option("-w,--write", cap.write_to, "Write the pcap to FILE, or to stdout with -w - (then the table goes to stderr)");
    pkt_capture->add_option("-s,--snaplen", cap.snaplen, "Bytes kept per packet")->check(CLI::Range(64, 262144));
    pkt_capture->footer("Without -c or --duration it runs until Ctrl-C, which still prints the analysis.\n"
                        "Examples:\n"
                        "  nsctl pkt capture blue -i eth0 -c 1000 --top 5\n"
                        "  nsctl pkt capture blue -i eth0 -f 'tcp port 80' -w - | tshark -r -\n"
                        "  nsctl pkt capture pid:4242 -i eth0 --duration 10 -w /tmp/web.pcap");
    analyze_options ana;
    auto* pkt_analyze = pkt->add_subcommand("analyze", "Analyse a pcap or pcapng file: top flows, checksum errors, RSS hashes");
    pkt_analyze->add_option("FILE", ana.file, "The capture file")->required()->check(CLI::ExistingFile);
    for (auto* sub : {pkt_capture, pkt_analyze}) {
        analysis_view_options& v = sub == pkt_capture ? static_cast<analysis_view_options&>(cap) : ana;
        sub->add_option("--top", v.top, "Flows to show (default 10)")->check(CLI::Range(0, 100000));
        sub->add_option("--order", v.order, "Rank flows by bytes (default) or packets")->check(CLI::IsMember({"bytes", "packets"}));
        sub->add_option("--engine", v.engine, "cpu, cuda, or auto (the GPU for large batches when one is ready)")
            ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
        sub->add_flag("--bidirectional", v.bidirectional, "Count both directions of a conversation as one flow");
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? exit_ok : exit_usage;
    }

    try {
        session s(o);
        if (*hello)
            cmd_hello(s);
        else if (*ping)
            cmd_ping(s);
        else if (*stats)
            cmd_stats(s);
        else if (*ls)
            cmd_ls(s);
        else if (*metrics)
            cmd_metrics(s);
        else if (*top)
            return cmd_top(s, top_once);
        else if (*doctor)
            return cmd_doctor(s);
        else if (*pkt_capture) {
            o.type = "net";
            cap.ns = ns_arg(cap_ns, o);
            cap.agent_socket = o.socket;
            cap.json_out = o.json_out;
            return run_capture(cap);
        } else if (*pkt_analyze) {
            ana.agent_socket = o.socket;
            ana.json_out = o.json_out;
            return run_analyze(ana);
        } else if (*ns_ping)
            cmd_ns_ping(s, ns_arg(ns_text, o));
        else if (*ns_release)
            cmd_ns_release(s, ns_arg(ns_text, o));
        else if (*fs) {
            o.type = o.type.empty() ? "mnt" : o.type; // fs commands mean mount namespaces
            if (o.type != "mnt")
                throw usage_error{"fs commands work on mount namespaces (--type mnt)"};
            if (ns_text.rfind("pid:", 0) != 0 && ns_text.find('/') == std::string::npos)
                throw usage_error{"\"" + ns_text + "\": name a mount namespace as pid:PID or by the path of its ns file "
                                  "(/proc/PID/ns/mnt); a bare NAME means /run/netns/NAME, network only"};
            auto sel = ns_arg(ns_text, o);
            if (*fs_ls)
                cmd_fs_ls(s, sel, fs_path);
            else if (*fs_stat)
                cmd_fs_stat(s, sel, fs_path);
            else if (*fs_cat)
                cmd_fs_cat(s, sel, fs_path);
            else if (*fs_df)
                cmd_fs_df(s, sel, fs_path);
            else if (*fs_mounts)
                cmd_fs_mounts(s, sel);
            else if (*fs_get)
                return cmd_fs_get(s, sel, fs_path, fs_local);
            else if (*fs_put)
                return cmd_fs_put(s, sel, fs_local, fs_path);
            else if (*fs_rm)
                print_change(s, s.call("fs.remove", sel, {{"path", fs_path}, {"recursive", recursive}}));
            else if (*fs_mkdir)
                print_change(s, s.call("fs.mkdir", sel, {{"path", fs_path}, {"parents", parents}}));
        } else if (*net_links || *net_addrs || *net_routes || *net_sysctl || *net_set || *net_addr || *net_route ||
                 *net_probe || *net_sockets || *net_forward) {
            o.type = "net"; // net commands mean network namespaces
            auto sel = ns_arg(ns_text, o);
            if (*net_links)
                cmd_net_links(s, sel);
            else if (*net_addrs)
                cmd_net_addrs(s, sel);
            else if (*net_routes)
                cmd_net_routes(s, sel, family, table);
            else if (*net_forward) {
                fwd.agent_socket = o.socket;
                fwd.ns = sel;
                fwd.connect_timeout_ms = std::min(o.timeout_ms, 30000);
                return run_forwarder(fwd);
            } else if (*net_sockets)
                cmd_net_sockets(s, sel, sock_proto, sock_state);
            else if (*net_probe)
                return cmd_net_probe(s, sel, probe_address, probe_count);
            else if (*net_set)
                cmd_net_set(s, sel, ifname, rest);
            else if (*net_addr)
                print_change(s, s.call(*net_addr_add ? "net.addr_add" : "net.addr_del", sel,
                                       {{"ifname", ifname}, {"address", cidr}}));
            else if (*net_route)
                print_change(s, s.call(*net_route_add ? "net.route_add" : "net.route_del", sel, route_args(dst, rest)));
            else
                cmd_net_sysctl(s, sel, sysctl_name, sysctl_value);
        }
    } catch (const usage_error& e) {
        std::fprintf(stderr, "nsctl: %s\n", e.what.c_str());
        return exit_usage;
    }
    return exit_ok;
}
