// The admin page in a real browser: Debian's headless chromium loads it from a running
// admin_server, runs its script (which fetches /status), and the rendered DOM must show the
// partition table with the right owners, with data escaped; a screenshot is kept as a test
// artifact ($LAKEMESH_ARTIFACT_DIR, else artifacts/ in the working directory). Skipped when
// chromium is not installed, unless LAKEMESH_REQUIRE_BROWSER=1.
#include <lakemesh/observe/admin_server.hpp>

#include "headless_browser.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <thread>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;

const char* const owners[] = {"a", "b", "c", "a", "b", "c", "a", "b"};

/// A mesh's status with 8 partitions owned by a, b and c, and text that must not become markup.
std::string fixed_status(bool with_partitions) {
    std::string table;
    for (int i = 0; i < 8; ++i) {
        table += std::string(i == 0 ? "" : ",") + R"({"partition":)" + std::to_string(i) +
                 R"(,"owner":")" + owners[i] + R"(","state":"active","token":")" +
                 std::to_string(10 + i) + R"(.1"})";
    }
    const std::string partitions =
        with_partitions ? R"({"cluster":"lake","count":8,"owned_here":3,"table":[)" + table + "]}"
                        : "null";
    return R"({"service":{"name":"lake","id":"lake-a","ready":true,"not_ready_reason":""},)"
           R"("consul":{"address":"127.0.0.1:8500","last_error":""},)"
           R"("members":[{"node":"a","address":"127.0.0.1:9101","weight":1.0},)"
           R"({"node":"b","address":"127.0.0.1:9102","weight":1.0},)"
           R"({"node":"c","address":"127.0.0.1:9103","weight":2.0}],)"
           R"("partitions":)" +
           partitions +
           R"(,"services":[{"name":"stock","breaker":"open","bulkhead_in_use":1,"calls":10,)"
           R"("failures":4,"endpoints":[{"address":"127.0.0.1:9000","healthy":true,)"
           R"("ejected":false,"in_flight":1},{"address":"127.0.0.1:9001","healthy":false,)"
           R"("ejected":true,"in_flight":0}]}],)"
           R"("last_errors":[{"at":"2026-12-05T11:00:00Z",)"
           R"("what":"<b id=\"injected\">bold</b><script>alert(1)</script>"}]})";
}

/// The text of the first element after `marker` (up to the next tag).
std::string text_after(const std::string& dom, std::size_t from, std::string_view marker) {
    const auto at = dom.find(marker, from);
    if (at == std::string::npos) {
        return "<missing>";
    }
    const auto open = dom.find('>', at);
    const auto close = dom.find('<', open);
    return dom.substr(open + 1, close - open - 1);
}

/// The opening tag of the element with `id`.
std::string tag_of(const std::string& dom, std::string_view id) {
    const auto at = dom.find("id=\"" + std::string(id) + "\"");
    if (at == std::string::npos) {
        return {};
    }
    const auto begin = dom.rfind('<', at);
    return dom.substr(begin, dom.find('>', at) - begin + 1);
}

class admin_page : public ::testing::Test {
  protected:
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::optional<observe::admin_server> server;
    std::thread runner;

    void SetUp() override {
        if (find_chromium().empty()) {
            const char* require = std::getenv("LAKEMESH_REQUIRE_BROWSER");
            if (require != nullptr && std::string_view(require) == "1") {
                FAIL() << "chromium is not installed and LAKEMESH_REQUIRE_BROWSER=1 "
                          "(apt-get install chromium, or set LAKEMESH_CHROMIUM)";
            }
            GTEST_SKIP() << "chromium is not installed (apt-get install chromium); "
                            "set LAKEMESH_REQUIRE_BROWSER=1 to make this a failure";
        }
    }

    void TearDown() override {
        if (runner.joinable()) {
            std::promise<void> done;
            asio::post(io, [&] {
                server.reset();
                done.set_value();
            });
            done.get_future().wait();
            work.reset();
            runner.join();
        }
    }

    /// Serves `status` (any function: a fixed text here, a running mesh's status elsewhere)
    /// on an io_context thread, so that the browser's requests are answered while the test
    /// waits for it.
    std::string serve(std::function<std::string()> status) {
        observe::admin_source src;
        src.status_json = std::move(status);
        src.ready = [](std::string&) { return true; };
        src.metrics = [] { return std::string(); };
        observe::admin_config cfg;
        cfg.enabled = true;
        server.emplace(io.get_executor(), cfg, src);
        diagnostics diag;
        const auto ec = server->start(diag);
        EXPECT_FALSE(ec) << diag.client_message();
        runner = std::thread([this] { io.run(); });
        return "http://127.0.0.1:" + std::to_string(server->port()) + "/";
    }

    static std::string artifact(const std::string& name) {
        const char* dir = std::getenv("LAKEMESH_ARTIFACT_DIR");
        return (std::filesystem::path(dir != nullptr && *dir != '\0' ? dir : "artifacts") / name)
            .string();
    }
};

TEST_F(admin_page, renders_the_partition_table_in_a_browser) {
    const auto url = serve([] { return fixed_status(true); });
    const auto png = artifact("admin_page.png");
    error_code ec;
    std::string log;
    const auto dom = render_dom_with_chromium(url, png, ec, &log);
    ASSERT_FALSE(ec) << ec.message() << "\n" << log;

    EXPECT_EQ(text_after(dom, 0, "id=\"ready\""), "ready") << dom;
    EXPECT_EQ(text_after(dom, 0, "id=\"service\""), "lakemesh: lake (lake-a)");
    for (int i = 0; i < 8; ++i) {
        const auto row = dom.find("<tr data-partition=\"" + std::to_string(i) + "\"");
        ASSERT_NE(row, std::string::npos) << "no row for partition " << i << " in\n" << dom;
        EXPECT_EQ(text_after(dom, row, "class=\"owner\""), owners[i]) << "partition " << i;
        EXPECT_EQ(text_after(dom, row, "class=\"state\""), "active");
        EXPECT_EQ(text_after(dom, row, "class=\"token\""), std::to_string(10 + i) + ".1");
    }
    EXPECT_EQ(dom.find("data-partition=\"8\""), std::string::npos);
    EXPECT_NE(tag_of(dom, "no-partitions").find("hidden"), std::string::npos);

    // Members, endpoints (one row each) and the breaker are there.
    for (const char* member : {"127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"}) {
        EXPECT_NE(dom.find(member), std::string::npos) << member;
    }
    EXPECT_NE(dom.find(">127.0.0.1:9000<"), std::string::npos);
    EXPECT_NE(dom.find(">ejected<"), std::string::npos);
    EXPECT_NE(dom.find("class=\"breaker open\">open<"), std::string::npos);

    // Data is text, never markup.
    EXPECT_EQ(dom.find("<b id=\"injected\""), std::string::npos);
    EXPECT_EQ(dom.find("<script>alert"), std::string::npos);
    EXPECT_NE(dom.find("&lt;b id=\"injected\"&gt;bold&lt;/b&gt;&lt;script&gt;"), std::string::npos)
        << dom;

    std::ifstream in(png, std::ios::binary);
    ASSERT_TRUE(in) << "no screenshot at " << png << "\n" << log;
    char magic[8] = {};
    in.read(magic, sizeof magic);
    EXPECT_EQ(std::string(magic, sizeof magic), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_GT(std::filesystem::file_size(png), 1000u);
}

TEST_F(admin_page, says_no_partitions_when_there_are_none) {
    const auto url = serve([] { return fixed_status(false); });
    error_code ec;
    std::string log;
    const auto dom = render_dom_with_chromium(url, "", ec, &log);
    ASSERT_FALSE(ec) << ec.message() << "\n" << log;
    EXPECT_EQ(text_after(dom, 0, "id=\"ready\""), "ready") << dom;
    EXPECT_EQ(tag_of(dom, "no-partitions").find("hidden"), std::string::npos) << dom;
    EXPECT_EQ(text_after(dom, 0, "id=\"no-partitions\""), "no partitions");
    EXPECT_NE(tag_of(dom, "partitions").find("hidden"), std::string::npos) << dom;
    EXPECT_EQ(dom.find("data-partition="), std::string::npos);
}

}  // namespace
}  // namespace lakemesh::test
