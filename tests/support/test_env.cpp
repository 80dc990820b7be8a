// Real-kernel fixtures for the suite.
#include "support/test_env.hpp"

#include "capabilities.hpp"

#include "nsagent/protocol.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace json = boost::json;

namespace nsagent::test {

#if defined(__SANITIZE_THREAD__)
namespace {
// ThreadSanitizer starts a helper thread on a process's first pthread_create; tests that count
// their own threads (the in-process worker pool) need it to exist before they start counting.
const int tsan_helper_started = [] {
    std::thread([] {}).join();
    return 0;
}();
} // namespace
#endif

std::string unique_name(const std::string& tag)
{
    static std::atomic<int> n{0};
    return "nsat-" + std::to_string(::getpid()) + "-" + tag + std::to_string(n++);
}

int sh(const std::string& cmd)
{
    int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string sh_out(const std::string& cmd)
{
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
            out.append(buf, n);
        ::pclose(p);
    }
    return out;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit)
{
    auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (pred())
            return true;
        if (std::chrono::steady_clock::now() >= end)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

bool is_root()
{
    return ::geteuid() == 0;
}

netns::netns() : name_(unique_name("net"))
{
    if (sh("ip netns add " + name_) != 0)
        throw std::runtime_error("ip netns add " + name_ + " failed");
    sh("ip -n " + name_ + " link set lo up");
}

netns::~netns()
{
    sh("ip netns del " + name_ + " 2>/dev/null");
}

std::uint64_t netns::ino() const
{
    struct stat st {};
    ::stat(path().c_str(), &st);
    return st.st_ino;
}

holder::holder(const std::string& script)
{
    int out[2];
    if (::pipe2(out, O_CLOEXEC) < 0)
        throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
        // Dies with the test process, even when the test crashes before its destructors run.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::setpgid(0, 0);
        ::dup2(out[1], 1);
        ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(out[1]);
    unique_fd rd(out[0]);
    // The script says "ready" once its namespaces are set up; bounded by the pipe closing.
    std::string got;
    char c;
    while (got.find("ready") == std::string::npos && ::read(rd.get(), &c, 1) == 1)
        got += c;
    if (got.find("ready") == std::string::npos) {
        kill_now();
        throw std::runtime_error("holder did not get ready: " + script);
    }
}

holder::~holder()
{
    kill_now();
}

void holder::kill_now()
{
    if (pid_ <= 0)
        return;
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::uint64_t holder::ns_ino(const char* type) const
{
    struct stat st {};
    ::stat(("/proc/" + std::to_string(pid_) + "/ns/" + type).c_str(), &st);
    return st.st_ino;
}

mount_holder::mount_holder(bool container) : dir_("/tmp/" + unique_name("mnt"))
{
    ::mkdir(dir_.c_str(), 0755);
    std::string setup = "mount -t tmpfs nsat " + dir_ + " && echo hi > " + dir_ + "/marker && echo ready && exec sleep 600";
    // `exec unshare`: the holder's pid is unshare's, which is inside the new mount namespace.
    // With -p -f --mount-proc, /proc there is the new pid namespace's procfs.
    std::string cmd = container ? "exec unshare -m -p -f --kill-child --mount-proc --propagation private sh -c '" + setup + "'"
                                : "exec unshare -m --propagation private sh -c '" + setup + "'";
    h_.emplace(cmd);
}

mount_holder::~mount_holder()
{
    h_.reset();
    ::rmdir(dir_.c_str());
}

agent_process::agent_process(json::object config, std::vector<std::pair<std::string, std::string>> env,
                             std::optional<uid_t> run_as)
{
    char tmpl[] = "/tmp/nsat-agent-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    socket_ = dir_ + "/nsagent.sock";
    std::string cfg_path = dir_ + "/config.json";
    std::ofstream(cfg_path) << json::serialize(config);
    std::string log_path = dir_ + "/agent.log";
    std::vector<std::string> argv;
    if (run_as) {
        // The agent binds its socket in dir_, so it must own it.
        if (::chown(dir_.c_str(), *run_as, *run_as) < 0)
            throw std::runtime_error("chown " + dir_ + " failed");
        std::string caps;
        for (auto c : agent_capabilities()) {
            char* name = cap_to_name(c);
            caps += std::string(caps.empty() ? "+" : ",+") + (std::string(name).rfind("cap_", 0) == 0 ? name + 4 : name);
            cap_free(name);
        }
        argv = {"setpriv", "--reuid", std::to_string(*run_as), "--regid", std::to_string(*run_as), "--clear-groups",
                "--inh-caps", caps, "--ambient-caps", caps, "--bounding-set", "-all," + caps, "--"};
    }
    for (std::string a : {std::string(NSAGENT_TEST_AGENT), std::string("--socket"), socket_, std::string("--config"),
                          cfg_path, std::string("--verbose")})
        argv.push_back(a);
    pid_ = ::fork();
    if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (auto& [k, v] : env)
            ::setenv(k.c_str(), v.c_str(), 1);
        int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        std::vector<char*> args;
        for (auto& a : argv)
            args.push_back(a.data());
        args.push_back(nullptr);
        ::execvp(args[0], args.data());
        ::_exit(127);
    }
    bool up = wait_until([&] { return static_cast<bool>(client::connect(socket_)); });
    if (!up)
        throw std::runtime_error("nsagentd-test did not come up; log:\n" + log());
}

agent_process::~agent_process()
{
    // A failed test shows what the agent said: the log goes with the temp dir otherwise.
    if (::testing::Test::HasFailure())
        std::fprintf(stderr, "---- agent log (%s) ----\n%s---- end of agent log ----\n", dir_.c_str(), log().c_str());
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    sh("rm -rf " + dir_);
}

client agent_process::connect() const
{
    auto c = client::connect(socket_);
    if (!c)
        throw std::runtime_error("connect " + socket_ + ": " + c.error().message());
    return std::move(*c);
}

int agent_process::wait_exit(std::chrono::milliseconds limit)
{
    int status = -1;
    bool done = wait_until(
        [&] {
            int st;
            if (::waitpid(pid_, &st, WNOHANG) == pid_) {
                status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                return true;
            }
            return false;
        },
        limit);
    if (done)
        pid_ = -1;
    return done ? status : -1;
}

int agent_process::terminate(std::chrono::milliseconds limit)
{
    ::kill(pid_, SIGTERM);
    return wait_exit(limit);
}

std::string agent_process::log() const
{
    std::ifstream in(dir_ + "/agent.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

int agent_process::fd_count() const
{
    int n = 0;
    if (DIR* d = ::opendir(("/proc/" + std::to_string(pid_) + "/fd").c_str())) {
        while (dirent* e = ::readdir(d))
            if (e->d_name[0] != '.')
                ++n;
        ::closedir(d);
    }
    return n;
}

int agent_process::thread_count() const
{
    auto fields = status_fields("/proc/" + std::to_string(pid_) + "/status");
    auto it = fields.find("Threads");
    return it == fields.end() ? -1 : std::stoi(it->second);
}

frame call(client& c, const std::string& op, json::object ns, json::object args, std::optional<int> timeout_ms)
{
    json::object req{{"op", op}};
    if (!ns.empty())
        req["ns"] = std::move(ns);
    if (!args.empty())
        req["args"] = std::move(args);
    if (timeout_ms)
        req["timeout_ms"] = *timeout_ms;
    auto f = c.call(std::move(req), {}, 30000);
    if (!f) {
        ADD_FAILURE() << op << ": transport error " << f.error().message();
        return {};
    }
    return std::move(*f);
}

json::object net_ns(const std::string& name)
{
    return {{"type", "net"}, {"name", name}};
}

json::object pid_ns(const char* type, pid_t pid)
{
    return {{"type", type}, {"pid", pid}};
}

json::object result_of(const frame& f)
{
    if (!f.ok()) {
        ADD_FAILURE() << "expected success, got " << json::serialize(f.value);
        return {};
    }
    auto& r = f.value.at("result");
    return r.is_object() ? r.get_object() : json::object{{"value", r}};
}

std::uint64_t u64(const json::value& v)
{
    auto x = u64_from_json(v);
    if (!x)
        ADD_FAILURE() << "not a u64: " << json::serialize(v);
    return x.value_or(0);
}

json::object stats(client& c)
{
    return result_of(call(c, "agent.stats"));
}

// Runs `body` as uid/gid/groups in a child process and collects "label=code" lines from it.
client_results as_user(uid_t uid, gid_t gid, std::vector<gid_t> groups, const std::function<void(client&, client_results&)>& body,
                const agent_process& a)
{
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0)
        return {};
    pid_t child = ::fork();
    if (child == 0) {
        ::close(p[0]);
        if (::setgroups(groups.size(), groups.data()) < 0 || ::setresgid(gid, gid, gid) < 0 || ::setresuid(uid, uid, uid) < 0)
            ::_exit(2);
        client_results out;
        auto c = client::connect(a.socket());
        if (!c)
            ::_exit(3);
        body(*c, out);
        std::string text;
        for (auto& [k, v] : out)
            text += k + "=" + v + "\n";
        ssize_t w = ::write(p[1], text.data(), text.size());
        (void)w;
        ::_exit(0);
    }
    ::close(p[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0)
        text.append(buf, static_cast<std::size_t>(n));
    ::close(p[0]);
    int st = 0;
    ::waitpid(child, &st, 0);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "child status " << st;
    client_results r;
    for (std::size_t i = 0; i < text.size();) {
        auto nl = text.find('\n', i);
        auto line = text.substr(i, nl - i);
        r[line.substr(0, line.find('='))] = line.substr(line.find('=') + 1);
        i = nl + 1;
    }
    return r;
}


void open_to_everyone(const agent_process& a)
{
    auto dir = a.socket().substr(0, a.socket().rfind('/'));
    ::chmod(dir.c_str(), 0755);
    ::chmod(a.socket().c_str(), 0666);
}

std::map<std::string, std::string> status_fields(const std::string& path)
{
    std::map<std::string, std::string> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos)
            continue;
        auto value = line.substr(colon + 1);
        auto first = value.find_first_not_of(" \t");
        out[line.substr(0, colon)] = first == std::string::npos ? "" : value.substr(first);
    }
    return out;
}

} // namespace nsagent::test
