// One line per event on stderr, key=value fields, with sd-daemon <N> priority prefixes when
// stderr is the journal.
#pragma once

#include <string>
#include <string_view>

namespace nsagent {

enum class log_level { err = 3, warning = 4, notice = 5, info = 6, debug = 7 };

// Events below this level are dropped. Default info.
void set_log_level(log_level l) noexcept;
bool log_enabled(log_level l) noexcept;

// `fields` is already key=value text; values with spaces are quoted by kv().
void log_event(log_level l, std::string_view event, std::string_view fields = {});

// " key=value", quoting the value when it has spaces, quotes or is empty.
std::string kv(std::string_view key, std::string_view value);
std::string kv(std::string_view key, long long value);

} // namespace nsagent
