// Direct replies from workers.
#include "reply_channel.hpp"

#include "nsagent/scm_rights.hpp"

#include <sys/socket.h>

namespace nsagent {

reply_channel::outcome reply_channel::try_write(std::string_view frame, const std::function<bool()>& claim,
                                                const std::function<void()>& before_write)
{
    std::lock_guard lk(mu_);
    if (!open_ || busy_ || !claim())
        return outcome::not_now;
    before_write();
    boost::system::error_code ec;
    auto n = send_with_fds(fd_, frame, {}, MSG_DONTWAIT, ec);
    if (ec && ec != boost::system::errc::resource_unavailable_try_again)
        return outcome::written; // the client is gone; its reader notices the close
    if (n == frame.size())
        return outcome::written;
    // Short write (a full socket buffer): the rest must go before any other frame.
    busy_ = true;
    stash_.assign(frame.substr(n));
    return outcome::stashed;
}

void reply_channel::busy()
{
    std::lock_guard lk(mu_);
    busy_ = true;
}

bool reply_channel::take_stash(std::string& out)
{
    std::lock_guard lk(mu_);
    if (stash_.empty())
        return false;
    out = std::move(stash_);
    stash_.clear();
    return true;
}

bool reply_channel::idle()
{
    std::lock_guard lk(mu_);
    if (!stash_.empty())
        return false;
    busy_ = false;
    return true;
}

void reply_channel::shut()
{
    std::lock_guard lk(mu_);
    open_ = false;
}

} // namespace nsagent
