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

} // namespace nsagent
