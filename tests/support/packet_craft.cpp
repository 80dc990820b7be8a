#include "packet_craft.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <pcap/pcap.h>

#include <cstring>

#include <stdexcept>

namespace nsagent::test {
namespace {

void put16(bytes& b, std::size_t at, std::uint16_t v)
{
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}

bytes addr(const std::string& text, int family)
{
    bytes a(family == AF_INET ? 4 : 16);
    if (::inet_pton(family, text.c_str(), a.data()) != 1)
        throw std::invalid_argument("bad address " + text);
    return a;
}

// The transport segment with its checksum over the pseudo-header (none for ICMPv4).
bytes segment(const bytes& src, const bytes& dst, const l4_spec& l4)
{
    bytes s;
    std::size_t csum_at = 0;
    bool has_csum = true;
    switch (l4.proto) {
    case 6:
        s.assign(20, 0);
        put16(s, 0, l4.sport);
        put16(s, 2, l4.dport);
        s[4] = 0, s[7] = 1;  // seq 1
        s[12] = 5 << 4;      // data offset 5 words
        s[13] = l4.tcp_flags;
        put16(s, 14, 65535); // window
        csum_at = 16;
        break;
    case 17:
        s.assign(8, 0);
        put16(s, 0, l4.sport);
        put16(s, 2, l4.dport);
        put16(s, 4, static_cast<std::uint16_t>(8 + l4.payload.size()));
        csum_at = 6;
        break;
    case 1:
    case 58:
        s.assign(8, 0);
        s[0] = l4.proto == 1 ? 8 : 128; // echo request
        csum_at = 2;
        break;
    default: has_csum = false; break;
    }
    s.insert(s.end(), l4.payload.begin(), l4.payload.end());
    if (!has_csum)
        return s;
    bytes pseudo;
    if (l4.proto != 1) {
        pseudo.insert(pseudo.end(), src.begin(), src.end());
        pseudo.insert(pseudo.end(), dst.begin(), dst.end());
        auto n = static_cast<std::uint32_t>(s.size());
        if (src.size() == 4) {
            pseudo.push_back(0);
            pseudo.push_back(l4.proto);
            pseudo.push_back(static_cast<std::uint8_t>(n >> 8));
            pseudo.push_back(static_cast<std::uint8_t>(n));
        } else {
            for (int sh = 24; sh >= 0; sh -= 8)
                pseudo.push_back(static_cast<std::uint8_t>(n >> sh));
            pseudo.insert(pseudo.end(), {0, 0, 0, l4.proto});
        }
    }
    pseudo.insert(pseudo.end(), s.begin(), s.end());
    std::uint16_t c = inet_checksum(pseudo);
    if (l4.proto == 17 && c == 0)
        c = 0xffff; // UDP sends a computed zero as all ones
    if (l4.proto == 17 && l4.zero_udp_csum)
        c = 0;
    if (l4.break_l4_csum)
        c ^= 0x0100;
    put16(s, csum_at, c);
    return s;
}

} // namespace

std::uint16_t inet_checksum(const bytes& data)
{
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i < data.size(); i += 2) {
        std::uint32_t w = static_cast<std::uint32_t>(data[i]) << 8;
        if (i + 1 < data.size())
            w |= data[i + 1];
        sum += w;
    }
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

bytes ipv4_packet(const std::string& src, const std::string& dst, const l4_spec& l4, bool break_ip_csum, const bytes& options)
{
    bytes s = addr(src, AF_INET), d = addr(dst, AF_INET);
    bytes seg = segment(s, d, l4);
    std::size_t hl = 20 + options.size();
    bytes p(hl, 0);
    p[0] = static_cast<std::uint8_t>(0x40 | hl / 4);
    put16(p, 2, static_cast<std::uint16_t>(hl + seg.size()));
    put16(p, 4, 0x1234); // id
    p[6] = 0x40;         // DF
    p[8] = 64;
    p[9] = l4.proto;
    std::copy(s.begin(), s.end(), p.begin() + 12);
    std::copy(d.begin(), d.end(), p.begin() + 16);
    std::copy(options.begin(), options.end(), p.begin() + 20);
    std::uint16_t c = inet_checksum(p);
    if (break_ip_csum)
        c ^= 0x0001;
    put16(p, 10, c);
    p.insert(p.end(), seg.begin(), seg.end());
    return p;
}

bytes ipv6_packet(const std::string& src, const std::string& dst, const l4_spec& l4,
                  const std::vector<std::pair<std::uint8_t, bytes>>& ext)
{
    bytes s = addr(src, AF_INET6), d = addr(dst, AF_INET6);
    bytes seg = segment(s, d, l4);
    bytes chain;
    for (std::size_t i = 0; i < ext.size(); ++i) {
        std::uint8_t next = i + 1 < ext.size() ? ext[i + 1].first : l4.proto;
        bytes h = ext[i].second;
        h[0] = next;
        chain.insert(chain.end(), h.begin(), h.end());
    }
    bytes p(40, 0);
    p[0] = 0x60;
    put16(p, 4, static_cast<std::uint16_t>(chain.size() + seg.size()));
    p[6] = ext.empty() ? l4.proto : ext[0].first;
    p[7] = 64;
    std::copy(s.begin(), s.end(), p.begin() + 8);
    std::copy(d.begin(), d.end(), p.begin() + 24);
    p.insert(p.end(), chain.begin(), chain.end());
    p.insert(p.end(), seg.begin(), seg.end());
    return p;
}

bytes ethernet(const bytes& ip, const std::vector<std::pair<std::uint16_t, std::uint16_t>>& tags)
{
    bytes f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1}; // locally administered MACs
    for (auto [tpid, tci] : tags) {
        f.push_back(static_cast<std::uint8_t>(tpid >> 8));
        f.push_back(static_cast<std::uint8_t>(tpid));
        f.push_back(static_cast<std::uint8_t>(tci >> 8));
        f.push_back(static_cast<std::uint8_t>(tci));
    }
    std::uint16_t type = !ip.empty() && ip[0] >> 4 == 6 ? 0x86dd : 0x0800;
    f.push_back(static_cast<std::uint8_t>(type >> 8));
    f.push_back(static_cast<std::uint8_t>(type));
    f.insert(f.end(), ip.begin(), ip.end());
    return f;
}

void expect_same_flows(const std::vector<pkt::flow>& a, const std::vector<pkt::flow>& b)
{
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        SCOPED_TRACE("flow " + std::to_string(i));
        EXPECT_EQ(std::memcmp(a[i].src, b[i].src, 16), 0);
        EXPECT_EQ(std::memcmp(a[i].dst, b[i].dst, 16), 0);
        EXPECT_EQ(a[i].family, b[i].family);
        EXPECT_EQ(a[i].proto, b[i].proto);
        EXPECT_EQ(a[i].sport, b[i].sport);
        EXPECT_EQ(a[i].dport, b[i].dport);
        EXPECT_EQ(a[i].packets, b[i].packets);
        EXPECT_EQ(a[i].bytes, b[i].bytes);
        EXPECT_EQ(a[i].first_ts, b[i].first_ts);
        EXPECT_EQ(a[i].last_ts, b[i].last_ts);
        EXPECT_EQ(a[i].rss_hash, b[i].rss_hash);
        EXPECT_EQ(a[i].tcp_flags, b[i].tcp_flags);
        EXPECT_EQ(a[i].csum_errors, b[i].csum_errors);
    }
}

void write_pcap(const std::string& path, int dlt, const std::vector<frame>& frames, int snaplen)
{
    pcap_t* dead = ::pcap_open_dead_with_tstamp_precision(dlt, snaplen, PCAP_TSTAMP_PRECISION_NANO);
    if (!dead)
        throw std::runtime_error("pcap_open_dead");
    pcap_dumper_t* d = ::pcap_dump_open(dead, path.c_str());
    if (!d) {
        std::string e = ::pcap_geterr(dead);
        ::pcap_close(dead);
        throw std::runtime_error("pcap_dump_open " + path + ": " + e);
    }
    for (const auto& f : frames) {
        pcap_pkthdr h{};
        h.ts.tv_sec = static_cast<time_t>(f.ts_ns / 1000000000u);
        h.ts.tv_usec = static_cast<suseconds_t>(f.ts_ns % 1000000000u);
        h.caplen = static_cast<bpf_u_int32>(f.data.size());
        h.len = f.len ? f.len : static_cast<bpf_u_int32>(f.data.size());
        ::pcap_dump(reinterpret_cast<u_char*>(d), &h, f.data.data());
    }
    ::pcap_dump_close(d);
    ::pcap_close(dead);
}

} // namespace nsagent::test
