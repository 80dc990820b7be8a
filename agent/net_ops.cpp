// net.*: network-namespace state over rtnetlink, on the namespace's pinned worker. Result keys
// follow iproute2's `ip -j` so that users can diff the two.
#include "net_endpoint.hpp"
#include "netlink_socket.hpp"
#include "op_registry.hpp"

#include "nsagent/protocol.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if.h>
#include <linux/if_arp.h>
#include <linux/icmpv6.h>
#include <linux/if_link.h>
#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace json = boost::json;

namespace nsagent {
namespace {

// The worker's netlink socket of `bus`, opened on this worker's thread on first use, so that it
// belongs to the worker's namespace for life, and reused after.
boost::system::result<netlink_socket*, op_error> cached(std::shared_ptr<netlink_socket>& slot, int bus)
{
    if (!slot) {
        auto s = netlink_socket::open(bus);
        if (!s)
            return s.error();
        slot = std::move(*s);
    }
    return slot.get();
}

boost::system::result<netlink_socket*, op_error> rtnl(op_context& c)
{
    return cached(c.worker->rtnl, NETLINK_ROUTE);
}

nlmsghdr* dump_request(netlink_socket& nl, std::uint16_t type, std::size_t extra)
{
    nlmsghdr* nlh = mnl_nlmsg_put_header(nl.buffer());
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    mnl_nlmsg_put_extra_header(nlh, extra);
    return nlh;
}

std::string hex_address(const unsigned char* p, std::size_t n)
{
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        if (i)
            s += ':';
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

std::string_view family_name(int f)
{
    return f == AF_INET ? "inet" : f == AF_INET6 ? "inet6" : "unspec";
}

std::string scope_name(unsigned s)
{
    switch (s) {
    case RT_SCOPE_UNIVERSE: return "global";
    case RT_SCOPE_SITE: return "site";
    case RT_SCOPE_LINK: return "link";
    case RT_SCOPE_HOST: return "host";
    case RT_SCOPE_NOWHERE: return "nowhere";
    }
    return std::to_string(s);
}

// ---- links ----------------------------------------------------------------------------

struct link {
    int ifindex = 0;
    std::string ifname;
    unsigned flags = 0;
    unsigned mtu = 0;
    unsigned type = 0;
    std::optional<unsigned> operstate;
    std::string address, broadcast;
    int link_index = 0;
    std::optional<int> link_netnsid;
    int master = 0;
};

boost::system::result<std::vector<link>, op_error> dump_links(netlink_socket& nl)
{
    auto* nlh = dump_request(nl, RTM_GETLINK, sizeof(ifinfomsg));
    std::vector<link> out;
    auto err = nl.talk(
        nlh,
        [&](const nlmsghdr* m) {
            if (m->nlmsg_type != RTM_NEWLINK)
                return;
            auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(m));
            link l;
            l.ifindex = ifi->ifi_index;
            l.flags = ifi->ifi_flags;
            l.type = ifi->ifi_type;
            for_each_attr(m, sizeof(ifinfomsg), [&](const nlattr* a) {
                auto len = mnl_attr_get_payload_len(a);
                auto* p = static_cast<const unsigned char*>(mnl_attr_get_payload(a));
                switch (mnl_attr_get_type(a)) {
                case IFLA_IFNAME: l.ifname = mnl_attr_get_str(a); break;
                case IFLA_MTU: l.mtu = mnl_attr_get_u32(a); break;
                case IFLA_OPERSTATE: l.operstate = mnl_attr_get_u8(a); break;
                case IFLA_ADDRESS: l.address = hex_address(p, len); break;
                case IFLA_BROADCAST: l.broadcast = hex_address(p, len); break;
                case IFLA_LINK: l.link_index = static_cast<int>(mnl_attr_get_u32(a)); break;
                case IFLA_LINK_NETNSID: l.link_netnsid = static_cast<int>(mnl_attr_get_u32(a)); break;
                case IFLA_MASTER: l.master = static_cast<int>(mnl_attr_get_u32(a)); break;
                }
            });
            out.push_back(std::move(l));
        },
        "RTM_GETLINK dump");
    if (err)
        return *err;
    return out;
}

std::string link_type_name(unsigned t)
{
    switch (t) {
    case ARPHRD_ETHER: return "ether";
    case ARPHRD_LOOPBACK: return "loopback";
    case ARPHRD_NONE: return "none";
    case ARPHRD_TUNNEL: return "ipip";
    case ARPHRD_TUNNEL6: return "tunnel6";
    case ARPHRD_SIT: return "sit";
    case ARPHRD_IPGRE: return "gre";
    case ARPHRD_IP6GRE: return "gre6";
    case ARPHRD_INFINIBAND: return "infiniband";
    case ARPHRD_VOID: return "void";
    }
    return "[" + std::to_string(t) + "]";
}

std::string operstate_name(unsigned s)
{
    static const char* names[] = {"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"};
    return s < std::size(names) ? names[s] : std::to_string(s);
}

// The order and spelling of iproute2's print_link_flags().
json::array link_flags(unsigned flags, bool master_down)
{
    json::array out;
    if ((flags & IFF_UP) && !(flags & IFF_RUNNING))
        out.push_back("NO-CARRIER");
    static const std::pair<unsigned, const char*> names[] = {
        {IFF_LOOPBACK, "LOOPBACK"}, {IFF_BROADCAST, "BROADCAST"},   {IFF_POINTOPOINT, "POINTOPOINT"},
        {IFF_MULTICAST, "MULTICAST"}, {IFF_NOARP, "NOARP"},         {IFF_ALLMULTI, "ALLMULTI"},
        {IFF_PROMISC, "PROMISC"},   {IFF_MASTER, "MASTER"},         {IFF_SLAVE, "SLAVE"},
        {IFF_DEBUG, "DEBUG"},       {IFF_DYNAMIC, "DYNAMIC"},       {IFF_AUTOMEDIA, "AUTOMEDIA"},
        {IFF_PORTSEL, "PORTSEL"},   {IFF_NOTRAILERS, "NOTRAILERS"}, {IFF_UP, "UP"},
        {IFF_LOWER_UP, "LOWER_UP"}, {IFF_DORMANT, "DORMANT"},       {IFF_ECHO, "ECHO"},
    };
    for (auto& [bit, name] : names)
        if (flags & bit)
            out.push_back(name);
    if (master_down)
        out.push_back("M-DOWN");
    return out;
}

std::string name_of(const std::vector<link>& links, int ifindex)
{
    for (auto& l : links)
        if (l.ifindex == ifindex)
            return l.ifname;
    return "if" + std::to_string(ifindex);
}

// The worker's netlink socket and the current links: every net op needs names for ifindexes.
struct link_view {
    netlink_socket* nl;
    std::vector<link> links;
};

boost::system::result<link_view, op_error> links_of(op_context& c)
{
    auto nl = rtnl(c);
    if (!nl)
        return nl.error();
    auto links = dump_links(**nl);
    if (!links)
        return links.error();
    return link_view{*nl, std::move(*links)};
}

op_result links_op(op_context& c)
{
    auto view = links_of(c);
    if (!view)
        return view.error();
    auto& links = view->links;
    json::array out;
    for (auto& l : links) {
        json::object o;
        o["ifindex"] = l.ifindex;
        bool master_down = false;
        if (l.link_index && !l.link_netnsid) {
            // The peer is in this namespace: iproute2 names it, and says M-DOWN when it is down.
            o["link"] = name_of(links, l.link_index);
            for (auto& peer : links)
                if (peer.ifindex == l.link_index)
                    master_down = !(peer.flags & IFF_UP);
        } else if (l.link_index) {
            o["link_index"] = l.link_index;
        }
        if (l.link_netnsid)
            o["link_netnsid"] = *l.link_netnsid;
        o["ifname"] = l.ifname;
        o["flags"] = link_flags(l.flags, master_down);
        o["mtu"] = l.mtu;
        if (l.master)
            o["master"] = name_of(links, l.master);
        if (l.operstate)
            o["operstate"] = operstate_name(*l.operstate);
        o["link_type"] = link_type_name(l.type);
        if (!l.address.empty())
            o["address"] = l.address;
        if (!l.broadcast.empty())
            o["broadcast"] = l.broadcast;
        out.push_back(std::move(o));
    }
    return out;
}

// ---- addresses ------------------------------------------------------------------------

op_result addrs_op(op_context& c)
{
    auto view = links_of(c);
    if (!view)
        return view.error();
    auto& links = view->links;
    std::map<int, json::array> by_link;
    auto* nlh = dump_request(*view->nl, RTM_GETADDR, sizeof(ifaddrmsg));
    auto err = view->nl->talk(
        nlh,
        [&](const nlmsghdr* m) {
            if (m->nlmsg_type != RTM_NEWADDR)
                return;
            auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(m));
            const void *local = nullptr, *address = nullptr, *brd = nullptr;
            const char* label = nullptr;
            for_each_attr(m, sizeof(ifaddrmsg), [&](const nlattr* a) {
                switch (mnl_attr_get_type(a)) {
                case IFA_LOCAL: local = mnl_attr_get_payload(a); break;
                case IFA_ADDRESS: address = mnl_attr_get_payload(a); break;
                case IFA_BROADCAST: brd = mnl_attr_get_payload(a); break;
                case IFA_LABEL: label = mnl_attr_get_str(a); break;
                }
            });
            // IPv4 puts the local address in IFA_LOCAL (IFA_ADDRESS is the peer); IPv6 has
            // only IFA_ADDRESS.
            const void* mine = local ? local : address;
            if (!mine)
                return;
            json::object e;
            e["family"] = family_name(ifa->ifa_family);
            e["local"] = ip_text(ifa->ifa_family, mine);
            e["prefixlen"] = ifa->ifa_prefixlen;
            if (brd)
                e["broadcast"] = ip_text(ifa->ifa_family, brd);
            e["scope"] = scope_name(ifa->ifa_scope);
            if (label)
                e["label"] = label;
            by_link[static_cast<int>(ifa->ifa_index)].push_back(std::move(e));
        },
        "RTM_GETADDR dump");
    if (err)
        return *err;
    json::array out;
    for (auto& l : links)
        out.push_back(json::object{{"ifindex", l.ifindex}, {"ifname", l.ifname}, {"addr_info", std::move(by_link[l.ifindex])}});
    return out;
}

// ---- routes ---------------------------------------------------------------------------

std::string protocol_name(unsigned p)
{
    static const std::map<unsigned, const char*> names = {
        {RTPROT_UNSPEC, "unspec"}, {RTPROT_REDIRECT, "redirect"}, {RTPROT_KERNEL, "kernel"}, {RTPROT_BOOT, "boot"},
        {RTPROT_STATIC, "static"}, {8, "gated"}, {9, "ra"}, {10, "mrt"}, {11, "zebra"}, {12, "bird"},
        {13, "dnrouted"}, {14, "xorp"}, {15, "ntk"}, {16, "dhcp"}, {17, "mrouted"}, {18, "keepalived"},
        {42, "babel"}, {99, "openr"}, {186, "bgp"}, {187, "isis"}, {188, "ospf"}, {189, "rip"}, {192, "eigrp"},
    };
    auto it = names.find(p);
    return it != names.end() ? it->second : std::to_string(p);
}

std::string route_type_name(unsigned t)
{
    static const char* names[] = {"none",      "unicast", "local",   "broadcast", "anycast", "multicast",
                                  "blackhole", "unreachable", "prohibit", "throw", "nat", "xresolve"};
    return t < std::size(names) ? names[t] : std::to_string(t);
}

boost::system::result<std::uint32_t, op_error> table_arg(const op_context& c)
{
    auto* t = c.req.args.if_contains("table");
    if (!t || (t->is_string() && t->get_string() == "main"))
        return RT_TABLE_MAIN;
    if (t->is_string() && t->get_string() == "local")
        return RT_TABLE_LOCAL;
    if (t->is_string() && t->get_string() == "default")
        return RT_TABLE_DEFAULT;
    if (t->is_int64() && t->get_int64() > 0 && t->get_int64() <= 0xffffffffLL)
        return static_cast<std::uint32_t>(t->get_int64());
    return agent_failure(errc::bad_request, "\"args.table\" must be \"main\", \"local\", \"default\" or a table number");
}

op_result routes_op(op_context& c)
{
    int family = AF_INET;
    if (auto* f = c.req.args.if_contains("family")) {
        if (*f == json::value("inet6"))
            family = AF_INET6;
        else if (*f != json::value("inet"))
            return agent_failure(errc::bad_request, "\"args.family\" must be \"inet\" or \"inet6\"");
    }
    auto table = table_arg(c);
    if (!table)
        return table.error();
    auto view = links_of(c);
    if (!view)
        return view.error();
    auto& links = view->links;

    auto* nlh = dump_request(*view->nl, RTM_GETROUTE, sizeof(rtmsg));
    static_cast<rtmsg*>(mnl_nlmsg_get_payload(nlh))->rtm_family = static_cast<unsigned char>(family);
    json::array out;
    auto err = view->nl->talk(
        nlh,
        [&](const nlmsghdr* m) {
            if (m->nlmsg_type != RTM_NEWROUTE)
                return;
            auto* rt = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(m));
            if (rt->rtm_family != family || (rt->rtm_flags & RTM_F_CLONED))
                return;
            std::uint32_t tid = rt->rtm_table;
            const void *dst = nullptr, *gw = nullptr, *prefsrc = nullptr;
            std::optional<std::uint32_t> oif, metric;
            std::optional<unsigned> pref;
            for_each_attr(m, sizeof(rtmsg), [&](const nlattr* a) {
                switch (mnl_attr_get_type(a)) {
                case RTA_TABLE: tid = mnl_attr_get_u32(a); break;
                case RTA_DST: dst = mnl_attr_get_payload(a); break;
                case RTA_GATEWAY: gw = mnl_attr_get_payload(a); break;
                case RTA_PREFSRC: prefsrc = mnl_attr_get_payload(a); break;
                case RTA_OIF: oif = mnl_attr_get_u32(a); break;
                case RTA_PRIORITY: metric = mnl_attr_get_u32(a); break;
                case RTA_PREF: pref = mnl_attr_get_u8(a); break;
                }
            });
            if (tid != *table)
                return;
            json::object o;
            if (rt->rtm_type != RTN_UNICAST)
                o["type"] = route_type_name(rt->rtm_type);
            unsigned host_len = family == AF_INET ? 32 : 128;
            if (!dst || rt->rtm_dst_len == 0)
                o["dst"] = "default";
            else if (rt->rtm_dst_len == host_len)
                o["dst"] = ip_text(family, dst);
            else
                o["dst"] = ip_text(family, dst) + "/" + std::to_string(rt->rtm_dst_len);
            if (gw)
                o["gateway"] = ip_text(family, gw);
            if (oif)
                o["dev"] = name_of(links, static_cast<int>(*oif));
            // iproute2 leaves out the default protocol, "boot".
            if (rt->rtm_protocol != RTPROT_BOOT)
                o["protocol"] = protocol_name(rt->rtm_protocol);
            if (rt->rtm_scope != RT_SCOPE_UNIVERSE)
                o["scope"] = scope_name(rt->rtm_scope);
            if (prefsrc)
                o["prefsrc"] = ip_text(family, prefsrc);
            if (metric)
                o["metric"] = *metric;
            json::array flags;
            static const std::pair<unsigned, const char*> names[] = {
                {RTNH_F_DEAD, "dead"},       {RTNH_F_ONLINK, "onlink"},     {RTNH_F_PERVASIVE, "pervasive"},
                {RTNH_F_OFFLOAD, "offload"}, {RTNH_F_TRAP, "trap"},         {RTM_F_NOTIFY, "notify"},
                {RTNH_F_LINKDOWN, "linkdown"}, {RTNH_F_UNRESOLVED, "unresolved"},
            };
            for (auto& [bit, name] : names)
                if (rt->rtm_flags & bit)
                    flags.push_back(name);
            o["flags"] = std::move(flags);
            if (pref)
                o["pref"] = *pref == ICMPV6_ROUTER_PREF_LOW ? "low" : *pref == ICMPV6_ROUTER_PREF_HIGH ? "high" : "medium";
            if (tid != RT_TABLE_MAIN)
                o["table"] = tid == RT_TABLE_LOCAL ? json::value("local") : json::value(tid);
            out.push_back(std::move(o));
        },
        "RTM_GETROUTE dump");
    if (err)
        return *err;
    return out;
}

// ---- mutations ------------------------------------------------------------------------

// An address with an optional prefix length: "10.1.0.0/24", "2001:db8::1", "default".
struct prefix {
    int family = AF_UNSPEC;
    unsigned char bytes[16] = {};
    unsigned len = 0;
    std::size_t size() const { return family == AF_INET ? 4 : 16; }
};

std::optional<prefix> parse_prefix(std::string_view text, bool allow_default)
{
    prefix p;
    if (allow_default && text == "default")
        return p; // family decided by the caller
    std::string addr(text.substr(0, text.find('/')));
    if (::inet_pton(AF_INET, addr.c_str(), p.bytes) == 1)
        p.family = AF_INET;
    else if (::inet_pton(AF_INET6, addr.c_str(), p.bytes) == 1)
        p.family = AF_INET6;
    else
        return std::nullopt;
    unsigned max = p.family == AF_INET ? 32 : 128;
    p.len = max;
    if (auto slash = text.find('/'); slash != std::string_view::npos) {
        auto digits = text.substr(slash + 1);
        if (digits.empty() || digits.size() > 3)
            return std::nullopt;
        unsigned v = 0;
        for (char ch : digits) {
            if (ch < '0' || ch > '9')
                return std::nullopt;
            v = v * 10 + static_cast<unsigned>(ch - '0');
        }
        if (v > max)
            return std::nullopt;
        p.len = v;
    }
    return p;
}

// One SIOCGIFINDEX on a socket glibc opens on this thread, so in the worker's namespace; a
// mutation of one link has no use for a dump of every link.
boost::system::result<int, op_error> ifindex_of(const std::string& name)
{
    if (unsigned i = ::if_nametoindex(name.c_str()))
        return static_cast<int>(i);
    if (errno == ENODEV)
        return os_failure(ENODEV, "no link named \"" + name + "\" in this namespace");
    return os_failure(errno, "if_nametoindex " + name);
}

nlmsghdr* change_request(netlink_socket& nl, std::uint16_t type, std::uint16_t flags, std::size_t extra)
{
    nlmsghdr* nlh = mnl_nlmsg_put_header(nl.buffer());
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    mnl_nlmsg_put_extra_header(nlh, extra);
    return nlh;
}

std::optional<op_error> ack(netlink_socket& nl, nlmsghdr* nlh, const std::string& what)
{
    return nl.talk(nlh, [](const nlmsghdr*) {}, what);
}

op_result link_set_op(op_context& c)
{
    auto name = arg_string(c, "ifname");
    if (!name)
        return name.error();
    auto* up = c.req.args.if_contains("up");
    auto* mtu = c.req.args.if_contains("mtu");
    if (up && !up->is_bool())
        return agent_failure(errc::bad_request, "\"args.up\" must be true or false");
    if (mtu && !(mtu->is_int64() && mtu->get_int64() > 0 && mtu->get_int64() <= 0xffffffLL))
        return agent_failure(errc::bad_request, "\"args.mtu\" must be a positive integer");
    if (!up && !mtu)
        return agent_failure(errc::bad_request, "nothing to change: give \"up\" and/or \"mtu\"");
    auto nl = rtnl(c);
    if (!nl)
        return nl.error();
    auto index = ifindex_of(*name);
    if (!index)
        return index.error();
    auto* nlh = change_request(**nl, RTM_NEWLINK, 0, sizeof(ifinfomsg));
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = *index;
    json::object changed;
    if (up) {
        ifi->ifi_change = IFF_UP;
        ifi->ifi_flags = up->get_bool() ? IFF_UP : 0;
        changed["up"] = up->get_bool();
    }
    if (mtu) {
        mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<std::uint32_t>(mtu->get_int64()));
        changed["mtu"] = mtu->get_int64();
    }
    if (auto err = ack(**nl, nlh, "RTM_NEWLINK " + *name))
        return *err;
    return json::object{{"ifname", *name}, {"changed", std::move(changed)}};
}

op_result addr_change(op_context& c, bool add)
{
    auto name = arg_string(c, "ifname");
    if (!name)
        return name.error();
    auto text = arg_string(c, "address");
    if (!text)
        return text.error();
    auto p = parse_prefix(*text, false);
    if (!p)
        return agent_failure(errc::bad_request, "\"args.address\" must be an address with a prefix length, e.g. 10.1.0.2/24");
    auto nl = rtnl(c);
    if (!nl)
        return nl.error();
    auto index = ifindex_of(*name);
    if (!index)
        return index.error();
    auto* nlh = change_request(**nl, add ? RTM_NEWADDR : RTM_DELADDR, add ? NLM_F_CREATE | NLM_F_EXCL : 0,
                               sizeof(ifaddrmsg));
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
    ifa->ifa_family = static_cast<unsigned char>(p->family);
    ifa->ifa_prefixlen = static_cast<unsigned char>(p->len);
    ifa->ifa_index = static_cast<unsigned>(*index);
    mnl_attr_put(nlh, IFA_LOCAL, p->size(), p->bytes);
    mnl_attr_put(nlh, IFA_ADDRESS, p->size(), p->bytes);
    if (auto err = ack(**nl, nlh, std::string(add ? "RTM_NEWADDR " : "RTM_DELADDR ") + *text + " dev " + *name))
        return *err;
    return json::object{{"ifname", *name}, {"address", *text}, {add ? "added" : "deleted", true}};
}

op_result addr_add_op(op_context& c) { return addr_change(c, true); }
op_result addr_del_op(op_context& c) { return addr_change(c, false); }

op_result route_change(op_context& c, bool add)
{
    auto dst_text = arg_string(c, "dst");
    if (!dst_text)
        return dst_text.error();
    auto dst = parse_prefix(*dst_text, true);
    if (!dst)
        return agent_failure(errc::bad_request, "\"args.dst\" must be \"default\" or a prefix such as 10.1.0.0/24");
    std::optional<prefix> gw;
    if (auto* g = c.req.args.if_contains("gateway"); g && !g->is_null()) {
        if (!g->is_string() || !(gw = parse_prefix(g->get_string(), false)) || gw->len != (gw->family == AF_INET ? 32u : 128u))
            return agent_failure(errc::bad_request, "\"args.gateway\" must be an address");
    }
    int family = dst->family != AF_UNSPEC ? dst->family : gw ? gw->family : AF_INET;
    if (gw && gw->family != family)
        return agent_failure(errc::bad_request, "\"args.gateway\" and \"args.dst\" are of different families");
    dst->family = family;
    auto table = table_arg(c);
    if (!table)
        return table.error();
    auto nl = rtnl(c);
    if (!nl)
        return nl.error();
    std::optional<int> oif;
    if (auto* d = c.req.args.if_contains("dev"); d && !d->is_null()) {
        if (!d->is_string())
            return agent_failure(errc::bad_request, "\"args.dev\" must be a link name");
        auto index = ifindex_of(std::string(d->get_string()));
        if (!index)
            return index.error();
        oif = *index;
    }
    if (!gw && !oif)
        return agent_failure(errc::bad_request, "a route needs \"gateway\" or \"dev\"");

    auto* nlh = change_request(**nl, add ? RTM_NEWROUTE : RTM_DELROUTE, add ? NLM_F_CREATE | NLM_F_EXCL : 0,
                               sizeof(rtmsg));
    auto* rt = static_cast<rtmsg*>(mnl_nlmsg_get_payload(nlh));
    rt->rtm_family = static_cast<unsigned char>(family);
    rt->rtm_dst_len = static_cast<unsigned char>(dst->len);
    rt->rtm_table = static_cast<unsigned char>(*table < 256 ? *table : static_cast<std::uint32_t>(RT_TABLE_UNSPEC));
    // As `ip route add`: protocol boot, link scope for a route without a gateway. A delete
    // matches any scope (nowhere), as `ip route del` does.
    rt->rtm_protocol = add ? RTPROT_BOOT : RTPROT_UNSPEC;
    rt->rtm_scope = !add ? RT_SCOPE_NOWHERE : gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
    rt->rtm_type = RTN_UNICAST;
    if (*table >= 256)
        mnl_attr_put_u32(nlh, RTA_TABLE, *table);
    if (dst->len)
        mnl_attr_put(nlh, RTA_DST, dst->size(), dst->bytes);
    if (gw)
        mnl_attr_put(nlh, RTA_GATEWAY, gw->size(), gw->bytes);
    if (oif)
        mnl_attr_put_u32(nlh, RTA_OIF, static_cast<std::uint32_t>(*oif));
    if (auto err = ack(**nl, nlh, std::string(add ? "RTM_NEWROUTE " : "RTM_DELROUTE ") + *dst_text))
        return *err;
    json::object out{{"dst", *dst_text}, {add ? "added" : "deleted", true}};
    if (gw)
        out["gateway"] = c.req.args.at("gateway");
    if (oif)
        out["dev"] = c.req.args.at("dev");
    return out;
}

op_result route_add_op(op_context& c) { return route_change(c, true); }
op_result route_del_op(op_context& c) { return route_change(c, false); }

// ---- sockets handed out by fd ---------------------------------------------------------

op_result socket_op(op_context& c)
{
    auto& args = c.req.args;
    auto str = [&](const char* k, const char* def) -> std::string {
        auto* v = args.if_contains(k);
        return v && v->is_string() ? std::string(v->get_string()) : def;
    };
    std::string fam = str("family", "inet"), typ = str("type", "stream");
    int family = fam == "inet" ? AF_INET : fam == "inet6" ? AF_INET6 : fam == "unix" ? AF_UNIX : -1;
    int type = typ == "stream" ? SOCK_STREAM : typ == "dgram" ? SOCK_DGRAM : -1;
    if (family < 0)
        return agent_failure(errc::bad_request, "\"args.family\" must be inet, inet6 or unix");
    if (type < 0)
        return agent_failure(errc::bad_request, "\"args.type\" must be stream or dgram");
    // Created on this worker's thread: the socket belongs to the worker's namespace for life,
    // whichever process later uses the fd.
    unique_fd s(::socket(family, type | SOCK_CLOEXEC, 0));
    if (!s)
        return os_failure(errno, "socket");
    int one = 1;
    if (auto* o = args.if_contains("options"); o && o->is_object()) {
        if (auto* r = o->get_object().if_contains("reuseaddr"); r && *r == json::value(true))
            if (::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
                return os_failure(errno, "setsockopt SO_REUSEADDR");
        if (auto* v = o->get_object().if_contains("v6only"); v && v->is_bool() && family == AF_INET6) {
            int on = v->get_bool();
            if (::setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)
                return os_failure(errno, "setsockopt IPV6_V6ONLY");
        }
    }
    if (auto* b = args.if_contains("bind"); b && !b->is_null()) {
        auto e = b->is_string() ? parse_endpoint(b->get_string(), family) : std::nullopt;
        if (!e)
            return agent_failure(errc::bad_request, "\"args.bind\" must be host:port, [v6]:port, @name or /path for the family");
        if (::bind(s.get(), reinterpret_cast<sockaddr*>(&e->addr), e->len) < 0)
            return os_failure(errno, "bind " + std::string(b->get_string()));
    }
    if (auto* l = args.if_contains("listen"); l && !l->is_null()) {
        if (!l->is_int64() || l->get_int64() < 0 || l->get_int64() > 65535)
            return agent_failure(errc::bad_request, "\"args.listen\" must be a backlog from 0 to 65535");
        if (type != SOCK_STREAM)
            return agent_failure(errc::bad_request, "\"args.listen\" needs a stream socket");
        if (::listen(s.get(), static_cast<int>(l->get_int64())) < 0)
            return os_failure(errno, "listen");
    }
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &len);
    json::object out{{"family", fam}, {"type", typ}, {"local", endpoint_text(local, len)}};
    c.reply_fds.push_back(std::move(s));
    return out;
}

// ---- sockets (sock_diag) ---------------------------------------------------------------

std::string_view tcp_state_name(unsigned s)
{
    // ss(8)'s spelling.
    static const char* names[] = {"UNKNOWN",   "ESTAB",      "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2",
                                  "TIME-WAIT", "UNCONN",     "CLOSE-WAIT", "LAST-ACK", "LISTEN",   "CLOSING"};
    return s < std::size(names) ? names[s] : "UNKNOWN";
}

op_result sockets_op(op_context& c)
{
    std::string proto = "tcp", state = "all";
    if (auto* p = c.req.args.if_contains("proto"); p && p->is_string())
        proto = std::string(p->get_string());
    if (auto* s = c.req.args.if_contains("state"); s && s->is_string())
        state = std::string(s->get_string());
    if (proto != "tcp" && proto != "udp")
        return agent_failure(errc::bad_request, "\"args.proto\" must be tcp or udp");
    std::uint32_t states = 0;
    if (state == "listen")
        states = proto == "tcp" ? 1u << TCP_LISTEN : 1u << TCP_CLOSE; // an unconnected UDP socket is ss's "listening"
    else if (state == "established")
        states = 1u << TCP_ESTABLISHED;
    else if (state == "all")
        states = 0xffffffffu;
    else
        return agent_failure(errc::bad_request, "\"args.state\" must be listen, established or all");

    auto nl = cached(c.worker->diag, NETLINK_SOCK_DIAG);
    if (!nl)
        return nl.error();
    json::array out;
    for (int family : {AF_INET, AF_INET6}) {
        nlmsghdr* nlh = mnl_nlmsg_put_header((*nl)->buffer());
        nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
        req->sdiag_family = static_cast<std::uint8_t>(family);
        req->sdiag_protocol = proto == "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
        req->idiag_states = states;
        auto err = (*nl)->talk(
            nlh,
            [&](const nlmsghdr* m) {
                if (m->nlmsg_type != SOCK_DIAG_BY_FAMILY)
                    return;
                auto* d = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(m));
                auto text = [&](const std::uint32_t* a, std::uint16_t port) {
                    auto ip = ip_text(d->idiag_family, a);
                    auto p = std::to_string(ntohs(port));
                    return d->idiag_family == AF_INET6 ? "[" + ip + "]:" + p : ip + ":" + p;
                };
                out.push_back(json::object{{"proto", proto},
                                           {"state", tcp_state_name(d->idiag_state)},
                                           {"local", text(d->id.idiag_src, d->id.idiag_sport)},
                                           {"remote", text(d->id.idiag_dst, d->id.idiag_dport)},
                                           {"inode", u64_to_json(d->idiag_inode)},
                                           {"uid", d->idiag_uid},
                                           {"recv_q", d->idiag_rqueue},
                                           {"send_q", d->idiag_wqueue}});
            },
            std::string("sock_diag dump ") + (family == AF_INET ? "inet " : "inet6 ") + proto);
        if (err)
            return *err;
    }
    return out;
}

// ---- sysctls ---------------------------------------------------------------------------

// "net.ipv4.conf.eth0/100.forwarding" -> "/proc/sys/net/ipv4/conf/eth0.100/forwarding", the
// sysctl(8) spelling. Only per-namespace keys under net., and no component may escape.
boost::system::result<std::string, op_error> sysctl_path(const op_context& c)
{
    auto name = arg_string(c, "name");
    if (!name)
        return name.error();
    auto bad = [&](const char* why) {
        return agent_failure(errc::bad_request, "sysctl \"" + *name + "\": " + why);
    };
    if (name->rfind("net.", 0) != 0)
        return bad("only keys under net. are per network namespace");
    std::string path = "/proc/sys/";
    std::string component;
    auto flush = [&]() -> bool {
        if (component.empty() || component == "." || component == "..")
            return false;
        path += component;
        component.clear();
        return true;
    };
    for (char ch : *name) {
        if (ch == '.') {
            if (!flush())
                return bad("empty, . or .. component");
            path += '/';
        } else if (ch == '/') {
            component += '.';
        } else if (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '@' || ch == ':' || ch == '+') {
            component += ch;
        } else {
            return bad("unexpected character");
        }
    }
    if (!flush())
        return bad("empty, . or .. component");
    return path;
}

// Read on the worker: a net sysctl file is resolved in the network namespace of the thread
// that opens it, so this reads the target's value whatever the agent's own namespace.
boost::system::result<std::string, op_error> read_sysctl(const std::string& path)
{
    unique_fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd)
        return os_failure(errno, "open " + path);
    std::string v;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0)
            return os_failure(errno, "read " + path);
        if (n == 0)
            break;
        v.append(buf, static_cast<std::size_t>(n));
    }
    while (!v.empty() && (v.back() == '\n' || v.back() == ' '))
        v.pop_back();
    return v;
}

op_result sysctl_get_op(op_context& c)
{
    auto path = sysctl_path(c);
    if (!path)
        return path.error();
    auto v = read_sysctl(*path);
    if (!v)
        return v.error();
    return json::object{{"name", c.req.args.at("name")}, {"value", *v}};
}

op_result sysctl_set_op(op_context& c)
{
    auto path = sysctl_path(c);
    if (!path)
        return path.error();
    auto* value = c.req.args.if_contains("value");
    if (!value || !(value->is_string() || value->is_int64()))
        return agent_failure(errc::bad_request, "\"args.value\" must be a string or an integer");
    std::string text = value->is_string() ? std::string(value->get_string()) : std::to_string(value->get_int64());
    auto previous = read_sysctl(*path);
    if (!previous)
        return previous.error();
    unique_fd fd(::open(path->c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd)
        return os_failure(errno, "open " + *path);
    text += '\n';
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
        return os_failure(errno, "write " + *path);
    auto now = read_sysctl(*path);
    if (!now)
        return now.error();
    return json::object{{"name", c.req.args.at("name")}, {"value", *now}, {"previous", *previous}};
}

} // namespace

void register_net_ops(op_registry& r)
{
    r.add({"net.links", op_class::read, op_site::worker, ns_need::required, ns_type::net, &links_op});
    r.add({"net.addrs", op_class::read, op_site::worker, ns_need::required, ns_type::net, &addrs_op});
    r.add({"net.routes", op_class::read, op_site::worker, ns_need::required, ns_type::net, &routes_op});
    r.add({"net.link_set", op_class::write, op_site::worker, ns_need::required, ns_type::net, &link_set_op});
    r.add({"net.addr_add", op_class::write, op_site::worker, ns_need::required, ns_type::net, &addr_add_op});
    r.add({"net.addr_del", op_class::write, op_site::worker, ns_need::required, ns_type::net, &addr_del_op});
    r.add({"net.route_add", op_class::write, op_site::worker, ns_need::required, ns_type::net, &route_add_op});
    r.add({"net.route_del", op_class::write, op_site::worker, ns_need::required, ns_type::net, &route_del_op});
    r.add({"net.sockets", op_class::read, op_site::worker, ns_need::required, ns_type::net, &sockets_op});
    r.add({"net.socket", op_class::fd, op_site::worker, ns_need::required, ns_type::net, &socket_op});
    r.add({"net.sysctl_get", op_class::read, op_site::worker, ns_need::required, ns_type::net, &sysctl_get_op});
    r.add({"net.sysctl_set", op_class::write, op_site::worker, ns_need::required, ns_type::net, &sysctl_set_op});
}

} // namespace nsagent
