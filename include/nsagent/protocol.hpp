// The NDJSON wire protocol: request parsing, frame formatting, and the Types encodings
// (docs/protocol.md is the contract; this is its one implementation, shared by agent and clients).
#pragma once

#include "nsagent/error.hpp"
#include "nsagent/selector.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nsagent {

inline constexpr int protocol_version = 1;

// One parsed request line.
struct request {
    boost::json::value id;  // an integer or a string, echoed in every frame for this request
    std::string op;         // "<domain>.<verb>"
    std::optional<selector> ns;
    boost::json::object args;
    std::optional<std::uint32_t> timeout_ms;
    std::uint32_t fds = 0;  // how many queued fds this request consumes
};

// Parses one line (without its '\n'). Errors are bad_request. `id` receives the request's id as
// soon as it could be read, and stays null otherwise, so that the error frame can echo it.
boost::system::result<request, op_error> parse_request(std::string_view line, boost::json::value& id);

boost::system::result<selector, op_error> selector_from_json(const boost::json::value& v);
boost::json::value to_json(const selector& s);

// Frames. Each returns one line ending in '\n'.
std::string ok_frame(const boost::json::value& id, const boost::json::value& result, std::size_t fds = 0);
std::string error_frame(const boost::json::value& id, const op_error& e);
std::string event_frame(const boost::json::value& id, std::string_view kind, boost::json::object fields,
                        std::size_t fds = 0);

// Types: 64-bit unsigned values (inodes, device numbers, nanosecond times) travel as decimal
// strings, as in the proto3 JSON mapping, because many JSON tools round numbers above 2^53.
// Readers accept a string or a non-negative integer.
boost::json::value u64_to_json(std::uint64_t v);
std::optional<std::uint64_t> u64_from_json(const boost::json::value& v);

// Serialises a value to one line without the '\n'.
std::string to_line(const boost::json::value& v);

} // namespace nsagent
