// A real Prometheus server (Debian's `prometheus` package) scrapes a running mesh's admin
// endpoint on loopback, and its query API then returns the mesh's series. Skipped when the
// prometheus binary is missing, unless LAKEMESH_REQUIRE_PROMETHEUS=1 (CI).
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "raw_http_client.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

extern char** environ;

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

std::string find_prometheus() {
    if (const char* p = std::getenv("PROMETHEUS")) {
        return p;
    }
    for (const char* candidate : {"/usr/bin/prometheus", "/usr/local/bin/prometheus"}) {
        if (::access(candidate, X_OK) == 0) {
            return candidate;
        }
    }
    return {};
}

/// A port nobody listens on right now (bound, read, closed).
std::uint16_t free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

/// prometheus as a child process in a temporary directory; killed and removed at the end.
class prometheus_process {
  public:
    prometheus_process(const std::string& binary, std::uint16_t target_port)
        : dir_(std::filesystem::temp_directory_path() /
               ("lakemesh_prometheus_" + std::to_string(::getpid()))),
          port_(free_port()) {
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_ / "data");
        {
            std::ofstream cfg(dir_ / "prometheus.yml");
            cfg << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                << "scrape_configs:\n  - job_name: lakemesh\n    static_configs:\n"
                << "      - targets: ['127.0.0.1:" << target_port << "']\n";
        }
        const std::string log = (dir_ / "prometheus.log").string();
        std::vector<std::string> args{binary, "--config.file=" + (dir_ / "prometheus.yml").string(),
                                      "--storage.tsdb.path=" + (dir_ / "data").string(),
                                      "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                      "--log.level=warn"};
        std::vector<char*> argv;
        for (auto& a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
            pid_ = -1;
        }
        posix_spawn_file_actions_destroy(&actions);
    }

    ~prometheus_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    bool running() const { return pid_ > 0; }
    std::uint16_t port() const { return port_; }
    std::string log() const {
        std::ifstream in(dir_ / "prometheus.log");
        return {std::istreambuf_iterator<char>(in), {}};
    }

  private:
    std::filesystem::path dir_;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

TEST(mesh_prometheus, a_real_prometheus_scrapes_the_mesh_and_answers_a_query) {
    const auto binary = find_prometheus();
    if (binary.empty()) {
        const char* require = std::getenv("LAKEMESH_REQUIRE_PROMETHEUS");
        if (require != nullptr && std::string_view(require) == "1") {
            FAIL() << "prometheus is not installed and LAKEMESH_REQUIRE_PROMETHEUS=1";
        }
        GTEST_SKIP() << "prometheus is not installed (Debian's 'prometheus' package): the scrape "
                        "was NOT tested";
    }
    consul_target target;
    asio::io_context io;
    mesh_config cfg;
    cfg.consul = target.client_config();
    cfg.admin.enabled = true;
    std::optional<mesh_integrator> mesh;
    mesh.emplace(io, cfg);
    std::optional<error_code> started;
    mesh->async_start([&](error_code ec) { started = ec; });
    const auto until = std::chrono::steady_clock::now() + 10s;
    while ((!started || !mesh->ready()) && std::chrono::steady_clock::now() < until) {
        io.run_for(5ms);
        io.restart();
    }
    ASSERT_TRUE(started.has_value());
    ASSERT_FALSE(*started) << started->message();
    ASSERT_TRUE(mesh->ready()) << mesh->not_ready_reason();
    const auto admin = mesh->admin_port();
    ASSERT_NE(admin, 0);

    auto guard = asio::make_work_guard(io);
    std::thread runner([&] { io.run(); });
    {
        prometheus_process prom(binary, admin);
        ASSERT_TRUE(prom.running());
        // Prometheus scrapes once a second; its query API names the mesh's series once a scrape
        // landed. Poll it (an external process: no event to wait on) for up to 60 s.
        std::string last;
        bool found = false;
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (!found && std::chrono::steady_clock::now() < deadline) {
            raw_http_client http(prom.port());
            if (http.connected()) {
                if (auto a = http.request("GET", "/api/v1/query?query=lakemesh_ready");
                    a && a->status == 200) {
                    last = a->body;
                    const auto doc = nlohmann::json::parse(a->body, nullptr, false);
                    if (!doc.is_discarded() && doc["status"] == "success" &&
                        !doc["data"]["result"].empty()) {
                        const auto& r = doc["data"]["result"][0];
                        EXPECT_EQ(r["metric"]["job"], "lakemesh");
                        EXPECT_EQ(r["value"][1], "1") << a->body;
                        found = true;
                    }
                }
            }
            if (!found) {
                std::this_thread::sleep_for(200ms);
            }
        }
        EXPECT_TRUE(found) << "no lakemesh_ready in Prometheus after 60 s; last answer: " << last
                           << "\nprometheus log:\n"
                           << prom.log();
        // The target is up as Prometheus sees it: every series of a scrape parsed.
        raw_http_client http(prom.port());
        auto up = http.request("GET", "/api/v1/query?query=up");
        ASSERT_TRUE(up);
        EXPECT_NE(up->body.find(R"("value":[)"), std::string::npos) << up->body;
        EXPECT_NE(up->body.find(R"(,"1"])"), std::string::npos) << up->body;
    }
    io.stop();
    runner.join();
    io.restart();
    std::optional<error_code> stopped;
    mesh->async_stop([&](error_code ec) { stopped = ec; });
    const auto stop_until = std::chrono::steady_clock::now() + 10s;
    while (!stopped && std::chrono::steady_clock::now() < stop_until) {
        io.run_for(5ms);
        io.restart();
    }
}

}  // namespace
}  // namespace lakemesh::test
