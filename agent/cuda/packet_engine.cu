// The CUDA packet engine. Per packet it runs the same code as the CPU engine
// (packet_dissect.hpp, compiled here for the device): parsing in one thread per packet, the
// checksums by a whole warp per packet (the lanes share the payload), then the flows are
// reduced on the device (CUB radix sort by a key hash, then reduce-by-key on the full key) and
// only one partial flow per distinct key comes back. analysis::merge folds them in exactly as
// the CPU engine's per-packet adds would: every combined field is a sum, a min, a max or an OR,
// and a flow's direction and hash are its earliest packet's.
#include "cuda_engine.hpp"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_reduce.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

namespace nsagent::pkt::cuda {
namespace {

// The reduction's key: a flow's canonical identity. Packets that belong to no flow get
// is_flow = 0 and never compare equal to a flow's key.
struct alignas(8) dev_key {
    std::uint8_t family, proto, is_flow, pad;
    std::uint16_t sport, dport;
    std::uint8_t src[16], dst[16];

    __host__ __device__ bool operator==(const dev_key& o) const
    {
        const std::uint32_t* a = reinterpret_cast<const std::uint32_t*>(this);
        const std::uint32_t* b = reinterpret_cast<const std::uint32_t*>(&o);
        for (int i = 0; i < static_cast<int>(sizeof(dev_key) / 4); ++i)
            if (a[i] != b[i])
                return false;
        return true;
    }
};

// A partial flow: what its packets add up to, and its earliest packet's tuple and hash.
struct dev_flow {
    std::uint64_t packets, bytes, first_ts, last_ts, csum_errors;
    std::uint32_t first_idx; // the earliest packet of the batch in this flow
    std::uint32_t rss;
    std::uint16_t sport, dport;
    std::uint8_t family, proto, tcp_flags, is_flow;
    std::uint8_t src[16], dst[16];
};

struct combine_flows {
    __host__ __device__ dev_flow operator()(const dev_flow& a, const dev_flow& b) const
    {
        // Commutative as well as associative: the direction and hash follow the smaller
        // index, whatever order the reduction visits the packets in.
        dev_flow r = a.first_idx <= b.first_idx ? a : b;
        r.packets = a.packets + b.packets;
        r.bytes = a.bytes + b.bytes;
        r.first_ts = a.first_ts < b.first_ts ? a.first_ts : b.first_ts;
        r.last_ts = a.last_ts > b.last_ts ? a.last_ts : b.last_ts;
        r.csum_errors = a.csum_errors + b.csum_errors;
        r.tcp_flags = a.tcp_flags | b.tcp_flags;
        return r;
    }
};

__device__ bool higher_source(const packet_record& r)
{
    for (int i = 0; i < 16; ++i)
        if (r.src[i] != r.dst[i])
            return r.src[i] > r.dst[i];
    return r.sport > r.dport;
}

__device__ dev_key key_of(const packet_record& r, bool bidirectional)
{
    dev_key k{};
    if (!(r.flags & rec_ip))
        return k; // is_flow 0
    bool rev = bidirectional && higher_source(r);
    k.family = r.family;
    k.proto = r.proto;
    k.is_flow = 1;
    k.sport = rev ? r.dport : r.sport;
    k.dport = rev ? r.sport : r.dport;
    for (int i = 0; i < 16; ++i) {
        k.src[i] = rev ? r.dst[i] : r.src[i];
        k.dst[i] = rev ? r.src[i] : r.dst[i];
    }
    return k;
}

__device__ std::uint64_t hash_key(const dev_key& k)
{
    const std::uint64_t* w = reinterpret_cast<const std::uint64_t*>(&k);
    std::uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < static_cast<int>(sizeof(dev_key) / 8); ++i) {
        h ^= w[i];
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

__global__ void parse_kernel(std::uint32_t n, const std::uint8_t* data, const std::uint32_t* off,
                             const std::uint32_t* cap, const std::uint32_t* len, const std::uint64_t* ts, link_kind link,
                             packet_record* rec, packet_jobs* jobs)
{
    std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        parse_packet(data + off[i], cap[i], len[i], ts[i], link, rec[i], jobs[i]);
}

// A warp's share of a range's ones' complement sum: lane l takes the 4-byte words l, l+32, ...
// (little-endian, as ones_sum_bytes pairs them), lane 0 also the tail.
__device__ std::uint64_t warp_sum(const std::uint8_t* p, std::uint32_t n, unsigned lane)
{
    std::uint64_t acc = 0;
    std::uint32_t words = n / 4;
    for (std::uint32_t w = lane; w < words; w += 32) {
        const std::uint8_t* q = p + 4 * w;
        acc += static_cast<std::uint32_t>(q[0] | q[1] << 8) + static_cast<std::uint32_t>(q[2] | q[3] << 8);
    }
    if (lane == 0)
        acc = ones_sum_bytes(p + 4 * words, n - 4 * words, acc);
    for (int d = 16; d > 0; d /= 2)
        acc += __shfl_down_sync(0xffffffffu, acc, d);
    return acc; // complete in lane 0
}

__global__ void check_kernel(std::uint32_t n, const std::uint8_t* data, const std::uint32_t* off, packet_record* rec,
                             const packet_jobs* jobs, rss_key key, bool bidirectional, unsigned long long* counts,
                             std::uint64_t* hashes, std::uint32_t* idx)
{
    std::uint32_t i = (blockIdx.x * blockDim.x + threadIdx.x) / 32;
    unsigned lane = threadIdx.x % 32;
    if (i >= n) // whole warps leave together: n is per warp
        return;
    const std::uint8_t* f = data + off[i];
    const packet_jobs& j = jobs[i];
    std::uint64_t ip_sum = j.ip.len ? warp_sum(f + j.ip.off, j.ip.len, lane) : 0;
    std::uint64_t l4_sum = j.l4.len ? warp_sum(f + j.l4.off, j.l4.len, lane) : 0;
    if (lane != 0)
        return;
    packet_record r = rec[i];
    set_verdicts(r, j, ip_sum, l4_sum);
    if (r.flags & rec_ip) {
        std::uint8_t in[36];
        std::uint32_t k = rss_input(r, rss_four_tuple(r), in);
        r.rss = toeplitz(key, in, k);
    }
    rec[i] = r;
    std::uint8_t which[8];
    int m = tally(r, which);
    for (int t = 0; t < m; ++t)
        atomicAdd(&counts[which[t]], 1ull);
    atomicAdd(&counts[t_bytes], static_cast<unsigned long long>(r.len));
    hashes[i] = hash_key(key_of(r, bidirectional));
    idx[i] = i;
}

__global__ void gather_kernel(std::uint32_t n, const std::uint32_t* order, const packet_record* rec, bool bidirectional,
                              dev_key* keys, dev_flow* vals)
{
    std::uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    std::uint32_t p = order[i];
    const packet_record& r = rec[p];
    keys[i] = key_of(r, bidirectional);
    dev_flow v{};
    v.packets = 1;
    v.bytes = r.len;
    v.first_ts = v.last_ts = r.ts;
    v.csum_errors = (r.ip_csum == csum_bad) + (r.l4_csum == csum_bad);
    v.first_idx = p;
    v.rss = r.rss;
    v.sport = r.sport;
    v.dport = r.dport;
    v.family = r.family;
    v.proto = r.proto;
    v.tcp_flags = r.tcp_flags;
    v.is_flow = (r.flags & rec_ip) ? 1 : 0;
    for (int b = 0; b < 16; ++b) {
        v.src[b] = r.src[b];
        v.dst[b] = r.dst[b];
    }
    vals[i] = v;
}

} // namespace

struct engine {
    int device = 0;
    cudaDeviceProp prop{};
    cudaStream_t stream = nullptr;
    std::size_t max_packets = 0, max_bytes = 0;
    // pinned host staging
    std::uint8_t* h_data = nullptr;
    std::uint32_t *h_off = nullptr, *h_cap = nullptr, *h_len = nullptr;
    std::uint64_t* h_ts = nullptr;
    dev_flow* h_flows = nullptr;
    unsigned long long* h_counts = nullptr;
    int* h_runs = nullptr;
    // device
    std::uint8_t* d_data = nullptr;
    std::uint32_t *d_off = nullptr, *d_cap = nullptr, *d_len = nullptr;
    std::uint64_t* d_ts = nullptr;
    packet_record* d_rec = nullptr;
    packet_jobs* d_jobs = nullptr;
    std::uint64_t *d_hash = nullptr, *d_hash_sorted = nullptr;
    std::uint32_t *d_idx = nullptr, *d_idx_sorted = nullptr;
    dev_key *d_keys = nullptr, *d_unique = nullptr;
    dev_flow *d_vals = nullptr, *d_flows = nullptr;
    unsigned long long* d_counts = nullptr;
    int* d_runs = nullptr;
    void* d_temp = nullptr;
    std::size_t temp_bytes = 0;
};

namespace {

bool check(cudaError_t e, const char* what, std::string& why)
{
    if (e == cudaSuccess)
        return true;
    why = std::string(what) + ": " + cudaGetErrorString(e);
    return false;
}

template <typename T>
bool dev_alloc(T*& p, std::size_t n, std::string& why)
{
    return check(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)), "cudaMalloc", why);
}

template <typename T>
bool host_alloc(T*& p, std::size_t n, std::string& why)
{
    return check(cudaMallocHost(reinterpret_cast<void**>(&p), n * sizeof(T)), "cudaMallocHost", why);
}

} // namespace

engine* create(std::size_t max_packets, std::size_t max_bytes, std::string& why)
{
    int count = 0;
    if (!check(cudaGetDeviceCount(&count), "cudaGetDeviceCount", why))
        return nullptr;
    if (count == 0) {
        why = "no CUDA device";
        return nullptr;
    }
    auto* e = new engine;
    e->max_packets = max_packets;
    e->max_bytes = max_bytes;
    auto n = max_packets;
    bool ok = check(cudaSetDevice(0), "cudaSetDevice", why) && check(cudaFree(nullptr), "context creation", why) &&
              check(cudaGetDeviceProperties(&e->prop, 0), "cudaGetDeviceProperties", why) &&
              check(cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking), "cudaStreamCreate", why) &&
              host_alloc(e->h_data, max_bytes, why) && host_alloc(e->h_off, n, why) && host_alloc(e->h_cap, n, why) &&
              host_alloc(e->h_len, n, why) && host_alloc(e->h_ts, n, why) && host_alloc(e->h_flows, n, why) &&
              host_alloc(e->h_counts, t_count, why) && host_alloc(e->h_runs, 1, why) &&
              dev_alloc(e->d_data, max_bytes, why) && dev_alloc(e->d_off, n, why) && dev_alloc(e->d_cap, n, why) &&
              dev_alloc(e->d_len, n, why) && dev_alloc(e->d_ts, n, why) && dev_alloc(e->d_rec, n, why) &&
              dev_alloc(e->d_jobs, n, why) && dev_alloc(e->d_hash, n, why) && dev_alloc(e->d_hash_sorted, n, why) &&
              dev_alloc(e->d_idx, n, why) && dev_alloc(e->d_idx_sorted, n, why) && dev_alloc(e->d_keys, n, why) &&
              dev_alloc(e->d_unique, n, why) && dev_alloc(e->d_vals, n, why) && dev_alloc(e->d_flows, n, why) &&
              dev_alloc(e->d_counts, t_count, why) && dev_alloc(e->d_runs, 1, why);
    if (ok) {
        // One scratch area for both CUB passes, sized for the largest batch, allocated once.
        std::size_t sort_bytes = 0, reduce_bytes = 0;
        ok = check(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, e->d_hash, e->d_hash_sorted, e->d_idx,
                                                   e->d_idx_sorted, static_cast<int>(n), 0, 64, e->stream),
                   "cub sort sizing", why) &&
             check(cub::DeviceReduce::ReduceByKey(nullptr, reduce_bytes, e->d_keys, e->d_unique, e->d_vals, e->d_flows,
                                                  e->d_runs, combine_flows{}, static_cast<int>(n), e->stream),
                   "cub reduce sizing", why);
        e->temp_bytes = std::max(sort_bytes, reduce_bytes);
        ok = ok && check(cudaMalloc(&e->d_temp, e->temp_bytes), "cudaMalloc", why);
    }
    if (!ok) {
        destroy(e);
        return nullptr;
    }
    return e;
}

std::string describe(const engine* e)
{
    return std::string(e->prop.name) + " (sm_" + std::to_string(e->prop.major) + std::to_string(e->prop.minor) + ")";
}

bool run(engine* e, const frame_batch& b, analysis& a, std::string& why)
{
    auto n = static_cast<std::uint32_t>(b.size());
    if (n == 0)
        return true;
    if (n > e->max_packets || b.data.size() > e->max_bytes) {
        why = "batch larger than the GPU buffers";
        return false;
    }
    std::memcpy(e->h_data, b.data.data(), b.data.size());
    std::memcpy(e->h_off, b.offset.data(), n * sizeof(std::uint32_t));
    std::memcpy(e->h_cap, b.caplen.data(), n * sizeof(std::uint32_t));
    std::memcpy(e->h_len, b.len.data(), n * sizeof(std::uint32_t));
    std::memcpy(e->h_ts, b.ts.data(), n * sizeof(std::uint64_t));
    cudaStream_t s = e->stream;
    bool bidir = a.options().bidirectional;
    bool ok = check(cudaMemcpyAsync(e->d_data, e->h_data, b.data.size(), cudaMemcpyHostToDevice, s), "copy in", why) &&
              check(cudaMemcpyAsync(e->d_off, e->h_off, n * 4, cudaMemcpyHostToDevice, s), "copy in", why) &&
              check(cudaMemcpyAsync(e->d_cap, e->h_cap, n * 4, cudaMemcpyHostToDevice, s), "copy in", why) &&
              check(cudaMemcpyAsync(e->d_len, e->h_len, n * 4, cudaMemcpyHostToDevice, s), "copy in", why) &&
              check(cudaMemcpyAsync(e->d_ts, e->h_ts, n * 8, cudaMemcpyHostToDevice, s), "copy in", why) &&
              check(cudaMemsetAsync(e->d_counts, 0, t_count * sizeof(unsigned long long), s), "memset", why);
    if (!ok)
        return false;
    const unsigned threads = 256;
    parse_kernel<<<(n + threads - 1) / threads, threads, 0, s>>>(n, e->d_data, e->d_off, e->d_cap, e->d_len, e->d_ts,
                                                                 b.link, e->d_rec, e->d_jobs);
    std::uint64_t warps_total = static_cast<std::uint64_t>(n) * 32;
    check_kernel<<<static_cast<unsigned>((warps_total + threads - 1) / threads), threads, 0, s>>>(
        n, e->d_data, e->d_off, e->d_rec, e->d_jobs, a.options().key, bidir, e->d_counts, e->d_hash, e->d_idx);
    std::size_t temp = e->temp_bytes;
    ok = check(cudaGetLastError(), "kernel launch", why) &&
         check(cub::DeviceRadixSort::SortPairs(e->d_temp, temp, e->d_hash, e->d_hash_sorted, e->d_idx, e->d_idx_sorted,
                                               static_cast<int>(n), 0, 64, s),
               "cub sort", why);
    if (!ok)
        return false;
    gather_kernel<<<(n + threads - 1) / threads, threads, 0, s>>>(n, e->d_idx_sorted, e->d_rec, bidir, e->d_keys, e->d_vals);
    temp = e->temp_bytes;
    ok = check(cudaGetLastError(), "kernel launch", why) &&
         check(cub::DeviceReduce::ReduceByKey(e->d_temp, temp, e->d_keys, e->d_unique, e->d_vals, e->d_flows, e->d_runs,
                                              combine_flows{}, static_cast<int>(n), s),
               "cub reduce", why) &&
         check(cudaMemcpyAsync(e->h_counts, e->d_counts, t_count * sizeof(unsigned long long), cudaMemcpyDeviceToHost, s),
               "copy out", why) &&
         check(cudaMemcpyAsync(e->h_runs, e->d_runs, sizeof(int), cudaMemcpyDeviceToHost, s), "copy out", why) &&
         check(cudaStreamSynchronize(s), "kernels", why);
    if (!ok)
        return false;
    int runs = *e->h_runs;
    if (!check(cudaMemcpyAsync(e->h_flows, e->d_flows, static_cast<std::size_t>(runs) * sizeof(dev_flow),
                               cudaMemcpyDeviceToHost, s),
               "copy out", why) ||
        !check(cudaStreamSynchronize(s), "copy out", why))
        return false;

    // Merge in the order of each flow's earliest packet, as the CPU engine meets them.
    std::vector<const dev_flow*> order;
    order.reserve(static_cast<std::size_t>(runs));
    for (int i = 0; i < runs; ++i)
        if (e->h_flows[i].is_flow)
            order.push_back(&e->h_flows[i]);
    std::sort(order.begin(), order.end(), [](const dev_flow* x, const dev_flow* y) { return x->first_idx < y->first_idx; });
    for (const dev_flow* d : order) {
        flow f;
        f.family = d->family;
        f.proto = d->proto;
        std::memcpy(f.src, d->src, 16);
        std::memcpy(f.dst, d->dst, 16);
        f.sport = d->sport;
        f.dport = d->dport;
        f.packets = d->packets;
        f.bytes = d->bytes;
        f.first_ts = d->first_ts;
        f.last_ts = d->last_ts;
        f.csum_errors = d->csum_errors;
        f.rss_hash = d->rss;
        f.tcp_flags = d->tcp_flags;
        a.merge(f);
    }
    std::array<std::uint64_t, t_count> counts{};
    for (int i = 0; i < t_count; ++i)
        counts[static_cast<std::size_t>(i)] = e->h_counts[i];
    a.add_counts(counts);
    return true;
}

void destroy(engine* e)
{
    if (!e)
        return;
    cudaFreeHost(e->h_data);
    cudaFreeHost(e->h_off);
    cudaFreeHost(e->h_cap);
    cudaFreeHost(e->h_len);
    cudaFreeHost(e->h_ts);
    cudaFreeHost(e->h_flows);
    cudaFreeHost(e->h_counts);
    cudaFreeHost(e->h_runs);
    for (void* p : {static_cast<void*>(e->d_data), static_cast<void*>(e->d_off), static_cast<void*>(e->d_cap),
                    static_cast<void*>(e->d_len), static_cast<void*>(e->d_ts), static_cast<void*>(e->d_rec),
                    static_cast<void*>(e->d_jobs), static_cast<void*>(e->d_hash), static_cast<void*>(e->d_hash_sorted),
                    static_cast<void*>(e->d_idx), static_cast<void*>(e->d_idx_sorted), static_cast<void*>(e->d_keys),
                    static_cast<void*>(e->d_unique), static_cast<void*>(e->d_vals), static_cast<void*>(e->d_flows),
                    static_cast<void*>(e->d_counts), static_cast<void*>(e->d_runs), e->d_temp})
        cudaFree(p);
    if (e->stream)
        cudaStreamDestroy(e->stream);
    delete e;
    cudaDeviceReset();
}

} // namespace nsagent::pkt::cuda
