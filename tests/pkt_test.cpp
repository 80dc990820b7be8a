// pkt.analyze and pkt.capture against a real agent: the RSS suite and checksum verdicts through
// the protocol (checked against tshark's own validation), and live captures on the loopback of
// namespaces the tests create, with cancel, deadline, disconnect and shutdown.
#include "packet_dissect.hpp"

#include "support/packet_craft.hpp"
#include "support/test_env.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

namespace json = boost::json;
using namespace nsagent::test;
using nsagent::unique_fd;

namespace {

class Pkt : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: namespaces and packet sockets";
    }
};

// An address as inet_ntop writes it (the agent's form): "3ffe:501:8::260:..." has a lone zero group.
std::string canonical(const std::string& text)
{
    int family = text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
    unsigned char buf[16];
    char out[INET6_ADDRSTRLEN] = "";
    if (::inet_pton(family, text.c_str(), buf) == 1)
        ::inet_ntop(family, buf, out, sizeof out);
    return out;
}

std::string temp_path(const std::string& tag) { return "/tmp/" + unique_name(tag); }

struct file_remover {
    std::string path;
    ~file_remover() { ::unlink(path.c_str()); }
};

nsagent::frame analyze(nsagent::client& c, const std::string& path, json::object args = {})
{
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd) << path;
    int raw = fd.get();
    auto r = c.call(json::object{{"op", "pkt.analyze"}, {"args", std::move(args)}, {"fds", 1}}, std::span<const int>(&raw, 1), 30000);
    EXPECT_TRUE(r) << "transport: " << (r ? "" : r.error().message());
    return r ? std::move(*r) : nsagent::frame{};
}

std::uint64_t total(const json::object& res, const char* key) { return res.at("totals").as_object().at(key).to_number<std::uint64_t>(); }
std::uint64_t bad(const json::object& res, const char* key)
{
    return res.at("totals").as_object().at("csum_errors").as_object().at(key).to_number<std::uint64_t>();
}

// Everything a pipe gives until EOF, read on a thread of its own.
class pipe_drain {
public:
    explicit pipe_drain(unique_fd fd) : fd_(std::move(fd)), t_([this] { run(); }) {}
    ~pipe_drain()
    {
        if (t_.joinable())
            t_.join();
    }
    std::string finish()
    {
        t_.join();
        return data_;
    }
    std::string so_far()
    {
        std::lock_guard lk(mu_);
        return data_;
    }

private:
    void run()
    {
        char buf[65536];
        for (;;) {
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, 20000) <= 0)
                return; // bounded: a stream silent this long is a failure the test reports
            ssize_t n = ::read(fd_.get(), buf, sizeof buf);
            if (n <= 0)
                return;
            std::lock_guard lk(mu_);
            data_.append(buf, static_cast<std::size_t>(n));
        }
    }
    unique_fd fd_;
    std::mutex mu_;
    std::string data_;
    std::thread t_;
};

struct pcap_packet {
    std::uint32_t caplen, len;
    std::string data;
};

// Parses a pcap stream with libpcap; a cut-off last record is left out.
std::vector<pcap_packet> read_pcap_stream(const std::string& bytes_in, int* dlt = nullptr)
{
    std::vector<pcap_packet> out;
    FILE* f = ::fmemopen(const_cast<char*>(bytes_in.data()), bytes_in.size(), "rb");
    if (!f)
        return out;
    char err[PCAP_ERRBUF_SIZE];
    pcap_t* p = ::pcap_fopen_offline(f, err);
    if (!p) {
        std::fclose(f);
        return out;
    }
    if (dlt)
        *dlt = ::pcap_datalink(p);
    pcap_pkthdr* h;
    const u_char* d;
    while (::pcap_next_ex(p, &h, &d) == 1)
        out.push_back({h->caplen, h->len, std::string(reinterpret_cast<const char*>(d), h->caplen)});
    ::pcap_close(p);
    return out;
}

} // namespace

// The published RSS suite through the protocol: a pcap crafted here, analysed by the agent.
TEST_F(Pkt, AnalyzeReproducesTheRssVerificationSuite)
{
    struct v {
        const char *src, *dst;
        std::uint16_t sport, dport;
        std::uint32_t hash;
    };
    const v tcp_cases[] = {
        {"66.9.149.187", "161.142.100.80", 2794, 1766, 0x51ccc178}, {"199.92.111.2", "65.69.140.83", 14230, 4739, 0xc626b0ea},
        {"24.19.198.95", "12.22.207.184", 12898, 38024, 0x5c2b394a}, {"38.27.205.30", "209.142.163.6", 48228, 2217, 0xafc7327f},
        {"153.39.163.191", "202.188.127.2", 44251, 1303, 0x10e828a2}, {"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x40207d3d},
        {"3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0xdde51bbf},
        {"3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x02d1feef},
    };
    const v two_tuple[] = {{"66.9.149.187", "161.142.100.80", 0, 0, 0x323e8fc2},
                           {"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 0, 0, 0x2cc18cd5}};
    std::vector<frame> frames;
    for (auto& c : tcp_cases) {
        bool v6 = std::string(c.src).find(':') != std::string::npos;
        l4_spec t(6, c.sport, c.dport);
        frames.push_back({ethernet(v6 ? ipv6_packet(c.src, c.dst, t) : ipv4_packet(c.src, c.dst, t))});
    }
    frames.push_back({ethernet(ipv4_packet(two_tuple[0].src, two_tuple[0].dst, l4_spec(1)))});
    frames.push_back({ethernet(ipv6_packet(two_tuple[1].src, two_tuple[1].dst, l4_spec(58)))});
    file_remover f{temp_path("rss") + ".pcap"};
    write_pcap(f.path, DLT_EN10MB, frames);

    agent_process a;
    auto c = a.connect();
    auto res = result_of(analyze(c, f.path, {{"top", 100}, {"engine", "cpu"}}));
    EXPECT_EQ(res.at("engine"), "cpu");
    EXPECT_EQ(total(res, "packets"), frames.size());
    std::map<std::string, std::uint32_t> got;
    for (auto& fl : res.at("flows").as_array()) {
        auto& o = fl.as_object();
        got[std::string(o.at("src").as_string()) + " " + std::to_string(o.at("sport").to_number<int>())] =
            o.at("rss_hash").to_number<std::uint32_t>();
    }
    for (auto& cs : tcp_cases)
        EXPECT_EQ(got[canonical(cs.src) + " " + std::to_string(cs.sport)], cs.hash) << cs.src;
    for (auto& cs : two_tuple)
        EXPECT_EQ(got[canonical(cs.src) + " 0"], cs.hash) << cs.src;
}

// Crafted packets with correct and broken IPv4, TCP and UDP checksums over IPv4 and IPv6, some
// cut short by a snaplen: per packet, the engine's verdicts equal tshark's, and the agent's
// totals equal tshark's counts.
TEST_F(Pkt, ChecksumVerdictsAgreeWithTsharkPacketByPacket)
{
    if (sh("command -v tshark >/dev/null") != 0)
        GTEST_SKIP() << "tshark is not installed (.ci/setup installs it)";
    std::mt19937 rng(2026);
    std::vector<frame> frames;
    for (int i = 0; i < 300; ++i) {
        bool v6 = rng() % 2;
        l4_spec l4(rng() % 2 ? 6 : 17, static_cast<std::uint16_t>(1024 + rng() % 1000), static_cast<std::uint16_t>(80 + rng() % 3),
                   0x18, bytes(rng() % 600));
        for (auto& b : l4.payload)
            b = static_cast<std::uint8_t>(rng());
        l4.break_l4_csum = rng() % 4 == 0;
        l4.zero_udp_csum = l4.proto == 17 && rng() % 8 == 0;
        bool break_ip = !v6 && rng() % 5 == 0;
        auto ip = v6 ? ipv6_packet("2001:db8::" + std::to_string(1 + rng() % 3), "2001:db8::99", l4)
                     : ipv4_packet("192.0.2." + std::to_string(1 + rng() % 3), "192.0.2.99", l4, break_ip);
        frame fr{ethernet(ip)};
        if (rng() % 6 == 0 && fr.data.size() > 80) { // a snaplen shorter than the packet
            fr.len = static_cast<std::uint32_t>(fr.data.size());
            fr.data.resize(14 + (v6 ? 40 : 20) + 20 + rng() % 10);
        }
        frames.push_back(fr);
    }
    file_remover f{temp_path("csum") + ".pcap"};
    write_pcap(f.path, DLT_EN10MB, frames);

    // tshark: 0 bad, 1 good, 2 unverified, 3 not present (UDP zero over IPv4), 4 illegal (UDP zero over IPv6).
    auto out = sh_out("tshark -r " + f.path +
                      " -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE"
                      " -T fields -e ip.checksum.status -e tcp.checksum.status -e udp.checksum.status -E separator=, 2>/dev/null");
    std::istringstream lines(out);
    std::string line;
    std::vector<std::array<std::string, 3>> ts;
    while (std::getline(lines, line)) {
        std::array<std::string, 3> cols;
        std::istringstream cs(line);
        for (auto& col : cols)
            std::getline(cs, col, ',');
        ts.push_back(cols);
    }
    ASSERT_EQ(ts.size(), frames.size()) << out;

    auto verdict_text = [](std::uint8_t v) -> std::string {
        switch (v) {
        case nsagent::pkt::csum_ok: return "1";
        case nsagent::pkt::csum_bad: return "0";
        case nsagent::pkt::csum_unverifiable: return "2";
        case nsagent::pkt::csum_none: return "3";
        default: return "";
        }
    };
    std::uint64_t t_bad_ip = 0, t_bad_tcp = 0, t_bad_udp = 0, t_none = 0, t_unverified = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        SCOPED_TRACE("frame " + std::to_string(i + 1));
        auto& fr = frames[i];
        std::uint32_t len = fr.len ? fr.len : static_cast<std::uint32_t>(fr.data.size());
        nsagent::pkt::packet_record r;
        nsagent::pkt::packet_jobs j;
        nsagent::pkt::parse_packet(fr.data.data(), static_cast<std::uint32_t>(fr.data.size()), len, 0,
                                   nsagent::pkt::link_ethernet, r, j);
        auto ip_sum = nsagent::pkt::ones_sum_bytes(fr.data.data() + j.ip.off, j.ip.len, 0);
        auto l4_sum = nsagent::pkt::ones_sum_bytes(fr.data.data() + j.l4.off, j.l4.len, 0);
        nsagent::pkt::set_verdicts(r, j, ip_sum, l4_sum);
        std::string tl4 = r.proto == 6 ? ts[i][1] : ts[i][2];
        if (tl4 == "4")
            tl4 = "0"; // illegal zero: a bad checksum for us
        EXPECT_EQ(verdict_text(r.ip_csum), ts[i][0]);
        EXPECT_EQ(verdict_text(r.l4_csum), tl4);
        t_bad_ip += ts[i][0] == "0";
        t_bad_tcp += r.proto == 6 && ts[i][1] == "0";
        t_bad_udp += r.proto == 17 && (ts[i][2] == "0" || ts[i][2] == "4");
        t_none += ts[i][2] == "3";
        t_unverified += tl4 == "2";
    }
    ASSERT_GT(t_bad_ip, 0u);
    ASSERT_GT(t_bad_tcp, 0u);
    ASSERT_GT(t_bad_udp, 0u);
    ASSERT_GT(t_none, 0u);
    ASSERT_GT(t_unverified, 0u);

    agent_process a;
    auto c = a.connect();
    auto res = result_of(analyze(c, f.path));
    EXPECT_EQ(total(res, "packets"), frames.size());
    EXPECT_EQ(bad(res, "ipv4"), t_bad_ip);
    EXPECT_EQ(bad(res, "tcp"), t_bad_tcp);
    EXPECT_EQ(bad(res, "udp"), t_bad_udp);
    EXPECT_EQ(total(res, "csum_none"), t_none);
    EXPECT_EQ(total(res, "unverifiable"), t_unverified);
    EXPECT_EQ(total(res, "malformed"), 0u);
}

TEST_F(Pkt, AnalyzeRefusesWhatIsNotACaptureAndSaysWhyTheGpuIsNotUsed)
{
    file_remover junk{temp_path("junk")};
    std::ofstream(junk.path) << "this is not a pcap file\n";
    file_remover ok{temp_path("ok") + ".pcap"};
    write_pcap(ok.path, DLT_RAW, {{ipv4_packet("192.0.2.1", "192.0.2.2", l4_spec(17))}});
    agent_process a;
    auto c = a.connect();
    auto r = analyze(c, junk.path);
    EXPECT_EQ(r.error_code(), "bad_request");
    EXPECT_NE(r.error_message().find("not a pcap"), std::string::npos) << r.error_message();
    EXPECT_EQ(call(c, "pkt.analyze").error_code(), "bad_request"); // no fd

    // No GPU on this machine (or none in this build): "cuda" is refused with the reason,
    // "auto" runs on the CPU and says why.
    auto cuda = analyze(c, ok.path, {{"engine", "cuda"}});
    auto st = stats(c);
    auto* gpu = st.if_contains("gpu");
    if (gpu && gpu->as_object().at("ready").as_bool()) {
        EXPECT_TRUE(cuda.ok());
    } else {
        EXPECT_EQ(cuda.error_code(), "bad_request");
        EXPECT_NE(cuda.error_message().find("engine \"cuda\" is not available"), std::string::npos) << cuda.error_message();
        auto res = result_of(analyze(c, ok.path, {{"engine", "auto"}}));
        EXPECT_EQ(res.at("engine"), "cpu");
        EXPECT_FALSE(res.at("engine_note").as_string().empty());
        EXPECT_EQ(total(res, "udp"), 1u);
    }
}

namespace {

// Starts pkt.capture and returns the pipe from its "started" event.
unique_fd start_capture(nsagent::client& c, const std::string& ns, json::object args, int id, std::optional<int> timeout_ms = {})
{
    json::object req{{"id", id}, {"op", "pkt.capture"}, {"ns", net_ns(ns)}, {"args", std::move(args)}};
    if (timeout_ms)
        req["timeout_ms"] = *timeout_ms;
    EXPECT_FALSE(c.send_line(json::serialize(req)));
    auto f = c.next_frame(10000);
    if (!f) {
        ADD_FAILURE() << "no frame after pkt.capture: " << f.error().message();
        return {};
    }
    EXPECT_EQ(f->value.if_contains("event") ? f->value.at("event").as_string() : "", "started") << json::serialize(f->value);
    if (f->fds.size() != 1) {
        ADD_FAILURE() << "started carries no pipe: " << json::serialize(f->value);
        return {};
    }
    return std::move(f->fds[0]);
}

// The final frame of `id`, collecting the events before it.
nsagent::frame final_of(nsagent::client& c, int id, std::vector<nsagent::frame>* events = nullptr, int timeout_ms = 15000)
{
    for (;;) {
        auto f = c.next_frame(timeout_ms);
        if (!f) {
            ADD_FAILURE() << "no final frame: " << f.error().message();
            return {};
        }
        if (f->value.at("id").as_int64() != id)
            continue;
        if (f->is_final())
            return std::move(*f);
        if (events)
            events->push_back(std::move(*f));
    }
}

// In namespace `ns`: a TCP exchange over its loopback (client sends `up` bytes, the server
// answers `down`), then one UDP datagram to port 5556 that marks the end.
void tcp_exchange(const std::string& ns, int up, int down)
{
    std::string py =
        "import socket,threading\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind(('127.0.0.1',5555)); s.listen(1)\n"
        "def serve():\n"
        "  c,_=s.accept(); got=0\n"
        "  while got<" + std::to_string(up) + ":\n"
        "    d=c.recv(65536)\n"
        "    if not d: break\n"
        "    got+=len(d)\n"
        "  c.sendall(b'y'*" + std::to_string(down) + "); c.close()\n"
        "t=threading.Thread(target=serve); t.start()\n"
        "k=socket.create_connection(('127.0.0.1',5555),timeout=10); k.sendall(b'x'*" + std::to_string(up) + ")\n"
        "got=0\n"
        "while got<" + std::to_string(down) + ":\n"
        "  d=k.recv(65536)\n"
        "  if not d: break\n"
        "  got+=len(d)\n"
        "k.close(); t.join(10)\n"
        "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.sendto(b'end',('127.0.0.1',5556))\n";
    std::string path = temp_path("xchg") + ".py";
    std::ofstream(path) << py;
    EXPECT_EQ(sh("timeout 20 ip netns exec " + ns + " python3 " + path), 0);
    ::unlink(path.c_str());
}

bool has_marker(const std::string& stream)
{
    for (auto& p : read_pcap_stream(stream))
        if (p.data.size() >= 3 && p.data.compare(p.data.size() - 3, 3, "end") == 0)
            return true;
    return false;
}

} // namespace

// A known TCP exchange over a namespace's loopback, captured with a filter: the pcap stream
// reads back with libpcap and tshark, and the flows' bytes are what went over the wire.
TEST_F(Pkt, CaptureOfAKnownTcpExchangeReadsBackAndCountsItsBytes)
{
    netns n;
    ASSERT_EQ(sh("ip -n " + n.name() + " link set lo up"), 0);
    agent_process a;
    auto c = a.connect();
    auto pipe = start_capture(c, n.name(), {{"ifname", "lo"}, {"filter", "tcp port 5555 or udp port 5556"}, {"top", 10}}, 1, 60000);
    ASSERT_TRUE(pipe);
    pipe_drain drain(std::move(pipe));
    const int up = 100000, down = 7000;
    tcp_exchange(n.name(), up, down);
    ASSERT_TRUE(wait_until([&] { return has_marker(drain.so_far()); })) << "the marker never reached the pcap stream";
    ASSERT_FALSE(c.send_line(R"({"id":2,"op":"agent.cancel","args":{"id":1}})"));
    std::vector<nsagent::frame> events;
    auto fin = final_of(c, 1, &events);
    auto res = result_of(fin);
    EXPECT_EQ(res.at("stopped"), "cancelled");
    std::string stream = drain.finish(); // EOF came before the final reply
    int dlt = -1;
    auto pkts = read_pcap_stream(stream, &dlt);
    EXPECT_EQ(dlt, DLT_EN10MB);
    EXPECT_EQ(res.at("packets").to_number<std::uint64_t>(), pkts.size());
    EXPECT_EQ(total(res, "packets"), pkts.size());
    // Loopback traffic is captured before its checksums are filled in (CHECKSUM_PARTIAL): the
    // engine must call that offloaded, not bad.
    EXPECT_EQ(bad(res, "tcp") + bad(res, "ipv4") + bad(res, "udp"), 0u);
    EXPECT_GT(total(res, "csum_offloaded"), 0u);

    // tshark reads the same stream: payload per direction is what the exchange sent, and the
    // frame bytes per direction are the agent's flow bytes.
    file_remover f{temp_path("cap") + ".pcap"};
    std::ofstream(f.path, std::ios::binary) << stream;
    auto out = sh_out("tshark -r " + f.path + " -Y tcp -T fields -e tcp.srcport -e tcp.len -e frame.len -E separator=, 2>/dev/null");
    std::map<int, std::uint64_t> payload, wire;
    std::istringstream ls(out);
    std::string line;
    while (std::getline(ls, line)) {
        int port = 0;
        unsigned long plen = 0, flen = 0;
        if (std::sscanf(line.c_str(), "%d,%lu,%lu", &port, &plen, &flen) == 3) {
            payload[port] += plen;
            wire[port] += flen;
        }
    }
    EXPECT_EQ(payload[5555], static_cast<std::uint64_t>(down));
    std::uint64_t client_payload = 0;
    for (auto& [port, n] : payload)
        if (port != 5555)
            client_payload += n;
    EXPECT_EQ(client_payload, static_cast<std::uint64_t>(up));
    std::uint64_t server_bytes = 0, client_bytes = 0, tcp_flows = 0;
    for (auto& fl : res.at("flows").as_array()) {
        auto& o = fl.as_object();
        if (o.at("proto") != "tcp")
            continue;
        ++tcp_flows;
        (o.at("sport").to_number<int>() == 5555 ? server_bytes : client_bytes) += o.at("bytes").to_number<std::uint64_t>();
    }
    EXPECT_EQ(tcp_flows, 2u);
    EXPECT_EQ(server_bytes, wire[5555]);
    std::uint64_t client_wire = 0;
    for (auto& [port, n] : wire)
        if (port != 5555)
            client_wire += n;
    EXPECT_EQ(client_bytes, client_wire);
    EXPECT_GE(res.at("kernel").as_object().at("received").to_number<std::uint64_t>(), pkts.size());
}

TEST_F(Pkt, CaptureStopsAtCountOrDeadlineWithTheAnalysisAndRefusesBadInput)
{
    netns n;
    ASSERT_EQ(sh("ip -n " + n.name() + " link set lo up"), 0);
    agent_process a;
    auto c = a.connect();
    // A deadline with nothing captured: the final reply is the (empty) analysis, not a timeout.
    {
        auto pipe = start_capture(c, n.name(), {{"ifname", "lo"}}, 1, 300);
        ASSERT_TRUE(pipe);
        pipe_drain d(std::move(pipe));
        auto res = result_of(final_of(c, 1));
        EXPECT_EQ(res.at("stopped"), "deadline");
        EXPECT_EQ(res.at("packets").to_number<int>(), 0);
        EXPECT_EQ(read_pcap_stream(d.finish()).size(), 0u);
    }
    // count: exactly that many, then it stops by itself.
    {
        auto pipe = start_capture(c, n.name(), {{"ifname", "lo"}, {"count", 4}, {"filter", "udp port 5557"}}, 2, 20000);
        ASSERT_TRUE(pipe);
        pipe_drain d(std::move(pipe));
        EXPECT_EQ(sh("ip netns exec " + n.name() +
                     " python3 -c \"import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
                     "[s.sendto(b'x'*10,('127.0.0.1',5557)) for i in range(6)]\""),
                  0);
        auto res = result_of(final_of(c, 2));
        EXPECT_EQ(res.at("stopped"), "count");
        EXPECT_EQ(res.at("packets").to_number<int>(), 4);
        EXPECT_EQ(total(res, "udp"), 4u);
        EXPECT_EQ(read_pcap_stream(d.finish()).size(), 4u);
    }
    auto missing = call(c, "pkt.capture", net_ns(n.name()), {{"ifname", "nosuch0"}});
    EXPECT_EQ(missing.error_code(), "os_error");
    EXPECT_NE(missing.error_message().find("nosuch0"), std::string::npos) << missing.error_message();
    EXPECT_NE(missing.error_message().find(n.name()), std::string::npos) << missing.error_message();
    auto filter = call(c, "pkt.capture", net_ns(n.name()), {{"ifname", "lo"}, {"filter", "tcp port banana"}});
    EXPECT_EQ(filter.error_code(), "bad_request");
    EXPECT_NE(filter.error_message().find("banana"), std::string::npos) << filter.error_message();
}

// A client that vanishes mid-capture: the capture thread ends, and fds and threads come back.
TEST_F(Pkt, DisconnectEndsTheCaptureAndLeaksNoFdOrThread)
{
    netns n;
    ASSERT_EQ(sh("ip -n " + n.name() + " link set lo up"), 0);
    agent_process a;
    auto probe = a.connect();
    ASSERT_TRUE(call(probe, "ns.ping", net_ns(n.name())).ok()); // the worker exists before the baseline
    int fds0 = a.fd_count(), threads0 = a.thread_count();
    for (int i = 0; i < 3; ++i) {
        auto c = a.connect();
        auto pipe = start_capture(c, n.name(), {{"ifname", "lo"}}, 1, 60000);
        ASSERT_TRUE(pipe);
        ASSERT_TRUE(wait_until([&] { return stats(probe).at("streams").to_number<std::uint64_t>() == 1; }));
        if (i == 0) {
            // The thread audit with a capture running: the stream thread (and the GPU worker's,
            // in a CUDA build) must be in the agent's own namespaces, the worker in its target.
            auto doctor = sh_out("NSAGENT_SOCKET=" + a.socket() + " " + NSAGENT_NSCTL + " doctor 2>&1; echo rc=$?");
            EXPECT_NE(doctor.find("0 problems"), std::string::npos) << doctor;
            EXPECT_NE(doctor.find("rc=0"), std::string::npos) << doctor;
        }
    } // client and pipe closed
    EXPECT_TRUE(wait_until([&] { return stats(probe).at("streams").to_number<std::uint64_t>() == 0; }));
    EXPECT_TRUE(wait_until([&] { return a.fd_count() == fds0 && a.thread_count() == threads0; }))
        << "fds " << fds0 << " -> " << a.fd_count() << ", threads " << threads0 << " -> " << a.thread_count();
    EXPECT_EQ(stats(probe).at("streams_started").to_number<std::uint64_t>(), 3u);
    auto metrics = std::string(result_of(call(probe, "agent.metrics")).at("text").as_string());
    EXPECT_NE(metrics.find("\nnsagent_streams_started_total 3\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("\nnsagent_streams 0\n"), std::string::npos) << metrics;
}

// SIGTERM with captures running: each is answered with its analysis, and the agent exits 0.
TEST_F(Pkt, SigtermDuringActiveCapturesAnswersEachAndExitsZero)
{
    netns n1, n2;
    for (auto* n : {&n1, &n2})
        ASSERT_EQ(sh("ip -n " + n->name() + " link set lo up"), 0);
    agent_process a;
    auto c1 = a.connect(), c2 = a.connect();
    auto p1 = start_capture(c1, n1.name(), {{"ifname", "lo"}}, 1, 60000);
    auto p2 = start_capture(c2, n2.name(), {{"ifname", "lo"}}, 1, 60000);
    ASSERT_TRUE(p1 && p2);
    ::kill(a.pid(), SIGTERM);
    for (auto* c : {&c1, &c2}) {
        auto res = result_of(final_of(*c, 1));
        EXPECT_EQ(res.at("stopped"), "the agent is shutting down");
    }
    EXPECT_EQ(a.wait_exit(std::chrono::seconds(10)), 0);
}

// A capture whose namespace is deleted under it ends with one reply, and nothing hangs.
TEST_F(Pkt, NamespaceDeletedUnderACaptureEndsItWithOneReply)
{
    std::optional<netns> n;
    n.emplace();
    ASSERT_EQ(sh("ip -n " + n->name() + " link add nsat-v0 type veth peer name nsat-v1"), 0);
    ASSERT_EQ(sh("ip -n " + n->name() + " link set nsat-v0 up && ip -n " + n->name() + " link set nsat-v1 up"), 0);
    agent_process a;
    auto c = a.connect();
    auto pipe = start_capture(c, n->name(), {{"ifname", "nsat-v0"}}, 1, 5000);
    ASSERT_TRUE(pipe);
    pipe_drain d(std::move(pipe));
    // Deleting the veth takes the capture's interface away now; the namespace follows.
    ASSERT_EQ(sh("ip -n " + n->name() + " link del nsat-v0"), 0);
    n.reset();
    auto f = final_of(c, 1);
    ASSERT_TRUE(f.is_final());
    if (f.ok()) {
        EXPECT_NE(std::string(f.value.at("result").as_object().at("stopped").as_string()), "");
    }
    d.finish();
    auto probe = a.connect();
    EXPECT_TRUE(wait_until([&] { return stats(probe).at("streams").to_number<std::uint64_t>() == 0; }));
}

// The stream budget: past max_streams a capture is refused busy, naming the limit, and the
// running one is unaffected.
TEST_F(Pkt, PastMaxStreamsACaptureIsBusyAndTheRunningOneGoesOn)
{
    netns n;
    ASSERT_EQ(sh("ip -n " + n.name() + " link set lo up"), 0);
    agent_process a({{"max_streams", 1}});
    auto c1 = a.connect(), c2 = a.connect();
    auto pipe = start_capture(c1, n.name(), {{"ifname", "lo"}}, 1, 60000);
    ASSERT_TRUE(pipe);
    auto second = call(c2, "pkt.capture", net_ns(n.name()), {{"ifname", "lo"}});
    EXPECT_EQ(second.error_code(), "busy");
    EXPECT_NE(second.error_message().find("max_streams (1)"), std::string::npos) << second.error_message();
    ASSERT_FALSE(c1.send_line(R"({"id":2,"op":"agent.cancel","args":{"id":1}})"));
    EXPECT_EQ(result_of(final_of(c1, 1)).at("stopped"), "cancelled");
}

// Batch boundaries change nothing: the same file analysed in batches of 3 frames and in one
// batch gives the same reply, flows spanning batches included.
TEST_F(Pkt, AnalysisIsTheSameWhateverTheBatchSize)
{
    std::vector<frame> frames;
    std::mt19937 rng(5);
    for (int i = 0; i < 40; ++i)
        frames.push_back({ethernet(ipv4_packet("192.0.2." + std::to_string(1 + rng() % 3), "192.0.2.9",
                                               l4_spec(rng() % 2 ? 6 : 17, static_cast<std::uint16_t>(rng() % 3), 80, 0x18,
                                                       bytes(rng() % 300)))),
                          0, static_cast<std::uint64_t>(i) * 1000});
    file_remover f{temp_path("batch") + ".pcap"};
    write_pcap(f.path, DLT_EN10MB, frames);
    agent_process small({{"pkt_batch", 3}}), large;
    auto c1 = small.connect(), c2 = large.connect();
    auto a = result_of(analyze(c1, f.path, {{"top", 100}, {"bidirectional", true}}));
    auto b = result_of(analyze(c2, f.path, {{"top", 100}, {"bidirectional", true}}));
    a.erase("engine_note");
    b.erase("engine_note");
    EXPECT_EQ(json::serialize(a), json::serialize(b));
    EXPECT_EQ(total(a, "packets"), 40u);
}
