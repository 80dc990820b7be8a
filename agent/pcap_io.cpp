#include "pcap_io.hpp"

#include <pcap/pcap.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace nsagent::pkt {

std::optional<link_kind> link_of_dlt(int dlt)
{
    switch (dlt) {
    case DLT_EN10MB: return link_ethernet;
    case DLT_LINUX_SLL: return link_sll;
    case DLT_LINUX_SLL2: return link_sll2;
    case DLT_RAW:
    case DLT_IPV4:
    case DLT_IPV6: return link_raw;
    default: return std::nullopt;
    }
}

std::optional<std::string> read_capture(int fd, std::size_t max_frames, std::size_t max_bytes,
                                        const std::function<bool(frame_batch&)>& each)
{
    int own = ::dup(fd);
    if (own < 0)
        return std::string("dup: ") + std::strerror(errno);
    FILE* f = ::fdopen(own, "rb");
    if (!f) {
        ::close(own);
        return std::string("fdopen: ") + std::strerror(errno);
    }
    char err[PCAP_ERRBUF_SIZE] = "";
    // Nanosecond timestamps whatever the file holds; pcap_close closes `f`.
    pcap_t* p = ::pcap_fopen_offline_with_tstamp_precision(f, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p) {
        std::fclose(f);
        return std::string("not a pcap or pcapng capture: ") + err;
    }
    struct closer {
        pcap_t* p;
        ~closer() { ::pcap_close(p); }
    } guard{p};
    int dlt = ::pcap_datalink(p);
    auto link = link_of_dlt(dlt);
    if (!link) {
        const char* name = ::pcap_datalink_val_to_name(dlt);
        return "link type " + std::string(name ? name : std::to_string(dlt)) +
               " is not supported (Ethernet, Linux cooked SLL/SLL2 and raw IP are)";
    }
    frame_batch b;
    b.link = *link;
    pcap_pkthdr* h;
    const u_char* data;
    for (;;) {
        int rc = ::pcap_next_ex(p, &h, &data);
        if (rc == PCAP_ERROR_BREAK)
            break; // end of file
        if (rc != 1)
            return std::string("reading the capture: ") + ::pcap_geterr(p);
        // Hand the batch over before it would pass either bound: the GPU's buffers are that size.
        if (b.size() && (b.size() >= max_frames || b.data.size() + h->caplen > max_bytes)) {
            if (!each(b))
                return std::nullopt;
            b.clear();
        }
        auto ts = static_cast<std::uint64_t>(h->ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(h->ts.tv_usec);
        b.add(ts, data, h->caplen, h->len);
    }
    if (b.size())
        each(b);
    return std::nullopt;
}

pcap_pipe_writer::pcap_pipe_writer(pcap* source, int pipe_fd, int stop_fd, int linger_ms)
    : fd_(pipe_fd), stop_fd_(stop_fd), linger_ms_(linger_ms)
{
    cookie_io_functions_t io{};
    io.write = [](void* c, const char* buf, std::size_t n) -> ssize_t { return cookie_write(c, buf, n); };
    FILE* f = ::fopencookie(this, "w", io);
    if (f)
        dumper_ = ::pcap_dump_fopen(source, f); // writes the file header now
    if (!dumper_) {
        if (f)
            std::fclose(f);
        ok_ = false;
    }
}

pcap_pipe_writer::~pcap_pipe_writer()
{
    if (dumper_)
        ::pcap_dump_close(dumper_); // flushes through cookie_write, closes the FILE
    ::close(fd_);
}

void pcap_pipe_writer::write(const pcap_pkthdr* h, const std::uint8_t* data)
{
    if (ok_)
        ::pcap_dump(reinterpret_cast<u_char*>(dumper_), h, data);
}

void pcap_pipe_writer::flush()
{
    if (ok_)
        ::pcap_dump_flush(dumper_);
}

long pcap_pipe_writer::cookie_write(void* self, const char* buf, std::size_t n)
{
    auto* w = static_cast<pcap_pipe_writer*>(self);
    if (!w->ok_)
        return static_cast<long>(n); // discard: nobody reads any more
    std::size_t done = 0;
    while (done < n) {
        ssize_t k = ::write(w->fd_, buf + done, n - done);
        if (k > 0) {
            done += static_cast<std::size_t>(k);
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN) { // EPIPE: the reader closed its end
            w->ok_ = false;
            return static_cast<long>(n);
        }
        pollfd fds[2] = {{w->fd_, POLLOUT, 0}, {w->stop_fd_, POLLIN, 0}};
        pollfd probe{w->stop_fd_, POLLIN, 0};
        bool stopping = ::poll(&probe, 1, 0) > 0;
        // Normally wait for the reader as long as it takes (stopping wakes us); once stopping,
        // give it `linger_ms` to take the rest.
        int rc = ::poll(fds, stopping ? 1 : 2, stopping ? w->linger_ms_ : -1);
        if (rc == 0 || (!stopping && fds[1].revents)) {
            if (rc == 0) {
                w->ok_ = false; // the reader did not take the end of the stream in time
                return static_cast<long>(n);
            }
            continue; // a stop arrived: loop round, now with the linger bound
        }
    }
    return static_cast<long>(n);
}

} // namespace nsagent::pkt
