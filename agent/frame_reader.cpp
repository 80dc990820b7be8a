// NDJSON line splitting with positional fd attribution.
#include "nsagent/frame_reader.hpp"

#include "nsagent/scm_rights.hpp"

#include <cstring>

namespace nsagent {

std::span<char> frame_reader::prepare(std::size_t n)
{
    // Compact before growing, so the buffer stays near one line plus one read.
    if (pos_ > 0 && (pos_ == len_ || pos_ > len_ / 2)) {
        std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
        base_ += pos_;
        len_ -= pos_;
        pos_ = 0;
    }
    // The storage only grows: resizing a string zero-fills, and zeroing a 64 KiB read buffer
    // on every read was a measurable share of a small request's cost.
    if (buf_.size() < len_ + n)
        buf_.resize(len_ + n);
    prepared_ = n;
    return {buf_.data() + len_, n};
}

void frame_reader::commit(std::size_t n, std::vector<unique_fd> fds)
{
    if (n > prepared_)
        n = prepared_;
    len_ += n;
    prepared_ = 0;
    std::uint64_t end = base_ + len_;
    // Fds that came with no bytes (a peer sending fds on an empty message) belong to no line;
    // they are kept with an empty range and closed as orphans by the next line.
    if (!fds.empty())
        batches_.push_back({end - n, end, std::move(fds)});
}

std::size_t frame_reader::receive(int sock, int flags, boost::system::error_code& ec, std::size_t chunk)
{
    std::vector<unique_fd> fds;
    auto buf = prepare(chunk);
    auto n = recv_with_fds(sock, buf, fds, flags, ec);
    commit(ec ? 0 : n, std::move(fds));
    return ec ? 0 : n;
}

std::size_t frame_reader::queued_fds() const noexcept
{
    std::size_t n = 0;
    for (auto& b : batches_)
        n += b.fds.size();
    return n;
}

frame_reader::status frame_reader::next(line& out)
{
    for (;;) {
        std::string_view rest(buf_.data() + pos_, len_ - pos_);
        auto nl = rest.find('\n', scan_);
        if (nl == std::string_view::npos) {
            scan_ = rest.size();
            return rest.size() > max_line_ ? status::too_large : status::need_more;
        }
        scan_ = 0;
        if (nl > max_line_)
            return status::too_large;

        std::uint64_t start = base_ + pos_;
        std::uint64_t stop = start + nl + 1; // one past the '\n'
        pos_ += nl + 1;

        // Batches whose read ended at or before this line's start belonged to earlier lines
        // that did not claim them: orphans. Dropping them closes the fds.
        while (!batches_.empty() && batches_.front().end <= start)
            batches_.pop_front();
        // A batch is this line's when the line starts inside its read and is the last line to
        // start there, i.e. no later line starts before the read's end.
        std::vector<unique_fd> fds;
        while (!batches_.empty() && batches_.front().begin <= start && stop >= batches_.front().end) {
            for (auto& fd : batches_.front().fds)
                fds.push_back(std::move(fd));
            batches_.pop_front();
        }

        std::string_view text = rest.substr(0, nl);
        if (!text.empty() && text.back() == '\r')
            text.remove_suffix(1);
        if (text.find_first_not_of(" \t") == std::string_view::npos)
            continue; // blank lines are ignored (their fds, if any, close here)
        out.text = text;
        out.fds = std::move(fds);
        return status::line;
    }
}

} // namespace nsagent
