// The access policy against real clients of other uids (a forked child drops to them).
#include "access_policy.hpp"

#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <thread>
#include <fstream>
#include <map>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class Policy : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: other uids' clients are forked from a root test";
    }
    static void record(client& c, client_results& out, const std::string& label, json::object req)
    {
        auto f = c.call(std::move(req), {}, 10000);
        out[label] = f ? f->error_code() : "transport";
    }
};

TEST_F(Policy, AUidWithoutARuleIsDeniedEverythingAndNoWorkerStarts)
{
    netns n;
    agent_process a;
    open_to_everyone(a);
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        record(c, out, "ping", {{"op", "agent.ping"}});
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        record(c, out, "release", {{"op", "ns.release"}, {"ns", net_ns(n.name())}});
        record(c, out, "socket", {{"op", "net.socket"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r, (client_results{{"ping", "permission_denied"}, {"ns.ping", "permission_denied"},
                          {"release", "permission_denied"}, {"socket", "permission_denied"}}));
    auto root = a.connect();
    EXPECT_TRUE(stats(root).at("workers").as_array().empty()) << "a denied request never creates a worker";
    EXPECT_EQ(stats(root).at("workers_started").as_int64(), 0);
}

TEST_F(Policy, AReadRuleReadsButNeitherWritesNorGetsFds)
{
    netns n;
    agent_process a({{"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read"}}}}}});
    open_to_everyone(a);
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        record(c, out, "ping", {{"op", "agent.ping"}});
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        record(c, out, "release", {{"op", "ns.release"}, {"ns", net_ns(n.name())}});
        record(c, out, "socket", {{"op", "net.socket"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r, (client_results{{"ping", ""}, {"ns.ping", ""}, {"release", "permission_denied"}, {"socket", "permission_denied"}}));
}

TEST_F(Policy, AGroupRuleMatchesThroughASupplementaryGroup)
{
    netns n;
    agent_process a({{"policy", json::array{json::object{{"gid", 4242}, {"allow", json::array{"read"}}}}}});
    open_to_everyone(a);
    auto r = as_user(65534, 65534, {4242}, [&](client& c, client_results& out) {
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r["ns.ping"], "");
    auto without = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(without["ns.ping"], "permission_denied");
}

// A name:-narrowed rule is enforced on the resolved identity: the host's namespace cannot be
// reached through a path, a pid or a passed fd, and an unnamed namespace is outside the rule.
TEST_F(Policy, ANameNarrowedRuleCannotReachTheHostByAnyRoute)
{
    netns n;
    holder unnamed("exec unshare -n sh -c 'echo ready; exec sleep 600'");
    agent_process a({{"policy", json::array{json::object{
                                    {"uid", 65534}, {"allow", json::array{"read"}}, {"namespaces", json::array{"name:nsat-*"}}}}}});
    open_to_everyone(a);
    auto agent_net = "/proc/" + std::to_string(a.pid()) + "/ns/net";
    auto r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        record(c, out, "named", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        record(c, out, "host-path", {{"op", "ns.ping"}, {"ns", {{"type", "net"}, {"path", agent_net}}}});
        record(c, out, "host-pid", {{"op", "ns.ping"}, {"ns", pid_ns("net", a.pid())}});
        record(c, out, "unnamed", {{"op", "ns.ping"}, {"ns", pid_ns("net", unnamed.pid())}});
    }, a);
    EXPECT_EQ(r["named"], "");
    EXPECT_EQ(r["host-path"], "permission_denied");
    EXPECT_EQ(r["host-pid"], "permission_denied");
    EXPECT_EQ(r["unnamed"], "permission_denied");
    // A host namespace fd passed by the client: the same identity, the same answer.
    auto fd_route = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
        unique_fd host(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
        int list[] = {host.get()};
        auto f = c.call({{"op", "ns.ping"}, {"ns", {{"type", "net"}, {"fd", 0}}}}, list, 10000);
        out["host-fd"] = f ? f->error_code() : "transport";
    }, a);
    EXPECT_EQ(fd_route["host-fd"], "permission_denied");
}

} // namespace

namespace {

std::string slurp_file(const std::string& path)
{
    std::string out;
    if (FILE* f = std::fopen(path.c_str(), "r")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
            out.append(buf, n);
        std::fclose(f);
    }
    return out;
}

TEST_F(Policy, TheAuditLogRecordsMutationsFdsAndDenialsWithTheRightUid)
{
    netns n;
    std::string log = "/tmp/" + unique_name("audit") + ".log";
    agent_process a({{"audit", log}, {"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read"}}}}}});
    open_to_everyone(a);
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok()); // read: not audited
    ASSERT_TRUE(call(c, "net.sysctl_set", net_ns(n.name()), {{"name", "net.ipv4.ip_forward"}, {"value", 1}}).ok());
    auto s = c.call({{"op", "net.socket"}, {"ns", net_ns(n.name())}}, {}, 10000);
    ASSERT_TRUE(s && s->ok());
    EXPECT_EQ(call(c, "net.addr_add", net_ns(n.name()), {{"ifname", "nope"}, {"address", "10.1.1.1/24"}}).error_code(), "os_error");
    as_user(65534, 65534, {}, [&](client& cl, client_results& out) {
        record(cl, out, "release", {{"op", "ns.release"}, {"ns", net_ns(n.name())}});
    }, a);
    auto text = slurp_file(log);
    auto ns = "net:[" + std::to_string(n.ino()) + "]";
    EXPECT_NE(text.find("uid=0"), std::string::npos) << text;
    EXPECT_NE(text.find("op=net.sysctl_set ns=" + ns + " result=ok"), std::string::npos) << text;
    EXPECT_NE(text.find("op=net.socket ns=" + ns + " result=ok"), std::string::npos) << text;
    EXPECT_NE(text.find("op=net.addr_add ns=" + ns + " result=os_error:ENODEV"), std::string::npos) << text;
    EXPECT_NE(text.find("uid=65534"), std::string::npos) << text;
    EXPECT_NE(text.find("op=ns.release ns=- result=permission_denied"), std::string::npos) << text;
    EXPECT_EQ(text.find("op=ns.ping"), std::string::npos) << "reads are not audited";
    ::unlink(log.c_str());
}

// Waits (bounded) until the agent's log has `n` lines containing `text`.
bool log_count_reaches(const agent_process& a, const std::string& text, std::size_t n)
{
    return wait_until([&] {
        auto log = a.log();
        std::size_t count = 0;
        for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1))
            ++count;
        return count >= n;
    });
}

// One byte through a pipe, waited for at most 20 s.
bool wait_byte(int fd)
{
    pollfd p{fd, POLLIN, 0};
    char b;
    return ::poll(&p, 1, 20000) == 1 && ::read(fd, &b, 1) == 1;
}

// SIGHUP reloads the policy: a connection that is already open gets the new policy on its
// next request, no connection is dropped, and a broken file keeps the policy in force.
TEST_F(Policy, SighupReloadsThePolicyForTheNextRequestAndABrokenConfigKeepsTheOld)
{
    netns n;
    agent_process a; // no rules: only root
    open_to_everyone(a);
    auto root = a.connect();
    ASSERT_TRUE(call(root, "agent.ping").ok());
    int ready[2], go[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
    client_results r;
    std::thread client_side([&] {
        r = as_user(65534, 65534, {}, [&](client& c, client_results& out) {
            record(c, out, "1-before", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
            (void)!::write(ready[1], "r", 1);
            out["wait-1"] = wait_byte(go[0]) ? "" : "no go";
            record(c, out, "2-after-reload", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
            (void)!::write(ready[1], "r", 1);
            out["wait-2"] = wait_byte(go[0]) ? "" : "no go";
            record(c, out, "3-after-broken", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        }, a);
    });
    bool step1 = wait_byte(ready[0]);
    std::ofstream(a.config_path()) << R"({"policy": [{"uid": 65534, "allow": ["read"]}]})";
    ::kill(a.pid(), SIGHUP);
    bool applied = log_count_reaches(a, "event=reload result=applied", 1);
    (void)!::write(go[1], "g", 1);
    bool step2 = wait_byte(ready[0]);
    std::ofstream(a.config_path()) << R"({"policy": [{"uid": 65534, "allow": ["read"]}], "bogus": 1})";
    ::kill(a.pid(), SIGHUP);
    bool rejected = log_count_reaches(a, "event=reload result=rejected", 1);
    (void)!::write(go[1], "g", 1);
    client_side.join();
    for (int fd : {ready[0], ready[1], go[0], go[1]})
        ::close(fd);
    ASSERT_TRUE(step1 && applied && step2 && rejected) << a.log();
    EXPECT_EQ(r, (client_results{{"1-before", "permission_denied"},
                                 {"wait-1", ""},
                                 {"2-after-reload", ""},
                                 {"wait-2", ""},
                                 {"3-after-broken", ""}}));
    EXPECT_NE(a.log().find("unknown key"), std::string::npos) << "the log says why the new config was rejected";
    EXPECT_TRUE(call(root, "agent.ping").ok()) << "connections survive reloads";
}

// On 6.5+ kernels the agent holds a pidfd of each client (SO_PEERPIDFD) next to SO_PEERCRED.
TEST(PeerCredentials, APidfdOfTheClientIsTakenWhereTheKernelHasIt)
{
    utsname u{};
    ::uname(&u);
    int major = 0, minor = 0;
    std::sscanf(u.release, "%d.%d", &major, &minor);
    agent_process a;
    auto c = a.connect();
    ASSERT_TRUE(call(c, "agent.ping").ok());
    std::string expect = (major > 6 || (major == 6 && minor >= 5)) ? "pidfd=yes" : "pidfd=no";
    EXPECT_TRUE(wait_until([&] {
        return a.log().find("event=connect pid=" + std::to_string(::getpid()) + " uid=0 " + expect) != std::string::npos;
    })) << "kernel " << u.release << "\n" << a.log();
}

TEST(CheckConfig, ValidatesAndPrintsTheEffectivePolicy)
{
    std::string good = "/tmp/" + unique_name("good") + ".json", bad = "/tmp/" + unique_name("bad") + ".json";
    sh("echo '{\"policy\": [{\"uid\": 65534, \"allow\": [\"read\"]}]}' > " + good);
    sh("echo '{\"policy\": [{\"allow\": [\"read\"]}]}' > " + bad);
    auto ok = sh_out(std::string(NSAGENT_TEST_AGENT) + " --check-config " + good + " 2>&1; echo rc=$?");
    EXPECT_NE(ok.find("valid"), std::string::npos) << ok;
    EXPECT_NE(ok.find("rule 0: {\"uid\":65534,\"allow\":[\"read\"]}"), std::string::npos) << ok;
    EXPECT_NE(ok.find("rc=0"), std::string::npos) << ok;
    auto no = sh_out(std::string(NSAGENT_TEST_AGENT) + " --check-config " + bad + " 2>&1; echo rc=$?");
    EXPECT_NE(no.find("needs \"uid\""), std::string::npos) << no;
    EXPECT_NE(no.find("rc=1"), std::string::npos) << no;
    ::unlink(good.c_str());
    ::unlink(bad.c_str());
}

} // namespace
