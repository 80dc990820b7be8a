// Real-kernel fixtures for the suite: namespaces, holder processes, and a running agent. Every
// fixture removes what it made on every path (RAII), and every wait is bounded.
#pragma once

#include "nsagent/client.hpp"
#include "nsagent/unique_fd.hpp"

#include <boost/json/object.hpp>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nsagent::test {

// "nsat-<pid>-<n>": unique per test process, so parallel runs never collide.
std::string unique_name(const std::string& tag = "");

// Runs a shell command; returns its exit status.
int sh(const std::string& cmd);
// Runs a shell command and returns its stdout.
std::string sh_out(const std::string& cmd);

// Polls `pred` every 10 ms until it holds or `limit` passes. Never a fixed sleep.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(10));

// True when running as root (CI does); tests that need it skip with the reason otherwise.
bool is_root();

// A named network namespace (`ip netns add`), deleted on destruction.
class netns {
public:
    netns();
    ~netns();
    netns(const netns&) = delete;
    netns& operator=(const netns&) = delete;
    const std::string& name() const { return name_; }
    std::string path() const { return "/run/netns/" + name_; }
    std::uint64_t ino() const;

private:
    std::string name_;
};

// A process started from a shell script that prints "ready" when set up; killed (with its
// process group) on destruction. Its pid is the one to name with pid: selectors.
class holder {
public:
    explicit holder(const std::string& script);
    ~holder();
    holder(const holder&) = delete;
    holder& operator=(const holder&) = delete;
    pid_t pid() const { return pid_; }
    std::uint64_t ns_ino(const char* type) const;
    void kill_now();

private:
    pid_t pid_ = -1;
};

// A mount namespace with a private tmpfs at a fresh directory (the host sees the directory,
// empty); `container` also gives it its own pid namespace and procfs, like a container.
class mount_holder {
public:
    explicit mount_holder(bool container);
    ~mount_holder();
    pid_t pid() const { return h_->pid(); }
    const std::string& dir() const { return dir_; }
    std::string marker() const { return dir_ + "/marker"; }
    std::uint64_t ino() const { return h_->ns_ino("mnt"); }

private:
    std::string dir_;
    std::optional<holder> h_;
};

// The uid the non-root agent runs as in tests (no passwd entry needed).
inline constexpr uid_t agent_test_uid = 4711;

// nsagentd-test running on a private socket with the given config keys. With `run_as`, it
// runs as that uid (and gid) with the documented capabilities as ambient capabilities and as
// its bounding set, the way `User=nsagent` + `AmbientCapabilities=` in the unit starts it.
class agent_process {
public:
    explicit agent_process(boost::json::object config = {},
                           std::vector<std::pair<std::string, std::string>> env = {},
                           std::optional<uid_t> run_as = {});
    ~agent_process();
    agent_process(const agent_process&) = delete;
    agent_process& operator=(const agent_process&) = delete;

    const std::string& socket() const { return socket_; }
    // The config file it was started with; rewrite it and send SIGHUP to reload the policy.
    std::string config_path() const { return dir_ + "/config.json"; }
    pid_t pid() const { return pid_; }
    nsagent::client connect() const;
    // SIGTERM, then waits (bounded) for the exit status; -1 if it did not exit in time.
    int terminate(std::chrono::milliseconds limit = std::chrono::seconds(20));
    // Waits for exit without signalling; -1 if still running after `limit`.
    int wait_exit(std::chrono::milliseconds limit);
    std::string log() const;
    int fd_count() const;
    int thread_count() const;

private:
    std::string dir_, socket_;
    pid_t pid_ = -1;
};

// One call; fails the test (ADD_FAILURE) and returns an empty frame when the transport fails.
nsagent::frame call(nsagent::client& c, const std::string& op, boost::json::object ns = {},
                    boost::json::object args = {}, std::optional<int> timeout_ms = {});
boost::json::object net_ns(const std::string& name);
boost::json::object pid_ns(const char* type, pid_t pid);
// The result object of a successful frame, or an empty one (with a test failure).
boost::json::object result_of(const nsagent::frame& f);
std::uint64_t u64(const boost::json::value& v);
boost::json::object stats(nsagent::client& c);

// Results a forked client reports back: label -> error code ("" for success).
using client_results = std::map<std::string, std::string>;
// Runs `body` as uid/gid/groups in a forked child connected to `a`, and collects what it
// recorded. The child drops its credentials with setgroups/setresgid/setresuid before connecting.
client_results as_user(uid_t uid, gid_t gid, std::vector<gid_t> groups,
                       const std::function<void(nsagent::client&, client_results&)>& body, const agent_process& a);

// Lets other users reach the agent's socket (its folder 0755, the socket 0666), so that the
// policy, not the file mode, is what a test of other uids exercises.
void open_to_everyone(const agent_process& a);

// The "Key:\tvalue" lines of a /proc status file, value text as written (whitespace trimmed).
std::map<std::string, std::string> status_fields(const std::string& path);

} // namespace nsagent::test
