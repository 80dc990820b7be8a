// One packet in, one record out: link, IP and transport parsing, the checksum ranges and the
// Toeplitz RSS hash. Plain C++ with no library calls, so that the CPU engine (packet_engine.cpp)
// and the CUDA kernels (cuda/packet_engine.cu) compile this same text; that is what makes the two
// engines agree on every input, malformed ones included.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NSAGENT_HD __host__ __device__ inline
#else
#define NSAGENT_HD inline
#endif

namespace nsagent::pkt {

enum link_kind : std::uint8_t { link_ethernet, link_sll, link_sll2, link_raw };

// A checksum's verdict. `none`: UDP over IPv4 sent without one (0). `unverifiable`: the
// capture holds fewer bytes than the checksum covers (caplen < len), or the packet is a
// fragment whose checksum covers the reassembled datagram.
// `offloaded`: a TCP or UDP packet captured on the host that sent it before the NIC (or the
// loopback) filled in the checksum (CHECKSUM_PARTIAL): the field holds only the pseudo-header's
// sum. Not an error on the wire, so not counted as one.
enum csum_verdict : std::uint8_t { csum_absent = 0, csum_ok, csum_bad, csum_none, csum_unverifiable, csum_offloaded };

// packet_record::flags
enum : std::uint8_t {
    rec_ip = 1,        // family, proto, src and dst are valid: the packet belongs to a flow
    rec_ports = 2,     // sport and dport are valid (TCP or UDP header parsed)
    rec_malformed = 4, // a header is invalid, or ends beyond the packet's original length
    rec_truncated = 8, // the capture cut a header the packet has (caplen < len)
    rec_fragment = 16, // an IP fragment (no transport header, or one whose checksum cannot be checked)
    rec_non_ip = 32,   // a link-layer frame that carries neither IPv4 nor IPv6
};

inline constexpr std::uint8_t ip_proto_icmp = 1, ip_proto_tcp = 6, ip_proto_udp = 17, ip_proto_icmpv6 = 58;

// What the engine knows of one packet. IPv4 addresses sit in the first 4 bytes of src and dst.
struct packet_record {
    std::uint8_t src[16];
    std::uint8_t dst[16];
    std::uint64_t ts;     // nanoseconds
    std::uint32_t len;    // the packet's original length on the wire
    std::uint32_t rss;    // Toeplitz hash: 4-tuple for TCP/UDP, 2-tuple for other IP
    std::uint16_t sport;
    std::uint16_t dport;
    std::uint8_t family;  // 4, 6, or 0 when not IP
    std::uint8_t proto;   // IP protocol of the transport header (the last IPv6 next header)
    std::uint8_t flags;   // rec_*
    std::uint8_t tcp_flags;
    std::uint8_t ip_csum; // csum_verdict of the IPv4 header (absent for IPv6)
    std::uint8_t l4_csum; // csum_verdict of TCP, UDP, ICMP or ICMPv6
    std::uint8_t pad[2];
};

// A byte range of the frame whose ones' complement sum, added to `seed` (the pseudo-header's
// sum), must fold to 0xffff. len == 0: nothing to check.
struct csum_job {
    std::uint32_t off;
    std::uint32_t len;
    std::uint64_t seed;
    std::uint32_t field;     // TCP/UDP: the checksum field as a little-endian word
    std::uint32_t may_be_partial; // TCP/UDP: the field may hold an offload's pseudo-header sum
};

struct packet_jobs {
    csum_job ip;
    csum_job l4;
};

// The RSS secret key: 40 bytes hash up to 36 bytes of input (IPv6 4-tuple).
struct rss_key {
    std::uint8_t k[40];
};

// --- primitives -------------------------------------------------------------------------------

NSAGENT_HD std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

// The ones' complement sum of bytes [p, p+n) as little-endian 16-bit words (a trailing odd byte
// is the low byte of a last word), accumulated without folding. Summing in the machine's order
// is valid because the check (the fold equals 0xffff) reads the same in either byte order, as
// long as every range starts at an even offset of the checksummed data, which they all do.
NSAGENT_HD std::uint64_t ones_sum_bytes(const std::uint8_t* p, std::uint32_t n, std::uint64_t acc)
{
    std::uint32_t i = 0;
    for (; i + 1 < n; i += 2)
        acc += static_cast<std::uint32_t>(p[i] | p[i + 1] << 8);
    if (i < n)
        acc += p[i];
    return acc;
}

NSAGENT_HD std::uint16_t fold(std::uint64_t s)
{
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffffffu) + (s >> 32);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    s = (s & 0xffffu) + (s >> 16);
    return static_cast<std::uint16_t>(s);
}

// Toeplitz over `n` bytes, bit by bit: the definition the published verification suite uses.
// The CPU engine uses a table built from this (rss_table in packet_engine.cpp); the two agree.
NSAGENT_HD std::uint32_t toeplitz(const rss_key& key, const std::uint8_t* in, std::uint32_t n)
{
    std::uint32_t result = 0;
    std::uint32_t window = static_cast<std::uint32_t>(key.k[0]) << 24 | static_cast<std::uint32_t>(key.k[1]) << 16 |
                           static_cast<std::uint32_t>(key.k[2]) << 8 | key.k[3];
    for (std::uint32_t i = 0; i < n; ++i) {
        std::uint8_t next = i + 4 < 40 ? key.k[i + 4] : 0;
        for (int b = 7; b >= 0; --b) {
            if (in[i] >> b & 1)
                result ^= window;
            window = window << 1 | (next >> b & 1);
        }
    }
    return result;
}

// The hash input: src, dst, then (4-tuple) sport, dport, all in network order.
NSAGENT_HD std::uint32_t rss_input(const packet_record& r, bool four_tuple, std::uint8_t* out)
{
    std::uint32_t alen = r.family == 4 ? 4 : 16, n = 0;
    for (std::uint32_t i = 0; i < alen; ++i)
        out[n++] = r.src[i];
    for (std::uint32_t i = 0; i < alen; ++i)
        out[n++] = r.dst[i];
    if (four_tuple) {
        out[n++] = static_cast<std::uint8_t>(r.sport >> 8);
        out[n++] = static_cast<std::uint8_t>(r.sport);
        out[n++] = static_cast<std::uint8_t>(r.dport >> 8);
        out[n++] = static_cast<std::uint8_t>(r.dport);
    }
    return n;
}

// --- parsing ----------------------------------------------------------------------------------

namespace detail {

// Whether `n` header bytes are there; if not, flags why: the packet itself is too short for
// them (`orig` bytes from here on the wire: malformed), or only the capture is (`have`
// captured bytes: truncated).
NSAGENT_HD bool header_fits(packet_record& r, std::uint32_t orig, std::uint32_t have, std::uint32_t n)
{
    if (orig < n) {
        r.flags |= rec_malformed;
        return false;
    }
    if (have < n) {
        r.flags |= rec_truncated;
        return false;
    }
    return true;
}

// Sum of the pseudo-header: src, dst, the transport length and the protocol.
NSAGENT_HD std::uint64_t pseudo_sum(const packet_record& r, std::uint32_t l4_len)
{
    std::uint32_t alen = r.family == 4 ? 4 : 16;
    std::uint64_t acc = ones_sum_bytes(r.src, alen, 0);
    acc = ones_sum_bytes(r.dst, alen, acc);
    std::uint8_t tail[8] = {static_cast<std::uint8_t>(l4_len >> 24), static_cast<std::uint8_t>(l4_len >> 16),
                            static_cast<std::uint8_t>(l4_len >> 8), static_cast<std::uint8_t>(l4_len),
                            0, 0, 0, r.proto};
    return ones_sum_bytes(tail, 8, acc);
}

// Parses the transport header at `off` (l4_len bytes by the IP header; `cap` captured bytes
// in the frame). Sets ports, TCP flags and the checksum job.
NSAGENT_HD void parse_l4(const std::uint8_t* f, std::uint32_t cap, std::uint32_t off, std::uint32_t l4_len,
                         bool fragment, packet_record& r, packet_jobs& j)
{
    std::uint32_t have = cap > off ? cap - off : 0; // captured bytes of the transport segment
    std::uint32_t need = 0;                         // header bytes the protocol needs
    switch (r.proto) {
    case ip_proto_tcp: need = 20; break;
    case ip_proto_udp: need = 8; break;
    case ip_proto_icmp:
    case ip_proto_icmpv6: need = 4; break;
    default: return; // another protocol: counted, not parsed
    }
    if (!header_fits(r, l4_len, have, need))
        return;
    const std::uint8_t* h = f + off;
    std::uint32_t covered = l4_len; // bytes the checksum covers
    if (r.proto == ip_proto_tcp) {
        std::uint32_t doff = static_cast<std::uint32_t>(h[12] >> 4) * 4;
        if (doff < 20 || doff > l4_len) {
            r.flags |= rec_malformed;
            return;
        }
        r.sport = be16(h);
        r.dport = be16(h + 2);
        r.tcp_flags = h[13];
        r.flags |= rec_ports;
    } else if (r.proto == ip_proto_udp) {
        std::uint32_t ulen = be16(h + 4);
        if (ulen < 8 || ulen > l4_len) {
            r.flags |= rec_malformed;
            return;
        }
        covered = ulen;
        r.sport = be16(h);
        r.dport = be16(h + 2);
        r.flags |= rec_ports;
        if (be16(h + 6) == 0 && !fragment) {
            // Optional over IPv4; over IPv6 a zero is never valid (RFC 8200 8.1).
            r.l4_csum = r.family == 4 ? csum_none : csum_bad;
            return;
        }
    }
    if (fragment) {
        // Every piece of a datagram aggregates into one port-less flow, and the checksum
        // covers the reassembled datagram, which no single piece holds.
        r.sport = r.dport = 0;
        r.flags &= static_cast<std::uint8_t>(~rec_ports);
        r.l4_csum = csum_unverifiable;
        return;
    }
    if (have < covered) {
        r.l4_csum = csum_unverifiable;
        return;
    }
    j.l4.off = off;
    j.l4.len = covered;
    j.l4.seed = r.proto == ip_proto_icmp ? 0 : pseudo_sum(r, covered);
    if (r.proto == ip_proto_tcp || r.proto == ip_proto_udp) {
        std::uint32_t at = r.proto == ip_proto_tcp ? 16 : 6;
        j.l4.field = static_cast<std::uint32_t>(h[at] | h[at + 1] << 8);
        j.l4.may_be_partial = 1;
    }
}

NSAGENT_HD void parse_ipv4(const std::uint8_t* f, std::uint32_t cap, std::uint32_t len, std::uint32_t off,
                           packet_record& r, packet_jobs& j)
{
    std::uint32_t have = cap > off ? cap - off : 0, orig = len > off ? len - off : 0;
    if (!header_fits(r, orig, have, 20))
        return;
    const std::uint8_t* h = f + off;
    std::uint32_t ihl = static_cast<std::uint32_t>(h[0] & 0x0f) * 4, total = be16(h + 2);
    if (h[0] >> 4 != 4 || ihl < 20 || total < ihl || total > orig) {
        r.flags |= rec_malformed;
        return;
    }
    if (have < ihl) {
        r.flags |= rec_truncated;
        return;
    }
    r.family = 4;
    r.proto = h[9];
    for (int i = 0; i < 4; ++i) {
        r.src[i] = h[12 + i];
        r.dst[i] = h[16 + i];
    }
    r.flags |= rec_ip;
    j.ip.off = off;
    j.ip.len = ihl;
    j.ip.seed = 0;
    std::uint32_t frag = be16(h + 6);
    bool more = frag & 0x2000;
    std::uint32_t frag_off = frag & 0x1fff;
    if (more || frag_off) {
        r.flags |= rec_fragment;
        if (frag_off) // no transport header in this piece
            return;
    }
    parse_l4(f, cap, off + ihl, total - ihl, more, r, j);
}

NSAGENT_HD bool ipv6_ext_header(std::uint8_t nh)
{
    return nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60 || nh == 135 || nh == 139 || nh == 140;
}

NSAGENT_HD void parse_ipv6(const std::uint8_t* f, std::uint32_t cap, std::uint32_t len, std::uint32_t off,
                           packet_record& r, packet_jobs& j)
{
    std::uint32_t have = cap > off ? cap - off : 0, orig = len > off ? len - off : 0;
    if (!header_fits(r, orig, have, 40))
        return;
    const std::uint8_t* h = f + off;
    std::uint32_t plen = be16(h + 4);
    if (h[0] >> 4 != 6 || plen > orig - 40) {
        r.flags |= rec_malformed;
        return;
    }
    r.family = 6;
    for (int i = 0; i < 16; ++i) {
        r.src[i] = h[8 + i];
        r.dst[i] = h[24 + i];
    }
    r.flags |= rec_ip;
    std::uint8_t nh = h[6];
    std::uint32_t pos = off + 40, end = off + 40 + plen;
    bool fragment = false;
    // The extension-header chain, bounded: a chain longer than this is not a real packet.
    for (int n = 0; n < 16 && ipv6_ext_header(nh); ++n) {
        if (pos + 8 > end) {
            r.proto = nh;
            r.flags |= rec_malformed;
            return;
        }
        if (pos + 8 > cap) {
            r.proto = nh;
            r.flags |= rec_truncated;
            return;
        }
        const std::uint8_t* e = f + pos;
        std::uint32_t elen;
        if (nh == 44) {
            elen = 8;
            std::uint32_t frag = be16(e + 2);
            r.flags |= rec_fragment;
            fragment = true;
            if (frag & 0xfff8) { // not the first piece: no transport header here
                r.proto = e[0];
                return;
            }
        } else if (nh == 51) {
            elen = (static_cast<std::uint32_t>(e[1]) + 2) * 4;
        } else {
            elen = (static_cast<std::uint32_t>(e[1]) + 1) * 8;
        }
        if (pos + elen > end) {
            r.proto = nh;
            r.flags |= rec_malformed;
            return;
        }
        nh = e[0];
        pos += elen;
    }
    r.proto = nh;
    if (ipv6_ext_header(nh)) { // the bound above ran out
        r.flags |= rec_malformed;
        return;
    }
    parse_l4(f, cap, pos, end - pos, fragment, r, j);
}

NSAGENT_HD void parse_ethertype(const std::uint8_t* f, std::uint32_t cap, std::uint32_t len, std::uint32_t off,
                                std::uint16_t type, packet_record& r, packet_jobs& j)
{
    if (type == 0x0800)
        parse_ipv4(f, cap, len, off, r, j);
    else if (type == 0x86dd)
        parse_ipv6(f, cap, len, off, r, j);
    else
        r.flags |= rec_non_ip;
}

} // namespace detail

// Parses one frame of `cap` captured bytes out of `len`. Fills `r` (zeroed here) and the
// checksum jobs; the caller sums the jobs (checksum_verdicts) and computes the hash (rss_of).
NSAGENT_HD void parse_packet(const std::uint8_t* f, std::uint32_t cap, std::uint32_t len, std::uint64_t ts,
                             link_kind link, packet_record& r, packet_jobs& j)
{
    r = packet_record{};
    j = packet_jobs{};
    r.ts = ts;
    r.len = len;
    if (cap > len) // a capture never holds more than the packet; treat the excess as absent
        cap = len;
    switch (link) {
    case link_ethernet: {
        if (!detail::header_fits(r, len, cap, 14))
            return;
        std::uint32_t off = 12;
        std::uint16_t type = be16(f + off);
        // 802.1Q, 802.1ad (QinQ) and the old 0x9100 outer tag, up to four deep.
        for (int tags = 0; tags < 4 && (type == 0x8100 || type == 0x88a8 || type == 0x9100); ++tags) {
            off += 4;
            if (!detail::header_fits(r, len, cap, off + 2))
                return;
            type = be16(f + off);
        }
        detail::parse_ethertype(f, cap, len, off + 2, type, r, j);
        return;
    }
    case link_sll:
    case link_sll2: {
        std::uint32_t hl = link == link_sll ? 16 : 20, at = link == link_sll ? 14 : 0;
        if (!detail::header_fits(r, len, cap, hl))
            return;
        detail::parse_ethertype(f, cap, len, hl, be16(f + at), r, j);
        return;
    }
    case link_raw:
        if (!detail::header_fits(r, len, cap, 1))
            return;
        if (f[0] >> 4 == 4)
            detail::parse_ipv4(f, cap, len, 0, r, j);
        else if (f[0] >> 4 == 6)
            detail::parse_ipv6(f, cap, len, 0, r, j);
        else
            r.flags |= rec_malformed;
        return;
    }
    r.flags |= rec_malformed;
}

// The verdicts from the jobs' sums (ip_sum and l4_sum are ones_sum_bytes over each job's range).
NSAGENT_HD void set_verdicts(packet_record& r, const packet_jobs& j, std::uint64_t ip_sum, std::uint64_t l4_sum)
{
    if (j.ip.len)
        r.ip_csum = fold(ip_sum + j.ip.seed) == 0xffff ? csum_ok : csum_bad;
    if (j.l4.len) {
        r.l4_csum = fold(l4_sum + j.l4.seed) == 0xffff ? csum_ok : csum_bad;
        if (r.l4_csum == csum_bad && j.l4.may_be_partial && j.l4.field == fold(j.l4.seed))
            r.l4_csum = csum_offloaded;
    }
}

// Totals are counters indexed by these; tally() lists the ones a record adds 1 to (bytes
// adds the packet's length). One list for both engines: the GPU adds them atomically.
enum counter : std::uint8_t {
    t_packets, t_bytes, t_ipv4, t_ipv6, t_non_ip, t_tcp, t_udp, t_icmp, t_icmpv6, t_other_l4,
    t_fragments, t_malformed, t_truncated, t_unverifiable, t_csum_none, t_offloaded,
    t_bad_ipv4, t_bad_tcp, t_bad_udp, t_bad_icmp, t_bad_icmpv6,
    t_count
};

// Writes the counters `r` increments (t_bytes excluded) to `out`, returns how many (at most 8).
NSAGENT_HD int tally(const packet_record& r, std::uint8_t* out)
{
    int n = 0;
    out[n++] = t_packets;
    if (r.flags & rec_non_ip)
        out[n++] = t_non_ip;
    if (r.family == 4)
        out[n++] = t_ipv4;
    else if (r.family == 6)
        out[n++] = t_ipv6;
    if (r.flags & rec_ip) {
        switch (r.proto) {
        case ip_proto_tcp: out[n++] = t_tcp; break;
        case ip_proto_udp: out[n++] = t_udp; break;
        case ip_proto_icmp: out[n++] = t_icmp; break;
        case ip_proto_icmpv6: out[n++] = t_icmpv6; break;
        default: out[n++] = t_other_l4; break;
        }
    }
    if (r.flags & rec_fragment)
        out[n++] = t_fragments;
    if (r.flags & rec_malformed)
        out[n++] = t_malformed;
    if (r.flags & rec_truncated)
        out[n++] = t_truncated;
    if (r.ip_csum == csum_bad)
        out[n++] = t_bad_ipv4;
    if (r.l4_csum == csum_unverifiable)
        out[n++] = t_unverifiable;
    else if (r.l4_csum == csum_none)
        out[n++] = t_csum_none;
    else if (r.l4_csum == csum_offloaded)
        out[n++] = t_offloaded;
    else if (r.l4_csum == csum_bad)
        switch (r.proto) {
        case ip_proto_tcp: out[n++] = t_bad_tcp; break;
        case ip_proto_udp: out[n++] = t_bad_udp; break;
        case ip_proto_icmp: out[n++] = t_bad_icmp; break;
        default: out[n++] = t_bad_icmpv6; break;
        }
    return n;
}

// The 4-tuple for TCP and UDP with ports, else the 2-tuple; 0 for non-IP.
NSAGENT_HD bool rss_four_tuple(const packet_record& r)
{
    return r.flags & rec_ports && !(r.flags & rec_fragment) && (r.proto == ip_proto_tcp || r.proto == ip_proto_udp);
}

} // namespace nsagent::pkt
