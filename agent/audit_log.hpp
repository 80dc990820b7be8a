// The audit trail: one line for every mutation and every fd handed out, saying who (uid, pid,
// comm), what op, which namespace, and the result. To syslog (journald picks it up) or a file.
#pragma once

#include "access_policy.hpp"

#include "nsagent/unique_fd.hpp"

#include <string>
#include <string_view>

namespace nsagent {

class audit_log {
public:
    // "syslog", "off", or an absolute file path (opened for appending; errors throw at start).
    explicit audit_log(const std::string& where);
    ~audit_log();

    void record(const peer_identity& who, std::string_view op, std::string_view ns, std::string_view result);

private:
    enum class sink { off, syslog, file } sink_;
    unique_fd file_;
};

} // namespace nsagent
