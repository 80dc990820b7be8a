// One accepted request on its way to exactly one final reply, whichever path gets there first:
// the op's result, its deadline, a cancel, a disconnect, or shutdown.
#pragma once

#include "fs_identity.hpp"
#include "ns_id.hpp"
#include "reply_channel.hpp"
#include "op_registry.hpp"

#include "nsagent/protocol.hpp"
#include "nsagent/unique_fd.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nsagent {

class connection;
class ns_worker;
class stream_job;

// Shared between the I/O thread and one worker. The state machine is the only thing both
// threads write; the op's result is written by the worker before it posts completion, which
// orders it before the I/O thread reads it.
class pending_request {
public:
    using clock = std::chrono::steady_clock;
    enum class state : std::uint8_t { queued, running, finished };

    pending_request(request r, const op_spec& s, std::vector<unique_fd> fds, clock::time_point deadline)
        : req(std::move(r)), spec(&s), fds(std::move(fds)), deadline(deadline)
    {
    }

    // Worker: queued -> running. False if the request was finished (cancelled, timed out) while
    // queued; the worker then must not run it.
    bool try_start() noexcept
    {
        auto s = state::queued;
        return st_.compare_exchange_strong(s, state::running, std::memory_order_acq_rel);
    }

    // I/O thread: claims the one final reply. Returns the state it left, or empty if another
    // path already claimed it.
    std::optional<state> claim_final() noexcept
    {
        auto s = st_.load(std::memory_order_acquire);
        while (s != state::finished)
            if (st_.compare_exchange_weak(s, state::finished, std::memory_order_acq_rel))
                return s;
        return std::nullopt;
    }

    state current() const noexcept { return st_.load(std::memory_order_acquire); }

    // "<op> <namespace>" for messages: the client always learns what failed and where.
    std::string where() const;

    const request req;
    const op_spec* const spec;
    std::vector<unique_fd> fds;
    const clock::time_point deadline;
    clock::time_point enqueued_at{}; // set when it reaches a worker's queue

    // Set by the I/O thread before the request reaches a worker.
    std::weak_ptr<connection> conn;
    std::optional<ns_id> ns;
    std::shared_ptr<ns_worker> worker;
    std::optional<client_identity> as; // run the op with the client's fs identity
    // Set for worker ops without a loop half: the worker may write the reply itself.
    std::shared_ptr<reply_channel> channel;

    // Written by the worker, then published by posting completion to the I/O thread.
    std::optional<op_result> result;
    std::vector<unique_fd> reply_fds;
    std::shared_ptr<void> handoff; // op_context::handoff, for the loop half
    std::atomic<bool> op_returned{false}; // the op ran and returned (distinguishes a wedge)
    bool replied_directly = false; // the worker wrote the final reply itself (reply_channel)

    // I/O thread: the thread of a stream op (stream_job.hpp) once its loop half started it.
    // Cancel, the deadline, a disconnect and the drain stop it instead of answering for it.
    std::shared_ptr<stream_job> job;

private:
    std::atomic<state> st_{state::queued};
};

// The final frame for `r` with result `res`: errors name the op and the namespace.
std::string final_frame(const pending_request& r, const op_result& res, std::size_t fds = 0);

} // namespace nsagent
