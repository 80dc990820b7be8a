// nsctl's text output: aligned tables and human-readable sizes, the same in every command.
#pragma once

#include <string>
#include <vector>

namespace nsagent {

// Each column as wide as its widest cell, two spaces apart, the first row being the header.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// 1536 -> "1.5K": binary multiples, as df -h and ls -h print them.
std::string human_bytes(double bytes);

} // namespace nsagent
