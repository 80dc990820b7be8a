// nsbench: the agent against every alternative, measured side by side in one run.
//
// Each latency row is one request at a time on one connection (or one in-process call), and the
// rows run interleaved (A B C ... A B C ...) so that machine drift hits them alike. Each row
// reports the median over rounds of its per-round p50, p99 and ops/s; ratios are computed per
// round and their median is reported. Traffic stays on Unix sockets and inside namespaces the
// bench creates; every loop is bounded by a count.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <CLI/CLI.hpp>

#include "nsagent/scm_rights.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t)
{
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "nsbench: %s: %s\n", what.c_str(), std::strerror(errno));
    std::exit(2);
}

double percentile(std::vector<double> v, double p)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    auto i = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size()))) ;
    return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

double median(std::vector<double> v)
{
    return percentile(std::move(v), 0.5);
}

// ---- a blocking NDJSON connection: write a line, read one line back -------------------------

class line_conn {
public:
    explicit line_conn(const std::string& path)
    {
        fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
            die("connect " + path);
    }
    ~line_conn()
    {
        if (fd_ >= 0)
            ::close(fd_);
    }
    line_conn(const line_conn&) = delete;
    line_conn& operator=(const line_conn&) = delete;
    int fd() const { return fd_; }

    // Sends `line` (with an fd, when >= 0) and returns the reply line.
    const std::string& roundtrip(const std::string& line, int pass_fd = -1)
    {
        send(line, pass_fd);
        return read_line();
    }
    void send(const std::string& line, int pass_fd = -1)
    {
        // The fd goes with the first byte; the rest of the line follows without it.
        std::string_view rest = line;
        int one[] = {pass_fd};
        std::span<const int> fds = pass_fd >= 0 ? std::span<const int>(one) : std::span<const int>();
        while (!rest.empty()) {
            boost::system::error_code ec;
            auto n = nsagent::send_with_fds(fd_, rest, fds, 0, ec);
            if (ec || n == 0)
                die("send");
            rest.remove_prefix(n);
            fds = {};
        }
    }
    const std::string& read_line()
    {
        for (;;) {
            auto nl = buf_.find('\n', scanned_);
            if (nl != std::string::npos) {
                last_.assign(buf_, 0, nl);
                buf_.erase(0, nl + 1);
                scanned_ = 0;
                return last_;
            }
            scanned_ = buf_.size();
            char tmp[65536];
            ssize_t n = ::read(fd_, tmp, sizeof tmp);
            if (n <= 0)
                die("read (the server closed the connection)");
            buf_.append(tmp, static_cast<std::size_t>(n));
        }
    }

private:
    int fd_ = -1;
    std::string buf_, last_;
    std::size_t scanned_ = 0;
};

bool is_ok(const std::string& reply)
{
    return reply.find("\"ok\":true") != std::string::npos;
}

// ---- processes under test ----------------------------------------------------------------

struct child {
    pid_t pid = -1;
    std::string socket;
    ~child()
    {
        if (pid > 0) {
            ::kill(pid, SIGTERM);
            ::waitpid(pid, nullptr, 0);
        }
    }
};

void wait_for_socket(const std::string& path)
{
    for (int i = 0; i < 1000; ++i) {
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        if (ok)
            return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("nothing listens on " + path + " after 10 s");
}

// The floor: a minimal NDJSON echo server, one thread, epoll through Asio, same framing.
boost::asio::awaitable<void> echo_session(boost::asio::local::stream_protocol::socket s)
{
    boost::asio::streambuf buf;
    for (;;) {
        auto [ec, n] = co_await boost::asio::async_read_until(s, buf, '\n',
                                                              boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec)
            co_return;
        auto [wec, w] = co_await boost::asio::async_write(s, buf.data(), boost::asio::transfer_exactly(n),
                                                          boost::asio::as_tuple(boost::asio::use_awaitable));
        if (wec)
            co_return;
        buf.consume(n);
    }
}

boost::asio::awaitable<void> echo_accept(boost::asio::local::stream_protocol::acceptor& acc)
{
    for (;;) {
        auto [ec, s] = co_await acc.async_accept(boost::asio::as_tuple(boost::asio::use_awaitable));
        if (ec)
            co_return;
        boost::asio::co_spawn(acc.get_executor(), echo_session(std::move(s)), boost::asio::detached);
    }
}

void start_echo(child& c, const std::string& path)
{
    c.socket = path;
    c.pid = ::fork();
    if (c.pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::unlink(path.c_str());
        boost::asio::io_context io{1};
        boost::asio::local::stream_protocol::acceptor acc(io, boost::asio::local::stream_protocol::endpoint(path));
        boost::asio::co_spawn(io, echo_accept(acc), boost::asio::detached);
        io.run();
        ::_exit(0);
    }
    wait_for_socket(path);
}

void start_agent(child& c, const std::string& agent, const std::string& dir, const std::string& name,
                 const std::string& config)
{
    c.socket = dir + "/" + name + ".sock";
    std::string cfg = dir + "/" + name + ".json";
    std::ofstream(cfg) << config;
    c.pid = ::fork();
    if (c.pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
        ::execl(agent.c_str(), "nsagentd", "--socket", c.socket.c_str(), "--config", cfg.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
    }
    wait_for_socket(c.socket);
}

// ---- /proc accounting of a process (all its threads) ---------------------------------------

struct proc_usage {
    double cpu_s = 0;          // utime + stime
    long long vol_switches = 0; // voluntary context switches, summed over threads
    long long rss_kib = 0;
    long threads = 0;
};

proc_usage usage_of(pid_t pid)
{
    proc_usage u;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string s((std::istreambuf_iterator<char>(stat)), {});
    auto rp = s.rfind(')');
    if (rp != std::string::npos) {
        std::istringstream in(s.substr(rp + 2));
        std::string f;
        std::vector<std::string> fields;
        while (in >> f)
            fields.push_back(f);
        // Fields 14 and 15 of stat (utime, stime), counted from the state (field 3).
        if (fields.size() > 13)
            u.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    }
    std::string task = "/proc/" + std::to_string(pid) + "/task";
    if (DIR* d = ::opendir(task.c_str())) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            ++u.threads;
            std::ifstream st(task + "/" + e->d_name + "/status");
            std::string line;
            while (std::getline(st, line))
                if (line.rfind("voluntary_ctxt_switches:", 0) == 0)
                    u.vol_switches += std::stoll(line.substr(24));
        }
        ::closedir(d);
    }
    std::ifstream st("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(st, line))
        if (line.rfind("VmRSS:", 0) == 0)
            u.rss_kib = std::stoll(line.substr(6));
    return u;
}

// ---- namespaces ----------------------------------------------------------------------------

// N fresh network namespaces, held by fd only (no /run/netns bind mounts: thousands of them
// flood systemd with mount events). A child unshares N times and passes each namespace's fd.
std::vector<int> make_netns_fds(std::size_t n)
{
    int sp[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        die("socketpair");
    pid_t pid = ::fork();
    if (pid == 0) {
        ::close(sp[0]);
        for (std::size_t i = 0; i < n; ++i) {
            if (::unshare(CLONE_NEWNET) < 0)
                ::_exit(1);
            int fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
            int one[] = {fd};
            boost::system::error_code ec;
            if (nsagent::send_with_fds(sp[1], "n", one, 0, ec) != 1)
                ::_exit(1);
            ::close(fd);
        }
        ::_exit(0);
    }
    ::close(sp[1]);
    std::vector<int> fds;
    fds.reserve(n);
    while (fds.size() < n) {
        char byte;
        std::vector<nsagent::unique_fd> got;
        boost::system::error_code ec;
        if (nsagent::recv_with_fds(sp[0], {&byte, 1}, got, 0, ec) != 1 || got.size() != 1)
            break;
        fds.push_back(got[0].release());
    }
    ::close(sp[0]);
    ::waitpid(pid, nullptr, 0);
    if (fds.size() != n)
        throw std::runtime_error("made " + std::to_string(fds.size()) + " of " + std::to_string(n) + " namespaces");
    return fds;
}

struct named_netns {
    std::string name;
    explicit named_netns(std::string n) : name(std::move(n))
    {
        if (std::system(("ip netns add " + name).c_str()) != 0)
            throw std::runtime_error("ip netns add " + name);
    }
    ~named_netns() { (void)!std::system(("ip netns del " + name + " 2>/dev/null").c_str()); }
};

int run_quiet(const std::vector<std::string>& argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    std::vector<char*> args;
    for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid;
    int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The tiny in-namespace operation of the in-process rows.
void socket_and_close()
{
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    ::close(s);
}

// ---- rows ----------------------------------------------------------------------------------

struct row {
    std::string name;
    std::function<void()> once; // one request; throws or dies on a wrong answer
    int per_round;              // requests per round
    std::vector<double> p50, p99, ops; // per round (µs, µs, 1/s)
};

void run_round(row& r)
{
    for (int i = 0; i < std::max(1, r.per_round / 20); ++i) // warm-up, not counted
        r.once();
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(r.per_round));
    auto start = clock_type::now();
    for (int i = 0; i < r.per_round; ++i) {
        auto t = clock_type::now();
        r.once();
        us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t).count());
    }
    double total = seconds_since(start);
    r.p50.push_back(percentile(us, 0.5));
    r.p99.push_back(percentile(us, 0.99));
    r.ops.push_back(static_cast<double>(r.per_round) / total);
}

// Throughput: `conns` connections, each keeping `depth` requests in flight, `total` in all.
struct load_result {
    double ops_s = 0, cpu_us_per_req = 0, switches_per_req = 0;
    long long errors = 0;
    std::string first_error;
};

// `make(n)` is the n-th request line; ids must be unique among those in flight.
load_result load(const std::string& socket, pid_t server, const std::function<std::string(std::uint64_t)>& make,
                 int conns, int depth, int total)
{
    std::vector<std::unique_ptr<line_conn>> cs;
    for (int i = 0; i < conns; ++i)
        cs.push_back(std::make_unique<line_conn>(socket));
    std::vector<int> sent(static_cast<std::size_t>(conns), 0), got(static_cast<std::size_t>(conns), 0);
    std::vector<std::string> bufs(static_cast<std::size_t>(conns));
    int per = total / conns;
    load_result res;
    auto before = usage_of(server);
    auto start = clock_type::now();
    auto fill = [&](int i) {
        std::string out;
        while (sent[i] < per && sent[i] - got[i] < depth)
            out += make(static_cast<std::uint64_t>(i * per + sent[i]++));
        if (!out.empty())
            cs[static_cast<std::size_t>(i)]->send(out);
    };
    for (int i = 0; i < conns; ++i)
        fill(i);
    int done = 0;
    std::vector<pollfd> pf(static_cast<std::size_t>(conns));
    while (done < conns) {
        for (int i = 0; i < conns; ++i)
            pf[static_cast<std::size_t>(i)] = {cs[static_cast<std::size_t>(i)]->fd(), got[i] < per ? short(POLLIN) : short(0), 0};
        if (::poll(pf.data(), pf.size(), 10000) <= 0)
            throw std::runtime_error("throughput: no reply for 10 s");
        for (int i = 0; i < conns; ++i) {
            if (!(pf[static_cast<std::size_t>(i)].revents & POLLIN))
                continue;
            char tmp[65536];
            ssize_t n = ::read(pf[static_cast<std::size_t>(i)].fd, tmp, sizeof tmp);
            if (n <= 0)
                throw std::runtime_error("throughput: connection closed");
            auto& b = bufs[static_cast<std::size_t>(i)];
            b.append(tmp, static_cast<std::size_t>(n));
            std::size_t pos = 0, nl;
            while ((nl = b.find('\n', pos)) != std::string::npos) {
                if (b.find("\"ok\":true", pos) > nl && ++res.errors == 1)
                    res.first_error = b.substr(pos, nl - pos);
                ++got[i];
                pos = nl + 1;
            }
            b.erase(0, pos);
            if (got[i] == per)
                ++done;
            fill(i);
        }
    }
    double secs = seconds_since(start);
    auto after = usage_of(server);
    double n = static_cast<double>(per * conns);
    res.ops_s = n / secs;
    res.cpu_us_per_req = (after.cpu_s - before.cpu_s) * 1e6 / n;
    res.switches_per_req = static_cast<double>(after.vol_switches - before.vol_switches) / n;
    return res;
}

std::string ping_line(std::uint64_t id, const std::string& ns_name)
{
    return "{\"id\":" + std::to_string(id) + ",\"op\":\"ns.ping\",\"ns\":{\"type\":\"net\",\"name\":\"" + ns_name + "\"}}\n";
}

std::string fd_ping_line(std::uint64_t id)
{
    return "{\"id\":" + std::to_string(id) + ",\"op\":\"ns.ping\",\"fds\":1,\"ns\":{\"type\":\"net\",\"fd\":0}}\n";
}

struct options {
    std::string agent;
    int rounds = 5;
    int requests = 2000;
    int spawn_requests = 100;
    int load_requests = 40000;
    int scale = 1000;
    int churn = 10000;
    std::string json_path, chart_path;
    std::string agent_config; // extra config keys for the agents under test
    bool smoke = false;
};

std::string fmt(double v, int prec = 1)
{
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return b;
}

} // namespace

int main(int argc, char** argv)
{
    options o;
    CLI::App app{"nsbench: the agent against every alternative, interleaved in one run (as root)"};
    app.add_option("--agent", o.agent, "the nsagentd to measure")->default_val(NSBENCH_AGENT);
    app.add_option("--rounds", o.rounds, "interleaved rounds (medians need >= 5)")->default_val(5);
    app.add_option("--requests", o.requests, "requests per latency row per round")->default_val(2000);
    app.add_option("--spawn-requests", o.spawn_requests, "requests per round for the fork+exec rows")->default_val(100);
    app.add_option("--load-requests", o.load_requests, "requests per throughput run")->default_val(40000);
    app.add_option("--scale", o.scale, "namespaces with a live worker in the scale rows")->default_val(1000);
    app.add_option("--churn", o.churn, "namespaces visited round-robin with max_workers = --scale")->default_val(10000);
    app.add_option("--json", o.json_path, "write the results as JSON here");
    app.add_option("--chart", o.chart_path, "write an SVG chart here (needs gnuplot)");
    app.add_option("--agent-config", o.agent_config,
                   "extra config keys for the agents, as JSON members: '\"worker_spin_us\": 0'");
    app.add_flag("--smoke", o.smoke, "seconds, not minutes: tiny counts, one round (CI)");
    CLI11_PARSE(app, argc, argv);
    if (o.smoke) {
        o.rounds = 1;
        o.requests = 50;
        o.spawn_requests = 3;
        o.load_requests = 800;
        o.scale = 20;
        o.churn = 60;
    }
    if (::geteuid() != 0) {
        std::fprintf(stderr, "nsbench: run as root (it creates namespaces)\n");
        return 2;
    }
    std::signal(SIGPIPE, SIG_IGN);
    rlimit rl{};
    ::getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);

    char tmpl[] = "/tmp/nsbench-XXXXXX";
    std::string dir = ::mkdtemp(tmpl);
    std::string tag = "nsb-" + std::to_string(::getpid());
    int failures = 0;
    std::map<std::string, double> out; // name -> value, for the JSON

    try {
        std::vector<std::unique_ptr<named_netns>> nss;
        for (int i = 0; i < 4; ++i)
            nss.push_back(std::make_unique<named_netns>(tag + "-" + std::to_string(i)));
        const std::string& ns0 = nss[0]->name;

        child echo, agent;
        start_echo(echo, dir + "/echo.sock");
        start_agent(agent, o.agent, dir, "agent",
                    "{\"max_workers\": " + std::to_string(std::max(o.scale, 8)) + ", \"queue_depth\": 1024, \"idle_timeout_s\": 3600, \"audit\": \"off\"" +
                        (o.agent_config.empty() ? "" : ", " + o.agent_config) + "}");

        // The same agent with worker_spin_us 0, interleaved with the others, so that the
        // spin's effect is measured under the same machine conditions.
        child nospin;
        start_agent(nospin, o.agent, dir, "nospin",
                    "{\"queue_depth\": 1024, \"idle_timeout_s\": 3600, \"audit\": \"off\", \"worker_spin_us\": 0}");

        line_conn floor_c(echo.socket), agent_c(agent.socket), ns_c(agent.socket), links_c(agent.socket),
            bound_c(agent.socket), nospin_c(nospin.socket);
        std::uint64_t id = 0;
        auto check = [&](const std::string& reply, const char* what) {
            if (!is_ok(reply)) {
                std::fprintf(stderr, "nsbench: %s failed: %s\n", what, reply.c_str());
                std::exit(1);
            }
        };
        std::string floor_line = "{\"id\":1,\"op\":\"agent.ping\",\"ok\":true}\n";
        // Bound to another namespace than the multiplexed row's, so the rows do not share a worker.
        check(bound_c.roundtrip("{\"id\":0,\"op\":\"agent.bind\",\"ns\":{\"type\":\"net\",\"name\":\"" + nss[1]->name + "\"}}\n"),
              "agent.bind");
        int target_fd = ::open(("/run/netns/" + ns0).c_str(), O_RDONLY | O_CLOEXEC);
        int self_fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (target_fd < 0 || self_fd < 0)
            die("open namespace fds");

        std::vector<row> rows;
        rows.push_back({"floor: NDJSON echo server", [&] { check(floor_c.roundtrip(floor_line), "echo"); }, o.requests, {}, {}, {}});
        rows.push_back({"agent.ping", [&] {
                            check(agent_c.roundtrip("{\"id\":" + std::to_string(++id) + ",\"op\":\"agent.ping\"}\n"), "agent.ping");
                        }, o.requests, {}, {}, {}});
        rows.push_back({"ns.ping, multiplexed", [&] { check(ns_c.roundtrip(ping_line(++id, ns0)), "ns.ping"); }, o.requests, {}, {}, {}});
        rows.push_back({"ns.ping, multiplexed, worker_spin_us 0", [&] { check(nospin_c.roundtrip(ping_line(++id, ns0)), "ns.ping"); },
                        o.requests, {}, {}, {}});
        rows.push_back({"ns.ping, bound (agent.bind)", [&] {
                            check(bound_c.roundtrip("{\"id\":" + std::to_string(++id) + ",\"op\":\"ns.ping\"}\n"), "bound ns.ping");
                        }, o.requests, {}, {}, {}});
        rows.push_back({"in-process raw socket()+close()", [&] { socket_and_close(); }, o.requests, {}, {}, {}});
        rows.push_back({"in-process setns in/out (CNI ns.Do)", [&] {
                            if (::setns(target_fd, CLONE_NEWNET) < 0)
                                die("setns");
                            socket_and_close();
                            if (::setns(self_fd, CLONE_NEWNET) < 0)
                                die("setns back");
                        }, o.requests, {}, {}, {}});
        rows.push_back({"in-process new thread+setns+join", [&] {
                            std::thread t([&] {
                                if (::setns(target_fd, CLONE_NEWNET) < 0)
                                    die("setns");
                                socket_and_close();
                            });
                            t.join();
                        }, o.requests, {}, {}, {}});
        rows.push_back({"net.links via agent", [&] {
                            check(links_c.roundtrip("{\"id\":" + std::to_string(++id) +
                                                    ",\"op\":\"net.links\",\"ns\":{\"type\":\"net\",\"name\":\"" + ns0 + "\"}}\n"),
                                  "net.links");
                        }, o.spawn_requests * 10, {}, {}, {}});
        rows.push_back({"nsenter --net=... ip -j link", [&] {
                            if (run_quiet({"nsenter", "--net=/run/netns/" + ns0, "ip", "-j", "link"}) != 0)
                                throw std::runtime_error("nsenter ip failed");
                        }, o.spawn_requests, {}, {}, {}});
        rows.push_back({"ip -n NS -j link", [&] {
                            if (run_quiet({"ip", "-n", ns0, "-j", "link"}) != 0)
                                throw std::runtime_error("ip -n failed");
                        }, o.spawn_requests, {}, {}, {}});

        std::fprintf(stderr, "nsbench: %d rounds of %zu rows\n", o.rounds, rows.size());
        std::vector<double> r_mux, r_nospin, r_bound, r_thread_bound, r_links_nsenter, r_links_ip, r_thread, r_setns;
        for (int round = 0; round < o.rounds; ++round) {
            for (auto& r : rows)
                run_round(r);
            auto p50 = [&](std::size_t i) { return rows[i].p50.back(); };
            r_mux.push_back(p50(2) / p50(0));
            r_nospin.push_back(p50(3) / p50(2));
            r_bound.push_back(p50(4) / p50(0));
            r_thread.push_back(p50(7) / p50(2));
            r_thread_bound.push_back(p50(7) / p50(4));
            r_setns.push_back(p50(6) / p50(2));
            r_links_nsenter.push_back(p50(9) / p50(8));
            r_links_ip.push_back(p50(10) / p50(8));
            std::fprintf(stderr, "  round %d: floor %.1f us, ns.ping %.1f us (no spin %.1f), bound %.1f us\n", round + 1,
                         p50(0), p50(2), p50(3), p50(4));
        }
        ::close(target_fd);
        ::close(self_fd);

        // Row 7: throughput, 8 connections x 32 in flight over 4 namespaces, vs the echo server.
        auto agent_lines = [&](std::uint64_t n) { return ping_line(n, nss[n % 4]->name); };
        auto echo_lines = [&](std::uint64_t) { return floor_line; };
        std::vector<double> t_agent, t_echo, t_ratio, t_cpu, t_sw, t_echo_cpu, t_echo_sw;
        long long load_errors = 0;
        for (int round = 0; round < o.rounds; ++round) {
            auto e = load(echo.socket, echo.pid, echo_lines, 8, 32, o.load_requests);
            auto a = load(agent.socket, agent.pid, agent_lines, 8, 32, o.load_requests);
            load_errors += a.errors + e.errors;
            if (a.errors)
                std::fprintf(stderr, "nsbench: throughput: %lld errors, first: %s\n", a.errors, a.first_error.c_str());
            t_agent.push_back(a.ops_s);
            t_echo.push_back(e.ops_s);
            t_ratio.push_back(a.ops_s / e.ops_s);
            t_cpu.push_back(a.cpu_us_per_req);
            t_sw.push_back(a.switches_per_req);
            t_echo_cpu.push_back(e.cpu_us_per_req);
            t_echo_sw.push_back(e.switches_per_req);
        }

        // Row 8: scale. A fresh agent, `scale` namespaces held by fd, one worker each.
        child big;
        start_agent(big, o.agent, dir, "big",
                    "{\"max_workers\": " + std::to_string(o.scale) + ", \"idle_timeout_s\": 3600, \"audit\": \"off\"" +
                        (o.agent_config.empty() ? "" : ", " + o.agent_config) + "}");
        auto fds = make_netns_fds(static_cast<std::size_t>(o.scale));
        line_conn big_c(big.socket);
        auto base = usage_of(big.pid);
        auto warm = [&](int fd, int n) {
            std::vector<double> us;
            for (int i = 0; i < n; ++i) {
                auto t = clock_type::now();
                check(big_c.roundtrip(fd_ping_line(++id), fd), "ns.ping by fd");
                us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t).count());
            }
            return us;
        };
        auto one_worker = warm(fds[0], o.requests); // first request starts it; the rest are warm
        one_worker.erase(one_worker.begin());
        std::vector<double> first;
        for (std::size_t i = 1; i < fds.size(); ++i) {
            auto t = clock_type::now();
            check(big_c.roundtrip(fd_ping_line(++id), fds[i]), "first ns.ping");
            first.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t).count());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(300)); // let the threads settle
        auto full = usage_of(big.pid);
        std::vector<double> many;
        for (int i = 0; i < o.requests; ++i) {
            int fd = fds[static_cast<std::size_t>(i) % fds.size()];
            auto t = clock_type::now();
            check(big_c.roundtrip(fd_ping_line(++id), fd), "warm ns.ping");
            many.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t).count());
        }
        // In-process thread+setns, the reference for first-request latency.
        std::vector<double> spawn_ref;
        for (int i = 0; i < std::min(o.requests, 500); ++i) {
            auto t = clock_type::now();
            std::thread th([&] {
                if (::setns(fds[static_cast<std::size_t>(i) % fds.size()], CLONE_NEWNET) < 0)
                    die("setns");
            });
            th.join();
            spawn_ref.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t).count());
        }
        // Churn: `churn` namespaces round-robin through max_workers = scale.
        auto more = make_netns_fds(static_cast<std::size_t>(std::max(0, o.churn - o.scale)));
        std::vector<int> all = fds;
        all.insert(all.end(), more.begin(), more.end());
        long long churn_errors = 0;
        auto churn_start = clock_type::now();
        for (std::size_t i = 0; i < all.size(); ++i) {
            auto& reply = big_c.roundtrip(fd_ping_line(++id), all[i]);
            if (!is_ok(reply) && ++churn_errors == 1)
                std::fprintf(stderr, "nsbench: churn: first error: %s\n", reply.c_str());
        }
        double churn_ops = static_cast<double>(all.size()) / seconds_since(churn_start);
        for (int fd : all)
            ::close(fd);

        long expected_threads = base.threads + o.scale;
        double rss_per_worker = static_cast<double>(full.rss_kib - base.rss_kib) / o.scale;

        // ---- report ----
        std::printf("\n## nsbench: %d interleaved rounds, medians of per-round values\n\n", o.rounds);
        std::printf("| row | p50 (us) | p99 (us) | ops/s |\n|---|---|---|---|\n");
        for (auto& r : rows) {
            std::printf("| %s | %s | %s | %s |\n", r.name.c_str(), fmt(median(r.p50)).c_str(), fmt(median(r.p99)).c_str(),
                        fmt(median(r.ops), 0).c_str());
            out["p50_us." + r.name] = median(r.p50);
            out["p99_us." + r.name] = median(r.p99);
            out["ops_s." + r.name] = median(r.ops);
        }
        std::printf("| throughput: agent ns.ping, 8 conns x 32 in flight, 4 ns | | | %s |\n", fmt(median(t_agent), 0).c_str());
        std::printf("| throughput: echo server, same load | | | %s |\n", fmt(median(t_echo), 0).c_str());
        std::printf("| scale: first request to a new namespace (worker start) | %s | %s | |\n",
                    fmt(percentile(first, 0.5)).c_str(), fmt(percentile(first, 0.99)).c_str());
        std::printf("| scale: in-process thread+setns+join | %s | %s | |\n", fmt(percentile(spawn_ref, 0.5)).c_str(),
                    fmt(percentile(spawn_ref, 0.99)).c_str());
        std::printf("| scale: warm ns.ping by fd, 1 worker | %s | %s | |\n", fmt(percentile(one_worker, 0.5)).c_str(),
                    fmt(percentile(one_worker, 0.99)).c_str());
        std::printf("| scale: warm ns.ping by fd, %d workers | %s | %s | |\n", o.scale, fmt(percentile(many, 0.5)).c_str(),
                    fmt(percentile(many, 0.99)).c_str());
        std::printf("| churn: %zu namespaces round-robin, max_workers %d | | | %s |\n", all.size(), o.scale,
                    fmt(churn_ops, 0).c_str());

        struct target {
            std::string metric, want;
            double value;
            bool met;
        };
        std::vector<target> ts = {
            {"ns.ping p50, multiplexed / floor p50", "<= 1.5", median(r_mux), median(r_mux) <= 1.5},
            {"ns.ping p50 with worker_spin_us 0 / with the default", "(info)", median(r_nospin), true},
            {"ns.ping p50, bound / floor p50", "<= 1.15", median(r_bound), median(r_bound) <= 1.15},
            {"nsenter ip -j link p50 / net.links via agent p50", ">= 20", median(r_links_nsenter), median(r_links_nsenter) >= 20},
            {"ip -n -j link p50 / net.links via agent p50", "(info)", median(r_links_ip), true},
            {"new-thread-per-request p50 / agent ns.ping p50, multiplexed", "> 1", median(r_thread), median(r_thread) > 1},
            {"new-thread-per-request p50 / agent ns.ping p50, bound", "> 1", median(r_thread_bound), median(r_thread_bound) > 1},
            {"setns in/out p50 / agent ns.ping p50", "(info)", median(r_setns), true},
            {"throughput, agent / echo server", ">= 0.5", median(t_ratio), median(t_ratio) >= 0.5},
            {"agent CPU us per request under load", "(info)", median(t_cpu), true},
            {"echo server CPU us per request under load", "(info)", median(t_echo_cpu), true},
            {"agent voluntary switches per request under load", "(info)", median(t_sw), true},
            {"echo server voluntary switches per request under load", "(info)", median(t_echo_sw), true},
            {"RSS per idle worker (KiB)", "<= 64", rss_per_worker, rss_per_worker <= 64},
            {"warm p99, " + std::to_string(o.scale) + " workers / 1 worker", "<= 2",
             percentile(many, 0.99) / percentile(one_worker, 0.99), percentile(many, 0.99) / percentile(one_worker, 0.99) <= 2},
            {"first request p50 / in-process thread+setns p50", "<= 2", percentile(first, 0.5) / percentile(spawn_ref, 0.5),
             percentile(first, 0.5) / percentile(spawn_ref, 0.5) <= 2},
            {"threads with " + std::to_string(o.scale) + " workers - (base + workers)", "== 0",
             static_cast<double>(full.threads - expected_threads), full.threads == expected_threads},
            {"errors (throughput + churn)", "== 0", static_cast<double>(load_errors + churn_errors),
             load_errors + churn_errors == 0},
        };
        std::printf("\n| target | want | measured | met |\n|---|---|---|---|\n");
        for (auto& t : ts) {
            std::printf("| %s | %s | %s | %s |\n", t.metric.c_str(), t.want.c_str(),
                        std::isnan(t.value) ? "not built" : fmt(t.value, 2).c_str(),
                        t.want == "(info)" ? "" : (t.met ? "yes" : "**no**"));
            if (!std::isnan(t.value))
                out["target." + t.metric] = t.value;
        }
        // Errors are correctness, not speed: they fail the run (and the CI smoke test).
        if (load_errors + churn_errors != 0 || full.threads != expected_threads)
            failures = 1;
        std::printf("\nmachine: %ld CPUs, load average at end: ", ::sysconf(_SC_NPROCESSORS_ONLN));
        std::ifstream la("/proc/loadavg");
        std::string l;
        std::getline(la, l);
        std::printf("%s\n", l.c_str());

        if (!o.json_path.empty()) {
            std::ofstream j(o.json_path);
            j << "{";
            bool firstkey = true;
            for (auto& [k, v] : out) {
                j << (firstkey ? "" : ",") << "\n  \"" << k << "\": " << (std::isfinite(v) ? fmt(v, 3) : "null");
                firstkey = false;
            }
            j << "\n}\n";
        }
        if (!o.chart_path.empty()) {
            std::string data = dir + "/chart.dat";
            std::ofstream d(data);
            int i = 0;
            for (auto& r : rows)
                d << i++ << " \"" << r.name << "\" " << median(r.p50) << "\n";
            d.close();
            std::string plot = "set terminal svg size 900,620; set bmargin 14; set output '" + o.chart_path +
                               "'; set style fill solid; set boxwidth 0.6; set logscale y; set ylabel 'p50 latency (us, log)';"
                               " set xtics rotate by -30; unset key; set title 'nsbench: p50 per request, same run';"
                               " plot '" + data + "' using 1:3:xtic(2) with boxes";
            if (run_quiet({"gnuplot", "-e", plot}) != 0)
                std::fprintf(stderr, "nsbench: chart skipped (gnuplot not installed or failed)\n");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nsbench: %s\n", e.what());
        failures = 1;
    }
    (void)!std::system(("rm -rf " + dir).c_str());
    return failures;
}
