// nsctl pkt capture / pkt analyze: drive pkt.capture (its event frames, the pcap pipe, Ctrl-C as
// agent.cancel) and pkt.analyze, and print the engine's analysis as a flow table.
#pragma once

#include "nsagent/selector.hpp"

#include <cstdint>
#include <string>

namespace nsagent {

struct analysis_view_options {
    std::string agent_socket;
    int top = 10;
    std::string order = "bytes";
    std::string engine; // empty: the agent's default
    bool bidirectional = false;
    bool json_out = false;
};

struct capture_options : analysis_view_options {
    selector ns;
    std::string ifname;
    std::uint64_t count = 0;   // 0: until stopped
    double duration_s = 0;     // 0: until stopped
    std::string filter;        // tcpdump expression
    std::string write_to;      // "": discard the pcap; "-": stdout; else a file
    int snaplen = 262144;
};

// Runs a capture until its count or duration, or Ctrl-C (which cancels it and still prints
// the analysis so far). Returns the exit status: 0, 1 (the op failed), 3 (agent unreachable).
int run_capture(const capture_options& o);

struct analyze_options : analysis_view_options {
    std::string file;
};

int run_analyze(const analyze_options& o);

} // namespace nsagent
