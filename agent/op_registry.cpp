// The op catalogue.
#include "op_registry.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace nsagent {

std::string_view to_string(op_class c) noexcept
{
    switch (c) {
    case op_class::read: return "read";
    case op_class::write: return "write";
    case op_class::fd: return "fd";
    case op_class::capture: return "capture";
    }
    return "read";
}

void op_registry::add(const op_spec& s)
{
    auto it = std::lower_bound(ops_.begin(), ops_.end(), s.name,
                               [](const op_spec& a, std::string_view n) { return a.name < n; });
    if (it != ops_.end() && it->name == s.name)
        throw std::logic_error("op registered twice: " + std::string(s.name));
    ops_.insert(it, s);
}

const op_spec* op_registry::find(std::string_view name) const noexcept
{
    auto it = std::lower_bound(ops_.begin(), ops_.end(), name,
                               [](const op_spec& a, std::string_view n) { return a.name < n; });
    return it != ops_.end() && it->name == name ? &*it : nullptr;
}

boost::system::result<std::int64_t, op_error> arg_int(const op_context& c, std::string_view key,
                                                      std::optional<std::int64_t> fallback)
{
    auto* v = c.req.args.if_contains(key);
    if (!v || v->is_null()) {
        if (fallback)
            return *fallback;
        return agent_failure(errc::bad_request, "missing \"args." + std::string(key) + "\"");
    }
    if (!v->is_int64())
        return agent_failure(errc::bad_request, "\"args." + std::string(key) + "\" must be an integer");
    return v->get_int64();
}

boost::system::result<std::string, op_error> arg_string(const op_context& c, std::string_view key)
{
    auto* v = c.req.args.if_contains(key);
    if (!v || !v->is_string())
        return agent_failure(errc::bad_request, "\"args." + std::string(key) + "\" must be a string");
    return std::string(v->get_string());
}

} // namespace nsagent
