// Per-thread fs identity with setfsuid/setfsgid, the raw setgroups syscall and libcap.
#include "fs_identity.hpp"

#include <sys/capability.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace nsagent {
namespace {

// The capabilities that bypass file permission checks. Dropped from the thread's effective set
// for the op; they stay permitted, so restore() can raise them again.
constexpr cap_value_t dac_caps[] = {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, CAP_CHOWN};

// glibc's setgroups() changes every thread of the process (it broadcasts like setuid); the
// system call itself changes only the caller's credentials.
int thread_setgroups(const std::vector<gid_t>& g)
{
    return static_cast<int>(::syscall(SYS_setgroups, g.size(), g.data()));
}

std::vector<gid_t> thread_groups()
{
    int n = ::getgroups(0, nullptr);
    std::vector<gid_t> g(n > 0 ? static_cast<std::size_t>(n) : 0);
    if (n > 0)
        g.resize(static_cast<std::size_t>(std::max(0, ::getgroups(n, g.data()))));
    std::sort(g.begin(), g.end());
    return g;
}

// setfsuid returns the previous value and never fails visibly; asking for an invalid id (-1)
// changes nothing and tells the current one.
uid_t fsuid_now() { return static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))); }
gid_t fsgid_now() { return static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))); }

} // namespace

client_identity current_fs_identity()
{
    return {fsuid_now(), fsgid_now(), thread_groups()};
}

scoped_fs_identity::scoped_fs_identity(const client_identity& who)
{
    fsuid_ = fsuid_now();
    fsgid_ = fsgid_now();
    groups_ = thread_groups();
    cap_t before = cap_get_proc(); // capget(0): the calling thread
    if (!before) {
        error_ = os_failure(errno, "capget before switching to the client's identity");
        return;
    }
    caps_ = before;
    active_ = true;

    // Groups and fsgid first: both need CAP_SETGID, which stays effective throughout.
    auto fail = [&](int err, const char* what) {
        error_ = os_failure(err, std::string(what) + " (switching to uid " + std::to_string(who.uid) + ")");
        restore();
    };
    if (thread_setgroups(who.groups) < 0) {
        fail(errno, "setgroups");
        return;
    }
    ::setfsgid(who.gid);
    ::setfsuid(who.uid);
    if (fsgid_now() != who.gid) {
        fail(EPERM, "setfsgid");
        return;
    }
    if (fsuid_now() != who.uid) {
        fail(EPERM, "setfsuid");
        return;
    }

    // Root keeps the capabilities root has; everyone else loses what bypasses permissions.
    if (who.uid == 0)
        return;
    cap_t without = cap_dup(before);
    if (!without) {
        fail(errno, "cap_dup");
        return;
    }
    cap_set_flag(without, CAP_EFFECTIVE, static_cast<int>(std::size(dac_caps)), dac_caps, CAP_CLEAR);
    int rc = cap_set_proc(without); // capset(0): this thread only (libpsx is not linked)
    int err = errno;
    cap_free(without);
    if (rc < 0) {
        fail(err, "capset dropping the DAC capabilities");
        return;
    }
}

bool scoped_fs_identity::restore() noexcept
{
    if (!active_)
        return restored_ok_;
    active_ = false;
    auto before = static_cast<cap_t>(caps_);
    // Ids first, capabilities last: setfsuid itself edits the effective set (fs capabilities
    // are dropped when fsuid leaves 0 and raised when it returns), so only a capset after it
    // leaves exactly the saved set. CAP_SETUID and CAP_SETGID were never dropped.
    bool ok = thread_setgroups(groups_) == 0;
    ::setfsgid(fsgid_);
    ::setfsuid(fsuid_);
    ok = cap_set_proc(before) == 0 && ok;
    // Check, do not trust: a thread that serves the next client must be exactly what it was.
    ok = ok && fsuid_now() == fsuid_ && fsgid_now() == fsgid_ && thread_groups() == groups_;
    if (cap_t now = cap_get_proc()) {
        ok = ok && cap_compare(now, before) == 0;
        cap_free(now);
    } else {
        ok = false;
    }
    cap_free(before);
    caps_ = nullptr;
    restored_ok_ = ok;
    return ok;
}

scoped_fs_identity::~scoped_fs_identity()
{
    restore();
}

} // namespace nsagent
