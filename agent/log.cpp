// Event logging. Writes whole lines with one write() so lines from threads never interleave.
#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace nsagent {
namespace {

std::atomic<int> level{static_cast<int>(log_level::info)};

// journald sets JOURNAL_STREAM to "dev:ino" of the stream it gave us as stderr; only then are
// <N> prefixes wanted (sd-daemon(3)).
bool stderr_is_journal()
{
    static const bool yes = [] {
        const char* js = std::getenv("JOURNAL_STREAM");
        struct stat st {};
        if (!js || ::fstat(STDERR_FILENO, &st) < 0)
            return false;
        unsigned long long dev = 0, ino = 0;
        return std::sscanf(js, "%llu:%llu", &dev, &ino) == 2 && dev == st.st_dev && ino == st.st_ino;
    }();
    return yes;
}

} // namespace

void set_log_level(log_level l) noexcept { level = static_cast<int>(l); }
bool log_enabled(log_level l) noexcept { return static_cast<int>(l) <= level.load(std::memory_order_relaxed); }

void log_event(log_level l, std::string_view event, std::string_view fields)
{
    if (!log_enabled(l))
        return;
    std::string line;
    line.reserve(32 + event.size() + fields.size());
    if (stderr_is_journal()) {
        line += '<';
        line += static_cast<char>('0' + static_cast<int>(l));
        line += '>';
    }
    line += "event=";
    line += event;
    line += fields;
    line += '\n';
    // Best effort: a full or closed stderr must not take the agent down.
    ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
    (void)r;
}

std::string kv(std::string_view key, std::string_view value)
{
    std::string s = " ";
    s += key;
    s += '=';
    bool quote = value.empty() || value.find_first_of(" \"=\t") != std::string_view::npos;
    if (!quote) {
        s += value;
        return s;
    }
    s += '"';
    for (char c : value) {
        if (c == '"' || c == '\\')
            s += '\\';
        s += (c == '\n' ? ' ' : c);
    }
    s += '"';
    return s;
}

std::string kv(std::string_view key, long long value)
{
    return kv(key, std::to_string(value));
}

} // namespace nsagent
