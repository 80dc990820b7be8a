// The op catalogue: each op is one function plus one registration line in its domain's file
// (agent_ops.cpp, ns_ops.cpp, ...). The dispatcher only looks ops up here.
#pragma once

#include "config.hpp"
#include "ns_id.hpp"

#include "nsagent/error.hpp"
#include "nsagent/protocol.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace nsagent {

class agent;
class connection;
class netlink_socket;

// The access class of an op (policy rules grant classes; agent.hello lists them).
enum class op_class { read, write, fd, capture };
std::string_view to_string(op_class c) noexcept;

// Where an op runs: on the agent's I/O thread (cheap, touches agent state) or on the pinned
// worker of its namespace.
enum class op_site { loop, worker };

// Whether an op takes a namespace selector.
enum class ns_need { none, required };

// What a pinned worker knows about itself. Valid on that worker's thread.
struct worker_env {
    const config* cfg = nullptr; // the agent's configuration (read-only)
    ns_id target;
    int procfs_dir = -1; // O_PATH fd of the thread's host /proc/<pid>/task/<tid>, opened before setns
    pid_t tid = 0;
    std::shared_ptr<netlink_socket> rtnl; // net workers: opened on first use, then reused
    std::shared_ptr<netlink_socket> diag; // NETLINK_SOCK_DIAG, likewise
};

// Everything an op may use. Which pointers are set depends on the op's site.
struct op_context {
    const request& req;
    std::span<unique_fd> fds;           // the fds passed with the request, in order
    const ns_id* ns = nullptr;          // the resolved namespace (ns_need::required)
    worker_env* worker = nullptr;       // op_site::worker only
    agent* host = nullptr;              // op_site::loop only
    connection* conn = nullptr;         // op_site::loop only
    std::vector<unique_fd> reply_fds;   // sent with the success frame (SCM_RIGHTS)
    std::shared_ptr<void> handoff;      // what a worker half leaves for its loop half (pkt.capture's handle)
};

using op_result = boost::system::result<boost::json::value, op_error>;
using op_fn = op_result (*)(op_context&);

class pending_request;
// The second half of an op whose worker part only prepares (creates sockets inside the
// namespace) and whose waiting belongs on the I/O thread, so that a slow peer never holds the
// namespace's worker. Called on the I/O thread after the worker part succeeded, with the
// request's result and reply fds as the worker left them; it must end in agent::finish.
using loop_fn = void (*)(agent& a, const std::shared_ptr<pending_request>& r);

struct op_spec {
    std::string_view name;
    op_class cls;
    op_site site;
    ns_need ns;
    std::optional<ns_type> type; // the namespace type the op needs; empty: either
    op_fn fn;
    loop_fn then = nullptr;      // optional: continues on the I/O thread (see loop_fn)
    // fs ops: checked against the client's permissions (fs_identity.hpp) unless the client is
    // root or its rule says "fs_identity": "agent".
    bool as_client = false;
};

class op_registry {
public:
    // Adds an op; a duplicate name is a programming error and throws.
    void add(const op_spec& s);
    const op_spec* find(std::string_view name) const noexcept;
    std::span<const op_spec> all() const noexcept { return ops_; }

private:
    std::vector<op_spec> ops_; // few dozen entries: a sorted vector beats a map
};

// One per domain file.
void register_agent_ops(op_registry& r);
void register_ns_ops(op_registry& r);
void register_net_ops(op_registry& r);
void register_net_connect_ops(op_registry& r);
void register_fs_ops(op_registry& r);
void register_pkt_ops(op_registry& r);
// Test builds only (nsagentd-test): fault and probe ops that release binaries must not have.
void register_test_ops(op_registry& r);

// Argument helpers for ops: bad_request naming the key when absent or of the wrong type.
boost::system::result<std::int64_t, op_error> arg_int(const op_context& c, std::string_view key,
                                                      std::optional<std::int64_t> fallback = std::nullopt);
boost::system::result<std::string, op_error> arg_string(const op_context& c, std::string_view key);

} // namespace nsagent
