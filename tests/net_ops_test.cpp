// net.links, net.addrs and net.routes against `ip -n NS -j ...` on a namespace the test builds.
#include "op_registry.hpp"

#include "support/test_env.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <set>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class NetOps : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: namespaces and veth pairs";
        ns_.emplace();
        const auto& n = ns_->name();
        // A veth pair inside, up, with addresses and routes; one left down; and one whose peer
        // sits in the host (deleted with the namespace). Addresses are the test's own, in its
        // own namespace; nothing is sent anywhere.
        // Unique per fixture: the kernel destroys a deleted namespace's veths asynchronously.
        static int serial = 0;
        host_peer_ = "nsat" + std::to_string(::getpid() % 100000) + "h" + std::to_string(serial++ % 1000);
        std::string script = "set -e; ip -n " + n + " link add a0 type veth peer name a1;"
                             "ip -n " + n + " link add b0 type veth peer name b1;"
                             "ip -n " + n + " link add c0 type veth peer name " + host_peer_ + " netns " + std::to_string(::getpid()) + ";"
                             "ip -n " + n + " link set a0 up; ip -n " + n + " link set a1 up;"
                             "ip -n " + n + " link set b0 mtu 1400;"
                             "ip -n " + n + " addr add 10.77.0.1/24 brd + dev a0;"
                             "ip -n " + n + " addr add 2001:db8:77::1/64 dev a0 nodad;"
                             "ip -n " + n + " route add 10.78.0.0/24 via 10.77.0.2 dev a0;"
                             "ip -n " + n + " route add blackhole 10.79.0.0/24;"
                             "ip -n " + n + " route add default via 10.77.0.254 metric 50;"
                             "ip -n " + n + " -6 route add 2001:db8:99::/64 via 2001:db8:77::2 dev a0";
        ASSERT_EQ(sh(script), 0) << script;
        agent_.emplace();
        client_.emplace(agent_->connect());
    }

    json::array ip_json(const std::string& args)
    {
        auto out = sh_out("ip -n " + ns_->name() + " -j " + args);
        boost::system::error_code ec;
        auto v = json::parse(out, ec);
        EXPECT_FALSE(ec) << out;
        return v.is_array() ? v.get_array() : json::array{};
    }

    json::array ours(const std::string& op, json::object args = {})
    {
        auto f = call(*client_, op, net_ns(ns_->name()), std::move(args));
        EXPECT_TRUE(f.ok()) << json::serialize(f.value);
        auto* r = f.value.if_contains("result");
        return r && r->is_array() ? r->get_array() : json::array{};
    }

    // Each key is present in both or in neither, with equal values.
    static void same_keys(const json::object& a, const json::object& b, std::initializer_list<const char*> keys,
                          const std::string& where)
    {
        for (auto* k : keys) {
            auto* x = a.if_contains(k);
            auto* y = b.if_contains(k);
            EXPECT_EQ(x != nullptr, y != nullptr) << where << " key " << k << ": ours " << json::serialize(a)
                                                  << " ip " << json::serialize(b);
            if (x && y) {
                EXPECT_EQ(*x, *y) << where << " key " << k;
            }
        }
    }

    std::optional<netns> ns_;
    std::string host_peer_;
    std::optional<agent_process> agent_;
    std::optional<client> client_;
};

TEST_F(NetOps, LinksAgreeWithIpFieldByField)
{
    auto mine = ours("net.links");
    auto theirs = ip_json("link");
    ASSERT_EQ(mine.size(), theirs.size());
    ASSERT_EQ(mine.size(), 6u); // lo, a0, a1, b0, b1, c0 and nothing else
    for (std::size_t i = 0; i < mine.size(); ++i)
        same_keys(mine[i].as_object(), theirs[i].as_object(),
                  {"ifindex", "link", "link_index", "link_netnsid", "ifname", "flags", "mtu", "master", "operstate",
                   "link_type", "address", "broadcast"},
                  "link " + std::to_string(i));
}

TEST_F(NetOps, AddrsAgreeWithIpFieldByField)
{
    auto mine = ours("net.addrs");
    auto theirs = ip_json("addr");
    ASSERT_EQ(mine.size(), theirs.size());
    bool saw_v4 = false, saw_v6 = false;
    for (std::size_t i = 0; i < mine.size(); ++i) {
        auto& m = mine[i].as_object();
        auto& t = theirs[i].as_object();
        same_keys(m, t, {"ifindex", "ifname"}, "addr link " + std::to_string(i));
        auto& ma = m.at("addr_info").as_array();
        auto& ta = t.at("addr_info").as_array();
        ASSERT_EQ(ma.size(), ta.size()) << json::serialize(m) << " vs " << json::serialize(t);
        for (std::size_t j = 0; j < ma.size(); ++j) {
            same_keys(ma[j].as_object(), ta[j].as_object(), {"family", "local", "prefixlen", "scope", "broadcast", "label"},
                      "addr " + std::to_string(i) + "." + std::to_string(j));
            saw_v4 |= ma[j].at("local") == json::value("10.77.0.1");
            saw_v6 |= ma[j].at("local") == json::value("2001:db8:77::1");
        }
    }
    EXPECT_TRUE(saw_v4);
    EXPECT_TRUE(saw_v6);
}

TEST_F(NetOps, RoutesAgreeWithIpFieldByFieldForBothFamilies)
{
    for (auto [family, flag] : {std::pair{"inet", ""}, std::pair{"inet6", "-6 "}}) {
        auto mine = ours("net.routes", {{"family", family}});
        auto theirs = ip_json(std::string(flag) + "route");
        ASSERT_EQ(mine.size(), theirs.size()) << family << ": " << json::serialize(mine) << " vs " << json::serialize(theirs);
        ASSERT_GE(mine.size(), 2u);
        for (std::size_t i = 0; i < mine.size(); ++i)
            same_keys(mine[i].as_object(), theirs[i].as_object(),
                      {"type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric", "flags", "pref", "table"},
                      std::string(family) + " route " + std::to_string(i));
    }
    auto local = ours("net.routes", {{"table", "local"}});
    EXPECT_EQ(local.size(), ip_json("route show table local").size());
}

TEST_F(NetOps, BadArgumentsAndWrongNamespaceTypesAreRefused)
{
    auto f = call(*client_, "net.routes", net_ns(ns_->name()), {{"family", "ipx"}});
    EXPECT_EQ(f.error_code(), "bad_request");
    auto g = call(*client_, "net.links", {{"type", "mnt"}, {"path", "/proc/self/ns/mnt"}});
    EXPECT_EQ(g.error_code(), "ns_type_mismatch");
    auto h = call(*client_, "net.links", {{"path", "/proc/self/ns/mnt"}});
    EXPECT_EQ(h.error_code(), "ns_type_mismatch");
}

TEST_F(NetOps, OneNetlinkSocketPerWorkerIsReused)
{
    auto fds = [&] { return agent_->fd_count(); };
    ours("net.links");
    int after_first = fds();
    for (int i = 0; i < 20; ++i) {
        ours("net.links");
        ours("net.addrs");
        ours("net.routes");
    }
    EXPECT_EQ(fds(), after_first);
}

} // namespace

namespace {

TEST_F(NetOps, SysctlsAreReadAndWrittenInTheTargetNamespaceOnly)
{
    auto host_before = sh_out("cat /proc/sys/net/ipv4/ip_forward");
    auto get = call(*client_, "net.sysctl_get", net_ns(ns_->name()), {{"name", "net.ipv4.ip_forward"}});
    ASSERT_TRUE(get.ok()) << json::serialize(get.value);
    auto set = call(*client_, "net.sysctl_set", net_ns(ns_->name()), {{"name", "net.ipv4.ip_forward"}, {"value", 1}});
    ASSERT_TRUE(set.ok()) << json::serialize(set.value);
    EXPECT_EQ(set.value.at("result").at("value"), json::value("1"));
    EXPECT_EQ(sh_out("ip netns exec " + ns_->name() + " cat /proc/sys/net/ipv4/ip_forward"), "1\n");
    EXPECT_EQ(sh_out("cat /proc/sys/net/ipv4/ip_forward"), host_before) << "the host's value is untouched";
    // Per-interface keys use sysctl(8)'s spelling.
    auto mtu = call(*client_, "net.sysctl_get", net_ns(ns_->name()), {{"name", "net.ipv6.conf.a0.mtu"}});
    EXPECT_TRUE(mtu.ok()) << json::serialize(mtu.value);
}

TEST_F(NetOps, SysctlNamesThatEscapeOrAreNotPerNamespaceAreRefused)
{
    for (auto* name : {"kernel.hostname", "net..ipv4", "net.ipv4/../../kernel/hostname", "net.ipv4.", "net.ipv4 x",
                       "net.ipv4.conf.all.forwarding\n"}) {
        auto f = call(*client_, "net.sysctl_get", net_ns(ns_->name()), {{"name", name}});
        EXPECT_EQ(f.error_code(), "bad_request") << name;
    }
    auto missing = call(*client_, "net.sysctl_get", net_ns(ns_->name()), {{"name", "net.ipv4.no_such_key"}});
    EXPECT_EQ(missing.error_code(), "os_error");
    EXPECT_EQ(missing.value.at("error").at("errno_name"), json::value("ENOENT"));
    auto invalid = call(*client_, "net.sysctl_set", net_ns(ns_->name()), {{"name", "net.ipv4.ip_forward"}, {"value", "x"}});
    EXPECT_EQ(invalid.error_code(), "os_error");
}

} // namespace

namespace {

// No fd leaks: the agent's fd count is the same before and after 1,000 mixed requests,
// failures and passed fds included.
TEST_F(NetOps, AThousandMixedRequestsLeakNoFd)
{
    ours("net.links"); // the worker and its netlink socket exist before the first count
    int before = agent_->fd_count();
    unique_fd nsfd(::open(ns_->path().c_str(), O_RDONLY | O_CLOEXEC));
    int list[] = {nsfd.get()};
    for (int i = 0; i < 1000; ++i) {
        switch (i % 10) {
        case 8: {
            auto f = client_->call({{"op", "net.socket"}, {"ns", net_ns(ns_->name())}, {"args", {{"bind", "127.0.0.1:0"}}}}, {}, 10000);
            EXPECT_TRUE(f && f->ok() && f->fds.size() == 1); // the client's copy closes here
            break;
        }
        case 9: EXPECT_EQ(call(*client_, "net.connect", net_ns(ns_->name()), {{"address", "127.0.0.1:1"}}).error_code(), "os_error"); break;
        case 0: EXPECT_TRUE(call(*client_, "ns.ping", net_ns(ns_->name())).ok()); break;
        case 1: EXPECT_EQ(call(*client_, "ns.ping", net_ns("nsat-missing")).error_code(), "ns_not_found"); break;
        case 2: EXPECT_TRUE(call(*client_, "net.addrs", net_ns(ns_->name())).ok()); break;
        case 3: EXPECT_EQ(call(*client_, "net.routes", net_ns(ns_->name()), {{"family", "x"}}).error_code(), "bad_request"); break;
        case 4: {
            auto f = client_->call({{"op", "net.links"}, {"ns", {{"type", "net"}, {"fd", 0}}}}, list, 10000);
            EXPECT_TRUE(f && f->ok());
            break;
        }
        case 5: {
            auto f = client_->call({{"op", "agent.ping"}}, list, 10000); // an fd the op does not want
            EXPECT_TRUE(f && f->ok());
            break;
        }
        case 6: EXPECT_EQ(call(*client_, "net.sysctl_get", net_ns(ns_->name()), {{"name", "net.nope"}}).error_code(), "os_error"); break;
        case 7: EXPECT_EQ(call(*client_, "ns.ping", {{"type", "mnt"}, {"path", ns_->path()}}).error_code(), "ns_type_mismatch"); break;
        }
    }
    EXPECT_TRUE(wait_until([&] { return agent_->fd_count() == before; })) << agent_->fd_count() << " vs " << before;
}

} // namespace

namespace {

// A copy, not a pointer: callers pass temporaries.
std::optional<json::object> find_by(const json::array& a, const char* key, const json::value& v)
{
    for (auto& e : a)
        if (e.as_object().contains(key) && e.at(key) == v)
            return e.as_object();
    return std::nullopt;
}

TEST_F(NetOps, MutationsAreSeenByIpAndErrorsCarryTheirErrno)
{
    auto ns = net_ns(ns_->name());
    auto set = call(*client_, "net.link_set", ns, {{"ifname", "b0"}, {"up", true}, {"mtu", 1280}});
    ASSERT_TRUE(set.ok()) << json::serialize(set.value);
    auto b0 = find_by(ip_json("link"), "ifname", json::value("b0"));
    ASSERT_TRUE(b0);
    EXPECT_EQ(b0->at("mtu"), json::value(1280));
    bool up = false;
    for (auto& f : b0->at("flags").as_array())
        up |= f == json::value("UP");
    EXPECT_TRUE(up);

    ASSERT_TRUE(call(*client_, "net.addr_add", ns, {{"ifname", "b0"}, {"address", "10.88.0.1/24"}}).ok());
    ASSERT_TRUE(call(*client_, "net.addr_add", ns, {{"ifname", "b0"}, {"address", "2001:db8:88::1/64"}}).ok());
    auto has_addr = [&](const char* local) {
        for (auto& l : ip_json("addr"))
            for (auto& a : l.at("addr_info").as_array())
                if (a.at("local") == json::value(local))
                    return true;
        return false;
    };
    EXPECT_TRUE(has_addr("10.88.0.1"));
    EXPECT_TRUE(has_addr("2001:db8:88::1"));
    auto dup = call(*client_, "net.addr_add", ns, {{"ifname", "b0"}, {"address", "10.88.0.1/24"}});
    EXPECT_EQ(dup.error_code(), "os_error");
    EXPECT_EQ(dup.value.at("error").at("errno_name"), json::value("EEXIST"));

    ASSERT_TRUE(call(*client_, "net.route_add", ns, {{"dst", "10.89.0.0/24"}, {"gateway", "10.88.0.2"}}).ok());
    ASSERT_TRUE(call(*client_, "net.route_add", ns, {{"dst", "10.90.0.0/16"}, {"dev", "b0"}}).ok());
    auto r1 = find_by(ip_json("route"), "dst", json::value("10.89.0.0/24"));
    ASSERT_TRUE(r1);
    EXPECT_EQ(r1->at("gateway"), json::value("10.88.0.2"));
    EXPECT_EQ(r1->at("dev"), json::value("b0"));
    auto r2 = find_by(ip_json("route"), "dst", json::value("10.90.0.0/16"));
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->at("scope"), json::value("link"));
    auto again = call(*client_, "net.route_add", ns, {{"dst", "10.89.0.0/24"}, {"gateway", "10.88.0.2"}});
    EXPECT_EQ(again.value.at("error").at("errno_name"), json::value("EEXIST"));

    ASSERT_TRUE(call(*client_, "net.route_del", ns, {{"dst", "10.89.0.0/24"}, {"gateway", "10.88.0.2"}}).ok());
    EXPECT_FALSE(find_by(ip_json("route"), "dst", json::value("10.89.0.0/24")));
    auto gone = call(*client_, "net.route_del", ns, {{"dst", "10.89.0.0/24"}, {"gateway", "10.88.0.2"}});
    EXPECT_EQ(gone.value.at("error").at("errno_name"), json::value("ESRCH"));
    ASSERT_TRUE(call(*client_, "net.addr_del", ns, {{"ifname", "b0"}, {"address", "10.88.0.1/24"}}).ok());
    EXPECT_FALSE(has_addr("10.88.0.1"));

    auto nodev = call(*client_, "net.addr_add", ns, {{"ifname", "nope0"}, {"address", "10.88.1.1/24"}});
    EXPECT_EQ(nodev.value.at("error").at("errno_name"), json::value("ENODEV"));
    auto badaddr = call(*client_, "net.addr_add", ns, {{"ifname", "b0"}, {"address", "10.88.1.1/33"}});
    EXPECT_EQ(badaddr.error_code(), "bad_request");
    auto nothing = call(*client_, "net.link_set", ns, {{"ifname", "b0"}});
    EXPECT_EQ(nothing.error_code(), "bad_request");
    // The kernel's extended-ACK text says why, next to the errno.
    auto tiny = call(*client_, "net.link_set", ns, {{"ifname", "b0"}, {"mtu", 10}});
    EXPECT_EQ(tiny.value.at("error").at("errno_name"), json::value("EINVAL"));
    EXPECT_NE(tiny.error_message().find("kernel: mtu less than device minimum"), std::string::npos) << tiny.error_message();
}

} // namespace

namespace {

// A listening socket made by the agent inside the namespace accepts a connection from inside
// that namespace, and the same address from the host does not reach it.
TEST_F(NetOps, ASocketFromNetSocketLivesInTheNamespace)
{
    auto f = client_->call({{"op", "net.socket"},
                            {"ns", net_ns(ns_->name())},
                            {"args", {{"family", "inet"}, {"bind", "127.0.0.1:0"}, {"listen", 8}}}},
                           {}, 10000);
    ASSERT_TRUE(f && f->ok()) << (f ? json::serialize(f->value) : f.error().message());
    ASSERT_EQ(f->fds.size(), 1u);
    EXPECT_EQ(f->value.at("fds"), json::value(1));
    std::string local(f->value.at("result").at("local").as_string());
    auto port = local.substr(local.rfind(':') + 1);
    ASSERT_NE(port, "0");

    // From the host: nothing listens there (the agent's copy is closed, ours is in the netns).
    std::string host_try = sh_out("python3 -c \"import socket;s=socket.socket();s.settimeout(3);"
                                  "print(s.connect_ex(('127.0.0.1'," + port + ")))\"");
    EXPECT_NE(host_try, "0\n") << "the host namespace must not reach the namespace's listener";

    // From inside the namespace: it connects and says hello.
    std::string inside = sh_out("ip netns exec " + ns_->name() +
                                " python3 -c \"import socket;s=socket.create_connection(('127.0.0.1'," + port +
                                "),timeout=5);s.sendall(b'hello');print('sent')\"");
    EXPECT_EQ(inside, "sent\n");
    pollfd p{f->fds[0].get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    unique_fd conn(::accept4(f->fds[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn);
    char buf[16] = {};
    EXPECT_EQ(::recv(conn.get(), buf, sizeof buf, 0), 5);
    EXPECT_STREQ(buf, "hello");
}

TEST_F(NetOps, AbstractUnixNamesAreScopedByTheNamespace)
{
    auto f = client_->call({{"op", "net.socket"},
                            {"ns", net_ns(ns_->name())},
                            {"args", {{"family", "unix"}, {"bind", "@nsat-abstract-test"}, {"listen", 1}}}},
                           {}, 10000);
    ASSERT_TRUE(f && f->ok()) << (f ? json::serialize(f->value) : f.error().message());
    EXPECT_EQ(f->value.at("result").at("local"), json::value("@nsat-abstract-test"));
    // The same abstract name is free in the host namespace.
    unique_fd host(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::string name = "nsat-abstract-test";
    std::memcpy(un.sun_path + 1, name.data(), name.size());
    EXPECT_EQ(::bind(host.get(), reinterpret_cast<sockaddr*>(&un),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
              0);
    auto bad = call(*client_, "net.socket", net_ns(ns_->name()), {{"family", "inet"}, {"bind", "127.0.0.1"}});
    EXPECT_EQ(bad.error_code(), "bad_request");
    auto inuse = call(*client_, "net.socket", net_ns(ns_->name()), {{"family", "unix"}, {"bind", "@nsat-abstract-test"}});
    EXPECT_EQ(inuse.value.at("error").at("errno_name"), json::value("EADDRINUSE"));
}

} // namespace

namespace {

class NetConnect : public NetOps {
protected:
    // A listener inside the namespace, made through the agent.
    std::pair<unique_fd, std::string> listener(int backlog)
    {
        auto f = client_->call({{"op", "net.socket"},
                                {"ns", net_ns(ns_->name())},
                                {"args", {{"bind", "127.0.0.1:0"}, {"listen", backlog}}}},
                               {}, 10000);
        EXPECT_TRUE(f && f->ok());
        if (!f || f->fds.empty())
            return {};
        return {std::move(f->fds[0]), std::string(f->value.at("result").at("local").as_string())};
    }
};

TEST_F(NetConnect, ConnectsInsideTheNamespaceAndHandsOverTheSocket)
{
    auto [lfd, addr] = listener(8);
    auto f = client_->call({{"op", "net.connect"}, {"ns", net_ns(ns_->name())}, {"args", {{"address", addr}}}}, {}, 10000);
    ASSERT_TRUE(f && f->ok()) << (f ? json::serialize(f->value) : f.error().message());
    ASSERT_EQ(f->fds.size(), 1u);
    auto& r = f->value.at("result");
    EXPECT_EQ(r.at("remote"), json::value(addr));
    EXPECT_TRUE(r.at("connect_us").is_int64());
    ASSERT_EQ(::send(f->fds[0].get(), "ping", 4, MSG_NOSIGNAL), 4);
    unique_fd conn(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn);
    char buf[8] = {};
    EXPECT_EQ(::recv(conn.get(), buf, sizeof buf, 0), 4);
    EXPECT_STREQ(buf, "ping");
}

TEST_F(NetConnect, AClosedPortFailsFastWithEconnrefused)
{
    auto f = call(*client_, "net.connect", net_ns(ns_->name()), {{"address", "127.0.0.1:1"}});
    EXPECT_EQ(f.error_code(), "os_error");
    EXPECT_EQ(f.value.at("error").at("errno_name"), json::value("ECONNREFUSED"));
    auto v6 = call(*client_, "net.connect", net_ns(ns_->name()), {{"address", "[::1]:1"}});
    EXPECT_EQ(v6.value.at("error").at("errno_name"), json::value("ECONNREFUSED"));
    auto bad = call(*client_, "net.connect", net_ns(ns_->name()), {{"address", "localhost"}});
    EXPECT_EQ(bad.error_code(), "bad_request");
}

// A loopback listener with backlog 0 and one connection it never accepts drops further SYNs:
// a peer that never answers, inside the test's own namespace.
TEST_F(NetConnect, ANeverAnsweringPeerEndsAtItsDeadlineWithoutHoldingTheWorker)
{
    auto [lfd, addr] = listener(0);
    auto first = client_->call({{"op", "net.connect"}, {"ns", net_ns(ns_->name())}, {"args", {{"address", addr}}}}, {}, 10000);
    ASSERT_TRUE(first && first->ok());
    auto ns = json::serialize(net_ns(ns_->name()));
    ASSERT_FALSE(client_->send_line(R"({"id":"hang","op":"net.connect","args":{"address":")" + addr +
                                    R"(","timeout_ms":800},"ns":)" + ns + "}"));
    ASSERT_FALSE(client_->send_line(R"({"id":"ping","op":"ns.ping","ns":)" + ns + "}"));
    auto a = client_->next_frame(10000);
    auto b = client_->next_frame(10000);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->value.at("id"), json::value("ping")) << "the namespace is served while the connect waits";
    EXPECT_TRUE(a->ok());
    EXPECT_EQ(b->value.at("id"), json::value("hang"));
    EXPECT_EQ(b->value.at("error").at("errno_name"), json::value("ETIMEDOUT")) << json::serialize(b->value);
}

TEST_F(NetConnect, ProbeReportsReachabilityWithoutHandingOutFds)
{
    auto [lfd, addr] = listener(8);
    auto up = client_->call({{"op", "net.probe"}, {"ns", net_ns(ns_->name())}, {"args", {{"address", addr}, {"count", 3}}}},
                            {}, 10000);
    ASSERT_TRUE(up && up->ok());
    EXPECT_TRUE(up->fds.empty());
    EXPECT_EQ(up->value.at("result").at("reachable"), json::value(true));
    EXPECT_EQ(up->value.at("result").at("connect_us").as_array().size(), 3u);
    auto down = call(*client_, "net.probe", net_ns(ns_->name()), {{"address", "127.0.0.1:1"}});
    ASSERT_TRUE(down.ok());
    EXPECT_EQ(down.value.at("result").at("reachable"), json::value(false));
    EXPECT_EQ(down.value.at("result").at("errno_name"), json::value("ECONNREFUSED"));
}

} // namespace

namespace {

TEST_F(NetConnect, SocketsListsTheNamespacesListenersAndConnectionsOnly)
{
    auto [lfd, addr] = listener(8);
    // A host listener on another port must not show up.
    unique_fd host(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(host.get(), reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
    ASSERT_EQ(::listen(host.get(), 1), 0);
    socklen_t len = sizeof in;
    ::getsockname(host.get(), reinterpret_cast<sockaddr*>(&in), &len);
    std::string host_addr = "127.0.0.1:" + std::to_string(ntohs(in.sin_port));

    auto v6 = client_->call({{"op", "net.socket"},
                             {"ns", net_ns(ns_->name())},
                             {"args", {{"family", "inet6"}, {"bind", "[::1]:0"}, {"listen", 4}}}},
                            {}, 10000);
    ASSERT_TRUE(v6 && v6->ok());
    std::string v6_addr(v6->value.at("result").at("local").as_string());

    auto listening = ours("net.sockets", {{"proto", "tcp"}, {"state", "listen"}});
    std::set<std::string> locals;
    for (auto& s : listening) {
        locals.insert(std::string(s.at("local").as_string()));
        EXPECT_EQ(s.at("state"), json::value("LISTEN"));
    }
    EXPECT_TRUE(locals.count(addr)) << json::serialize(listening);
    EXPECT_TRUE(locals.count(v6_addr)) << json::serialize(listening);
    EXPECT_FALSE(locals.count(host_addr)) << "a host listener is not in the namespace";

    // The inode is the one the kernel gives our fd.
    struct stat st {};
    ::fstat(lfd.get(), &st);
    bool inode_matches = false;
    for (auto& s : listening)
        inode_matches |= s.at("local") == json::value(addr) && u64(s.at("inode")) == st.st_ino;
    EXPECT_TRUE(inode_matches);

    auto conn = client_->call({{"op", "net.connect"}, {"ns", net_ns(ns_->name())}, {"args", {{"address", addr}}}}, {}, 10000);
    ASSERT_TRUE(conn && conn->ok());
    auto established = ours("net.sockets", {{"proto", "tcp"}, {"state", "established"}});
    int ends = 0;
    for (auto& s : established)
        ends += s.at("local") == json::value(addr) || s.at("remote") == json::value(addr);
    EXPECT_EQ(ends, 2) << "both ends of the connection: " << json::serialize(established);

    auto udp = client_->call({{"op", "net.socket"}, {"ns", net_ns(ns_->name())}, {"args", {{"type", "dgram"}, {"bind", "127.0.0.1:0"}}}},
                             {}, 10000);
    ASSERT_TRUE(udp && udp->ok());
    auto udp_list = ours("net.sockets", {{"proto", "udp"}, {"state", "listen"}});
    bool found = false;
    for (auto& s : udp_list)
        found |= s.at("local") == udp->value.at("result").at("local");
    EXPECT_TRUE(found) << json::serialize(udp_list);
}

} // namespace
