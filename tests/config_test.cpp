#include "config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <set>

using namespace nsagent;

namespace {

std::string write_tmp(const std::string& text)
{
    char tmpl[] = "/tmp/nsat-config-XXXXXX";
    int fd = ::mkstemp(tmpl);
    ::close(fd);
    std::ofstream(tmpl) << text;
    return tmpl;
}

TEST(Config, MissingDefaultFileMeansDefaults)
{
    auto c = load_config("/nonexistent/nsagent.json", false);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->queue_depth, 64u);
    EXPECT_EQ(c->max_workers, 1024u);
    EXPECT_EQ(c->idle_timeout_s, 300u);
    EXPECT_EQ(c->max_request_bytes, 1u << 20);
    EXPECT_FALSE(load_config("/nonexistent/nsagent.json", true));
}

TEST(Config, KeysOverrideDefaults)
{
    auto p = write_tmp(R"({"queue_depth": 3, "max_workers": 9, "socket": "/tmp/x.sock"})");
    auto c = load_config(p, true);
    ::unlink(p.c_str());
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->queue_depth, 3u);
    EXPECT_EQ(c->max_workers, 9u);
    EXPECT_EQ(c->socket_path, "/tmp/x.sock");
}

TEST(Config, PolicyRulesParseInOrder)
{
    auto p = write_tmp(R"({"policy": [{"uid": 65534, "allow": ["read"]},
                                      {"group": "root", "allow": ["read", "fd"], "namespaces": ["name:ci-*", "owner:self"]}]})");
    auto c = load_config(p, true);
    ::unlink(p.c_str());
    ASSERT_TRUE(c) << c.error();
    ASSERT_EQ(c->policy.size(), 2u);
    EXPECT_EQ(c->policy[0].uid, 65534u);
    EXPECT_EQ(c->policy[1].gid, 0u);
    EXPECT_EQ(c->policy[1].allow, (std::set<std::string>{"read", "fd"}));
    EXPECT_EQ(c->policy[1].namespaces.size(), 2u);
}

TEST(Config, InvalidFilesNameTheProblem)
{
    struct {
        const char* text;
        const char* expect;
    } cases[] = {
        {"{", "not valid JSON"},
        {"[]", "JSON object"},
        {R"({"queue_dpeth": 3})", "unknown key \"queue_dpeth\""},
        {R"({"queue_depth": "3"})", "\"queue_depth\""},
        {R"({"queue_depth": 0})", "between"},
        {R"({"socket": "relative"})", "absolute"},
        {R"({"policy": [{"uid": 1, "allow": ["everything"]}]})", "read, write, fd and capture"},
        {R"({"policy": [{"allow": ["read"]}]})", "needs \"uid\""},
        {R"({"policy": [{"user": "nsat-no-such-user", "allow": ["read"]}]})", "no user named"},
        {R"({"policy": [{"uid": 1, "namespaces": ["ci-*"]}]})", "name:GLOB"},
        {R"({"policy": [{"uid": 1, "alow": ["read"]}]})", "unknown key \"alow\""},
    };
    for (auto& c : cases) {
        auto p = write_tmp(c.text);
        auto r = load_config(p, true);
        ::unlink(p.c_str());
        ASSERT_FALSE(r) << c.text;
        EXPECT_NE(r.error().find(c.expect), std::string::npos) << r.error();
        EXPECT_NE(r.error().find(p), std::string::npos) << "names the file: " << r.error();
    }
}

} // namespace
