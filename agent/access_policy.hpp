// Who may do what: the config's ordered policy rules, applied to a client's peer credentials
// (SO_PEERCRED, SO_PEERGROUPS). uid 0 may do anything: root on the host could enter the
// namespaces anyway. Everyone else gets nothing unless a rule allows it.
#pragma once

#include "config.hpp"
#include "ns_id.hpp"
#include "op_registry.hpp"

#include "nsagent/error.hpp"
#include "nsagent/unique_fd.hpp"

#include <sys/types.h>

#include <optional>
#include <vector>

namespace nsagent {

struct peer_identity {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups; // supplementary, from SO_PEERGROUPS
    std::string comm;          // the client's command name at connect time, for the audit log
    // SO_PEERPIDFD (Linux 6.5+): the client process itself, immune to pid reuse. It confirms
    // that `comm` was read from the client and not from a process that later took its pid.
    unique_fd pidfd;
};

// The peer credentials of a connected Unix socket.
peer_identity peer_of(int sock);

// The first rule matching the client, or nullptr (nothing is allowed).
const policy_rule* match_rule(const policy& rules, const peer_identity& who);

// permission_denied unless the client may use ops of `cls`.
std::optional<op_error> check_class(const policy& rules, const peer_identity& who, op_class cls);

// permission_denied unless the client's rule lets it reach `id`. Enforced on the resolved
// identity, never on the selector's text: a path, a pid or a passed fd naming a host namespace
// is a host namespace.
std::optional<op_error> check_namespace(const policy& rules, const peer_identity& who, const ns_id& id);

} // namespace nsagent
