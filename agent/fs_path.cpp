// openat2-based path resolution inside a mount namespace.
#include "fs_path.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace nsagent {

boost::system::result<std::string, op_error> checked_path(std::string_view path)
{
    if (path.empty() || path.front() != '/')
        return agent_failure(errc::bad_request, "a path must be absolute, in the namespace: \"" + std::string(path) + "\"");
    if (path.find('\0') != std::string_view::npos)
        return agent_failure(errc::bad_request, "a path must not contain NUL bytes");
    return std::string(path);
}

boost::system::result<unique_fd, op_error> open_in_root(const std::string& path, int flags, mode_t mode, bool follow)
{
    // The worker's root is the namespace's root (setns(CLONE_NEWNS) set it). Resolving relative
    // to it with RESOLVE_IN_ROOT treats it as "/" for "..", absolute symlinks and all.
    unique_fd root(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root)
        return os_failure(errno, "open /");
    std::string rel = path.substr(1);
    if (rel.empty())
        rel = ".";
    open_how how{};
    // openat2 is strict: with O_PATH only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC may be set.
    int extra = (flags & O_PATH) ? O_CLOEXEC : O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
    how.flags = static_cast<std::uint64_t>(flags | extra | (follow ? 0 : O_NOFOLLOW));
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd;
    do
        fd = ::syscall(SYS_openat2, root.get(), rel.c_str(), &how, sizeof how);
    while (fd < 0 && errno == EAGAIN); // RESOLVE_IN_ROOT may ask to retry after a racing rename
    if (fd < 0)
        return os_failure(errno, "open " + path);
    return unique_fd(static_cast<int>(fd));
}

boost::system::result<parent_and_name, op_error> open_parent(const std::string& path)
{
    auto slash = path.find_last_of('/');
    std::string name = path.substr(slash + 1);
    if (name.empty() || name == "." || name == "..")
        return agent_failure(errc::bad_request, "\"" + path + "\" does not name an entry in a directory");
    auto dir = open_in_root(slash == 0 ? "/" : path.substr(0, slash), O_PATH | O_DIRECTORY);
    if (!dir)
        return dir.error();
    return parent_and_name{std::move(*dir), std::move(name)};
}

} // namespace nsagent
