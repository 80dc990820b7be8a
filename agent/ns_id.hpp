// Namespace identity (type, st_dev, st_ino of its nsfs file) and selector resolution.
#pragma once

#include "nsagent/error.hpp"
#include "nsagent/selector.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace nsagent {

// Selectors that name the same namespace resolve to equal ns_ids, whatever their text.
struct ns_id {
    ns_type type = ns_type::net;
    std::uint64_t dev = 0;
    std::uint64_t ino = 0;

    friend bool operator==(const ns_id&, const ns_id&) = default;
};

struct ns_id_hash {
    std::size_t operator()(const ns_id& id) const noexcept
    {
        return std::hash<std::uint64_t>{}(id.ino * 31 + id.dev) ^ static_cast<std::size_t>(id.type);
    }
};

// "net:[4026532291]", the spelling of the /proc/PID/ns links.
std::string to_string(const ns_id& id);

// An open namespace: an fd that keeps it alive, and its identity.
struct ns_handle {
    ns_id id;
    unique_fd fd;
    unique_fd pidfd; // set for pid selectors: the process that named it
};

// Identifies an open fd. bad_request if it is not a namespace file (NS_GET_NSTYPE fails), and
// also if it is a namespace of a type nsagent does not serve.
boost::system::result<ns_id, op_error> identify(int fd);

// The identity of the namespace a path refers to, or of the calling thread's own one when
// `path` is "/proc/thread-self/ns/<type>". stat() errors come back as os_error.
boost::system::result<ns_id, op_error> identify_path(const std::string& path, ns_type type);

// Opens the namespace a selector names. `passed` are the fds that came with the request.
// Errors: ns_not_found (no such name, path or process), ns_type_mismatch, ns_mismatch (the ino
// guard), bad_request (not a namespace file, fd index out of range), os_error otherwise.
// Runs only cheap syscalls (open, fstat, ioctl, pidfd_open, poll with no wait).
boost::system::result<ns_handle, op_error> resolve(const selector& s, std::span<const unique_fd> passed);

} // namespace nsagent
