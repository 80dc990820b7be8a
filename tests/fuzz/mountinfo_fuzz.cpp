// libFuzzer target: the mountinfo parser. Whatever the text, no crash, no sanitizer report, and
// the result serialises.
#include "mountinfo.hpp"

#include <boost/json/serialize.hpp>

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    auto parsed = nsagent::parse_mountinfo(std::string_view(reinterpret_cast<const char*>(data), size));
    (void)boost::json::serialize(parsed);
    return 0;
}
