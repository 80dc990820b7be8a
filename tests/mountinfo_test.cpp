// The mountinfo parser on kernel-shaped text, including escapes, optional fields and junk.
#include "mountinfo.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

namespace json = boost::json;
using namespace nsagent;

TEST(Mountinfo, ParsesOptionalFieldsEscapesAndPropagation)
{
    auto m = parse_mountinfo("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"
                             "40 36 0:5 / /proc rw - proc proc rw\n");
    ASSERT_EQ(m.size(), 2u) << json::serialize(m);
    auto& a = m[0].as_object();
    EXPECT_EQ(a.at("mount_id").as_int64(), 36);
    EXPECT_EQ(a.at("parent_id").as_int64(), 35);
    EXPECT_EQ(a.at("mount_point").as_string(), "/mnt 2");
    EXPECT_EQ(a.at("propagation").as_string(), "slave,shared");
    EXPECT_EQ(a.at("fstype").as_string(), "ext3");
    EXPECT_EQ(a.at("super_options").as_string(), "rw,errors=continue");
    EXPECT_EQ(m[1].as_object().at("propagation").as_string(), "private");
}

TEST(Mountinfo, MalformedLinesAreSkippedNotFatal)
{
    auto m = parse_mountinfo("x y 0:1 / / rw - tmpfs t rw\n"   // ids not numbers
                             "1 2 0:1 / / rw tmpfs t rw\n"     // no separator
                             "1 2 0:1 / - tmpfs\n"             // too few fields
                             "\n\\\\\\ \n"
                             "7 1 0:9 / /ok rw - tmpfs t rw"); // last line without '\n'
    ASSERT_EQ(m.size(), 1u) << json::serialize(m);
    EXPECT_EQ(m[0].as_object().at("mount_point").as_string(), "/ok");
}
