// The nsagent error category and the errno naming used in every os_error reply.
#include "nsagent/error.hpp"

#include <cstring>
#include <string>

namespace nsagent {
namespace {

constexpr std::string_view names[] = {
    "",          "bad_request",  "unknown_op", "permission_denied", "ns_not_found",
    "ns_mismatch", "ns_type_mismatch", "busy", "timeout",         "cancelled",
    "too_large", "shutting_down", "os_error",  "internal",
};

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "nsagent"; }
    std::string message(int ev) const override
    {
        return std::string(to_string(static_cast<errc>(ev)));
    }
};

} // namespace

const boost::system::error_category& agent_category() noexcept
{
    static const category c;
    return c;
}

boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), agent_category()};
}

std::string_view to_string(errc e) noexcept
{
    auto i = static_cast<std::size_t>(e);
    return i > 0 && i < std::size(names) ? names[i] : "internal";
}

std::optional<errc> errc_from_string(std::string_view s) noexcept
{
    for (std::size_t i = 1; i < std::size(names); ++i)
        if (names[i] == s)
            return static_cast<errc>(i);
    return std::nullopt;
}

std::string errno_name(int err)
{
    // glibc >= 2.32 names errno values; no hand-kept table to rot.
    if (const char* n = ::strerrorname_np(err))
        return n;
    return "E" + std::to_string(err);
}

errc wire_code(const boost::system::error_code& ec) noexcept
{
    if (ec.category() == agent_category())
        return static_cast<errc>(ec.value());
    return errc::os_error;
}

op_error os_failure(int err, std::string what)
{
    std::string msg = std::move(what);
    msg += ": ";
    msg += errno_name(err);
    msg += " (";
    msg += std::strerror(err);
    msg += ')';
    return {boost::system::error_code(err, boost::system::system_category()), std::move(msg)};
}

op_error agent_failure(errc e, std::string message)
{
    return {make_error_code(e), std::move(message)};
}

} // namespace nsagent
