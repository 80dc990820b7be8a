// systemd integration: socket activation, readiness and watchdog notifications.
#include "service_manager.hpp"

#include "support/test_env.hpp"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <set>

using namespace nsagent;
using namespace nsagent::test;

namespace {

TEST(ServiceManager, ReadinessAndWatchdogPingsReachNotifySocket)
{
    std::string path = "/tmp/" + unique_name("notify") + ".sock";
    unique_fd s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::set<std::string> seen;
    {
        agent_process a({}, {{"NOTIFY_SOCKET", path}, {"WATCHDOG_USEC", "200000"}});
        auto c = a.connect();
        EXPECT_TRUE(wait_until(
            [&] {
                pollfd p{s.get(), POLLIN, 0};
                while (::poll(&p, 1, 0) > 0) {
                    char buf[512] = {};
                    auto n = ::recv(s.get(), buf, sizeof buf - 1, 0);
                    if (n <= 0)
                        break;
                    std::string msg(buf, static_cast<std::size_t>(n));
                    for (std::size_t i = 0; i < msg.size();) {
                        auto nl = msg.find('\n', i);
                        seen.insert(msg.substr(i, nl == std::string::npos ? std::string::npos : nl - i));
                        i = nl == std::string::npos ? msg.size() : nl + 1;
                    }
                }
                return seen.count("READY=1") && seen.count("WATCHDOG=1");
            },
            std::chrono::seconds(10)));
        EXPECT_EQ(a.terminate(), 0);
    }
    EXPECT_TRUE(seen.count("READY=1"));
    EXPECT_TRUE(seen.count("WATCHDOG=1"));
    ::unlink(path.c_str());
}

TEST(ServiceManager, ServesOnASocketPassedBySocketActivation)
{
    if (::access("/usr/bin/systemd-socket-activate", X_OK) != 0)
        GTEST_SKIP() << "systemd-socket-activate is not installed (package systemd)";
    std::string sock = "/tmp/" + unique_name("activated") + ".sock";
    std::string cfg = "/tmp/" + unique_name("cfg") + ".json";
    sh("echo '{}' > " + cfg);
    holder h("systemd-socket-activate -l " + sock + " " + std::string(NSAGENT_TEST_AGENT) + " --config " + cfg +
             " 2>/dev/null & i=0; while [ ! -S " + sock + " ] && [ $i -lt 5000 ]; do i=$((i+1)); sleep 0.002; done;"
             " echo ready; wait");
    auto c = client::connect(sock);
    ASSERT_TRUE(c) << c.error().message();
    auto f = call(*c, "agent.ping");
    EXPECT_TRUE(f.ok());
    h.kill_now();
    ::unlink(sock.c_str());
    ::unlink(cfg.c_str());
}

} // namespace
