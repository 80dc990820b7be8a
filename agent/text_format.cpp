#include "text_format.hpp"

#include <algorithm>
#include <cstdio>

namespace nsagent {

std::string format_table(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<std::size_t> width;
    for (auto& r : rows)
        for (std::size_t i = 0; i < r.size(); ++i) {
            if (width.size() <= i)
                width.push_back(0);
            width[i] = std::max(width[i], r[i].size());
        }
    std::string out;
    for (auto& r : rows) {
        for (std::size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size())
                out += std::string(width[i] - r[i].size() + 2, ' ');
        }
        out += '\n';
    }
    return out;
}

std::string human_bytes(double bytes)
{
    const char* units[] = {"B", "K", "M", "G", "T", "P"};
    int u = 0;
    while (bytes >= 1024 && u < 5) {
        bytes /= 1024;
        ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f%s" : "%.0f%s", bytes, units[u]);
    return buf;
}

} // namespace nsagent
