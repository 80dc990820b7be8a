// Against a running agent (nsagentd-test) and real namespaces.
#include "agent.hpp"

#include "support/test_env.hpp"

#include "nsagent/protocol.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class Agent : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: namespaces and setns";
    }
};

std::int64_t tid_of(const frame& f)
{
    return result_of(f).at("tid").as_int64();
}

json::object worker_of(client& c, std::uint64_t ino)
{
    auto s = stats(c);
    for (auto& w : s.at("workers").as_array())
        if (u64(w.at("ns").at("ino")) == ino)
            return w.as_object();
    return {};
}

// Sends raw lines (pipelined) and collects `n` frames in arrival order.
std::vector<frame> pipeline(client& c, const std::vector<std::string>& lines, std::size_t n)
{
    for (auto& l : lines)
        EXPECT_FALSE(c.send_line(l));
    std::vector<frame> out;
    while (out.size() < n) {
        auto f = c.next_frame(20000);
        if (!f) {
            ADD_FAILURE() << "transport: " << f.error().message();
            break;
        }
        out.push_back(std::move(*f));
    }
    return out;
}

const frame* by_id(const std::vector<frame>& fs, const json::value& id)
{
    for (auto& f : fs)
        if (f.value.at("id") == id)
            return &f;
    return nullptr;
}

TEST_F(Agent, OneWorkerServesEveryRequestAndEverySelectorOfANamespace)
{
    netns n;
    holder inside("exec ip netns exec " + n.name() + " sh -c 'echo ready; exec sleep 600'");
    agent_process a;
    auto c = a.connect();
    auto first = call(c, "ns.ping", net_ns(n.name()));
    auto r = result_of(first);
    EXPECT_EQ(u64(r.at("ino")), n.ino());
    auto tid = tid_of(first);
    EXPECT_EQ(tid_of(call(c, "ns.ping", net_ns(n.name()))), tid);
    EXPECT_EQ(tid_of(call(c, "ns.ping", {{"path", n.path()}})), tid);
    EXPECT_EQ(tid_of(call(c, "ns.ping", pid_ns("net", inside.pid()))), tid);
    EXPECT_EQ(tid_of(call(c, "ns.ping", {{"type", "net"}, {"path", "/proc/" + std::to_string(inside.pid()) + "/ns/net"}})), tid);
    EXPECT_EQ(stats(c).at("workers").as_array().size(), 1u);
}

TEST_F(Agent, DifferentNamespacesGetDifferentWorkersEachInsideItsTarget)
{
    netns n1, n2;
    agent_process a;
    auto c = a.connect();
    auto r1 = result_of(call(c, "ns.ping", net_ns(n1.name())));
    auto r2 = result_of(call(c, "ns.ping", net_ns(n2.name())));
    EXPECT_NE(r1.at("tid"), r2.at("tid"));
    EXPECT_EQ(u64(r1.at("ino")), n1.ino());
    EXPECT_EQ(u64(r2.at("ino")), n2.ino());
    // The kernel agrees: each worker task's own ns link is its target.
    for (auto& [r, ino] : {std::pair{r1, n1.ino()}, std::pair{r2, n2.ino()}}) {
        struct stat st {};
        auto path = "/proc/" + std::to_string(a.pid()) + "/task/" + std::to_string(r.at("tid").as_int64()) + "/ns/net";
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_EQ(st.st_ino, ino);
    }
}

TEST_F(Agent, AMountWorkerWorksInsideAContainerLikeHolder)
{
    mount_holder plain(false), container(true);
    agent_process a;
    auto c = a.connect();
    for (auto* h : {&plain, &container}) {
        auto ping = result_of(call(c, "ns.ping", pid_ns("mnt", h->pid())));
        EXPECT_EQ(u64(ping.at("ino")), h->ino());
        auto probe = result_of(call(c, "test.probe", pid_ns("mnt", h->pid()), {{"path", h->marker()}}));
        EXPECT_EQ(probe.at("exists"), json::value(true)) << "the worker sees the private tmpfs";
        struct stat st {};
        EXPECT_NE(::stat(h->marker().c_str(), &st), 0) << "the host does not";
    }
    // In the container's procfs the agent's tid does not exist: /proc/thread-self is ENOENT
    // there, which is why workers read through the procfs fd they opened before setns.
    auto probe = result_of(call(c, "test.probe", pid_ns("mnt", container.pid()), {{"path", "/"}}));
    EXPECT_EQ(probe.at("proc_thread_self"), json::value(false));
}

TEST_F(Agent, ANonexistentNamespaceIsNotFoundAndLeavesNoThread)
{
    agent_process a;
    auto c = a.connect();
    auto base = stats(c).at("base_threads").as_int64();
    auto f = call(c, "ns.ping", net_ns("nsat-no-such-namespace"));
    EXPECT_EQ(f.error_code(), "ns_not_found");
    EXPECT_NE(f.error_message().find("nsat-no-such-namespace"), std::string::npos) << f.error_message();
    EXPECT_NE(f.error_message().find("ns.ping"), std::string::npos) << f.error_message();
    pid_t gone = ::fork();
    if (gone == 0)
        ::_exit(0);
    ::waitpid(gone, nullptr, 0);
    auto h = call(c, "ns.ping", pid_ns("net", gone));
    EXPECT_EQ(h.error_code(), "ns_not_found") << h.error_message();
    EXPECT_TRUE(wait_until([&] { return a.thread_count() == base; }));
    EXPECT_TRUE(stats(c).at("workers").as_array().empty());
}

TEST_F(Agent, AFullQueueAnswersBusy)
{
    netns n;
    agent_process a({{"queue_depth", 2}});
    auto c = a.connect();
    auto observer = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    ASSERT_FALSE(c.send_line(R"({"id":1,"op":"test.sleep","args":{"ms":2000},"ns":)" + ns + "}"));
    // Once the sleep runs and the queue is empty, two requests fit and the third is refused.
    ASSERT_TRUE(wait_until([&] {
        auto w = worker_of(observer, n.ino());
        return !w.empty() && w.at("active").as_int64() == 1 && w.at("queue_depth").as_int64() == 0;
    }));
    auto frames = pipeline(c,
                           {R"({"id":2,"op":"ns.ping","ns":)" + ns + "}", R"({"id":3,"op":"ns.ping","ns":)" + ns + "}",
                            R"({"id":4,"op":"ns.ping","ns":)" + ns + "}"},
                           4);
    ASSERT_EQ(frames.size(), 4u);
    EXPECT_EQ(frames[0].value.at("id"), json::value(4)) << "busy is answered at once, not after the queue";
    EXPECT_EQ(frames[0].error_code(), "busy");
    for (int id : {1, 2, 3})
        EXPECT_TRUE(by_id(frames, json::value(id))->ok()) << id;
}

TEST_F(Agent, APastDeadlineAnswersTimeoutAndTheRequestNeverRuns)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok());
    auto ns = json::serialize(net_ns(n.name()));
    auto frames = pipeline(c,
                           {R"({"id":1,"op":"test.sleep","args":{"ms":600},"ns":)" + ns + "}",
                            R"({"id":2,"op":"ns.ping","timeout_ms":50,"ns":)" + ns + "}"},
                           2);
    ASSERT_EQ(frames[0].value.at("id"), json::value(2)) << "the timeout comes before the sleep ends";
    EXPECT_EQ(frames[0].error_code(), "timeout");
    EXPECT_NE(frames[0].error_message().find("queued"), std::string::npos);
    EXPECT_TRUE(frames[1].ok());
    // ops counts what ran: the first ping and the sleep, not the timed-out ping.
    EXPECT_TRUE(wait_until([&] { return worker_of(c, n.ino()).at("active").as_int64() == 0; }));
    EXPECT_EQ(worker_of(c, n.ino()).at("ops").as_int64(), 2);
}

TEST_F(Agent, ADisconnectCancelsQueuedRequests)
{
    netns n;
    agent_process a;
    auto observer = a.connect();
    {
        auto c = a.connect();
        auto ns = json::serialize(net_ns(n.name()));
        ASSERT_FALSE(c.send_line(R"({"id":1,"op":"test.sleep","args":{"ms":1500},"ns":)" + ns + "}"));
        for (int i = 2; i < 6; ++i)
            ASSERT_FALSE(c.send_line(R"({"id":)" + std::to_string(i) + R"(,"op":"ns.ping","ns":)" + ns + "}"));
        // The requests are read before the close is seen: wait until they are in flight.
        ASSERT_TRUE(wait_until([&] { return stats(observer).at("inflight").as_int64() >= 6; }));
    }
    ASSERT_TRUE(wait_until([&] {
        auto w = worker_of(observer, n.ino());
        return !w.empty() && w.at("active").as_int64() == 0;
    }));
    EXPECT_EQ(worker_of(observer, n.ino()).at("ops").as_int64(), 1) << "only the running sleep ran";
}

TEST_F(Agent, CancelEndsAQueuedRequestWithOneFinalFrame)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    auto frames = pipeline(c,
                           {R"({"id":"s","op":"test.sleep","args":{"ms":1500},"ns":)" + ns + "}",
                            R"({"id":"p","op":"ns.ping","ns":)" + ns + "}",
                            R"({"id":"c","op":"agent.cancel","args":{"id":"p"}})",
                            R"({"id":"c2","op":"agent.cancel","args":{"id":"nope"}})"},
                           4);
    EXPECT_EQ(frames[0].value.at("id"), json::value("p"));
    EXPECT_EQ(frames[0].error_code(), "cancelled");
    EXPECT_EQ(result_of(*by_id(frames, json::value("c"))).at("cancelled"), json::value(true));
    EXPECT_EQ(result_of(*by_id(frames, json::value("c2"))).at("cancelled"), json::value(false));
    EXPECT_TRUE(by_id(frames, json::value("s"))->ok());
    // Nothing more for "p": exactly one final frame.
    EXPECT_FALSE(c.next_frame(300));
}

TEST_F(Agent, AWedgedWorkerIsReplacedAndDrainDoesNotWaitForIt)
{
    netns n;
    agent_process a({{"drain_timeout_ms", 500}});
    auto c = a.connect();
    auto before = tid_of(call(c, "ns.ping", net_ns(n.name())));
    auto f = call(c, "test.sleep", net_ns(n.name()), {{"ms", 120000}}, 200);
    EXPECT_EQ(f.error_code(), "timeout");
    EXPECT_NE(f.error_message().find("running"), std::string::npos);
    auto s = stats(c);
    EXPECT_EQ(s.at("wedged").as_int64(), 1);
    auto after = tid_of(call(c, "ns.ping", net_ns(n.name())));
    EXPECT_NE(after, before) << "a fresh worker serves the namespace";
    EXPECT_EQ(stats(c).at("threads").as_int64(), stats(c).at("base_threads").as_int64() + 2)
        << "base + one live worker + one wedged";
    // The wedged op sleeps for two minutes; the drain must not wait for it.
    EXPECT_EQ(a.terminate(std::chrono::seconds(30)), 0) << a.log();
}

TEST_F(Agent, SigtermFinishesInFlightWorkThenExitsZero)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    ASSERT_FALSE(c.send_line(R"({"id":1,"op":"test.sleep","args":{"ms":700},"ns":)" + json::serialize(net_ns(n.name())) + "}"));
    auto observer = a.connect();
    ASSERT_TRUE(wait_until([&] { return !worker_of(observer, n.ino()).empty(); }));
    ::kill(a.pid(), SIGTERM);
    // New requests during the drain are refused; the one in flight completes.
    bool refused = false;
    for (int i = 0; i < 100 && !refused; ++i) {
        auto f = c.call({{"op", "agent.ping"}}, {}, 5000);
        ASSERT_TRUE(f) << f.error().message();
        refused = f->error_code() == "shutting_down";
        if (!refused)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(refused);
    auto done = c.next_frame(10000);
    ASSERT_TRUE(done) << done.error().message();
    EXPECT_EQ(done->value.at("id"), json::value(1));
    EXPECT_TRUE(done->ok());
    EXPECT_EQ(a.wait_exit(std::chrono::seconds(20)), 0) << a.log();
}

TEST_F(Agent, WorkPastTheDrainDeadlineIsAnsweredShuttingDown)
{
    netns n;
    agent_process a({{"drain_timeout_ms", 200}});
    auto c = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    ASSERT_FALSE(c.send_line(R"({"id":1,"op":"test.sleep","args":{"ms":3000},"ns":)" + ns + "}"));
    ASSERT_FALSE(c.send_line(R"({"id":2,"op":"ns.ping","ns":)" + ns + "}"));
    ASSERT_TRUE(wait_until([&] {
        auto o = a.connect();
        return stats(o).at("inflight").as_int64() >= 3;
    }));
    EXPECT_EQ(a.terminate(), 0) << a.log();
    std::set<std::string> codes;
    for (int i = 0; i < 2; ++i) {
        auto f = c.next_frame(5000);
        ASSERT_TRUE(f) << f.error().message();
        codes.insert(f->error_code());
    }
    EXPECT_EQ(codes, (std::set<std::string>{"shutting_down"}));
}

TEST_F(Agent, PipelinedRequestsGetOutOfOrderReplies)
{
    netns slow, fast;
    agent_process a;
    auto c = a.connect();
    auto frames = pipeline(c,
                           {R"({"id":1,"op":"test.sleep","args":{"ms":400},"ns":)" + json::serialize(net_ns(slow.name())) + "}",
                            R"({"id":2,"op":"ns.ping","ns":)" + json::serialize(net_ns(fast.name())) + "}",
                            R"({"id":3,"op":"agent.ping"})"},
                           3);
    EXPECT_EQ(frames.back().value.at("id"), json::value(1));
    for (auto& f : frames)
        EXPECT_TRUE(f.ok());
}

TEST_F(Agent, ThreadsEqualBasePlusWorkersOnceSettled)
{
    netns n1, n2, n3;
    agent_process a;
    auto c = a.connect();
    auto base = stats(c).at("base_threads").as_int64();
    for (auto* n : {&n1, &n2, &n3})
        ASSERT_TRUE(call(c, "ns.ping", net_ns(n->name())).ok());
    EXPECT_TRUE(wait_until([&] { return a.thread_count() == base + 3; }));
    auto s = stats(c);
    EXPECT_EQ(s.at("workers").as_array().size(), 3u);
    EXPECT_EQ(s.at("threads").as_int64(), base + 3);
    ASSERT_TRUE(result_of(call(c, "ns.release", net_ns(n2.name()))).at("released").as_bool());
    EXPECT_FALSE(result_of(call(c, "ns.release", net_ns(n2.name()))).at("released").as_bool());
    EXPECT_TRUE(wait_until([&] { return a.thread_count() == base + 2; }));
}

TEST_F(Agent, IdleWorkersRetire)
{
    netns n;
    agent_process a({{"idle_timeout_s", 1}});
    auto c = a.connect();
    auto base = stats(c).at("base_threads").as_int64();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok());
    EXPECT_TRUE(wait_until([&] { return stats(c).at("workers").as_array().empty(); }, std::chrono::seconds(15)));
    EXPECT_TRUE(wait_until([&] { return a.thread_count() == base; }));
    EXPECT_EQ(stats(c).at("retired").at("idle").as_int64(), 1);
}

TEST_F(Agent, AtMaxWorkersTheLeastRecentlyUsedIdleWorkerRetiresOrTheAnswerIsBusy)
{
    netns n1, n2, n3;
    agent_process a({{"max_workers", 2}});
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n1.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n2.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n1.name())).ok()); // n2 is now the least recently used
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n3.name())).ok());
    auto s = stats(c);
    EXPECT_EQ(s.at("retired").at("lru").as_int64(), 1);
    std::set<std::uint64_t> inos;
    for (auto& w : s.at("workers").as_array())
        inos.insert(u64(w.at("ns").at("ino")));
    EXPECT_EQ(inos, (std::set<std::uint64_t>{n1.ino(), n3.ino()}));

    // Nothing idle to retire: busy.
    auto ns1 = json::serialize(net_ns(n1.name())), ns3 = json::serialize(net_ns(n3.name()));
    auto frames = pipeline(c,
                           {R"({"id":1,"op":"test.sleep","args":{"ms":1500},"ns":)" + ns1 + "}",
                            R"({"id":2,"op":"test.sleep","args":{"ms":1500},"ns":)" + ns3 + "}",
                            R"({"id":3,"op":"ns.ping","ns":)" + json::serialize(net_ns(n2.name())) + "}"},
                           3);
    EXPECT_EQ(by_id(frames, json::value(3))->error_code(), "busy");
}

TEST_F(Agent, AnExceptionInAnOpIsOneInternalReplyAndTheWorkerKeepsServing)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto tid = tid_of(call(c, "ns.ping", net_ns(n.name())));
    auto f = call(c, "test.throw", net_ns(n.name()));
    EXPECT_EQ(f.error_code(), "internal");
    EXPECT_NE(f.error_message().find("test.throw was asked to throw"), std::string::npos);
    EXPECT_EQ(tid_of(call(c, "ns.ping", net_ns(n.name()))), tid);
}

TEST_F(Agent, MalformedLinesGetBadRequestAndTheConnectionStaysOpen)
{
    agent_process a;
    auto c = a.connect();
    auto frames = pipeline(c,
                           {"not json", "[]", R"({"op":"agent.ping"})", R"({"id":5,"op":"agent.ping","args":[]})",
                            R"({"id":6,"op":"agent.ping","timeout_ms":0})", R"({"id":7,"op":"no.such"})",
                            R"({"id":8,"op":"ns.ping"})", R"({"id":9,"op":"agent.ping","ns":{"type":"net","name":"x"}})",
                            "", R"({"id":10,"op":"agent.ping"})"},
                           9);
    std::vector<std::string> codes;
    for (auto& f : frames)
        codes.push_back(f.error_code());
    EXPECT_EQ(codes, (std::vector<std::string>{"bad_request", "bad_request", "bad_request", "bad_request", "bad_request",
                                               "unknown_op", "bad_request", "bad_request", ""}));
    EXPECT_TRUE(frames[0].value.at("id").is_null());
    EXPECT_EQ(frames[3].value.at("id"), json::value(5));
    EXPECT_TRUE(frames.back().ok());
}

TEST_F(Agent, AnOversizeLineIsTooLargeThenTheConnectionCloses)
{
    agent_process a({{"max_request_bytes", 1024}});
    auto c = a.connect();
    std::string big = R"({"id":1,"op":"agent.ping","args":{"pad":")" + std::string(4000, 'x') + "\"}}";
    ASSERT_FALSE(c.send_line(big));
    auto f = c.next_frame(5000);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->error_code(), "too_large");
    auto eof = c.next_frame(5000);
    ASSERT_FALSE(eof);
    EXPECT_EQ(eof.error(), boost::system::error_code(ECONNRESET, boost::system::system_category()));
    // The agent itself is fine.
    auto d = a.connect();
    EXPECT_TRUE(call(d, "agent.ping").ok());
}

TEST_F(Agent, ADuplicateInFlightIdIsRefused)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    auto frames = pipeline(c,
                           {R"({"id":7,"op":"test.sleep","args":{"ms":1500},"ns":)" + ns + "}",
                            R"({"id":7,"op":"agent.ping"})", R"({"id":"7","op":"agent.ping"})"},
                           3);
    EXPECT_EQ(frames[0].error_code(), "bad_request");
    EXPECT_EQ(frames[0].value.at("id"), json::value(7));
    EXPECT_TRUE(frames[1].ok()) << "\"7\" is a different id from 7";
    EXPECT_TRUE(frames[2].ok());
    EXPECT_TRUE(call(c, "agent.ping").ok());
}

TEST_F(Agent, PassedFdsAreCountedAndANamespaceFdSelectsItsWorker)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto tid = tid_of(call(c, "ns.ping", net_ns(n.name())));
    int fds_before = a.fd_count();

    unique_fd nsfd(::open(n.path().c_str(), O_RDONLY | O_CLOEXEC));
    int list[] = {nsfd.get()};
    auto by_fd = c.call({{"op", "ns.ping"}, {"ns", {{"type", "net"}, {"fd", 0}}}}, list, 10000);
    ASSERT_TRUE(by_fd);
    EXPECT_EQ(tid_of(*by_fd), tid);

    // Declared 1, sent none; declared 0, sent one: both bad_request, and the fd is closed.
    ASSERT_FALSE(c.send_line(R"({"id":"m","op":"agent.ping","fds":1})"));
    auto missing = c.next_frame(5000);
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->error_code(), "bad_request");
    ASSERT_FALSE(c.send_line(R"({"id":"x","op":"agent.ping"})", list));
    auto extra = c.next_frame(5000);
    ASSERT_TRUE(extra);
    EXPECT_EQ(extra->error_code(), "bad_request");
    EXPECT_TRUE(wait_until([&] { return a.fd_count() == fds_before; })) << a.fd_count() << " vs " << fds_before;
}

TEST_F(Agent, SelectorGuardsAndTypesAreChecked)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    EXPECT_EQ(call(c, "ns.ping", {{"type", "net"}, {"name", n.name()}, {"ino", "1"}}).error_code(), "ns_mismatch");
    EXPECT_TRUE(call(c, "ns.ping", {{"type", "net"}, {"name", n.name()}, {"ino", std::to_string(n.ino())}}).ok());
    EXPECT_EQ(call(c, "ns.ping", {{"type", "mnt"}, {"path", n.path()}}).error_code(), "ns_type_mismatch");
    EXPECT_EQ(call(c, "ns.ping", {{"path", "/etc/hostname"}}).error_code(), "bad_request");
    EXPECT_TRUE(stats(c).at("workers").as_array().size() == 1);
}

TEST_F(Agent, AHalfClosedClientStillGetsItsReplies)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    ASSERT_FALSE(c.send_line(R"({"id":1,"op":"ns.ping","ns":)" + json::serialize(net_ns(n.name())) + "}"));
    ASSERT_FALSE(c.send_line(R"({"id":2,"op":"agent.ping"})"));
    ::shutdown(c.native_handle(), SHUT_WR); // what socat does at the end of its input
    std::set<std::int64_t> ids;
    for (int i = 0; i < 2; ++i) {
        auto f = c.next_frame(5000);
        ASSERT_TRUE(f);
        EXPECT_TRUE(f->ok());
        ids.insert(f->value.at("id").as_int64());
    }
    EXPECT_EQ(ids, (std::set<std::int64_t>{1, 2}));
}

TEST_F(Agent, HelloListsEveryOpWithItsClass)
{
    agent_process a;
    auto c = a.connect();
    auto r = result_of(call(c, "agent.hello"));
    EXPECT_EQ(r.at("protocol"), json::value(1));
    std::map<std::string, std::string> ops;
    for (auto& o : r.at("ops").as_array())
        ops[std::string(o.at("name").as_string())] = std::string(o.at("class").as_string());
    EXPECT_EQ(ops.at("ns.ping"), "read");
    EXPECT_EQ(ops.at("ns.release"), "write");
    EXPECT_EQ(ops.at("agent.cancel"), "read");
}

TEST_F(Agent, NsListShowsNamesPidsAndWorkers)
{
    netns n;
    holder inside("exec ip netns exec " + n.name() + " sh -c 'echo ready; exec sleep 600'");
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok());
    auto list = call(c, "ns.list");
    ASSERT_TRUE(list.ok());
    const json::object* mine = nullptr;
    int seen = 0;
    for (auto& e : list.value.at("result").as_array())
        if (e.at("type") == json::value("net") && u64(e.at("ino")) == n.ino()) {
            mine = &e.as_object();
            ++seen;
        }
    ASSERT_EQ(seen, 1) << "deduplicated by identity";
    EXPECT_EQ(mine->at("worker"), json::value(true));
    EXPECT_EQ(mine->at("names").as_array(), json::array{json::value(n.name())});
    bool has_pid = false;
    for (auto& p : mine->at("pids").as_array())
        has_pid |= p.as_int64() == inside.pid();
    EXPECT_TRUE(has_pid);
}

TEST_F(Agent, StartupRefusesALiveSocketAndReplacesAStaleOne)
{
    agent_process a;
    // A second agent on the same socket must refuse.
    std::string out = sh_out(std::string(NSAGENT_TEST_AGENT) + " --socket " + a.socket() + " 2>&1; echo rc=$?");
    EXPECT_NE(out.find("another agent is listening"), std::string::npos) << out;
    EXPECT_NE(out.find("rc=1"), std::string::npos) << out;
    auto c = a.connect();
    EXPECT_TRUE(call(c, "agent.ping").ok()) << "the first agent still serves";

    // A socket file nobody listens on is stale and replaced.
    std::string stale = "/tmp/" + unique_name("stale") + ".sock";
    {
        unique_fd s(::socket(AF_UNIX, SOCK_STREAM, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, stale.c_str());
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    }
    std::string out2 = sh_out("timeout --preserve-status -s TERM 1 " + std::string(NSAGENT_TEST_AGENT) + " --socket " + stale + " 2>&1; echo rc=$?");
    EXPECT_NE(out2.find("stale_socket_replaced"), std::string::npos) << out2;
    EXPECT_NE(out2.find("rc=0"), std::string::npos) << out2;
    ::unlink(stale.c_str());

    // A regular file in the way is never deleted.
    std::string file = "/tmp/" + unique_name("file");
    sh("touch " + file);
    std::string out3 = sh_out(std::string(NSAGENT_TEST_AGENT) + " --socket " + file + " 2>&1; echo rc=$?");
    EXPECT_NE(out3.find("not a socket"), std::string::npos) << out3;
    struct stat st {};
    EXPECT_EQ(::stat(file.c_str(), &st), 0);
    ::unlink(file.c_str());
}

TEST_F(Agent, TheSocketIsCreatedWithMode0660)
{
    agent_process a;
    struct stat st {};
    ASSERT_EQ(::stat(a.socket().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST_F(Agent, AnInvalidConfigIsAClearStartupError)
{
    std::string cfg = "/tmp/" + unique_name("cfg") + ".json";
    sh("echo '{\"queue_depht\": 3}' > " + cfg);
    std::string out = sh_out(std::string(NSAGENT_TEST_AGENT) + " --socket /tmp/" + unique_name("s") + ".sock --config " + cfg +
                             " 2>&1; echo rc=$?");
    ::unlink(cfg.c_str());
    EXPECT_NE(out.find("unknown key \"queue_depht\""), std::string::npos) << out;
    EXPECT_NE(out.find("rc=1"), std::string::npos) << out;
}

} // namespace

namespace {

TEST_F(Agent, AWorkerThatFindsItselfElsewhereRetiresAndAFreshOneServes)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto before = tid_of(call(c, "ns.ping", net_ns(n.name())));
    ASSERT_TRUE(call(c, "test.wander", net_ns(n.name())).ok());
    auto after = call(c, "ns.ping", net_ns(n.name()));
    EXPECT_NE(tid_of(after), before);
    EXPECT_EQ(u64(result_of(after).at("ino")), n.ino()) << "served from inside the target, never from elsewhere";
    EXPECT_EQ(stats(c).at("retired").at("misplaced").as_int64(), 1);
    auto base = stats(c).at("base_threads").as_int64();
    EXPECT_TRUE(wait_until([&] { return a.thread_count() == base + 1; }));
}

TEST_F(Agent, AConnectionAtMaxInflightIsNotReadUntilRepliesDrain)
{
    netns n;
    agent_process a({{"max_inflight_per_connection", 2}});
    auto c = a.connect();
    auto observer = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    std::vector<std::string> lines;
    for (int i = 0; i < 6; ++i)
        lines.push_back(R"({"id":)" + std::to_string(i) + R"(,"op":"test.sleep","args":{"ms":150},"ns":)" + ns + "}");
    for (auto& l : lines)
        ASSERT_FALSE(c.send_line(l));
    // While the six are answered, never more than two of them are in flight (plus the
    // observer's own stats request).
    std::int64_t most = 0;
    std::vector<frame> got;
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (got.size() < 6 && std::chrono::steady_clock::now() < end) {
        most = std::max(most, stats(observer).at("inflight").as_int64() - 1);
        if (auto f = c.next_frame(20))
            got.push_back(std::move(*f));
    }
    EXPECT_EQ(got.size(), 6u);
    EXPECT_LE(most, 2);
    EXPECT_GE(most, 1);
}

TEST_F(Agent, AClientThatDoesNotReadIsNotReadEither)
{
    agent_process a({{"max_unsent_bytes", 4096}});
    auto c = a.connect();
    auto observer = a.connect();
    // Send agent.hello (a ~600-byte reply) until the agent stops reading us and the socket
    // fills; bounded by count.
    std::size_t sent = 0;
    for (; sent < 200000; ++sent) {
        std::string l = R"({"id":)" + std::to_string(sent) + R"(,"op":"agent.hello"})" + "\n";
        if (::send(c.native_handle(), l.data(), l.size(), MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(l.size()))
            break;
    }
    ASSERT_LT(sent, 200000u) << "the agent kept reading a client that never reads";
    auto s = stats(observer);
    EXPECT_LE(s.at("unsent_bytes").as_int64(), 4096 + 2048) << "replies queued for the slow reader stay bounded";
    // Every request that was accepted is answered once the client reads. (A last, partial line
    // has no newline yet, so it is not a request.)
    std::size_t answered = 0;
    while (answered < sent) {
        auto f = c.next_frame(10000);
        if (!f)
            break;
        EXPECT_TRUE(f->ok());
        ++answered;
    }
    EXPECT_EQ(answered, sent);
}

} // namespace

namespace {

std::uint64_t ino_of(const std::string& path)
{
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Threads inherit namespaces: a worker created by another worker would start inside that
// worker's namespace. Every task must be in the agent's own namespaces or be a worker in its
// target, the other type staying the agent's.
TEST_F(Agent, EveryTaskIsInTheAgentsNamespacesOrIsAWorkerInItsTarget)
{
    netns n1, n2;
    mount_holder m(true);
    agent_process a;
    auto c = a.connect();
    std::map<std::int64_t, std::pair<std::string, std::uint64_t>> workers; // tid -> (type, ino)
    for (auto* n : {&n1, &n2}) {
        auto r = result_of(call(c, "ns.ping", net_ns(n->name())));
        workers[r.at("tid").as_int64()] = {"net", n->ino()};
    }
    auto r = result_of(call(c, "ns.ping", pid_ns("mnt", m.pid())));
    workers[r.at("tid").as_int64()] = {"mnt", m.ino()};
    // Connecting from inside a namespace (what nsctl net forward and net.probe do) and a bound
    // connection must leave no thread anywhere else either.
    EXPECT_EQ(call(c, "net.connect", net_ns(n1.name()), {{"address", "127.0.0.1:1"}}).error_code(), "os_error");
    ASSERT_TRUE(call(c, "net.probe", net_ns(n2.name()), {{"address", "127.0.0.1:1"}}).ok());
    {
        auto b = a.connect();
        ASSERT_TRUE(call(b, "agent.bind", net_ns(n2.name())).ok());
        ASSERT_TRUE(call(b, "net.links").ok());
    }

    auto proc = "/proc/" + std::to_string(a.pid());
    auto own_net = ino_of(proc + "/ns/net"), own_mnt = ino_of(proc + "/ns/mnt");
    std::string tasks = sh_out("ls " + proc + "/task");
    std::istringstream in(tasks);
    std::int64_t tid;
    int seen = 0;
    while (in >> tid) {
        ++seen;
        auto base = proc + "/task/" + std::to_string(tid) + "/ns/";
        auto net = ino_of(base + "net"), mnt = ino_of(base + "mnt");
        auto it = workers.find(tid);
        if (it == workers.end()) {
            EXPECT_EQ(net, own_net) << "task " << tid;
            EXPECT_EQ(mnt, own_mnt) << "task " << tid;
        } else if (it->second.first == "net") {
            EXPECT_EQ(net, it->second.second) << "net worker " << tid;
            EXPECT_EQ(mnt, own_mnt) << "net worker " << tid;
        } else {
            EXPECT_EQ(mnt, it->second.second) << "mnt worker " << tid;
            EXPECT_EQ(net, own_net) << "mnt worker " << tid;
        }
    }
    EXPECT_EQ(seen, stats(c).at("base_threads").as_int64() + 3);
}

} // namespace

namespace {

// A worker reached only through a namespace fd passed on a connection is that connection's:
// when it closes, the worker retires and the agent stops pinning the namespace.
TEST_F(Agent, AWorkerReachedByAPassedFdRetiresWithItsConnection)
{
    netns n, shared;
    agent_process a;
    auto observer = a.connect();
    auto by_fd = [&](client& c, const netns& target) {
        unique_fd nsfd(::open(target.path().c_str(), O_RDONLY | O_CLOEXEC));
        int list[] = {nsfd.get()};
        auto f = c.call({{"op", "ns.ping"}, {"ns", {{"type", "net"}, {"fd", 0}}}}, list, 10000);
        ASSERT_TRUE(f && f->ok());
    };
    {
        auto c = a.connect();
        by_fd(c, n);
        by_fd(c, shared);
        // `shared` is also reached by name from another connection: it is not c's alone.
        ASSERT_TRUE(call(observer, "ns.ping", net_ns(shared.name())).ok());
        EXPECT_FALSE(worker_of(observer, n.ino()).empty());
    }
    EXPECT_TRUE(wait_until([&] { return worker_of(observer, n.ino()).empty(); }));
    EXPECT_FALSE(worker_of(observer, shared.ino()).empty()) << "still held by a name";
    EXPECT_EQ(stats(observer).at("retired").at("anchor_gone").as_int64(), 1);
}

} // namespace

namespace {

TEST_F(Agent, SighupDoesNotStopTheAgent)
{
    agent_process a;
    ASSERT_TRUE(wait_until([&] { return a.log().find("event=ready") != std::string::npos; }));
    ::kill(a.pid(), SIGHUP);
    auto c = a.connect();
    EXPECT_TRUE(wait_until([&] { return a.log().find("SIGHUP") != std::string::npos; }));
    EXPECT_TRUE(call(c, "agent.ping").ok());
    EXPECT_EQ(a.terminate(), 0);
}

} // namespace

namespace {

TEST_F(Agent, AHalfSentLineIsDroppedAtItsDeadlineWhileOthersAreServed)
{
    agent_process a({{"partial_line_timeout_ms", 300}});
    auto slow = a.connect();
    ASSERT_EQ(::send(slow.native_handle(), R"({"id":1,"op":)", 13, MSG_NOSIGNAL), 13);
    auto other = a.connect();
    EXPECT_TRUE(call(other, "agent.ping").ok()) << "other clients are served meanwhile";
    auto f = slow.next_frame(10000);
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_EQ(f->error_code(), "timeout");
    EXPECT_NE(f->error_message().find("partial_line_timeout_ms"), std::string::npos);
    auto eof = slow.next_frame(10000);
    EXPECT_FALSE(eof) << "and the connection is closed";
    EXPECT_TRUE(call(other, "agent.ping").ok());
}

TEST_F(Agent, ConnectionsBeyondMaxConnectionsAreRefusedWithAReason)
{
    agent_process a({{"max_connections", 2}});
    auto c2 = a.connect();
    // agent_process's own start-up probe connection must be gone before counting.
    ASSERT_TRUE(wait_until([&] { return stats(c2).at("connections").as_int64() == 1; }));
    auto c1 = a.connect();
    ASSERT_TRUE(call(c1, "agent.ping").ok());
    auto c3 = a.connect();
    auto refused = c3.next_frame(10000);
    ASSERT_TRUE(refused) << refused.error().message();
    EXPECT_EQ(refused->error_code(), "busy");
    EXPECT_FALSE(c3.next_frame(5000)) << "closed after saying why";
    { auto gone = std::move(c1); } // frees a slot once the agent sees the close
    EXPECT_TRUE(wait_until([&] {
        auto c4 = a.connect();
        auto f = c4.call({{"op", "agent.ping"}}, {}, 5000);
        return f && f->ok();
    }));
}

} // namespace

namespace {

// Out of file descriptors: a client the agent cannot accept is still told why (a reserve fd
// makes room for one accept), the agent keeps serving the connections it has, and accepts
// again once fds free up.
TEST_F(Agent, OutOfFdsAClientIsToldWhyAndServiceResumesWhenFdsFreeUp)
{
    agent_process a;
    auto probe = a.connect();
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1; }));
    int limit = a.fd_count() + 1;
    auto pid = std::to_string(a.pid());
    ASSERT_EQ(sh("prlimit --pid " + pid + " --nofile=" + std::to_string(limit) + ":"), 0); // the soft limit only: it can be raised again
    std::vector<client> held;
    std::string refusal;
    for (int i = 0; i < 8 && refusal.empty(); ++i) {
        auto c = client::connect(a.socket());
        ASSERT_TRUE(c) << c.error().message();
        auto f = c->next_frame(1500);
        if (f && !f->ok())
            refusal = f->error_message();
        else
            held.push_back(std::move(*c)); // accepted: it has no frame to read
    }
    EXPECT_NE(refusal.find("out of file descriptors (EMFILE)"), std::string::npos) << refusal;
    EXPECT_TRUE(call(probe, "agent.ping").ok()) << "connections it has are still served";
    ASSERT_EQ(sh("prlimit --pid " + pid + " --nofile=4096:"), 0);
    held.clear();
    ASSERT_TRUE(wait_until([&] {
        auto c = client::connect(a.socket());
        if (!c)
            return false;
        auto f = c->call({{"op", "agent.ping"}}, {}, 2000);
        return f && f->ok();
    })) << "accepting again once fds free up";
    EXPECT_NE(a.log().find("event=accept_failed error=EMFILE"), std::string::npos);
}

} // namespace

namespace {

// A worker thread that exits in the middle of an op (test.exit: pthread_exit) still gets its
// request one reply at once, not at the deadline; the request queued behind it is served by a
// fresh worker; the dead thread is joined, and nothing is left behind.
TEST_F(Agent, AWorkerThreadThatExitsIsAnsweredForAndReplaced)
{
    netns n;
    agent_process a;
    auto c = a.connect();
    auto first = result_of(call(c, "ns.ping", net_ns(n.name())));
    long threads = a.thread_count();
    auto ns = json::serialize(net_ns(n.name()));
    ASSERT_FALSE(c.send_line(R"({"id":"exit","op":"test.exit","timeout_ms":60000,"ns":)" + ns + "}"));
    ASSERT_FALSE(c.send_line(R"({"id":"after","op":"ns.ping","ns":)" + ns + "}"));
    std::map<std::string, frame> got;
    for (int i = 0; i < 2; ++i) {
        auto f = c.next_frame(10000);
        ASSERT_TRUE(f) << "both requests answered well before the 60 s deadline: " << f.error().message();
        got[std::string(f->value.at("id").as_string())] = std::move(*f);
    }
    EXPECT_EQ(got["exit"].error_code(), "internal");
    EXPECT_NE(got["exit"].error_message().find("worker thread exited"), std::string::npos) << got["exit"].error_message();
    ASSERT_TRUE(got["after"].ok());
    EXPECT_NE(got["after"].value.at("result").at("tid").as_int64(), first.at("tid").as_int64()) << "a fresh worker";
    EXPECT_EQ(u64(got["after"].value.at("result").at("ino")), n.ino());
    ASSERT_TRUE(wait_until([&] { return a.thread_count() == threads; })) << "the dead thread is joined";
    auto st = stats(c);
    EXPECT_EQ(st.at("retired").at("thread_exited").as_int64(), 1);
    EXPECT_EQ(st.at("workers").as_array().size(), 1u);
    EXPECT_EQ(a.terminate(), 0);
}

} // namespace

namespace {

// Clients that vanish mid-request, mid-reply (their socket full) and mid-fd-passing (replies
// that carry a socket) leave no fd behind, and the agent keeps serving.
TEST_F(Agent, ClientsVanishingMidReplyOrMidFdPassingLeakNothing)
{
    netns n;
    agent_process a({{"queue_depth", 512}});
    auto probe = a.connect();
    // The worker keeps its netlink socket once net.links has opened it: part of the baseline.
    ASSERT_TRUE(call(probe, "net.links", net_ns(n.name())).ok());
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1; }));
    int fds = a.fd_count();
    auto ns = json::serialize(net_ns(n.name()));
    for (int i = 0; i < 60; ++i) {
        auto c = a.connect();
        int small = 4096;
        ::setsockopt(c.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        std::string burst;
        for (int k = 0; k < 40; ++k) {
            burst += R"({"id":)" + std::to_string(k) + R"(,"op":)" +
                     (k % 4 == 0 ? std::string(R"("net.socket","args":{"type":"dgram"})") : std::string(R"("net.links")")) +
                     R"(,"ns":)" + ns + "}\n";
        }
        burst += R"({"id":"half","op":"ns.pi)"; // and a request cut in the middle
        ASSERT_EQ(::send(c.native_handle(), burst.data(), burst.size(), MSG_NOSIGNAL), static_cast<ssize_t>(burst.size()));
        if (i % 2)
            (void)c.next_frame(200); // read a little, or nothing, then vanish
    }
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1 && a.fd_count() == fds; }))
        << "fds " << a.fd_count() << " vs " << fds << " before";
    EXPECT_TRUE(call(probe, "ns.ping", net_ns(n.name())).ok());
}

} // namespace

namespace {

// `ip netns add` creates /run/netns/NAME before it mounts the namespace on it (and `ip netns
// del` unmounts before it unlinks): a name that is, for that moment, a plain file names no
// namespace. The soak found requests answered bad_request in that window.
TEST_F(Agent, ANameThatIsAPlainFileForAMomentIsNotFoundNotABadRequest)
{
    agent_process a;
    auto c = a.connect();
    auto name = unique_name("plain");
    ASSERT_EQ(sh("mkdir -p /run/netns && touch /run/netns/" + name), 0);
    auto f = call(c, "ns.ping", net_ns(name));
    sh("rm -f /run/netns/" + name);
    EXPECT_EQ(f.error_code(), "ns_not_found") << f.error_message();
    EXPECT_NE(f.error_message().find("names no namespace now"), std::string::npos) << f.error_message();
}

} // namespace

namespace {

long rss_kib(pid_t pid)
{
    return std::stol(status_fields("/proc/" + std::to_string(pid) + "/status").at("VmRSS")); // "1234 kB"
}

// A flood of large requests that cannot be served quickly (they queue behind a slow one) stops
// being read at max_inflight_bytes: the agent's memory stays bounded, and other clients are
// served meanwhile.
TEST_F(Agent, AFloodOfLargeRequestsIsNotReadBeyondMaxInflightBytes)
{
    netns n;
    agent_process a({{"max_inflight_bytes", 4 << 20}, {"queue_depth", 512}});
    auto other = a.connect();
    ASSERT_TRUE(call(other, "ns.ping", net_ns(n.name())).ok());
    long before = rss_kib(a.pid());
    auto flood = a.connect();
    auto ns = json::serialize(net_ns(n.name()));
    ASSERT_FALSE(flood.send_line(R"({"id":"slow","op":"test.sleep","args":{"ms":3000},"ns":)" + ns + "}"));
    std::string pad(900 * 1024, 'x');
    std::size_t sent = 0;
    int fd = flood.native_handle();
    // Up to 100 MB of requests, each ~900 KB; stop when the agent has stopped reading for 1 s.
    for (int i = 0; i < 110; ++i) {
        std::string line = R"({"id":)" + std::to_string(i) + R"(,"op":"ns.ping","ns":)" + ns + R"(,"args":{"pad":")" + pad +
                           "\"}}\n";
        std::size_t off = 0;
        auto stalled_since = std::chrono::steady_clock::now();
        while (off < line.size() && std::chrono::steady_clock::now() - stalled_since < std::chrono::seconds(1)) {
            ssize_t w = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                off += static_cast<std::size_t>(w);
                stalled_since = std::chrono::steady_clock::now();
            } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
        }
        sent += off;
        if (off < line.size())
            break; // the agent stopped reading: backpressure reached the client
    }
    long during = rss_kib(a.pid());
    EXPECT_LT(sent, std::size_t{40} << 20) << "the agent stopped reading long before 100 MB";
    EXPECT_LT(during - before, 48 * 1024) << "RSS grew by " << (during - before) << " KiB";
    EXPECT_TRUE(call(other, "agent.ping").ok()) << "other clients are served meanwhile";
}

} // namespace
