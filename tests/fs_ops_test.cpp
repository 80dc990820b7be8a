// fs.* against real mount namespaces: a private one, a container-like one with its own pid
// namespace and procfs, and one that pivot_root'ed into a tmpfs like a real container.
#include "fs_path.hpp"

#include "support/test_env.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <fstream>
#include <set>
#include <sstream>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

std::string decode_b64(const json::value& v)
{
    namespace base64 = boost::beast::detail::base64;
    auto s = v.as_string();
    std::string out(base64::decoded_size(s.size()), '\0');
    out.resize(base64::decode(out.data(), s.data(), s.size()).first);
    return out;
}

class FsOps : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!is_root())
            GTEST_SKIP() << "needs root: mount namespaces";
        agent_.emplace(json::object{{"fs_max_read_bytes", 4096}});
        client_.emplace(agent_->connect());
    }
    frame fs(pid_t pid, const std::string& op, json::object args = {})
    {
        return call(*client_, op, pid_ns("mnt", pid), std::move(args));
    }
    std::optional<agent_process> agent_;
    std::optional<client> client_;
};

TEST_F(FsOps, ReadListAndStatSeeTheNamespacesFilesNotTheHosts)
{
    mount_holder plain(false), container(true);
    for (auto* h : {&plain, &container}) {
        auto r = fs(h->pid(), "fs.read", {{"path", h->marker()}});
        ASSERT_TRUE(r.ok()) << json::serialize(r.value);
        EXPECT_EQ(decode_b64(r.value.at("result").at("data_b64")), "hi\n");
        EXPECT_EQ(r.value.at("result").at("eof"), json::value(true));
        auto l = result_of(fs(h->pid(), "fs.list", {{"path", h->dir()}}));
        ASSERT_EQ(l.at("entries").as_array().size(), 1u);
        EXPECT_EQ(l.at("entries").at(0).at("name"), json::value("marker"));
        auto st = result_of(fs(h->pid(), "fs.stat", {{"path", h->marker()}}));
        EXPECT_EQ(st.at("type"), json::value("file"));
        EXPECT_EQ(u64(st.at("size")), 3u);
        auto dir = result_of(fs(h->pid(), "fs.stat", {{"path", h->dir()}}));
        EXPECT_EQ(dir.at("mount_root"), json::value(true)) << "the tmpfs is mounted there";
        EXPECT_EQ(result_of(fs(h->pid(), "fs.statvfs", {{"path", h->dir()}})).at("fstype"), json::value("tmpfs"));
        struct stat host {};
        EXPECT_NE(::stat(h->marker().c_str(), &host), 0) << "the host does not see it";
    }
}

std::vector<std::vector<std::string>> mountinfo_of(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
    std::vector<std::vector<std::string>> rows;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ss(line);
        std::vector<std::string> f;
        std::string w;
        while (ss >> w)
            f.push_back(w);
        rows.push_back(f);
    }
    return rows;
}

TEST_F(FsOps, MountsMatchTheHoldersMountinfoEntryByEntry)
{
    mount_holder plain(false), container(true);
    for (auto* h : {&plain, &container}) {
        // Compare snapshots of one state: if the holder's table changed while the agent read it
        // (a mount event from a test running beside this one), take both again.
        std::vector<std::vector<std::string>> theirs;
        frame mine;
        for (int attempt = 0; attempt < 5; ++attempt) {
            theirs = mountinfo_of(h->pid());
            mine = fs(h->pid(), "fs.mounts");
            if (mountinfo_of(h->pid()) == theirs)
                break;
        }
        ASSERT_TRUE(mine.ok());
        auto& arr = mine.value.at("result").as_array();
        ASSERT_EQ(arr.size(), theirs.size());
        for (std::size_t i = 0; i < arr.size(); ++i) {
            auto& m = arr[i].as_object();
            auto& t = theirs[i];
            auto dash = std::find(t.begin(), t.end(), "-") - t.begin();
            EXPECT_EQ(std::to_string(m.at("mount_id").as_int64()), t[0]);
            EXPECT_EQ(std::to_string(m.at("parent_id").as_int64()), t[1]);
            EXPECT_EQ(m.at("major_minor"), json::value(t[2]));
            EXPECT_EQ(m.at("options"), json::value(t[5]));
            EXPECT_EQ(m.at("fstype"), json::value(t[dash + 1]));
            // Escaped fields compare after the test's own decoding of \ooo.
            auto dec = [](std::string s) {
                std::string out;
                for (std::size_t k = 0; k < s.size(); ++k)
                    if (s[k] == '\\' && k + 3 < s.size()) {
                        out += static_cast<char>(std::stoi(s.substr(k + 1, 3), nullptr, 8));
                        k += 3;
                    } else
                        out += s[k];
                return out;
            };
            EXPECT_EQ(m.at("mount_point"), json::value(dec(t[4])));
            EXPECT_EQ(m.at("root"), json::value(dec(t[3])));
        }
    }
}

// A container that pivot_root'ed into a tmpfs: "..", absolute symlinks and procfs magic links
// must all stay inside its root.
TEST_F(FsOps, SymlinksAndMagicLinksDoNotEscapeTheNamespaceRoot)
{
    std::string dir = "/tmp/" + unique_name("root");
    ::mkdir(dir.c_str(), 0755);
    holder h("exec unshare -m --propagation private sh -c 'mount -t tmpfs r " + dir + " && cd " + dir +
             " && mkdir old data && echo inside > data/f && ln -s ../../../../etc/passwd data/up"
             " && ln -s /etc/passwd data/abs && ln -s /old/proc/self/root/etc/passwd data/magic"
             " && mkfifo data/fifo hold && pivot_root . old && echo ready && exec 3<>/hold && read x <&3'");
    // (After pivot_root the host's binaries cannot run, their loader is gone; the shell's own
    // `read` on a FIFO nobody writes keeps the namespace alive.)
    auto up = fs(h.pid(), "fs.read", {{"path", "/data/up"}});
    EXPECT_EQ(up.error_code(), "os_error") << json::serialize(up.value);
    EXPECT_EQ(up.value.at("error").at("errno_name"), json::value("ENOENT")) << "../.. stops at the namespace root";
    auto abs = fs(h.pid(), "fs.read", {{"path", "/data/abs"}});
    EXPECT_EQ(abs.value.at("error").at("errno_name"), json::value("ENOENT")) << "/ is the namespace root";
    auto magic = fs(h.pid(), "fs.read", {{"path", "/data/magic"}});
    EXPECT_EQ(magic.error_code(), "os_error");
    EXPECT_EQ(magic.value.at("error").at("errno_name"), json::value("ELOOP")) << "magic links are refused";
    auto dotdot = fs(h.pid(), "fs.read", {{"path", "/../../etc/passwd"}});
    EXPECT_EQ(dotdot.value.at("error").at("errno_name"), json::value("ENOENT"));
    EXPECT_EQ(decode_b64(fs(h.pid(), "fs.read", {{"path", "/data/f"}}).value.at("result").at("data_b64")), "inside\n");

    // A FIFO with no writer is refused at once, and the worker goes on serving.
    auto tid = result_of(call(*client_, "ns.ping", pid_ns("mnt", h.pid()))).at("tid");
    auto fifo = fs(h.pid(), "fs.read", {{"path", "/data/fifo"}});
    EXPECT_EQ(fifo.error_code(), "bad_request");
    EXPECT_NE(fifo.error_message().find("fifo"), std::string::npos);
    EXPECT_EQ(result_of(call(*client_, "ns.ping", pid_ns("mnt", h.pid()))).at("tid"), tid);
    h.kill_now();
    ::rmdir(dir.c_str());
}

TEST_F(FsOps, ErrorsCarryTheirErrnoAndThePath)
{
    mount_holder h(false);
    auto missing = fs(h.pid(), "fs.read", {{"path", h.dir() + "/nope"}});
    EXPECT_EQ(missing.value.at("error").at("errno_name"), json::value("ENOENT"));
    EXPECT_NE(missing.error_message().find(h.dir() + "/nope"), std::string::npos);
    EXPECT_EQ(fs(h.pid(), "fs.read", {{"path", h.dir()}}).value.at("error").at("errno_name"), json::value("EISDIR"));
    EXPECT_EQ(fs(h.pid(), "fs.list", {{"path", h.marker()}}).value.at("error").at("errno_name"), json::value("ENOTDIR"));
    auto big = fs(h.pid(), "fs.read", {{"path", h.marker()}, {"length", 5000}});
    EXPECT_EQ(big.error_code(), "bad_request");
    EXPECT_NE(big.error_message().find("fs_max_read_bytes"), std::string::npos);
    EXPECT_EQ(fs(h.pid(), "fs.read", {{"path", "relative"}}).error_code(), "bad_request");
    EXPECT_EQ(call(*client_, "fs.read", {{"type", "net"}, {"path", "/proc/self/ns/net"}}, {{"path", "/"}}).error_code(),
              "ns_type_mismatch");
}

TEST_F(FsOps, ListPagesThroughLargeDirectoriesAndKeepsOddNames)
{
    mount_holder h(false);
    // Files made from inside the namespace, including one whose name is not UTF-8.
    std::string script = "nsenter -t " + std::to_string(h.pid()) + " -m sh -c 'cd " + h.dir() +
                         " && for i in $(seq 1 24); do touch f$i; done && touch \"$(printf \"bad\\377\")\"'";
    ASSERT_EQ(sh(script), 0);
    std::set<std::string> names;
    std::string cursor;
    int pages = 0, odd = 0;
    for (; pages < 10; ++pages) {
        json::object args{{"path", h.dir()}, {"limit", 10}};
        if (!cursor.empty())
            args["after"] = cursor;
        auto r = result_of(fs(h.pid(), "fs.list", args));
        for (auto& e : r.at("entries").as_array()) {
            EXPECT_TRUE(names.insert(std::string(e.at("name").as_string())).second) << "no entry twice";
            if (e.as_object().contains("name_b64")) {
                ++odd;
                EXPECT_EQ(decode_b64(e.at("name_b64")), "bad\xff");
            }
        }
        if (!r.contains("next"))
            break;
        cursor = std::string(r.at("next").as_string());
    }
    EXPECT_EQ(names.size(), 26u); // marker, f1..f24, bad\xff
    EXPECT_EQ(pages, 2);          // three pages: 10, 10, 6
    EXPECT_EQ(odd, 1);
}

} // namespace

namespace {

std::string b64(const std::string& s)
{
    namespace base64 = boost::beast::detail::base64;
    std::string out(base64::encoded_size(s.size()), '\0');
    out.resize(base64::encode(out.data(), s.data(), s.size()));
    return out;
}

std::string host_view(pid_t pid, const std::string& path)
{
    return "/proc/" + std::to_string(pid) + "/root" + path;
}

std::string slurp(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST_F(FsOps, AnAtomicWriteIsNeverSeenTorn)
{
    mount_holder h(false);
    auto file = h.dir() + "/config";
    const std::string a(65536, 'a'), b(65536, 'b');
    ASSERT_TRUE(fs(h.pid(), "fs.write", {{"path", file}, {"data_b64", b64(a)}}).ok());
    std::atomic<bool> done{false};
    std::atomic<int> torn{0}, reads{0};
    std::thread reader([&] {
        // Readers that keep opening the file at random moments, bounded by the writer's end.
        while (!done) {
            auto s = slurp(host_view(h.pid(), file));
            ++reads;
            if (s != a && s != b)
                ++torn;
        }
    });
    for (int i = 0; i < 60; ++i) {
        auto w = fs(h.pid(), "fs.write", {{"path", file}, {"data_b64", b64(i % 2 ? a : b)}});
        ASSERT_TRUE(w.ok()) << json::serialize(w.value);
        EXPECT_EQ(w.value.at("result").at("atomic"), json::value(true));
    }
    done = true;
    reader.join();
    EXPECT_GT(reads, 0);
    EXPECT_EQ(torn, 0) << "of " << reads << " reads";
    // No temporary is left behind.
    auto l = result_of(fs(h.pid(), "fs.list", {{"path", h.dir()}}));
    for (auto& e : l.at("entries").as_array())
        EXPECT_EQ(std::string(e.at("name").as_string()).rfind(".nsagent-tmp-", 0), std::string::npos);
}

TEST_F(FsOps, ABindMountedFileIsWrittenInPlaceAndSaysSo)
{
    std::string dir = "/tmp/" + unique_name("bind");
    ::mkdir(dir.c_str(), 0755);
    holder h("exec unshare -m --propagation private sh -c 'mount -t tmpfs t " + dir + " && echo old > " + dir +
             "/src && echo x > " + dir + "/hosts && mount --bind " + dir + "/src " + dir +
             "/hosts && echo ready && exec sleep 600'");
    auto target = dir + "/hosts";
    auto strict = fs(h.pid(), "fs.write", {{"path", target}, {"data_b64", b64("new\n")}, {"require_atomic", true}});
    EXPECT_EQ(strict.value.at("error").at("errno_name"), json::value("EBUSY")) << json::serialize(strict.value);
    auto w = fs(h.pid(), "fs.write", {{"path", target}, {"data_b64", b64("new\n")}});
    ASSERT_TRUE(w.ok()) << json::serialize(w.value);
    EXPECT_EQ(w.value.at("result").at("atomic"), json::value(false));
    EXPECT_EQ(decode_b64(fs(h.pid(), "fs.read", {{"path", target}}).value.at("result").at("data_b64")), "new\n");
    h.kill_now();
    ::rmdir(dir.c_str());
}

TEST_F(FsOps, FsOpenHandsOverTheFileForBulkData)
{
    mount_holder h(false);
    auto file = h.dir() + "/bulk";
    auto f = client_->call({{"op", "fs.open"}, {"ns", pid_ns("mnt", h.pid())}, {"args", {{"path", file}, {"flags", "w"}, {"create", true}}}},
                           {}, 10000);
    ASSERT_TRUE(f && f->ok()) << (f ? json::serialize(f->value) : f.error().message());
    ASSERT_EQ(f->fds.size(), 1u);
    std::string chunk(1 << 20, '\0');
    for (std::size_t i = 0; i < chunk.size(); ++i)
        chunk[i] = static_cast<char>(i * 7 + 3);
    for (int i = 0; i < 64; ++i)
        ASSERT_EQ(::write(f->fds[0].get(), chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
    f->fds.clear();
    auto st = result_of(fs(h.pid(), "fs.stat", {{"path", file}}));
    EXPECT_EQ(u64(st.at("size")), 64u << 20);
    auto back = slurp(host_view(h.pid(), file));
    ASSERT_EQ(back.size(), 64u << 20);
    EXPECT_EQ(back.substr(5u << 20, chunk.size()), chunk);
    auto fifo = fs(h.pid(), "fs.open", {{"path", "/dev/null"}});
    EXPECT_EQ(fifo.error_code(), "bad_request") << "a device is refused";
}

TEST_F(FsOps, ModesAreExactWhateverTheAgentsUmask)
{
    mount_holder h(false);
    mode_t old = ::umask(077);
    agent_process strict_umask; // inherits umask 077
    ::umask(old);
    auto c = strict_umask.connect();
    auto op = [&](const std::string& name, json::object args) {
        return call(c, name, pid_ns("mnt", h.pid()), std::move(args));
    };
    ASSERT_TRUE(op("fs.write", {{"path", h.dir() + "/f"}, {"data_b64", b64("x")}, {"mode", "640"}}).ok());
    ASSERT_TRUE(op("fs.mkdir", {{"path", h.dir() + "/a/b/c"}, {"mode", "751"}, {"parents", true}}).ok());
    struct stat st {};
    ASSERT_EQ(::stat(host_view(h.pid(), h.dir() + "/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    ASSERT_EQ(::stat(host_view(h.pid(), h.dir() + "/a/b/c").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0751u);
    ASSERT_TRUE(op("fs.chmod", {{"path", h.dir() + "/f"}, {"mode", "4755"}}).ok());
    EXPECT_EQ(result_of(op("fs.stat", {{"path", h.dir() + "/f"}})).at("mode"), json::value("4755"));
}

TEST_F(FsOps, MkdirRenameSymlinkChownAndRecursiveRemove)
{
    mount_holder h(false);
    auto d = h.dir();
    ASSERT_TRUE(fs(h.pid(), "fs.mkdir", {{"path", d + "/x/y"}, {"parents", true}}).ok());
    ASSERT_TRUE(fs(h.pid(), "fs.write", {{"path", d + "/x/y/file"}, {"data_b64", b64("1")}}).ok());
    ASSERT_TRUE(fs(h.pid(), "fs.symlink", {{"target", "y/file"}, {"path", d + "/x/link"}}).ok());
    EXPECT_EQ(result_of(fs(h.pid(), "fs.readlink", {{"path", d + "/x/link"}})).at("target"), json::value("y/file"));
    EXPECT_EQ(result_of(fs(h.pid(), "fs.stat", {{"path", d + "/x/link"}, {"follow", false}})).at("type"), json::value("symlink"));
    ASSERT_TRUE(fs(h.pid(), "fs.chown", {{"path", d + "/x/y/file"}, {"uid", 1234}, {"gid", 5678}}).ok());
    auto st = result_of(fs(h.pid(), "fs.stat", {{"path", d + "/x/y/file"}}));
    EXPECT_EQ(st.at("uid"), json::value(1234));
    EXPECT_EQ(st.at("gid"), json::value(5678));
    ASSERT_TRUE(fs(h.pid(), "fs.rename", {{"from", d + "/x/y/file"}, {"to", d + "/x/moved"}}).ok());
    EXPECT_EQ(fs(h.pid(), "fs.stat", {{"path", d + "/x/y/file"}}).value.at("error").at("errno_name"), json::value("ENOENT"));
    // An atomic rewrite keeps the owner it found.
    ASSERT_TRUE(fs(h.pid(), "fs.write", {{"path", d + "/x/moved"}, {"data_b64", b64("2")}}).ok());
    EXPECT_EQ(result_of(fs(h.pid(), "fs.stat", {{"path", d + "/x/moved"}})).at("uid"), json::value(1234));
    EXPECT_EQ(fs(h.pid(), "fs.remove", {{"path", d + "/x"}}).value.at("error").at("errno_name"), json::value("ENOTEMPTY"));
    ASSERT_TRUE(fs(h.pid(), "fs.remove", {{"path", d + "/x"}, {"recursive", true}}).ok());
    EXPECT_EQ(result_of(fs(h.pid(), "fs.list", {{"path", d}})).at("entries").as_array().size(), 1u); // the marker
    // Recursive removal does not cross into another filesystem.
    ASSERT_EQ(sh("nsenter -t " + std::to_string(h.pid()) + " -m sh -c 'mkdir -p " + d + "/m/inner && mount -t tmpfs z " + d +
                 "/m/inner && touch " + d + "/m/inner/keep'"),
              0);
    auto cross = fs(h.pid(), "fs.remove", {{"path", d + "/m"}, {"recursive", true}});
    EXPECT_EQ(cross.value.at("error").at("errno_name"), json::value("EXDEV")) << json::serialize(cross.value);
    EXPECT_TRUE(result_of(fs(h.pid(), "fs.stat", {{"path", d + "/m/inner/keep"}})).contains("ino"));
}

TEST_F(FsOps, AThousandMixedRequestsLeaveNoFdAndNoThreadBehind)
{
    mount_holder h(false);
    auto d = h.dir();
    ASSERT_TRUE(fs(h.pid(), "fs.stat", {{"path", d}}).ok());
    int fds = agent_->fd_count(), threads = agent_->thread_count();
    for (int i = 0; i < 1000; ++i) {
        switch (i % 8) {
        case 0: EXPECT_TRUE(fs(h.pid(), "fs.write", {{"path", d + "/w"}, {"data_b64", b64(std::to_string(i))}}).ok()); break;
        case 1: EXPECT_TRUE(fs(h.pid(), "fs.read", {{"path", d + "/w"}}).ok()); break;
        case 2: EXPECT_EQ(fs(h.pid(), "fs.read", {{"path", d + "/missing"}}).error_code(), "os_error"); break;
        case 3: EXPECT_TRUE(fs(h.pid(), "fs.list", {{"path", d}}).ok()); break;
        case 4: EXPECT_TRUE(fs(h.pid(), "fs.mounts").ok()); break;
        case 5: {
            auto f = client_->call({{"op", "fs.open"}, {"ns", pid_ns("mnt", h.pid())}, {"args", {{"path", d + "/w"}}}}, {}, 10000);
            EXPECT_TRUE(f && f->ok());
            break;
        }
        case 6: EXPECT_EQ(fs(h.pid(), "fs.write", {{"path", d}, {"data_b64", b64("x")}}).error_code(), "bad_request"); break;
        case 7: EXPECT_EQ(fs(h.pid(), "fs.mkdir", {{"path", d + "/w"}}).value.at("error").at("errno_name"), json::value("EEXIST")); break;
        }
    }
    EXPECT_TRUE(wait_until([&] { return agent_->fd_count() == fds; })) << agent_->fd_count() << " vs " << fds;
    EXPECT_TRUE(wait_until([&] { return agent_->thread_count() == threads; }));
}

} // namespace

namespace {

// A process in its own user namespace (root stays root, so that mount(8) runs; host ids 100001..
// are 1.. inside): fs.stat through a pid: selector gives the ids as that process sees them too.
TEST_F(FsOps, StatThroughAPidInAUserNamespaceGivesTheIdsSeenInside)
{
    std::string dir = "/tmp/" + unique_name("userns");
    std::string fifo = dir + ".go", pidfile = dir + ".pid";
    ::mkdir(dir.c_str(), 0755);
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    // The maps are written from outside (root may map any range), then the inside goes on.
    holder h("unshare -U -m --propagation private sh -c 'read x < " + fifo + " && mount -t tmpfs u " + dir +
             " && touch " + dir + "/f && chown 1000:1001 " + dir + "/f && echo ready && exec sleep 600' & P=$!;"
             " while [ \"$(readlink /proc/$P/ns/user)\" = \"$(readlink /proc/self/ns/user)\" ]; do :; done;"
             " printf '0 0 1\\n1 100001 65535\\n' > /proc/$P/uid_map && printf '0 0 1\\n1 100001 65535\\n' > /proc/$P/gid_map &&"
             " echo $P > " + pidfile + " && echo go > " + fifo + " && wait");
    pid_t inner = std::stoi(slurp(pidfile));
    auto st = result_of(fs(inner, "fs.stat", {{"path", dir + "/f"}}));
    EXPECT_EQ(st.at("uid"), json::value(101000));
    EXPECT_EQ(st.at("gid"), json::value(101001));
    EXPECT_EQ(st.at("uid_in_ns"), json::value(1000));
    EXPECT_EQ(st.at("gid_in_ns"), json::value(1001));
    h.kill_now();
    ::rmdir(dir.c_str());
    ::unlink(fifo.c_str());
    ::unlink(pidfile.c_str());
}

TEST_F(FsOps, WritingToAReadOnlyMountIsErofs)
{
    mount_holder h(false);
    ASSERT_EQ(sh("nsenter -t " + std::to_string(h.pid()) + " -m sh -c 'mkdir " + h.dir() + "/ro && mount -t tmpfs -o ro r " +
                 h.dir() + "/ro'"),
              0);
    auto w = fs(h.pid(), "fs.write", {{"path", h.dir() + "/ro/f"}, {"data_b64", b64("x")}});
    EXPECT_EQ(w.value.at("error").at("errno_name"), json::value("EROFS")) << json::serialize(w.value);
    EXPECT_EQ(fs(h.pid(), "fs.mkdir", {{"path", h.dir() + "/ro/d"}}).value.at("error").at("errno_name"), json::value("EROFS"));
}

} // namespace

namespace {

// An atomic fs.write interrupted by SIGKILL of the agent, at many points in its course, leaves
// the old file or the new one, never a torn one (temp file + fsync + rename).
TEST(FsAtomicWrite, SigkillAtAnyPointLeavesTheOldFileOrTheNewOne)
{
    if (!is_root())
        GTEST_SKIP() << "needs root: mount namespaces";
    mount_holder m(false);
    auto target = m.dir() + "/config";
    auto in_ns = [&](const std::string& cmd) { return sh_out("nsenter -t " + std::to_string(m.pid()) + " -m -- " + cmd); };
    auto write_old = [&] {
        return sh("nsenter -t " + std::to_string(m.pid()) + " -m -- sh -c \"head -c 300000 /dev/zero | tr '\\\\0' A > " +
                  target + "\"");
    };
    ASSERT_EQ(write_old(), 0);
    auto old_sum = in_ns("sha256sum " + target).substr(0, 64);
    auto new_sum = sh_out("head -c 600000 /dev/zero | tr '\\0' B | sha256sum").substr(0, 64);
    ASSERT_NE(old_sum, new_sum);
    std::string b64;
    for (int i = 0; i < 200000; ++i)
        b64 += "QkJC"; // "BBB"
    std::string line = R"({"id":1,"op":"fs.write","ns":{"type":"mnt","pid":)" + std::to_string(m.pid()) +
                       R"(},"args":{"path":")" + target + R"(","data_b64":")" + b64 + "\"}}";
    int olds = 0, news = 0;
    for (int point = 0; point < 40; ++point) {
        {
            agent_process a;
            auto c = a.connect();
            ASSERT_FALSE(c.send_line(line));
            std::this_thread::sleep_for(std::chrono::microseconds(point * 250)); // a different kill point each time
            ::kill(a.pid(), SIGKILL);
        }
        auto sum = in_ns("sha256sum " + target).substr(0, 64);
        ASSERT_TRUE(sum == old_sum || sum == new_sum) << "torn file after a kill at " << point * 250 << " us";
        (sum == old_sum ? olds : news)++;
        if (sum == new_sum) { // put the old one back for the next kill point
            ASSERT_EQ(write_old(), 0);
        }
    }
    RecordProperty("old_after_kill", olds);
    RecordProperty("new_after_kill", news);
}

} // namespace
