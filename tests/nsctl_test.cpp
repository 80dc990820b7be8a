// nsctl against a running agent: output, --json placement, and exit statuses.
#include "support/test_env.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <thread>

namespace json = boost::json;
using namespace nsagent::test;
using nsagent::unique_fd;

namespace {

struct run_result {
    int rc;
    std::string out;
};

run_result nsctl(const std::string& socket, const std::string& args)
{
    auto out = sh_out("NSAGENT_SOCKET=" + socket + " " + NSAGENT_NSCTL + " " + args + " 2>&1; echo \"rc=$?\"");
    auto pos = out.rfind("rc=");
    return {std::stoi(out.substr(pos + 3)), out.substr(0, pos)};
}

class Nsctl : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: namespaces and setns";
    }
};

TEST_F(Nsctl, StatsAfterPingingThreeNamespacesShowsThreeWorkers)
{
    netns n1, n2, n3;
    agent_process a;
    for (auto* n : {&n1, &n2, &n3}) {
        auto r = nsctl(a.socket(), "ns ping " + n->name());
        EXPECT_EQ(r.rc, 0) << r.out;
        EXPECT_NE(r.out.find(std::to_string(n->ino())), std::string::npos) << r.out;
    }
    ASSERT_TRUE(wait_until([&] { return a.thread_count() > 0; }));
    auto r = nsctl(a.socket(), "--json stats");
    ASSERT_EQ(r.rc, 0) << r.out;
    auto s = json::parse(r.out).as_object();
    EXPECT_EQ(s.at("workers").as_array().size(), 3u);
    EXPECT_EQ(s.at("threads").as_int64(), s.at("base_threads").as_int64() + 3);
    auto human = nsctl(a.socket(), "stats");
    EXPECT_NE(human.out.find("3 workers"), std::string::npos) << human.out;
}

TEST_F(Nsctl, JsonIsAcceptedBeforeOrAfterTheCommand)
{
    agent_process a;
    auto before = nsctl(a.socket(), "--json ping");
    auto after = nsctl(a.socket(), "ping --json");
    EXPECT_EQ(before.rc, 0);
    EXPECT_EQ(before.out, "{\"pong\":true}\n");
    EXPECT_EQ(after.out, before.out);
    netns n;
    auto nested = nsctl(a.socket(), "ns ping " + n.name() + " --json");
    ASSERT_EQ(nested.rc, 0) << nested.out;
    EXPECT_EQ(json::parse(nested.out).at("ino"), json::value(std::to_string(n.ino())));
}

TEST_F(Nsctl, ExitStatusesSayWhatWentWrong)
{
    agent_process a;
    auto missing = nsctl(a.socket(), "ns ping nsat-missing-ns");
    EXPECT_EQ(missing.rc, 1);
    EXPECT_NE(missing.out.find("ns_not_found"), std::string::npos) << missing.out;
    EXPECT_NE(missing.out.find("ENOENT"), std::string::npos) << missing.out;

    auto usage = nsctl(a.socket(), "ns ping --type mnt blue");
    EXPECT_EQ(usage.rc, 2);
    EXPECT_NE(usage.out.find("network namespaces only"), std::string::npos) << usage.out;
    EXPECT_EQ(nsctl(a.socket(), "no-such-command").rc, 2);
    EXPECT_EQ(nsctl(a.socket(), "").rc, 2);

    auto unreachable = nsctl("/tmp/nsat-nobody-listens.sock", "ping");
    EXPECT_EQ(unreachable.rc, 3);
    EXPECT_NE(unreachable.out.find("cannot reach the agent"), std::string::npos) << unreachable.out;
}

TEST_F(Nsctl, MountNamespacesAreNamedByPidOrPath)
{
    mount_holder h(true);
    agent_process a;
    auto r = nsctl(a.socket(), "--json ns ping --type mnt pid:" + std::to_string(h.pid()));
    ASSERT_EQ(r.rc, 0) << r.out;
    EXPECT_EQ(json::parse(r.out).at("ino"), json::value(std::to_string(h.ino())));
    auto p = nsctl(a.socket(), "--json ns ping /proc/" + std::to_string(h.pid()) + "/ns/mnt");
    ASSERT_EQ(p.rc, 0) << p.out;
    EXPECT_EQ(json::parse(p.out).at("ino"), json::value(std::to_string(h.ino())));
}

TEST_F(Nsctl, LsAndReleaseWork)
{
    netns n;
    agent_process a;
    ASSERT_EQ(nsctl(a.socket(), "ns ping " + n.name()).rc, 0);
    auto ls = nsctl(a.socket(), "ls");
    ASSERT_EQ(ls.rc, 0) << ls.out;
    EXPECT_NE(ls.out.find(n.name()), std::string::npos) << ls.out;
    EXPECT_NE(ls.out.find("TYPE"), std::string::npos);
    auto rel = nsctl(a.socket(), "ns release " + n.name());
    EXPECT_EQ(rel.rc, 0);
    EXPECT_NE(rel.out.find("worker released"), std::string::npos) << rel.out;
}

TEST(NsctlHelp, HelpTeachesTheNsForms)
{
    auto r = nsctl("/nonexistent", "--help");
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("pid:PID"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Exit status"), std::string::npos) << r.out;
}

} // namespace

namespace {

// nsctl net forward: several connections at once, each moving a multi-megabyte payload both
// ways, through an echo server that lives inside the namespace (its listening socket comes from
// the agent's net.socket, so it is the namespace's).
TEST_F(Nsctl, ForwardMovesMegabytesBothWaysIntactOverSeveralConnections)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto ls = c.call({{"op", "net.socket"}, {"ns", net_ns(n.name())}, {"args", {{"bind", "127.0.0.1:0"}, {"listen", 16}}}},
                     {}, 10000);
    ASSERT_TRUE(ls && ls->ok());
    std::string inside(ls->value.at("result").at("local").as_string());
    int lfd = ls->fds[0].get();
    timeval accept_limit{20, 0}; // a broken relay fails the test instead of hanging it
    ::setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &accept_limit, sizeof accept_limit);

    // Echo server: one thread per accepted connection, bounded by the test's connection count.
    constexpr int conns = 4;
    constexpr std::size_t size = 4 << 20;
    std::vector<std::thread> echo;
    std::atomic<int> accepted{0};
    std::thread acceptor([&] {
        for (int i = 0; i < conns + 1; ++i) {
            int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0)
                return;
            ++accepted;
            echo.emplace_back([fd] {
                nsagent::unique_fd s(fd);
                std::vector<char> buf(1 << 16);
                for (;;) {
                    ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
                    if (r <= 0)
                        break;
                    for (ssize_t off = 0; off < r;) {
                        ssize_t w = ::send(fd, buf.data() + off, static_cast<size_t>(r - off), MSG_NOSIGNAL);
                        if (w <= 0)
                            return;
                        off += w;
                    }
                }
                ::shutdown(fd, SHUT_WR);
            });
        }
    });

    // nsctl forward, on a free local port it reports.
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    pid_t fwd = ::fork();
    if (fwd == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::dup2(out[1], 1);
        ::setenv("NSAGENT_SOCKET", a.socket().c_str(), 1);
        ::execl(NSAGENT_NSCTL, "nsctl", "net", "forward", n.name().c_str(), "--to", inside.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    std::string first;
    char ch;
    while (::read(out[0], &ch, 1) == 1 && ch != '\n')
        first += ch;
    ::close(out[0]);
    ASSERT_EQ(first.rfind("forwarding 127.0.0.1:", 0), 0u) << first;
    int port = std::stoi(first.substr(21, first.find(' ', 21) - 21));
    auto dial = [port] {
        nsagent::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(static_cast<std::uint16_t>(port));
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        timeval tv{20, 0};
        ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0)
            s.reset();
        return s;
    };
    // A connection that stays idle must not stall the others: the relay never blocks its loop.
    auto idle = dial();
    ASSERT_TRUE(idle);
    ASSERT_TRUE(wait_until([&] { return accepted == 1; }));

    std::vector<std::thread> clients;
    std::atomic<int> intact{0};
    for (int i = 0; i < conns; ++i)
        clients.emplace_back([&, i] {
            std::vector<char> data(size);
            std::uint32_t x = 2463534242u + static_cast<std::uint32_t>(i);
            for (auto& b : data) { // xorshift: a payload no two connections share
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b = static_cast<char>(x);
            }
            auto s = dial();
            if (!s)
                return;
            std::thread writer([&] {
                for (std::size_t off = 0; off < size;) {
                    ssize_t w = ::send(s.get(), data.data() + off, size - off, MSG_NOSIGNAL);
                    if (w <= 0)
                        return;
                    off += static_cast<std::size_t>(w);
                }
                ::shutdown(s.get(), SHUT_WR); // half-close must travel through the relay
            });
            std::vector<char> got;
            got.reserve(size);
            std::vector<char> buf(1 << 16);
            for (;;) {
                ssize_t r = ::recv(s.get(), buf.data(), buf.size(), 0);
                if (r <= 0)
                    break;
                got.insert(got.end(), buf.begin(), buf.begin() + r);
            }
            writer.join();
            if (got == data)
                ++intact;
        });
    for (auto& t : clients)
        t.join();
    idle.reset(); // its echo thread sees the end of stream
    acceptor.join();
    for (auto& t : echo)
        t.join();
    EXPECT_EQ(intact, conns);

    ::kill(fwd, SIGINT);
    int st = 0;
    ASSERT_TRUE(wait_until([&] { return ::waitpid(fwd, &st, WNOHANG) == fwd; }));
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "Ctrl-C stops it cleanly";
}

} // namespace

namespace {

TEST_F(Nsctl, FsPutGetCatAndLsWorkOnAMountNamespace)
{
    mount_holder h(true);
    agent_process a;
    auto ns = "pid:" + std::to_string(h.pid());
    std::string local = "/tmp/" + unique_name("put");
    // Big enough to take the fs.open + rename path, not fs.write.
    ASSERT_EQ(sh("head -c 3000000 /dev/urandom > " + local), 0);
    auto put = nsctl(a.socket(), "fs put " + ns + " " + local + " " + h.dir() + "/big");
    ASSERT_EQ(put.rc, 0) << put.out;
    auto get = nsctl(a.socket(), "fs get " + ns + " " + h.dir() + "/big " + local + ".back");
    ASSERT_EQ(get.rc, 0) << get.out;
    EXPECT_EQ(sh("cmp -s " + local + " " + local + ".back"), 0) << "the bytes came back intact";
    auto cat = nsctl(a.socket(), "fs cat " + ns + " " + h.marker());
    EXPECT_EQ(cat.rc, 0);
    EXPECT_EQ(cat.out, "hi\n");
    auto ls = nsctl(a.socket(), "fs ls " + ns + " " + h.dir());
    EXPECT_NE(ls.out.find("big"), std::string::npos) << ls.out;
    EXPECT_NE(ls.out.find("-rw-r--r--"), std::string::npos) << ls.out;
    EXPECT_EQ(ls.out.find(".nsagent-tmp"), std::string::npos) << "no temporary left: " << ls.out;
    auto probe = a.connect();
    EXPECT_EQ(stats(probe).at("binds").as_int64(), 1) << "fs ls, many calls to one namespace, binds its connection";
    auto bad = nsctl(a.socket(), "fs ls blue /");
    EXPECT_EQ(bad.rc, 2);
    EXPECT_NE(bad.out.find("pid:PID"), std::string::npos) << bad.out;
    sh("rm -f " + local + " " + local + ".back");
}

} // namespace

namespace {

TEST_F(Nsctl, TopOnceShowsAWorkerRowForANamespaceJustUsedAndLsSaysWhoPinsIt)
{
    netns n;
    agent_process a;
    ASSERT_EQ(nsctl(a.socket(), "ns ping " + n.name()).rc, 0);
    auto top = nsctl(a.socket(), "top --once");
    ASSERT_EQ(top.rc, 0) << top.out;
    EXPECT_NE(top.out.find("threads"), std::string::npos) << top.out;
    EXPECT_NE(top.out.find("net:[" + std::to_string(n.ino()) + "]"), std::string::npos) << top.out;
    EXPECT_NE(top.out.find("CPU%"), std::string::npos) << top.out;
    auto ls = nsctl(a.socket(), "ls");
    std::istringstream lines(ls.out);
    std::string line;
    bool found = false;
    while (std::getline(lines, line))
        if (line.find(std::to_string(n.ino())) != std::string::npos) {
            found = true;
            EXPECT_NE(line.find("bind_mount,agent"), std::string::npos) << line;
            EXPECT_NE(line.find("tid "), std::string::npos) << line;
        }
    EXPECT_TRUE(found) << ls.out;
}

} // namespace

namespace {

// nsctl doctor: every task in the agent's namespaces or a live worker in its target; a worker
// that wandered off (the test-only fault op) is named, and the exit status says so.
TEST_F(Nsctl, DoctorChecksEveryThreadsNamespacesAndNamesAWanderer)
{
    netns n1, n2;
    mount_holder m(false);
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n1.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n2.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", pid_ns("mnt", m.pid())).ok());
    auto good = nsctl(a.socket(), "doctor");
    EXPECT_EQ(good.rc, 0) << good.out;
    EXPECT_NE(good.out.find("3 live workers, 0 problems"), std::string::npos) << good.out;
    EXPECT_NE(good.out.find("worker mnt:[" + std::to_string(m.ino()) + "]"), std::string::npos) << good.out;

    // test.wander moves n1's worker back to the agent's own network namespace; it retires
    // only when its next request comes, so doctor sees it in the wrong place now.
    auto tid = result_of(call(c, "ns.ping", net_ns(n1.name()))).at("tid").as_int64();
    ASSERT_TRUE(call(c, "test.wander", net_ns(n1.name())).ok());
    auto bad = nsctl(a.socket(), "doctor");
    EXPECT_EQ(bad.rc, 1) << bad.out;
    EXPECT_NE(bad.out.find(std::to_string(tid)), std::string::npos);
    EXPECT_NE(bad.out.find("WRONG: should be net:[" + std::to_string(n1.ino()) + "]"), std::string::npos) << bad.out;
    EXPECT_NE(bad.out.find("1 problem"), std::string::npos) << bad.out;
}

} // namespace

namespace {

// nsctl pkt capture writes a pcap that tshark reads and prints the flow table; nsctl pkt
// analyze reads the same file back to the same totals.
TEST_F(Nsctl, PktCaptureWritesAPcapAndAnalyzeReadsItBack)
{
    if (sh("command -v tshark >/dev/null") != 0)
        GTEST_SKIP() << "tshark is not installed (.ci/setup installs it)";
    netns n;
    ASSERT_EQ(sh("ip -n " + n.name() + " link set lo up"), 0);
    agent_process a;
    std::string file = "/tmp/" + unique_name("cap") + ".pcap";
    // A sender bounded in count and time (50 datagrams, 5 s); the capture stops itself at 5.
    std::string sender = "timeout 10 ip netns exec " + n.name() +
                         " python3 -c \"import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                         "for i in range(50): s.sendto(b'q'*40,('127.0.0.1',5558)); time.sleep(0.1)\" &";
    ASSERT_EQ(sh(sender), 0);
    auto cap = nsctl(a.socket(), "pkt capture " + n.name() + " -i lo -c 5 -f 'udp port 5558' -w " + file);
    EXPECT_EQ(cap.rc, 0) << cap.out;
    EXPECT_NE(cap.out.find("127.0.0.1:5558"), std::string::npos) << cap.out;
    EXPECT_NE(cap.out.find("stopped: count"), std::string::npos) << cap.out;
    EXPECT_EQ(sh_out("tshark -r " + file + " 2>/dev/null | wc -l"), "5\n");
    auto ana = nsctl(a.socket(), "--json pkt analyze " + file + " --engine cpu");
    EXPECT_EQ(ana.rc, 0) << ana.out;
    auto v = boost::json::parse(ana.out).as_object();
    EXPECT_EQ(v.at("totals").at("udp").to_number<int>(), 5);
    EXPECT_EQ(v.at("engine"), "cpu");
    auto missing = nsctl(a.socket(), "pkt capture " + n.name() + " -i nosuch0 -c 1");
    EXPECT_EQ(missing.rc, 1) << missing.out;
    EXPECT_NE(missing.out.find("nosuch0"), std::string::npos) << missing.out;
    ::unlink(file.c_str());
}

} // namespace
