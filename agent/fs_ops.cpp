// fs.*: read and inspect a mount namespace's files from its pinned worker. Paths resolve under
// the namespace's root (fs_path), files open non-blocking and are type-checked with fstat before
// any read, and every fd closes on every path (unique_fd).
#include "fs_path.hpp"
#include "mountinfo.hpp"
#include "op_registry.hpp"

#include "nsagent/protocol.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace json = boost::json;
namespace base64 = boost::beast::detail::base64;

namespace nsagent {
namespace {

// ---- Types-section encodings ----------------------------------------------------------

std::string_view type_name(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFSOCK: return "socket";
    case S_IFIFO: return "fifo";
    case S_IFCHR: return "char";
    case S_IFBLK: return "block";
    }
    return "unknown";
}

std::string_view dirent_type_name(unsigned char t)
{
    switch (t) {
    case DT_REG: return "file";
    case DT_DIR: return "dir";
    case DT_LNK: return "symlink";
    case DT_SOCK: return "socket";
    case DT_FIFO: return "fifo";
    case DT_CHR: return "char";
    case DT_BLK: return "block";
    }
    return "unknown";
}

// Permission bits with setuid, setgid and sticky, as octal digits: "644", "4755".
std::string mode_text(mode_t m)
{
    char buf[8];
    std::snprintf(buf, sizeof buf, "%o", static_cast<unsigned>(m & 07777));
    return buf;
}

// RFC 3339, UTC, nanoseconds: "2026-12-04T16:10:00.123456789Z".
std::string rfc3339(const timespec& ts)
{
    std::tm tm{};
    ::gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", ts.tv_nsec);
    return buf;
}

// Lower-case hex of any bytes: list cursors and temporary-file names.
std::string hex(std::string_view bytes)
{
    static const char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 2);
    for (unsigned char ch : bytes) {
        s += digits[ch >> 4];
        s += digits[ch & 15];
    }
    return s;
}

std::string b64(const char* data, std::size_t n)
{
    std::string out(base64::encoded_size(n), '\0');
    out.resize(base64::encode(out.data(), data, n));
    return out;
}

bool valid_utf8(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > s.size())
            return false;
        for (std::size_t k = 1; k < len; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2)
                return false;
        i += len;
    }
    return true;
}

// A name field per the Types section: the text, and `<key>_b64` with the exact bytes when they
// are not valid UTF-8 (the text then has U+FFFD for each bad byte).
void put_name(json::object& o, std::string_view key, std::string_view bytes)
{
    if (valid_utf8(bytes)) {
        o[key] = bytes;
        return;
    }
    std::string text;
    for (std::size_t i = 0; i < bytes.size();) {
        std::size_t good = 0;
        for (std::size_t len = 1; len <= 4 && i + len <= bytes.size(); ++len)
            if (valid_utf8(bytes.substr(i, len))) {
                good = len;
                break;
            }
        if (good) {
            text.append(bytes.substr(i, good));
            i += good;
        } else {
            text += "\xEF\xBF\xBD";
            ++i;
        }
    }
    o[key] = text;
    o[std::string(key) + "_b64"] = b64(bytes.data(), bytes.size());
}

boost::system::result<std::string, op_error> path_arg(const op_context& c, std::string_view key = "path")
{
    auto* v = c.req.args.if_contains(key);
    if (!v || !v->is_string())
        return agent_failure(errc::bad_request, "\"args." + std::string(key) + "\" must be an absolute path");
    return checked_path(v->get_string());
}

json::object stat_json(const struct statx& sx)
{
    timespec mtime{sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec};
    std::uint64_t dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    json::object o{{"type", type_name(sx.stx_mode)},
                   {"mode", mode_text(sx.stx_mode)},
                   {"size", u64_to_json(sx.stx_size)},
                   {"uid", sx.stx_uid},
                   {"gid", sx.stx_gid},
                   {"mtime", rfc3339(mtime)},
                   {"mtime_ns", u64_to_json(static_cast<std::uint64_t>(mtime.tv_sec) * 1000000000ull +
                                            static_cast<std::uint64_t>(mtime.tv_nsec))},
                   {"ino", u64_to_json(sx.stx_ino)},
                   {"dev", u64_to_json(dev)},
                   {"nlink", sx.stx_nlink},
                   {"mount_root", (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
                                      (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT)}};
    return o;
}

boost::system::result<struct statx, op_error> statx_fd(int fd, const std::string& path)
{
    struct statx sx {};
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx) < 0)
        return os_failure(errno, "statx " + path);
    return sx;
}

// ---- ops ------------------------------------------------------------------------------

// The ids a host uid/gid has inside the user namespace of process `pid`, from its uid_map or
// gid_map; 65534 (the overflow id) when unmapped. Read through the host procfs: the worker's
// procfs fd is /proc/<agent>/task/<tid> of the host's procfs, and ../../.. from it is that
// procfs's root, whatever /proc is inside the container.
std::optional<std::uint32_t> id_in_ns(int procfs_dir, int pid, const char* map, std::uint32_t host_id)
{
    std::string rel = "../../../" + std::to_string(pid) + "/" + map;
    unique_fd fd(::openat(procfs_dir, rel.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
    if (n <= 0)
        return std::nullopt;
    buf[n] = '\0';
    std::istringstream in(buf);
    std::uint64_t inside, outside, count;
    while (in >> inside >> outside >> count)
        if (host_id >= outside && host_id < outside + count)
            return static_cast<std::uint32_t>(inside + (host_id - outside));
    return 65534;
}

op_result stat_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    bool follow = true;
    if (auto* f = c.req.args.if_contains("follow"); f && f->is_bool())
        follow = f->get_bool();
    auto fd = open_in_root(*path, O_PATH, 0, follow);
    if (!fd)
        return fd.error();
    auto sx = statx_fd(fd->get(), *path);
    if (!sx)
        return sx.error();
    auto out = stat_json(*sx);
    // For a pid: target, also the ids as that process sees them (user namespaces).
    if (c.req.ns && c.req.ns->by == selector::form::pid) {
        if (auto u = id_in_ns(c.worker->procfs_dir, c.req.ns->number, "uid_map", sx->stx_uid))
            out["uid_in_ns"] = *u;
        if (auto g = id_in_ns(c.worker->procfs_dir, c.req.ns->number, "gid_map", sx->stx_gid))
            out["gid_in_ns"] = *g;
    }
    return out;
}

op_result readlink_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto fd = open_in_root(*path, O_PATH, 0, false);
    if (!fd)
        return fd.error();
    std::string buf(PATH_MAX, '\0');
    ssize_t n = ::readlinkat(fd->get(), "", buf.data(), buf.size());
    if (n < 0)
        return os_failure(errno == ENOENT ? EINVAL : errno, "readlink " + *path);
    buf.resize(static_cast<std::size_t>(n));
    json::object o;
    put_name(o, "target", buf);
    return o;
}

// Pages through a directory in name order. The cursor is the last name of the previous page in
// hex, so that it is opaque and survives any bytes.
op_result list_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto limit = arg_int(c, "limit", 1000);
    if (!limit || *limit < 1 || *limit > 100000)
        return agent_failure(errc::bad_request, "\"args.limit\" must be from 1 to 100000");
    std::string after;
    if (auto* a = c.req.args.if_contains("after"); a && a->is_string()) {
        auto s = a->get_string();
        auto nibble = [](char ch) { return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1; };
        for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
            int hi = nibble(s[i]), lo = nibble(s[i + 1]);
            if (hi < 0 || lo < 0)
                return agent_failure(errc::bad_request, "\"args.after\" is not a cursor from fs.list");
            after += static_cast<char>(hi * 16 + lo);
        }
        if (s.size() % 2 || after.empty())
            return agent_failure(errc::bad_request, "\"args.after\" is not a cursor from fs.list");
    }
    auto fd = open_in_root(*path, O_RDONLY | O_DIRECTORY);
    if (!fd)
        return fd.error();
    DIR* d = ::fdopendir(fd->get());
    if (!d)
        return os_failure(errno, "fdopendir " + *path);
    fd->release(); // closedir owns it now
    struct entry {
        std::string name;
        unsigned char type;
        ino_t ino;
    };
    std::vector<entry> all;
    errno = 0;
    while (dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n == "." || n == ".." || (!after.empty() && std::string(n) <= after))
            continue;
        all.push_back({std::string(n), e->d_type, e->d_ino});
    }
    int err = errno;
    ::closedir(d);
    if (err)
        return os_failure(err, "readdir " + *path);
    std::sort(all.begin(), all.end(), [](const entry& a, const entry& b) { return a.name < b.name; });
    json::array entries;
    std::size_t n = std::min<std::size_t>(all.size(), static_cast<std::size_t>(*limit));
    for (std::size_t i = 0; i < n; ++i) {
        json::object o;
        put_name(o, "name", all[i].name);
        o["type"] = dirent_type_name(all[i].type);
        o["ino"] = u64_to_json(all[i].ino);
        entries.push_back(std::move(o));
    }
    json::object out{{"entries", std::move(entries)}};
    if (n < all.size())
        out["next"] = hex(all[n - 1].name);
    return out;
}

op_result read_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto offset = arg_int(c, "offset", 0);
    auto length = arg_int(c, "length", static_cast<std::int64_t>(c.worker->cfg->fs_max_read_bytes));
    if (!offset || *offset < 0)
        return agent_failure(errc::bad_request, "\"args.offset\" must be a non-negative integer");
    if (!length || *length < 0)
        return agent_failure(errc::bad_request, "\"args.length\" must be a non-negative integer");
    if (static_cast<std::size_t>(*length) > c.worker->cfg->fs_max_read_bytes)
        return agent_failure(errc::bad_request,
                             "\"args.length\" " + std::to_string(*length) + " is over fs_max_read_bytes (" +
                                 std::to_string(c.worker->cfg->fs_max_read_bytes) +
                                 "); read in pieces, or use fs.open for bulk data");
    auto fd = open_in_root(*path, O_RDONLY);
    if (!fd)
        return fd.error();
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0)
        return os_failure(errno, "fstat " + *path);
    if (S_ISDIR(st.st_mode))
        return os_failure(EISDIR, "read " + *path);
    if (!S_ISREG(st.st_mode))
        return agent_failure(errc::bad_request, *path + " is a " + std::string(type_name(st.st_mode)) +
                                                    ", not a regular file; fs.read refuses it");
    std::string data(static_cast<std::size_t>(*length), '\0');
    std::size_t got = 0;
    while (got < data.size()) {
        ssize_t r = ::pread(fd->get(), data.data() + got, data.size() - got, *offset + static_cast<off_t>(got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return os_failure(errno, "read " + *path);
        }
        if (r == 0)
            break;
        got += static_cast<std::size_t>(r);
    }
    data.resize(got);
    bool eof = static_cast<std::uint64_t>(*offset) + got >= static_cast<std::uint64_t>(st.st_size);
    return json::object{{"data_b64", b64(data.data(), data.size())}, {"eof", eof}, {"size", u64_to_json(st.st_size)}};
}

op_result mounts_op(op_context& c)
{
    // The worker's own mountinfo, through the host-procfs fd it opened before setns: inside a
    // container /proc is the container's procfs, where this thread does not exist.
    unique_fd fd(::openat(c.worker->procfs_dir, "mountinfo", O_RDONLY | O_CLOEXEC));
    if (!fd)
        return os_failure(errno, "open /proc/thread-self/mountinfo");
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0)
            return os_failure(errno, "read mountinfo");
        if (n == 0)
            break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    return parse_mountinfo(text);
}

std::string fstype_name(long magic)
{
    static const std::map<long, const char*> names = {
        {TMPFS_MAGIC, "tmpfs"},   {EXT4_SUPER_MAGIC, "ext4"}, {XFS_SUPER_MAGIC, "xfs"},
        {BTRFS_SUPER_MAGIC, "btrfs"}, {OVERLAYFS_SUPER_MAGIC, "overlay"}, {PROC_SUPER_MAGIC, "proc"},
        {SYSFS_MAGIC, "sysfs"},   {NFS_SUPER_MAGIC, "nfs"},   {RAMFS_MAGIC, "ramfs"},
        {SQUASHFS_MAGIC, "squashfs"}, {CGROUP2_SUPER_MAGIC, "cgroup2"}, {DEVPTS_SUPER_MAGIC, "devpts"},
        {FUSE_SUPER_MAGIC, "fuse"},
    };
    auto it = names.find(magic);
    if (it != names.end())
        return it->second;
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(magic));
    return buf;
}

op_result statvfs_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto fd = open_in_root(*path, O_PATH);
    if (!fd)
        return fd.error();
    struct statvfs v {};
    struct statfs f {};
    if (::fstatvfs(fd->get(), &v) < 0 || ::fstatfs(fd->get(), &f) < 0)
        return os_failure(errno, "statfs " + *path);
    return json::object{{"block_size", v.f_frsize},
                        {"blocks", u64_to_json(v.f_blocks)},
                        {"blocks_free", u64_to_json(v.f_bfree)},
                        {"blocks_avail", u64_to_json(v.f_bavail)},
                        {"files", u64_to_json(v.f_files)},
                        {"files_free", u64_to_json(v.f_ffree)},
                        {"fstype", fstype_name(f.f_type)}};
}

// ---- writes -----------------------------------------------------------------------------

boost::system::result<mode_t, op_error> mode_arg(const op_context& c, mode_t fallback)
{
    auto* m = c.req.args.if_contains("mode");
    if (!m || m->is_null())
        return fallback;
    // The Types section: octal digits in a string; a plain integer is taken as it is.
    if (m->is_int64() && m->get_int64() >= 0 && m->get_int64() <= 07777)
        return static_cast<mode_t>(m->get_int64());
    if (m->is_string()) {
        auto s = m->get_string();
        mode_t v = 0;
        if (s.empty() || s.size() > 5)
            return agent_failure(errc::bad_request, "\"args.mode\" must be octal digits such as \"644\"");
        for (char ch : s) {
            if (ch < '0' || ch > '7')
                return agent_failure(errc::bad_request, "\"args.mode\" must be octal digits such as \"644\"");
            v = v * 8 + static_cast<mode_t>(ch - '0');
        }
        if (v <= 07777)
            return v;
    }
    return agent_failure(errc::bad_request, "\"args.mode\" must be octal digits such as \"644\"");
}

bool flag_arg(const op_context& c, std::string_view key, bool fallback)
{
    auto* v = c.req.args.if_contains(key);
    return v && v->is_bool() ? v->get_bool() : fallback;
}

std::optional<op_error> write_all(int fd, std::string_view data, off_t offset, const std::string& path)
{
    while (!data.empty()) {
        ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return os_failure(errno, "write " + path);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
        offset += n;
    }
    return std::nullopt;
}

std::string temp_name()
{
    // Recognisable after a crash by its prefix; random enough that O_EXCL rarely retries.
    char r[8];
    if (::getrandom(r, sizeof r, 0) != sizeof r)
        std::memset(r, 0, sizeof r);
    return ".nsagent-tmp-" + hex(std::string_view(r, sizeof r));
}

// Writes in place: no rename, so it works on a bind-mounted file, but a reader can see a partial
// state and a crash can leave one.
op_result write_in_place(const std::string& path, std::string_view data, std::optional<off_t> offset, bool create,
                         mode_t mode)
{
    int flags = O_WRONLY | (create ? O_CREAT : 0) | (offset ? 0 : O_TRUNC);
    auto fd = open_in_root(path, flags, mode);
    if (!fd)
        return fd.error();
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0)
        return os_failure(errno, "fstat " + path);
    if (!S_ISREG(st.st_mode))
        return agent_failure(errc::bad_request, path + " is a " + std::string(type_name(st.st_mode)) + ", not a regular file");
    if (auto e = write_all(fd->get(), data, offset.value_or(0), path))
        return *e;
    if (::fsync(fd->get()) < 0)
        return os_failure(errno, "fsync " + path);
    return json::object{{"path", path}, {"bytes", data.size()}, {"atomic", false}};
}

op_result write_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto* d = c.req.args.if_contains("data_b64");
    if (!d || !d->is_string())
        return agent_failure(errc::bad_request, "\"args.data_b64\" must be base64 text");
    auto text = d->get_string();
    std::string data(base64::decoded_size(text.size()) + 3, '\0');
    data.resize(base64::decode(data.data(), text.data(), text.size()).first);
    std::optional<off_t> offset;
    if (auto* o = c.req.args.if_contains("offset"); o && !o->is_null()) {
        if (!o->is_int64() || o->get_int64() < 0)
            return agent_failure(errc::bad_request, "\"args.offset\" must be a non-negative integer");
        offset = static_cast<off_t>(o->get_int64());
    }
    bool create = flag_arg(c, "create", true);
    bool atomic = flag_arg(c, "atomic", !offset);
    bool require_atomic = flag_arg(c, "require_atomic", false);
    if (offset && (atomic || require_atomic))
        return agent_failure(errc::bad_request, "a write at an offset cannot be atomic");
    auto given_mode = mode_arg(c, 0644);
    if (!given_mode)
        return given_mode.error();

    if (!atomic)
        return write_in_place(*path, data, offset, create, *given_mode);

    auto parent = open_parent(*path);
    if (!parent)
        return parent.error();
    // The directory again, readable, for fsync (an O_PATH fd cannot be synced).
    unique_fd dir(::openat(parent->dir.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir)
        return os_failure(errno, "open the directory of " + *path);
    struct statx old {};
    bool exists = ::statx(dir.get(), parent->name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &old) == 0;
    if (!exists && errno != ENOENT)
        return os_failure(errno, "statx " + *path);
    if (!exists && !create)
        return os_failure(ENOENT, "open " + *path);
    if (exists && !S_ISREG(old.stx_mode))
        return agent_failure(errc::bad_request, *path + " is a " + std::string(type_name(old.stx_mode)) + ", not a regular file");
    // rename() over a file that is itself a mount point fails with EBUSY: Docker bind-mounts
    // /etc/hosts, /etc/resolv.conf and /etc/hostname that way. Write those in place.
    bool mount_root = exists && (old.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (old.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    auto in_place_or_busy = [&]() -> op_result {
        if (require_atomic)
            return os_failure(EBUSY, "rename over " + *path + " (it is a mount point; \"require_atomic\" forbids writing in place)");
        return write_in_place(*path, data, std::nullopt, create, *given_mode);
    };
    if (mount_root)
        return in_place_or_busy();

    // Keep the file's mode and owner unless the request names a mode.
    mode_t mode = exists && !c.req.args.contains("mode") ? (old.stx_mode & 07777) : *given_mode;
    std::string tmp;
    unique_fd out;
    for (int tries = 0; tries < 5 && !out; ++tries) {
        tmp = temp_name();
        out.reset(::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
        if (!out && errno != EEXIST)
            return os_failure(errno, "create a temporary file next to " + *path);
    }
    if (!out)
        return os_failure(EEXIST, "create a temporary file next to " + *path);
    auto fail = [&](op_error e) -> op_result {
        ::unlinkat(dir.get(), tmp.c_str(), 0);
        return e;
    };
    if (auto e = write_all(out.get(), data, 0, *path))
        return fail(*e);
    if (::fchmod(out.get(), mode) < 0)
        return fail(os_failure(errno, "fchmod the temporary file"));
    if (exists && ::fchown(out.get(), old.stx_uid, old.stx_gid) < 0)
        return fail(os_failure(errno, "fchown the temporary file"));
    if (::fsync(out.get()) < 0)
        return fail(os_failure(errno, "fsync the temporary file"));
    if (::renameat(dir.get(), tmp.c_str(), dir.get(), parent->name.c_str()) < 0) {
        int err = errno;
        ::unlinkat(dir.get(), tmp.c_str(), 0);
        if (err == EBUSY)
            return in_place_or_busy(); // a mount point statx did not flag
        return os_failure(err, "rename over " + *path);
    }
    if (::fsync(dir.get()) < 0)
        return os_failure(errno, "fsync the directory of " + *path);
    return json::object{{"path", *path}, {"bytes", data.size()}, {"atomic", true}};
}

op_result mkdir_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto mode = mode_arg(c, 0755);
    if (!mode)
        return mode.error();
    bool parents = flag_arg(c, "parents", false);
    std::vector<std::string> todo{*path};
    if (parents) {
        todo.clear();
        for (std::size_t i = 1; i <= path->size(); ++i)
            if (i == path->size() || (*path)[i] == '/')
                todo.push_back(path->substr(0, i));
    }
    bool created = false;
    for (auto& p : todo) {
        auto parent = open_parent(p);
        if (!parent)
            return parent.error();
        if (::mkdirat(parent->dir.get(), parent->name.c_str(), *mode) == 0) {
            created = true;
            continue;
        }
        if (errno == EEXIST && parents) {
            struct stat st {};
            if (::fstatat(parent->dir.get(), parent->name.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode))
                continue;
            return os_failure(ENOTDIR, "mkdir " + p);
        }
        return os_failure(errno, "mkdir " + p);
    }
    return json::object{{"path", *path}, {"created", created}};
}

// Removes the tree under `dir` without following symlinks or leaving its filesystem.
std::optional<op_error> remove_tree(int dir, dev_t dev, const std::string& where)
{
    int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return os_failure(errno, "open " + where);
    DIR* d = ::fdopendir(fd);
    if (!d) {
        ::close(fd);
        return os_failure(errno, "fdopendir " + where);
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d))
        if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..")
            names.emplace_back(e->d_name);
    std::optional<op_error> err;
    for (auto& n : names) {
        struct stat st {};
        auto path = where + "/" + n;
        if (::fstatat(dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
            err = os_failure(errno, "stat " + path);
            break;
        }
        if (st.st_dev != dev) {
            err = os_failure(EXDEV, "remove " + path + " (another filesystem is mounted there; not crossing it)");
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = ::openat(dirfd(d), n.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                err = os_failure(errno, "open " + path);
                break;
            }
            err = remove_tree(sub, dev, path);
            ::close(sub);
            if (err)
                break;
            if (::unlinkat(dirfd(d), n.c_str(), AT_REMOVEDIR) < 0) {
                err = os_failure(errno, "rmdir " + path);
                break;
            }
        } else if (::unlinkat(dirfd(d), n.c_str(), 0) < 0) {
            err = os_failure(errno, "unlink " + path);
            break;
        }
    }
    ::closedir(d);
    return err;
}

op_result remove_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto parent = open_parent(*path);
    if (!parent)
        return parent.error();
    struct stat st {};
    if (::fstatat(parent->dir.get(), parent->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return os_failure(errno, "stat " + *path);
    if (S_ISDIR(st.st_mode)) {
        if (flag_arg(c, "recursive", false)) {
            unique_fd top(::openat(parent->dir.get(), parent->name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!top)
                return os_failure(errno, "open " + *path);
            if (auto e = remove_tree(top.get(), st.st_dev, *path))
                return *e;
        }
        if (::unlinkat(parent->dir.get(), parent->name.c_str(), AT_REMOVEDIR) < 0)
            return os_failure(errno, "rmdir " + *path);
    } else if (::unlinkat(parent->dir.get(), parent->name.c_str(), 0) < 0) {
        return os_failure(errno, "unlink " + *path);
    }
    return json::object{{"path", *path}, {"removed", true}};
}

op_result rename_op(op_context& c)
{
    auto from = path_arg(c, "from");
    if (!from)
        return from.error();
    auto to = path_arg(c, "to");
    if (!to)
        return to.error();
    auto a = open_parent(*from);
    if (!a)
        return a.error();
    auto b = open_parent(*to);
    if (!b)
        return b.error();
    if (::renameat(a->dir.get(), a->name.c_str(), b->dir.get(), b->name.c_str()) < 0)
        return os_failure(errno, "rename " + *from + " to " + *to);
    return json::object{{"from", *from}, {"to", *to}, {"renamed", true}};
}

op_result symlink_op(op_context& c)
{
    auto target = arg_string(c, "target");
    if (!target)
        return target.error();
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto parent = open_parent(*path);
    if (!parent)
        return parent.error();
    // The target is stored as given; reading through the link later resolves under the
    // namespace's root again, so it cannot lead out.
    if (::symlinkat(target->c_str(), parent->dir.get(), parent->name.c_str()) < 0)
        return os_failure(errno, "symlink " + *path);
    return json::object{{"path", *path}, {"target", *target}};
}

op_result chmod_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    if (!c.req.args.contains("mode"))
        return agent_failure(errc::bad_request, "missing \"args.mode\"");
    auto mode = mode_arg(c, 0);
    if (!mode)
        return mode.error();
    // fchmod needs a real fd (not O_PATH) on Linux 6.1; O_NONBLOCK keeps a FIFO from blocking.
    auto fd = open_in_root(*path, O_RDONLY);
    if (!fd)
        return fd.error();
    if (::fchmod(fd->get(), *mode) < 0)
        return os_failure(errno, "chmod " + *path);
    return json::object{{"path", *path}, {"mode", mode_text(*mode)}};
}

op_result chown_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    auto uid = arg_int(c, "uid", -1);
    auto gid = arg_int(c, "gid", -1);
    if (!uid || !gid || *uid < -1 || *gid < -1 || *uid > 0xfffffffeLL || *gid > 0xfffffffeLL)
        return agent_failure(errc::bad_request, "\"args.uid\" and \"args.gid\" must be ids (-1 keeps one)");
    auto fd = open_in_root(*path, O_PATH, 0, false);
    if (!fd)
        return fd.error();
    if (::fchownat(fd->get(), "", static_cast<uid_t>(*uid), static_cast<gid_t>(*gid), AT_EMPTY_PATH) < 0)
        return os_failure(errno, "chown " + *path);
    return json::object{{"path", *path}, {"uid", *uid}, {"gid", *gid}};
}

// Bulk data at full speed: the open file itself, as an fd.
op_result open_op(op_context& c)
{
    auto path = path_arg(c);
    if (!path)
        return path.error();
    std::string how = "r";
    if (auto* f = c.req.args.if_contains("flags"); f && f->is_string())
        how = std::string(f->get_string());
    int flags = how == "r" ? O_RDONLY : how == "w" ? O_WRONLY | O_TRUNC : how == "rw" ? O_RDWR : how == "a" ? O_WRONLY | O_APPEND : -1;
    if (flags < 0)
        return agent_failure(errc::bad_request, "\"args.flags\" must be r, w, rw or a");
    if (flag_arg(c, "create", false))
        flags |= O_CREAT;
    auto mode = mode_arg(c, 0644);
    if (!mode)
        return mode.error();
    auto fd = open_in_root(*path, flags, *mode);
    if (!fd)
        return fd.error();
    struct stat st {};
    if (::fstat(fd->get(), &st) < 0)
        return os_failure(errno, "fstat " + *path);
    if (!S_ISREG(st.st_mode))
        return agent_failure(errc::bad_request, *path + " is a " + std::string(type_name(st.st_mode)) + ", not a regular file");
    // Opened O_NONBLOCK for safety; a regular file ignores it, but give the client a plain fd.
    ::fcntl(fd->get(), F_SETFL, ::fcntl(fd->get(), F_GETFL) & ~O_NONBLOCK);
    c.reply_fds.push_back(std::move(*fd));
    return json::object{{"path", *path}, {"flags", how}, {"size", u64_to_json(static_cast<std::uint64_t>(st.st_size))}};
}

} // namespace

namespace {
// Every fs op runs on the namespace's worker, needs a mount namespace, and is checked against
// the client's own permissions.
op_spec fs_op(std::string_view name, op_class cls, op_fn fn)
{
    op_spec s{name, cls, op_site::worker, ns_need::required, ns_type::mnt, fn};
    s.as_client = true;
    return s;
}
} // namespace

void register_fs_ops(op_registry& r)
{
    r.add(fs_op("fs.stat", op_class::read, &stat_op));
    r.add(fs_op("fs.list", op_class::read, &list_op));
    r.add(fs_op("fs.read", op_class::read, &read_op));
    r.add(fs_op("fs.readlink", op_class::read, &readlink_op));
    r.add(fs_op("fs.mounts", op_class::read, &mounts_op));
    r.add(fs_op("fs.statvfs", op_class::read, &statvfs_op));
    r.add(fs_op("fs.write", op_class::write, &write_op));
    r.add(fs_op("fs.mkdir", op_class::write, &mkdir_op));
    r.add(fs_op("fs.remove", op_class::write, &remove_op));
    r.add(fs_op("fs.rename", op_class::write, &rename_op));
    r.add(fs_op("fs.symlink", op_class::write, &symlink_op));
    r.add(fs_op("fs.chmod", op_class::write, &chmod_op));
    r.add(fs_op("fs.chown", op_class::write, &chown_op));
    r.add(fs_op("fs.open", op_class::fd, &open_op));
}

} // namespace nsagent
