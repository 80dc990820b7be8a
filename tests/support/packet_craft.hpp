// Crafted packets for the engine tests, built from first principles (RFC 791, 8200, 793, 768):
// headers laid out byte by byte and checksums computed here with the textbook big-endian
// 16-bit sum, independently of the engine's own summing. Also writes pcap files via libpcap.
#pragma once

#include "packet_engine.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace nsagent::test {

using bytes = std::vector<std::uint8_t>;

struct l4_spec {
    l4_spec(std::uint8_t proto = 6, std::uint16_t sport = 1000, std::uint16_t dport = 2000, std::uint8_t tcp_flags = 0x18,
            bytes payload = {})
        : proto(proto), sport(sport), dport(dport), tcp_flags(tcp_flags), payload(std::move(payload))
    {
    }
    std::uint8_t proto = 6;   // 6 tcp, 17 udp, 1 icmp, 58 icmpv6, anything else: raw payload
    std::uint16_t sport = 1000, dport = 2000;
    std::uint8_t tcp_flags = 0x18; // PSH|ACK
    bytes payload;
    bool break_l4_csum = false;   // flip a bit of the transport checksum
    bool zero_udp_csum = false;   // send UDP with checksum 0
};

// The RFC 1071 sum over big-endian 16-bit words.
std::uint16_t inet_checksum(const bytes& data);

// An IPv4 packet (no link header). `options` must be a multiple of 4 bytes.
bytes ipv4_packet(const std::string& src, const std::string& dst, const l4_spec& l4, bool break_ip_csum = false,
                  const bytes& options = {});
// An IPv6 packet; `ext` are extension headers as (type, body) pairs, chained in order.
bytes ipv6_packet(const std::string& src, const std::string& dst, const l4_spec& l4,
                  const std::vector<std::pair<std::uint8_t, bytes>>& ext = {});
// Ethernet around an IP packet, with optional VLAN tags (outermost first: TPID, TCI).
bytes ethernet(const bytes& ip, const std::vector<std::pair<std::uint16_t, std::uint16_t>>& tags = {});

struct frame {
    bytes data;            // what was captured
    std::uint32_t len = 0; // original length (0: data.size())
    std::uint64_t ts_ns = 0;
};

// Two flow lists are the same flows, field by field, in the same order (a test failure names
// the first flow and field that differ).
void expect_same_flows(const std::vector<pkt::flow>& a, const std::vector<pkt::flow>& b);

// Writes a pcap file with nanosecond timestamps and the given DLT (1 Ethernet, 113 SLL, 276 SLL2, 12 raw).
void write_pcap(const std::string& path, int dlt, const std::vector<frame>& frames, int snaplen = 262144);

} // namespace nsagent::test
