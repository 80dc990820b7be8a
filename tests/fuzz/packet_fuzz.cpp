// libFuzzer target: the packet engine's frame parser, checksums, hash and aggregation. The
// input is a link type byte, then frames as [caplen u16][extra wire length u8][bytes]. Whatever
// the bytes, no crash and no sanitizer report, and the counts add up.
#include "packet_engine.hpp"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1)
        return 0;
    nsagent::pkt::frame_batch b;
    b.link = static_cast<nsagent::pkt::link_kind>(data[0] % 4);
    std::size_t i = 1;
    while (i + 3 <= size) {
        std::size_t cap = static_cast<std::size_t>(data[i] | data[i + 1] << 8), extra = data[i + 2];
        i += 3;
        cap = std::min(cap, size - i);
        b.add(b.size(), data + i, static_cast<std::uint32_t>(cap), static_cast<std::uint32_t>(cap + extra));
        i += cap;
    }
    for (bool bidirectional : {false, true}) {
        nsagent::pkt::engine_options o;
        o.bidirectional = bidirectional;
        nsagent::pkt::analysis a(o);
        nsagent::pkt::analyze_cpu(b, a);
        if (a.counts()[nsagent::pkt::t_packets] != b.size())
            std::abort();
        std::uint64_t in_flows = 0;
        for (const auto& f : a.top(1000000, nsagent::pkt::flow_order::packets))
            in_flows += f.packets;
        if (in_flows > b.size())
            std::abort();
    }
    return 0;
}
