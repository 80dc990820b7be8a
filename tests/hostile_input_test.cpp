// Hostile input at the door: 10,000 random byte strings and malformed or ill-typed JSON lines
// leave the agent serving, every one of them gets exactly one well-formed reply, and no fd or
// thread is left behind.
#include "support/test_env.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <random>
#include <set>

namespace json = boost::json;
using namespace nsagent;
using namespace nsagent::test;

namespace {

class hostile_lines {
public:
    explicit hostile_lines(std::uint32_t seed) : rng_(seed) {}

    std::string next(int i)
    {
        switch (pick(9)) {
        case 0: return random_bytes();
        case 1: return truncated(i);
        case 2: return ill_typed(i);
        case 3: return deep(pick(2000) + 1);
        case 4: return odd_scalars();
        case 5: return bad_unicode(i);
        case 6: return unknown_op(i);
        case 7: return missing_namespace(i);
        default: return fd_mismatch(i);
        }
    }

private:
    std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }

    std::string random_bytes()
    {
        std::string s(pick(300) + 1, '\0');
        for (auto& ch : s) {
            ch = static_cast<char>(pick(256));
            if (ch == '\n')
                ch = '{';
        }
        return s;
    }
    std::string id(int i) { return "\"h" + std::to_string(i) + "\""; }
    std::string truncated(int i)
    {
        std::string full = "{\"id\":" + id(i) +
                           ",\"op\":\"ns.ping\",\"ns\":{\"type\":\"net\",\"name\":\"nsat-none\"},\"timeout_ms\":1000}";
        return full.substr(0, pick(full.size() - 1) + 1);
    }
    std::string ill_typed(int i)
    {
        static const char* forms[] = {
            R"({"id":1.5,"op":"agent.ping"})",
            R"({"id":[1],"op":"agent.ping"})",
            R"({"id":{"a":1},"op":"agent.ping"})",
            R"({"id":true,"op":"agent.ping"})",
            R"({"id":%ID%,"op":42})",
            R"({"id":%ID%,"op":""})",
            R"({"id":%ID%,"op":"agent.ping","args":[1,2]})",
            R"({"id":%ID%,"op":"ns.ping","ns":"blue"})",
            R"({"id":%ID%,"op":"ns.ping","ns":{"type":"pid","name":"x"}})",
            R"({"id":%ID%,"op":"ns.ping","ns":{"type":"net"}})",
            R"({"id":%ID%,"op":"ns.ping","ns":{"type":"net","fd":-1}})",
            R"({"id":%ID%,"op":"ns.ping","ns":{"type":"net","pid":-7}})",
            R"({"id":%ID%,"op":"ns.ping","ns":{"type":"net","path":"relative/path"}})",
            R"({"id":%ID%,"op":"agent.ping","timeout_ms":-5})",
            R"({"id":%ID%,"op":"agent.ping","timeout_ms":1e300})",
            R"({"id":%ID%,"op":"agent.ping","fds":"two"})",
            R"({"id":%ID%,"op":"agent.ping","fds":4294967297})",
            R"({"id":%ID%,"op":"agent.cancel","args":{"target":{"x":1}}})",
            R"({"id":%ID%,"op":"fs.read","ns":{"type":"mnt","name":"nsat-none"},"args":{"path":7}})",
            R"({"id":%ID%,"op":"net.links","ns":{"type":"net","name":"../../etc"}})",
            R"({"id":%ID%,"op":"agent.ping"}{"id":2})",
            R"({"id":%ID%,"id":%ID%,"op":"agent.ping"})",
        };
        std::string s = forms[pick(std::size(forms))];
        for (auto at = s.find("%ID%"); at != std::string::npos; at = s.find("%ID%"))
            s.replace(at, 4, id(i));
        return s;
    }
    static std::string deep(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }
    std::string odd_scalars()
    {
        static const char* forms[] = {"null", "true", "0", "-0", "1e999999", "18446744073709551616123",
                                      "\"just a string\"", "[]", "{}", " ", "\t\r", "\xef\xbb\xbf{}", "{\"id\":}"};
        return forms[pick(std::size(forms))];
    }
    std::string bad_unicode(int i)
    {
        static const char* forms[] = {"\\ud800", "\\udfff\\ud800", "\\u00", "\xc0\xaf", "\xed\xa0\x80", "\xff\xfe"};
        return "{\"id\":" + id(i) + ",\"op\":\"" + forms[pick(std::size(forms))] + "\"}";
    }
    std::string unknown_op(int i)
    {
        static const char alphabet[] = "abcxyz._-";
        std::string op = "zz";
        for (std::size_t n = pick(20); n > 0; --n)
            op += alphabet[pick(sizeof alphabet - 1)];
        return "{\"id\":" + id(i) + ",\"op\":\"" + op + "\",\"args\":{\"x\":[1,{\"y\":null}]}}";
    }
    std::string missing_namespace(int i)
    {
        static const char* ops[] = {"ns.ping", "net.links", "net.routes", "fs.stat", "fs.list", "ns.release"};
        return "{\"id\":" + id(i) + ",\"op\":\"" + ops[pick(std::size(ops))] +
               "\",\"ns\":{\"type\":\"net\",\"name\":\"nsat-absent-" + std::to_string(pick(1000)) + "\"}}";
    }
    std::string fd_mismatch(int i)
    {
        return "{\"id\":" + id(i) + ",\"op\":\"ns.ping\",\"fds\":" + std::to_string(pick(3) + 1) +
               ",\"ns\":{\"type\":\"net\",\"fd\":0}}";
    }

    std::mt19937 rng_;
};

// docs/protocol.md: a trailing \r is dropped, and blank lines (only spaces and tabs) are
// ignored. Every other line gets exactly one reply.
bool expects_reply(std::string line)
{
    if (!line.empty() && line.back() == '\r')
        line.pop_back();
    return line.find_first_not_of(" \t") != std::string::npos;
}

TEST(HostileInput, TenThousandMalformedLinesEachGetOneWellFormedReplyAndLeakNothing)
{
    agent_process a;
    // The baseline: only this probe connected.
    auto probe = a.connect();
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1; }));
    const int fds_before = a.fd_count();
    const long threads_before = a.thread_count();

    const std::uint32_t seed = 20261204;
    hostile_lines gen(seed);
    const std::set<std::string> codes = {"bad_request", "unknown_op", "ns_not_found", "too_large", "permission_denied",
                                         "ns_type_mismatch", "os_error", "timeout"};
    std::map<std::string, int> by_code;
    {
        auto c = a.connect();
        constexpr int total = 10000, batch = 100;
        int replies = 0, ok = 0, blank = 0;
        for (int sent = 0; sent < total; sent += batch) {
            int expected = 0;
            for (int i = sent; i < sent + batch; ++i) {
                auto line = gen.next(i);
                expected += expects_reply(line);
                ASSERT_FALSE(c.send_line(line)) << "seed " << seed << " line " << i;
            }
            blank += batch - expected;
            for (int i = 0; i < expected; ++i) {
                auto f = c.next_frame(10000);
                ASSERT_TRUE(f) << "reply " << replies << " (seed " << seed << "): " << f.error().message();
                auto& o = f->value; // the client already rejects a frame that is not a JSON object
                ASSERT_TRUE(o.contains("id")) << json::serialize(o);
                ASSERT_TRUE(o.contains("ok")) << json::serialize(o);
                if (f->ok()) {
                    ++ok;
                } else {
                    auto code = f->error_code();
                    EXPECT_TRUE(codes.contains(code)) << json::serialize(o);
                    EXPECT_FALSE(f->error_message().empty()) << json::serialize(o);
                    ++by_code[code];
                }
                ++replies;
            }
        }
        EXPECT_EQ(replies + blank, total);
        EXPECT_GT(blank, 0) << "the generator makes some blank lines, which get no reply";
        EXPECT_GT(by_code["bad_request"], total / 4) << "most lines are malformed";
        EXPECT_GT(by_code["unknown_op"], 0);
        EXPECT_GT(by_code["ns_not_found"], 0);
        // Nothing more comes: exactly one reply per line.
        EXPECT_FALSE(c.next_frame(200)) << "a line got a second reply";
        // Still serving, on the same connection and on a new one.
        EXPECT_TRUE(call(c, "agent.ping").ok());
        auto other = a.connect();
        EXPECT_TRUE(call(other, "agent.ping").ok());
        RecordProperty("ok_replies", ok);
    } // the hostile connection closes
    ASSERT_TRUE(wait_until([&] { return stats(probe).at("connections").as_int64() == 1; }));
    EXPECT_EQ(a.fd_count(), fds_before) << "no fd is left behind";
    EXPECT_EQ(a.thread_count(), threads_before);
    EXPECT_TRUE(stats(probe).at("workers").as_array().empty());
}

} // namespace
