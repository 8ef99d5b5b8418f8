// mesh_integrator under network faults, against dev_consul or the real agent: Consul refusing
// connections at a degraded start, and callees behind a fault_proxy that hang (the deadline ends
// the call, the bulkhead holds) or reset (the call is retried on another instance, the failing
// instance is ejected, the breaker opens). Callees are loopback HTTP servers on their own threads.
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "fault_proxy.hpp"
#include "recording_http_server.hpp"
#include "run_future.hpp"

#include <boost/asio/io_context.hpp>

#include <deque>
#include <functional>
#include <optional>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

/// One callee instance: an HTTP server and the fault proxy in front of it, registered in Consul
/// at the proxy's port.
struct callee {
    recording_http_server server;
    fault_proxy proxy{"127.0.0.1", server.port()};
};

class fault_mesh : public ::testing::Test {
  protected:
    consul_target target;
    asio::io_context io;
    std::string service = unique_name("fsvc");
    std::deque<callee> callees;
    std::deque<mesh_integrator> meshes;  // providers first, then callers

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 15s) {
        return test::run_until(io, done, limit);
    }

    mesh_config base_config() {
        mesh_config cfg;
        cfg.consul = target.client_config();
        return cfg;
    }

    /// `n` callee instances of `service`, registered and passing in the catalog.
    void add_callees(int n) {
        for (int i = 0; i < n; ++i) {
            auto& c = callees.emplace_back();
            auto cfg = base_config();
            cfg.service_name = service;
            cfg.service_id = service + "-" + std::to_string(callees.size());
            cfg.port = c.proxy.port();
            cfg.start = start_mode::wait_for_consul;
            auto& m = meshes.emplace_back(io, cfg);
            std::optional<error_code> started;
            m.async_start([&](error_code ec) { started = ec; });
            ASSERT_TRUE(run_until([&] { return started.has_value(); }));
            ASSERT_FALSE(*started) << started->message();
        }
        auto raw = target.client();
        ASSERT_TRUE(run_until([&] {
            auto r = raw.get("/v1/health/service/" + service + "?passing");
            return r.status == 200 && r.json_body().size() == static_cast<std::size_t>(n);
        })) << "the callees never all passed in the catalog";
    }

    mesh_integrator& caller(const std::function<void(service_call_config&)>& tweak) {
        auto cfg = base_config();
        auto sc = cfg.default_calls;
        sc.balancer.kind = resilience::balancer_kind::round_robin;
        sc.policy.retry.base_backoff = 1ms;
        sc.policy.retry.max_backoff = 2ms;
        tweak(sc);
        cfg.services[service] = sc;
        return meshes.emplace_back(io, cfg);
    }

    struct outcome {
        error_code ec;
        call_result result;
    };
    void start_call(mesh_integrator& m, std::optional<outcome>& out, call_options opts = {}) {
        mesh::http_request req;
        req.method = "GET";
        req.target = "/item";
        m.async_call(service, std::move(req), std::move(opts),
                     [&out](error_code ec, call_result r) {
                         out = outcome{ec, std::move(r)};
                     });
    }
    outcome call(mesh_integrator& m, call_options opts = {}) {
        std::optional<outcome> out;
        start_call(m, out, std::move(opts));
        EXPECT_TRUE(run_until([&] { return out.has_value(); }, 30s)) << "the call hung";
        return out.value_or(outcome{});
    }

    void TearDown() override {
        for (auto& c : callees) {
            c.proxy.clear();
        }
        // Callers first (they were added last), then the providers: deregistered in Consul.
        for (auto it = meshes.rbegin(); it != meshes.rend(); ++it) {
            std::optional<error_code> stopped;
            it->async_stop([&](error_code ec) { stopped = ec; });
            run_until([&] { return stopped.has_value(); });
        }
    }
};

TEST_F(fault_mesh, consul_refusing_at_a_degraded_start_then_ready_and_registered) {
    fault_proxy agent(target.host(), target.port());
    agent.refuse();
    recording_http_server self;
    auto cfg = base_config();
    cfg.consul.addresses = {consul::agent_address{"127.0.0.1", agent.port()}};
    cfg.consul.connect_timeout = 200ms;
    cfg.service_name = service;
    cfg.port = self.port();
    cfg.start = start_mode::degraded;
    auto& m = meshes.emplace_back(io, cfg);
    std::optional<error_code> started;
    m.async_start([&](error_code ec) { started = ec; });
    ASSERT_TRUE(run_until([&] { return started.has_value(); }, 5s));
    EXPECT_FALSE(*started) << started->message();
    // It keeps trying and failing while the listener refuses, and says why.
    EXPECT_FALSE(m.ready());
    EXPECT_TRUE(run_until(
        [&] { return m.not_ready_reason().find("Consul unreachable") != std::string::npos; }, 5s))
        << m.not_ready_reason();
    EXPECT_FALSE(m.ready());
    auto raw = target.client();
    EXPECT_EQ(raw.get("/v1/health/service/" + service).json_body().size(), 0u);
    agent.accept_again();
    ASSERT_TRUE(run_until([&] { return m.ready(); }, 20s)) << m.not_ready_reason();
    EXPECT_EQ(m.not_ready_reason(), "");
    EXPECT_GT(agent.counters().accepted, 0u);
    ASSERT_TRUE(run_until([&] {
        auto r = raw.get("/v1/health/service/" + service);
        return r.status == 200 && r.json_body().size() == 1u;
    })) << "the service was never registered";
}

TEST_F(fault_mesh, a_hanging_callee_ends_in_deadline_exceeded_and_the_bulkhead_holds) {
    add_callees(1);
    auto& m = caller([](service_call_config& sc) {
        resilience::bulkhead_config b;
        b.max_concurrent = 2;
        b.max_queue = 0;
        sc.policy.bulkhead = b;
        sc.policy.circuit_breaker.reset();
    });
    callees[0].proxy.set_fault({.stall = true});
    call_options opts;
    opts.timeout = 1500ms;
    const auto start = clock_type::now();
    std::optional<outcome> a, b;
    start_call(m, a, opts);
    start_call(m, b, opts);
    // Both requests reached the callee and its answers are held.
    ASSERT_TRUE(run_until([&] { return callees[0].proxy.counters().stalled == 2; }, 10s));
    EXPECT_EQ(callees[0].server.hits.load(), 2);
    auto third = call(m, opts);
    EXPECT_EQ(third.ec, make_error_code(call_errc::bulkhead_full)) << third.ec.message();
    EXPECT_FALSE(a.has_value());
    ASSERT_TRUE(run_until([&] { return a.has_value() && b.has_value(); }, 15s));
    const auto took = clock_type::now() - start;
    EXPECT_EQ(a->ec, make_error_code(call_errc::deadline_exceeded)) << a->ec.message();
    EXPECT_EQ(b->ec, make_error_code(call_errc::deadline_exceeded)) << b->ec.message();
    EXPECT_GE(took, 1500ms);
    EXPECT_LT(took, 1500ms + 5s) << "the deadline did not end the calls";
    EXPECT_EQ(callees[0].server.hits.load(), 2) << "an attempt went out after the deadline";
    // Once the callee answers again, the bulkhead's slots are free.
    callees[0].proxy.clear();
    auto after = call(m, opts);
    EXPECT_FALSE(after.ec) << after.ec.message();
}

TEST_F(fault_mesh, a_resetting_callee_is_retried_elsewhere_then_ejected) {
    add_callees(2);
    auto& m = caller([](service_call_config& sc) {
        sc.policy.retry.max_attempts = 2;
        sc.policy.circuit_breaker.reset();
        resilience::outlier_config o;
        o.consecutive_failures = 2;
        o.base_ejection_time = 30s;
        o.max_ejection_percent = 50;
        o.panic_threshold_percent = 0;
        sc.balancer.outlier_detection = o;
    });
    // The request reaches the instance, then the connection is reset: only an idempotent
    // request may be sent again.
    callees[0].proxy.set_fault({.reset_after = 0});
    for (int i = 0; i < 6; ++i) {
        auto out = call(m);
        EXPECT_FALSE(out.ec) << "call " << i << ": " << out.ec.message() << " "
                             << out.result.diag.to_string();
    }
    EXPECT_EQ(callees[0].proxy.counters().resets, 2u) << "ejected after two failures";
    ASSERT_NE(m.balancer_of(service), nullptr);
    EXPECT_EQ(m.balancer_of(service)->outliers().ejected_count(), 1u);
    const auto reached = callees[0].proxy.counters().accepted;
    for (int i = 0; i < 4; ++i) {
        EXPECT_FALSE(call(m).ec);
    }
    EXPECT_EQ(callees[0].proxy.counters().accepted, reached) << "the ejected instance got calls";
    EXPECT_EQ(callees[1].server.hits.load(), 10);
}

TEST_F(fault_mesh, a_resetting_only_instance_opens_the_breaker) {
    add_callees(1);
    auto& m = caller([](service_call_config& sc) {
        sc.policy.retry.max_attempts = 1;
        resilience::circuit_breaker_config cb;
        cb.consecutive_failures = 3;
        cb.failure_rate_threshold = 0;
        cb.open_duration = 30s;
        sc.policy.circuit_breaker = cb;
    });
    callees[0].proxy.set_fault({.reset_on_accept = true});
    for (int i = 0; i < 3; ++i) {
        auto out = call(m);
        EXPECT_TRUE(out.ec) << "call " << i << " succeeded through a reset";
        EXPECT_NE(out.ec, make_error_code(call_errc::circuit_open));
    }
    const auto reached = callees[0].proxy.counters().accepted;
    EXPECT_EQ(reached, 3u);
    auto out = call(m);
    EXPECT_EQ(out.ec, make_error_code(call_errc::circuit_open)) << out.ec.message();
    EXPECT_EQ(callees[0].proxy.counters().accepted, reached) << "an open breaker sent a call";
}

}  // namespace
}  // namespace lakemesh::test
