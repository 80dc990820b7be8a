// Namespace identity and selector resolution.
#include "ns_id.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace nsagent {
namespace {

op_error not_found(int err, const std::string& what)
{
    auto e = os_failure(err, what);
    e.code = make_error_code(errc::ns_not_found);
    return e;
}

} // namespace

std::string to_string(const ns_id& id)
{
    return std::string(to_string(id.type)) + ":[" + std::to_string(id.ino) + "]";
}

boost::system::result<ns_id, op_error> identify(int fd)
{
    int t = ::ioctl(fd, NS_GET_NSTYPE);
    if (t < 0) {
        if (errno == ENOTTY || errno == EINVAL)
            return agent_failure(errc::bad_request, "not a namespace file (NS_GET_NSTYPE refused it)");
        return os_failure(errno, "ioctl NS_GET_NSTYPE");
    }
    auto type = ns_type_from_clone_flag(t);
    if (!type)
        return agent_failure(errc::bad_request, "a namespace of a type nsagent does not serve (only net and mnt)");
    struct stat st {};
    if (::fstat(fd, &st) < 0)
        return os_failure(errno, "fstat");
    return ns_id{*type, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

boost::system::result<ns_id, op_error> identify_path(const std::string& path, ns_type type)
{
    struct stat st {};
    if (::stat(path.c_str(), &st) < 0)
        return os_failure(errno, "stat " + path);
    return ns_id{type, static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

boost::system::result<ns_handle, op_error> resolve(const selector& s, std::span<const unique_fd> passed)
{
    ns_handle h;
    std::string what;
    switch (s.by) {
    case selector::form::name:
        what = "/run/netns/" + s.text;
        h.fd.reset(::open(what.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!h.fd)
            return errno == ENOENT ? not_found(errno, "open " + what) : os_failure(errno, "open " + what);
        break;
    case selector::form::path:
        what = s.text;
        // O_NONBLOCK: a path is client input; a FIFO there must not block the I/O thread.
        h.fd.reset(::open(what.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
        if (!h.fd)
            return errno == ENOENT ? not_found(errno, "open " + what) : os_failure(errno, "open " + what);
        break;
    case selector::form::pid: {
        // pidfd first, then the ns file, then check the pidfd is still alive: had the pid been
        // reused in between, the pidfd would have seen the old process exit.
        h.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, s.number, 0)));
        if (!h.pidfd)
            return errno == ESRCH ? not_found(errno, "pidfd_open " + std::to_string(s.number))
                                  : os_failure(errno, "pidfd_open " + std::to_string(s.number));
        what = "/proc/" + std::to_string(s.number) + "/ns/" + std::string(to_string(*s.type));
        h.fd.reset(::open(what.c_str(), O_RDONLY | O_CLOEXEC));
        if (!h.fd)
            return errno == ENOENT || errno == ESRCH ? not_found(errno, "open " + what)
                                                     : os_failure(errno, "open " + what);
        pollfd p{h.pidfd.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) > 0)
            return agent_failure(errc::ns_not_found, "process " + std::to_string(s.number) + " exited");
        break;
    }
    case selector::form::fd:
        if (s.number < 0 || static_cast<std::size_t>(s.number) >= passed.size())
            return agent_failure(errc::bad_request, "selector names passed fd " + std::to_string(s.number) +
                                                        " but the request passed " + std::to_string(passed.size()));
        what = "passed fd " + std::to_string(s.number);
        h.fd.reset(::fcntl(passed[s.number].get(), F_DUPFD_CLOEXEC, 3));
        if (!h.fd)
            return os_failure(errno, "dup " + what);
        break;
    }

    auto id = identify(h.fd.get());
    if (!id) {
        auto e = id.error();
        e.message = what + ": " + e.message;
        // A plain file under /run/netns is a name whose namespace is not mounted on it: `ip
        // netns add` creates the file before it bind-mounts the namespace, and `ip netns del`
        // unmounts before it unlinks. For that name there is no namespace (yet, or any more).
        if (s.by == selector::form::name && e.code == make_error_code(errc::bad_request))
            return agent_failure(errc::ns_not_found, what + " names no namespace now (a plain file: being added or "
                                                            "deleted by ip netns?)");
        return e;
    }
    if (s.type && id->type != *s.type)
        return agent_failure(errc::ns_type_mismatch, what + " is a " + std::string(to_string(id->type)) +
                                                         " namespace, not " + std::string(to_string(*s.type)));
    if (s.ino && *s.ino != id->ino)
        return agent_failure(errc::ns_mismatch, what + " has inode " + std::to_string(id->ino) + ", not " +
                                                    std::to_string(*s.ino));
    h.id = *id;
    return h;
}

} // namespace nsagent
