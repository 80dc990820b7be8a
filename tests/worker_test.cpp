#include "worker_pool.hpp"

#include "agent.hpp"
#include "support/test_env.hpp"

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>

#include <sys/socket.h>

#include <atomic>
#include <set>
#include <thread>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

using clock_type = std::chrono::steady_clock;

std::atomic<bool> gate_open{false};
std::atomic<int> runs{0};

// Holds its worker until the test opens the gate (bounded, so a broken test cannot hang).
op_result gated(op_context& c)
{
    ++runs;
    auto end = clock_type::now() + std::chrono::seconds(20);
    while (!gate_open && clock_type::now() < end)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return json::object{{"tid", c.worker->tid}};
}

op_result whoami(op_context& c)
{
    ++runs;
    struct stat st {};
    ::fstatat(c.worker->procfs_dir, "ns/net", &st, 0);
    return json::object{{"tid", c.worker->tid}, {"ino", st.st_ino}};
}

const op_spec gated_spec{"test.gated", op_class::read, op_site::worker, ns_need::required, {}, &gated};
const op_spec whoami_spec{"test.whoami", op_class::read, op_site::worker, ns_need::required, {}, &whoami};

class WorkerPool : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root to create network namespaces";
        gate_open = false;
        runs = 0;
        cfg_.queue_depth = 2;
        ns_.emplace();
        pool_.emplace(
            io_, cfg_, [this](const worker_pool::request_ptr& r) { done_.push_back(r); },
            [this](const worker_pool::request_ptr& r, const op_error& e) { failed_.emplace_back(r, e); });
    }
    void TearDown() override
    {
        gate_open = true;
        if (pool_) {
            pool_->retire_all();
            pump([&] { return pool_->quiet(); });
        }
    }

    std::shared_ptr<pending_request> make(const op_spec& s, std::chrono::milliseconds timeout = std::chrono::seconds(10))
    {
        request rq;
        rq.id = next_id_++;
        rq.op = std::string(s.name);
        return std::make_shared<pending_request>(std::move(rq), s, std::vector<unique_fd>{}, clock_type::now() + timeout);
    }

    ns_handle handle(ns_type type = ns_type::net)
    {
        ns_handle h;
        h.fd.reset(::open(ns_->path().c_str(), O_RDONLY | O_CLOEXEC));
        h.id = *identify(h.fd.get());
        h.id.type = type;
        return h;
    }

    std::optional<op_error> submit(const std::shared_ptr<pending_request>& r, ns_type type = ns_type::net)
    {
        auto h = handle(type);
        r->ns = h.id;
        return pool_->submit(h, r);
    }

    bool pump(const std::function<bool()>& pred)
    {
        return wait_until([&] {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(5));
            return pred();
        });
    }

    asio::io_context io_{1};
    config cfg_;
    std::optional<netns> ns_;
    std::optional<worker_pool> pool_;
    std::vector<worker_pool::request_ptr> done_;
    std::vector<std::pair<worker_pool::request_ptr, op_error>> failed_;
    int next_id_ = 1;
};

TEST_F(WorkerPool, OneThreadServesEveryRequestOfANamespaceInsideIt)
{
    auto a = make(whoami_spec), b = make(whoami_spec);
    ASSERT_FALSE(submit(a));
    ASSERT_TRUE(pump([&] { return done_.size() == 1; }));
    ASSERT_FALSE(submit(b));
    ASSERT_TRUE(pump([&] { return done_.size() == 2; }));
    auto ra = (*a->result)->as_object(), rb = (*b->result)->as_object();
    EXPECT_EQ(ra.at("tid"), rb.at("tid"));
    EXPECT_NE(ra.at("tid").as_int64(), ::gettid());
    EXPECT_EQ(ra.at("ino").to_number<std::uint64_t>(), ns_->ino());
    EXPECT_EQ(pool_->started_total(), 1u);
}

TEST_F(WorkerPool, AFullQueueAnswersBusyAtOnce)
{
    auto running = make(gated_spec);
    ASSERT_FALSE(submit(running));
    ASSERT_TRUE(pump([&] { return running->current() == pending_request::state::running; }));
    auto q1 = make(whoami_spec), q2 = make(whoami_spec), over = make(whoami_spec);
    EXPECT_FALSE(submit(q1));
    EXPECT_FALSE(submit(q2));
    auto err = submit(over);
    ASSERT_TRUE(err);
    EXPECT_EQ(wire_code(err->code), errc::busy);
    gate_open = true;
    ASSERT_TRUE(pump([&] { return done_.size() == 3; }));
    EXPECT_FALSE(over->op_returned);
}

TEST_F(WorkerPool, ARequestWhoseDeadlinePassedInTheQueueNeverRuns)
{
    auto running = make(gated_spec);
    ASSERT_FALSE(submit(running));
    ASSERT_TRUE(pump([&] { return running->current() == pending_request::state::running; }));
    auto late = make(whoami_spec, std::chrono::milliseconds(1));
    ASSERT_FALSE(submit(late));
    std::this_thread::sleep_for(std::chrono::milliseconds(5)); // let the 1 ms deadline pass
    gate_open = true;
    ASSERT_TRUE(pump([&] { return (*pool_->find(late->ns.value()))->active == 0; }));
    EXPECT_FALSE(late->op_returned);
    EXPECT_EQ(late->current(), pending_request::state::queued); // its timer answers it, not the worker
    EXPECT_EQ(runs, 1);
}

TEST_F(WorkerPool, ARequestFinishedWhileQueuedNeverRuns)
{
    auto running = make(gated_spec);
    ASSERT_FALSE(submit(running));
    ASSERT_TRUE(pump([&] { return running->current() == pending_request::state::running; }));
    auto cancelled = make(whoami_spec);
    ASSERT_FALSE(submit(cancelled));
    ASSERT_TRUE(cancelled->claim_final());
    EXPECT_FALSE(cancelled->claim_final()) << "exactly one final reply";
    gate_open = true;
    ASSERT_TRUE(pump([&] { return (*pool_->find(cancelled->ns.value()))->active == 0; }));
    EXPECT_FALSE(cancelled->op_returned);
    EXPECT_EQ(runs, 1);
}

TEST_F(WorkerPool, AFailedStartFailsItsRequestsAndLeavesNoThread)
{
    long before = current_thread_count();
    // A network namespace fd handed over as a mount namespace: setns(CLONE_NEWNS) refuses it.
    auto r = make(whoami_spec);
    ASSERT_FALSE(submit(r, ns_type::mnt));
    ASSERT_TRUE(pump([&] { return failed_.size() == 1; }));
    EXPECT_EQ(wire_code(failed_[0].second.code), errc::os_error);
    EXPECT_NE(failed_[0].second.message.find("setns"), std::string::npos) << failed_[0].second.message;
    EXPECT_TRUE(pool_->live().empty());
    EXPECT_TRUE(wait_until([&] { return current_thread_count() == before; }));
    EXPECT_EQ(pool_->retired().at("start_failed"), 1u);
}

TEST_F(WorkerPool, AWedgedWorkerIsReplacedAndItsQueueMoves)
{
    auto stuck = make(gated_spec);
    ASSERT_FALSE(submit(stuck));
    ASSERT_TRUE(pump([&] { return stuck->current() == pending_request::state::running; }));
    auto queued = make(whoami_spec);
    ASSERT_FALSE(submit(queued));
    auto old_worker = stuck->worker;
    pool_->mark_wedged(old_worker);
    EXPECT_EQ(pool_->wedged(), 1u);
    ASSERT_TRUE(pump([&] { return queued->op_returned.load(); }));
    EXPECT_NE((*queued->result)->as_object().at("tid").as_int64(), old_worker->tid());
    // When the stuck op returns, the wedged thread goes away on its own.
    gate_open = true;
    ASSERT_TRUE(pump([&] { return pool_->wedged() == 0; }));
}

TEST_F(WorkerPool, IdleWorkersRetireAndLruMakesRoomAtTheCap)
{
    cfg_.max_workers = 1;
    auto a = make(whoami_spec);
    ASSERT_FALSE(submit(a));
    ASSERT_TRUE(pump([&] { return done_.size() == 1; }));
    netns other;
    ns_handle h;
    h.fd.reset(::open(other.path().c_str(), O_RDONLY | O_CLOEXEC));
    h.id = *identify(h.fd.get());
    auto b = make(whoami_spec);
    b->ns = h.id;
    ASSERT_FALSE(pool_->submit(h, b));
    EXPECT_EQ(pool_->retired().at("lru"), 1u);
    ASSERT_TRUE(pump([&] { return done_.size() == 2; }));
    EXPECT_EQ(pool_->live().size(), 1u);

    cfg_.idle_timeout_s = 1;
    pool_->sweep_idle(clock_type::now() + std::chrono::seconds(2));
    EXPECT_TRUE(pool_->live().empty());
    EXPECT_EQ(pool_->retired().at("idle"), 1u);
    ASSERT_TRUE(pump([&] { return pool_->quiet(); }));
}

} // namespace

namespace {

// The fast path for names of namespaces that already have a worker (one stat, no open) must
// never send a request to the old namespace once the name points at a new one.
TEST(ResolveByName, ANameReusedForANewNamespaceReachesTheNewOne)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: network namespaces";
    netns n;
    agent_process a;
    auto c = a.connect();
    auto first = call(c, "ns.ping", net_ns(n.name()));
    ASSERT_TRUE(first.ok());
    auto old_ino = u64(first.value.at("result").at("ino"));
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok()); // served through the fast path
    ASSERT_EQ(sh("ip netns del " + n.name() + " && ip netns add " + n.name()), 0);
    auto again = call(c, "ns.ping", net_ns(n.name()));
    ASSERT_TRUE(again.ok());
    EXPECT_NE(u64(again.value.at("result").at("ino")), old_ino) << "the name now names another namespace";
    EXPECT_EQ(u64(again.value.at("result").at("ino")), n.ino());
}

} // namespace

namespace {

// Workers write final replies straight to an idle connection (reply_channel). Under a client
// that does not read, the socket fills: a reply is then written in part by the worker and
// finished by the I/O thread's writer, ahead of every other frame. Every reply must still
// arrive whole, exactly once.
TEST(DirectReplies, EveryReplyArrivesWholeAndOnceEvenWhenTheSocketFills)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: network namespaces";
    netns n1, n2;
    agent_process a({{"queue_depth", 512}}); // 256 in flight over two workers must not be busy
    auto c = a.connect();
    int small = 4096;
    ASSERT_EQ(::setsockopt(c.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    // Warm both workers, so that what follows runs on live ones.
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n1.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n2.name())).ok());
    constexpr int total = 3000;
    std::string burst;
    for (int i = 0; i < total; ++i)
        burst += R"({"id":)" + std::to_string(i) + R"(,"op":"net.links","ns":{"type":"net","name":")" +
                 (i % 2 ? n1.name() : n2.name()) + "\"}}\n";
    ASSERT_FALSE(c.send_line(burst)) << "the agent keeps reading while the client does not";
    std::this_thread::sleep_for(std::chrono::milliseconds(300)); // let the socket fill
    std::set<std::int64_t> seen;
    for (int i = 0; i < total; ++i) {
        auto f = c.next_frame(10000);
        ASSERT_TRUE(f) << "reply " << i << ": " << f.error().message();
        ASSERT_TRUE(f->ok()) << json::serialize(f->value);
        ASSERT_FALSE(f->value.at("result").as_array().empty()) << "the links, whole";
        EXPECT_TRUE(seen.insert(f->value.at("id").as_int64()).second) << "a second reply to one id";
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(total));
    EXPECT_FALSE(c.next_frame(200)) << "nothing more";
    auto probe = a.connect();
    auto st = stats(probe);
    EXPECT_GT(st.at("direct_replies").as_int64(), 0) << "the fast path ran";
    EXPECT_GT(st.at("direct_replies_partial").as_int64(), 0) << "and so did its partial-write path";
    EXPECT_EQ(st.at("replies").at("ok").as_int64(), total + 2) << "each counted once, however delivered";
}

} // namespace

namespace {

// A worker serving a client's requests in a row stays awake between them (worker_spin_us), so
// the next request needs no wake-up; with the knob at 0 it never spins. Either way every
// request is answered correctly.
TEST(WorkerSpin, RequestsInARowAreCaughtAwakeAndTheKnobTurnsItOff)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: network namespaces";
    netns n;
    // 100 ms of spin: even on a machine loaded enough to stall the client for milliseconds
    // between requests, some of 300 arrive while the worker is awake.
    for (int spin : {100000, 0}) {
        agent_process a({{"worker_spin_us", spin}});
        auto c = a.connect();
        for (int i = 0; i < 300; ++i) {
            auto f = call(c, "ns.ping", net_ns(n.name()));
            ASSERT_TRUE(f.ok()) << json::serialize(f.value);
            ASSERT_EQ(u64(f.value.at("result").at("ino")), n.ino());
        }
        auto workers = stats(c).at("workers").as_array();
        ASSERT_EQ(workers.size(), 1u);
        auto hits = workers[0].at("spin_hits").as_int64();
        if (spin)
            EXPECT_GT(hits, 0) << "300 requests in a row, 100 ms of spin: some arrive while it is awake";
        else
            EXPECT_EQ(hits, 0);
    }
}

} // namespace
