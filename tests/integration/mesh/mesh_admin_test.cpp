// The admin endpoint of a running mesh: two nodes own a cluster's partitions, node a serves the
// admin endpoint. /healthz, /readyz, /metrics and /status answer from the mesh itself, and
// Debian's headless chromium renders the page with the partition table as the registries see it
// (screenshot kept as artifacts/mesh_admin_page.png, or in $LAKEMESH_ARTIFACT_DIR).
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "headless_browser.hpp"
#include "promtool.hpp"
#include "raw_http_client.hpp"
#include "run_future.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <optional>
#include <thread>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class mesh_admin : public ::testing::Test {
  protected:
    static constexpr std::uint32_t P = 8;
    consul_target target;
    asio::io_context io;
    std::string cluster = unique_name("lake");
    std::deque<mesh_integrator> nodes;
    std::thread runner;

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
        return test::run_until(io, done, limit);
    }

    void add_node(const std::string& id, std::uint16_t port, bool admin) {
        mesh_config cfg;
        cfg.consul = target.client_config();
        cfg.service_name = cluster + "-" + id;
        cfg.port = port;
        auto rc = partition::registry_config::fast_failover(cluster, id);
        rc.partitions = P;
        rc.register_partition_services = false;
        cfg.partitions = rc;
        cfg.admin.enabled = admin;
        auto& m = nodes.emplace_back(io, cfg);
        m.async_start([](error_code ec) { ASSERT_FALSE(ec) << ec.message(); });
    }

    bool settled() {
        std::size_t owned = 0;
        for (auto& n : nodes) {
            if (!n.ready() || !n.partitions()->settled()) {
                return false;
            }
            owned += n.partitions()->owned_count();
        }
        // The table node a's page shows must name the owners too.
        const auto snap = nodes[0].partition_table()->snapshot();
        if (owned != P || !snap) {
            return false;
        }
        for (std::uint32_t p = 0; p < P; ++p) {
            if (!snap->owners[p].owned || owner_of(p).empty() ||
                snap->owners[p].node != owner_of(p)) {
                return false;
            }
        }
        return true;
    }

    /// The node whose registry holds partition p.
    std::string owner_of(std::uint32_t p) {
        for (auto& n : nodes) {
            if (n.partitions()->token_of(p) != 0) {
                return n.partitions()->config().node_id;
            }
        }
        return {};
    }

    void TearDown() override {
        if (runner.joinable()) {
            io.stop();
            runner.join();
            io.restart();
        }
        for (auto& n : nodes) {
            std::optional<error_code> stopped;
            n.async_stop([&](error_code ec) { stopped = ec; });
            run_until([&] { return stopped.has_value(); }, 10s);
        }
    }
};

TEST_F(mesh_admin, serves_health_readiness_metrics_status_and_the_page) {
    add_node("a", 9301, true);
    add_node("b", 9302, false);
    ASSERT_TRUE(run_until([&] { return settled(); })) << "the partitions never settled";
    EXPECT_EQ(nodes[1].admin_port(), 0) << "off unless enabled";
    const auto port = nodes[0].admin_port();
    ASSERT_NE(port, 0);
    std::map<std::uint32_t, std::string> owners;
    for (std::uint32_t p = 0; p < P; ++p) {
        owners[p] = owner_of(p);
    }

    // From here the io_context runs on its own thread: the browser and the raw client block.
    auto guard = asio::make_work_guard(io);
    runner = std::thread([this] { io.run(); });

    raw_http_client http(port);
    auto health = http.request("GET", "/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200u);
    auto ready = http.request("GET", "/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200u) << ready->body;
    auto metrics = http.request("GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200u);
    EXPECT_EQ(sample_value(metrics->body, "lakemesh_ready"), 1.0) << metrics->body;
    EXPECT_TRUE(sample_value(metrics->body, "lakemesh_partitions_owned").has_value());
    if (const auto promtool = find_promtool(); !promtool.empty()) {
        auto problems = promtool_problems(promtool, metrics->body);
        EXPECT_FALSE(problems.has_value()) << *problems;
    }
    auto status = http.request("GET", "/status");
    ASSERT_TRUE(status);
    ASSERT_EQ(status->status, 200u);
    const auto doc = nlohmann::json::parse(status->body);
    EXPECT_EQ(doc["service"]["ready"], true);
    EXPECT_EQ(doc["members"].size(), 2u) << status->body;
    ASSERT_EQ(doc["partitions"]["table"].size(), P) << status->body;
    for (std::uint32_t p = 0; p < P; ++p) {
        EXPECT_EQ(doc["partitions"]["table"][p]["owner"], owners[p]) << p;
    }
    auto missing = http.request("GET", "/nope");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404u);

    if (find_chromium().empty()) {
        const char* require = std::getenv("LAKEMESH_REQUIRE_BROWSER");
        if (require != nullptr && std::string_view(require) == "1") {
            FAIL() << "chromium is not installed and LAKEMESH_REQUIRE_BROWSER=1";
        }
        GTEST_SKIP() << "chromium is not installed (apt-get install chromium): the page was "
                        "NOT checked in a browser";
    }
    const char* dir = std::getenv("LAKEMESH_ARTIFACT_DIR");
    const auto png = (std::filesystem::path(dir != nullptr && *dir != '\0' ? dir : "artifacts") /
                      "mesh_admin_page.png")
                         .string();
    error_code ec;
    std::string log;
    const auto dom =
        render_dom_with_chromium("http://127.0.0.1:" + std::to_string(port) + "/", png, ec, &log);
    ASSERT_FALSE(ec) << ec.message() << "\n" << log;
    for (std::uint32_t p = 0; p < P; ++p) {
        const auto row = dom.find("<tr data-partition=\"" + std::to_string(p) + "\"");
        ASSERT_NE(row, std::string::npos) << "no row for partition " << p << " in\n" << dom;
        const auto cell = dom.find("class=\"owner\"", row);
        ASSERT_NE(cell, std::string::npos);
        const auto open = dom.find('>', cell);
        const auto close = dom.find('<', open);
        EXPECT_EQ(dom.substr(open + 1, close - open - 1), owners[p]) << "partition " << p;
    }
    EXPECT_TRUE(std::filesystem::exists(png)) << log;
}

TEST_F(mesh_admin, a_non_loopback_admin_address_without_a_token_fails_the_start) {
    mesh_config cfg;
    cfg.consul = target.client_config();
    cfg.admin.enabled = true;
    cfg.admin.address = "0.0.0.0";
    auto& m = nodes.emplace_back(io, cfg);
    std::optional<error_code> started;
    m.async_start([&](error_code ec) { started = ec; });
    ASSERT_TRUE(run_until([&] { return started.has_value(); }));
    EXPECT_EQ(*started, make_error_code(validation_errc::invalid_configuration));
    EXPECT_EQ(m.admin_port(), 0);
}

}  // namespace
}  // namespace lakemesh::test
