// ns.*: per-namespace liveness, release, and the host's namespace listing.
#include "agent.hpp"
#include "op_registry.hpp"

#include "nsagent/protocol.hpp"

#include <boost/json/array.hpp>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <tuple>

namespace json = boost::json;

namespace nsagent {
namespace {

// Runs on the namespace's worker: proves which thread serves it and where that thread is.
op_result ping(op_context& c)
{
    struct stat st {};
    const char* link = c.worker->target.type == ns_type::net ? "ns/net" : "ns/mnt";
    // Through the host-procfs fd: /proc/thread-self may not exist in a container's procfs.
    if (::fstatat(c.worker->procfs_dir, link, &st, 0) < 0)
        return os_failure(errno, std::string("stat /proc/thread-self/") + link);
    return json::object{{"tid", c.worker->tid}, {"ino", u64_to_json(st.st_ino)}};
}

op_result release(op_context& c)
{
    return json::object{{"released", c.host->pool().release(*c.ns)}};
}

bool all_digits(const char* s)
{
    for (; *s; ++s)
        if (!std::isdigit(static_cast<unsigned char>(*s)))
            return false;
    return true;
}

op_result list(op_context& c)
{
    struct entry {
        std::vector<int> pids;
        std::vector<std::string> names;
    };
    auto key = [](const ns_id& id) { return std::make_tuple(id.type, id.ino, id.dev); };
    std::map<std::tuple<ns_type, std::uint64_t, std::uint64_t>, std::pair<ns_id, entry>> found;
    auto add = [&](const ns_id& id) -> entry& {
        auto& slot = found[key(id)];
        slot.first = id;
        return slot.second;
    };

    if (DIR* d = ::opendir("/proc")) {
        while (dirent* e = ::readdir(d)) {
            if (!all_digits(e->d_name))
                continue;
            for (ns_type t : {ns_type::net, ns_type::mnt}) {
                auto path = std::string("/proc/") + e->d_name + "/ns/" + std::string(to_string(t));
                if (auto id = identify_path(path, t))
                    add(*id).pids.push_back(std::atoi(e->d_name));
                // A process that exited meanwhile, or a kernel thread, simply is not listed.
            }
        }
        ::closedir(d);
    }
    if (DIR* d = ::opendir("/run/netns")) {
        while (dirent* e = ::readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            if (auto id = identify_path(std::string("/run/netns/") + e->d_name, ns_type::net)) {
                // An unmounted leftover file is on tmpfs, not nsfs: only real pins count.
                if (auto nsfs = identify_path("/proc/self/ns/net", ns_type::net); nsfs && nsfs->dev == id->dev)
                    add(*id).names.push_back(e->d_name);
            }
        }
        ::closedir(d);
    }

    json::array out;
    for (auto& [k, v] : found) {
        auto& [id, e] = v;
        std::sort(e.pids.begin(), e.pids.end());
        std::sort(e.names.begin(), e.names.end());
        json::array pids(e.pids.begin(), e.pids.end());
        json::array names;
        for (auto& n : e.names)
            names.push_back(json::string(n));
        auto* w = c.host->pool().find(id);
        // Who keeps it alive: its processes, its /run/netns bind mounts, and the agent's worker.
        json::array pinned_by;
        if (!e.pids.empty())
            pinned_by.push_back("processes");
        if (!e.names.empty())
            pinned_by.push_back("bind_mount");
        if (w)
            pinned_by.push_back("agent");
        json::object o{{"type", to_string(id.type)},
                       {"ino", u64_to_json(id.ino)},
                       {"dev", u64_to_json(id.dev)},
                       {"pids", std::move(pids)},
                       {"names", std::move(names)},
                       {"worker", w != nullptr},
                       {"pinned_by", std::move(pinned_by)}};
        if (w)
            o["worker_tid"] = (*w)->tid();
        if (!e.pids.empty()) {
            std::ifstream comm("/proc/" + std::to_string(e.pids.front()) + "/comm");
            std::string name;
            if (std::getline(comm, name))
                o["first_command"] = name;
        }
        out.push_back(std::move(o));
    }
    return out;
}

} // namespace

void register_ns_ops(op_registry& r)
{
    r.add({"ns.ping", op_class::read, op_site::worker, ns_need::required, {}, &ping});
    r.add({"ns.release", op_class::write, op_site::loop, ns_need::required, {}, &release});
    r.add({"ns.list", op_class::read, op_site::loop, ns_need::none, {}, &list});
}

} // namespace nsagent
