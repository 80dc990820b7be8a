// Aligned text columns for nsctl's tables: each column as wide as its widest cell, two spaces
// apart, the first row being the header.
#pragma once

#include <string>
#include <vector>

namespace nsagent {

std::string format_table(const std::vector<std::vector<std::string>>& rows);

} // namespace nsagent
