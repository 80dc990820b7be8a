#include "text_table.hpp"

#include <algorithm>

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

} // namespace nsagent
