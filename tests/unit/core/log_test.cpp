#include <lakemesh/observe/log.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace lakemesh::observe {
namespace {

class capture_sink final : public log_sink {
  public:
    bool enabled(log_level l) const noexcept override { return l >= min; }
    void write(log_level l, std::string_view comp, std::string_view msg) override {
        lines.push_back({l, std::string(comp), std::string(msg)});
    }
    struct line {
        log_level level;
        std::string component, message;
    };
    std::vector<line> lines;
    log_level min = log_level::debug;
};

TEST(log, token_never_reaches_the_sink) {
    auto sink = std::make_shared<capture_sink>();
    logger log(sink, "consul");
    log.add_secret("b1e3c9f0-token");
    log.info("PUT /v1/kv/a with X-Consul-Token: b1e3c9f0-token and again b1e3c9f0-token");
    auto child = log.with_component("watch");
    child.warn("token=b1e3c9f0-token");
    ASSERT_EQ(sink->lines.size(), 2u);
    for (const auto& l : sink->lines) {
        EXPECT_EQ(l.message.find("b1e3c9f0-token"), std::string::npos) << l.message;
        EXPECT_NE(l.message.find("<redacted>"), std::string::npos);
    }
    EXPECT_EQ(sink->lines[0].component, "consul");
    EXPECT_EQ(sink->lines[1].component, "watch");
}

TEST(log, level_filter_and_null_logger) {
    auto sink = std::make_shared<capture_sink>();
    sink->min = log_level::warn;
    logger log(sink, "x");
    log.debug("dropped");
    log.info("dropped");
    log.error("kept");
    ASSERT_EQ(sink->lines.size(), 1u);
    EXPECT_EQ(sink->lines[0].level, log_level::error);
    logger quiet;
    EXPECT_FALSE(quiet.enabled(log_level::error));
    quiet.error("goes nowhere");
}

TEST(log, spdlog_sink_is_the_default_sink) {
    auto sink = make_spdlog_sink("lakemesh-test", log_level::warn);
    EXPECT_FALSE(sink->enabled(log_level::info));
    EXPECT_TRUE(sink->enabled(log_level::error));
    logger(sink, "t").warn("spdlog sink works");
}

}  // namespace
}  // namespace lakemesh::observe
