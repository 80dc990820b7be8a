#include "packet_engine.hpp"

#include <boost/unordered/unordered_flat_map.hpp>

#include <algorithm>
#include <cstring>

namespace nsagent::pkt {

void frame_batch::add(std::uint64_t ts_ns, const std::uint8_t* p, std::uint32_t cap, std::uint32_t wire_len)
{
    offset.push_back(static_cast<std::uint32_t>(data.size()));
    caplen.push_back(cap);
    len.push_back(wire_len);
    ts.push_back(ts_ns);
    data.insert(data.end(), p, p + cap);
}

void frame_batch::clear() noexcept
{
    data.clear();
    offset.clear();
    caplen.clear();
    len.clear();
    ts.clear();
}

rss_key default_rss_key() noexcept
{
    return {{0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
             0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
             0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa}};
}

rss_key symmetric_rss_key() noexcept
{
    rss_key k{};
    for (std::size_t i = 0; i < sizeof k.k; i += 2) {
        k.k[i] = 0x6d;
        k.k[i + 1] = 0x5a;
    }
    return k;
}

std::optional<rss_key> parse_rss_key(std::string_view text)
{
    if (text == "default")
        return default_rss_key();
    if (text == "symmetric")
        return symmetric_rss_key();
    rss_key k{};
    if (text.size() != 2 * sizeof k.k)
        return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < sizeof k.k; ++i) {
        int hi = nibble(text[2 * i]), lo = nibble(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        k.k[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return k;
}

namespace {

// A flow's identity in the table: for bidirectional analysis, the lower endpoint first.
struct flow_key {
    std::uint8_t family, proto;
    std::uint16_t sport, dport;
    std::uint8_t pad[2];
    std::uint8_t src[16], dst[16];

    bool operator==(const flow_key& o) const noexcept { return std::memcmp(this, &o, sizeof *this) == 0; }
};
static_assert(sizeof(flow_key) == 40);

struct flow_key_hash {
    std::size_t operator()(const flow_key& k) const noexcept
    {
        std::uint64_t w[5];
        std::memcpy(w, &k, sizeof w);
        std::uint64_t h = 0x9e3779b97f4a7c15ull;
        for (auto x : w) {
            h ^= x;
            h *= 0xff51afd7ed558ccdull;
            h ^= h >> 32;
        }
        return h;
    }
};

struct flow_entry {
    std::uint64_t packets = 0, bytes = 0, first_ts = 0, last_ts = 0, csum_errors = 0;
    std::uint32_t rss = 0;
    std::uint8_t tcp_flags = 0;
    bool first_reversed = false; // the first packet ran dst -> src of the key
};

// Endpoint (addr, port) order; true when the packet's source is the higher endpoint.
bool higher_source(const std::uint8_t* src, std::uint16_t sport, const std::uint8_t* dst, std::uint16_t dport)
{
    int c = std::memcmp(src, dst, 16);
    return c > 0 || (c == 0 && sport > dport);
}

flow_key key_of(std::uint8_t family, std::uint8_t proto, const std::uint8_t* src, std::uint16_t sport,
                const std::uint8_t* dst, std::uint16_t dport, bool reverse)
{
    flow_key k{};
    k.family = family;
    k.proto = proto;
    std::memcpy(k.src, reverse ? dst : src, 16);
    std::memcpy(k.dst, reverse ? src : dst, 16);
    k.sport = reverse ? dport : sport;
    k.dport = reverse ? sport : dport;
    return k;
}

// The ones' complement sum of a range, 8 bytes at a time: the same sum as ones_sum_bytes()
// modulo 0xffff (so the same fold), at memory speed.
std::uint64_t ones_sum_fast(const std::uint8_t* p, std::uint32_t n)
{
    std::uint64_t a = 0, b = 0;
    std::uint32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        std::uint64_t x, y;
        std::memcpy(&x, p + i, 8);
        std::memcpy(&y, p + i + 8, 8);
        a += (x & 0xffffffffu) + (x >> 32);
        b += (y & 0xffffffffu) + (y >> 32);
    }
    return ones_sum_bytes(p + i, n - i, a + b);
}

} // namespace

struct analysis::table {
    boost::unordered_flat_map<flow_key, flow_entry, flow_key_hash> map;
};

analysis::analysis(engine_options o) : opt_(o), flows_(std::make_unique<table>())
{
    // Toeplitz is linear over XOR: a byte's contribution at each input position is the XOR of
    // its bits' contributions, each computed by the reference definition.
    constexpr std::size_t max_input = 36;
    rss_table_.resize(max_input);
    for (std::size_t i = 0; i < max_input; ++i) {
        std::uint32_t bit[8];
        for (int b = 0; b < 8; ++b) {
            std::uint8_t in[max_input]{};
            in[i] = static_cast<std::uint8_t>(1u << b);
            bit[b] = toeplitz(opt_.key, in, static_cast<std::uint32_t>(i + 1));
        }
        for (unsigned v = 0; v < 256; ++v) {
            std::uint32_t h = 0;
            for (int b = 0; b < 8; ++b)
                if (v >> b & 1)
                    h ^= bit[b];
            rss_table_[i][v] = h;
        }
    }
}

analysis::~analysis() = default;
analysis::analysis(analysis&&) noexcept = default;
analysis& analysis::operator=(analysis&&) noexcept = default;

std::uint32_t analysis::rss(const packet_record& r) const noexcept
{
    std::uint8_t in[36];
    std::uint32_t n = rss_input(r, rss_four_tuple(r), in);
    std::uint32_t h = 0;
    for (std::uint32_t i = 0; i < n; ++i)
        h ^= rss_table_[i][in[i]];
    return h;
}

void analysis::add(const packet_record& r)
{
    std::uint8_t idx[8];
    int n = tally(r, idx);
    for (int i = 0; i < n; ++i)
        ++counts_[idx[i]];
    counts_[t_bytes] += r.len;
    if (!(r.flags & rec_ip))
        return;
    flow f;
    f.family = r.family;
    f.proto = r.proto;
    std::memcpy(f.src, r.src, 16);
    std::memcpy(f.dst, r.dst, 16);
    f.sport = r.sport;
    f.dport = r.dport;
    f.packets = 1;
    f.bytes = r.len;
    f.first_ts = f.last_ts = r.ts;
    f.csum_errors = (r.ip_csum == csum_bad) + (r.l4_csum == csum_bad);
    f.rss_hash = r.rss;
    f.tcp_flags = r.tcp_flags;
    merge(f);
}

void analysis::merge(const flow& f)
{
    bool reverse = opt_.bidirectional && higher_source(f.src, f.sport, f.dst, f.dport);
    auto [it, fresh] = flows_->map.try_emplace(key_of(f.family, f.proto, f.src, f.sport, f.dst, f.dport, reverse));
    flow_entry& e = it->second;
    if (fresh) {
        e.first_ts = f.first_ts;
        e.last_ts = f.last_ts;
        e.rss = f.rss_hash;
        e.first_reversed = reverse;
    } else {
        e.first_ts = std::min(e.first_ts, f.first_ts);
        e.last_ts = std::max(e.last_ts, f.last_ts);
    }
    e.packets += f.packets;
    e.bytes += f.bytes;
    e.csum_errors += f.csum_errors;
    e.tcp_flags |= f.tcp_flags;
}

void analysis::add_counts(const std::array<std::uint64_t, t_count>& c)
{
    for (std::size_t i = 0; i < c.size(); ++i)
        counts_[i] += c[i];
}

std::size_t analysis::flow_count() const noexcept { return flows_->map.size(); }

std::vector<flow> analysis::top(std::size_t n, flow_order by) const
{
    std::vector<flow> all;
    all.reserve(flows_->map.size());
    for (auto& [k, e] : flows_->map) {
        flow f;
        f.family = k.family;
        f.proto = k.proto;
        bool rev = e.first_reversed;
        std::memcpy(f.src, rev ? k.dst : k.src, 16);
        std::memcpy(f.dst, rev ? k.src : k.dst, 16);
        f.sport = rev ? k.dport : k.sport;
        f.dport = rev ? k.sport : k.dport;
        f.packets = e.packets;
        f.bytes = e.bytes;
        f.first_ts = e.first_ts;
        f.last_ts = e.last_ts;
        f.csum_errors = e.csum_errors;
        f.rss_hash = e.rss;
        f.tcp_flags = e.tcp_flags;
        all.push_back(f);
    }
    auto tuple_less = [](const flow& a, const flow& b) {
        if (a.family != b.family)
            return a.family < b.family;
        if (a.proto != b.proto)
            return a.proto < b.proto;
        if (int c = std::memcmp(a.src, b.src, 16))
            return c < 0;
        if (int c = std::memcmp(a.dst, b.dst, 16))
            return c < 0;
        if (a.sport != b.sport)
            return a.sport < b.sport;
        return a.dport < b.dport;
    };
    auto better = [&](const flow& a, const flow& b) {
        std::uint64_t x = by == flow_order::bytes ? a.bytes : a.packets, y = by == flow_order::bytes ? b.bytes : b.packets;
        if (x != y)
            return x > y;
        std::uint64_t x2 = by == flow_order::bytes ? a.packets : a.bytes, y2 = by == flow_order::bytes ? b.packets : b.bytes;
        if (x2 != y2)
            return x2 > y2;
        return tuple_less(a, b);
    };
    n = std::min(n, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), better);
    all.resize(n);
    return all;
}

void analyze_cpu(const frame_batch& b, analysis& a)
{
    packet_record r;
    packet_jobs j;
    for (std::size_t i = 0; i < b.size(); ++i) {
        const std::uint8_t* f = b.data.data() + b.offset[i];
        parse_packet(f, b.caplen[i], b.len[i], b.ts[i], b.link, r, j);
        std::uint64_t ip_sum = j.ip.len ? ones_sum_fast(f + j.ip.off, j.ip.len) : 0;
        std::uint64_t l4_sum = j.l4.len ? ones_sum_fast(f + j.l4.off, j.l4.len) : 0;
        set_verdicts(r, j, ip_sum, l4_sum);
        if (r.flags & rec_ip)
            r.rss = a.rss(r);
        a.add(r);
    }
}

std::string_view counter_name(counter c) noexcept
{
    switch (c) {
    case t_packets: return "packets";
    case t_bytes: return "bytes";
    case t_ipv4: return "ipv4";
    case t_ipv6: return "ipv6";
    case t_non_ip: return "non_ip";
    case t_tcp: return "tcp";
    case t_udp: return "udp";
    case t_icmp: return "icmp";
    case t_icmpv6: return "icmpv6";
    case t_other_l4: return "other";
    case t_fragments: return "fragments";
    case t_malformed: return "malformed";
    case t_truncated: return "truncated";
    case t_unverifiable: return "unverifiable";
    case t_csum_none: return "csum_none";
    case t_offloaded: return "csum_offloaded";
    case t_bad_ipv4: return "ipv4";
    case t_bad_tcp: return "tcp";
    case t_bad_udp: return "udp";
    case t_bad_icmp: return "icmp";
    case t_bad_icmpv6: return "icmpv6";
    case t_count: break;
    }
    return "?";
}

} // namespace nsagent::pkt
