// pkt.*: packet capture inside a namespace, and analysis of captures by the packet engine.
// Both are stream ops: their reading and analysing runs on a stream_job thread, never on the
// namespace's worker (which only opens the capture, so that its socket lives in the namespace)
// nor on the I/O thread.
#include "agent.hpp"
#include "gpu_worker.hpp"
#include "op_registry.hpp"
#include "packet_engine.hpp"
#include "pcap_io.hpp"
#include "pending_request.hpp"
#include "stream_job.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace json = boost::json;

namespace nsagent {
namespace {

using clock_type = std::chrono::steady_clock;

// What every analysis request may say about the engine and the report.
struct analysis_args {
    std::size_t top = 10;
    pkt::flow_order order = pkt::flow_order::bytes;
    bool bidirectional = false;
    std::string engine; // cpu, cuda, auto
};

boost::system::result<analysis_args, op_error> parse_analysis_args(const op_context& c, const config& cfg)
{
    analysis_args a;
    auto top = arg_int(c, "top", 10);
    if (!top)
        return top.error();
    if (*top < 0 || *top > 100000)
        return agent_failure(errc::bad_request, "\"args.top\" must be 0 to 100000");
    a.top = static_cast<std::size_t>(*top);
    if (auto* o = c.req.args.if_contains("order")) {
        if (!o->is_string() || (o->get_string() != "bytes" && o->get_string() != "packets"))
            return agent_failure(errc::bad_request, "\"args.order\" must be \"bytes\" or \"packets\"");
        a.order = o->get_string() == "bytes" ? pkt::flow_order::bytes : pkt::flow_order::packets;
    }
    if (auto* b = c.req.args.if_contains("bidirectional")) {
        if (!b->is_bool())
            return agent_failure(errc::bad_request, "\"args.bidirectional\" must be true or false");
        a.bidirectional = b->get_bool();
    }
    a.engine = cfg.pkt_engine;
    if (auto* e = c.req.args.if_contains("engine")) {
        if (!e->is_string() || !(e->get_string() == "cpu" || e->get_string() == "cuda" || e->get_string() == "auto"))
            return agent_failure(errc::bad_request, "\"args.engine\" must be \"cpu\", \"cuda\" or \"auto\"");
        a.engine = std::string(e->get_string());
    }
    return a;
}

// Sends each batch to the engine the request asked for. "auto" offloads a batch only when it
// is large enough to repay the transfers and the launches (gpu_min_batch, measured on a GPU).
class engine_runner {
public:
    engine_runner(gpu_worker* gpu, std::string mode, std::size_t min_batch)
        : gpu_(gpu), mode_(std::move(mode)), min_batch_(min_batch)
    {
    }

    // The reason the requested engine cannot run at all, checked before any work starts.
    std::optional<std::string> unavailable() const
    {
        if (mode_ != "cuda")
            return std::nullopt;
        if (!gpu_)
            return std::string("engine \"cuda\" is not available: this agent runs no GPU worker");
        if (!gpu_->ready())
            return "engine \"cuda\" is not available: " + gpu_->status();
        return std::nullopt;
    }

    std::optional<std::string> run(const pkt::frame_batch& b, pkt::analysis& a)
    {
        bool gpu_ok = gpu_ && gpu_->ready();
        if (mode_ == "cuda" || (mode_ == "auto" && gpu_ok && b.size() >= min_batch_)) {
            auto err = gpu_ ? gpu_->analyze(b, a) : std::optional<std::string>("no GPU worker");
            if (!err) {
                used_gpu_ = true;
                return std::nullopt;
            }
            if (mode_ == "cuda")
                return "the GPU engine failed: " + *err;
            note_ = "the GPU engine failed, the CPU engine ran instead: " + *err;
        }
        pkt::analyze_cpu(b, a);
        used_cpu_ = true;
        return std::nullopt;
    }

    std::string engine() const
    {
        if (used_gpu_ && used_cpu_)
            return "cpu+cuda";
        return used_gpu_ ? "cuda" : "cpu";
    }

    // Why "auto" stayed on the CPU, for the reply; empty when it did not.
    std::string note() const
    {
        if (!note_.empty() || mode_ != "auto" || used_gpu_)
            return note_;
        if (!gpu_)
            return "no GPU worker";
        if (!gpu_->ready())
            return gpu_->status();
        return "every batch was smaller than gpu_min_batch (" + std::to_string(min_batch_) + " frames)";
    }

private:
    gpu_worker* gpu_;
    std::string mode_;
    std::size_t min_batch_;
    bool used_cpu_ = false, used_gpu_ = false;
    std::string note_;
};

std::string address_text(std::uint8_t family, const std::uint8_t* a)
{
    char buf[INET6_ADDRSTRLEN] = "";
    ::inet_ntop(family == 4 ? AF_INET : AF_INET6, a, buf, sizeof buf);
    return buf;
}

std::string proto_name(std::uint8_t p)
{
    switch (p) {
    case pkt::ip_proto_tcp: return "tcp";
    case pkt::ip_proto_udp: return "udp";
    case pkt::ip_proto_icmp: return "icmp";
    case pkt::ip_proto_icmpv6: return "icmpv6";
    default: return std::to_string(p);
    }
}

json::object report(const pkt::analysis& an, const analysis_args& args, const engine_runner& er)
{
    const auto& c = an.counts();
    json::object totals, errors;
    for (int i = 0; i < pkt::t_count; ++i) {
        auto k = static_cast<pkt::counter>(i);
        if (k >= pkt::t_bad_ipv4)
            errors[pkt::counter_name(k)] = c[i];
        else
            totals[pkt::counter_name(k)] = c[i];
    }
    totals["csum_errors"] = std::move(errors);
    json::array flows;
    for (const auto& f : an.top(args.top, args.order)) {
        flows.push_back(json::object{
            {"proto", proto_name(f.proto)},
            {"src", address_text(f.family, f.src)},
            {"dst", address_text(f.family, f.dst)},
            {"sport", f.sport},
            {"dport", f.dport},
            {"packets", f.packets},
            {"bytes", f.bytes},
            {"rss_hash", f.rss_hash},
            {"first_ts", u64_to_json(f.first_ts)},
            {"last_ts", u64_to_json(f.last_ts)},
            {"tcp_flags", f.tcp_flags},
            {"csum_errors", f.csum_errors},
        });
    }
    json::object out{{"engine", er.engine()},
                     {"totals", std::move(totals)},
                     {"flow_count", an.flow_count()},
                     {"flows", std::move(flows)},
                     {"order", args.order == pkt::flow_order::bytes ? "bytes" : "packets"},
                     {"bidirectional", args.bidirectional}};
    if (auto n = er.note(); !n.empty())
        out["engine_note"] = n;
    return out;
}

pkt::engine_options options_for(const config& cfg, const analysis_args& a)
{
    pkt::engine_options o;
    o.key = pkt::parse_rss_key(cfg.rss_key).value_or(pkt::default_rss_key()); // checked at load
    o.bidirectional = a.bidirectional;
    return o;
}

std::size_t batch_bytes(const config& cfg) { return std::size_t{cfg.pkt_batch} * 1024; }

// --- pkt.analyze ------------------------------------------------------------------------------

struct analyze_plan {
    analysis_args args;
    unique_fd file;
};

op_result analyze_check(op_context& c)
{
    if (c.fds.size() != 1)
        return agent_failure(errc::bad_request, "needs the capture file's fd: \"fds\": 1 with the fd attached");
    auto args = parse_analysis_args(c, c.host->cfg());
    if (!args)
        return args.error();
    engine_runner probe(c.host->gpu(), args->engine, 0);
    if (auto why = probe.unavailable())
        return agent_failure(errc::bad_request, *why);
    c.handoff = std::make_shared<analyze_plan>(analyze_plan{*args, std::move(c.fds[0])});
    return json::object{};
}

void analyze_then(agent& ag, const std::shared_ptr<pending_request>& r)
{
    auto plan = std::static_pointer_cast<analyze_plan>(r->handoff);
    const config& cfg = ag.cfg();
    gpu_worker* gpu = ag.gpu();
    ag.start_stream(r, [plan, &cfg, gpu](stream_job& job) -> op_result {
        engine_runner er(gpu, plan->args.engine, cfg.gpu_min_batch);
        pkt::analysis an(options_for(cfg, plan->args));
        std::optional<std::string> engine_error;
        auto err = pkt::read_capture(plan->file.get(), cfg.pkt_batch, batch_bytes(cfg), [&](pkt::frame_batch& b) {
            if (job.stop_requested())
                return false;
            engine_error = er.run(b, an);
            return !engine_error;
        });
        if (engine_error)
            return agent_failure(errc::internal, *engine_error);
        if (err)
            return agent_failure(errc::bad_request, "the file: " + *err);
        auto out = report(an, plan->args, er);
        if (job.stop_requested())
            out["stopped"] = job.stop_reason();
        return out;
    });
}

// --- pkt.capture ------------------------------------------------------------------------------

struct capture_plan {
    analysis_args args;
    std::string ifname;
    std::string filter;
    std::uint64_t count = 0;       // 0: no limit
    std::uint64_t duration_ms = 0; // 0: no limit (the request's deadline still ends it)
    int snaplen = 262144;
    pcap_t* p = nullptr;
    pkt::link_kind link = pkt::link_ethernet;
    int dlt = 0;

    capture_plan() = default;
    capture_plan(const capture_plan&) = delete;
    capture_plan& operator=(const capture_plan&) = delete;
    ~capture_plan()
    {
        if (p)
            ::pcap_close(p);
    }
};

op_error pcap_failure(const std::string& what, pcap_t* p, int rc)
{
    std::string detail = p ? ::pcap_geterr(p) : "";
    switch (rc) {
    case PCAP_ERROR_NO_SUCH_DEVICE: return os_failure(ENODEV, what + ": no such interface in this namespace" + (detail.empty() ? "" : " (" + detail + ")"));
    case PCAP_ERROR_PERM_DENIED: return os_failure(EPERM, what + ": " + detail);
    case PCAP_ERROR_IFACE_NOT_UP: return os_failure(ENETDOWN, what + ": the interface is down");
    default: return os_failure(EIO, what + ": " + (detail.empty() ? ::pcap_statustostr(rc) : detail));
    }
}

// The worker half: runs in the namespace, so the capture's packet socket is created there.
op_result capture_open(op_context& c)
{
    auto plan = std::make_shared<capture_plan>();
    auto ifname = arg_string(c, "ifname");
    if (!ifname)
        return ifname.error();
    if (ifname->empty() || ifname->size() >= 16)
        return agent_failure(errc::bad_request, "\"args.ifname\" must be an interface name (1 to 15 bytes)");
    plan->ifname = *ifname;
    auto count = arg_int(c, "count", 0), duration = arg_int(c, "duration_ms", 0), snaplen = arg_int(c, "snaplen", 262144);
    if (!count)
        return count.error();
    if (!duration)
        return duration.error();
    if (!snaplen)
        return snaplen.error();
    if (*count < 0 || *duration < 0)
        return agent_failure(errc::bad_request, "\"args.count\" and \"args.duration_ms\" must not be negative");
    if (*snaplen < 64 || *snaplen > 262144)
        return agent_failure(errc::bad_request, "\"args.snaplen\" must be 64 to 262144");
    plan->count = static_cast<std::uint64_t>(*count);
    plan->duration_ms = static_cast<std::uint64_t>(*duration);
    plan->snaplen = static_cast<int>(*snaplen);
    if (auto* f = c.req.args.if_contains("filter")) {
        if (!f->is_string())
            return agent_failure(errc::bad_request, "\"args.filter\" must be a tcpdump filter expression");
        plan->filter = std::string(f->get_string());
    }
    auto args = parse_analysis_args(c, *c.worker->cfg);
    if (!args)
        return args.error();
    plan->args = *args;

    char err[PCAP_ERRBUF_SIZE] = "";
    plan->p = ::pcap_create(plan->ifname.c_str(), err);
    if (!plan->p)
        return os_failure(EIO, "pcap_create " + plan->ifname + ": " + err);
    pcap_t* p = plan->p;
    ::pcap_set_snaplen(p, plan->snaplen);
    ::pcap_set_promisc(p, 0);
    ::pcap_set_immediate_mode(p, 1); // progress and the pcap stream follow the traffic live
    ::pcap_set_buffer_size(p, 4 << 20);
    ::pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
    int rc = ::pcap_activate(p);
    if (rc < 0)
        return pcap_failure("capture on " + plan->ifname, p, rc);
    plan->dlt = ::pcap_datalink(p);
    auto link = pkt::link_of_dlt(plan->dlt);
    if (!link) {
        const char* name = ::pcap_datalink_val_to_name(plan->dlt);
        return agent_failure(errc::bad_request, plan->ifname + " has link type " + (name ? name : std::to_string(plan->dlt)) +
                                                    ", which the engine does not parse");
    }
    plan->link = *link;
    if (!plan->filter.empty()) {
        bpf_program prog{};
        if (::pcap_compile(p, &prog, plan->filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) < 0)
            return agent_failure(errc::bad_request, "filter \"" + plan->filter + "\": " + ::pcap_geterr(p));
        int set = ::pcap_setfilter(p, &prog);
        ::pcap_freecode(&prog);
        if (set < 0)
            return os_failure(EINVAL, "pcap_setfilter: " + std::string(::pcap_geterr(p)));
    }
    if (::pcap_setnonblock(p, 1, err) < 0)
        return os_failure(EIO, std::string("pcap_setnonblock: ") + err);
    c.handoff = plan;
    return json::object{};
}

// Everything the capture loop's callback touches.
struct capture_state {
    pkt::pcap_pipe_writer* out = nullptr;
    pkt::frame_batch batch;
    pkt::analysis* an = nullptr;
    engine_runner* er = nullptr;
    std::size_t max_frames = 0, max_bytes = 0;
    std::uint64_t packets = 0, bytes = 0;
    std::optional<std::string> engine_error;

    void flush()
    {
        if (batch.size() && !engine_error)
            engine_error = er->run(batch, *an);
        batch.clear();
    }
};

void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* data)
{
    auto* s = reinterpret_cast<capture_state*>(user);
    s->out->write(h, data);
    // Flushed before either bound would be passed: the GPU's buffers are exactly that size.
    if (s->batch.size() && (s->batch.size() >= s->max_frames || s->batch.data.size() + h->caplen > s->max_bytes))
        s->flush();
    // With nanosecond precision requested, tv_usec holds nanoseconds.
    auto ts = static_cast<std::uint64_t>(h->ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(h->ts.tv_usec);
    s->batch.add(ts, data, h->caplen, h->len);
    ++s->packets;
    s->bytes += h->len;
}

op_result capture_body(stream_job& job, const std::shared_ptr<capture_plan>& plan, const config& cfg, gpu_worker* gpu)
{
    int pfd[2];
    if (::pipe2(pfd, O_CLOEXEC) < 0)
        return os_failure(errno, "pipe2");
    unique_fd reader(pfd[0]);
    // Only the agent's end is non-blocking: the client's end may go straight to tshark.
    ::fcntl(pfd[1], F_SETFL, O_NONBLOCK);
    ::fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20); // best effort: a larger buffer rides out a slow reader
    engine_runner er(gpu, plan->args.engine, cfg.gpu_min_batch);
    pkt::analysis an(options_for(cfg, plan->args));
    const char* link_name = ::pcap_datalink_val_to_name(plan->dlt);
    std::vector<unique_fd> fds;
    fds.push_back(std::move(reader));
    job.event("started", json::object{{"ifname", plan->ifname}, {"linktype", link_name ? link_name : ""}, {"snaplen", plan->snaplen}},
              std::move(fds));

    std::string stopped;
    capture_state s;
    s.an = &an;
    s.er = &er;
    s.max_frames = cfg.pkt_batch;
    s.max_bytes = batch_bytes(cfg);
    s.batch.link = plan->link;
    pcap_stat st{};
    bool have_stats = false;
    {
        pkt::pcap_pipe_writer out(plan->p, pfd[1], job.stop_fd()); // owns pfd[1] from here
        s.out = &out;
        auto start = clock_type::now();
        auto end = start + std::chrono::milliseconds(plan->duration_ms);
        auto next_progress = start + std::chrono::milliseconds(500);
        std::uint64_t reported = 0;
        int sel = ::pcap_get_selectable_fd(plan->p);
        for (;;) {
            if (job.stop_requested()) {
                stopped = job.stop_reason();
                break;
            }
            if (plan->count && s.packets >= plan->count) {
                stopped = "count";
                break;
            }
            auto now = clock_type::now();
            if (plan->duration_ms && now >= end) {
                stopped = "duration";
                break;
            }
            if (s.engine_error) {
                stopped = "error";
                break;
            }
            auto wait = std::chrono::milliseconds(250);
            if (plan->duration_ms)
                wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(end - now) + std::chrono::milliseconds(1));
            pollfd pf[2] = {{sel, POLLIN, 0}, {job.stop_fd(), POLLIN, 0}};
            ::poll(pf, 2, static_cast<int>(wait.count()));
            int cnt = plan->count ? static_cast<int>(std::min<std::uint64_t>(plan->count - s.packets, 1 << 30)) : -1;
            int n = ::pcap_dispatch(plan->p, cnt, &on_packet, reinterpret_cast<u_char*>(&s));
            if (n < 0) {
                // The interface went away (its namespace is being torn down) or the socket failed.
                stopped = std::string("error: ") + ::pcap_geterr(plan->p);
                break;
            }
            if (n > 0)
                out.flush();
            if (clock_type::now() >= next_progress) {
                next_progress += std::chrono::milliseconds(500);
                if (s.packets != reported) {
                    reported = s.packets;
                    job.event("progress", json::object{{"packets", s.packets}, {"bytes", s.bytes}});
                }
            }
        }
        s.flush();
        have_stats = ::pcap_stats(plan->p, &st) == 0;
    } // the writer flushes and closes the pipe: the reader sees EOF before the final reply
    if (s.engine_error)
        return agent_failure(errc::internal, *s.engine_error);
    auto out = report(an, plan->args, er);
    out["ifname"] = plan->ifname;
    if (!plan->filter.empty())
        out["filter"] = plan->filter;
    out["packets"] = s.packets;
    out["bytes"] = s.bytes;
    out["stopped"] = stopped;
    // Only the capture socket's own counters (PACKET_STATISTICS). libpcap's interface drop
    // counter reads sysfs, which shows the host's interfaces, not this namespace's.
    if (have_stats)
        out["kernel"] = json::object{{"received", st.ps_recv}, {"dropped", st.ps_drop}};
    return out;
}

void capture_then(agent& ag, const std::shared_ptr<pending_request>& r)
{
    auto plan = std::static_pointer_cast<capture_plan>(r->handoff);
    r->handoff.reset();
    const config& cfg = ag.cfg();
    gpu_worker* gpu = ag.gpu();
    engine_runner probe(gpu, plan->args.engine, 0);
    if (auto why = probe.unavailable())
        return ag.finish(r, agent_failure(errc::bad_request, *why));
    ag.start_stream(r, [plan, &cfg, gpu](stream_job& job) { return capture_body(job, plan, cfg, gpu); });
}

} // namespace

void register_pkt_ops(op_registry& r)
{
    r.add({"pkt.analyze", op_class::read, op_site::loop, ns_need::none, {}, &analyze_check, &analyze_then});
    r.add({"pkt.capture", op_class::capture, op_site::worker, ns_need::required, ns_type::net, &capture_open, &capture_then});
}

} // namespace nsagent
