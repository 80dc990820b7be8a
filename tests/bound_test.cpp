// Namespace-bound connections (agent.bind): after the bind, the connection is served by its
// namespace's worker; requests take no "ns", run there, and the connection ends with the worker.
#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class Bound : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: network and mount namespaces";
    }
};

TEST_F(Bound, RequestsRunOnTheNamespacesWorkerAndTakeNoNs)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto bind = call(c, "agent.bind", net_ns(n.name()));
    ASSERT_TRUE(bind.ok()) << json::serialize(bind.value);
    auto tid = bind.value.at("result").at("tid").as_int64();
    for (int i = 0; i < 3; ++i) {
        auto p = call(c, "ns.ping");
        ASSERT_TRUE(p.ok()) << json::serialize(p.value);
        EXPECT_EQ(p.value.at("result").at("tid").as_int64(), tid) << "served by the namespace's one worker";
        EXPECT_EQ(u64(p.value.at("result").at("ino")), n.ino());
    }
    auto links = call(c, "net.links");
    ASSERT_TRUE(links.ok());
    EXPECT_NE(json::serialize(links.value).find("\"lo\""), std::string::npos);
    auto other = a.connect();
    auto st = stats(other);
    EXPECT_EQ(st.at("bound_connections").as_int64(), 1);
    EXPECT_EQ(st.at("workers").as_array().size(), 1u);
    EXPECT_EQ(st.at("connections").as_int64(), 2);
}

TEST_F(Bound, WhatABoundConnectionCannotDoIsRefusedWithTheReason)
{
    netns n, m;
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "agent.bind", net_ns(n.name())).ok());
    auto with_ns = call(c, "ns.ping", net_ns(m.name()));
    EXPECT_EQ(with_ns.error_code(), "bad_request");
    EXPECT_NE(with_ns.error_message().find("bound to net:["), std::string::npos) << with_ns.error_message();
    auto loop_op = call(c, "agent.stats");
    EXPECT_EQ(loop_op.error_code(), "bad_request");
    EXPECT_NE(loop_op.error_message().find("not available on a bound connection"), std::string::npos);
    EXPECT_EQ(call(c, "fs.stat", {}, {{"path", "/"}}).error_code(), "ns_type_mismatch");
    EXPECT_EQ(call(c, "no.such.op").error_code(), "unknown_op");
    EXPECT_EQ(call(c, "ns.ping").error_code(), "") << "and the connection still serves";
}

// A client may pipeline: requests sent right behind agent.bind, before its reply, run bound.
TEST_F(Bound, RequestsPipelinedBehindTheBindAreServedInOrder)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    std::string burst = R"({"id":1,"op":"agent.bind","ns":{"type":"net","name":")" + n.name() + "\"}}\n";
    for (int i = 2; i <= 4; ++i)
        burst += R"({"id":)" + std::to_string(i) + R"(,"op":"ns.ping"})" + "\n";
    ASSERT_EQ(::send(c.native_handle(), burst.data(), burst.size(), MSG_NOSIGNAL), static_cast<ssize_t>(burst.size()));
    for (int i = 1; i <= 4; ++i) {
        auto f = c.next_frame(10000);
        ASSERT_TRUE(f) << f.error().message();
        EXPECT_EQ(f->value.at("id").as_int64(), i);
        EXPECT_TRUE(f->ok()) << json::serialize(f->value);
    }
}

TEST_F(Bound, FdsTravelBothWays)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "agent.bind", net_ns(n.name())).ok());
    auto s = c.call({{"op", "net.socket"}, {"args", {{"type", "dgram"}}}}, {}, 10000);
    ASSERT_TRUE(s && s->ok()) << (s ? json::serialize(s->value) : s.error().message());
    ASSERT_EQ(s->fds.size(), 1u) << "the socket made inside the namespace comes back";
    // A request that declares an fd it does not pass is refused, and the connection goes on.
    auto wrong = c.call({{"op", "ns.ping"}, {"fds", 1}}, {}, 10000);
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->error_code(), "bad_request");
    EXPECT_TRUE(call(c, "ns.ping").ok());
}

TEST_F(Bound, ReleasingTheNamespaceClosesTheBoundConnectionAndLeavesNothing)
{
    netns n;
    agent_process a;
    auto probe = a.connect();
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1; }));
    long threads = a.thread_count();
    int fds = a.fd_count();
    {
        auto c = a.connect();
        ASSERT_TRUE(call(c, "agent.bind", net_ns(n.name())).ok());
        ASSERT_TRUE(call(c, "ns.ping").ok());
        EXPECT_EQ(a.thread_count(), threads + 1);
        ASSERT_TRUE(call(probe, "ns.release", net_ns(n.name())).ok());
        auto end = c.next_frame(10000);
        EXPECT_FALSE(end) << "the bound connection closes with its worker";
    }
    ASSERT_TRUE(wait_until([&] {
        auto st = stats(probe);
        return st.at("connections").as_int64() == 1 && st.at("bound_connections").as_int64() == 0 &&
               a.thread_count() == threads;
    }));
    EXPECT_EQ(a.fd_count(), fds);
}

TEST_F(Bound, AClientThatClosesEndsItsSessionButNotTheWorker)
{
    netns n;
    agent_process a;
    auto probe = a.connect();
    {
        auto c = a.connect();
        ASSERT_TRUE(call(c, "agent.bind", net_ns(n.name())).ok());
    }
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("bound_connections").as_int64() == 0; }));
    EXPECT_EQ(stats(probe).at("workers").as_array().size(), 1u) << "the worker stays for the next client";
    EXPECT_TRUE(call(probe, "ns.ping", net_ns(n.name())).ok());
}

TEST_F(Bound, ShutdownClosesBoundConnectionsAndExitsZero)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "agent.bind", net_ns(n.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping").ok());
    EXPECT_EQ(a.terminate(), 0);
    EXPECT_FALSE(c.next_frame(5000));
}

// The policy and the fs identity hold on bound connections as on any other.
TEST_F(Bound, PolicyAndFsIdentityApply)
{
    mount_holder m(false);
    agent_process a({{"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read"}}}}}});
    open_to_everyone(a);
    auto root = a.connect();
    auto secret = m.dir() + "/secret";
    ASSERT_TRUE(call(root, "fs.write", pid_ns("mnt", m.pid()), {{"path", secret}, {"data_b64", "eA=="}, {"mode", "600"}}).ok());
    auto mnt = pid_ns("mnt", m.pid());
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        auto code = [&](json::object req) {
            auto f = c.call(std::move(req), {}, 10000);
            return f ? f->error_code() : std::string("transport");
        };
        out["bind-mnt"] = code({{"op", "agent.bind"}, {"ns", mnt}});
        out["read-secret"] = code({{"op", "fs.read"}, {"args", {{"path", secret}}}});
        out["read-marker"] = code({{"op", "fs.read"}, {"args", {{"path", m.marker()}}}});
        out["write"] = code({{"op", "fs.mkdir"}, {"args", {{"path", m.dir() + "/d"}}}});
    }, a);
    EXPECT_EQ(r["bind-mnt"], "");
    EXPECT_EQ(r["read-secret"], "os_error");
    EXPECT_EQ(r["read-marker"], "");
    EXPECT_EQ(r["write"], "permission_denied");
}

} // namespace
