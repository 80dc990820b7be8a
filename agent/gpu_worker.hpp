// The CUDA worker: one dedicated thread that owns the CUDA context, its device buffers and its
// pinned host buffers, and runs every GPU batch of the agent (the seed's single owner of a
// thread-affine resource). It is started at agent start from a host-namespace thread, before any
// pinned worker exists: the CUDA runtime starts helper threads, and threads inherit namespaces.
// Without a GPU (or without CUDA at build time) it reports why, and pkt.* use the CPU engine.
#pragma once

#include "packet_engine.hpp"

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace nsagent {

class gpu_worker {
public:
    // Starts the thread and waits for its readiness signal: the context and buffers for batches
    // of up to `max_packets` frames and `max_bytes` bytes of frame data exist, or the reason why not.
    gpu_worker(std::size_t max_packets, std::size_t max_bytes);
    // Releases the buffers and the context on the owning thread, then joins it.
    ~gpu_worker();
    gpu_worker(const gpu_worker&) = delete;
    gpu_worker& operator=(const gpu_worker&) = delete;

    bool ready() const noexcept { return ready_; }
    // The device's name when ready; otherwise why there is no GPU engine.
    const std::string& status() const noexcept { return status_; }
    std::size_t max_packets() const noexcept { return max_packets_; }
    std::size_t max_bytes() const noexcept { return max_bytes_; }

    // Runs `b` on the GPU and adds it to `a`, blocking the caller until it is done. Callers
    // queue; the worker takes one batch at a time. The error says what failed.
    std::optional<std::string> analyze(const pkt::frame_batch& b, pkt::analysis& a);

    std::uint64_t batches() const;
    std::uint64_t packets() const;
    // Whether this build has a CUDA engine at all.
    static bool built_with_cuda() noexcept;

private:
    struct job {
        const pkt::frame_batch* batch;
        pkt::analysis* into;
        std::optional<std::string> error;
        bool done = false;
    };
    void thread_main();

    const std::size_t max_packets_, max_bytes_;
    bool ready_ = false;
    std::string status_;
    mutable std::mutex mu_;
    std::condition_variable cv_;      // the worker waits for jobs, callers for results
    std::deque<job*> queue_;
    bool stop_ = false;
    bool started_ = false;             // the readiness signal was given
    std::uint64_t batches_ = 0, packets_ = 0;
    std::thread thread_;
};

} // namespace nsagent
