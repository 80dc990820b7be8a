#include "nsagent/frame_reader.hpp"

#include "nsagent/scm_rights.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

using namespace nsagent;

namespace {

void feed(frame_reader& r, std::string_view bytes, std::vector<unique_fd> fds = {})
{
    auto span = r.prepare(bytes.size() + 16);
    std::memcpy(span.data(), bytes.data(), bytes.size());
    r.commit(bytes.size(), std::move(fds));
}

unique_fd devnull()
{
    return unique_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

bool fd_open(int fd)
{
    return ::fcntl(fd, F_GETFD) >= 0;
}

TEST(FrameReader, SplitsLinesAcrossReadsAndSkipsBlankOnes)
{
    frame_reader r(1024);
    frame_reader::line l;
    feed(r, "{\"a\":");
    EXPECT_EQ(r.next(l), frame_reader::status::need_more);
    feed(r, "1}\n\n  \n{\"b\":2}\r\n{\"c\"");
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_EQ(l.text, "{\"a\":1}");
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_EQ(l.text, "{\"b\":2}");
    EXPECT_EQ(r.next(l), frame_reader::status::need_more);
}

TEST(FrameReader, LineOverTheCapIsTooLargeEvenBeforeItsNewline)
{
    frame_reader r(8);
    frame_reader::line l;
    feed(r, "0123456789");
    EXPECT_EQ(r.next(l), frame_reader::status::too_large);
    frame_reader r2(8);
    feed(r2, "0123456789\n");
    EXPECT_EQ(r2.next(l), frame_reader::status::too_large);
}

TEST(FrameReader, FdsBelongToTheLastLineStartingInTheirRead)
{
    frame_reader r(1024);
    frame_reader::line l;
    std::vector<unique_fd> fds;
    fds.push_back(devnull());
    int raw = fds.back().get();
    // One read: an earlier frame's bytes, then the frame that carried the fd.
    feed(r, "{\"id\":1}\n{\"id\":2,\"fds\":1}\n", std::move(fds));
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_EQ(l.text, "{\"id\":1}");
    EXPECT_TRUE(l.fds.empty());
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    ASSERT_EQ(l.fds.size(), 1u);
    EXPECT_EQ(l.fds[0].get(), raw);
}

TEST(FrameReader, FdsArriveWithTheFirstPartOfASplitFrame)
{
    frame_reader r(1024);
    frame_reader::line l;
    std::vector<unique_fd> fds;
    fds.push_back(devnull());
    feed(r, "{\"id\":2,", std::move(fds));
    EXPECT_EQ(r.next(l), frame_reader::status::need_more);
    feed(r, "\"fds\":1}\n{\"id\":3}\n");
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_EQ(l.fds.size(), 1u);
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_TRUE(l.fds.empty());
}

TEST(FrameReader, UnclaimedFdsAreClosed)
{
    frame_reader r(1024);
    frame_reader::line l;
    std::vector<unique_fd> fds;
    fds.push_back(devnull());
    int raw = fds.back().get();
    feed(r, "\n", std::move(fds)); // a blank line carrying an fd
    feed(r, "{\"id\":1}\n");
    ASSERT_EQ(r.next(l), frame_reader::status::line);
    EXPECT_TRUE(l.fds.empty());
    EXPECT_FALSE(fd_open(raw));
    EXPECT_EQ(r.queued_fds(), 0u);
}

// The kernel case the protocol is designed for: one recvmsg returns the bytes of an earlier
// frame together with the next frame's SCM_RIGHTS fds.
TEST(FrameReader, RealSocketDeliversEarlierBytesWithLaterFds)
{
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    unique_fd a(sv[0]), b(sv[1]);
    boost::system::error_code ec;
    send_with_fds(a.get(), "{\"id\":1}\n", {}, 0, ec);
    ASSERT_FALSE(ec);
    auto fd = devnull();
    int list[] = {fd.get()};
    send_with_fds(a.get(), "{\"id\":2,\"fds\":1}\n", list, 0, ec);
    ASSERT_FALSE(ec);
    send_with_fds(a.get(), "{\"id\":3}\n", {}, 0, ec);
    ASSERT_FALSE(ec);

    frame_reader r(1024);
    std::vector<std::pair<std::string, std::size_t>> got;
    std::size_t reads = 0;
    while (got.size() < 3 && reads < 10) {
        std::vector<unique_fd> fds;
        auto span = r.prepare(4096);
        auto n = recv_with_fds(b.get(), span, fds, 0, ec);
        ASSERT_FALSE(ec);
        r.commit(n, std::move(fds));
        ++reads;
        frame_reader::line l;
        while (r.next(l) == frame_reader::status::line)
            got.emplace_back(std::string(l.text), l.fds.size());
    }
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].second, 0u);
    EXPECT_EQ(got[1].second, 1u);
    EXPECT_EQ(got[2].second, 0u);
}

} // namespace
