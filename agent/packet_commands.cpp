#include "packet_commands.hpp"
#include "text_format.hpp"

#include "nsagent/client.hpp"
#include "nsagent/protocol.hpp"

#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace json = boost::json;

namespace nsagent {
namespace {

constexpr int exit_ok = 0, exit_op_error = 1, exit_unreachable = 3;

int signal_pipe[2] = {-1, -1};

void on_signal(int)
{
    char c = 1;
    [[maybe_unused]] auto n = ::write(signal_pipe[1], &c, 1);
}

std::uint64_t num(const json::object& o, const char* k)
{
    auto* v = o.if_contains(k);
    return v ? v->to_number<std::uint64_t>() : 0;
}

std::string tcp_flag_letters(unsigned f)
{
    static const char letters[] = "FSRPAUEC";
    std::string s;
    for (int i = 0; i < 8; ++i)
        if (f >> i & 1)
            s += letters[i];
    return s.empty() ? "-" : s;
}

std::string endpoint(const json::object& f, const char* addr, const char* port)
{
    std::string a(f.at(addr).as_string());
    auto p = f.at(port).to_number<unsigned>();
    std::string proto(f.at("proto").as_string());
    bool ports = proto == "tcp" || proto == "udp";
    if (a.find(':') != std::string::npos)
        return ports ? "[" + a + "]:" + std::to_string(p) : a;
    return ports ? a + ":" + std::to_string(p) : a;
}

// The flow table and a summary, the way an operator reads a capture.
void print_analysis(const json::object& r, FILE* out)
{
    const auto& t = r.at("totals").as_object();
    const auto& e = t.at("csum_errors").as_object();
    std::vector<std::vector<std::string>> rows = {{"PROTO", "SOURCE", "DESTINATION", "PACKETS", "BYTES", "TCP", "CSUM_ERR", "RSS_HASH"}};
    for (auto& v : r.at("flows").as_array()) {
        auto& f = v.as_object();
        char hash[16];
        std::snprintf(hash, sizeof hash, "0x%08x", f.at("rss_hash").to_number<unsigned>());
        std::string proto(f.at("proto").as_string());
        rows.push_back({proto, endpoint(f, "src", "sport"), endpoint(f, "dst", "dport"), std::to_string(num(f, "packets")),
                        human_bytes(static_cast<double>(num(f, "bytes"))),
                        proto == "tcp" ? tcp_flag_letters(f.at("tcp_flags").to_number<unsigned>()) : "",
                        std::to_string(num(f, "csum_errors")), hash});
    }
    std::fputs(format_table(rows).c_str(), out);
    std::fprintf(out, "%llu flows (top %zu by %s). %llu packets, %s: ipv4 %llu, ipv6 %llu, other link %llu; tcp %llu, udp %llu, "
                      "icmp %llu, icmpv6 %llu, other %llu\n",
                 static_cast<unsigned long long>(num(r, "flow_count")), r.at("flows").as_array().size(),
                 std::string(r.at("order").as_string()).c_str(), static_cast<unsigned long long>(num(t, "packets")),
                 human_bytes(static_cast<double>(num(t, "bytes"))).c_str(), static_cast<unsigned long long>(num(t, "ipv4")),
                 static_cast<unsigned long long>(num(t, "ipv6")), static_cast<unsigned long long>(num(t, "non_ip")),
                 static_cast<unsigned long long>(num(t, "tcp")), static_cast<unsigned long long>(num(t, "udp")),
                 static_cast<unsigned long long>(num(t, "icmp")), static_cast<unsigned long long>(num(t, "icmpv6")),
                 static_cast<unsigned long long>(num(t, "other")));
    std::fprintf(out, "checksum errors: ipv4 %llu, tcp %llu, udp %llu, icmp %llu, icmpv6 %llu; offloaded %llu, "
                      "udp without %llu, unverifiable %llu; malformed %llu, truncated %llu, fragments %llu\n",
                 static_cast<unsigned long long>(num(e, "ipv4")), static_cast<unsigned long long>(num(e, "tcp")),
                 static_cast<unsigned long long>(num(e, "udp")), static_cast<unsigned long long>(num(e, "icmp")),
                 static_cast<unsigned long long>(num(e, "icmpv6")), static_cast<unsigned long long>(num(t, "csum_offloaded")),
                 static_cast<unsigned long long>(num(t, "csum_none")), static_cast<unsigned long long>(num(t, "unverifiable")),
                 static_cast<unsigned long long>(num(t, "malformed")), static_cast<unsigned long long>(num(t, "truncated")),
                 static_cast<unsigned long long>(num(t, "fragments")));
    std::string tail = "engine " + std::string(r.at("engine").as_string());
    if (auto* n = r.if_contains("engine_note"))
        tail += " (" + std::string(n->as_string()) + ")";
    if (auto* k = r.if_contains("kernel"))
        tail += "; kernel: received " + std::to_string(num(k->as_object(), "received")) + ", dropped " +
                std::to_string(num(k->as_object(), "dropped"));
    if (auto* s = r.if_contains("stopped"))
        tail += "; stopped: " + std::string(s->as_string());
    std::fprintf(out, "%s\n", tail.c_str());
}

json::object analysis_args(const analysis_view_options& o)
{
    json::object a{{"top", o.top}, {"order", o.order}, {"bidirectional", o.bidirectional}};
    if (!o.engine.empty())
        a["engine"] = o.engine;
    return a;
}

int report(const frame& f, bool json_out, FILE* table_out)
{
    // As every nsctl command: the result with --json, or the whole error frame.
    if (json_out)
        std::cout << json::serialize(f.ok() ? f.value.at("result") : json::value(f.value)) << std::endl;
    if (!f.ok()) {
        std::fprintf(stderr, "nsctl: %s: %s\n", f.error_code().c_str(), f.error_message().c_str());
        return exit_op_error;
    }
    if (!json_out)
        print_analysis(f.value.at("result").as_object(), table_out);
    return exit_ok;
}

// Writes all of `n` bytes; false once the reader is gone (EPIPE: `| head`, tshark quit).
bool write_all(int fd, const char* p, std::size_t n)
{
    while (n) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

} // namespace

int run_analyze(const analyze_options& o)
{
    unique_fd in(::open(o.file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) {
        std::fprintf(stderr, "nsctl: %s: %s\n", o.file.c_str(), std::strerror(errno));
        return exit_op_error;
    }
    auto c = client::connect(o.agent_socket);
    if (!c) {
        std::fprintf(stderr, "nsctl: cannot reach the agent at %s: %s\n", o.agent_socket.c_str(), c.error().message().c_str());
        return exit_unreachable;
    }
    int raw = in.get();
    auto f = c->call(json::object{{"op", "pkt.analyze"}, {"args", analysis_args(o)}, {"fds", 1}, {"timeout_ms", 3600000}},
                     std::span<const int>(&raw, 1));
    if (!f) {
        std::fprintf(stderr, "nsctl: lost the agent during pkt.analyze: %s\n", f.error().message().c_str());
        return exit_unreachable;
    }
    return report(*f, o.json_out, stdout);
}

int run_capture(const capture_options& o)
{
    auto c = client::connect(o.agent_socket);
    if (!c) {
        std::fprintf(stderr, "nsctl: cannot reach the agent at %s: %s\n", o.agent_socket.c_str(), c.error().message().c_str());
        return exit_unreachable;
    }
    unique_fd out;
    if (o.write_to == "-")
        out.reset(::dup(1));
    else if (!o.write_to.empty()) {
        out.reset(::open(o.write_to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!out) {
            std::fprintf(stderr, "nsctl: %s: %s\n", o.write_to.c_str(), std::strerror(errno));
            return exit_op_error;
        }
    }
    // With the pcap on stdout, everything for people goes to stderr.
    FILE* table_out = o.write_to == "-" ? stderr : stdout;

    json::object args = analysis_args(o);
    args["ifname"] = o.ifname;
    args["snaplen"] = o.snaplen;
    if (o.count)
        args["count"] = o.count;
    if (o.duration_s > 0)
        args["duration_ms"] = static_cast<std::int64_t>(o.duration_s * 1000);
    if (!o.filter.empty())
        args["filter"] = o.filter;
    // The deadline is the backstop, not the way a capture ends: the duration plus a margin,
    // else a day (Ctrl-C ends it sooner).
    std::int64_t timeout = o.duration_s > 0 ? static_cast<std::int64_t>(o.duration_s * 1000) + 30000 : 86400000;
    json::object req{{"id", 1}, {"op", "pkt.capture"}, {"ns", to_json(o.ns)}, {"args", std::move(args)}, {"timeout_ms", timeout}};

    if (::pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return exit_op_error;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    if (auto ec = c->send_line(json::serialize(req))) {
        std::fprintf(stderr, "nsctl: lost the agent: %s\n", ec.message().c_str());
        return exit_unreachable;
    }
    bool tty = ::isatty(2); // the live counter and notes are for a person watching
    unique_fd pcap_in;
    bool cancelled = false, writing = static_cast<bool>(out);
    std::vector<char> buf(1 << 16);
    std::optional<frame> final_frame;
    auto cancel = [&](bool by_signal) {
        if (cancelled && !by_signal)
            return;
        if (cancelled) {
            // A second Ctrl-C: the user wants out now, analysis or not.
            std::fprintf(stderr, "\nnsctl: interrupted again; leaving without the analysis\n");
            std::exit(130);
        }
        cancelled = true;
        c->send_line(R"({"id":2,"op":"agent.cancel","args":{"id":1}})");
    };
    for (;;) {
        pollfd p[3] = {{c->native_handle(), POLLIN, 0}, {pcap_in ? pcap_in.get() : -1, POLLIN, 0}, {signal_pipe[0], POLLIN, 0}};
        if (::poll(p, 3, -1) < 0 && errno != EINTR)
            break;
        if (p[2].revents) {
            char drain[16];
            while (::read(signal_pipe[0], drain, sizeof drain) > 0) {
            }
            cancel(true); // the agent answers with the analysis so far
        }
        if (p[1].revents) {
            ssize_t n = ::read(pcap_in.get(), buf.data(), buf.size());
            if (n <= 0)
                pcap_in.reset(); // EOF: the capture has ended; its final reply follows
            else if (writing && !write_all(out.get(), buf.data(), static_cast<std::size_t>(n))) {
                writing = false; // the reader went away: stop the capture, keep its analysis
                cancel(false);
            }
        }
        if (p[0].revents) {
            for (;;) {
                auto f = c->next_frame(1);
                if (!f) {
                    if (f.error() == std::errc::timed_out)
                        break;
                    std::fprintf(stderr, "nsctl: lost the agent during pkt.capture: %s\n", f.error().message().c_str());
                    return exit_unreachable;
                }
                if (f->value.at("id") != 1)
                    continue; // the cancel's own reply
                if (f->is_final()) {
                    final_frame = std::move(*f);
                    break;
                }
                auto kind = f->value.at("event").as_string();
                if (kind == "started" && !f->fds.empty()) {
                    pcap_in = std::move(f->fds[0]);
                    if (tty)
                        std::fprintf(stderr, "capturing on %s in %s (%s)%s\n", o.ifname.c_str(), describe(o.ns).c_str(),
                                     std::string(f->value.at("linktype").as_string()).c_str(),
                                     o.count || o.duration_s > 0 ? "" : "; Ctrl-C stops");
                } else if (kind == "progress" && tty) {
                    std::fprintf(stderr, "\r%llu packets, %s   ", static_cast<unsigned long long>(num(f->value, "packets")),
                                 human_bytes(static_cast<double>(num(f->value, "bytes"))).c_str());
                }
            }
        }
        if (final_frame && !pcap_in)
            break;
        if (final_frame && pcap_in) {
            // The pipe closed before the final reply was sent; take what is left of it.
            ssize_t n;
            while ((n = ::read(pcap_in.get(), buf.data(), buf.size())) > 0)
                if (writing && !write_all(out.get(), buf.data(), static_cast<std::size_t>(n)))
                    writing = false;
            break;
        }
    }
    if (tty)
        std::fprintf(stderr, "\n");
    if (!final_frame)
        return exit_unreachable;
    return report(*final_frame, o.json_out, table_out);
}

} // namespace nsagent
