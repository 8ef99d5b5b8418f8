// Runtime policy reload from KV (mesh_config::policy_reload) against dev_consul or the real agent
// named by CONSUL_HTTP_ADDR: a mesh calls a provider that answers 503, and the retry policy
// written under <prefix>config/policies/<service> changes how many times new calls try it; bad
// values are rejected (log line, counter) and the old policy kept; a deleted key restores the
// static policy; a key written before the first call is used by it. Effects are awaited by
// polling the mesh's state on the test's io_context (its executor) with a deadline.
#include <lakemesh/mesh_integrator.hpp>

#include "consul_target.hpp"
#include "recording_http_server.hpp"
#include "run_future.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

/// Keeps the warnings the mesh logs.
class capture_sink : public observe::log_sink {
  public:
    bool enabled(observe::log_level level) const noexcept override {
        return level >= observe::log_level::warn;
    }
    void write(observe::log_level level, std::string_view, std::string_view message) override {
        if (level == observe::log_level::warn) {
            std::lock_guard lock(mutex_);
            warnings_.emplace_back(message);
        }
    }
    std::vector<std::string> warnings() const {
        std::lock_guard lock(mutex_);
        return warnings_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> warnings_;
};

class mesh_policy_reload : public ::testing::Test {
  protected:
    consul_target target;
    asio::io_context io;
    std::string service = unique_name("svc");
    std::string prefix = unique_name("reload") + "/";
    recording_http_server upstream;  // the provider's instance; answers 503 unless told
    std::optional<mesh_integrator> provider;
    std::optional<mesh_integrator> caller;
    std::shared_ptr<capture_sink> sink = std::make_shared<capture_sink>();
    raw_http kv = target.client();

    std::string key(const std::string& svc) const { return prefix + "config/policies/" + svc; }

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
        return test::run_until(io, done, limit);
    }

    void start(mesh_integrator& m) {
        std::optional<error_code> started;
        m.async_start([&](error_code ec) { started = ec; });
        ASSERT_TRUE(run_until([&] { return started.has_value(); }));
        ASSERT_FALSE(*started) << started->message();
    }

    /// Registers the provider for `name` and waits until the catalog shows it.
    void add_provider(const std::string& name) {
        mesh_config cfg;
        cfg.consul = target.client_config();
        cfg.service_name = name;
        cfg.service_id = name + "-1";
        cfg.port = upstream.port();
        cfg.start = start_mode::wait_for_consul;
        provider.emplace(io, cfg);
        start(*provider);
        ASSERT_TRUE(run_until([&] {
            auto r = kv.get("/v1/health/service/" + name + "?passing");
            return r.status == 200 && !r.json_body().empty();
        })) << name
            << " never showed in the catalog";
    }

    /// The calling mesh: 3 attempts at `service`, quickly, with no breaker or ejection (they
    /// would rightly stop the calls to an instance answering 503), round robin; policy reload on.
    void start_caller() {
        mesh_config cfg;
        cfg.consul = target.client_config();
        cfg.start = start_mode::wait_for_consul;
        cfg.policy_reload = policy_reload_config{prefix};
        auto sc = cfg.default_calls;
        sc.balancer.kind = resilience::balancer_kind::round_robin;
        sc.balancer.outlier_detection.reset();
        sc.policy.circuit_breaker.reset();
        sc.policy.retry.max_attempts = 3;
        sc.policy.retry.base_backoff = 1ms;
        sc.policy.retry.max_backoff = 2ms;
        cfg.services[service] = sc;
        caller.emplace(io, cfg, observe::logger(sink, "mesh"));
        start(*caller);
    }

    void put(const std::string& k, const std::string& value) {
        auto r = kv.put("/v1/kv/" + k, value);
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    void del(const std::string& k) {
        auto r = kv.del("/v1/kv/" + k);
        ASSERT_EQ(r.status, 200u) << r.body;
    }

    struct outcome {
        error_code ec;
        call_result result;
        int hits = 0;  // requests the provider received for this call
    };

    outcome call() {
        const int before = upstream.hits.load();
        std::optional<outcome> out;
        caller->async_call(service, {}, {}, [&](error_code ec, call_result r) {
            out = outcome{ec, std::move(r)};
        });
        EXPECT_TRUE(run_until([&] { return out.has_value(); })) << "call did not complete";
        auto o = out.value_or(outcome{});
        // The server counts an answer once written; the call may complete a moment before.
        run_until(
            [&] { return upstream.hits.load() - before >= static_cast<int>(o.result.attempts); },
            2s);
        o.hits = upstream.hits.load() - before;
        return o;
    }

    unsigned max_attempts() { return caller->policy_of(service).config()->retry.max_attempts; }

    void SetUp() override { upstream.status = 503; }

    void TearDown() override {
        for (auto* m : {caller ? &*caller : nullptr, provider ? &*provider : nullptr}) {
            if (m) {
                std::optional<error_code> stopped;
                m->async_stop([&](error_code ec) { stopped = ec; });
                run_until([&] { return stopped.has_value(); });
            }
        }
        kv.del("/v1/kv/" + prefix + "?recurse");
    }
};

TEST_F(mesh_policy_reload, a_written_policy_changes_new_calls) {
    add_provider(service);
    start_caller();

    auto out = call();
    EXPECT_EQ(out.ec, make_error_code(call_errc::upstream_status)) << out.ec.message();
    EXPECT_EQ(out.result.attempts, 3u);
    EXPECT_EQ(out.hits, 3);
    EXPECT_EQ(caller->balancer_of(service)->config().kind, resilience::balancer_kind::round_robin);

    put(key(service), R"({"retry": {"max_attempts": 1}, "balancer": "random", "timeout": "4s"})");
    ASSERT_TRUE(run_until([&] { return max_attempts() == 1; })) << "the policy was not reloaded";
    const auto cfg = caller->policy_of(service).config();
    EXPECT_EQ(cfg->target, service);
    EXPECT_EQ(cfg->timeout, 4s);
    EXPECT_EQ(cfg->retry.base_backoff, 1ms);  // absent: the static value
    EXPECT_FALSE(cfg->circuit_breaker);       // absent: the static value (none)
    EXPECT_EQ(caller->stats().policy_reloads, 1u);
    EXPECT_EQ(caller->stats().policy_reload_rejections, 0u);
    EXPECT_EQ(caller->balancer_of(service)->config().kind, resilience::balancer_kind::random);

    out = call();
    EXPECT_EQ(out.ec, make_error_code(call_errc::upstream_status)) << out.ec.message();
    EXPECT_EQ(out.result.attempts, 1u);
    EXPECT_EQ(out.hits, 1);

    // A later value replaces the earlier one; the new balancer still finds the instance.
    put(key(service), R"({"retry": {"max_attempts": 2}})");
    ASSERT_TRUE(run_until([&] { return max_attempts() == 2; }));
    EXPECT_EQ(caller->policy_of(service).config()->timeout, resilience::duration::zero());
    EXPECT_EQ(caller->balancer_of(service)->config().kind, resilience::balancer_kind::round_robin);
    upstream.status = 200;
    out = call();
    ASSERT_FALSE(out.ec) << out.result.diag.to_string();
    EXPECT_EQ(out.result.response.status, 200u);
    EXPECT_EQ(caller->stats().policy_reloads, 2u);
}

TEST_F(mesh_policy_reload, an_invalid_value_is_rejected_and_the_old_policy_kept) {
    add_provider(service);
    start_caller();
    put(key(service), R"({"retry": {"max_attempts": 2}})");
    ASSERT_TRUE(run_until([&] { return max_attempts() == 2; }));
    EXPECT_EQ(caller->stats().policy_reloads, 1u);

    auto rejected = [&](std::uint64_t n) {
        return run_until([&] { return caller->stats().policy_reload_rejections >= n; });
    };
    // Not JSON.
    put(key(service), R"({"retry": {"max_attempts": 1)");
    ASSERT_TRUE(rejected(1));
    // A wrong type, then a value out of range, then inconsistent settings.
    put(key(service), R"({"retry": {"max_attempts": "1"}})");
    ASSERT_TRUE(rejected(2));
    put(key(service), R"({"retry": {"max_attempts": 0}})");
    ASSERT_TRUE(rejected(3));
    put(key(service), R"({"retry": {"base_backoff": "5s", "max_backoff": "1s"}})");
    ASSERT_TRUE(rejected(4));
    // An empty value, and a key nested below a service's.
    put(key(service), "");
    ASSERT_TRUE(rejected(5));
    put(key(service) + "/extra", R"({"retry": {"max_attempts": 1}})");
    ASSERT_TRUE(rejected(6));
    // Over 64 KiB.
    put(key(service), R"({"tag": ")" + std::string(std::size_t{70} * 1024, 'x') + R"("})");
    ASSERT_TRUE(rejected(7));

    EXPECT_EQ(caller->stats().policy_reload_rejections, 7u);
    EXPECT_EQ(caller->stats().policy_reloads, 1u);
    EXPECT_EQ(max_attempts(), 2u);
    auto out = call();
    EXPECT_EQ(out.result.attempts, 2u);
    EXPECT_EQ(out.hits, 2);

    // Each rejection was logged with the key and, for bad values, the field.
    const auto warnings = sink->warnings();
    auto logged = [&](const std::string& a, const std::string& b) {
        for (const auto& w : warnings) {
            if (w.find(a) != std::string::npos && w.find(b) != std::string::npos) {
                return true;
            }
        }
        return false;
    };
    EXPECT_TRUE(logged(key(service) + "'", "not valid JSON"));
    EXPECT_TRUE(logged(key(service) + "'", "retry.max_attempts: expected an integer"));
    EXPECT_TRUE(logged(key(service) + "'", "retry.max_attempts: 0 is out of range"));
    EXPECT_TRUE(logged(key(service) + "'", "retry.max_backoff"));
    EXPECT_TRUE(logged(key(service) + "'", "empty"));
    EXPECT_TRUE(logged(key(service) + "/extra'", "'/'"));
    EXPECT_TRUE(logged(key(service) + "'", "65536"));

    // The key becomes valid again: applied.
    put(key(service), R"({"retry": {"max_attempts": 1}})");
    ASSERT_TRUE(run_until([&] { return max_attempts() == 1; }));
    EXPECT_EQ(caller->stats().policy_reloads, 2u);
}

TEST_F(mesh_policy_reload, a_deleted_key_restores_the_static_policy) {
    add_provider(service);
    start_caller();
    put(key(service), R"({"retry": {"max_attempts": 1}})");
    ASSERT_TRUE(run_until([&] { return max_attempts() == 1; }));
    EXPECT_EQ(call().result.attempts, 1u);

    del(key(service));
    ASSERT_TRUE(run_until([&] { return max_attempts() == 3; })) << "the static policy is not back";
    EXPECT_EQ(caller->stats().policy_reloads, 2u);
    auto out = call();
    EXPECT_EQ(out.result.attempts, 3u);
    EXPECT_EQ(out.hits, 3);
}

TEST_F(mesh_policy_reload, a_key_written_before_the_first_call_is_used_by_it) {
    add_provider(service);
    put(key(service), R"({"retry": {"max_attempts": 1}})");
    start_caller();
    // The override is read at start, while the service has no policy yet (policy_of would
    // create it, so only the counter is watched).
    ASSERT_TRUE(run_until([&] { return caller->stats().policy_reloads == 1; }));
    EXPECT_EQ(caller->balancer_of(service), nullptr);  // never called yet
    auto out = call();
    EXPECT_EQ(out.result.attempts, 1u);
    EXPECT_EQ(out.hits, 1);
    EXPECT_EQ(max_attempts(), 1u);
}

TEST_F(mesh_policy_reload, a_service_without_static_settings_is_reloaded_over_default_calls) {
    const auto other = unique_name("plain");
    add_provider(other);
    start_caller();
    put(key(other), R"({"retry": {"max_attempts": 1}, "outlier_detection": false,
                        "circuit_breaker": false})");
    ASSERT_TRUE(run_until([&] { return caller->stats().policy_reloads == 1; }));
    const auto cfg = caller->policy_of(other).config();
    EXPECT_EQ(cfg->retry.max_attempts, 1u);
    EXPECT_EQ(cfg->retry.base_backoff, mesh_config{}.default_calls.policy.retry.base_backoff);
    std::optional<error_code> ec;
    caller->async_call(other, {}, {}, [&](error_code e, const call_result&) { ec = e; });
    ASSERT_TRUE(run_until([&] { return ec.has_value(); }));
    EXPECT_EQ(*ec, make_error_code(call_errc::upstream_status));
}

}  // namespace
}  // namespace lakemesh::test
