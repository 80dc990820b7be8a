#include "ns_id.hpp"

#include "support/test_env.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace nsagent;
using namespace nsagent::test;

namespace {

errc code_of(const op_error& e)
{
    return wire_code(e.code);
}

TEST(NsId, IdentifyReadsTypeAndInode)
{
    unique_fd fd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    auto id = identify(fd.get());
    ASSERT_TRUE(id) << id.error().message;
    struct stat st {};
    ::stat("/proc/self/ns/net", &st);
    EXPECT_EQ(id->type, ns_type::net);
    EXPECT_EQ(id->ino, st.st_ino);
    EXPECT_EQ(id->dev, st.st_dev);
}

TEST(NsId, IdentifyRejectsFilesThatAreNotNamespaces)
{
    unique_fd fd(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    auto id = identify(fd.get());
    ASSERT_FALSE(id);
    EXPECT_EQ(code_of(id.error()), errc::bad_request);
}

TEST(NsId, IdentifyRejectsNamespaceTypesItDoesNotServe)
{
    unique_fd fd(::open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC));
    auto id = identify(fd.get());
    ASSERT_FALSE(id);
    EXPECT_EQ(code_of(id.error()), errc::bad_request);
}

TEST(NsId, EverySelectorFormOfOneNamespaceResolvesToOneIdentity)
{
    if (!is_root())
        GTEST_SKIP() << "needs root to create network namespaces";
    netns n;
    holder inside("exec ip netns exec " + n.name() + " sh -c 'echo ready; exec sleep 600'");
    std::vector<unique_fd> passed;
    passed.emplace_back(::open(n.path().c_str(), O_RDONLY | O_CLOEXEC));

    auto by_name = resolve(selector::by_name(n.name()), {});
    auto by_path = resolve(selector::by_path(std::nullopt, n.path()), {});
    auto by_pid = resolve(selector::by_pid(ns_type::net, inside.pid()), {});
    auto by_fd = resolve(selector::by_fd(ns_type::net, 0), passed);
    ASSERT_TRUE(by_name) << by_name.error().message;
    ASSERT_TRUE(by_path) << by_path.error().message;
    ASSERT_TRUE(by_pid) << by_pid.error().message;
    ASSERT_TRUE(by_fd) << by_fd.error().message;
    EXPECT_EQ(by_name->id, by_path->id);
    EXPECT_EQ(by_name->id, by_pid->id);
    EXPECT_EQ(by_name->id, by_fd->id);
    EXPECT_EQ(by_name->id.ino, n.ino());
    EXPECT_TRUE(by_pid->pidfd);
}

TEST(NsId, ResolutionErrorsCarryTheirCodes)
{
    auto missing = resolve(selector::by_name("nsat-does-not-exist"), {});
    ASSERT_FALSE(missing);
    EXPECT_EQ(code_of(missing.error()), errc::ns_not_found);
    EXPECT_NE(missing.error().message.find("/run/netns/nsat-does-not-exist"), std::string::npos);

    auto wrong_type = resolve(selector::by_path(ns_type::net, "/proc/self/ns/mnt"), {});
    ASSERT_FALSE(wrong_type);
    EXPECT_EQ(code_of(wrong_type.error()), errc::ns_type_mismatch);

    auto guard = selector::by_path(ns_type::net, "/proc/self/ns/net");
    guard.ino = 1;
    auto mismatch = resolve(guard, {});
    ASSERT_FALSE(mismatch);
    EXPECT_EQ(code_of(mismatch.error()), errc::ns_mismatch);

    auto not_ns = resolve(selector::by_path(std::nullopt, "/proc/self/status"), {});
    ASSERT_FALSE(not_ns);
    EXPECT_EQ(code_of(not_ns.error()), errc::bad_request);

    auto no_fd = resolve(selector::by_fd(ns_type::net, 0), {});
    ASSERT_FALSE(no_fd);
    EXPECT_EQ(code_of(no_fd.error()), errc::bad_request);
}

TEST(NsId, PidOfAnExitedProcessIsNotFound)
{
    pid_t child = ::fork();
    if (child == 0)
        ::_exit(0);
    ::waitpid(child, nullptr, 0);
    auto r = resolve(selector::by_pid(ns_type::net, child), {});
    ASSERT_FALSE(r);
    EXPECT_EQ(code_of(r.error()), errc::ns_not_found);
}

TEST(NsId, APathOmittingTheTypeTakesItFromTheFile)
{
    auto r = resolve(selector::by_path(std::nullopt, "/proc/self/ns/mnt"), {});
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->id.type, ns_type::mnt);
}

} // namespace
