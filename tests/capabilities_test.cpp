#include "capabilities.hpp"

#include "support/test_env.hpp"

#include <gtest/gtest.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>

using namespace nsagent;
using namespace nsagent::test;

namespace {

std::map<std::string, std::uint64_t> cap_fields(const std::string& status_path)
{
    auto all = status_fields(status_path);
    std::map<std::string, std::uint64_t> out;
    for (auto key : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
        if (all.contains(key))
            out[key] = std::stoull(all[key], nullptr, 16);
    return out;
}

// Every thread of the agent, workers included, holds exactly the documented set: nothing more
// in effective, permitted or bounding, nothing inheritable or ambient. Both ways the agent is
// started: as root, and as a non-root user given the set as ambient capabilities.
class Capabilities : public ::testing::TestWithParam<bool> {};

TEST_P(Capabilities, EveryThreadHoldsExactlyTheDocumentedSet)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: the agent starts with every capability only as root";
    std::uint64_t expected = 0;
    for (auto c : agent_capabilities())
        expected |= std::uint64_t{1} << c;
    netns n;
    mount_holder m(false);
    std::optional<uid_t> run_as;
    if (GetParam())
        run_as = agent_test_uid;
    agent_process a({}, {}, run_as);
    auto c = a.connect();
    ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok());
    ASSERT_TRUE(call(c, "ns.ping", pid_ns("mnt", m.pid())).ok());
    auto task_dir = "/proc/" + std::to_string(a.pid()) + "/task";
    int threads = 0;
    DIR* d = ::opendir(task_dir.c_str());
    ASSERT_TRUE(d);
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        ++threads;
        auto caps = cap_fields(task_dir + "/" + e->d_name + "/status");
        EXPECT_EQ(caps["CapEff"], expected) << "tid " << e->d_name;
        EXPECT_EQ(caps["CapPrm"], expected) << "tid " << e->d_name;
        EXPECT_EQ(caps["CapBnd"], expected) << "tid " << e->d_name;
        EXPECT_EQ(caps["CapInh"], 0u) << "tid " << e->d_name;
        EXPECT_EQ(caps["CapAmb"], 0u) << "tid " << e->d_name;
    }
    ::closedir(d);
    EXPECT_EQ(threads, stats(c).at("base_threads").as_int64() + 2) << "the fixed threads and two workers";
    // NoNewPrivs is set.
    std::ifstream status("/proc/" + std::to_string(a.pid()) + "/status");
    std::string line;
    bool nnp = false;
    while (std::getline(status, line))
        nnp |= line == "NoNewPrivs:\t1";
    EXPECT_TRUE(nnp);
}

INSTANTIATE_TEST_SUITE_P(Agent, Capabilities, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "AsNonRootWithAmbientCaps" : "AsRoot"; });

} // namespace

namespace {

// Started with no capabilities at all (a broken unit, a plain user): the agent says so at
// start, answers every namespace request with a clear per-request error naming the syscall and
// the errno, and keeps serving.
TEST(Capabilities, WithoutPrivilegesEveryRequestFailsClearlyAndTheAgentStaysUp)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: to make a namespace and drop to another uid";
    netns n;
    std::string dir = "/tmp/" + unique_name("nocaps");
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(::chown(dir.c_str(), agent_test_uid, agent_test_uid), 0);
    std::string sock = dir + "/nsagent.sock";
    {
        holder agent("echo ready; exec setpriv --reuid " + std::to_string(agent_test_uid) + " --regid " +
                     std::to_string(agent_test_uid) + " --clear-groups --inh-caps=-all --bounding-set=-all " +
                     NSAGENT_TEST_AGENT + " --socket " + sock + " >" + dir + "/log 2>&1");
        ASSERT_TRUE(wait_until([&] { return static_cast<bool>(client::connect(sock)); }));
        auto c = client::connect(sock);
        ASSERT_TRUE(c);
        for (int i = 0; i < 2; ++i) {
            auto f = call(*c, "ns.ping", net_ns(n.name()));
            EXPECT_EQ(f.error_code(), "os_error");
            EXPECT_NE(f.error_message().find("setns"), std::string::npos) << f.error_message();
            EXPECT_EQ(f.value.at("error").at("errno_name").as_string(), "EPERM");
        }
        EXPECT_TRUE(call(*c, "agent.ping").ok()) << "still serving";
        auto log = sh_out("cat " + dir + "/log");
        EXPECT_NE(log.find("started without cap_sys_admin"), std::string::npos) << log;
    }
    sh("rm -rf " + dir);
}

} // namespace
