#include "stream_job.hpp"

#include "nsagent/error.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace nsagent {

stream_job::stream_job(event_fn events) : events_(std::move(events)), stop_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
    if (!stop_fd_)
        throw std::system_error(errno, std::generic_category(), "eventfd");
}

stream_job::~stream_job()
{
    join();
}

void stream_job::event(std::string kind, boost::json::object fields, std::vector<unique_fd> fds)
{
    events_(std::move(kind), std::move(fields), std::move(fds));
}

void stream_job::request_stop(std::string why)
{
    {
        std::lock_guard lk(mu_);
        if (stopped_.load(std::memory_order_relaxed))
            return;
        why_ = std::move(why);
        stopped_.store(true, std::memory_order_release);
    }
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_.get(), &one, sizeof one);
}

std::string stream_job::stop_reason() const
{
    std::lock_guard lk(mu_);
    return why_;
}

void stream_job::start(body_fn body, std::function<void(op_result)> done)
{
    thread_ = std::thread([this, body = std::move(body), done = std::move(done)] {
        ::pthread_setname_np(::pthread_self(), "nsagent-stream");
        sigset_t all;
        sigfillset(&all);
        ::pthread_sigmask(SIG_BLOCK, &all, nullptr); // signals belong to the agent's I/O thread
        op_result res = agent_failure(errc::internal, "stream job did not run");
        try {
            res = body(*this);
        } catch (const std::exception& e) {
            res = agent_failure(errc::internal, std::string("exception: ") + e.what());
        }
        done(std::move(res));
    });
}

void stream_job::join()
{
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
        thread_.join();
}

} // namespace nsagent
