// The one piece of a connection a worker may touch: its socket, for writing a final reply
// straight from the worker when nothing else is queued or half-written on it. That saves the
// hand-off back to the I/O thread before the client sees its reply (one of the two thread
// wake-ups a multiplexed request costs). Everything here is under one mutex; the I/O thread
// keeps all other connection state.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace nsagent {

class reply_channel {
public:
    explicit reply_channel(int fd) : fd_(fd) {}
    reply_channel(const reply_channel&) = delete;
    reply_channel& operator=(const reply_channel&) = delete;

    enum class outcome {
        written, // the whole frame went out
        stashed, // part went out; the I/O thread's writer sends the rest before anything else
        not_now, // the I/O thread writes (queue busy, closed, or the reply was already claimed)
    };
    // Worker. `claim` runs under the lock only when the socket is free; it must take the
    // request's one final reply and return whether it did. Nothing is written if it fails.
    // `before_write` runs once claimed, before the first byte goes out: it hands the I/O thread
    // the request's bookkeeping, so that a client holding its reply finds it counted.
    outcome try_write(std::string_view frame, const std::function<bool()>& claim,
                      const std::function<void()>& before_write);

    // I/O thread: frames are about to be queued; workers keep off until idle().
    void busy();
    // I/O thread, before each write: the rest of a frame a worker left half-written, if any.
    bool take_stash(std::string& out);
    // I/O thread: the queue is empty and no frame is partly written. False if a worker
    // stashed something meanwhile (then the writer carries on).
    bool idle();
    // I/O thread: before the socket is closed or handed over. No worker writes after this.
    void shut();

private:
    std::mutex mu_;
    const int fd_;
    bool open_ = true;
    bool busy_ = false;
    std::string stash_;
};

} // namespace nsagent
