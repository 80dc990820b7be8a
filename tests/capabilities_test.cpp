#include "capabilities.hpp"

#include "support/test_env.hpp"

#include <gtest/gtest.h>

#include <dirent.h>

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
