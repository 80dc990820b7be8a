// The packet-analysis engine: batches of frames in, totals and flows out. A library of the core
// that tests and bench use without the daemon. The per-packet work is packet_dissect.hpp; this
// is the CPU engine and the aggregation that both engines feed (cuda_engine.hpp is the GPU's).
#pragma once

#include "packet_dissect.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace nsagent::pkt {

// Frames as one contiguous buffer plus, per frame, its offset, captured length, original
// length and timestamp (nanoseconds). Append-only; clear() keeps the capacity.
struct frame_batch {
    link_kind link = link_ethernet;
    std::vector<std::uint8_t> data;
    std::vector<std::uint32_t> offset, caplen, len;
    std::vector<std::uint64_t> ts;

    void add(std::uint64_t ts_ns, const std::uint8_t* p, std::uint32_t cap, std::uint32_t wire_len);
    std::size_t size() const noexcept { return offset.size(); }
    void clear() noexcept;
};

// The key of the published RSS verification suite (the default), and the symmetric key
// (0x6d5a repeated) under which a flow's two directions hash alike.
rss_key default_rss_key() noexcept;
rss_key symmetric_rss_key() noexcept;
// 80 hex digits, or "default" or "symmetric".
std::optional<rss_key> parse_rss_key(std::string_view text);

struct engine_options {
    rss_key key = default_rss_key();
    bool bidirectional = false; // a flow's two directions aggregate into one flow
};

// A flow: the 5-tuple as its first packet had it, and what was seen.
struct flow {
    std::uint8_t family = 0, proto = 0;
    std::uint8_t src[16]{}, dst[16]{};
    std::uint16_t sport = 0, dport = 0;
    std::uint64_t packets = 0, bytes = 0, first_ts = 0, last_ts = 0, csum_errors = 0;
    std::uint32_t rss_hash = 0; // of its first packet
    std::uint8_t tcp_flags = 0; // OR of every packet's
};

enum class flow_order { bytes, packets };

// Totals and flows accumulated over any number of batches from either engine.
class analysis {
public:
    explicit analysis(engine_options o = {});
    ~analysis();
    analysis(analysis&&) noexcept;
    analysis& operator=(analysis&&) noexcept;

    const engine_options& options() const noexcept { return opt_; }
    // One dissected packet (CPU engine).
    void add(const packet_record& r);
    // A partial flow (the GPU's per-batch reduction) and counters, merged in batch order.
    void merge(const flow& f);
    void add_counts(const std::array<std::uint64_t, t_count>& c);

    const std::array<std::uint64_t, t_count>& counts() const noexcept { return counts_; }
    std::size_t flow_count() const noexcept;
    // The top `n` flows; ties broken by the 5-tuple, so that the order is the same every time.
    std::vector<flow> top(std::size_t n, flow_order by) const;
    // The Toeplitz hash through a byte table built from the key (same value as toeplitz()).
    std::uint32_t rss(const packet_record& r) const noexcept;

private:
    struct table;
    engine_options opt_;
    std::array<std::uint64_t, t_count> counts_{};
    std::unique_ptr<table> flows_;
    std::vector<std::array<std::uint32_t, 256>> rss_table_; // [input byte][value]
};

// Dissects, checks and hashes every frame of `b` on this thread and adds it to `a`.
void analyze_cpu(const frame_batch& b, analysis& a);

// The counter's name in replies ("packets", "csum_errors.tcp" is bad_tcp, ...).
std::string_view counter_name(counter c) noexcept;

} // namespace nsagent::pkt
