// The access policy against real clients of other uids (a forked child drops to them).
#include "access_policy.hpp"

#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <map>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

using results = std::map<std::string, std::string>; // label -> error code ("" for success)

// Runs `body` as uid/gid/groups in a child process and collects "label=code" lines from it.
results as_user(uid_t uid, gid_t gid, std::vector<gid_t> groups, const std::function<void(client&, results&)>& body,
                const agent_process& a)
{
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0)
        return {};
    pid_t child = ::fork();
    if (child == 0) {
        ::close(p[0]);
        if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(gid, gid, gid) < 0 || ::setresuid(uid, uid, uid) < 0)
            ::_exit(2);
        results out;
        auto c = client::connect(a.socket());
        if (!c)
            ::_exit(3);
        body(*c, out);
        std::string text;
        for (auto& [k, v] : out)
            text += k + "=" + v + "\n";
        ssize_t w = ::write(p[1], text.data(), text.size());
        (void)w;
        ::_exit(0);
    }
    ::close(p[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int st = 0;
    ::waitpid(child, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
    results r;
    for (std::size_t i = 0; i < text.size();) {
        auto nl = text.find('\n', i);
        auto line = text.substr(i, nl - i);
        r[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
        i = nl + 1;
    }
    return r;
}

class Policy : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: other uids' clients are forked from a root test";
    }
    // Other users must reach the test agent's socket at all; the policy is what is tested.
    static void open_up(const agent_process& a)
    {
        auto dir = a.socket().substr(0, a.socket().rfind('/'));
        ::chmod(dir.c_str(), 0755);
        ::chmod(a.socket().c_str(), 0666);
    }
    static void record(client& c, results& out, const std::string& label, json::object req)
    {
        auto f = c.call(std::move(req), {}, 10000);
        out[label] = f ? f->error_code() : "transport";
    }
};

TEST_F(Policy, AUidWithoutARuleIsDeniedEverythingAndNoWorkerStarts)
{
    netns n;
    agent_process a;
    open_up(a);
    auto r = as_user(65534, 65534, {}, [&](client& c, results& out) {
        record(c, out, "ping", {{"op", "agent.ping"}});
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        record(c, out, "release", {{"op", "ns.release"}, {"ns", net_ns(n.name())}});
        record(c, out, "socket", {{"op", "net.socket"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r, (results{{"ping", "permission_denied"}, {"ns.ping", "permission_denied"},
                          {"release", "permission_denied"}, {"socket", "permission_denied"}}));
    auto root = a.connect();
    EXPECT_TRUE(stats(root).at("workers").as_array().empty()) << "a denied request never creates a worker";
    EXPECT_EQ(stats(root).at("workers_started").as_int64(), 0);
}

TEST_F(Policy, AReadRuleReadsButNeitherWritesNorGetsFds)
{
    netns n;
    agent_process a({{"policy", json::array{json::object{{"uid", 65534}, {"allow", json::array{"read"}}}}}});
    open_up(a);
    auto r = as_user(65534, 65534, {}, [&](client& c, results& out) {
        record(c, out, "ping", {{"op", "agent.ping"}});
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
        record(c, out, "release", {{"op", "ns.release"}, {"ns", net_ns(n.name())}});
        record(c, out, "socket", {{"op", "net.socket"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r, (results{{"ping", ""}, {"ns.ping", ""}, {"release", "permission_denied"}, {"socket", "permission_denied"}}));
}

TEST_F(Policy, AGroupRuleMatchesThroughASupplementaryGroup)
{
    netns n;
    agent_process a({{"policy", json::array{json::object{{"gid", 4242}, {"allow", json::array{"read"}}}}}});
    open_up(a);
    auto r = as_user(65534, 65534, {4242}, [&](client& c, results& out) {
        record(c, out, "ns.ping", {{"op", "ns.ping"}, {"ns", net_ns(n.name())}});
    }, a);
    EXPECT_EQ(r["ns.ping"], "");
    auto without = as_user(65534, 65534, {}, [&](client& c, results& out) {
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
    open_up(a);
    auto agent_net = "/proc/" + std::to_string(a.pid()) + "/ns/net";
    auto r = as_user(65534, 65534, {}, [&](client& c, results& out) {
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
    auto fd_route = as_user(65534, 65534, {}, [&](client& c, results& out) {
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
    open_up(a);
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok()); // read: not audited
    ASSERT_TRUE(call(c, "net.sysctl_set", net_ns(n.name()), {{"name", "net.ipv4.ip_forward"}, {"value", 1}}).ok());
    auto s = c.call({{"op", "net.socket"}, {"ns", net_ns(n.name())}}, {}, 10000);
    ASSERT_TRUE(s && s->ok());
    EXPECT_EQ(call(c, "net.addr_add", net_ns(n.name()), {{"ifname", "nope"}, {"address", "10.1.1.1/24"}}).error_code(), "os_error");
    as_user(65534, 65534, {}, [&](client& cl, results& out) {
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
