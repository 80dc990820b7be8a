// Selector naming and the ns_type <-> CLONE_NEW* mapping.
#include "nsagent/selector.hpp"

#include <sched.h>

namespace nsagent {

std::string_view to_string(ns_type t) noexcept
{
    return t == ns_type::net ? "net" : "mnt";
}

std::optional<ns_type> ns_type_from_string(std::string_view s) noexcept
{
    if (s == "net")
        return ns_type::net;
    if (s == "mnt")
        return ns_type::mnt;
    return std::nullopt;
}

int clone_flag(ns_type t) noexcept
{
    return t == ns_type::net ? CLONE_NEWNET : CLONE_NEWNS;
}

std::optional<ns_type> ns_type_from_clone_flag(int flag) noexcept
{
    if (flag == CLONE_NEWNET)
        return ns_type::net;
    if (flag == CLONE_NEWNS)
        return ns_type::mnt;
    return std::nullopt;
}

std::optional<selector> parse_selector_arg(std::string_view text, std::optional<ns_type> type, std::string& error)
{
    if (text.empty()) {
        error = "empty namespace argument";
        return std::nullopt;
    }
    if (text.substr(0, 4) == "pid:") {
        auto digits = text.substr(4);
        int pid = 0;
        for (char c : digits) {
            if (c < '0' || c > '9' || pid > 100000000) {
                error = "\"" + std::string(text) + "\": pid:PID needs a decimal process id";
                return std::nullopt;
            }
            pid = pid * 10 + (c - '0');
        }
        if (digits.empty() || pid <= 0) {
            error = "\"" + std::string(text) + "\": pid:PID needs a positive process id";
            return std::nullopt;
        }
        if (!type) {
            error = "\"" + std::string(text) + "\": say which namespace of the process (--type net|mnt)";
            return std::nullopt;
        }
        return selector::by_pid(*type, pid);
    }
    if (text.find('/') != std::string_view::npos) {
        if (text.front() != '/') {
            error = "\"" + std::string(text) + "\": a namespace path must be absolute";
            return std::nullopt;
        }
        return selector::by_path(type, std::string(text));
    }
    if (type && *type != ns_type::net) {
        error = "\"" + std::string(text) + "\": a NAME means /run/netns/NAME, which holds network namespaces only; "
                "name a mount namespace as pid:PID or by the path of its ns file (/proc/PID/ns/mnt)";
        return std::nullopt;
    }
    if (text == "." || text == "..") {
        error = "\"" + std::string(text) + "\" is not a namespace name";
        return std::nullopt;
    }
    return selector::by_name(std::string(text));
}

std::string describe(const selector& s)
{
    std::string out = s.type ? std::string(to_string(*s.type)) : std::string("ns");
    switch (s.by) {
    case selector::form::name: out += " name=" + s.text; break;
    case selector::form::pid: out += " pid=" + std::to_string(s.number); break;
    case selector::form::path: out += " path=" + s.text; break;
    case selector::form::fd: out += " fd=" + std::to_string(s.number); break;
    }
    if (s.ino)
        out += " ino=" + std::to_string(*s.ino);
    return out;
}

} // namespace nsagent
