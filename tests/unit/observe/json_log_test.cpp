// The JSON line log format: one object per line, fields in a fixed order, the trace ID lifted
// out of a message that names one, secrets redacted before the sink, bad UTF-8 replaced.
#include <lakemesh/observe/log.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace lakemesh::observe {
namespace {

std::vector<nlohmann::json> lines_of(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string text;
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, f)) {
        text.append(buf, n);
    }
    std::vector<nlohmann::json> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        out.push_back(nlohmann::json::parse(line));
    }
    return out;
}

TEST(json_log, one_object_per_line_with_level_component_message_and_trace) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    logger log(make_json_sink(f, log_level::info), "mesh");
    log.add_secret("s3cret-token");
    log.debug("not written: below the level");
    log.info("started \"quoted\"\nsecond line");
    log.warn(
        "call to service 'stock': 3 attempt(s): upstream status "
        "[trace 4bf92f3577b34da6a3ce929d0e0e4736] with s3cret-token inside");
    log.with_component("consul").error(std::string("bad \xff byte"));
    const auto lines = lines_of(f);
    std::fclose(f);
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[0]["level"], "info");
    EXPECT_EQ(lines[0]["component"], "mesh");
    EXPECT_EQ(lines[0]["message"], "started \"quoted\"\nsecond line");
    EXPECT_FALSE(lines[0].contains("trace_id"));
    const std::string time = lines[0]["time"];
    EXPECT_EQ(time.size(), 24u) << time;  // 2026-12-05T13:00:00.123Z
    EXPECT_EQ(time.back(), 'Z');
    EXPECT_EQ(lines[1]["level"], "warn");
    EXPECT_EQ(lines[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    const std::string msg = lines[1]["message"];
    EXPECT_EQ(msg.find("s3cret-token"), std::string::npos) << msg;
    EXPECT_NE(msg.find("<redacted>"), std::string::npos) << msg;
    EXPECT_EQ(lines[2]["component"], "consul");
    EXPECT_EQ(lines[2]["level"], "error");
}

TEST(json_log, a_secret_is_redacted_as_written_and_percent_encoded) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    logger log(make_json_sink(f, log_level::info), "consul");
    log.add_secret("a+b/c=d");
    log.add_secret("a+b/c=d");  // twice: still one set of forms
    log.info("GET /v1/kv/x?token=a%2Bb%2Fc%3Dd failed");
    log.info("GET /v1/kv/x?token=a%2bb%2fc%3dd failed");
    log.info("header a+b/c=d");
    log.info("unrelated a%2Bb and c=d");
    const auto lines = lines_of(f);
    std::fclose(f);
    ASSERT_EQ(lines.size(), 4u);
    EXPECT_EQ(lines[0]["message"], "GET /v1/kv/x?token=<redacted> failed");
    EXPECT_EQ(lines[1]["message"], "GET /v1/kv/x?token=<redacted> failed");
    EXPECT_EQ(lines[2]["message"], "header <redacted>");
    EXPECT_EQ(lines[3]["message"], "unrelated a%2Bb and c=d");
}

TEST(json_log, off_writes_nothing) {
    std::FILE* f = std::tmpfile();
    ASSERT_NE(f, nullptr);
    logger log(make_json_sink(f, log_level::off), "mesh");
    log.error("nothing");
    EXPECT_TRUE(lines_of(f).empty());
    std::fclose(f);
}

}  // namespace
}  // namespace lakemesh::observe
