// Message context for a request: which op, which namespace.
#include "pending_request.hpp"

namespace nsagent {

std::string pending_request::where() const
{
    std::string w = req.op;
    if (req.ns) {
        w += ' ';
        w += describe(*req.ns);
    }
    if (ns) {
        w += " (";
        w += to_string(*ns);
        w += ')';
    }
    return w;
}

std::string final_frame(const pending_request& r, const op_result& res, std::size_t fds)
{
    if (res)
        return ok_frame(r.req.id, *res, fds);
    op_error e = res.error();
    e.message = r.where() + ": " + e.message;
    return error_frame(r.req.id, e);
}

} // namespace nsagent
