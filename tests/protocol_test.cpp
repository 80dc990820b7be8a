#include "nsagent/protocol.hpp"

#include "nsagent/error.hpp"

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include <cerrno>

namespace json = boost::json;
using namespace nsagent;

namespace {

errc code_of(const op_error& e)
{
    return wire_code(e.code);
}

TEST(Protocol, ParsesAFullRequest)
{
    json::value id;
    auto r = parse_request(R"({"id":7,"op":"ns.ping","ns":{"type":"net","name":"blue","ino":"4026532291"},)"
                           R"("args":{"x":1},"timeout_ms":250,"fds":1,"future_field":true})",
                           id);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->id, json::value(7));
    EXPECT_EQ(id, json::value(7));
    EXPECT_EQ(r->op, "ns.ping");
    ASSERT_TRUE(r->ns);
    EXPECT_EQ(r->ns->by, selector::form::name);
    EXPECT_EQ(r->ns->text, "blue");
    EXPECT_EQ(r->ns->ino, 4026532291u);
    EXPECT_EQ(r->args.at("x"), json::value(1));
    EXPECT_EQ(r->timeout_ms, 250u);
    EXPECT_EQ(r->fds, 1u);
}

TEST(Protocol, StringIdsAreEchoed)
{
    json::value id;
    auto r = parse_request(R"({"id":"abc","op":"agent.ping"})", id);
    ASSERT_TRUE(r);
    EXPECT_EQ(id, json::value("abc"));
}

struct bad_case {
    const char* line;
    bool id_readable;
};

TEST(Protocol, MalformedLinesAreBadRequestWithIdWhenReadable)
{
    const bad_case cases[] = {
        {"not json", false},
        {"[1,2]", false},
        {"\"str\"", false},
        {R"({"op":"agent.ping"})", false},
        {R"({"id":1.5,"op":"agent.ping"})", false},
        {R"({"id":[1],"op":"agent.ping"})", false},
        {R"({"id":null,"op":"agent.ping"})", false},
        {R"({"id":1})", true},
        {R"({"id":1,"op":""})", true},
        {R"({"id":1,"op":5})", true},
        {R"({"id":1,"op":"agent.ping","args":[]})", true},
        {R"({"id":1,"op":"agent.ping","args":"x"})", true},
        {R"({"id":1,"op":"agent.ping","timeout_ms":0})", true},
        {R"({"id":1,"op":"agent.ping","timeout_ms":-5})", true},
        {R"({"id":1,"op":"agent.ping","timeout_ms":"100"})", true},
        {R"({"id":1,"op":"agent.ping","fds":-1})", true},
        {R"({"id":1,"op":"ns.ping","ns":"blue"})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"type":"net"}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"type":"net","name":"a","pid":3}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"type":"ipc","pid":3}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"type":"mnt","name":"blue"}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"name":"../etc"}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"pid":3}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"type":"net","pid":0}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"path":"relative/path"}})", true},
        {R"({"id":1,"op":"ns.ping","ns":{"path":"/x","ino":-1}})", true},
    };
    for (auto& c : cases) {
        json::value id;
        auto r = parse_request(c.line, id);
        ASSERT_FALSE(r) << c.line;
        EXPECT_EQ(code_of(r.error()), errc::bad_request) << c.line;
        EXPECT_EQ(!id.is_null(), c.id_readable) << c.line;
        EXPECT_FALSE(r.error().message.empty()) << c.line;
    }
}

TEST(Protocol, SelectorFormsRoundTrip)
{
    for (const char* text : {R"({"type":"net","name":"blue"})", R"({"type":"mnt","pid":42})",
                             R"({"path":"/proc/1/ns/mnt"})", R"({"type":"net","fd":0,"ino":"12"})"}) {
        auto v = json::parse(text);
        auto s = selector_from_json(v);
        ASSERT_TRUE(s) << text;
        EXPECT_EQ(to_json(*s), v) << text;
    }
}

TEST(Protocol, U64TravelsAsDecimalStringAndIsReadEitherWay)
{
    EXPECT_EQ(u64_to_json(18446744073709551615ull), json::value("18446744073709551615"));
    EXPECT_EQ(u64_from_json(json::value("18446744073709551615")), 18446744073709551615ull);
    EXPECT_EQ(u64_from_json(json::value(42)), 42u);
    EXPECT_FALSE(u64_from_json(json::value(-1)));
    EXPECT_FALSE(u64_from_json(json::value("12x")));
    EXPECT_FALSE(u64_from_json(json::value("")));
}

TEST(Protocol, FramesAreOneLineAndCarryTheContract)
{
    auto ok = ok_frame(json::value("a"), json::object{{"pong", true}}, 2);
    ASSERT_EQ(ok.back(), '\n');
    EXPECT_EQ(ok.find('\n'), ok.size() - 1);
    auto v = json::parse(ok).as_object();
    EXPECT_EQ(v.at("id"), json::value("a"));
    EXPECT_EQ(v.at("ok"), json::value(true));
    EXPECT_EQ(v.at("fds"), json::value(2));

    auto err = json::parse(error_frame(json::value(3), os_failure(ENOENT, "open /run/netns/x"))).as_object();
    EXPECT_EQ(err.at("ok"), json::value(false));
    auto& e = err.at("error").as_object();
    EXPECT_EQ(e.at("code"), json::value("os_error"));
    EXPECT_EQ(e.at("errno"), json::value(ENOENT));
    EXPECT_EQ(e.at("errno_name"), json::value("ENOENT"));
    EXPECT_NE(e.at("message").as_string().find("open /run/netns/x"), json::string::npos);

    auto busy = json::parse(error_frame(nullptr, agent_failure(errc::busy, "full"))).as_object();
    EXPECT_TRUE(busy.at("id").is_null());
    EXPECT_FALSE(busy.at("error").as_object().contains("errno"));
}

TEST(ErrorMapping, EveryCodeHasAWireNameThatRoundTrips)
{
    for (int i = static_cast<int>(errc::bad_request); i <= static_cast<int>(errc::internal); ++i) {
        auto e = static_cast<errc>(i);
        auto name = to_string(e);
        EXPECT_FALSE(name.empty());
        EXPECT_EQ(errc_from_string(name), e);
        EXPECT_EQ(wire_code(make_error_code(e)), e);
    }
    EXPECT_EQ(wire_code(boost::system::error_code(EPERM, boost::system::system_category())), errc::os_error);
    EXPECT_EQ(errno_name(EPERM), "EPERM");
    EXPECT_EQ(errno_name(100000), "E100000");
}

} // namespace
