// nsctl's port forwarder: accepts local TCP connections and, for each, asks the agent for a
// socket connected from inside a network namespace (net.connect, fd passed), then relays bytes
// both ways with splice(2), half-close preserved. One event loop, no thread per connection.
#pragma once

#include "nsagent/selector.hpp"

#include <string>

namespace nsagent {

struct forward_options {
    std::string agent_socket;
    selector ns;
    std::string listen = "127.0.0.1:0"; // host:port in nsctl's own namespace
    std::string to;                     // host:port as seen inside the namespace
    int connect_timeout_ms = 5000;
};

// Runs until SIGINT or SIGTERM; prints "forwarding LISTEN -> NS TO" on stdout once listening.
// Returns a process exit status: 0 after a clean stop, 1 on an error (printed on stderr),
// 3 when the agent cannot be reached.
int run_forwarder(const forward_options& opt);

} // namespace nsagent
