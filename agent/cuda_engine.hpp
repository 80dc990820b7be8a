// The CUDA packet engine (cuda/packet_engine.cu), behind a plain C++ interface so that nothing
// else compiles CUDA headers. Every call must come from the one thread that called create():
// gpu_worker's. Built only when CMake found nvcc (NSAGENT_CUDA).
#pragma once

#include "packet_engine.hpp"

#include <cstddef>
#include <string>

namespace nsagent::pkt::cuda {

struct engine;

// Creates the context on the calling thread and allocates device and pinned host buffers for
// batches of up to `max_packets` frames and `max_bytes` bytes. Null, with `why`, when there is
// no usable GPU.
engine* create(std::size_t max_packets, std::size_t max_bytes, std::string& why);
// The device's name and compute capability, e.g. "NVIDIA H200 (sm_90)".
std::string describe(const engine* e);
// Dissects, checks, hashes and reduces `b` on the GPU (transfers included) and adds the
// totals and per-batch flows to `a`. False, with `why`, on a CUDA error or a batch over the sizes.
bool run(engine* e, const frame_batch& b, analysis& a, std::string& why);
// Frees the buffers and resets the device's primary context use of this thread.
void destroy(engine* e);

} // namespace nsagent::pkt::cuda
