// libpcap at the engine's edges: reading a capture file into frame batches (pkt.analyze), and
// writing a live capture as a standard pcap stream into a pipe that a client reads (pkt.capture).
#pragma once

#include "packet_engine.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

struct pcap;
struct pcap_dumper;
struct pcap_pkthdr;

namespace nsagent::pkt {

// The engine's link type for a libpcap DLT; empty for one the engine does not parse.
std::optional<link_kind> link_of_dlt(int dlt);

// Reads the pcap or pcapng capture on `fd` (the caller keeps `fd`) and hands it over in batches
// of at most `max_frames` frames and `max_bytes` bytes of frame data (a single larger frame
// goes alone); `each` returns false to stop.
// Returns the error (not a capture, an unsupported link type, a read error), or empty.
std::optional<std::string> read_capture(int fd, std::size_t max_frames, std::size_t max_bytes,
                                        const std::function<bool(frame_batch&)>& each);

// A pcap stream into a pipe, through libpcap's own writer (pcap_dump). Writes wait for the reader
// but never past a stop: while `stop_fd` is readable a write waits at most `linger_ms` for the
// reader, so a client that stops reading cannot hold the capture's thread. A reader that went
// away (EPIPE) only ends the stream; the capture and its analysis go on.
class pcap_pipe_writer {
public:
    pcap_pipe_writer(pcap* source, int pipe_fd, int stop_fd, int linger_ms = 1000);
    ~pcap_pipe_writer(); // flushes (bounded as above) and closes the pipe: the reader sees EOF
    pcap_pipe_writer(const pcap_pipe_writer&) = delete;
    pcap_pipe_writer& operator=(const pcap_pipe_writer&) = delete;

    void write(const pcap_pkthdr* h, const std::uint8_t* data);
    void flush();
    // False once the reader is gone or a write gave up.
    bool ok() const noexcept { return ok_; }

private:
    static long cookie_write(void* self, const char* buf, std::size_t n);
    pcap_dumper* dumper_ = nullptr;
    int fd_;
    int stop_fd_;
    int linger_ms_;
    bool ok_ = true;
};

} // namespace nsagent::pkt
