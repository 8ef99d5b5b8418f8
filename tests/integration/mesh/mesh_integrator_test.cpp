// mesh_integrator against dev_consul (or the real agent named by CONSUL_HTTP_ADDR): services
// registered by one mesh are called through another, with retries to another instance,
// upstream statuses, the breaker, the retry budget, deadlines, outlier ejection and return,
// trace context and deadline over two hops, start while Consul is unreachable, and the ordered
// stop. The upstream instances are small HTTP servers on the test's io_context.
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "promtool.hpp"
#include "run_future.hpp"
#include "tcp_forwarder.hpp"
#include "test_certs.hpp"
#include "tls_http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cctype>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;

/// One instance of an upstream service: an HTTP/1.1 keep-alive server on the test's io_context.
/// `handle` answers each request (possibly later, through the reply callback).
class upstream {
  public:
    using reply_fn = std::function<void(mesh::http_response)>;
    using handler_fn = std::function<void(const mesh::http_request&, reply_fn)>;

    explicit upstream(asio::io_context& io) : io_(io), acceptor_(io, {tcp::v4(), 0}) {
        handle = [this](const mesh::http_request&, reply_fn reply) {
            mesh::http_response r;
            r.status = status;
            r.body = body;
            reply(std::move(r));
        };
        asio::co_spawn(io_, accept_loop(), asio::detached);
    }
    ~upstream() { close(); }

    void close() {
        error_code ignored;
        acceptor_.close(ignored);
        for (auto& s : sockets_) {
            if (auto sp = s.lock()) {
                sp->close(ignored);
            }
        }
    }

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    unsigned status = 200;
    std::string body = "ok";
    handler_fn handle;
    std::vector<mesh::http_request> seen;

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
            mesh::http_request in;
            in.method = std::string(req.method_string());
            in.target = std::string(req.target());
            for (const auto& f : req) {
                in.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
            }
            in.body = req.body();
            seen.push_back(in);
            // The reply may come later: wait on a channel-like timer that the reply fires.
            auto answered = std::make_shared<std::optional<mesh::http_response>>();
            auto wake =
                std::make_shared<asio::steady_timer>(io_, asio::steady_timer::time_point::max());
            handle(in, [answered, wake](mesh::http_response r) {
                *answered = std::move(r);
                wake->cancel();
            });
            if (!answered->has_value()) {
                co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
            }
            if (!answered->has_value() || !sock->is_open()) {
                co_return;
            }
            http::response<http::string_body> res{static_cast<http::status>((**answered).status),
                                                  11};
            for (const auto& [k, v] : (**answered).headers) {
                res.set(k, v);
            }
            res.body() = (**answered).body;
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
    tcp::acceptor acceptor_;
    std::vector<std::weak_ptr<tcp::socket>> sockets_;
};

class mesh_integrator_test : public ::testing::Test {
  protected:
    consul_target target;
    asio::io_context io;
    std::string service = unique_name("svc");
    std::deque<upstream> upstreams;
    std::deque<mesh_integrator> providers;  // register the upstream instances

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
        return test::run_until(io, done, limit);
    }

    mesh_config base_config() {
        mesh_config cfg;
        cfg.consul = target.client_config();
        return cfg;
    }

    /// Starts `n` instances of `name` and registers each through its own mesh.
    void add_instances(const std::string& name, int n) {
        for (int i = 0; i < n; ++i) {
            auto& u = upstreams.emplace_back(io);
            register_provider(name, u.port());
        }
        wait_for_catalog(name);
    }

    /// Registers an instance of `name` at 127.0.0.1:`port` through a mesh of its own.
    void register_provider(const std::string& name, std::uint16_t port,
                           std::map<std::string, std::string> meta = {}) {
        auto cfg = base_config();
        cfg.service_name = name;
        cfg.service_id = name + "-" + std::to_string(providers.size() + 1);
        cfg.port = port;
        cfg.meta = std::move(meta);
        cfg.start = start_mode::wait_for_consul;
        auto& m = providers.emplace_back(io, cfg);
        std::optional<error_code> started;
        m.async_start([&](error_code ec) { started = ec; });
        ASSERT_TRUE(run_until([&] { return started.has_value(); }));
        ASSERT_FALSE(*started) << started->message();
    }

    void wait_for_catalog(const std::string& name) {
        // A real agent accepts a registration at once and syncs it to the catalog a moment
        // later; a caller resolving the service before that finds no instance.
        auto raw = target.client();
        ASSERT_TRUE(run_until([&] {
            auto r = raw.get("/v1/health/service/" + name + "?passing");
            return r.status == 200 &&
                   r.json_body().size() >= static_cast<std::size_t>(instances_of(name));
        })) << name
            << " never showed all its instances in the catalog";
    }

    int instances_of(const std::string& name) const {
        int n = 0;
        for (const auto& p : providers) {
            n += p.config().service_name == name ? 1 : 0;
        }
        return n;
    }

    /// The calling side; `tweak` adjusts the called service's call settings.
    mesh_integrator& caller(const std::function<void(service_call_config&)>& tweak = {}) {
        auto cfg = base_config();
        auto sc = cfg.default_calls;
        sc.balancer.kind = resilience::balancer_kind::round_robin;
        sc.policy.retry.base_backoff = 1ms;
        sc.policy.retry.max_backoff = 2ms;
        if (tweak) {
            tweak(sc);
        }
        cfg.services[service] = sc;
        caller_.emplace(io, cfg);
        return *caller_;
    }

    struct outcome {
        error_code ec;
        call_result result;
    };

    outcome call(mesh_integrator& m, const std::string& svc, mesh::http_request req = {},
                 call_options opts = {}) {
        std::optional<outcome> out;
        m.async_call(svc, std::move(req), std::move(opts), [&](error_code ec, call_result r) {
            out = outcome{ec, std::move(r)};
        });
        EXPECT_TRUE(run_until([&] { return out.has_value(); })) << "call did not complete";
        return out.value_or(outcome{});
    }

    void TearDown() override {
        for (auto* m : all_meshes()) {
            std::optional<error_code> stopped;
            m->async_stop([&](error_code ec) { stopped = ec; });
            run_until([&] { return stopped.has_value(); });
        }
    }

    std::vector<mesh_integrator*> all_meshes() {
        std::vector<mesh_integrator*> out;
        if (caller_) {
            out.push_back(&*caller_);
        }
        for (auto& p : providers) {
            out.push_back(&p);
        }
        return out;
    }

    std::optional<mesh_integrator> caller_;
};

TEST_F(mesh_integrator_test, a_call_reaches_a_registered_instance_with_trace_and_deadline) {
    add_instances(service, 1);
    upstreams[0].body = "hello";
    auto& m = caller();
    call_options opts;
    opts.timeout = 2s;
    auto out = call(m, service, {.method = "GET", .target = "/items/7"}, opts);
    ASSERT_FALSE(out.ec) << out.ec.message() << " " << out.result.diag.to_string();
    EXPECT_EQ(out.result.response.status, 200u);
    EXPECT_EQ(out.result.response.body, "hello");
    EXPECT_EQ(out.result.attempts, 1u);
    EXPECT_EQ(out.result.endpoint, "127.0.0.1:" + std::to_string(upstreams[0].port()));
    ASSERT_EQ(upstreams[0].seen.size(), 1u);
    const auto& seen = upstreams[0].seen[0];
    EXPECT_EQ(seen.target, "/items/7");
    EXPECT_EQ(seen.header("traceparent"), out.result.traceparent);
    auto ctx = call_context::from_request(seen);
    EXPECT_EQ(ctx.trace_id().size(), 32u) << out.result.traceparent;
    const auto ms = std::stoll(std::string(seen.header(headers::deadline_ms)));
    EXPECT_GT(ms, 1000);
    EXPECT_LE(ms, 2000);
}

TEST_F(mesh_integrator_test, a_request_carrying_its_own_traceparent_continues_that_trace_once) {
    add_instances(service, 1);
    auto& m = caller();
    const std::string own = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    mesh::http_request req{.method = "GET", .target = "/t"};
    req.set_header("X-Other", "kept");
    req.set_header("TraceParent", own);  // any case
    auto out = call(m, service, std::move(req), {});
    ASSERT_FALSE(out.ec) << out.ec.message() << " " << out.result.diag.to_string();
    ASSERT_EQ(upstreams[0].seen.size(), 1u);
    const auto& seen = upstreams[0].seen[0];
    std::size_t traceparents = 0;
    for (const auto& [name, value] : seen.headers) {
        std::string lower = name;
        for (auto& ch : lower) {
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        traceparents += lower == "traceparent" ? 1 : 0;
    }
    EXPECT_EQ(traceparents, 1u) << "the request's own header is replaced, not sent twice";
    EXPECT_EQ(seen.header("traceparent"), out.result.traceparent);
    EXPECT_EQ(out.result.traceparent.substr(0, 36), own.substr(0, 36)) << "same trace";
    EXPECT_NE(out.result.traceparent.substr(36, 16), own.substr(36, 16)) << "a span of its own";
    EXPECT_EQ(out.result.traceparent.substr(53), "00") << "the caller's flags";
    EXPECT_EQ(seen.header("X-Other"), "kept");
}

TEST_F(mesh_integrator_test,
       a_malformed_caller_traceparent_starts_a_new_trace_and_injects_nothing) {
    add_instances(service, 1);
    auto& m = caller();
    // Filled by hand from untrusted input: CR LF inside, or too short to hold the fields.
    for (const std::string bad :
         {std::string("00-0af7651916cd43dd\r\nX-Evil: 1\r\n8448eb2-b7ad6b7169203331-01"),
          std::string("00-abc"), std::string(60, 'x')}) {
        call_options opts;
        opts.parent.traceparent = bad;
        auto out = call(m, service, {.method = "GET", .target = "/t"}, opts);
        ASSERT_FALSE(out.ec) << out.ec.message() << " " << out.result.diag.to_string();
        ASSERT_FALSE(upstreams[0].seen.empty());
        const auto& seen = upstreams[0].seen.back();
        EXPECT_TRUE(seen.header("X-Evil").empty());
        EXPECT_EQ(seen.header("traceparent"), out.result.traceparent);
        EXPECT_EQ(call_context::from_request(seen).trace_id().size(), 32u)
            << out.result.traceparent;
        EXPECT_EQ(out.result.traceparent.find_first_of("\r\n"), std::string::npos);
    }
}

TEST_F(mesh_integrator_test, an_instance_whose_meta_says_secure_is_called_over_verified_tls) {
    test::self_signed_cert cert{"127.0.0.1"};
    ASSERT_TRUE(cert.ok());
    test::tls_http_server https{io, cert};
    register_provider(service, https.port(), {{"secure", "true"}});
    wait_for_catalog(service);

    // Trusting the instance's CA: the call goes over TLS, verified against the address.
    auto cfg = base_config();
    cfg.instance_tls.ca_file = cert.cert_file();
    caller_.emplace(io, cfg);
    auto out = call(*caller_, service, {.method = "GET", .target = "/secure/1"});
    ASSERT_FALSE(out.ec) << out.ec.message() << " " << out.result.diag.to_string();
    EXPECT_EQ(out.result.response.body, "tls:/secure/1");
    EXPECT_EQ(https.handshakes, 1);

    // With the defaults (the system's CAs, verification on) the self-signed instance is
    // refused before the request leaves: it fails closed and the target never sees it.
    std::optional<mesh_integrator> strict(std::in_place, io, base_config());
    out = call(*strict, service, {.method = "GET", .target = "/secure/2"});
    EXPECT_EQ(out.ec, transport_errc::tls_verify_failed) << out.ec.message();
    EXPECT_NE(out.result.diag.to_string().find("nothing was sent"), std::string::npos)
        << out.result.diag.to_string();
    EXPECT_EQ(https.targets, std::vector<std::string>{"/secure/1"});

    // A service's own setting wins over the meta: tls = false speaks plain HTTP, which this
    // instance does not understand.
    auto plain_cfg = base_config();
    plain_cfg.services[service].tls = false;
    plain_cfg.services[service].policy.retry.max_attempts = 1;
    std::optional<mesh_integrator> plain(std::in_place, io, plain_cfg);
    out = call(*plain, service, {.method = "GET", .target = "/secure/3"});
    EXPECT_TRUE(out.ec);
    EXPECT_EQ(https.targets, std::vector<std::string>{"/secure/1"});
    EXPECT_EQ(https.handshakes, 1);
}

// Caught by the sanitizer legs (ASan, TSan): the cache's blocking watch is in flight when the
// mesh goes away, and its exchange then completes and reports its outcome; the mesh's metrics
// observer must be gone by then, not freed under it.
TEST_F(mesh_integrator_test,
       a_mesh_destroyed_with_consul_requests_in_flight_leaves_nothing_behind) {
    add_instances(service, 1);
    {
        mesh_integrator m(io, base_config());
        auto out = call(m, service, {.method = "GET", .target = "/once"});
        ASSERT_FALSE(out.ec) << out.ec.message();
        // Let the cache's watch send its blocking query.
        io.restart();
        io.run_for(50ms);
    }
    io.restart();
    io.run_for(200ms);  // the aborted exchanges complete here
    EXPECT_EQ(upstreams[0].seen.size(), 1u);
}

TEST_F(mesh_integrator_test, a_retry_goes_to_another_instance) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    upstreams[1].status = 503;
    // No breaker and no ejection: both would (rightly) stop the calls to the failing instances.
    auto& m = caller([](service_call_config& sc) {
        sc.policy.circuit_breaker.reset();
        sc.balancer.outlier_detection.reset();
    });
    // Whichever instance round robin picks first fails; the retry must go to the other.
    for (int i = 0; i < 4; ++i) {
        upstreams[0].seen.clear();
        upstreams[1].seen.clear();
        auto out = call(m, service);
        EXPECT_EQ(out.ec, make_error_code(call_errc::upstream_status)) << out.ec.message();
        EXPECT_EQ(out.result.diag.http_status(), 503u);
        EXPECT_EQ(out.result.attempts, 3u);
        EXPECT_GE(upstreams[0].seen.size(), 1u);
        EXPECT_GE(upstreams[1].seen.size(), 1u);
    }
    upstreams[1].status = 200;
    for (int i = 0; i < 4; ++i) {
        auto out = call(m, service);
        ASSERT_FALSE(out.ec) << out.result.diag.to_string();
        EXPECT_EQ(out.result.endpoint, "127.0.0.1:" + std::to_string(upstreams[1].port()));
        EXPECT_LE(out.result.attempts, 2u);
    }
}

TEST_F(mesh_integrator_test, non_idempotent_requests_are_not_sent_twice) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    upstreams[1].status = 503;
    auto& m = caller();
    auto out = call(m, service, {.method = "POST", .target = "/orders", .body = "{}"});
    EXPECT_EQ(out.ec, make_error_code(call_errc::upstream_status));
    EXPECT_EQ(out.result.attempts, 1u);
    EXPECT_EQ(upstreams[0].seen.size() + upstreams[1].seen.size(), 1u);
    // Marked safe, it is retried.
    call_options safe;
    safe.idempotent = true;
    out = call(m, service, {.method = "POST", .target = "/orders", .body = "{}"}, safe);
    EXPECT_EQ(out.result.attempts, 3u);
}

TEST_F(mesh_integrator_test, four_hundreds_are_answers_not_errors) {
    add_instances(service, 1);
    upstreams[0].status = 404;
    auto& m = caller();
    auto out = call(m, service);
    EXPECT_FALSE(out.ec);
    EXPECT_EQ(out.result.response.status, 404u);
    EXPECT_EQ(out.result.attempts, 1u);
}

TEST_F(mesh_integrator_test, unknown_service_has_no_instances) {
    auto& m = caller();
    auto out = call(m, unique_name("nobody"));
    EXPECT_EQ(out.ec, make_error_code(call_errc::no_instances)) << out.ec.message();
    EXPECT_NE(out.result.diag.client_message().find("nobody"), std::string::npos);
    EXPECT_EQ(out.result.attempts, 0u);
    out = call(m, "bad name/");
    EXPECT_EQ(out.ec, make_error_code(validation_errc::invalid_name));
}

TEST_F(mesh_integrator_test, the_breaker_opens_then_lets_a_probe_through) {
    add_instances(service, 1);
    upstreams[0].status = 500;
    auto& m = caller([](service_call_config& sc) {
        sc.policy.retry.max_attempts = 1;
        resilience::circuit_breaker_config b;
        b.consecutive_failures = 2;
        b.open_duration = 150ms;
        b.minimum_calls = 1000;
        sc.policy.circuit_breaker = b;
    });
    EXPECT_EQ(call(m, service).ec, make_error_code(call_errc::upstream_status));
    EXPECT_EQ(call(m, service).ec, make_error_code(call_errc::upstream_status));
    auto out = call(m, service);
    EXPECT_EQ(out.ec, make_error_code(call_errc::circuit_open)) << out.ec.message();
    EXPECT_EQ(upstreams[0].seen.size(), 2u) << "an open breaker sends nothing";
    upstreams[0].status = 200;
    // Half-open after open_duration: the probe goes through and closes the breaker.
    EXPECT_EQ(m.policy_of(service).breaker().state(), resilience::breaker_state::open);
    ASSERT_TRUE(run_until(
        [&] { return resilience::clock::now() >= m.policy_of(service).breaker().open_until(); },
        2s));
    out = call(m, service);
    EXPECT_FALSE(out.ec) << out.ec.message();
    EXPECT_EQ(m.policy_of(service).breaker().state(), resilience::breaker_state::closed);
}

TEST_F(mesh_integrator_test, a_spent_retry_budget_stops_retries) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    upstreams[1].status = 503;
    auto& m = caller([](service_call_config& sc) {
        sc.policy.retry_budget.ratio = 0.0;
        sc.policy.retry_budget.min_retries_per_second = 0.0;
        sc.policy.retry_budget.window = 10s;
        sc.policy.circuit_breaker.reset();
    });
    auto out = call(m, service);
    EXPECT_EQ(out.ec, make_error_code(call_errc::retry_budget_exhausted)) << out.ec.message();
    EXPECT_EQ(out.result.attempts, 1u);
}

TEST_F(mesh_integrator_test, the_deadline_ends_a_call_that_gets_no_answer) {
    add_instances(service, 1);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));  // never answered in time
    };
    auto& m = caller();
    call_options opts;
    opts.timeout = 150ms;
    auto out = call(m, service, {}, opts);
    EXPECT_EQ(out.ec, make_error_code(call_errc::deadline_exceeded)) << out.ec.message();
    EXPECT_EQ(held.size(), 1u) << "no attempt after the deadline";
}

TEST_F(mesh_integrator_test, an_ejected_instance_gets_no_calls_then_returns) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    auto& m = caller([](service_call_config& sc) {
        sc.policy.retry.max_attempts = 1;
        sc.policy.circuit_breaker.reset();
        resilience::outlier_config o;
        o.consecutive_failures = 1;
        o.base_ejection_time = 300ms;
        o.max_ejection_percent = 50;
        o.panic_threshold_percent = 0;
        sc.balancer.outlier_detection = o;
    });
    // Round robin reaches the failing instance within two calls; it is then ejected.
    for (int i = 0; i < 2; ++i) {
        call(m, service);
    }
    ASSERT_EQ(upstreams[0].seen.size(), 1u);
    ASSERT_NE(m.balancer_of(service), nullptr);
    EXPECT_EQ(m.balancer_of(service)->outliers().ejected_count(), 1u);
    for (int i = 0; i < 6; ++i) {
        EXPECT_FALSE(call(m, service).ec);
    }
    EXPECT_EQ(upstreams[0].seen.size(), 1u) << "the ejected instance got calls";
    upstreams[0].status = 200;
    // After the ejection time it is called again.
    ASSERT_TRUE(run_until(
        [&] {
            call(m, service);
            return upstreams[0].seen.size() > 1;
        },
        3s));
}

/// The balancer's index of the upstream listening on `port`.
std::size_t endpoint_index(const resilience::load_balancer& lb, std::uint16_t port) {
    for (std::size_t i = 0; i < lb.endpoints().size(); ++i) {
        if (lb.endpoints()[i].port == port) {
            return i;
        }
    }
    return lb.endpoints().size();
}

TEST_F(mesh_integrator_test, a_slow_instance_is_hedged_and_the_fast_answer_wins) {
    add_instances(service, 2);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));  // the slow instance: never answers by itself
    };
    upstreams[1].body = "fast";
    auto& m = caller([](service_call_config& sc) {
        sc.hedge.enabled = true;
        sc.hedge.delay = 20ms;
    });
    // Round robin sends first attempts to the slow instance (every one of them, in fact: the
    // hedge's own pick moves round robin on).
    unsigned hedged_calls = 0;
    for (int i = 0; i < 4; ++i) {
        auto out = call(m, service);
        ASSERT_FALSE(out.ec) << out.result.diag.to_string();
        EXPECT_EQ(out.result.response.body, "fast");
        EXPECT_EQ(out.result.endpoint, "127.0.0.1:" + std::to_string(upstreams[1].port()));
        EXPECT_EQ(out.result.attempts, 1u) << "a hedge is part of its attempt";
        if (out.result.hedges > 0) {
            EXPECT_TRUE(out.result.hedge_won);
            ++hedged_calls;
        } else {
            EXPECT_FALSE(out.result.hedge_won);
        }
    }
    // Every call whose first attempt went to the slow instance was hedged, and the hedge won.
    EXPECT_GE(hedged_calls, 1u);
    EXPECT_EQ(held.size(), hedged_calls);
    EXPECT_EQ(m.stats().hedges, hedged_calls);
    EXPECT_EQ(m.stats().hedges_won, hedged_calls);
    // The losers were cancelled: nothing counts in flight on the slow instance any more, and
    // being abandoned did not eject it.
    const auto* lb = m.balancer_of(service);
    ASSERT_NE(lb, nullptr);
    const auto slow = endpoint_index(*lb, upstreams[0].port());
    ASSERT_LT(slow, lb->endpoints().size());
    // (The loser's cancellation completes asynchronously, just after the winner's answer.)
    EXPECT_TRUE(run_until([&] { return lb->in_flight(slow) == 0; }, 2s)) << lb->in_flight(slow);
    EXPECT_EQ(lb->outliers().ejected_count(), 0u);
    EXPECT_EQ(m.stats().in_flight, 0u);
}

TEST_F(mesh_integrator_test, hedging_at_the_observed_p95_starts_after_enough_answers) {
    add_instances(service, 2);
    auto& m = caller([](service_call_config& sc) {
        sc.hedge.enabled = true;  // delay zero: the observed p95
        sc.hedge.min_samples = 10;
    });
    for (int i = 0; i < 10; ++i) {
        auto out = call(m, service);
        ASSERT_FALSE(out.ec) << out.result.diag.to_string();
        EXPECT_EQ(out.result.hedges, 0u) << "no hedge before min_samples answers";
    }
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));
    };
    unsigned won = 0;
    for (int i = 0; i < 2; ++i) {
        auto out = call(m, service);
        ASSERT_FALSE(out.ec) << out.result.diag.to_string();
        won += out.result.hedge_won ? 1 : 0;
    }
    EXPECT_GE(won, 1u);
    EXPECT_EQ(held.size(), won);
}

TEST_F(mesh_integrator_test, non_idempotent_calls_are_never_hedged) {
    add_instances(service, 2);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));
    };
    auto& m = caller([](service_call_config& sc) {
        sc.hedge.enabled = true;
        sc.hedge.delay = 10ms;
    });
    call_options opts;
    opts.timeout = 200ms;
    unsigned deadlines = 0;
    for (int i = 0; i < 2; ++i) {
        auto out = call(m, service, {.method = "POST", .target = "/orders", .body = "{}"}, opts);
        EXPECT_EQ(out.result.hedges, 0u);
        deadlines += out.ec == make_error_code(call_errc::deadline_exceeded) ? 1 : 0;
    }
    EXPECT_EQ(deadlines, 1u) << "the POST sent to the slow instance waits for it alone";
    EXPECT_EQ(m.stats().hedges, 0u);
}

TEST_F(mesh_integrator_test, a_per_try_timeout_counts_against_the_instance) {
    add_instances(service, 2);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));
    };
    auto& m = caller([](service_call_config& sc) {
        sc.policy.circuit_breaker.reset();
        sc.policy.retry.per_try_timeout = 50ms;
        resilience::outlier_config o;
        o.consecutive_failures = 1;
        o.base_ejection_time = 10s;
        o.max_ejection_percent = 50;
        o.panic_threshold_percent = 0;
        sc.balancer.outlier_detection = o;
    });
    // The hanging instance times out once, is ejected, and the retry lands on the other one.
    for (int i = 0; i < 4; ++i) {
        auto out = call(m, service);
        ASSERT_FALSE(out.ec) << out.result.diag.to_string();
    }
    EXPECT_EQ(held.size(), 1u);
    EXPECT_EQ(m.balancer_of(service)->outliers().ejected_count(), 1u);
    const auto slow = endpoint_index(*m.balancer_of(service), upstreams[0].port());
    EXPECT_TRUE(run_until([&] { return m.balancer_of(service)->in_flight(slow) == 0; }, 2s));
}

TEST_F(mesh_integrator_test, trace_and_deadline_travel_two_hops) {
    const std::string front = unique_name("front");
    add_instances(service, 1);  // the back service
    add_instances(front, 1);    // the front service, calling the back one
    auto& m = caller();
    std::optional<call_context> at_front;
    upstreams[1].handle = [&](const mesh::http_request& req, upstream::reply_fn reply) {
        at_front = call_context::from_request(req);
        call_options nested;
        nested.parent = *at_front;
        providers[1].async_call(service, {.target = "/back"}, nested,
                                [reply](error_code ec, call_result r) {
                                    mesh::http_response res;
                                    res.status = ec ? 502 : 200;
                                    res.body = "front+" + r.response.body;
                                    reply(std::move(res));
                                });
    };
    upstreams[0].body = "back";
    call_options opts;
    opts.timeout = 3s;
    auto out = call(m, front, {.target = "/front"}, opts);
    ASSERT_FALSE(out.ec) << out.result.diag.to_string();
    EXPECT_EQ(out.result.response.body, "front+back");
    ASSERT_TRUE(at_front.has_value());
    ASSERT_EQ(upstreams[0].seen.size(), 1u);
    const auto at_back = call_context::from_request(upstreams[0].seen[0]);
    const call_context at_client{.traceparent = out.result.traceparent};
    const auto client_trace = at_client.trace_id();
    EXPECT_EQ(at_front->trace_id(), client_trace);
    EXPECT_EQ(at_back.trace_id(), client_trace) << "the back hop continues the caller's trace";
    EXPECT_NE(at_back.traceparent, at_front->traceparent) << "each hop is its own span";
    const auto front_ms =
        std::stoll(std::string(upstreams[1].seen[0].header(headers::deadline_ms)));
    const auto back_ms = std::stoll(std::string(upstreams[0].seen[0].header(headers::deadline_ms)));
    EXPECT_LE(front_ms, 3000);
    EXPECT_GT(back_ms, 0);
    EXPECT_LE(back_ms, front_ms) << "the back hop inherits what remains of the front's deadline";
}

TEST_F(mesh_integrator_test, start_while_consul_is_unreachable_then_ready_when_it_answers) {
    tcp_forwarder link(target.host(), target.port());
    link.cut();
    upstream u(io);
    auto cfg = base_config();
    cfg.consul.addresses = {consul::agent_address{"127.0.0.1", link.port()}};
    cfg.consul.connect_timeout = 200ms;
    cfg.service_name = service;
    cfg.port = u.port();
    cfg.start = start_mode::wait_for_consul;
    mesh_integrator m(io, cfg);
    std::optional<error_code> started;
    m.async_start([&](error_code ec) { started = ec; });
    run_until([] { return false; }, 500ms);
    EXPECT_FALSE(started.has_value()) << "wait_for_consul completed without Consul";
    EXPECT_FALSE(m.ready());
    EXPECT_NE(m.not_ready_reason().find("Consul unreachable"), std::string::npos)
        << m.not_ready_reason();
    link.restore();
    ASSERT_TRUE(run_until([&] { return started.has_value(); }, 15s));
    EXPECT_FALSE(*started);
    EXPECT_TRUE(m.ready()) << m.not_ready_reason();
    // It is registered: another mesh can call it.
    auto& c = caller();
    auto out = call(c, service);
    EXPECT_FALSE(out.ec) << out.result.diag.to_string();
    std::optional<error_code> stopped;
    m.async_stop([&](error_code ec) { stopped = ec; });
    run_until([&] { return stopped.has_value(); });
}

TEST_F(mesh_integrator_test, degraded_start_completes_at_once) {
    tcp_forwarder link(target.host(), target.port());
    link.cut();
    auto cfg = base_config();
    cfg.consul.addresses = {consul::agent_address{"127.0.0.1", link.port()}};
    cfg.consul.connect_timeout = 200ms;
    mesh_integrator m(io, cfg);
    std::optional<error_code> started;
    m.async_start([&](error_code ec) { started = ec; });
    ASSERT_TRUE(run_until([&] { return started.has_value(); }, 1s));
    EXPECT_FALSE(*started);
    EXPECT_FALSE(m.ready());
    link.restore();
    EXPECT_TRUE(run_until([&] { return m.ready(); }, 15s)) << m.not_ready_reason();
}

TEST_F(mesh_integrator_test, stop_lets_calls_finish_then_deregisters_and_refuses_new_calls) {
    add_instances(service, 1);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));
    };
    auto& m = caller();
    std::optional<outcome> in_flight;
    m.async_call(service, {}, {}, [&](error_code ec, call_result r) {
        in_flight = outcome{ec, std::move(r)};
    });
    ASSERT_TRUE(run_until([&] { return held.size() == 1; }));
    std::optional<error_code> stopped;
    m.async_stop([&](error_code ec) { stopped = ec; });
    run_until([&] { return stopped.has_value(); }, 300ms);
    EXPECT_FALSE(stopped.has_value()) << "the stop did not wait for the call in flight";
    auto refused = call(m, service);
    EXPECT_EQ(refused.ec, make_error_code(call_errc::mesh_stopped));
    mesh::http_response late;
    late.status = 200;
    late.body = "late";
    held[0](std::move(late));
    ASSERT_TRUE(run_until([&] { return stopped.has_value(); }));
    ASSERT_TRUE(in_flight.has_value());
    EXPECT_FALSE(in_flight->ec);
    EXPECT_EQ(in_flight->result.response.body, "late");
    // A provider's stop deregisters its instance: nobody can call it any more.
    std::optional<error_code> pstopped;
    providers[0].async_stop([&](error_code ec) { pstopped = ec; });
    ASSERT_TRUE(run_until([&] { return pstopped.has_value(); }));
    EXPECT_FALSE(*pstopped);
    auto raw = target.client();
    auto r = raw.get("/v1/health/service/" + service);
    EXPECT_EQ(r.json_body().size(), 0u) << r.body;
    // Stopping again is fine.
    std::optional<error_code> again;
    providers[0].async_stop([&](error_code ec) { again = ec; });
    ASSERT_TRUE(run_until([&] { return again.has_value(); }));
    EXPECT_FALSE(*again);
}

TEST_F(mesh_integrator_test, stop_cancels_calls_that_outlive_its_timeout) {
    add_instances(service, 1);
    std::vector<upstream::reply_fn> held;
    upstreams[0].handle = [&](const mesh::http_request&, upstream::reply_fn r) {
        held.push_back(std::move(r));
    };
    auto cfg = base_config();
    cfg.stop_timeout = 100ms;
    caller_.emplace(io, cfg);
    std::optional<outcome> in_flight;
    caller_->async_call(service, {}, {}, [&](error_code ec, call_result r) {
        in_flight = outcome{ec, std::move(r)};
    });
    ASSERT_TRUE(run_until([&] { return held.size() == 1; }));
    std::optional<error_code> stopped;
    caller_->async_stop([&](error_code ec) { stopped = ec; });
    ASSERT_TRUE(run_until([&] { return stopped.has_value() && in_flight.has_value(); }, 3s));
    EXPECT_EQ(in_flight->ec, asio::error::operation_aborted) << in_flight->ec.message();
}

TEST_F(mesh_integrator_test, invalid_configuration_fails_the_start_with_the_field) {
    auto cfg = base_config();
    cfg.service_name = "orders";
    cfg.port = 0;
    mesh_integrator m(io, cfg);
    std::optional<error_code> started;
    m.async_start([&](error_code ec) { started = ec; });
    ASSERT_TRUE(run_until([&] { return started.has_value(); }));
    EXPECT_EQ(*started, make_error_code(validation_errc::invalid_argument));
}

// The metrics the call path, the policies, the cache and the Consul client record: what an
// operator reads for one service after a run of calls, in an exposition promtool accepts.
TEST_F(mesh_integrator_test, metrics_count_calls_attempts_retries_and_consul_requests) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    upstreams[1].status = 503;
    auto& m = caller([](service_call_config& sc) {
        sc.policy.circuit_breaker.reset();
        sc.balancer.outlier_detection.reset();
        sc.policy.retry.max_attempts = 2;
    });
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(call(m, service).ec, make_error_code(call_errc::upstream_status));
    }
    upstreams[0].status = 200;
    upstreams[1].status = 200;
    for (int i = 0; i < 5; ++i) {
        EXPECT_FALSE(call(m, service).ec);
    }
    EXPECT_EQ(call(m, "no-such-" + service).ec, make_error_code(call_errc::no_instances));

    const auto text = m.render_metrics();
    auto value = [&](const std::string& series) {
        auto v = sample_value(text, series);
        EXPECT_TRUE(v.has_value()) << series << " missing in:\n" << text;
        return v.value_or(-1);
    };
    const auto svc = "service=\"" + service + "\"";
    EXPECT_EQ(value("lakemesh_calls_total{" + svc + ",outcome=\"ok\"}"), 5);
    EXPECT_EQ(value("lakemesh_calls_total{" + svc + ",outcome=\"upstream_status\"}"), 3);
    EXPECT_EQ(value("lakemesh_calls_total{" + svc + ",outcome=\"timeout\"}"), 0);
    EXPECT_EQ(value("lakemesh_call_duration_seconds_count{" + svc + "}"), 8);
    EXPECT_EQ(value("lakemesh_call_retries_total{" + svc + "}"), 3);
    // Per endpoint: 3 calls x 2 attempts failed, then 5 succeeded, spread by round robin.
    double ok = 0;
    double failed = 0;
    for (const auto& u : upstreams) {
        const auto ep = svc + ",endpoint=\"127.0.0.1:" + std::to_string(u.port()) + "\"";
        ok += value("lakemesh_call_attempts_total{" + ep + ",outcome=\"ok\"}");
        failed += value("lakemesh_call_attempts_total{" + ep + ",outcome=\"error\"}");
        EXPECT_GE(value("lakemesh_call_attempt_duration_seconds_count{" + ep + "}"), 1);
    }
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(failed, 6);
    EXPECT_EQ(value("lakemesh_endpoints{" + svc + "}"), 2);
    EXPECT_EQ(value("lakemesh_circuit_breaker_state{" + svc + "}"), 0);
    EXPECT_EQ(value("lakemesh_bulkhead_in_use{" + svc + "}"), 0);
    EXPECT_GE(value("lakemesh_cache_lookups_total{result=\"hit\"}"), 7);
    EXPECT_GE(value("lakemesh_cache_services"), 1);
    EXPECT_EQ(value("lakemesh_calls_in_flight"), 0);
    // The resolves of the two services and the readiness ticks went to Consul and were counted.
    EXPECT_GE(value("lakemesh_consul_requests_total{group=\"health\",outcome=\"ok\"}"), 2);
    EXPECT_GE(value("lakemesh_consul_request_duration_seconds_count{group=\"health\"}"), 1);
    // Only the service's children exist: a failed lookup of an unknown service is a call
    // outcome, and labels never carry anything but names and addresses.
    EXPECT_EQ(
        value("lakemesh_calls_total{service=\"no-such-" + service + "\",outcome=\"no_instances\"}"),
        1);

    const auto promtool = find_promtool();
    if (promtool.empty()) {
        GTEST_SKIP() << "promtool not found (Debian's 'prometheus' package): the mesh's "
                        "exposition was NOT checked by promtool";
    }
    auto problems = promtool_problems(promtool, text);
    EXPECT_FALSE(problems.has_value()) << *problems << "\nexposition:\n" << text;
}

/// Records span events (copies of the views).
struct recorded_span {
    bool start = false;
    observe::span_kind kind{};
    std::string name, trace_id, span_id, endpoint;
    unsigned attempt = 0;
    error_code ec;
    unsigned status = 0;
};
class span_recorder : public observe::span_listener {
  public:
    std::vector<recorded_span> spans;
    void on_span_start(const observe::span_event& e) noexcept override { add(e, true); }
    void on_span_end(const observe::span_event& e) noexcept override { add(e, false); }

  private:
    void add(const observe::span_event& e, bool start) {
        spans.push_back({start, e.kind, std::string(e.name), std::string(e.trace_id),
                         std::string(e.span_id), std::string(e.endpoint), e.attempt, e.ec,
                         e.status});
    }
};

TEST_F(mesh_integrator_test, spans_cover_the_call_its_attempts_and_consul_requests) {
    add_instances(service, 2);
    upstreams[0].status = 503;
    upstreams[1].status = 503;
    auto spans = std::make_shared<span_recorder>();
    auto cfg = base_config();
    auto sc = cfg.default_calls;
    sc.balancer.kind = resilience::balancer_kind::round_robin;
    sc.policy.retry.base_backoff = 1ms;
    sc.policy.retry.max_backoff = 2ms;
    sc.policy.retry.max_attempts = 2;
    sc.policy.circuit_breaker.reset();
    sc.balancer.outlier_detection.reset();
    cfg.services[service] = sc;
    cfg.spans = spans;
    caller_.emplace(io, cfg);
    auto out = call(*caller_, service);
    ASSERT_EQ(out.ec, make_error_code(call_errc::upstream_status));
    const auto trace = out.result.traceparent.substr(3, 32);
    // The failure's text names the trace, for logs.
    EXPECT_NE(out.result.diag.client_message().find("[trace " + trace + "]"), std::string::npos)
        << out.result.diag.client_message();

    std::vector<recorded_span> call_spans, attempt_starts, attempt_ends, consul;
    for (const auto& s : spans->spans) {
        if (s.kind == observe::span_kind::call) {
            call_spans.push_back(s);
        } else if (s.kind == observe::span_kind::attempt) {
            (s.start ? attempt_starts : attempt_ends).push_back(s);
        } else {
            consul.push_back(s);
        }
    }
    ASSERT_EQ(call_spans.size(), 2u);
    EXPECT_TRUE(call_spans[0].start);
    EXPECT_FALSE(call_spans[1].start);
    for (const auto& s : call_spans) {
        EXPECT_EQ(s.name, service);
        EXPECT_EQ(s.trace_id, trace);
        EXPECT_EQ(s.span_id, out.result.traceparent.substr(36, 16));
    }
    EXPECT_EQ(call_spans[1].ec, make_error_code(call_errc::upstream_status));
    EXPECT_EQ(call_spans[1].status, 503u);
    EXPECT_EQ(call_spans[1].attempt, 2u);
    ASSERT_EQ(attempt_starts.size(), 2u);
    ASSERT_EQ(attempt_ends.size(), 2u);
    std::set<std::string> endpoints;
    for (std::size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(attempt_starts[i].attempt, i + 1);
        EXPECT_EQ(attempt_ends[i].attempt, i + 1);
        EXPECT_EQ(attempt_ends[i].trace_id, trace);
        EXPECT_EQ(attempt_ends[i].status, 503u);
        EXPECT_EQ(attempt_ends[i].ec, make_error_code(call_errc::upstream_status));
        EXPECT_EQ(attempt_starts[i].endpoint, attempt_ends[i].endpoint);
        endpoints.insert(attempt_ends[i].endpoint);
    }
    EXPECT_EQ(endpoints.size(), 2u) << "the retry went to the other instance";
    // The resolve of the service went to Consul's health endpoint: an end event, no trace.
    const bool resolved = std::any_of(consul.begin(), consul.end(), [](const recorded_span& s) {
        return !s.start && s.name == "health" && s.status == 200 && s.trace_id.empty();
    });
    EXPECT_TRUE(resolved);
}

TEST_F(mesh_integrator_test, the_token_never_appears_in_metrics) {
    add_instances(service, 1);
    auto cfg = base_config();
    const std::string token = "d6f1a8c2-metrics-token-must-not-leak";
    cfg.consul.token = token;
    auto reg = std::make_shared<observe::metrics_registry>();
    cfg.metrics = reg;
    caller_.emplace(io, cfg);
    caller_->async_start([](error_code) {});
    (void)call(*caller_, service);
    const auto text = caller_->render_metrics();
    EXPECT_EQ(reg->render(), text) << "the mesh records into the registry it was given";
    EXPECT_NE(text.find("lakemesh_calls_total"), std::string::npos);
    EXPECT_EQ(text.find(token), std::string::npos);
}
}  // namespace
}  // namespace lakemesh::test

namespace lakemesh::test {
namespace {

/// Two nodes owning the partitions of a cluster (each its registry through its mesh, its
/// requests served by an upstream server that checks ownership), and a client mesh that only
/// follows the cluster's ownership table.
class mesh_partition_call_test : public mesh_integrator_test {
  protected:
    static constexpr std::uint32_t P = 8;
    std::string cluster = unique_name("lake");
    std::deque<mesh_integrator> nodes;
    /// Requests each node answered with 421 on purpose (consumed first).
    std::map<std::size_t, int> force_misdirect;

    void add_node(const std::string& id) {
        auto& u = upstreams.emplace_back(io);
        const std::size_t index = nodes.size();
        auto cfg = base_config();
        cfg.address = "127.0.0.1";
        cfg.port = u.port();
        auto rc = partition::registry_config::fast_failover(cluster, id);
        rc.partitions = P;
        rc.register_partition_services = false;
        cfg.partitions = rc;
        auto& m = nodes.emplace_back(io, cfg);
        u.handle = [this, index](const mesh::http_request& req, upstream::reply_fn reply) {
            mesh::http_response r;
            const auto p = std::stoul(std::string(req.header(headers::partition)));
            const auto token = std::stoull(std::string(req.header(headers::fencing_token)));
            auto* reg = nodes[index].partitions();
            if (force_misdirect[index] > 0 || reg->token_of(p) != token) {
                --force_misdirect[index];
                r.status = 421;
            } else {
                r.status = 200;
                r.body = reg->config().node_id + ":" + std::to_string(p);
            }
            reply(std::move(r));
        };
        m.async_start([](error_code ec) { ASSERT_FALSE(ec) << ec.message(); });
    }

    mesh_integrator& table_client() {
        auto cfg = base_config();
        partition::table_config tc;
        tc.prefix = "lakemesh/" + cluster + "/";
        tc.partitions = P;
        cfg.partition_table = tc;
        caller_.emplace(io, cfg);
        caller_->async_start([](error_code) {});
        return *caller_;
    }

    bool settled(mesh_integrator& client) {
        std::size_t owned = 0;
        for (auto& n : nodes) {
            if (!n.partitions()->settled()) {
                return false;
            }
            owned += n.partitions()->owned_count();
        }
        if (owned != P) {
            return false;
        }
        for (std::uint32_t p = 0; p < P; ++p) {
            auto v = client.partition_table()->at(p);
            if (!v.has_owner()) {
                return false;
            }
            bool right = false;
            for (auto& n : nodes) {
                right = right || (n.partitions()->config().node_id == v->node &&
                                  n.partitions()->token_of(p) == v->token);
            }
            if (!right) {
                return false;
            }
        }
        return true;
    }

    outcome call_key(mesh_integrator& m, const std::string& key) {
        std::optional<outcome> out;
        m.async_call_partition(key, {.method = "PUT", .target = "/kv/" + key, .body = "v"}, {},
                               [&](error_code ec, call_result r) {
                                   out = outcome{ec, std::move(r)};
                               });
        EXPECT_TRUE(run_until([&] { return out.has_value(); })) << "call did not complete";
        return out.value_or(outcome{});
    }

    void TearDown() override {
        for (auto& n : nodes) {
            std::optional<error_code> stopped;
            n.async_stop([&](error_code ec) { stopped = ec; });
            run_until([&] { return stopped.has_value(); });
        }
        mesh_integrator_test::TearDown();
    }
};

TEST_F(mesh_partition_call_test, calls_reach_the_owner_with_its_fencing_token) {
    add_node("a");
    add_node("b");
    auto& c = table_client();
    ASSERT_TRUE(run_until([&] { return settled(c); }, 20s));
    for (int i = 0; i < 24; ++i) {
        const std::string key = "user:" + std::to_string(i);
        auto out = call_key(c, key);
        ASSERT_FALSE(out.ec) << key << ": " << out.result.diag.to_string();
        EXPECT_EQ(out.result.response.status, 200u);
        EXPECT_EQ(out.result.attempts, 1u);
        const auto p = c.partition_table()->partition_of(key);
        auto v = c.partition_table()->at(p);
        EXPECT_EQ(out.result.response.body, v->node + ":" + std::to_string(p));
    }
}

TEST_F(mesh_partition_call_test, a_not_owner_answer_is_retried_once_then_reported) {
    add_node("a");
    auto& c = table_client();
    ASSERT_TRUE(run_until([&] { return settled(c); }, 20s));
    // A non-idempotent PUT is resent after a 421: the node did not act on it.
    force_misdirect[0] = 1;
    auto out = call_key(c, "k1");
    ASSERT_FALSE(out.ec) << out.result.diag.to_string();
    EXPECT_EQ(out.result.attempts, 2u);
    EXPECT_EQ(out.result.response.status, 200u);
    // Still misdirected after the refresh: reported, not retried forever.
    force_misdirect[0] = 100;
    out = call_key(c, "k2");
    EXPECT_EQ(out.ec, make_error_code(call_errc::not_owner)) << out.ec.message();
    EXPECT_EQ(out.result.attempts, 2u);
    EXPECT_EQ(out.result.response.status, 421u);
}

TEST_F(mesh_partition_call_test, a_moved_partition_is_found_at_its_new_owner) {
    add_node("a");
    auto& c = table_client();
    ASSERT_TRUE(run_until([&] { return settled(c); }, 20s));
    add_node("b");
    // Calls keep succeeding while b takes its share over from a (hand-offs, a stale table).
    int calls = 0;
    std::set<std::string> owners;
    ASSERT_TRUE(run_until(
        [&] {
            const std::string key = "k" + std::to_string(calls++);
            auto out = call_key(c, key);
            EXPECT_FALSE(out.ec) << key << ": " << out.result.diag.to_string();
            owners.insert(out.result.response.body.substr(0, 1));
            return settled(c) && owners.size() == 2;
        },
        20s));
}

TEST_F(mesh_partition_call_test, partition_metrics_show_ownership_and_misdirected_calls) {
    add_node("a");
    add_node("b");
    auto& c = table_client();
    ASSERT_TRUE(run_until([&] { return settled(c); }, 20s));
    force_misdirect[0] = 1;
    force_misdirect[1] = 1;
    for (int i = 0; i < 8; ++i) {
        EXPECT_FALSE(call_key(c, "m" + std::to_string(i)).ec);
    }
    double owned = 0;
    for (auto& n : nodes) {
        const auto text = n.render_metrics();
        auto v = sample_value(text, "lakemesh_partitions_owned");
        ASSERT_TRUE(v.has_value()) << text;
        owned += *v;
        EXPECT_EQ(sample_value(text, "lakemesh_partition_members"), 2.0);
        EXPECT_GE(sample_value(text, "lakemesh_partition_acquisitions_total").value_or(0), 1.0);
        EXPECT_EQ(sample_value(text, "lakemesh_sessions_created_total"), 1.0);
        EXPECT_GT(sample_value(text, "lakemesh_session_renew_latency_seconds").value_or(0), 0.0);
        EXPECT_EQ(sample_value(text, "lakemesh_ready"), 1.0);
    }
    EXPECT_EQ(owned, P);
    const auto text = c.render_metrics();
    EXPECT_GE(sample_value(text, "lakemesh_partition_misdirected_total").value_or(0), 1.0) << text;
    EXPECT_EQ(sample_value(text, "lakemesh_calls_total{service=\"partitions:lakemesh/" + cluster +
                                     "/\",outcome=\"ok\"}"),
              8.0)
        << text;
}

TEST_F(mesh_partition_call_test, without_a_table_partition_calls_are_a_configuration_error) {
    auto& m = caller();
    std::optional<outcome> out;
    m.async_call_partition("k", {}, {}, [&](error_code ec, call_result r) {
        out = outcome{ec, std::move(r)};
    });
    ASSERT_TRUE(run_until([&] { return out.has_value(); }));
    EXPECT_EQ(out->ec, make_error_code(validation_errc::invalid_configuration));
    EXPECT_NE(out->result.diag.client_message().find("partition"), std::string::npos);
}

}  // namespace
}  // namespace lakemesh::test
