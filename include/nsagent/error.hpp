// Wire error codes of the nsagent protocol, as an error_code category (Beast's error.hpp pattern).
#pragma once

#include <boost/system/error_code.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace nsagent {

// Every final error frame carries exactly one of these codes (docs/protocol.md, "Error codes").
enum class errc {
    bad_request = 1,
    unknown_op,
    permission_denied,
    ns_not_found,
    ns_mismatch,
    ns_type_mismatch,
    busy,
    timeout,
    cancelled,
    too_large,
    shutting_down,
    os_error,
    internal,
};

const boost::system::error_category& agent_category() noexcept;
boost::system::error_code make_error_code(errc e) noexcept;

// The code's wire spelling, e.g. "ns_not_found".
std::string_view to_string(errc e) noexcept;
std::optional<errc> errc_from_string(std::string_view s) noexcept;

// "ENOENT" for ENOENT; "E<n>" for a value glibc does not name.
std::string errno_name(int err);

// The wire code an error_code maps to: our own category maps to itself, any OS error to os_error.
errc wire_code(const boost::system::error_code& ec) noexcept;

// A failed operation as a value: the code and the human text that names what failed.
// The dispatcher prefixes the op and the namespace, so `message` says only the cause.
struct op_error {
    boost::system::error_code code;
    std::string message;
};

// An os_error from errno, e.g. os_failure(ENOENT, "open /run/netns/blue").
op_error os_failure(int err, std::string what);
op_error agent_failure(errc e, std::string message);

} // namespace nsagent

template <>
struct boost::system::is_error_code_enum<nsagent::errc> : std::true_type {};
