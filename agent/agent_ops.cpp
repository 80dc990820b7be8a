// agent.*: handshake, liveness, statistics and cancellation, which run on the I/O thread, and
// agent.bind, which proves its namespace's worker first.
#include "agent.hpp"
#include "connection.hpp"
#include "op_registry.hpp"

#include <boost/json/array.hpp>

#ifndef NSAGENT_VERSION
#define NSAGENT_VERSION "0.0.0"
#endif

namespace json = boost::json;

namespace nsagent {
namespace {

op_result hello(op_context& c)
{
    json::array ops;
    for (auto& s : c.host->ops().all())
        ops.push_back(json::object{{"name", s.name}, {"class", to_string(s.cls)}});
    return json::object{{"protocol", protocol_version}, {"version", NSAGENT_VERSION}, {"ops", std::move(ops)}};
}

op_result ping(op_context&)
{
    return json::object{{"pong", true}};
}

op_result stats(op_context& c)
{
    return c.host->stats();
}

op_result metrics(op_context& c)
{
    return json::object{{"content_type", "text/plain; version=0.0.4"}, {"text", c.host->metrics_text()}};
}

op_result cancel(op_context& c)
{
    auto* id = c.req.args.if_contains("id");
    if (!id || !(id->is_int64() || id->is_uint64() || id->is_string()))
        return agent_failure(errc::bad_request, "\"args.id\" must be the id of a request on this connection");
    auto target = c.conn->find(*id);
    bool cancelled = target && target.get() != nullptr && c.host->cancel(target);
    return json::object{{"cancelled", cancelled}};
}

// agent.bind's worker half: runs on the namespace's worker, so the bind is answered only once a
// worker serves the namespace. The handover happens in bind_then, on the I/O thread.
op_result bind_here(op_context& c)
{
    return json::object{{"bound", to_string(c.worker->target)}, {"tid", c.worker->tid}};
}

void bind_then(agent& a, const std::shared_ptr<pending_request>& r)
{
    a.bind_connection(r);
}

} // namespace

void register_agent_ops(op_registry& r)
{
    r.add({"agent.hello", op_class::read, op_site::loop, ns_need::none, {}, &hello});
    r.add({"agent.ping", op_class::read, op_site::loop, ns_need::none, {}, &ping});
    r.add({"agent.stats", op_class::read, op_site::loop, ns_need::none, {}, &stats});
    r.add({"agent.metrics", op_class::read, op_site::loop, ns_need::none, {}, &metrics});
    r.add({"agent.cancel", op_class::read, op_site::loop, ns_need::none, {}, &cancel});
    r.add({"agent.bind", op_class::read, op_site::worker, ns_need::required, {}, &bind_here, &bind_then});
}

} // namespace nsagent
