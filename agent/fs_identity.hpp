// Per-op filesystem identity: a non-root client's fs ops run, on the worker thread and for the
// duration of one op, with that client's fsuid, fsgid and supplementary groups, and without the
// capabilities that would let the thread ignore file permissions. Everything here is per thread
// (setfsuid, setfsgid, the raw setgroups syscall, capset), so the worker's other state and the
// agent's other threads never see the change.
#pragma once

#include "nsagent/error.hpp"

#include <sys/types.h>

#include <optional>
#include <vector>

namespace nsagent {

// Whose permissions an fs op is checked against.
struct client_identity {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
};

// Switches the calling thread to `who` on construction (uid 0: fsuid/fsgid 0 with the thread's
// capabilities kept, which is how a non-root agent acts for root clients) and back on restore() (or destruction).
// Why all four steps: with CAP_DAC_OVERRIDE in the effective set setfsuid restricts nothing, and
// a non-root agent (ambient caps) keeps its effective set across setfsuid, since the kernel only
// drops fs capabilities when fsuid leaves 0.
class scoped_fs_identity {
public:
    explicit scoped_fs_identity(const client_identity& who);
    ~scoped_fs_identity();
    scoped_fs_identity(const scoped_fs_identity&) = delete;
    scoped_fs_identity& operator=(const scoped_fs_identity&) = delete;

    // Set when the switch failed; the thread is then already back (or restore() says not).
    const std::optional<op_error>& error() const noexcept { return error_; }

    // Puts the thread's identity and capabilities back, then checks that they are. False means
    // the thread is not what it was, and its worker must retire. Idempotent.
    bool restore() noexcept;

private:
    std::optional<op_error> error_;
    bool active_ = false;
    bool restored_ok_ = true;
    uid_t fsuid_ = 0;
    gid_t fsgid_ = 0;
    std::vector<gid_t> groups_;
    void* caps_ = nullptr; // cap_t of the thread before the switch
};

// The thread's current fsuid, fsgid and supplementary groups (for checks and tests).
client_identity current_fs_identity();

} // namespace nsagent
