// The CPU packet engine against the published RSS verification suite and packets crafted byte
// by byte (support/packet_craft), with correct and deliberately broken checksums.
#include "packet_engine.hpp"

#include "support/packet_craft.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

using namespace nsagent;
using namespace nsagent::test;
using pkt::counter;

namespace {

pkt::analysis analyze(const std::vector<bytes>& frames, pkt::link_kind link = pkt::link_ethernet,
                      pkt::engine_options o = {})
{
    pkt::frame_batch b;
    b.link = link;
    std::uint64_t ts = 1000;
    for (auto& f : frames)
        b.add(ts++, f.data(), static_cast<std::uint32_t>(f.size()), static_cast<std::uint32_t>(f.size()));
    pkt::analysis a(o);
    pkt::analyze_cpu(b, a);
    return a;
}

std::uint64_t count(const pkt::analysis& a, counter c) { return a.counts()[c]; }

// The verification suite of the RSS specification: (dst, dport, src, sport, 4-tuple, 2-tuple).
struct rss_vector {
    const char *dst;
    std::uint16_t dport;
    const char* src;
    std::uint16_t sport;
    std::uint32_t with_ports, addresses_only;
};

const rss_vector ipv4_suite[] = {
    {"161.142.100.80", 1766, "66.9.149.187", 2794, 0x51ccc178, 0x323e8fc2},
    {"65.69.140.83", 4739, "199.92.111.2", 14230, 0xc626b0ea, 0xd718262a},
    {"12.22.207.184", 38024, "24.19.198.95", 12898, 0x5c2b394a, 0xd2d0a5de},
    {"209.142.163.6", 2217, "38.27.205.30", 48228, 0xafc7327f, 0x82989176},
    {"202.188.127.2", 1303, "153.39.163.191", 44251, 0x10e828a2, 0x5d1809c5},
};

const rss_vector ipv6_suite[] = {
    {"3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x40207d3d, 0x2cc18cd5},
    {"ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0xdde51bbf, 0x0f0c461c},
    {"fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x02d1feef, 0x4b61e985},
};

std::uint32_t only_flow_hash(const pkt::analysis& a)
{
    auto flows = a.top(10, pkt::flow_order::bytes);
    EXPECT_EQ(flows.size(), 1u);
    return flows.empty() ? 0 : flows[0].rss_hash;
}

} // namespace

TEST(RssHash, Ipv4VerificationSuiteBitForBit)
{
    for (auto& v : ipv4_suite) {
        SCOPED_TRACE(v.src);
        l4_spec tcp{6, v.sport, v.dport};
        EXPECT_EQ(only_flow_hash(analyze({ethernet(ipv4_packet(v.src, v.dst, tcp))})), v.with_ports);
        l4_spec udp{17, v.sport, v.dport};
        EXPECT_EQ(only_flow_hash(analyze({ethernet(ipv4_packet(v.src, v.dst, udp))})), v.with_ports);
        l4_spec icmp{1};
        EXPECT_EQ(only_flow_hash(analyze({ethernet(ipv4_packet(v.src, v.dst, icmp))})), v.addresses_only);
    }
}

TEST(RssHash, Ipv6VerificationSuiteBitForBit)
{
    for (auto& v : ipv6_suite) {
        SCOPED_TRACE(v.src);
        l4_spec tcp{6, v.sport, v.dport};
        EXPECT_EQ(only_flow_hash(analyze({ethernet(ipv6_packet(v.src, v.dst, tcp))})), v.with_ports);
        l4_spec icmp{58};
        EXPECT_EQ(only_flow_hash(analyze({ethernet(ipv6_packet(v.src, v.dst, icmp))})), v.addresses_only);
    }
}

TEST(RssHash, TableAndBitwiseDefinitionAgreeForRandomKeysAndInputs)
{
    std::mt19937 rng(7);
    for (int round = 0; round < 200; ++round) {
        pkt::engine_options o;
        for (auto& b : o.key.k)
            b = static_cast<std::uint8_t>(rng());
        pkt::analysis a(o);
        pkt::packet_record r{};
        r.family = round % 2 ? 4 : 6;
        r.flags = pkt::rec_ip | pkt::rec_ports;
        r.proto = 6;
        for (auto& b : r.src)
            b = static_cast<std::uint8_t>(rng());
        for (auto& b : r.dst)
            b = static_cast<std::uint8_t>(rng());
        if (r.family == 4)
            for (int i = 4; i < 16; ++i)
                r.src[i] = r.dst[i] = 0;
        r.sport = static_cast<std::uint16_t>(rng());
        r.dport = static_cast<std::uint16_t>(rng());
        std::uint8_t in[36];
        auto n = pkt::rss_input(r, true, in);
        EXPECT_EQ(a.rss(r), pkt::toeplitz(o.key, in, n));
    }
}

TEST(RssHash, SymmetricKeyHashesBothDirectionsAlike)
{
    pkt::engine_options o;
    o.key = pkt::symmetric_rss_key();
    auto fwd = only_flow_hash(analyze({ethernet(ipv4_packet("10.1.2.3", "10.9.8.7", {6, 40000, 443}))}, pkt::link_ethernet, o));
    auto rev = only_flow_hash(analyze({ethernet(ipv4_packet("10.9.8.7", "10.1.2.3", {6, 443, 40000}))}, pkt::link_ethernet, o));
    EXPECT_EQ(fwd, rev);
    // And the default key does not: the option is what makes the difference.
    auto fwd_d = only_flow_hash(analyze({ethernet(ipv4_packet("10.1.2.3", "10.9.8.7", {6, 40000, 443}))}));
    auto rev_d = only_flow_hash(analyze({ethernet(ipv4_packet("10.9.8.7", "10.1.2.3", {6, 443, 40000}))}));
    EXPECT_NE(fwd_d, rev_d);
    EXPECT_TRUE(pkt::parse_rss_key(std::string(80, 'a')));
    EXPECT_FALSE(pkt::parse_rss_key("6d5a"));
}

TEST(Checksums, CorrectOnesVerifyAndEachBrokenLayerIsCountedAsItsOwn)
{
    l4_spec tcp{6, 1, 2, 0x18, bytes(33, 0xab)}; // odd payload: the trailing byte is padded
    l4_spec udp{17, 3, 4, 0, bytes(100, 0x5a)};
    l4_spec bad_tcp = tcp, bad_udp = udp;
    bad_tcp.break_l4_csum = bad_udp.break_l4_csum = true;
    auto a = analyze({
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", tcp)),
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", udp)),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", tcp)),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", udp)),
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", bad_tcp)),
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", bad_udp)),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", bad_tcp)),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", bad_udp)),
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", tcp, /*break_ip_csum=*/true)),
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", {1})),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", {58})),
    });
    EXPECT_EQ(count(a, pkt::t_packets), 11u);
    EXPECT_EQ(count(a, pkt::t_bad_tcp), 2u);
    EXPECT_EQ(count(a, pkt::t_bad_udp), 2u);
    EXPECT_EQ(count(a, pkt::t_bad_ipv4), 1u);
    EXPECT_EQ(count(a, pkt::t_bad_icmp), 0u);
    EXPECT_EQ(count(a, pkt::t_bad_icmpv6), 0u);
    EXPECT_EQ(count(a, pkt::t_malformed), 0u);
    EXPECT_EQ(count(a, pkt::t_tcp), 5u);
    EXPECT_EQ(count(a, pkt::t_udp), 4u);
    EXPECT_EQ(count(a, pkt::t_ipv4), 6u);
    EXPECT_EQ(count(a, pkt::t_ipv6), 5u);
    std::uint64_t flow_errors = 0;
    for (auto& f : a.top(100, pkt::flow_order::bytes))
        flow_errors += f.csum_errors;
    EXPECT_EQ(flow_errors, 5u);
}

TEST(Checksums, RandomPayloadLengthsAllVerify)
{
    // Every length from 0 to 300 and odd alignments: the engine's 8-byte summing must agree
    // with the textbook sum at every tail length.
    std::mt19937 rng(11);
    std::vector<bytes> frames;
    for (std::size_t n = 0; n <= 300; ++n) {
        bytes payload(n);
        for (auto& b : payload)
            b = static_cast<std::uint8_t>(rng());
        frames.push_back(ethernet(ipv4_packet("198.51.100.1", "198.51.100.2", {17, 5, 6, 0, payload})));
        frames.push_back(ethernet(ipv6_packet("2001:db8::a", "2001:db8::b", {6, 7, 8, 0x10, payload})));
    }
    auto a = analyze(frames);
    EXPECT_EQ(count(a, pkt::t_packets), frames.size());
    EXPECT_EQ(count(a, pkt::t_bad_tcp) + count(a, pkt::t_bad_udp) + count(a, pkt::t_bad_ipv4), 0u);
    EXPECT_EQ(count(a, pkt::t_unverifiable), 0u);
}

TEST(Checksums, UdpZeroIsNoneOverIpv4AndBadOverIpv6)
{
    l4_spec udp{17, 53, 53, 0, bytes(20, 1)};
    udp.zero_udp_csum = true;
    auto a = analyze({ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", udp)), ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", udp))});
    EXPECT_EQ(count(a, pkt::t_csum_none), 1u);
    EXPECT_EQ(count(a, pkt::t_bad_udp), 1u);
}

TEST(Checksums, ShortCaptureIsUnverifiableNotBad)
{
    auto full = ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", {6, 1, 2, 0x18, bytes(500, 7)}));
    pkt::frame_batch b;
    b.add(1, full.data(), 96, static_cast<std::uint32_t>(full.size())); // snaplen 96
    pkt::analysis a;
    pkt::analyze_cpu(b, a);
    EXPECT_EQ(count(a, pkt::t_unverifiable), 1u);
    EXPECT_EQ(count(a, pkt::t_bad_tcp), 0u);
    EXPECT_EQ(count(a, pkt::t_tcp), 1u);
    EXPECT_EQ(count(a, pkt::t_bytes), full.size()); // bytes count the wire length
    auto flows = a.top(1, pkt::flow_order::bytes);
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_EQ(flows[0].sport, 1);
    EXPECT_EQ(flows[0].dport, 2);
}

TEST(Parsing, MalformedAndTruncatedAreCountedNeverTrusted)
{
    auto good = ipv4_packet("192.0.2.1", "192.0.2.2", {6});
    auto bad_ihl = good;
    bad_ihl[0] = 0x44; // IHL 4 words < 5
    auto too_long = good;
    too_long[2] = 0x40; // total length beyond the frame
    auto bad_doff = good;
    bad_doff[20 + 12] = 0x20; // TCP data offset 2 words
    bytes tiny = {0x02, 0, 0};
    auto cut = ethernet(good);
    pkt::frame_batch b;
    for (auto* f : {&bad_ihl, &too_long, &bad_doff}) {
        auto e = ethernet(*f);
        b.add(1, e.data(), static_cast<std::uint32_t>(e.size()), static_cast<std::uint32_t>(e.size()));
    }
    b.add(1, tiny.data(), 3, 3);                                       // shorter than Ethernet
    b.add(1, cut.data(), 20, static_cast<std::uint32_t>(cut.size())); // IP header cut by the snaplen
    pkt::analysis a;
    pkt::analyze_cpu(b, a);
    EXPECT_EQ(count(a, pkt::t_packets), 5u);
    EXPECT_EQ(count(a, pkt::t_malformed), 4u);
    EXPECT_EQ(count(a, pkt::t_truncated), 1u);
    // The one with a valid IP header but a broken TCP header still counts as a flow, port-less.
    auto flows = a.top(10, pkt::flow_order::bytes);
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_EQ(flows[0].sport, 0);
}

TEST(Parsing, GarbageNeverCrashesAndEveryFrameIsCounted)
{
    std::mt19937 rng(3);
    for (auto link : {pkt::link_ethernet, pkt::link_sll, pkt::link_sll2, pkt::link_raw}) {
        pkt::frame_batch b;
        b.link = link;
        for (int i = 0; i < 20000; ++i) {
            bytes f(rng() % 120);
            for (auto& x : f)
                x = static_cast<std::uint8_t>(rng());
            if (f.size() > 14 && i % 2) { // make half of them look like IP to go deeper
                f[12] = 0x08, f[13] = 0;
                f[14] = static_cast<std::uint8_t>(0x40 | (f[14] & 0x0f));
            }
            auto cap = f.empty() ? 0 : static_cast<std::uint32_t>(rng() % (f.size() + 1));
            b.add(1, f.data(), cap, static_cast<std::uint32_t>(f.size() + rng() % 3));
        }
        pkt::analysis a;
        pkt::analyze_cpu(b, a);
        EXPECT_EQ(count(a, pkt::t_packets), 20000u);
    }
}

TEST(Parsing, VlanQinqSllSll2AndRawIpAllReachTheSameFlow)
{
    auto ip = ipv4_packet("203.0.113.5", "203.0.113.6", {17, 9, 10, 0, bytes(10, 1)});
    bytes sll(16, 0), sll2(20, 0);
    sll[14] = 0x08;
    sll2[0] = 0x08;
    sll.insert(sll.end(), ip.begin(), ip.end());
    sll2.insert(sll2.end(), ip.begin(), ip.end());
    std::vector<std::pair<pkt::link_kind, bytes>> cases = {
        {pkt::link_ethernet, ethernet(ip)},
        {pkt::link_ethernet, ethernet(ip, {{0x8100, 7}})},
        {pkt::link_ethernet, ethernet(ip, {{0x88a8, 100}, {0x8100, 7}})},
        {pkt::link_sll, sll},
        {pkt::link_sll2, sll2},
        {pkt::link_raw, ip},
    };
    for (auto& [link, f] : cases) {
        auto a = analyze({f}, link);
        EXPECT_EQ(count(a, pkt::t_udp), 1u);
        EXPECT_EQ(count(a, pkt::t_malformed), 0u);
        EXPECT_EQ(count(a, pkt::t_bad_udp), 0u);
        auto flows = a.top(1, pkt::flow_order::bytes);
        ASSERT_EQ(flows.size(), 1u);
        EXPECT_EQ(flows[0].sport, 9);
        EXPECT_EQ(flows[0].dport, 10);
    }
}

TEST(Parsing, Ipv4OptionsAndIpv6ExtensionChainsAreSkipped)
{
    bytes opts = {0x94, 0x04, 0, 0}; // router alert
    bytes hop(8, 0), dest(16, 0);
    dest[1] = 1; // 16 bytes
    auto a = analyze({
        ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", {6, 80, 81}, false, opts)),
        ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", {6, 80, 81}, {{0, hop}, {60, dest}})),
    });
    EXPECT_EQ(count(a, pkt::t_tcp), 2u);
    EXPECT_EQ(count(a, pkt::t_bad_tcp) + count(a, pkt::t_bad_ipv4) + count(a, pkt::t_malformed), 0u);
    for (auto& f : a.top(2, pkt::flow_order::bytes))
        EXPECT_EQ(f.dport, 81);
}

TEST(Parsing, FragmentsAggregatePortlessAndAreNotChecked)
{
    bytes frag(8, 0);
    frag[2] = 0x00, frag[3] = 0x08; // offset 1 (8 bytes), not the first piece
    auto later = ethernet(ipv6_packet("2001:db8::1", "2001:db8::2", {250, 0, 0, 0, bytes(24, 3)}, {{44, frag}}));
    later[14 + 40] = 6; // the fragment header says the datagram carries TCP
    auto a = analyze({later});
    EXPECT_EQ(count(a, pkt::t_fragments), 1u);
    EXPECT_EQ(count(a, pkt::t_tcp), 1u);
    EXPECT_EQ(count(a, pkt::t_bad_tcp), 0u);
    auto flows = a.top(1, pkt::flow_order::bytes);
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_EQ(flows[0].sport, 0);
}

TEST(Flows, BidirectionalMergesDirectionsAndKeepsTheFirstPacketsOrientation)
{
    auto c2s = ethernet(ipv4_packet("10.0.0.9", "10.0.0.1", {6, 50000, 22}));
    auto s2c = ethernet(ipv4_packet("10.0.0.1", "10.0.0.9", {6, 22, 50000, 0x12}));
    pkt::engine_options bi;
    bi.bidirectional = true;
    auto one = analyze({c2s, s2c, s2c}, pkt::link_ethernet, bi);
    auto flows = one.top(10, pkt::flow_order::packets);
    ASSERT_EQ(flows.size(), 1u);
    EXPECT_EQ(flows[0].packets, 3u);
    EXPECT_EQ(flows[0].sport, 50000); // as the first packet had it
    EXPECT_EQ(flows[0].tcp_flags, 0x18 | 0x12);
    EXPECT_EQ(flows[0].first_ts, 1000u);
    EXPECT_EQ(flows[0].last_ts, 1002u);
    EXPECT_EQ(analyze({c2s, s2c, s2c}).top(10, pkt::flow_order::packets).size(), 2u);
}

TEST(Flows, TopOrderIsDeterministicWithTiesBrokenByTheTuple)
{
    std::vector<bytes> frames;
    for (int port = 10; port > 0; --port) // inserted in reverse tuple order
        frames.push_back(ethernet(ipv4_packet("192.0.2.1", "192.0.2.2", {17, static_cast<std::uint16_t>(port), 99})));
    auto a = analyze(frames);
    auto top = a.top(4, pkt::flow_order::bytes);
    ASSERT_EQ(top.size(), 4u);
    for (int i = 0; i < 4; ++i)
        EXPECT_EQ(top[static_cast<std::size_t>(i)].sport, i + 1);
    EXPECT_EQ(a.flow_count(), 10u);
}

// The CUDA engine reduces each batch to one partial flow per key (its earliest packet's tuple
// and hash, summed counts, min/max times) and merges those in first-packet order. This is that
// reduction done on the host: merging partials must give exactly what adding packet by packet
// gives, in both directions' modes, which is what lets the GPU's output equal the CPU's.
TEST(Flows, MergingPerBatchPartialFlowsEqualsAddingPacketByPacket)
{
    std::mt19937 rng(99);
    std::vector<bytes> frames;
    for (int i = 0; i < 3000; ++i) {
        bool fwd = rng() % 2;
        std::string a = "10.0.0." + std::to_string(1 + rng() % 4), b = "10.0.1." + std::to_string(1 + rng() % 4);
        std::uint16_t pa = static_cast<std::uint16_t>(1000 + rng() % 3), pb = 80;
        l4_spec l4(rng() % 3 ? 6 : 17, fwd ? pa : pb, fwd ? pb : pa, static_cast<std::uint8_t>(rng()), bytes(rng() % 50));
        frames.push_back(ethernet(fwd ? ipv4_packet(a, b, l4) : ipv4_packet(b, a, l4)));
    }
    for (bool bidirectional : {false, true}) {
        pkt::engine_options o;
        o.bidirectional = bidirectional;
        auto direct = analyze(frames, pkt::link_ethernet, o);

        // Per-packet records, as the kernels produce them.
        pkt::analysis merged(o);
        std::vector<pkt::packet_record> recs;
        std::uint64_t ts = 1000;
        for (auto& f : frames) {
            pkt::packet_record r;
            pkt::packet_jobs j;
            pkt::parse_packet(f.data(), static_cast<std::uint32_t>(f.size()), static_cast<std::uint32_t>(f.size()), ts++,
                              pkt::link_ethernet, r, j);
            pkt::set_verdicts(r, j, pkt::ones_sum_bytes(f.data() + j.ip.off, j.ip.len, 0),
                              pkt::ones_sum_bytes(f.data() + j.l4.off, j.l4.len, 0));
            r.rss = merged.rss(r);
            recs.push_back(r);
        }
        // Group by canonical key (sort + reduce-by-key), earliest packet first within a key.
        auto key = [&](const pkt::packet_record& r) {
            bool rev = bidirectional && (std::memcmp(r.src, r.dst, 16) > 0 || (std::memcmp(r.src, r.dst, 16) == 0 && r.sport > r.dport));
            std::string k(1, static_cast<char>(r.proto));
            k.append(reinterpret_cast<const char*>(rev ? r.dst : r.src), 16).append(reinterpret_cast<const char*>(rev ? r.src : r.dst), 16);
            k += std::to_string(rev ? r.dport : r.sport) + ":" + std::to_string(rev ? r.sport : r.dport);
            return k;
        };
        std::map<std::string, std::pair<std::size_t, pkt::flow>> groups; // key -> (first index, partial)
        for (std::size_t i = 0; i < recs.size(); ++i) {
            auto& r = recs[i];
            auto [it, fresh] = groups.try_emplace(key(r));
            auto& [first, f] = it->second;
            if (fresh) {
                first = i;
                f.family = r.family, f.proto = r.proto, f.sport = r.sport, f.dport = r.dport, f.rss_hash = r.rss;
                std::memcpy(f.src, r.src, 16), std::memcpy(f.dst, r.dst, 16);
                f.first_ts = f.last_ts = r.ts;
            }
            f.packets += 1, f.bytes += r.len, f.tcp_flags |= r.tcp_flags;
            f.first_ts = std::min(f.first_ts, r.ts), f.last_ts = std::max(f.last_ts, r.ts);
            f.csum_errors += (r.ip_csum == pkt::csum_bad) + (r.l4_csum == pkt::csum_bad);
        }
        std::vector<std::pair<std::size_t, pkt::flow>> order;
        for (auto& [k, v] : groups)
            order.push_back(v);
        std::sort(order.begin(), order.end(), [](auto& x, auto& y) { return x.first < y.first; });
        for (auto& [first, f] : order)
            merged.merge(f);
        EXPECT_EQ(merged.flow_count(), direct.flow_count());
        expect_same_flows(direct.top(1000, pkt::flow_order::bytes), merged.top(1000, pkt::flow_order::bytes));
    }
}
