// The agent's least privilege: the exact capability set its ops need, applied at start before
// any thread exists (capabilities are per thread; threads inherit their creator's).
#pragma once

#include <sys/capability.h>

#include <span>
#include <string>

namespace nsagent {

// Every capability the agent keeps, each for a reason (see the .cpp and the README).
std::span<const cap_value_t> agent_capabilities() noexcept;

// Reduces the process to agent_capabilities(): permitted and effective to that set (intersected
// with what it has, so a less privileged start still works, with a logged warning), inheritable
// and ambient empty, the bounding set to that set where CAP_SETPCAP allows, and
// PR_SET_NO_NEW_PRIVS. Call it in main() before any thread is created. Returns "" or a warning.
std::string restrict_capabilities();

} // namespace nsagent
