// agent.metrics: valid Prometheus text exposition, and counters that move as they should.
#include "agent.hpp"

#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <map>
#include <regex>
#include <sstream>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

struct parsed {
    std::map<std::string, std::string> types;        // metric family -> type
    std::map<std::string, double> samples;           // "name{labels}" -> value
};

// A strict reader of the text format: every sample belongs to a family declared with # TYPE
// before it, names and labels are well formed, and values parse.
parsed parse(const std::string& text)
{
    parsed p;
    static const std::regex type_line(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped))");
    static const std::regex sample_line(
        R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*)\})? (-?[0-9.eE+-]+|\+Inf|NaN))");
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("# HELP ", 0) == 0)
            continue;
        std::smatch m;
        if (std::regex_match(line, m, type_line)) {
            p.types[m[1]] = m[2];
            continue;
        }
        if (!std::regex_match(line, m, sample_line)) {
            ADD_FAILURE() << "malformed line: " << line;
            continue;
        }
        std::string name = m[1];
        std::string family = name;
        for (auto suffix : {"_bucket", "_sum", "_count"})
            if (!p.types.contains(family) && family.size() > std::strlen(suffix) &&
                family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
                family.resize(family.size() - std::strlen(suffix));
        EXPECT_TRUE(p.types.contains(family)) << "no # TYPE before " << line;
        p.samples[name + (m[2].matched ? std::string(m[2]) : std::string())] = std::stod(m[m.size() - 1]);
    }
    return p;
}

TEST(Metrics, TheExpositionParsesAndCountersMove)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: namespaces";
    netns n;
    agent_process a;
    auto c = a.connect();
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(call(c, "ns.ping", net_ns(n.name())).ok());
    EXPECT_EQ(call(c, "ns.ping", net_ns("nsat-missing")).error_code(), "ns_not_found");
    auto r = call(c, "agent.metrics");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value.at("result").at("content_type"), json::value("text/plain; version=0.0.4"));
    auto p = parse(std::string(r.value.at("result").at("text").as_string()));
    EXPECT_EQ(p.types.at("nsagent_requests_total"), "counter");
    EXPECT_EQ(p.types.at("nsagent_queue_wait_seconds"), "histogram");
    EXPECT_EQ(p.types.at("nsagent_threads"), "gauge");
    EXPECT_EQ(p.samples.at(R"(nsagent_requests_total{op="ns.ping",code="ok"})"), 3);
    EXPECT_EQ(p.samples.at(R"(nsagent_requests_total{op="ns.ping",code="ns_not_found"})"), 1);
    EXPECT_EQ(p.samples.at(R"(nsagent_workers{state="live"})"), 1);
    std::string ns = "ns=\"net:[" + std::to_string(n.ino()) + "]\"";
    EXPECT_EQ(p.samples.at("nsagent_worker_ops_total{" + ns + "}"), 3);
    // Histogram: cumulative buckets, +Inf equals _count, and _count equals the ops run.
    double last = 0;
    for (auto le : {"1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf"}) {
        double v = p.samples.at("nsagent_exec_seconds_bucket{" + ns + ",le=\"" + le + "\"}");
        EXPECT_GE(v, last) << le;
        last = v;
    }
    EXPECT_EQ(last, 3);
    EXPECT_EQ(p.samples.at("nsagent_exec_seconds_count{" + ns + "}"), 3);
    EXPECT_EQ(p.samples.at("nsagent_threads"), p.samples.at("nsagent_base_threads") + 1);

    // agent.stats carries the same counters, plus per-worker latency quantiles.
    auto s = stats(c);
    auto& w = s.at("workers").at(0).as_object();
    EXPECT_EQ(w.at("ops"), json::value(3));
    EXPECT_TRUE(w.at("exec_ms").at("p99").is_double());
    EXPECT_GE(w.at("max_queue_depth").to_number<std::int64_t>(), 1);
}

} // namespace

namespace {

std::string http_get(const std::string& endpoint, const std::string& target)
{
    auto colon = endpoint.rfind(':');
    nsagent::unique_fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    ::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &sin.sin_addr);
    timeval tv{10, 0};
    ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0)
        return {};
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    ::send(s.get(), req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(s.get(), buf, sizeof buf, 0)) > 0)
        out.append(buf, static_cast<std::size_t>(n));
    return out;
}

TEST(Metrics, AnHttpListenerServesTheExpositionForScraping)
{
    agent_process a({{"metrics_listen", "127.0.0.1:0"}});
    auto c = a.connect();
    auto endpoint = std::string(stats(c).at("metrics_listen").as_string());
    ASSERT_EQ(endpoint.rfind("127.0.0.1:", 0), 0u) << endpoint;
    auto ok = http_get(endpoint, "/metrics");
    ASSERT_EQ(ok.rfind("HTTP/1.1 200", 0), 0u) << ok.substr(0, 200);
    EXPECT_NE(ok.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
    auto body = ok.substr(ok.find("\r\n\r\n") + 4);
    auto p = parse(body);
    EXPECT_EQ(p.types.at("nsagent_threads"), "gauge");
    EXPECT_EQ(http_get(endpoint, "/").rfind("HTTP/1.1 404", 0), 0u);
    EXPECT_TRUE(call(c, "agent.ping").ok()) << "the agent's own socket is unaffected";
}

TEST(Metrics, NoHttpListenerUnlessConfigured)
{
    agent_process a;
    auto c = a.connect();
    EXPECT_FALSE(stats(c).contains("metrics_listen"));
}

} // namespace
