#include "gpu_worker.hpp"

#ifdef NSAGENT_HAVE_CUDA
#include "cuda_engine.hpp"
#endif

#include <pthread.h>
#include <signal.h>

namespace nsagent {

bool gpu_worker::built_with_cuda() noexcept
{
#ifdef NSAGENT_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

gpu_worker::gpu_worker(std::size_t max_packets, std::size_t max_bytes) : max_packets_(max_packets), max_bytes_(max_bytes)
{
    thread_ = std::thread([this] { thread_main(); });
    {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return started_; });
    }
    // Without a GPU the thread has nothing to own and ends: join it now, so that the agent's
    // base thread count, taken next, does not count a thread on its way out.
    if (!ready_)
        thread_.join();
}

gpu_worker::~gpu_worker()
{
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

void gpu_worker::thread_main()
{
    ::pthread_setname_np(::pthread_self(), "nsagent-gpu");
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr); // signals belong to the agent's I/O thread
#ifdef NSAGENT_HAVE_CUDA
    std::string why;
    pkt::cuda::engine* e = pkt::cuda::create(max_packets_, max_bytes_, why);
    {
        std::lock_guard lk(mu_);
        ready_ = e != nullptr;
        status_ = e ? pkt::cuda::describe(e) : "no GPU engine: " + why;
        started_ = true;
    }
    cv_.notify_all();
    if (!e)
        return; // nothing to own; analyze() answers with status_
    for (;;) {
        job* j = nullptr;
        {
            std::unique_lock lk(mu_);
            cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
            if (queue_.empty())
                break; // stop_, and nobody waiting
            j = queue_.front();
            queue_.pop_front();
        }
        std::string err;
        bool ok = pkt::cuda::run(e, *j->batch, *j->into, err);
        {
            std::lock_guard lk(mu_);
            if (!ok)
                j->error = err;
            else {
                ++batches_;
                packets_ += j->batch->size();
            }
            j->done = true;
        }
        cv_.notify_all();
    }
    pkt::cuda::destroy(e); // on the thread that created the context
#else
    {
        std::lock_guard lk(mu_);
        status_ = "no GPU engine: this nsagentd was built without CUDA (NSAGENT_CUDA=OFF, or no nvcc at build time)";
        started_ = true;
    }
    cv_.notify_all();
#endif
}

std::optional<std::string> gpu_worker::analyze(const pkt::frame_batch& b, pkt::analysis& a)
{
    if (!ready_)
        return status_;
    if (b.size() > max_packets_ || b.data.size() > max_bytes_)
        return "the batch (" + std::to_string(b.size()) + " frames, " + std::to_string(b.data.size()) +
               " bytes) exceeds the GPU buffers (" + std::to_string(max_packets_) + " frames, " +
               std::to_string(max_bytes_) + " bytes)";
    job j{&b, &a, std::nullopt};
    std::unique_lock lk(mu_);
    if (stop_)
        return std::string("the GPU worker is stopping");
    queue_.push_back(&j);
    cv_.notify_all();
    cv_.wait(lk, [&] { return j.done; });
    return j.error;
}

std::uint64_t gpu_worker::batches() const
{
    std::lock_guard lk(mu_);
    return batches_;
}

std::uint64_t gpu_worker::packets() const
{
    std::lock_guard lk(mu_);
    return packets_;
}

} // namespace nsagent
