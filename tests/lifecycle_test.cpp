// Never keep a dead container's namespace alive: when every way a worker was reached is gone,
// the worker retires and the kernel frees the namespace. Proved end to end with a veth whose
// peer sits in the host: it disappears only when nothing pins the namespace any more.
#include "worker_pool.hpp"

#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <map>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class Lifecycle : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: namespaces and veth pairs";
        static int serial = 0;
        peer_ = "nsat" + std::to_string(::getpid() % 100000) + "l" + std::to_string(serial++ % 1000);
    }
    void TearDown() override { sh("ip link del " + peer_ + " 2>/dev/null"); }
    bool peer_exists() const { return sh("ip link show " + peer_ + " >/dev/null 2>&1") == 0; }
    // Polls with a generous deadline (not a timing test) and reports how long it took.
    bool peer_gone_within(std::chrono::seconds limit)
    {
        auto start = std::chrono::steady_clock::now();
        bool gone = wait_until([&] { return !peer_exists(); }, limit);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
        RecordProperty("peer_gone_ms", static_cast<int>(ms));
        std::printf("veth peer gone after %lld ms\n", static_cast<long long>(ms));
        return gone;
    }
    std::string peer_;
};

TEST_F(Lifecycle, DeletingANamedNamespaceFreesItDespiteTheAgentHavingServedIt)
{
    auto n = std::make_unique<netns>();
    ASSERT_EQ(sh("ip -n " + n->name() + " link add c0 type veth peer name " + peer_ + " netns " + std::to_string(::getpid())), 0);
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n->name())).ok());
    ASSERT_TRUE(peer_exists());
    n.reset(); // ip netns del
    EXPECT_TRUE(peer_gone_within(std::chrono::seconds(10))) << "the agent still pins the namespace";
    EXPECT_TRUE(wait_until([&] { return stats(c).at("workers").as_array().empty(); }));
    EXPECT_EQ(stats(c).at("retired").at("anchor_gone").as_int64(), 1);
}

TEST_F(Lifecycle, AnExitedProcessFreesItsNamespace)
{
    holder h("exec unshare -n sh -c 'echo ready; exec sleep 600'");
    ASSERT_EQ(sh("ip link add " + peer_ + " type veth peer name c0 netns " + std::to_string(h.pid())), 0);
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", pid_ns("net", h.pid())).ok());
    h.kill_now();
    EXPECT_TRUE(peer_gone_within(std::chrono::seconds(10))) << "the agent still pins the namespace";
    EXPECT_EQ(stats(c).at("retired").at("anchor_gone").as_int64(), 1);
}

// The inverse: a socket the client got from the agent is the client's pin, not the agent's.
TEST_F(Lifecycle, ASocketHandedToAClientKeepsTheNamespaceUntilTheClientClosesIt)
{
    auto n = std::make_unique<netns>();
    ASSERT_EQ(sh("ip -n " + n->name() + " link add c0 type veth peer name " + peer_ + " netns " + std::to_string(::getpid())), 0);
    agent_process a;
    auto c = a.connect();
    auto f = c.call({{"op", "net.socket"}, {"ns", net_ns(n->name())}, {"args", {{"bind", "127.0.0.1:0"}}}}, {}, 10000);
    ASSERT_TRUE(f && f->ok());
    n.reset();
    ASSERT_TRUE(wait_until([&] { return stats(c).at("workers").as_array().empty(); })) << "the agent let go";
    EXPECT_TRUE(peer_exists()) << "the client's socket still holds the namespace";
    f->fds.clear();
    EXPECT_TRUE(peer_gone_within(std::chrono::seconds(10)));
}

TEST_F(Lifecycle, AWorkerReachedTwoWaysStaysUntilBothAreGone)
{
    holder h("exec unshare -n sh -c 'echo ready; exec sleep 600'");
    std::string name = unique_name("pin");
    // Name the holder's namespace in /run/netns too, then reach it both ways.
    ASSERT_EQ(sh("touch /run/netns/" + name + " && mount --bind /proc/" + std::to_string(h.pid()) + "/ns/net /run/netns/" + name), 0);
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", pid_ns("net", h.pid())).ok());
    ASSERT_TRUE(call(c, "ns.ping", net_ns(name)).ok());
    h.kill_now();
    // The name still holds it: the worker stays (a few round trips give the agent's loop time
    // to see the pidfd turn readable).
    for (int i = 0; i < 5; ++i)
        ASSERT_TRUE(call(c, "agent.ping").ok());
    EXPECT_EQ(stats(c).at("workers").as_array().size(), 1u);
    sh("ip netns del " + name);
    EXPECT_TRUE(wait_until([&] { return stats(c).at("workers").as_array().empty(); }));
}

} // namespace

namespace {

TEST_F(Lifecycle, RequestsQueuedWhenTheNamespaceGoesAwayGetNsNotFound)
{
    holder h("exec unshare -n sh -c 'echo ready; exec sleep 600'");
    agent_process a;
    auto c = a.connect();
    auto ns = json::serialize(pid_ns("net", h.pid()));
    // One op keeps the worker busy while two more wait in its queue; then the process dies.
    ASSERT_FALSE(c.send_line(R"({"id":1,"op":"test.sleep","args":{"ms":1500},"ns":)" + ns + "}"));
    ASSERT_FALSE(c.send_line(R"({"id":2,"op":"ns.ping","ns":)" + ns + "}"));
    ASSERT_FALSE(c.send_line(R"({"id":3,"op":"ns.ping","ns":)" + ns + "}"));
    auto observer = a.connect();
    // The sleep is running (not queued) and the two pings wait behind it.
    ASSERT_TRUE(wait_until([&] {
        auto s = stats(observer);
        auto& ws = s.at("workers").as_array();
        return ws.size() == 1 && ws[0].at("active").as_int64() == 3 && ws[0].at("queue_depth").as_int64() == 2;
    }));
    h.kill_now();
    std::map<std::int64_t, std::string> codes;
    for (int i = 0; i < 3; ++i) {
        auto f = c.next_frame(10000);
        ASSERT_TRUE(f);
        codes[f->value.at("id").as_int64()] = f->error_code();
    }
    EXPECT_EQ(codes[2], "ns_not_found");
    EXPECT_EQ(codes[3], "ns_not_found");
    EXPECT_EQ(codes[1], "") << "the running op finishes";
}

} // namespace
