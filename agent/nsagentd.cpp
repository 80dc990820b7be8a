// nsagentd: parse flags, load config, bind the socket, build the agent, run. Nothing else.
#include "agent.hpp"
#include "capabilities.hpp"
#include "service_manager.hpp"
#include "config.hpp"
#include "gpu_worker.hpp"
#include "log.hpp"
#include "op_registry.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <thread>

using namespace nsagent;

int main(int argc, char** argv)
{
    CLI::App app{"nsagentd: runs operations inside network and mount namespaces for its clients,\n"
                 "one pinned thread per namespace, served over a Unix socket (NDJSON; see docs/protocol.md)."};
    std::string socket_path;
    std::string config_path = "/etc/nsagent/nsagent.json";
    bool verbose = false;
    std::string check_path;
    auto* sock_opt = app.add_option("--socket", socket_path,
                                    "Listening socket path (default: $NSAGENT_SOCKET, else the config's \"socket\", "
                                    "else /run/nsagent/nsagent.sock)");
    auto* cfg_opt = app.add_option("--config", config_path,
                                   "JSON config file; a missing default file means defaults (default: "
                                   "/etc/nsagent/nsagent.json)");
    app.add_flag("-v,--verbose", verbose, "Log per-connection and per-worker debug events");
    app.add_option("--check-config", check_path, "Validate FILE, print the effective settings and policy, and exit "
                                                 "(0 valid, 1 invalid)");
    app.footer("Signals: SIGTERM/SIGINT drain in-flight work (drain_timeout_ms), then exit 0.\n"
               "Exit status: 0 after a drain, 1 on a startup error (bad config, socket taken), 2 on usage.");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    if (verbose)
        set_log_level(log_level::debug);

    if (!check_path.empty()) {
        auto checked = load_config(check_path, true);
        if (!checked) {
            std::fprintf(stderr, "nsagentd: config: %s\n", checked.error().c_str());
            return 1;
        }
        auto& c = *checked;
        std::printf("%s: valid\nsocket %s\nqueue_depth %u  default_timeout_ms %u  max_workers %u  idle_timeout_s %u\n"
                    "max_connections %u  max_inflight_per_connection %u  drain_timeout_ms %u  audit %s\n",
                    check_path.c_str(), c.socket_path.c_str(), c.queue_depth, c.default_timeout_ms, c.max_workers,
                    c.idle_timeout_s, c.max_connections, c.max_inflight_per_connection, c.drain_timeout_ms, c.audit.c_str());
        std::printf("policy: uid 0 may do everything; other clients get the first matching rule, else nothing\n");
        int i = 0;
        for (auto& r : c.policy)
            std::printf("  rule %d: %s\n", i++, r.text.c_str());
        if (c.policy.empty())
            std::printf("  (no rules: only root can use the agent)\n");
        return 0;
    }

    // Least privilege, while this is the only thread: capabilities are per thread, and every
    // thread created later inherits this set.
    if (auto warning = restrict_capabilities(); !warning.empty())
        log_event(log_level::warning, "capabilities", kv("warning", warning));
#if defined(__SANITIZE_THREAD__)
    // ThreadSanitizer starts a helper thread on the first pthread_create. Let that happen now,
    // after the capability cut (it inherits the reduced set) and before the base thread count
    // is taken, so that "threads = base + workers" stays exact in a TSan build.
    std::thread([] {}).join();
#endif

    // A client that vanishes must never kill the agent: writes use MSG_NOSIGNAL, and this
    // covers everything else.
    std::signal(SIGPIPE, SIG_IGN);
    // Until the agent's signal handling is set up, a reload must not kill it.
    std::signal(SIGHUP, SIG_IGN);

    auto cfg = load_config(config_path, cfg_opt->count() > 0);
    if (!cfg) {
        std::fprintf(stderr, "nsagentd: config: %s\n", cfg.error().c_str());
        return 1;
    }
    if (sock_opt->count())
        cfg->socket_path = socket_path;
    else if (const char* env = std::getenv("NSAGENT_SOCKET"); env && *env)
        cfg->socket_path = env;

    // Each worker holds a few fds (namespace, procfs entry, its event loop); raise the soft
    // limit to the hard one so max_workers fits.
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }

    op_registry ops;
    register_agent_ops(ops);
    register_ns_ops(ops);
    register_net_ops(ops);
    register_net_connect_ops(ops);
    register_fs_ops(ops);
    register_pkt_ops(ops);
#ifdef NSAGENT_TEST_OPS
    register_test_ops(ops);
#endif

    unique_fd listener;
    bool activated = false;
    try {
        // Socket activation (nsagent.socket) passes the listener; by hand, bind our own.
        if (auto passed = socket_from_service_manager()) {
            listener = std::move(*passed);
            activated = true;
            log_event(log_level::notice, "socket_activation", kv("fd", listener.get()));
        } else {
            listener = bind_listener(cfg->socket_path);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "nsagentd: %s\n", e.what());
        return 1;
    }
    struct stat bound {};
    ::fstat(listener.get(), &bound);
    struct stat sock_file {};
    ::stat(cfg->socket_path.c_str(), &sock_file);

    // The CUDA worker, started here on the main thread, in the host's namespaces, before any
    // pinned worker: the CUDA runtime's helper threads inherit this thread's namespaces. The
    // agent's base thread count, taken at start(), includes them.
    std::optional<gpu_worker> gpu;
    if (cfg->pkt_engine != "cpu" && gpu_worker::built_with_cuda()) {
        gpu.emplace(cfg->pkt_batch, std::size_t{cfg->pkt_batch} * 1024);
        if (gpu->ready())
            log_event(log_level::notice, "gpu_ready", kv("device", gpu->status()));
        else
            log_event(log_level::notice, "gpu_unavailable", kv("reason", gpu->status()) + kv("engine", "cpu"));
    }

    std::size_t wedged = 0;
    {
        boost::asio::io_context io{1};
        std::optional<agent> built;
        try {
            built.emplace(io, *cfg, ops, std::move(listener));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "nsagentd: %s\n", e.what());
            return 1;
        }
        agent& a = *built;
        a.set_config_source(config_path);
        if (gpu)
            a.set_gpu(&*gpu);
        a.start();
        log_event(log_level::notice, "listening", kv("socket", cfg->socket_path) + kv("pid", ::getpid()));
        io.run();
        // The drain is over. From here to exit a second SIGTERM (timeout(1) also signals the
        // process group) must not turn a clean exit into death by signal, even once the
        // agent's signal_set has restored the default actions. Every other thread already
        // blocks all signals, so blocking them here leaves them nowhere to land.
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &stop, nullptr);
        wedged = a.wedged_workers() + a.pool().live().size() + a.pool().retiring();
        // Remove the socket file only if it is still the one this agent created.
        struct stat now {};
        if (!activated && ::stat(cfg->socket_path.c_str(), &now) == 0 && now.st_ino == sock_file.st_ino &&
            now.st_dev == sock_file.st_dev)
            ::unlink(cfg->socket_path.c_str());
        if (wedged > 0) {
            // Wedged (or not yet joined) threads may still touch agent state when their op
            // returns: leave without running destructors under them.
            log_event(log_level::warning, "exit_with_wedged_workers", kv("wedged", static_cast<long long>(wedged)));
            std::_Exit(0);
        }
    }
    log_event(log_level::notice, "exit");
    return 0;
}
