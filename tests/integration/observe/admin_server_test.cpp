// The admin endpoint over real sockets on 127.0.0.1: each path's status, type and body, the
// page's headers, refusals (404, 405, 400, 413, 401), the token, a throwing callback, keep-alive
// and pipelining, slow clients, the connection limit and stop. The server runs on an io_context
// driven by a thread of the fixture; the test talks to it with a blocking raw client.
#include <lakemesh/observe/admin_server.hpp>

#include "raw_http_client.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

const std::string status_body =
    R"({"service":{"name":"lake","id":"lake-a","ready":true,"not_ready_reason":""}})";
const std::string metrics_body =
    "# HELP lakemesh_up Up.\n# TYPE lakemesh_up gauge\nlakemesh_up 1\n";
const std::string the_token = "s3cret-Token_value";

/// Keeps every line, to check what was logged.
class capture_sink final : public observe::log_sink {
  public:
    bool enabled(observe::log_level) const noexcept override { return true; }
    void write(observe::log_level, std::string_view, std::string_view message) override {
        std::lock_guard lock(mutex_);
        lines_.emplace_back(message);
    }
    std::vector<std::string> lines() const {
        std::lock_guard lock(mutex_);
        return lines_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> lines_;
};

class admin_server : public ::testing::Test {
  protected:
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    std::thread runner{[this] { io.run(); }};
    std::shared_ptr<capture_sink> sink = std::make_shared<capture_sink>();
    std::optional<observe::admin_server> server;
    std::atomic<bool> ready{true};
    std::atomic<int> status_mode{0};  // 0: good, 1: throws std::exception, 2: throws int, 3: junk
    std::atomic<int> metrics_calls{0};

    ~admin_server() override {
        on_io([this] { server.reset(); });
        work.reset();
        runner.join();
    }

    /// Runs `f` on the io_context's thread and waits for it.
    void on_io(const std::function<void()>& f) {
        std::promise<void> done;
        asio::post(io, [&] {
            f();
            done.set_value();
        });
        done.get_future().wait();
    }

    observe::admin_source source() {
        observe::admin_source src;
        src.metrics = [this] {
            ++metrics_calls;
            return metrics_body;
        };
        src.ready = [this](std::string& reason) {
            if (!ready) {
                reason = "partitions not settled";
            }
            return ready.load();
        };
        src.status_json = [this]() -> std::string {
            switch (status_mode.load()) {
                case 1:
                    throw std::runtime_error("status exploded");
                case 2:
                    throw 42;
                case 3:
                    return "not json {";
                default:
                    return status_body;
            }
        };
        return src;
    }

    observe::admin_config config() {
        observe::admin_config cfg;
        cfg.enabled = true;
        return cfg;
    }

    /// Starts the server on the io thread; returns start()'s error.
    error_code start(const observe::admin_config& cfg, diagnostics* diag_out = nullptr,
                     std::optional<observe::admin_source> src = std::nullopt) {
        error_code ec;
        diagnostics diag;
        on_io([&] {
            server.emplace(io.get_executor(), cfg, src ? *src : source(),
                           observe::logger(sink, "test"));
            ec = server->start(diag);
        });
        if (diag_out != nullptr) {
            *diag_out = diag;
        }
        return ec;
    }

    std::uint16_t port() {
        std::uint16_t p = 0;
        on_io([&] { p = server->port(); });
        return p;
    }

    void start_default() {
        diagnostics diag;
        ASSERT_FALSE(start(config(), &diag)) << diag.client_message();
        ASSERT_NE(port(), 0);
    }

    std::optional<raw_http_answer> get(std::string_view target, std::string_view headers = {}) {
        raw_http_client c(port());
        return c.request("GET", target, headers);
    }
};

TEST_F(admin_server, serves_each_path_with_its_type_and_body) {
    start_default();
    raw_http_client c(port());
    ASSERT_TRUE(c.connected());

    auto health = c.request("GET", "/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200u);
    EXPECT_EQ(health->header("content-type"), "text/plain; charset=utf-8");
    EXPECT_EQ(health->body, "ok\n");

    auto readyz = c.request("GET", "/readyz");
    ASSERT_TRUE(readyz);
    EXPECT_EQ(readyz->status, 200u);
    EXPECT_EQ(readyz->body, "ready\n");

    auto metrics = c.request("GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200u);
    EXPECT_EQ(metrics->header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(metrics->body, metrics_body);

    auto status = c.request("GET", "/status");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->status, 200u);
    EXPECT_EQ(status->header("content-type"), "application/json");
    EXPECT_EQ(status->body, status_body);

    for (const auto* a : {&*health, &*readyz, &*metrics, &*status}) {
        EXPECT_EQ(a->header("cache-control"), "no-store");
        EXPECT_EQ(a->header("x-content-type-options"), "nosniff");
        EXPECT_EQ(a->header("content-length"), std::to_string(a->body.size()));
    }
}

TEST_F(admin_server, page_is_self_contained_with_a_strict_policy) {
    start_default();
    auto page = get("/");
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 200u);
    EXPECT_EQ(page->header("content-type"), "text/html; charset=utf-8");
    EXPECT_EQ(page->header("cache-control"), "no-store");
    EXPECT_EQ(page->header("x-content-type-options"), "nosniff");
    const auto csp = page->header("content-security-policy");
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("script-src 'sha256-"), std::string::npos) << csp;
    EXPECT_NE(csp.find("style-src 'sha256-"), std::string::npos) << csp;
    EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
    const auto& html = page->body;
    EXPECT_NE(html.find("<!DOCTYPE html>"), std::string::npos);
    EXPECT_NE(html.find("id=\"partitions\""), std::string::npos);
    // Nothing loaded from elsewhere, and data never parsed as HTML.
    EXPECT_EQ(html.find("src="), std::string::npos);
    EXPECT_EQ(html.find("href="), std::string::npos);
    EXPECT_EQ(html.find("@import"), std::string::npos);
    EXPECT_EQ(html.find("innerHTML"), std::string::npos);
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
}

TEST_F(admin_server, readyz_answers_503_with_the_reason) {
    start_default();
    ready = false;
    auto a = get("/readyz");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 503u);
    EXPECT_EQ(a->body, "not ready: partitions not settled\n");
}

TEST_F(admin_server, head_sends_the_headers_without_the_body) {
    start_default();
    raw_http_client c(port());
    auto head = c.request("HEAD", "/status");
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200u);
    EXPECT_EQ(head->header("content-length"), std::to_string(status_body.size()));
    EXPECT_EQ(head->header("content-type"), "application/json");
    // Had a body followed, this answer would be read out of it.
    auto next = c.request("GET", "/healthz");
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200u);
    EXPECT_EQ(next->body, "ok\n");
}

TEST_F(admin_server, query_strings_are_ignored) {
    start_default();
    auto a = get("/metrics?name[]=x&debug=1");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200u);
    EXPECT_EQ(a->body, metrics_body);
}

TEST_F(admin_server, unknown_paths_are_404) {
    start_default();
    for (const char* target : {"/nope", "/metrics/", "/status.json", "//status", "/healthz/x"}) {
        auto a = get(target);
        ASSERT_TRUE(a) << target;
        EXPECT_EQ(a->status, 404u) << target;
        EXPECT_EQ(a->header("cache-control"), "no-store");
    }
}

TEST_F(admin_server, other_methods_are_405_and_change_nothing) {
    start_default();
    for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"}) {
        raw_http_client c(port());
        auto a = c.request(method, "/status", "Content-Length: 2\r\n\r\n{}");
        ASSERT_TRUE(a) << method;
        EXPECT_EQ(a->status, 405u) << method;
        EXPECT_EQ(a->header("allow"), "GET, HEAD") << method;
    }
    auto a = raw_http_client(port()).request("POST", "/nope");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 404u);
    EXPECT_EQ(metrics_calls.load(), 0);
}

TEST_F(admin_server, malformed_requests_are_400_and_closed) {
    start_default();
    for (const char* bytes :
         {"GARBAGE\r\n\r\n", "GET /status HTTP/1.1\r\nNo colon here\r\n\r\n",
          "GET /status HTTP/9.9\r\n\r\n", "GET /status HTTP/1.1\r\nContent-Length: x\r\n\r\n"}) {
        raw_http_client c(port());
        ASSERT_TRUE(c.send(bytes));
        auto a = c.read_answer();
        ASSERT_TRUE(a) << bytes;
        EXPECT_EQ(a->status, 400u) << bytes;
        EXPECT_TRUE(c.wait_closed()) << bytes;
    }
    // A target that is not a path is refused too.
    auto a = get("http://elsewhere/status");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 400u);
}

TEST_F(admin_server, oversized_requests_are_413_and_closed) {
    start_default();
    {
        raw_http_client c(port());
        ASSERT_TRUE(c.send("GET /status HTTP/1.1\r\nHost: x\r\nX-Filler: " +
                           std::string(10000, 'a') + "\r\n\r\n"));
        auto a = c.read_answer();
        ASSERT_TRUE(a);
        EXPECT_EQ(a->status, 413u);
        EXPECT_TRUE(c.wait_closed());
    }
    {
        // Head and body together over the limit, each under it.
        raw_http_client c(port());
        ASSERT_TRUE(
            c.send("GET /status HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(4000, 'a') +
                   "\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b')));
        auto a = c.read_answer();
        ASSERT_TRUE(a);
        EXPECT_EQ(a->status, 413u);
        EXPECT_TRUE(c.wait_closed());
    }
    {
        // Just under the limit is fine.
        raw_http_client c(port());
        auto a = c.request("GET", "/healthz", "X-Filler: " + std::string(7000, 'a') + "\r\n");
        ASSERT_TRUE(a);
        EXPECT_EQ(a->status, 200u);
    }
}

TEST_F(admin_server, a_non_loopback_address_needs_a_token) {
    auto cfg = config();
    cfg.address = "0.0.0.0";
    diagnostics diag;
    EXPECT_EQ(start(cfg, &diag), validation_errc::invalid_configuration);
    EXPECT_NE(diag.client_message().find("admin.token"), std::string::npos)
        << diag.client_message();
    EXPECT_EQ(port(), 0);

    cfg.address = "localhost";
    EXPECT_EQ(start(cfg, &diag), validation_errc::invalid_configuration);
    EXPECT_NE(diag.client_message().find("admin.address"), std::string::npos)
        << diag.client_message();

    cfg.address = "127.0.0.1";
    cfg.token = "has a space";
    EXPECT_EQ(start(cfg, &diag), validation_errc::invalid_configuration);
    EXPECT_EQ(diag.client_message().find("has a space"), std::string::npos);

    // Loopback in either family, and v4-mapped loopback, need none.
    for (const char* address : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
        cfg = config();
        cfg.address = address;
        const auto ec = start(cfg, &diag);
        if (ec == boost::system::errc::address_not_available ||
            ec == boost::asio::error::address_family_not_supported) {
            continue;  // no IPv6 in this sandbox
        }
        EXPECT_FALSE(ec) << address << ": " << diag.client_message();
    }

    cfg = config();
    cfg.address = "0.0.0.0";
    cfg.token = the_token;
    EXPECT_FALSE(start(cfg, &diag)) << diag.client_message();
    EXPECT_NE(port(), 0);
}

TEST_F(admin_server, start_reports_bind_errors_and_a_second_start) {
    start_default();
    diagnostics diag;
    error_code ec;
    on_io([&] { ec = server->start(diag); });
    EXPECT_EQ(ec, validation_errc::invalid_argument);

    auto cfg = config();
    cfg.port = port();
    std::optional<observe::admin_server> other;
    on_io([&] {
        other.emplace(io.get_executor(), cfg, source());
        ec = other->start(diag);
    });
    EXPECT_EQ(ec, boost::asio::error::address_in_use) << ec.message();
    EXPECT_NE(diag.client_message().find(std::to_string(cfg.port)), std::string::npos)
        << diag.client_message();
    on_io([&] { other.reset(); });
}

TEST_F(admin_server, with_a_token_only_healthz_is_open) {
    auto cfg = config();
    cfg.token = the_token;
    diagnostics diag;
    ASSERT_FALSE(start(cfg, &diag)) << diag.client_message();

    for (const char* target : {"/metrics", "/status", "/readyz", "/", "/nope"}) {
        auto none = get(target);
        ASSERT_TRUE(none) << target;
        EXPECT_EQ(none->status, 401u) << target;
        EXPECT_EQ(none->header("www-authenticate"), "Bearer realm=\"lakemesh-admin\"");
        for (const std::string& wrong :
             {std::string("Authorization: Bearer wrong\r\n"),
              "Authorization: Bearer " + the_token + "x\r\n",
              "Authorization: Bearer " + the_token.substr(1) + "\r\n",
              "Authorization: Basic " + the_token + "\r\n", std::string("Authorization: \r\n"),
              std::string("Authorization: Bearer \r\n")}) {
            auto a = get(target, wrong);
            ASSERT_TRUE(a) << target << " " << wrong;
            EXPECT_EQ(a->status, 401u) << target << " " << wrong;
        }
    }
    auto health = get("/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 200u);

    const std::string right = "Authorization: Bearer " + the_token + "\r\n";
    auto metrics = get("/metrics", right);
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200u);
    EXPECT_EQ(metrics->body, metrics_body);
    auto status = get("/status", "Authorization: bearer " + the_token + "\r\n");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->status, 200u);
    auto page = get("/", right);
    ASSERT_TRUE(page);
    EXPECT_EQ(page->status, 200u);

    on_io([&] { server->stop(); });
    for (const auto& line : sink->lines()) {
        EXPECT_EQ(line.find(the_token), std::string::npos) << line;
    }
}

TEST_F(admin_server, a_throwing_callback_is_500_and_the_server_keeps_serving) {
    start_default();
    raw_http_client c(port());
    for (int mode : {1, 2, 3}) {
        status_mode = mode;
        auto a = c.request("GET", "/status");
        ASSERT_TRUE(a) << mode;
        EXPECT_EQ(a->status, 500u) << mode;
        EXPECT_EQ(a->body.find("exploded"), std::string::npos);
    }
    status_mode = 0;
    auto a = c.request("GET", "/status");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200u);
    EXPECT_EQ(a->body, status_body);

    observe::admin_source src;
    src.metrics = []() -> std::string { throw std::bad_alloc(); };
    src.ready = [](std::string&) -> bool { throw std::logic_error("no"); };
    on_io([&] { server.reset(); });
    diagnostics diag;
    ASSERT_FALSE(start(config(), &diag, src)) << diag.client_message();
    raw_http_client d(port());
    for (const char* target : {"/metrics", "/readyz", "/status"}) {
        auto r = d.request("GET", target);
        ASSERT_TRUE(r) << target;
        // An unset callback: that path is not there.
        EXPECT_EQ(r->status, std::string_view(target) == "/status" ? 404u : 500u) << target;
    }
    auto h = d.request("GET", "/healthz");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200u);
}

TEST_F(admin_server, keeps_the_connection_alive_and_answers_pipelined_requests) {
    start_default();
    raw_http_client c(port());
    for (int i = 0; i < 2; ++i) {
        auto a = c.request("GET", "/metrics");
        ASSERT_TRUE(a) << i;
        EXPECT_EQ(a->status, 200u);
        EXPECT_EQ(a->body, metrics_body);
    }
    ASSERT_TRUE(
        c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: "
               "x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto first = c.read_answer();
    auto second = c.read_answer();
    auto third = c.read_answer();
    ASSERT_TRUE(first && second && third);
    EXPECT_EQ(first->body, "ok\n");
    EXPECT_EQ(second->body, status_body);
    EXPECT_EQ(third->body, "ready\n");
    EXPECT_EQ(third->header("connection"), "close");
    EXPECT_TRUE(c.wait_closed());
}

TEST_F(admin_server, http_1_0_without_keep_alive_is_closed_after_the_answer) {
    start_default();
    raw_http_client c(port());
    ASSERT_TRUE(c.send("GET /healthz HTTP/1.0\r\n\r\n"));
    auto a = c.read_answer();
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200u);
    EXPECT_TRUE(c.wait_closed());
}

TEST_F(admin_server, slow_and_idle_clients_are_dropped_after_the_read_timeout) {
    auto cfg = config();
    cfg.read_timeout = 200ms;
    diagnostics diag;
    ASSERT_FALSE(start(cfg, &diag)) << diag.client_message();

    const auto begin = std::chrono::steady_clock::now();
    raw_http_client slow(port());
    ASSERT_TRUE(slow.send("GET /status HTTP/1.1\r\nHost: x\r\n"));
    raw_http_client idle(port());
    EXPECT_TRUE(slow.wait_closed(5s));
    EXPECT_TRUE(idle.wait_closed(5s));
    EXPECT_GE(std::chrono::steady_clock::now() - begin, 150ms);

    // Between requests on a kept-alive connection too.
    raw_http_client kept(port());
    auto a = kept.request("GET", "/healthz");
    ASSERT_TRUE(a);
    EXPECT_TRUE(kept.wait_closed(5s));
}

TEST_F(admin_server, connections_beyond_the_limit_are_closed_at_once) {
    auto cfg = config();
    cfg.max_connections = 2;
    diagnostics diag;
    ASSERT_FALSE(start(cfg, &diag)) << diag.client_message();

    auto first = std::make_unique<raw_http_client>(port());
    raw_http_client second(port());
    ASSERT_TRUE(first->request("GET", "/healthz"));
    ASSERT_TRUE(second.request("GET", "/healthz"));

    raw_http_client third(port());
    ASSERT_TRUE(third.connected());  // the kernel accepts; the server closes
    EXPECT_TRUE(third.wait_closed(5s));

    // Once one closes, a new connection is served again (as soon as the server sees the close).
    first.reset();
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    bool served = false;
    while (!served && std::chrono::steady_clock::now() < deadline) {
        raw_http_client next(port());
        auto a = next.request("GET", "/healthz");
        served = a && a->status == 200;
    }
    EXPECT_TRUE(served);
}

TEST_F(admin_server, stop_closes_open_connections_and_is_idempotent) {
    start_default();
    raw_http_client c(port());
    ASSERT_TRUE(c.request("GET", "/healthz"));
    raw_http_client midway(port());
    ASSERT_TRUE(midway.send("GET /status HTTP/1.1\r\n"));
    on_io([&] {
        server->stop();
        server->stop();
    });
    EXPECT_EQ(port(), 0);
    EXPECT_TRUE(c.wait_closed(5s));
    EXPECT_TRUE(midway.wait_closed(5s));

    // And it can start again.
    diagnostics diag;
    error_code ec;
    on_io([&] { ec = server->start(diag); });
    ASSERT_FALSE(ec) << diag.client_message();
    auto a = get("/healthz");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200u);
}

}  // namespace
}  // namespace lakemesh::test
