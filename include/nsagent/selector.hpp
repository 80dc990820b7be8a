// How a client names a namespace: by /run/netns name, by pid, by nsfs path, or by a passed fd.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nsagent {

// The namespace types nsagent serves. A multi-threaded process can never join a user namespace,
// and the other types have no ops, so these two are the whole set.
enum class ns_type : std::uint8_t { net, mnt };

std::string_view to_string(ns_type t) noexcept;
std::optional<ns_type> ns_type_from_string(std::string_view s) noexcept;
// The CLONE_NEW* flag for setns() and NS_GET_NSTYPE.
int clone_flag(ns_type t) noexcept;
std::optional<ns_type> ns_type_from_clone_flag(int flag) noexcept;

// One selector, as in docs/protocol.md "Selector". Exactly one of the four forms is set.
struct selector {
    enum class form : std::uint8_t { name, pid, path, fd };

    std::optional<ns_type> type; // empty: taken from the file (path and fd forms only)
    form by = form::name;
    std::string text;            // name or path
    int number = 0;              // pid, or fd index among the request's passed fds
    std::optional<std::uint64_t> ino; // guard: the namespace must have this inode

    static selector by_name(std::string name) { return {ns_type::net, form::name, std::move(name), 0, {}}; }
    static selector by_pid(ns_type t, int pid) { return {t, form::pid, {}, pid, {}}; }
    static selector by_path(std::optional<ns_type> t, std::string p) { return {t, form::path, std::move(p), 0, {}}; }
    static selector by_fd(std::optional<ns_type> t, int index) { return {t, form::fd, {}, index, {}}; }
};

// Parses a command-line namespace argument: "NAME" (/run/netns/NAME, net only), "pid:PID", or a
// path (anything with a '/'). `type` comes from the command; a pid needs one. The error says why.
std::optional<selector> parse_selector_arg(std::string_view text, std::optional<ns_type> type, std::string& error);

// Human form used in messages and logs: "net name=blue", "mnt pid=1234", "net path=/proc/1/ns/net".
std::string describe(const selector& s);

} // namespace nsagent
