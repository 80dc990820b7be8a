// Capability reduction with libcap.
#include "capabilities.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace nsagent {
namespace {

constexpr cap_value_t kept[] = {
    CAP_SYS_ADMIN,        // setns into namespaces; mount-namespace setns
    CAP_SYS_CHROOT,       // setns(CLONE_NEWNS) also requires it
    CAP_SYS_PTRACE,       // open other users' /proc/PID/ns/* and pidfds of their processes
    CAP_NET_ADMIN,        // netlink changes: links, addresses, routes, net sysctls
    CAP_NET_RAW,          // packet capture sockets (pkt.capture)
    CAP_NET_BIND_SERVICE, // net.socket may bind ports below 1024 inside a namespace
    CAP_DAC_OVERRIDE,     // fs ops on files whatever their mode, as root inside the container
    CAP_DAC_READ_SEARCH,  // ... and directories
    CAP_FOWNER,           // chmod and utimes on files the agent does not own
    CAP_FSETID,           // keep setuid/setgid bits on chmod/chown as asked
    CAP_CHOWN,            // fs.chown, and keeping an atomically rewritten file's owner
    CAP_SETUID,           // per-op identity: setfsuid for non-root clients
    CAP_SETGID,           // per-op identity: setfsgid and setgroups
};

struct cap_deleter {
    void operator()(cap_t c) const noexcept { cap_free(c); }
};
using cap_ptr = std::unique_ptr<std::remove_pointer_t<cap_t>, cap_deleter>;

} // namespace

std::span<const cap_value_t> agent_capabilities() noexcept
{
    return kept;
}

std::string restrict_capabilities()
{
    std::string warning;
    cap_ptr now(cap_get_proc());
    cap_ptr want(cap_init());
    for (cap_value_t c : kept) {
        cap_flag_value_t have = CAP_CLEAR;
        cap_get_flag(now.get(), c, CAP_PERMITTED, &have);
        if (have != CAP_SET) {
            warning += std::string(warning.empty() ? "" : ", ") + cap_to_name(c);
            continue;
        }
        cap_set_flag(want.get(), CAP_PERMITTED, 1, &c, CAP_SET);
        cap_set_flag(want.get(), CAP_EFFECTIVE, 1, &c, CAP_SET);
    }
    if (!warning.empty())
        warning = "started without " + warning + "; the ops that need them will fail with EPERM";

    // Capabilities the kernel has and the agent does not keep.
    std::vector<cap_value_t> others;
    for (cap_value_t c = 0; c <= cap_max_bits() - 1; ++c)
        if (std::find(std::begin(kept), std::end(kept), c) == std::end(kept) && CAP_IS_SUPPORTED(c))
            others.push_back(c);
    // The bounding set first, while CAP_SETPCAP is still effective.
    cap_flag_value_t setpcap = CAP_CLEAR;
    cap_get_flag(now.get(), CAP_SETPCAP, CAP_EFFECTIVE, &setpcap);
    if (setpcap == CAP_SET) {
        for (cap_value_t c : others)
            cap_drop_bound(c);
    } else {
        // Started as a non-root user (User= with ambient capabilities): the service manager
        // already cut the bounding set (CapabilityBoundingSet=) if anything did.
        if (std::any_of(others.begin(), others.end(), [](cap_value_t c) { return cap_get_bound(c) == 1; }))
            warning += std::string(warning.empty() ? "" : "; ") +
                       "no CAP_SETPCAP: the bounding set stays as given, wider than needed";
    }
    // No ambient capabilities for anything the agent runs (it runs nothing, and must not start).
    cap_reset_ambient();
    if (cap_set_proc(want.get()) < 0)
        warning += std::string(warning.empty() ? "" : "; ") + "cap_set_proc: " + std::strerror(errno);
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return warning;
}

} // namespace nsagent
