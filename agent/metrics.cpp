// agent.metrics: the agent's state in the Prometheus text exposition format (0.0.4).
#include "agent.hpp"
#include "connection.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace nsagent {
namespace {

// Label values escape backslash, double quote and newline.
std::string label(std::string_view v)
{
    std::string out;
    for (char ch : v) {
        if (ch == '\\' || ch == '"')
            out += '\\';
        if (ch == '\n') {
            out += "\\n";
            continue;
        }
        out += ch;
    }
    return out;
}

std::string number(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

class exposition {
public:
    void header(std::string_view name, std::string_view type, std::string_view help)
    {
        out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
    }
    void sample(std::string_view name, std::string_view labels, double v)
    {
        out_ << name;
        if (!labels.empty())
            out_ << '{' << labels << '}';
        out_ << ' ' << number(v) << '\n';
    }
    void histogram(std::string_view name, const std::string& labels, const latency_histogram::snapshot& s)
    {
        std::uint64_t cumulative = 0;
        std::string sep = labels.empty() ? "" : ",";
        for (std::size_t i = 0; i < s.counts.size(); ++i) {
            cumulative += s.counts[i];
            std::string le = i < latency_histogram::bounds.size() ? number(latency_histogram::bounds[i]) : "+Inf";
            sample(std::string(name) + "_bucket", labels + sep + "le=\"" + le + "\"", static_cast<double>(cumulative));
        }
        sample(std::string(name) + "_sum", labels, s.sum_seconds);
        sample(std::string(name) + "_count", labels, static_cast<double>(s.count));
    }
    std::string str() const { return out_.str(); }

private:
    std::ostringstream out_;
};

long open_fds()
{
    long n = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
        while (dirent* e = ::readdir(d))
            n += e->d_name[0] != '.';
        ::closedir(d);
        --n; // the directory stream's own fd
    }
    return n;
}

long rss_bytes()
{
    std::ifstream in("/proc/self/statm");
    long pages = 0, resident = 0;
    in >> pages >> resident;
    return resident * ::sysconf(_SC_PAGESIZE);
}

} // namespace

std::string agent::metrics_text() const
{
    exposition e;
    e.header("nsagent_threads", "gauge", "Threads of the agent process, from /proc/self/status.");
    e.sample("nsagent_threads", "", static_cast<double>(current_thread_count()));
    e.header("nsagent_base_threads", "gauge", "Fixed threads (I/O, signals), measured at start.");
    e.sample("nsagent_base_threads", "", static_cast<double>(base_threads_));
    e.header("nsagent_workers", "gauge", "Pinned workers by state.");
    e.sample("nsagent_workers", "state=\"live\"", static_cast<double>(pool_.live().size()));
    e.sample("nsagent_workers", "state=\"retiring\"", static_cast<double>(pool_.retiring()));
    e.sample("nsagent_workers", "state=\"wedged\"", static_cast<double>(pool_.wedged()));
    e.header("nsagent_connections", "gauge", "Open client connections.");
    e.sample("nsagent_connections", "", static_cast<double>(conns_.size()));
    e.header("nsagent_inflight_requests", "gauge", "Accepted requests without their final reply yet.");
    e.sample("nsagent_inflight_requests", "", static_cast<double>(inflight_total()));
    e.header("nsagent_streams", "gauge", "Captures and analyses running now (pkt.capture, pkt.analyze).");
    e.sample("nsagent_streams", "", static_cast<double>(streams_.size()));
    e.header("nsagent_streams_started_total", "counter", "Captures and analyses started.");
    e.sample("nsagent_streams_started_total", "", static_cast<double>(streams_started_));
    e.header("nsagent_open_fds", "gauge", "File descriptors open in the agent.");
    e.sample("nsagent_open_fds", "", static_cast<double>(open_fds()));
    e.header("nsagent_resident_memory_bytes", "gauge", "Resident set size of the agent.");
    e.sample("nsagent_resident_memory_bytes", "", static_cast<double>(rss_bytes()));
    e.header("nsagent_requests_total", "counter", "Final replies by op and code (ok for success).");
    for (auto& [k, v] : by_op_code_)
        e.sample("nsagent_requests_total", "op=\"" + label(k.first) + "\",code=\"" + label(k.second) + "\"", static_cast<double>(v));
    e.header("nsagent_worker_starts_total", "counter", "Workers started.");
    e.sample("nsagent_worker_starts_total", "", static_cast<double>(pool_.started_total()));
    e.header("nsagent_worker_retirements_total", "counter", "Workers retired, by reason.");
    for (auto& [reason, n] : pool_.retired())
        e.sample("nsagent_worker_retirements_total", "reason=\"" + label(reason) + "\"", static_cast<double>(n));

    auto ns_label = [](const ns_id& id) {
        return "ns=\"" + to_string(id) + "\"";
    };
    e.header("nsagent_worker_ops_total", "counter", "Ops run by each live worker.");
    for (auto& [id, w] : pool_.live())
        e.sample("nsagent_worker_ops_total", ns_label(id), static_cast<double>(w->ops()));
    e.header("nsagent_worker_errors_total", "counter", "Ops of each live worker that returned an error.");
    for (auto& [id, w] : pool_.live())
        e.sample("nsagent_worker_errors_total", ns_label(id), static_cast<double>(w->errors()));
    e.header("nsagent_worker_queue_depth", "gauge", "Requests queued on each live worker.");
    for (auto& [id, w] : pool_.live())
        e.sample("nsagent_worker_queue_depth", ns_label(id), static_cast<double>(w->queued()));
    e.header("nsagent_queue_wait_seconds", "histogram", "Time from a worker's queue to the start of the op.");
    for (auto& [id, w] : pool_.live())
        e.histogram("nsagent_queue_wait_seconds", ns_label(id), w->queue_wait.read());
    e.header("nsagent_exec_seconds", "histogram", "Time in the op on the worker.");
    for (auto& [id, w] : pool_.live())
        e.histogram("nsagent_exec_seconds", ns_label(id), w->exec_time.read());
    return e.str();
}

} // namespace nsagent
