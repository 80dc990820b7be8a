// mountinfo parsing.
#include "mountinfo.hpp"

#include <boost/json/object.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <vector>

namespace nsagent {
namespace json = boost::json;
namespace {

bool octal(char c)
{
    return c >= '0' && c <= '7';
}

bool number(std::string_view s, std::int64_t& out)
{
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

} // namespace

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) && octal(s[i + 2]) && octal(s[i + 3])) {
            out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        } else {
            out += s[i];
        }
    }
    return out;
}

json::array parse_mountinfo(std::string_view text)
{
    json::array out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        auto nl = text.find('\n', pos);
        std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        std::vector<std::string_view> f;
        for (std::size_t i = 0; i < line.size();) {
            auto sp = line.find(' ', i);
            f.push_back(line.substr(i, (sp == std::string_view::npos ? line.size() : sp) - i));
            i = sp == std::string_view::npos ? line.size() : sp + 1;
        }
        // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
        auto dash = std::find(f.begin(), f.end(), "-");
        if (dash == f.end() || dash - f.begin() < 6 || f.end() - dash < 4)
            continue;
        std::string propagation;
        for (auto it = f.begin() + 6; it != dash; ++it) {
            std::string_view tag = it->substr(0, it->find(':'));
            std::string word = tag == "shared" ? "shared" : tag == "master" ? "slave" : tag == "unbindable" ? "unbindable" : "";
            if (!word.empty() && propagation.find(word) == std::string::npos)
                propagation += (propagation.empty() ? "" : ",") + word;
        }
        if (propagation.empty())
            propagation = "private";
        std::int64_t id = 0, parent = 0;
        if (!number(f[0], id) || !number(f[1], parent))
            continue;
        out.push_back(json::object{{"mount_id", id},
                                   {"parent_id", parent},
                                   {"major_minor", f[2]},
                                   {"root", unescape_mountinfo(f[3])},
                                   {"mount_point", unescape_mountinfo(f[4])},
                                   {"options", f[5]},
                                   {"fstype", unescape_mountinfo(dash[1])},
                                   {"source", unescape_mountinfo(dash[2])},
                                   {"super_options", unescape_mountinfo(dash[3])},
                                   {"propagation", propagation}});
    }
    return out;
}

} // namespace nsagent
