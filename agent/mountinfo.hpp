// /proc/PID/mountinfo, parsed: a separate piece so that fs.mounts, the tests and the fuzzer share
// one parser for text the kernel writes (proc(5), "mountinfo").
#pragma once

#include <boost/json/array.hpp>

#include <string>
#include <string_view>

namespace nsagent {

// One object per well-formed line: mount_id, parent_id, major_minor, root, mount_point,
// options, fstype, source, super_options and propagation ("shared", "slave", "unbindable",
// comma-joined, or "private"). Malformed lines are skipped, never fatal.
boost::json::array parse_mountinfo(std::string_view text);

// Undoes mountinfo's \ooo escapes of space, tab, newline and backslash.
std::string unescape_mountinfo(std::string_view s);

} // namespace nsagent
