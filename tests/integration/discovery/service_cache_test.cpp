// service_cache against dev_consul (or a real agent): registrations, deregistrations and checks
// going critical reach the cache by push, Consul going down serves stale data then fails, an
// agent restart that loses state is resynchronised, and eviction ends the evicted watch.
#include <lakemesh/discovery/service_cache.hpp>

#include "../consul/typed_client_fixture.hpp"

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using discovery::resolve_result;
using discovery::service_cache;
using discovery::service_cache_config;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto push_limit = 500ms;  // sanitizers slow every hop down several times
#else
constexpr auto push_limit = 100ms;
#endif

class cache_integration : public typed_client_fixture {
  protected:
    service_cache_config config() const {
        service_cache_config cfg;
        cfg.watch_settings.min_unchanged_interval = 0ms;
        cfg.watch_settings.error_backoff_base = 20ms;
        cfg.watch_settings.error_backoff_cap = 50ms;
        cfg.first_resolve.retry.max_attempts = 1;
        return cfg;
    }

    void register_instance(const std::string& id, consul::check_status initial) {
        consul::service_registration reg;
        reg.id = id;
        reg.name = service;
        reg.port = 9000;
        consul::check_definition ttl;
        ttl.id = id + "-ttl";
        ttl.name = "ttl";
        ttl.ttl = 60s;
        ttl.status = initial;
        reg.check = ttl;
        ok<std::monostate>([&](auto h) { c.agent().async_service_register(reg, std::move(h)); });
        registered.push_back(id);
    }

    resolve_result resolve(service_cache& cache) {
        std::optional<std::pair<error_code, resolve_result>> out;
        cache.async_resolve(service, [&](error_code ec, resolve_result r) { out.emplace(ec, r); });
        EXPECT_TRUE(run_until([&] { return out.has_value(); }, 5s));
        EXPECT_FALSE(out && out->first) << (out ? out->first.message() : "");
        return out ? out->second : resolve_result{};
    }

    template <class Pred>
    bool run_until(Pred p, std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        io.restart();
        while (!p() && std::chrono::steady_clock::now() < end) {
            io.run_one_for(2ms);
        }
        return p();
    }

    std::size_t instances(const service_cache& cache) const {
        auto v = cache.lookup(service);
        return v ? v->instances.size() : 0;
    }

    std::string service = unique_name("cached");
};

TEST_F(cache_integration, registration_deregistration_and_critical_check_arrive_by_push) {
    register_instance(service + "-1", consul::check_status::passing);
    service_cache cache(io.get_executor(), c, config());
    ASSERT_EQ(resolve(cache).snapshot->instances.size(), 1u);
    ASSERT_TRUE(run_until([&] { return cache.stats().watches == 1; }, 2s));
    // Let the watch park on its blocking query.
    run_until([] { return false; }, 50ms);

    auto timed = [&](auto change, std::size_t expect) {
        const auto served = target.dev() ? target.dev()->requests_served() : 0;
        const auto t0 = std::chrono::steady_clock::now();
        change();
        const bool seen = run_until([&] { return instances(cache) == expect; }, 2s);
        const auto took = std::chrono::steady_clock::now() - t0;
        EXPECT_TRUE(seen) << "cache has " << instances(cache) << ", expected " << expect;
        EXPECT_LT(took, push_limit)
            << "took " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
            << " ms";
        if (target.dev() != nullptr) {
            // No polling: the write itself, and the watch's one re-issued blocking query.
            EXPECT_LE(target.dev()->requests_served() - served, 3u);
        }
    };
    timed([&] { register_instance(service + "-2", consul::check_status::passing); }, 2);
    timed(
        [&] {
            ok<std::monostate>([&](auto h) {
                c.agent().async_check_fail(service + "-2-ttl", "down", std::move(h));
            });
        },
        1);
    timed(
        [&] {
            ok<std::monostate>(
                [&](auto h) { c.agent().async_service_deregister(service + "-1", std::move(h)); });
        },
        0);
}

// Tests that stop or restart the agent (run alone against a real agent).
class cache_agent_restart : public cache_integration {};

TEST_F(cache_agent_restart, consul_down_serves_stale_then_fails_after_max_staleness) {
    LAKEMESH_NEEDS_CONTROL(target);
    register_instance(service + "-1", consul::check_status::passing);
    auto cfg = config();
    cfg.max_staleness = 400ms;
    service_cache cache(io.get_executor(), c, cfg);
    resolve(cache);
    run_until([] { return false; }, 50ms);
    target.stop_agent();
    ASSERT_TRUE(run_until([&] { return cache.lookup(service).stale(); }, 2s));
    {
        auto v = cache.lookup(service);
        ASSERT_TRUE(v);
        EXPECT_EQ(v->instances.size(), 1u);
    }
    ASSERT_TRUE(run_until([&] { return !cache.lookup(service); }, 3s));
    std::optional<error_code> ec;
    cache.async_resolve(service, [&](error_code e, resolve_result) { ec = e; });
    ASSERT_TRUE(run_until([&] { return ec.has_value(); }, 2s));
    EXPECT_EQ(*ec, make_error_code(discovery_errc::stale_beyond_limit));
    target.start_agent();
    ASSERT_TRUE(run_until(
        [&] {
            auto v = cache.lookup(service);
            return v && !v.stale();
        },
        3s));
    registered.clear();  // stop() kept the state, but the test leaves nothing worth cleaning
    ok<std::monostate>(
        [&](auto h) { c.agent().async_service_deregister(service + "-1", std::move(h)); });
}

TEST_F(cache_agent_restart, restart_with_state_lost_resynchronises) {
    LAKEMESH_NEEDS_CONTROL(target);
    // History, so the agent's index is well above where a fresh agent starts.
    for (int i = 0; i < 5; ++i) {
        register_instance(service + "-" + std::to_string(i), consul::check_status::passing);
    }
    service_cache cache(io.get_executor(), c, config());
    ASSERT_EQ(resolve(cache).snapshot->instances.size(), 5u);
    run_until([] { return false; }, 50ms);
    target.restart_agent(/*keep_state=*/false);
    registered.clear();
    register_instance(service + "-new", consul::check_status::passing);
    ASSERT_TRUE(run_until(
        [&] {
            auto v = cache.lookup(service);
            return v && v->instances.size() == 1 && v->instances[0].id == service + "-new";
        },
        3s))
        << "cache has " << instances(cache);
    EXPECT_GE(cache.stats().resyncs, 1u);
}

TEST_F(cache_integration, eviction_stops_the_evicted_watch) {
    LAKEMESH_NEEDS_DEV(target);
    auto cfg = config();
    cfg.max_services = 1;
    service_cache cache(io.get_executor(), c, cfg);
    const auto before = target.dev()->blocking_queries();
    resolve(cache);
    ASSERT_TRUE(run_until([&] { return target.dev()->blocking_queries() == before + 1; }, 2s));
    std::string other = service + "-other";
    std::optional<error_code> ec;
    cache.async_resolve(other, [&](error_code e, resolve_result) { ec = e; });
    ASSERT_TRUE(run_until([&] { return ec.has_value(); }, 2s));
    EXPECT_FALSE(*ec);
    EXPECT_EQ(cache.stats().evictions, 1u);
    EXPECT_FALSE(cache.lookup(service));
    // The evicted watch's query is gone from the agent; only the new one is held.
    EXPECT_TRUE(run_until([&] { return target.dev()->blocking_queries() == before + 1; }, 2s));
    run_until([] { return false; }, 100ms);
    EXPECT_EQ(target.dev()->blocking_queries(), before + 1);
}

}  // namespace
}  // namespace lakemesh::test
