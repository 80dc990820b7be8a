// The CUDA engine gives exactly the CPU engine's output, for every input, malformed ones
// included: random and adversarial batches from 1 to 1M packets. Runs where a GPU is present
// (and the build has CUDA); skips, saying why, elsewhere.
#include "gpu_worker.hpp"
#include "packet_engine.hpp"

#include "support/packet_craft.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

using namespace nsagent;
using namespace nsagent::test;

namespace {

// Valid packets of every shape, then damaged: cut short, bytes flipped, lengths lied about.
pkt::frame_batch adversarial(std::size_t n, pkt::link_kind link, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    pkt::frame_batch b;
    b.link = link;
    for (std::size_t i = 0; i < n; ++i) {
        bytes f;
        int kind = static_cast<int>(rng() % 6);
        if (kind == 0) { // pure garbage
            f.resize(rng() % 200);
            for (auto& x : f)
                x = static_cast<std::uint8_t>(rng());
        } else {
            l4_spec l4(std::array<std::uint8_t, 5>{6, 17, 1, 58, 47}[rng() % 5], static_cast<std::uint16_t>(rng() % 64),
                       static_cast<std::uint16_t>(rng() % 4), static_cast<std::uint8_t>(rng()), bytes(rng() % 1400, 0x5a));
            l4.break_l4_csum = rng() % 7 == 0;
            std::string a = "10.0." + std::to_string(rng() % 8) + ".1", c = "10.0.0." + std::to_string(rng() % 3 + 1);
            bytes ip = rng() % 2 ? ipv4_packet(a, c, l4, rng() % 9 == 0)
                                 : ipv6_packet("2001:db8::" + std::to_string(rng() % 8), "2001:db8::ff", l4);
            if (link == pkt::link_ethernet)
                f = rng() % 4 ? ethernet(ip) : ethernet(ip, {{0x8100, 5}});
            else if (link == pkt::link_sll || link == pkt::link_sll2) {
                f.assign(link == pkt::link_sll ? 16 : 20, 0);
                f[link == pkt::link_sll ? 14 : 0] = ip[0] >> 4 == 6 ? 0x86 : 0x08;
                f[link == pkt::link_sll ? 15 : 1] = ip[0] >> 4 == 6 ? 0xdd : 0x00;
                f.insert(f.end(), ip.begin(), ip.end());
            } else
                f = ip;
            if (kind == 2 && !f.empty()) // a flipped byte anywhere
                f[rng() % f.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
        }
        auto len = static_cast<std::uint32_t>(f.size());
        auto cap = len;
        if (rng() % 5 == 0)
            cap = len ? static_cast<std::uint32_t>(rng() % (len + 1)) : 0; // a snaplen cut
        if (rng() % 11 == 0)
            len += static_cast<std::uint32_t>(rng() % 100); // the wire length says more
        b.add(i * 1000 + rng() % 1000, f.data(), cap, len);
    }
    return b;
}

void expect_same(const pkt::analysis& cpu, const pkt::analysis& gpu)
{
    ASSERT_EQ(cpu.counts(), gpu.counts());
    ASSERT_EQ(cpu.flow_count(), gpu.flow_count());
    expect_same_flows(cpu.top(cpu.flow_count(), pkt::flow_order::packets), gpu.top(gpu.flow_count(), pkt::flow_order::packets));
}

} // namespace

TEST(CudaEngine, MatchesTheCpuEngineOnRandomAndAdversarialBatchesUpTo1MPackets)
{
    if (!gpu_worker::built_with_cuda())
        GTEST_SKIP() << "this build has no CUDA engine (NSAGENT_CUDA=OFF, or no nvcc at build time)";
    const std::size_t max = std::size_t{1} << 20;
    gpu_worker gpu(max, max * 1600);
    if (!gpu.ready())
        GTEST_SKIP() << gpu.status();
    std::uint32_t seed = 1;
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{65536}, max}) {
        for (auto link : {pkt::link_ethernet, pkt::link_sll, pkt::link_sll2, pkt::link_raw}) {
            if (n == max && link != pkt::link_ethernet)
                continue; // the largest size once is enough
            for (bool bidirectional : {false, true}) {
                SCOPED_TRACE(std::to_string(n) + " packets, link " + std::to_string(link) + (bidirectional ? ", bidirectional" : ""));
                auto b = adversarial(n, link, seed++);
                pkt::engine_options o;
                o.bidirectional = bidirectional;
                if (seed % 3 == 0)
                    o.key = pkt::symmetric_rss_key();
                pkt::analysis cpu(o), on_gpu(o);
                pkt::analyze_cpu(b, cpu);
                auto err = gpu.analyze(b, on_gpu);
                ASSERT_FALSE(err) << *err;
                expect_same(cpu, on_gpu);
            }
        }
    }
}

TEST(CudaEngine, WithoutAGpuTheWorkerSaysWhyAndRefusesWork)
{
    gpu_worker gpu(1024, 1 << 20);
    if (gpu.ready())
        GTEST_SKIP() << "a GPU is present (" << gpu.status() << "): the no-GPU path is not reachable here";
    EXPECT_NE(gpu.status().find("no GPU engine"), std::string::npos) << gpu.status();
    pkt::frame_batch b;
    pkt::analysis a;
    auto err = gpu.analyze(b, a);
    ASSERT_TRUE(err);
    EXPECT_EQ(*err, gpu.status());
}
