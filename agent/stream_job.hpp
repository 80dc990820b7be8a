// A long op's own thread (pkt.capture's reading half, pkt.analyze): it runs off the I/O thread
// and off the namespace's worker, so neither the agent nor the namespace's other requests wait
// on it. It may send event frames, and it ends in exactly one final reply, which agent::finish
// delivers. Cancel, the deadline, a disconnect and the drain all end it the same way: they
// request a stop, and the body returns what it has so far.
#pragma once

#include "op_registry.hpp"

#include "nsagent/unique_fd.hpp"

#include <boost/json/object.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace nsagent {

class agent;
class pending_request;

class stream_job {
public:
    // Sends `kind` with `fields` (and fds) as an event frame of the job's request. Any thread.
    using event_fn = std::function<void(std::string kind, boost::json::object fields, std::vector<unique_fd> fds)>;
    // The work: runs on the job's thread; its return value is the final reply.
    using body_fn = std::function<op_result(stream_job&)>;

    stream_job(event_fn events);
    ~stream_job();
    stream_job(const stream_job&) = delete;
    stream_job& operator=(const stream_job&) = delete;

    void event(std::string kind, boost::json::object fields = {}, std::vector<unique_fd> fds = {});

    // Any thread: asks the body to return. The first reason given is kept.
    void request_stop(std::string why);
    bool stop_requested() const noexcept { return stopped_.load(std::memory_order_acquire); }
    std::string stop_reason() const;
    // Readable once a stop was requested: for poll() next to the body's own fds.
    int stop_fd() const noexcept { return stop_fd_.get(); }

    // Starts `body` on a new thread; `done` runs on that thread with its result, last.
    void start(body_fn body, std::function<void(op_result)> done);
    // Joins the thread (it has called `done`, or is about to).
    void join();

private:
    event_fn events_;
    unique_fd stop_fd_;
    std::atomic<bool> stopped_{false};
    mutable std::mutex mu_;
    std::string why_;
    std::thread thread_;
};

} // namespace nsagent
