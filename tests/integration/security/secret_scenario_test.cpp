// The ACL token never leaks: a whole mesh scenario (start, registration with a probe check, a
// partition registry, calls that succeed, are retried after a 5xx, fail on a refused connection,
// on a deadline and on 5xx after the retries, a Consul request refused for a wrong token, the
// admin endpoint's pages, span events, the JSON and the spdlog log sinks at trace level, the
// Consul client's request observer, every error message and diagnostics text) is captured
// whole, and neither the token nor its URL-encoded form appears in any of it. Each channel is
// also checked for a marker it must carry, so an empty or broken capture cannot pass.
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "raw_http_client.hpp"
#include "run_future.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include <unistd.h>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;

// Distinctive letters (not hex, so no trace or span ID can contain them by chance) and
// characters that URL-encoding changes, so the encoded form is a different string to look for.
const std::string secret_token = "lmSecretTok/en+Q9=zz";
const std::string wrong_token = "lmWrongTok/en+K4=yy";
const std::string admin_token = "lmAdminBearerXy";

std::string url_encoded(std::string_view s, bool lower) {
    static constexpr char upper_hex[] = "0123456789ABCDEF";
    static constexpr char lower_hex[] = "0123456789abcdef";
    const char* hex = lower ? lower_hex : upper_hex;
    std::string out;
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 15];
        }
    }
    return out;
}

/// Everything the scenario produced, by channel.
class capture {
  public:
    void add(const std::string& channel, std::string_view text) {
        std::lock_guard lock(mutex_);
        auto& c = channels_[channel];
        c.append(text);
        c += '\n';
    }
    std::map<std::string, std::string> channels() const {
        std::lock_guard lock(mutex_);
        return channels_;
    }

  private:
    mutable std::mutex mutex_;
    std::map<std::string, std::string> channels_;
};

/// Records every line at every level, and passes it on to the JSON and the spdlog sinks.
class tee_sink final : public observe::log_sink {
  public:
    tee_sink(capture& cap, std::vector<std::shared_ptr<observe::log_sink>> next)
        : cap_(cap), next_(std::move(next)) {}
    bool enabled(observe::log_level) const noexcept override { return true; }
    void write(observe::log_level level, std::string_view component,
               std::string_view message) override {
        cap_.add("log", std::to_string(static_cast<int>(level)) + " [" + std::string(component) +
                            "] " + std::string(message));
        for (auto& n : next_) {
            if (n->enabled(level)) {
                n->write(level, component, message);
            }
        }
    }

  private:
    capture& cap_;
    std::vector<std::shared_ptr<observe::log_sink>> next_;
};

std::string describe(const observe::span_event& e) {
    return std::string(observe::to_string(e.kind)) + " name=" + std::string(e.name) +
           " trace=" + std::string(e.trace_id) + " span=" + std::string(e.span_id) +
           " endpoint=" + std::string(e.endpoint) + " attempt=" + std::to_string(e.attempt) +
           " status=" + std::to_string(e.status) + " ec=" + e.ec.message();
}

class span_capture final : public observe::span_listener {
  public:
    explicit span_capture(capture& cap) : cap_(cap) {}
    void on_span_start(const observe::span_event& e) noexcept override {
        cap_.add("spans", "start " + describe(e));
    }
    void on_span_end(const observe::span_event& e) noexcept override {
        cap_.add("spans", "end " + describe(e));
    }

  private:
    capture& cap_;
};

class request_capture final : public consul::request_observer {
  public:
    explicit request_capture(capture& cap) : cap_(cap) {}
    void on_request(const consul::request_event& e) noexcept override {
        cap_.add("consul_requests", std::string(e.method) + " " + std::string(e.group) +
                                        " status=" + std::to_string(e.status) +
                                        " ec=" + e.ec.message());
    }

  private:
    capture& cap_;
};

/// Redirects file descriptor 2 (where the spdlog sink writes) to a temporary file while alive.
class stderr_capture {
  public:
    stderr_capture() : file_(std::tmpfile()) {
        std::fflush(stderr);
        saved_ = ::dup(2);
        ::dup2(::fileno(file_), 2);
    }
    ~stderr_capture() { restore(); }
    /// Restores stderr and returns what was written to it meanwhile.
    std::string restore() {
        if (saved_ >= 0) {
            std::fflush(stderr);
            ::dup2(saved_, 2);
            ::close(saved_);
            saved_ = -1;
        }
        std::string out;
        if (file_ != nullptr) {
            std::rewind(file_);
            char buf[4096];
            std::size_t n = 0;
            while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) {
                out.append(buf, n);
            }
            std::fclose(file_);
            file_ = nullptr;
        }
        return out;
    }

  private:
    std::FILE* file_;
    int saved_ = -1;
};

std::string read_all(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string out;
    char buf[4096];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
    }
    return out;
}

/// An instance of a called service: answers each request with `answer(n)` (n counts from 0),
/// where a status of 0 means never answer. Records every request it received, headers included.
class instance {
  public:
    instance(asio::io_context& io, capture& cap, std::function<unsigned(int)> answer)
        : io_(io), cap_(cap), acceptor_(io, {tcp::v4(), 0}), answer_(std::move(answer)) {
        asio::co_spawn(io_, accept_loop(), asio::detached);
    }
    ~instance() { close(); }
    void close() {
        error_code ignored;
        acceptor_.close(ignored);
        for (auto& s : sockets_) {
            if (auto sp = s.lock()) {
                sp->close(ignored);
            }
        }
    }
    std::uint16_t port() const { return port_; }
    int requests = 0;

  private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) {
                co_return;
            }
            auto sp = std::make_shared<tcp::socket>(std::move(sock));
            sockets_.push_back(sp);
            asio::co_spawn(io_, serve(sp), asio::detached);
        }
    }
    asio::awaitable<void> serve(std::shared_ptr<tcp::socket> sock) {
        boost::beast::flat_buffer buf;
        for (;;) {
            http::request<http::string_body> req;
            auto [ec, n] =
                co_await http::async_read(*sock, buf, req, asio::as_tuple(asio::use_awaitable));
            if (ec) {
                co_return;
            }
            std::string seen = std::string(req.method_string()) + " " + std::string(req.target());
            for (const auto& f : req) {
                seen += "\n" + std::string(f.name_string()) + ": " + std::string(f.value());
            }
            cap_.add("callee_requests", seen + "\n" + req.body());
            const unsigned status = answer_(requests++);
            if (status == 0) {
                // Hold the connection open without answering until the test closes it.
                asio::steady_timer never(io_, asio::steady_timer::time_point::max());
                co_await never.async_wait(asio::as_tuple(asio::use_awaitable));
                co_return;
            }
            http::response<http::string_body> res{static_cast<http::status>(status), 11};
            res.body() = "answer " + std::to_string(status);
            res.keep_alive(req.keep_alive());
            res.prepare_payload();
            auto [wec, wn] =
                co_await http::async_write(*sock, res, asio::as_tuple(asio::use_awaitable));
            if (wec || !req.keep_alive()) {
                co_return;
            }
        }
    }

    asio::io_context& io_;
    capture& cap_;
    tcp::acceptor acceptor_;
    std::uint16_t port_ = acceptor_.local_endpoint().port();
    std::function<unsigned(int)> answer_;
    std::vector<std::weak_ptr<tcp::socket>> sockets_;
};

testing::dev_consul_options with_acl(std::string token) {
    testing::dev_consul_options o;
    o.acl_token = std::move(token);
    return o;
}

class security_secret_scenario : public ::testing::Test {
  protected:
    // dev_consul enforces ACLs with the secret as its only token; a real agent of the test
    // leg runs without ACLs (the token is sent all the same) unless CONSUL_HTTP_TOKEN names
    // one, which is then the secret.
    consul_target target{with_acl(secret_token)};
    asio::io_context io;
    capture cap;
    std::string token =
        consul_target::real_agent() && !target.token().empty() ? target.token() : secret_token;
    bool acl_enforced = !consul_target::real_agent() || !target.token().empty();

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
        return test::run_until(io, done, limit);
    }

    consul::client_config consul_config() const {
        auto c = target.client_config();
        c.token = token;
        return c;
    }

    void record_error(const std::string& what, error_code ec, const diagnostics& diag) {
        cap.add("errors", what + ": " + ec.message() + " | " + diag.to_string() + " | " +
                              diag.client_message() + " | " + diag.server_message());
    }
};

TEST_F(security_secret_scenario, the_token_appears_in_no_log_metric_span_page_or_error) {
    const std::string prefix = unique_name("sec");
    const std::string self = prefix + "-self";
    const std::string good = prefix + "-good";
    const std::string dead = prefix + "-dead";
    const std::string slow = prefix + "-slow";
    const std::string failing = prefix + "-failing";

    std::FILE* json_file = std::tmpfile();
    ASSERT_NE(json_file, nullptr);
    stderr_capture spdlog_out;
    auto sink = std::make_shared<tee_sink>(
        cap, std::vector<std::shared_ptr<observe::log_sink>>{
                 observe::make_json_sink(json_file, observe::log_level::trace),
                 observe::make_spdlog_sink(prefix, observe::log_level::trace)});
    observe::logger log(sink, "security");

    // The called services: "good" answers 503 to its first request (retried), then 200; "dead"
    // is registered on a port nothing listens on; "slow" never answers; "failing" answers 500.
    std::deque<instance> instances;
    auto& good_a = instances.emplace_back(io, cap, [](int n) { return n == 0 ? 503u : 200u; });
    auto& good_b = instances.emplace_back(io, cap, [](int) { return 200u; });
    auto& dead_i = instances.emplace_back(io, cap, [](int) { return 200u; });
    const auto dead_port = dead_i.port();
    dead_i.close();
    auto& slow_i = instances.emplace_back(io, cap, [](int) { return 0u; });
    auto& failing_i = instances.emplace_back(io, cap, [](int) { return 500u; });

    std::deque<mesh_integrator> providers;
    auto provide = [&](const std::string& name, std::uint16_t port, int n) {
        mesh_config cfg;
        cfg.consul = consul_config();
        cfg.service_name = name;
        cfg.service_id = name + "-" + std::to_string(n);
        cfg.port = port;
        cfg.start = start_mode::wait_for_consul;
        auto& m = providers.emplace_back(io, cfg, log.with_component("provider"));
        std::optional<error_code> started;
        m.async_start([&](error_code ec) { started = ec; });
        ASSERT_TRUE(run_until([&] { return started.has_value(); }));
        ASSERT_FALSE(*started) << started->message();
    };
    provide(good, good_a.port(), 1);
    provide(good, good_b.port(), 2);
    provide(dead, dead_port, 1);
    provide(slow, slow_i.port(), 1);
    provide(failing, failing_i.port(), 1);

    // The mesh under test: registration with a probe check, a partition registry, metrics,
    // spans, the admin endpoint, and the four services as dependencies.
    auto spans = std::make_shared<span_capture>(cap);
    mesh_config cfg;
    cfg.consul = consul_config();
    cfg.service_name = self;
    cfg.port = good_b.port();
    cfg.start = start_mode::wait_for_consul;
    health::probe_check probe;
    probe.id = self + "-probe";
    probe.interval = 100ms;
    probe.probe = health::sync_probe([] { return health::probe_result{.output = "probe ok"}; });
    cfg.checks.emplace_back(probe);
    auto rc = partition::registry_config::fast_failover(prefix, "node-1");
    rc.partitions = 4;
    cfg.partitions = rc;
    cfg.spans = spans;
    cfg.admin.enabled = true;
    cfg.admin.token = admin_token;
    cfg.dependencies = {good, dead, slow, failing};
    cfg.default_calls.policy.retry.max_attempts = 3;
    cfg.default_calls.policy.retry.base_backoff = 1ms;
    cfg.default_calls.policy.retry.max_backoff = 5ms;
    cfg.default_calls.policy.circuit_breaker.reset();
    cfg.default_calls.balancer.outlier_detection.reset();
    // In turn, so both instances of "good" are called and the 503 is met.
    cfg.services[good] = cfg.default_calls;
    cfg.services[good].balancer.kind = resilience::balancer_kind::round_robin;
    mesh_integrator mesh(io, cfg, log.with_component("mesh"));
    std::optional<error_code> started;
    mesh.async_start([&](error_code ec) { started = ec; });
    ASSERT_TRUE(run_until([&] { return started.has_value(); }));
    ASSERT_FALSE(*started) << started->message();
    ASSERT_TRUE(run_until([&] {
        return mesh.ready() && mesh.partitions()->settled() &&
               mesh.partitions()->owned_count() == rc.partitions;
    })) << mesh.not_ready_reason();

    auto call = [&](const std::string& service, std::chrono::milliseconds timeout) {
        std::optional<std::pair<error_code, call_result>> out;
        call_options opts;
        opts.timeout = timeout;
        mesh.async_call(service, mesh::http_request{.method = "GET", .target = "/item/7"}, opts,
                        [&](error_code ec, call_result r) { out.emplace(ec, std::move(r)); });
        EXPECT_TRUE(run_until([&] { return out.has_value(); })) << service;
        if (!out) {
            return error_code(asio::error::timed_out);
        }
        record_error("call " + service, out->first, out->second.diag);
        cap.add("call_results", service + " " + out->second.endpoint + " " +
                                    std::to_string(out->second.response.status) + " " +
                                    out->second.response.body + " " + out->second.traceparent);
        return out->first;
    };
    // The cache must know every instance before the calls: a real agent syncs a moment later.
    ASSERT_TRUE(run_until([&] {
        auto snap = mesh.cache().lookup(good);
        return snap && snap->instances.size() == 2;
    }));
    for (int i = 0; i < 4; ++i) {
        EXPECT_FALSE(call(good, 5s)) << "good answers 200 (after one retried 503)";
    }
    EXPECT_EQ(good_a.requests + good_b.requests, 5) << "one 503, retried, and four 200s";
    EXPECT_EQ(call(dead, 5s), transport_errc::connect_failed);
    EXPECT_EQ(call(slow, 300ms), call_errc::deadline_exceeded);
    const auto failed = call(failing, 5s);
    EXPECT_TRUE(failed == call_errc::upstream_status || failed == call_errc::retry_budget_exhausted)
        << failed.message();

    // A Consul request refused: a client with a wrong token (and the mesh's own client, for
    // an answer that is an error for another reason), with the request observer attached.
    auto wrong_cfg = consul_config();
    wrong_cfg.token = wrong_token;
    consul::client wrong(io, wrong_cfg, log.with_component("wrong-client"));
    wrong.set_observer(std::make_shared<request_capture>(cap));
    std::optional<std::pair<error_code, diagnostics>> refused;
    wrong.async_kv_put(prefix + "/refused", "v",
                       [&](error_code ec, auto r) { refused.emplace(ec, r.diag); });
    ASSERT_TRUE(run_until([&] { return refused.has_value(); }));
    record_error("kv put with a wrong token", refused->first, refused->second);
    if (acl_enforced) {
        EXPECT_EQ(refused->first, consul_errc::permission_denied) << refused->first.message();
        EXPECT_EQ(refused->second.http_status(), 403u);
    } else {
        // Without ACLs the agent ignores tokens: the request went through; the token still
        // went with it and must show nowhere either.
        EXPECT_FALSE(refused->first) << refused->first.message();
    }
    consul::client right(io, consul_config(), log.with_component("right-client"));
    right.set_observer(std::make_shared<request_capture>(cap));
    std::optional<std::pair<error_code, diagnostics>> missing;
    right.session().async_info("00000000-0000-0000-0000-00000000beef",
                               [&](error_code ec, auto r) { missing.emplace(ec, r.diag); });
    ASSERT_TRUE(run_until([&] { return missing.has_value(); }));
    record_error("session info", missing->first, missing->second);

    // The admin endpoint, read from another thread while the io_context serves it.
    const auto admin_port = mesh.admin_port();
    ASSERT_NE(admin_port, 0);
    {
        auto guard = asio::make_work_guard(io);
        std::thread runner([this] { io.run(); });
        raw_http_client http(admin_port);
        const std::string auth = "Authorization: Bearer " + admin_token + "\r\n";
        for (const char* path : {"/status", "/metrics", "/", "/readyz", "/healthz"}) {
            auto a = http.request("GET", path, auth);
            EXPECT_TRUE(a) << path;
            if (a) {
                EXPECT_EQ(a->status, 200u) << path << ": " << a->body;
                cap.add(std::string("admin ") + path, a->body);
            }
        }
        auto unauthorized = http.request("GET", "/status");
        ASSERT_TRUE(unauthorized);
        EXPECT_EQ(unauthorized->status, 401u);
        cap.add("admin unauthorized", unauthorized->body);
        guard.reset();
        io.stop();
        runner.join();
        io.restart();
    }
    cap.add("metrics", mesh.render_metrics());
    cap.add("status_json", mesh.status_json());
    cap.add("not_ready_reason", mesh.not_ready_reason());

    std::optional<error_code> stopped;
    mesh.async_stop([&](error_code ec) { stopped = ec; });
    ASSERT_TRUE(run_until([&] { return stopped.has_value(); }));
    EXPECT_FALSE(*stopped) << stopped->message();
    for (auto& p : providers) {
        std::optional<error_code> s;
        p.async_stop([&](error_code ec) { s = ec; });
        ASSERT_TRUE(run_until([&] { return s.has_value(); }));
    }
    cap.add("spdlog", spdlog_out.restore());
    cap.add("json_log", read_all(json_file));
    std::fclose(json_file);

    // Each channel carries what it must: the capture is complete and non-empty.
    const auto channels = cap.channels();
    auto has = [&](const std::string& channel, const std::string& marker) {
        auto it = channels.find(channel);
        return it != channels.end() && it->second.find(marker) != std::string::npos;
    };
    EXPECT_TRUE(has("log", self)) << "the mesh logs its own service";
    EXPECT_TRUE(has("log", "[mesh")) << "the mesh's components log";
    EXPECT_TRUE(has("spdlog", self)) << "the spdlog sink wrote to stderr";
    EXPECT_TRUE(has("json_log", "\"level\"")) << "the JSON sink wrote lines";
    EXPECT_TRUE(has("json_log", self));
    EXPECT_TRUE(has("spans", "call name=" + good));
    EXPECT_TRUE(has("spans", "attempt name=" + good));
    EXPECT_TRUE(has("spans", "consul_request"));
    EXPECT_TRUE(has("metrics", "lakemesh_calls_total"));
    EXPECT_TRUE(has("metrics", good));
    EXPECT_TRUE(has("admin /metrics", "lakemesh_calls_total"));
    EXPECT_TRUE(has("admin /status", self));
    EXPECT_TRUE(has("status_json", self));
    EXPECT_TRUE(has("errors", dead)) << "a failed call's diagnostics name the service";
    EXPECT_TRUE(has("errors", slow));
    EXPECT_TRUE(has("consul_requests", "PUT kv"));
    EXPECT_TRUE(has("callee_requests", "GET /item/7"));
    EXPECT_TRUE(has("callee_requests", "traceparent"));
    if (acl_enforced) {
        EXPECT_TRUE(has("errors", "403"));
        EXPECT_TRUE(has("consul_requests", "status=403"));
    }

    // And no secret anywhere, in any form.
    std::vector<std::string> secrets;
    for (const auto& s : {token, wrong_token, admin_token}) {
        secrets.push_back(s);
        secrets.push_back(url_encoded(s, false));
        secrets.push_back(url_encoded(s, true));
    }
    // Their distinctive cores, should a part of one be cut or escaped differently.
    for (const auto* core : {"lmSecretTok", "lmWrongTok", "lmAdminBearer"}) {
        secrets.emplace_back(core);
    }
    std::size_t total = 0;
    for (const auto& [channel, text] : channels) {
        total += text.size();
        for (const auto& s : secrets) {
            if (s.empty()) {
                continue;
            }
            const auto at = text.find(s);
            EXPECT_EQ(at, std::string::npos)
                << "'" << s << "' leaked into " << channel << ": ..."
                << text.substr(at == std::string::npos ? 0 : (at > 200 ? at - 200 : 0), 400)
                << "...";
        }
    }
    EXPECT_GT(total, 10000u) << "the scenario produced little text: is the capture working?";
}

}  // namespace
}  // namespace lakemesh::test
