// Path resolution for filesystem ops on a mount-namespace worker: every client path is resolved
// by openat2(2) under the namespace's root with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, so
// neither "..", absolute symlinks nor /proc/self/root-style magic links lead out of it.
#pragma once

#include "nsagent/error.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <sys/types.h>

namespace nsagent {

// bad_request unless `path` is absolute and free of NUL bytes.
boost::system::result<std::string, op_error> checked_path(std::string_view path);

// Opens `path` (absolute, in the calling thread's root) with `flags` | O_CLOEXEC | O_NOCTTY, and
// O_NONBLOCK so that a FIFO with no writer never blocks the worker. `follow`: whether a final
// symlink is followed (false adds O_NOFOLLOW; with O_PATH that opens the link itself).
// Errors: os_error naming the path.
boost::system::result<unique_fd, op_error> open_in_root(const std::string& path, int flags, mode_t mode = 0,
                                                        bool follow = true);

// The parent directory of `path` (opened O_PATH | O_DIRECTORY) and the last component.
struct parent_and_name {
    unique_fd dir;
    std::string name;
};
boost::system::result<parent_and_name, op_error> open_parent(const std::string& path);

} // namespace nsagent
