// test.*: fault and probe ops compiled only into nsagentd-test, never into release binaries.
// They let the suite wedge, break and look inside a worker without mocking any syscall.
#include "op_registry.hpp"

#include <boost/json/object.hpp>

#include <fcntl.h>
#include <sys/capability.h>
#include <pthread.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <cerrno>
#include <stdexcept>

namespace json = boost::json;

namespace nsagent {
namespace {

// Blocks the worker for `ms` in nanosleep, standing in for an uninterruptible syscall.
op_result sleep_op(op_context& c)
{
    auto ms = arg_int(c, "ms");
    if (!ms)
        return ms.error();
    timespec ts{static_cast<time_t>(*ms / 1000), static_cast<long>(*ms % 1000) * 1000000L};
    while (::nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
    return json::object{{"slept_ms", *ms}};
}

op_result throw_op(op_context&)
{
    throw std::runtime_error("test.throw was asked to throw");
}

// Whether `path` exists as the worker sees it, and whether /proc/thread-self resolves there.
op_result probe_op(op_context& c)
{
    auto path = arg_string(c, "path");
    if (!path)
        return path.error();
    struct stat st {};
    bool exists = ::stat(path->c_str(), &st) == 0;
    int err = exists ? 0 : errno;
    bool thread_self = ::stat("/proc/thread-self/ns", &st) == 0;
    return json::object{{"exists", exists}, {"errno", err}, {"proc_thread_self", thread_self}};
}

// Moves the worker thread back to the agent's own network namespace (that of the main thread,
// which /proc/self names): the "found itself elsewhere" fault. The worker must retire before
// serving anything more.
op_result wander_op(op_context&)
{
    int fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return os_failure(errno, "open /proc/self/ns/net");
    int rc = ::setns(fd, CLONE_NEWNET);
    int err = errno;
    ::close(fd);
    if (rc < 0)
        return os_failure(err, "setns");
    return json::object{{"wandered", true}};
}

// Ends the worker thread in the middle of an op (pthread_exit unwinds it): the "thread exits"
// fault. The request must still get one reply, and the namespace a fresh worker.
op_result exit_op(op_context&)
{
    ::pthread_exit(nullptr);
}

// Runs with the client's fs identity (as fs ops do) and takes CAP_SETGID out of the thread's
// permitted set, so that putting the thread's groups back after the op must fail: the "identity
// did not restore" fault. The worker must retire after this reply and serve nothing more.
op_result lose_setgid_op(op_context&)
{
    cap_t caps = cap_get_proc();
    if (!caps)
        return os_failure(errno, "cap_get_proc");
    cap_value_t setgid = CAP_SETGID;
    cap_set_flag(caps, CAP_EFFECTIVE, 1, &setgid, CAP_CLEAR);
    cap_set_flag(caps, CAP_PERMITTED, 1, &setgid, CAP_CLEAR);
    int rc = cap_set_proc(caps); // this thread only
    int err = errno;
    cap_free(caps);
    if (rc < 0)
        return os_failure(err, "capset");
    return json::object{{"lost", "CAP_SETGID"}};
}

} // namespace

void register_test_ops(op_registry& r)
{
    r.add({"test.sleep", op_class::read, op_site::worker, ns_need::required, {}, &sleep_op});
    r.add({"test.throw", op_class::read, op_site::worker, ns_need::required, {}, &throw_op});
    r.add({"test.wander", op_class::read, op_site::worker, ns_need::required, ns_type::net, &wander_op});
    op_spec lose{"test.lose_setgid", op_class::read, op_site::worker, ns_need::required, {}, &lose_setgid_op};
    lose.as_client = true;
    r.add(lose);
    r.add({"test.exit", op_class::read, op_site::worker, ns_need::required, {}, &exit_op});
    r.add({"test.probe", op_class::read, op_site::worker, ns_need::required, {}, &probe_op});
}

} // namespace nsagent
