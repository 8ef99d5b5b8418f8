// service_cache whose Consul client goes through a fault_proxy, against dev_consul or the real
// agent: a blackhole during the blocking-query watch keeps lookups serving the last known
// instances (flagged stale), the watch's errors are counted, and once the fault clears the cache
// catches up with a change made in Consul during the fault.
#include <lakemesh/discovery/service_cache.hpp>

#include "../consul/typed_client_fixture.hpp"
#include "fault_proxy.hpp"
#include "run_future.hpp"

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using discovery::resolve_result;
using discovery::service_cache;
using discovery::service_cache_config;

class fault_discovery : public typed_client_fixture {
  protected:
    fault_proxy proxy{target.host(), target.port()};
    std::string service = unique_name("fcached");

    /// A client that reaches Consul through the proxy; blocking queries end after ~1 s when
    /// nothing answers (a 500 ms wait plus a 500 ms request timeout).
    consul::client_config proxied() const {
        auto cfg = target.client_config();
        cfg.addresses = {consul::agent_address{"127.0.0.1", proxy.port()}};
        cfg.request_timeout = 500ms;
        cfg.connect_timeout = 500ms;
        return cfg;
    }

    void register_instance(const std::string& id) {
        consul::service_registration reg;
        reg.id = id;
        reg.name = service;
        reg.port = 9000;
        ok<std::monostate>([&](auto h) { c.agent().async_service_register(reg, std::move(h)); });
        registered.push_back(id);
    }

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        return test::run_until(io, done, limit, 2ms);
    }

    std::size_t instances(const service_cache& cache) const {
        auto v = cache.lookup(service);
        return v ? v->instances.size() : 0;
    }

    void TearDown() override {
        proxy.clear();
        typed_client_fixture::TearDown();
    }
};

TEST_F(fault_discovery, blackhole_during_a_watch_serves_stale_then_catches_up) {
    register_instance(service + "-1");
    consul::client through(io, proxied());
    service_cache_config cfg;
    cfg.watch_settings.wait = 500ms;
    cfg.watch_settings.min_unchanged_interval = 0ms;
    cfg.watch_settings.error_backoff_base = 20ms;
    cfg.watch_settings.error_backoff_cap = 100ms;
    cfg.first_resolve.retry.max_attempts = 1;
    service_cache cache(io.get_executor(), through, cfg);
    std::optional<error_code> resolved;
    cache.async_resolve(service, [&](error_code ec, resolve_result) { resolved = ec; });
    ASSERT_TRUE(run_until([&] { return resolved.has_value(); }, 10s));
    ASSERT_FALSE(*resolved) << resolved->message();
    ASSERT_EQ(instances(cache), 1u);
    ASSERT_TRUE(run_until([&] { return cache.stats().watches == 1; }, 5s));

    // The watch's blocking query (on its pooled connection) and every later request vanish.
    proxy.set_fault({.blackhole = true});
    const auto errors_before = cache.stats().watch_errors;
    ASSERT_TRUE(run_until([&] { return cache.stats().watch_errors > errors_before; }, 15s))
        << "the watch never reported the failure";
    {
        auto v = cache.lookup(service);
        ASSERT_TRUE(v) << "nothing served while Consul is unreachable";
        EXPECT_TRUE(v.stale());
        EXPECT_EQ(v->instances.size(), 1u);
    }
    // A change made during the fault (directly, not through the proxy)...
    register_instance(service + "-2");
    ASSERT_TRUE(run_until([&] { return proxy.counters().dropped_bytes > 0; }, 5s));
    run_until([] { return false; }, 300ms);
    EXPECT_EQ(instances(cache), 1u) << "a change crossed the blackhole";
    EXPECT_TRUE(cache.lookup(service).stale());

    // ...is caught up with once the fault clears.
    proxy.clear();
    ASSERT_TRUE(run_until(
        [&] {
            auto v = cache.lookup(service);
            return v && !v.stale() && v->instances.size() == 2;
        },
        15s))
        << "the cache has " << instances(cache) << " instances after the fault cleared";
}

}  // namespace
}  // namespace lakemesh::test
