// pktbench: the packet engine's speed, per core, next to a baseline measured in the same run.
//
// CPU rows: Mpps and Gbit/s of analyze_cpu (parse, checksums, RSS hash, flow aggregation) at
// 64, 512 and 1500-byte frames and IMIX (7:4:1 of 64, 576, 1500), one thread. The baseline is
// the same bytes copied once with memcpy: the ratio says how close to "just moving the memory"
// the engine gets. CUDA rows (when built with CUDA and a GPU is present): the same
// batches through the GPU worker, transfers included, at 1k to 4M packets, and the crossover
// batch size against one CPU core. Medians of --rounds runs, interleaved.
#include "gpu_worker.hpp"
#include "packet_engine.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace nsagent;
using clock_type = std::chrono::steady_clock;

namespace {

std::uint16_t csum16(const std::uint8_t* p, std::size_t n, std::uint32_t seed = 0)
{
    std::uint32_t s = seed;
    for (std::size_t i = 0; i + 1 < n; i += 2)
        s += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += static_cast<std::uint32_t>(p[n - 1] << 8);
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint16_t>(~s);
}

// An Ethernet + IPv4 + TCP frame of `size` bytes with correct checksums, in one of `flows` flows.
std::vector<std::uint8_t> tcp_frame(std::size_t size, std::uint32_t flow, std::mt19937& rng)
{
    std::vector<std::uint8_t> f(std::max<std::size_t>(size, 54));
    for (auto& b : f)
        b = static_cast<std::uint8_t>(rng());
    std::uint8_t* eth = f.data();
    eth[12] = 0x08, eth[13] = 0;
    std::uint8_t* ip = eth + 14;
    std::size_t ip_len = f.size() - 14;
    ip[0] = 0x45, ip[1] = 0, ip[2] = static_cast<std::uint8_t>(ip_len >> 8), ip[3] = static_cast<std::uint8_t>(ip_len);
    ip[6] = 0x40, ip[7] = 0, ip[8] = 64, ip[9] = 6, ip[10] = ip[11] = 0;
    ip[12] = 10, ip[13] = 0, ip[14] = static_cast<std::uint8_t>(flow >> 8), ip[15] = static_cast<std::uint8_t>(flow);
    ip[16] = 10, ip[17] = 1, ip[18] = 0, ip[19] = 1;
    std::uint16_t c = csum16(ip, 20);
    ip[10] = static_cast<std::uint8_t>(c >> 8), ip[11] = static_cast<std::uint8_t>(c);
    std::uint8_t* tcp = ip + 20;
    tcp[0] = static_cast<std::uint8_t>(0x80 | flow % 64), tcp[1] = static_cast<std::uint8_t>(flow), tcp[2] = 0x01, tcp[3] = 0xbb;
    tcp[12] = 0x50, tcp[13] = 0x18, tcp[16] = tcp[17] = 0;
    std::size_t tl = ip_len - 20;
    std::uint8_t pseudo[12] = {ip[12], ip[13], ip[14], ip[15], ip[16], ip[17], ip[18], ip[19], 0, 6,
                               static_cast<std::uint8_t>(tl >> 8), static_cast<std::uint8_t>(tl)};
    std::uint32_t seed = 0;
    for (int i = 0; i < 12; i += 2)
        seed += static_cast<std::uint32_t>(pseudo[i] << 8 | pseudo[i + 1]);
    c = csum16(tcp, tl, seed);
    tcp[16] = static_cast<std::uint8_t>(c >> 8), tcp[17] = static_cast<std::uint8_t>(c);
    return f;
}

pkt::frame_batch make_batch(const std::vector<std::size_t>& mix, std::size_t packets, std::uint32_t flows)
{
    std::mt19937 rng(42);
    pkt::frame_batch b;
    for (std::size_t i = 0; i < packets; ++i) {
        auto f = tcp_frame(mix[i % mix.size()], static_cast<std::uint32_t>(rng() % flows), rng);
        b.add(i, f.data(), static_cast<std::uint32_t>(f.size()), static_cast<std::uint32_t>(f.size()));
    }
    return b;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"pktbench: packet engine throughput per core (CPU) and, where a GPU is present, CUDA with transfers"};
    int rounds = 5;
    std::size_t packets = 1 << 18;
    bool smoke = false, no_gpu = false;
    app.add_option("--rounds", rounds, "Interleaved rounds; medians are reported")->check(CLI::Range(1, 100));
    app.add_option("--packets", packets, "Packets per CPU batch")->check(CLI::Range(1024, 1 << 24));
    app.add_flag("--smoke", smoke, "Tiny sizes, one round: checks that every row runs (CI)");
    app.add_flag("--no-gpu", no_gpu, "Skip the CUDA rows");
    CLI11_PARSE(app, argc, argv);
    if (smoke) {
        rounds = 1;
        packets = 4096;
    }

    struct row {
        const char* name;
        std::vector<std::size_t> mix;
        std::vector<double> engine_s, baseline_s;
        pkt::frame_batch batch;
        std::uint64_t bytes = 0;
    };
    std::vector<row> rows;
    rows.push_back({"64B", {64}, {}, {}, {}});
    rows.push_back({"512B", {512}, {}, {}, {}});
    rows.push_back({"1500B", {1500}, {}, {}, {}});
    rows.push_back({"IMIX", {64, 64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 576}, {}, {}, {}});
    for (auto& r : rows) {
        r.batch = make_batch(r.mix, packets, 1024);
        for (auto l : r.batch.len)
            r.bytes += l;
    }
    volatile std::uint64_t sink = 0;
    for (int round = 0; round < rounds; ++round)
        for (auto& r : rows) {
            pkt::analysis a;
            auto t0 = clock_type::now();
            pkt::analyze_cpu(r.batch, a);
            r.engine_s.push_back(seconds_since(t0));
            if (a.counts()[pkt::t_packets] != r.batch.size() || a.counts()[pkt::t_bad_tcp] || a.counts()[pkt::t_bad_ipv4]) {
                std::fprintf(stderr, "pktbench: %s: the engine disagreed with the generator's checksums\n", r.name);
                return 1;
            }
            std::vector<std::uint8_t> copy(r.batch.data.size());
            t0 = clock_type::now();
            std::memcpy(copy.data(), r.batch.data.data(), copy.size());
            sink = sink + copy[copy.size() / 2];
            r.baseline_s.push_back(seconds_since(t0));
        }
    std::printf("CPU engine, one core, %zu packets per batch, 1024 flows, median of %d rounds\n", packets, rounds);
    std::printf("%-6s %10s %12s %16s %22s\n", "frame", "Mpps", "Gbit/s", "baseline Gbit/s", "engine/baseline speed");
    for (auto& r : rows) {
        double e = median(r.engine_s), b = median(r.baseline_s);
        std::printf("%-6s %10.2f %12.2f %16.2f %22.2f\n", r.name, static_cast<double>(r.batch.size()) / e / 1e6,
                    static_cast<double>(r.bytes) * 8 / e / 1e9, static_cast<double>(r.bytes) * 8 / b / 1e9, b / e);
    }

    if (no_gpu)
        return 0;
    std::size_t max_gpu = smoke ? 4096 : std::size_t{4} << 20;
    gpu_worker gpu(max_gpu, max_gpu * 1600);
    if (!gpu.ready()) {
        std::printf("CUDA rows skipped: %s\n", gpu.status().c_str());
        return 0;
    }
    std::printf("CUDA engine on %s, transfers included, 512-byte frames, median of %d rounds\n", gpu.status().c_str(), rounds);
    std::printf("%-10s %12s %12s %14s\n", "batch", "GPU Mpps", "CPU Mpps", "GPU/CPU");
    std::size_t crossover = 0;
    for (std::size_t n = 1024; n <= max_gpu; n *= 4) {
        auto b = make_batch({512}, n, 65536);
        std::vector<double> g, c;
        for (int round = 0; round < rounds; ++round) {
            pkt::analysis ga, ca;
            auto t0 = clock_type::now();
            if (auto err = gpu.analyze(b, ga)) {
                std::fprintf(stderr, "pktbench: GPU: %s\n", err->c_str());
                return 1;
            }
            g.push_back(seconds_since(t0));
            t0 = clock_type::now();
            pkt::analyze_cpu(b, ca);
            c.push_back(seconds_since(t0));
            if (ga.counts() != ca.counts() || ga.flow_count() != ca.flow_count()) {
                std::fprintf(stderr, "pktbench: the GPU and CPU engines disagree at %zu packets\n", n);
                return 1;
            }
        }
        double gs = median(g), cs = median(c);
        if (!crossover && gs < cs)
            crossover = n;
        std::printf("%-10zu %12.2f %12.2f %14.2f\n", n, static_cast<double>(n) / gs / 1e6, static_cast<double>(n) / cs / 1e6, cs / gs);
    }
    std::printf("crossover: %s\n", crossover ? ("the GPU is faster from " + std::to_string(crossover) + " packets").c_str()
                                             : "the GPU was never faster");
    return 0;
}
