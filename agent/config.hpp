// nsagentd's configuration: defaults, and the JSON file that overrides them.
#pragma once

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace nsagent {

// One access rule (docs/protocol.md "Access policy"). The first rule matching a client applies.
struct policy_rule {
    std::optional<std::uint32_t> uid;  // "uid" or "user"
    std::optional<std::uint32_t> gid;  // "gid" or "group": the primary or any supplementary group
    std::set<std::string> allow;       // op classes: read, write, fd, capture
    std::vector<std::string> namespaces; // "name:GLOB", "owner:self"; empty: any but the host's
    bool host = false;                 // may reach the agent's own (host) namespaces
    bool fs_as_agent = false;          // "fs_identity": "agent": fs ops run with the agent's identity,
                                       // not the client's ("client", the default)
    std::string text;                  // the rule as written, for messages and logs
};

// The ordered rules; the first that matches a client applies.
using policy = std::vector<policy_rule>;

// Every knob, with its default. docs/protocol.md and the README list them.
struct config {
    std::string socket_path = "/run/nsagent/nsagent.sock";
    std::uint32_t queue_depth = 64;               // per worker; a full queue answers busy
    std::uint32_t default_timeout_ms = 10000;     // when a request gives no timeout_ms
    std::uint32_t max_workers = 1024;             // then the LRU idle worker retires, or busy
    std::uint32_t idle_timeout_s = 300;           // an idle worker retires after this
    std::size_t max_request_bytes = 1 << 20;      // a longer line gets too_large, then close
    std::uint32_t max_inflight_per_connection = 256; // then the connection is not read
    std::size_t max_unsent_bytes = 8 << 20;       // replies queued for a slow reader; then not read
    std::size_t max_inflight_bytes = 16 << 20;    // request bytes in flight per connection; then not read
    std::uint32_t drain_timeout_ms = 5000;        // SIGTERM: finish in-flight work until this
    std::uint32_t max_connections = 1024;         // more are answered busy and closed
    std::uint32_t partial_line_timeout_ms = 10000; // a half-sent line older than this closes the connection
    std::size_t worker_stack_kib = 256;           // pinned workers need little stack
    std::uint32_t worker_spin_us = 50;            // a worker that ran out of work waits this long awake; 0: off
    std::string metrics_listen;                   // "127.0.0.1:9477": serve /metrics over HTTP; empty: off
    std::size_t fs_max_read_bytes = 1 << 20;      // fs.read length cap (base64 makes it 4/3 on the wire)
    std::uint32_t max_streams = 8;                // pkt.capture and pkt.analyze running at once; then busy
    std::string pkt_engine = "auto";              // the default engine: "cpu", "cuda" or "auto"
    std::uint32_t gpu_min_batch = 65536;          // auto: a batch this large or larger goes to the GPU
    std::uint32_t pkt_batch = 65536;              // frames the engine takes at a time (and the GPU's buffer size)
    std::string rss_key = "default";              // 80 hex digits, "default" (the verification suite's) or "symmetric"
    nsagent::policy policy;                       // for clients other than uid 0 (always allowed)
    std::string audit = "syslog";                 // mutations and fds handed out: "syslog", a file path, or "off"
};

// Reads `path` over the defaults. A missing file means defaults, unless `must_exist`.
// Errors (unreadable, not JSON, unknown key, wrong type, out of range) name the file and key.
boost::system::result<config, std::string> load_config(const std::string& path, bool must_exist);

} // namespace nsagent
