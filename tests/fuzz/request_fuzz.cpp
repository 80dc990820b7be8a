// libFuzzer target: the agent's front end, bytes in, frames out, no namespace ops. The stream
// is split into lines by frame_reader, each line goes through parse_request, and the frame the
// agent would answer with (an error frame, or an ok frame echoing the args) must be one line of
// valid JSON. Any crash, sanitizer report or invalid frame is a finding.
#include "nsagent/frame_reader.hpp"
#include "nsagent/protocol.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace json = boost::json;
using namespace nsagent;

namespace {

void must_be_one_json_line(const std::string& frame)
{
    if (frame.empty() || frame.back() != '\n' || frame.find('\n') != frame.size() - 1)
        std::abort();
    boost::system::error_code ec;
    auto v = json::parse(std::string_view(frame).substr(0, frame.size() - 1), ec);
    if (ec || !v.is_object() || !v.as_object().contains("id") || !v.as_object().contains("ok"))
        std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    frame_reader reader(64 * 1024);
    auto buf = reader.prepare(size);
    std::copy(data, data + size, buf.begin());
    reader.commit(size, {});
    for (int i = 0; i < 10000; ++i) {
        frame_reader::line line;
        auto st = reader.next(line);
        if (st != frame_reader::status::line)
            break;
        json::value id;
        auto rq = parse_request(line.text, id);
        if (!rq) {
            must_be_one_json_line(error_frame(id, rq.error()));
            continue;
        }
        if (rq->ns)
            (void)json::serialize(to_json(*rq->ns));
        must_be_one_json_line(ok_frame(rq->id, rq->args, rq->fds));
    }
    return 0;
}
