// Policy matching and namespace narrowing.
#include "access_policy.hpp"

#include <dirent.h>
#include <fnmatch.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 // Linux 6.5; Debian 12's headers predate it
#endif

namespace nsagent {
namespace {

bool in_group(const peer_identity& who, gid_t gid)
{
    return who.gid == gid || std::find(who.groups.begin(), who.groups.end(), gid) != who.groups.end();
}

// The agent's own namespaces and those of pid 1 count as the host's. They never change while
// the agent runs, so they are read once, not on every request.
bool is_host(const ns_id& id)
{
    static const std::vector<ns_id> host = [] {
        std::vector<ns_id> ids;
        for (const char* proc : {"/proc/self/ns/", "/proc/1/ns/"})
            for (ns_type t : {ns_type::net, ns_type::mnt})
                if (auto own = identify_path(std::string(proc) + std::string(to_string(t)), t))
                    ids.push_back(*own);
        return ids;
    }();
    return std::find(host.begin(), host.end(), id) != host.end();
}

bool owned_by(uid_t uid, const ns_id& id)
{
    DIR* d = ::opendir("/proc");
    if (!d)
        return false;
    bool found = false;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        struct stat st {};
        std::string base = std::string("/proc/") + e->d_name;
        if (::stat(base.c_str(), &st) < 0 || st.st_uid != uid)
            continue;
        auto ns = identify_path(base + "/ns/" + std::string(to_string(id.type)), id.type);
        if (ns && *ns == id) {
            found = true;
            break;
        }
    }
    ::closedir(d);
    return found;
}

bool named(const std::string& glob, const ns_id& id)
{
    if (id.type != ns_type::net)
        return false;
    DIR* d = ::opendir("/run/netns");
    if (!d)
        return false;
    bool found = false;
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.' || ::fnmatch(glob.c_str(), e->d_name, 0) != 0)
            continue;
        auto ns = identify_path(std::string("/run/netns/") + e->d_name, ns_type::net);
        if (ns && *ns == id) {
            found = true;
            break;
        }
    }
    ::closedir(d);
    return found;
}

op_error denied(const peer_identity& who, std::string what)
{
    return agent_failure(errc::permission_denied, "uid " + std::to_string(who.uid) + " (pid " + std::to_string(who.pid) +
                                                      "): " + what);
}

} // namespace

peer_identity peer_of(int sock)
{
    peer_identity p;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        p.pid = cred.pid;
        p.uid = cred.uid;
        p.gid = cred.gid;
    }
    // SO_PEERCRED carries only the primary group; users reach a root:nsagent socket through a
    // supplementary one.
    std::vector<gid_t> groups(64);
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) < 0 && errno == ERANGE) {
        groups.resize(glen / sizeof(gid_t));
        ::getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
    }
    groups.resize(glen / sizeof(gid_t));
    p.groups = std::move(groups);
    int pidfd = -1;
    socklen_t plen = sizeof pidfd;
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &plen) == 0 && pidfd >= 0)
        p.pidfd.reset(pidfd);
    std::ifstream comm("/proc/" + std::to_string(p.pid) + "/comm");
    std::getline(comm, p.comm);
    // The pid may have been reused between connect and now: with a pidfd, a live client
    // proves the name is its own. Without one (kernels before 6.5), the name is best effort.
    if (p.pidfd && ::syscall(SYS_pidfd_send_signal, p.pidfd.get(), 0, nullptr, 0) < 0)
        p.comm = "?";
    return p;
}

const policy_rule* match_rule(const policy& rules, const peer_identity& who)
{
    for (auto& r : rules)
        if ((r.uid && *r.uid == who.uid) || (r.gid && in_group(who, *r.gid)))
            return &r;
    return nullptr;
}

std::optional<op_error> check_class(const policy& rules, const peer_identity& who, op_class cls)
{
    if (who.uid == 0)
        return std::nullopt;
    auto* rule = match_rule(rules, who);
    if (!rule)
        return denied(who, "no policy rule matches this client");
    if (!rule->allow.contains(std::string(to_string(cls))))
        return denied(who, "its policy rule " + rule->text + " does not allow " + std::string(to_string(cls)) + " ops");
    return std::nullopt;
}

std::optional<op_error> check_namespace(const policy& rules, const peer_identity& who, const ns_id& id)
{
    if (who.uid == 0)
        return std::nullopt;
    auto* rule = match_rule(rules, who);
    if (!rule)
        return denied(who, "no policy rule matches this client");
    if (is_host(id))
        return rule->host ? std::nullopt
                          : std::optional(denied(who, to_string(id) + " is a host namespace and the rule says no \"host\": true"));
    if (rule->namespaces.empty())
        return std::nullopt;
    for (auto& p : rule->namespaces) {
        if (p == "owner:self" && owned_by(who.uid, id))
            return std::nullopt;
        if (p.rfind("name:", 0) == 0 && named(p.substr(5), id))
            return std::nullopt;
    }
    return denied(who, to_string(id) + " matches none of the rule's namespaces");
}

} // namespace nsagent
