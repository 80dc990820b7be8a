// nsctl against a running agent: output, --json placement, and exit statuses.
#include "support/test_env.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

namespace json = boost::json;
using namespace nsagent::test;

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
