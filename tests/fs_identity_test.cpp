// Per-op fs identity: a non-root client reads through the agent only what its own uid could,
// whether the agent runs as root or as a non-root user with ambient capabilities, and the
// worker thread is exactly the agent's again after each op.
#include "fs_identity.hpp"

#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <thread>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

// The identity and capability lines of a task's status, as written there.
std::map<std::string, std::string> identity_of(const std::string& status_path)
{
    auto all = status_fields(status_path);
    std::map<std::string, std::string> out;
    for (auto key : {"Uid", "Gid", "Groups", "CapEff", "CapPrm"})
        out[key] = all[key];
    return out;
}

std::string task_status(pid_t pid, long tid)
{
    return "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status";
}

// In-process: the switch denies a root-only file to the thread that made it, leaves the
// process's other threads alone, and restores exactly.
TEST(ScopedFsIdentity, DeniesWhatTheClientCannotReadAndRestoresExactly)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: switching fs identity needs CAP_SETUID/CAP_SETGID";
    std::string secret = "/tmp/" + unique_name("secret");
    {
        std::ofstream(secret) << "root only\n";
    }
    ::chmod(secret.c_str(), 0600);
    auto main_before = identity_of(task_status(::getpid(), ::gettid()));
    std::map<std::string, std::string> during_main, worker_before, worker_after;
    int open_errno = 0;
    bool restored = false;
    std::optional<op_error> switch_error;
    std::thread t([&] {
        worker_before = identity_of("/proc/thread-self/status");
        scoped_fs_identity as(client_identity{65534, 65534, {4242}});
        switch_error = as.error();
        int fd = ::open(secret.c_str(), O_RDONLY | O_CLOEXEC);
        open_errno = fd < 0 ? errno : 0;
        if (fd >= 0)
            ::close(fd);
        auto now = current_fs_identity();
        EXPECT_EQ(now.uid, 65534u);
        EXPECT_EQ(now.gid, 65534u);
        EXPECT_EQ(now.groups, std::vector<gid_t>{4242});
        during_main = identity_of(task_status(::getpid(), ::getpid()));
        restored = as.restore();
        worker_after = identity_of("/proc/thread-self/status");
    });
    t.join();
    ::unlink(secret.c_str());
    ASSERT_FALSE(switch_error) << switch_error->message;
    EXPECT_EQ(open_errno, EACCES) << "the switched thread must not read a root-only 0600 file";
    EXPECT_TRUE(restored);
    EXPECT_EQ(worker_after, worker_before) << "identity and capabilities back to what they were";
    EXPECT_EQ(during_main, main_before) << "the other threads never change";
}

// The agent as root (false) and as a non-root user with ambient capabilities (true).
class FsIdentity : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: mount namespaces and clients of other uids";
    }
    std::optional<uid_t> run_as() const { return GetParam() ? std::optional<uid_t>(agent_test_uid) : std::nullopt; }
    // "ok", or "<code>:<errno name>" for errors.
    static std::string outcome(const boost::system::result<frame>& f)
    {
        if (!f)
            return "transport";
        if (f->ok())
            return "ok";
        auto& e = f->value.at("error").as_object();
        auto* n = e.if_contains("errno_name");
        return f->error_code() + (n ? ":" + std::string(n->as_string()) : std::string());
    }
};

TEST_P(FsIdentity, ANonRootClientCannotReadARootOnlyFileAndTheWorkerComesBack)
{
    mount_holder m(false);
    json::array rules{json::object{{"uid", 65534}, {"allow", json::array{"read"}}},
                      json::object{{"uid", 65533}, {"allow", json::array{"read"}}, {"fs_identity", "agent"}}};
    agent_process a({{"policy", rules}}, {}, run_as());
    open_to_everyone(a);
    auto root = a.connect();
    auto secret = m.dir() + "/secret";
    ASSERT_TRUE(call(root, "fs.write", pid_ns("mnt", m.pid()),
                     {{"path", secret}, {"data_b64", "cm9vdCBvbmx5Cg=="}, {"mode", "600"}})
                    .ok());
    ASSERT_TRUE(call(root, "fs.read", pid_ns("mnt", m.pid()), {{"path", secret}}).ok()) << "root reads it";

    auto ns = pid_ns("mnt", m.pid());
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        out["secret"] = outcome(c.call({{"op", "fs.read"}, {"ns", ns}, {"args", {{"path", secret}}}}, {}, 10000));
        out["marker"] = outcome(c.call({{"op", "fs.read"}, {"ns", ns}, {"args", {{"path", m.marker()}}}}, {}, 10000));
        out["stat"] = outcome(c.call({{"op", "fs.stat"}, {"ns", ns}, {"args", {{"path", secret}}}}, {}, 10000));
    }, a);
    EXPECT_EQ(r["secret"], "os_error:EACCES") << "through the agent, uid 65534 reads only what it could itself";
    EXPECT_EQ(r["marker"], "ok") << "a world-readable file still reads";
    EXPECT_EQ(r["stat"], "ok") << "stat needs only search permission on the directory";

    // A rule with "fs_identity": "agent" reads with the agent's permissions: it is the identity
    // switch, not something else, that denied the read above.
    auto as_agent = as_user(65533, 65533, {}, [&](client& c, client_results& out) {
        out["secret"] = outcome(c.call({{"op", "fs.read"}, {"ns", ns}, {"args", {{"path", secret}}}}, {}, 10000));
    }, a);
    EXPECT_EQ(as_agent["secret"], "ok");

    // The worker is the agent's own again: fs ids, groups and capabilities match the I/O thread's.
    auto st = stats(root);
    ASSERT_EQ(st.at("workers").as_array().size(), 1u);
    auto tid = st.at("workers").as_array()[0].at("tid").as_int64();
    auto worker = identity_of(task_status(a.pid(), tid));
    auto io = identity_of(task_status(a.pid(), a.pid()));
    EXPECT_EQ(worker, io);
    EXPECT_FALSE(worker["Uid"].empty());
    EXPECT_EQ(stats(root).at("retired").as_object().if_contains("identity_not_restored"), nullptr);
    // And it still serves root with full rights.
    EXPECT_TRUE(call(root, "fs.read", ns, {{"path", secret}}).ok());
}

TEST_P(FsIdentity, FilesAClientCreatesAreItsOwn)
{
    mount_holder m(false);
    agent_process a({{"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read", "write"}}}}}}, {},
                    run_as());
    open_to_everyone(a);
    auto ns = pid_ns("mnt", m.pid());
    auto made = m.dir() + "/made-by-nobody";
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        out["write"] = outcome(c.call({{"op", "fs.write"}, {"ns", ns}, {"args", {{"path", made}, {"data_b64", "eA=="}}}}, {}, 10000));
        out["chown"] = outcome(c.call({{"op", "fs.chown"}, {"ns", ns}, {"args", {{"path", made}, {"uid", 0}}}}, {}, 10000));
    }, a);
    EXPECT_EQ(r["write"], "ok") << "tmpfs roots are 1777: anyone may create";
    EXPECT_EQ(r["chown"], "os_error:EPERM") << "giving a file away needs CAP_CHOWN, which the client lacks";
    auto root = a.connect();
    auto st = call(root, "fs.stat", ns, {{"path", made}});
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(u64(st.value.at("result").at("uid")), 65534u);
    // Root's files are root's, also when the agent itself is not root.
    auto roots = m.dir() + "/made-by-root";
    ASSERT_TRUE(call(root, "fs.write", ns, {{"path", roots}, {"data_b64", "eA=="}}).ok());
    ASSERT_TRUE(call(root, "fs.mkdir", ns, {{"path", roots + ".d"}}).ok());
    for (auto p : {roots, roots + ".d"}) {
        auto rs = call(root, "fs.stat", ns, {{"path", p}});
        ASSERT_TRUE(rs.ok());
        EXPECT_EQ(u64(rs.value.at("result").at("uid")), 0u) << p;
        EXPECT_EQ(u64(rs.value.at("result").at("gid")), 0u) << p;
    }
}

INSTANTIATE_TEST_SUITE_P(Agent, FsIdentity, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "AsNonRootWithAmbientCaps" : "AsRoot"; });

} // namespace

namespace {

// A worker whose per-op identity cannot be restored (test.lose_setgid takes CAP_SETGID away in
// the middle of a non-root client's op) answers that request, then retires and serves nothing
// more: the next request gets a fresh worker with the agent's identity.
TEST(FsIdentityFault, AWorkerWhoseIdentityDoesNotRestoreRetires)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: clients of other uids";
    netns n;
    agent_process a({{"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read"}}}}}});
    open_to_everyone(a);
    auto root = a.connect();
    auto first = call(root, "ns.ping", net_ns(n.name()));
    ASSERT_TRUE(first.ok());
    auto ns = net_ns(n.name());
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        auto f = c.call({{"op", "test.lose_setgid"}, {"ns", ns}}, {}, 10000);
        out["lose"] = f ? f->error_code() : "transport";
    }, a);
    EXPECT_EQ(r["lose"], "") << "the request itself is answered";
    ASSERT_TRUE(wait_until([&] {
        auto st = stats(root);
        auto* retired = st.at("retired").as_object().if_contains("identity_not_restored");
        return retired && retired->as_int64() == 1;
    })) << json::serialize(stats(root));
    auto next = call(root, "ns.ping", net_ns(n.name()));
    ASSERT_TRUE(next.ok());
    EXPECT_NE(next.value.at("result").at("tid"), first.value.at("result").at("tid")) << "a fresh worker";
    auto st = stats(root);
    ASSERT_EQ(st.at("workers").as_array().size(), 1u);
    auto tid = st.at("workers").as_array()[0].at("tid").as_int64();
    EXPECT_EQ(identity_of(task_status(a.pid(), tid)), identity_of(task_status(a.pid(), a.pid())));
}

} // namespace
