// Audit records.
#include "audit_log.hpp"

#include "log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

namespace nsagent {

audit_log::audit_log(const std::string& where)
{
    if (where == "off") {
        sink_ = sink::off;
    } else if (where == "syslog") {
        sink_ = sink::syslog;
        ::openlog("nsagentd", LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
    } else {
        sink_ = sink::file;
        file_.reset(::open(where.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
        if (!file_)
            throw std::runtime_error("audit log " + where + ": " + std::strerror(errno));
    }
}

audit_log::~audit_log()
{
    if (sink_ == sink::syslog)
        ::closelog();
}

void audit_log::record(const peer_identity& who, std::string_view op, std::string_view ns, std::string_view result)
{
    if (sink_ == sink::off)
        return;
    std::string line = "audit" + kv("uid", who.uid) + kv("pid", who.pid) + kv("comm", who.comm) + kv("op", op) +
                       kv("ns", ns.empty() ? "-" : ns) + kv("result", result);
    if (sink_ == sink::syslog) {
        ::syslog(LOG_NOTICE, "%s", line.c_str());
        return;
    }
    char stamp[64];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ ", &tm);
    line = stamp + line + "\n";
    // One write per record, O_APPEND: whole lines even with other writers.
    ssize_t w = ::write(file_.get(), line.data(), line.size());
    (void)w;
}

} // namespace nsagent
