// service_cache against an in-memory source (no sockets): first resolve and cache hits, push
// updates and subscription delivery, filtering, the instance and service bounds with LRU
// eviction, invalidation, staleness accounting, resynchronisation, and reads from other threads.
#include <lakemesh/consul/health.hpp>
#include <lakemesh/discovery/service_cache.hpp>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <thread>

namespace lakemesh::discovery {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using entries_t = std::vector<consul::service_entry>;
using fetch_handler = asio::any_completion_handler<void(error_code, entries_t, std::uint64_t)>;

consul::service_entry instance(const std::string& service, const std::string& id,
                               consul::check_status st = consul::check_status::passing,
                               std::vector<std::string> tags = {},
                               std::map<std::string, std::string> meta = {}) {
    consul::service_entry e;
    e.node.node = "node-" + id;
    e.node.address = "10.0.0." + std::to_string(id.size());
    e.service.id = id;
    e.service.service = service;
    e.service.port = 8080;
    e.service.tags = std::move(tags);
    e.service.meta = std::move(meta);
    consul::health_check c;
    c.check_id = "check-" + id;
    c.status = st;
    e.checks.push_back(c);
    return e;
}

/// Consul in memory: each service has entries and an index; a fetch with the current index
/// parks until the service changes (a blocking query), and cancellation is honoured.
class fake_consul {
  public:
    explicit fake_consul(asio::io_context& io) : io_(io) {}

    struct parked {
        std::string service;
        std::shared_ptr<fetch_handler> handler;
    };

    service_source source() {
        return [this](const std::string& service, const service_query&, consul::fetch_params p,
                      fetch_handler h) {
            ++fetches;
            if (p.index > 0) {
                ++blocking_fetches;
            }
            if (failing) {
                post(std::move(h), transport_errc::connect_failed, {}, 0);
                return;
            }
            auto& s = services_[service];
            if (p.index > 0 && p.index >= s.index) {
                auto slot = asio::get_associated_cancellation_slot(h);
                auto held = std::make_shared<fetch_handler>(std::move(h));
                parked_.push_back({service, held});
                if (slot.is_connected()) {
                    slot.assign([this, held](asio::cancellation_type) {
                        ++cancellations;
                        std::erase_if(parked_, [&](const parked& x) { return x.handler == held; });
                        post(std::move(*held), asio::error::operation_aborted, {}, 0);
                    });
                }
                return;
            }
            post(std::move(h), {}, s.entries, s.index);
        };
    }

    void set(const std::string& service, entries_t entries) {
        auto& s = services_[service];
        s.entries = std::move(entries);
        s.index = ++global_index_;
        wake(service);
    }
    /// Loses every service and restarts the index from a low number.
    void lose_state() {
        for (auto& [name, s] : services_) {
            s.index = 1;
            s.entries.clear();
        }
        global_index_ = 1;
    }
    void fail_all_parked() {
        auto all = std::move(parked_);
        parked_.clear();
        for (auto& p : all) {
            post(std::move(*p.handler), transport_errc::connection_closed, {}, 0);
        }
    }
    std::size_t parked_count() const { return parked_.size(); }
    std::size_t parked_for(const std::string& service) const {
        return std::count_if(parked_.begin(), parked_.end(),
                             [&](const parked& p) { return p.service == service; });
    }

    int fetches = 0;
    int blocking_fetches = 0;
    int cancellations = 0;
    bool failing = false;

  private:
    struct state {
        entries_t entries;
        std::uint64_t index = 0;
    };
    void wake(const std::string& service) {
        auto all = std::move(parked_);
        parked_.clear();
        for (auto& p : all) {
            if (p.service == service) {
                auto& s = services_[service];
                post(std::move(*p.handler), {}, s.entries, s.index);
            } else {
                parked_.push_back(std::move(p));
            }
        }
    }
    void post(fetch_handler h, error_code ec, entries_t v, std::uint64_t index) {
        auto slot = asio::get_associated_cancellation_slot(h);
        if (slot.is_connected()) {
            slot.clear();
        }
        asio::post(io_, [h = std::move(h), ec, v = std::move(v), index]() mutable {
            std::move(h)(ec, std::move(v), index);
        });
    }

    asio::io_context& io_;
    std::map<std::string, state> services_;
    std::uint64_t global_index_ = 10;
    std::vector<parked> parked_;
};

service_cache_config fast_config() {
    service_cache_config cfg;
    cfg.watch_settings.min_unchanged_interval = 0ms;
    cfg.watch_settings.error_backoff_base = 1ms;
    cfg.watch_settings.error_backoff_cap = 5ms;
    cfg.watch_settings.seed = 7;
    cfg.first_resolve.retry.max_attempts = 1;
    cfg.first_resolve.circuit_breaker.reset();
    return cfg;
}

class cache_test : public ::testing::Test {
  protected:
    void make(service_cache_config cfg = fast_config()) {
        cache.emplace(io.get_executor(), consul.source(), std::move(cfg));
    }
    /// Runs handlers until nothing is ready (parked fetches hold no work).
    void settle() {
        io.restart();
        io.poll();
        io.restart();
    }
    template <class Pred>
    bool run_until(Pred p, std::chrono::milliseconds limit = 2s) {
        const auto end = std::chrono::steady_clock::now() + limit;
        io.restart();
        while (!p() && std::chrono::steady_clock::now() < end) {
            io.run_one_for(5ms);
        }
        return p();
    }
    std::pair<error_code, resolve_result> resolve(const std::string& s,
                                                  const service_query& q = {}) {
        std::optional<std::pair<error_code, resolve_result>> out;
        cache->async_resolve(s, q, [&](error_code ec, resolve_result r) { out.emplace(ec, r); });
        EXPECT_TRUE(run_until([&] { return out.has_value(); }));
        return out.value_or(std::pair{error_code(asio::error::timed_out), resolve_result{}});
    }

    asio::io_context io;
    fake_consul consul{io};
    std::optional<service_cache> cache;
};

TEST_F(cache_test, first_resolve_fetches_then_the_cache_answers_and_a_watch_follows) {
    consul.set("web", {instance("web", "b"), instance("web", "a")});
    make();
    auto [ec, r] = resolve("web");
    ASSERT_FALSE(ec) << ec.message();
    ASSERT_TRUE(r.snapshot);
    ASSERT_EQ(r.snapshot->instances.size(), 2u);
    EXPECT_EQ(r.snapshot->instances[0].id, "a");  // sorted by node, id
    EXPECT_FALSE(r.stale);
    settle();
    EXPECT_EQ(consul.parked_for("web"), 1u) << "one blocking watch follows the service";
    const int fetches = consul.fetches;
    auto [ec2, r2] = resolve("web");
    ASSERT_FALSE(ec2);
    EXPECT_EQ(r2.snapshot, cache->lookup("web").share());
    EXPECT_EQ(consul.fetches, fetches) << "a cached service is answered without Consul";
    auto v = cache->lookup("web");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->instances.size(), 2u);
    EXPECT_FALSE(cache->lookup("other"));
}

TEST_F(cache_test, changes_are_pushed_to_lookups_and_subscribers_with_before_and_after) {
    consul.set("web", {instance("web", "a")});
    make();
    std::vector<std::pair<std::size_t, std::size_t>> changes;
    auto sub =
        cache->subscribe("web", [&](const std::string& s, const auto& before, const auto& after) {
            EXPECT_EQ(s, "web");
            changes.emplace_back(before ? before->instances.size() : 0, after->instances.size());
        });
    resolve("web");
    ASSERT_EQ(changes.size(), 1u);
    EXPECT_EQ(changes[0], (std::pair<std::size_t, std::size_t>{0, 1}));
    consul.set("web", {instance("web", "a"), instance("web", "b")});
    ASSERT_TRUE(run_until([&] { return changes.size() == 2; }));
    EXPECT_EQ(changes[1], (std::pair<std::size_t, std::size_t>{1, 2}));
    EXPECT_EQ(cache->lookup("web")->instances.size(), 2u);
    // An answer with a new index but the same instances is not a change.
    consul.set("web", {instance("web", "a"), instance("web", "b")});
    settle();
    settle();
    EXPECT_EQ(changes.size(), 2u);
    // Unsubscribed: no more calls.
    sub.reset();
    consul.set("web", {instance("web", "a")});
    ASSERT_TRUE(run_until([&] { return cache->lookup("web")->instances.size() == 1; }));
    EXPECT_EQ(changes.size(), 2u);
}

TEST_F(cache_test, health_tag_and_meta_filters) {
    using consul::check_status;
    consul.set("api", {instance("api", "p", check_status::passing, {"v1"}, {{"zone", "a"}}),
                       instance("api", "w", check_status::warning, {"v1"}, {{"zone", "b"}}),
                       instance("api", "c", check_status::critical, {"v1"}),
                       instance("api", "m", check_status::maintenance, {"v2"})});
    make();
    EXPECT_EQ(resolve("api").second.snapshot->instances.size(), 1u);
    service_query warn;
    warn.include_warning = true;
    EXPECT_EQ(resolve("api", warn).second.snapshot->instances.size(), 2u);
    service_query zone;
    zone.include_warning = true;
    zone.meta = {{"zone", "b"}};
    auto r = resolve("api", zone).second;
    ASSERT_EQ(r.snapshot->instances.size(), 1u);
    EXPECT_EQ(r.snapshot->instances[0].id, "w");
    service_query tag;
    tag.tag = "v2";
    EXPECT_TRUE(resolve("api", tag).second.snapshot->instances.empty());
    // Each query is its own entry, looked up with its query.
    EXPECT_EQ(cache->lookup("api", warn)->instances.size(), 2u);
    EXPECT_EQ(cache->stats().services, 4u);
}

TEST_F(cache_test, instances_beyond_the_bound_are_counted_not_kept) {
    entries_t many;
    for (int i = 0; i < 10; ++i) {
        many.push_back(instance("big", "i" + std::to_string(i)));
    }
    consul.set("big", many);
    auto cfg = fast_config();
    cfg.max_instances = 3;
    make(cfg);
    auto r = resolve("big").second;
    EXPECT_EQ(r.snapshot->instances.size(), 3u);
    EXPECT_EQ(r.snapshot->truncated, 7u);
    EXPECT_EQ(cache->stats().truncated_instances, 7u);
}

TEST_F(cache_test, least_recently_used_service_is_evicted_and_its_watch_stopped) {
    for (const char* s : {"a", "b", "c"}) {
        consul.set(s, {instance(s, "1")});
    }
    auto cfg = fast_config();
    cfg.max_services = 2;
    make(cfg);
    resolve("a");
    resolve("b");
    settle();
    EXPECT_EQ(consul.parked_count(), 2u);
    // Reading "a" makes "b" the least recently used.
    EXPECT_TRUE(cache->lookup("a"));
    resolve("c");
    settle();
    EXPECT_EQ(cache->stats().evictions, 1u);
    EXPECT_FALSE(cache->lookup("b"));
    EXPECT_TRUE(cache->lookup("a"));
    EXPECT_TRUE(cache->lookup("c"));
    EXPECT_EQ(consul.parked_for("b"), 0u) << "the evicted service's watch is stopped";
    EXPECT_EQ(consul.parked_count(), 2u);
    EXPECT_GE(consul.cancellations, 1);
    EXPECT_EQ(cache->stats().services, 2u);
    EXPECT_EQ(cache->stats().watches, 2u);
    // Resolving "a" again then "b" evicts "c", the least recently used now.
    resolve("a");
    resolve("b");
    EXPECT_FALSE(cache->lookup("c"));
    EXPECT_EQ(cache->stats().evictions, 2u);
}

TEST_F(cache_test, invalidate_ends_the_watch_and_the_next_resolve_fetches_again) {
    consul.set("web", {instance("web", "a")});
    consul.set("db", {instance("db", "a")});
    make();
    resolve("web");
    resolve("db");
    settle();
    const int fetches = consul.fetches;
    cache->invalidate("web");
    settle();
    EXPECT_FALSE(cache->lookup("web"));
    EXPECT_TRUE(cache->lookup("db"));
    EXPECT_EQ(consul.parked_for("web"), 0u);
    resolve("web");
    EXPECT_GT(consul.fetches, fetches);
    cache->invalidate_all();
    settle();
    EXPECT_EQ(consul.parked_count(), 0u);
    EXPECT_EQ(cache->stats().services, 0u);
}

TEST_F(cache_test, unreachable_consul_serves_stale_then_fails_after_max_staleness) {
    consul.set("web", {instance("web", "a")});
    auto cfg = fast_config();
    cfg.max_staleness = 150ms;
    cfg.watch_settings.error_backoff_base = 20ms;
    cfg.watch_settings.error_backoff_cap = 20ms;
    make(cfg);
    // Staleness counts from the last confirmation, which happens after this point.
    const auto t_before_confirm = clock::now();
    resolve("web");
    settle();
    const auto t_fail = clock::now();
    consul.failing = true;
    consul.fail_all_parked();
    ASSERT_TRUE(run_until([&] { return cache->lookup("web").stale(); }));
    {
        auto v = cache->lookup("web");
        ASSERT_TRUE(v) << "stale data is still served";
        EXPECT_TRUE(v.stale());
        EXPECT_GT(v.age(), 0ms);
        EXPECT_LE(v.age(), clock::now() - t_fail + 50ms);
    }
    auto [ec, r] = resolve("web");
    EXPECT_FALSE(ec);
    EXPECT_TRUE(r.stale);
    EXPECT_GT(r.age, 0ms);
    ASSERT_TRUE(run_until([&] { return !cache->lookup("web"); }))
        << "past max staleness nothing is served";
    EXPECT_GE(clock::now() - t_before_confirm, 150ms);
    auto [ec2, r2] = resolve("web");
    EXPECT_EQ(ec2, make_error_code(discovery_errc::stale_beyond_limit));
    EXPECT_TRUE(is_retryable(ec2));
    // Consul comes back: the watch's backoff retries, the entry is fresh again.
    consul.failing = false;
    ASSERT_TRUE(run_until([&] {
        auto v = cache->lookup("web");
        return v && !v.stale();
    }));
    EXPECT_GT(cache->stats().watch_errors, 0u);
}

TEST_F(cache_test, index_going_backwards_resynchronises) {
    consul.set("web", {instance("web", "a"), instance("web", "b")});
    make();
    resolve("web");
    settle();
    consul.lose_state();
    consul.set("web", {instance("web", "c")});
    consul.fail_all_parked();  // the agent restart dropped the held query
    ASSERT_TRUE(run_until([&] {
        auto v = cache->lookup("web");
        return v && v->instances.size() == 1 && v->instances[0].id == "c";
    }));
    EXPECT_GE(cache->stats().resyncs, 1u);
}

TEST_F(cache_test, first_resolve_failure_is_reported_and_nothing_is_cached) {
    consul.failing = true;
    make();
    auto [ec, r] = resolve("web");
    EXPECT_TRUE(ec);
    EXPECT_FALSE(r.snapshot);
    EXPECT_FALSE(cache->lookup("web"));
    EXPECT_EQ(cache->stats().services, 0u);
    auto [ec2, r2] = resolve("bad\nname");
    EXPECT_EQ(ec2, make_error_code(validation_errc::invalid_name));
}

TEST_F(cache_test, stop_fails_pending_resolves_and_ends_every_watch) {
    consul.set("web", {instance("web", "a")});
    make();
    resolve("web");
    settle();
    std::optional<error_code> pending;
    cache->async_resolve("db", [&](error_code ec, resolve_result) { pending = ec; });
    cache->stop();
    ASSERT_TRUE(run_until([&] { return pending.has_value(); }));
    EXPECT_EQ(*pending, make_error_code(discovery_errc::cache_stopped));
    settle();
    EXPECT_EQ(consul.parked_count(), 0u);
    EXPECT_FALSE(cache->lookup("web"));
}

TEST_F(cache_test, lookups_from_other_threads_see_whole_snapshots_while_updates_apply) {
    consul.set("web", {instance("web", "a")});
    make();
    resolve("web");
    std::atomic<bool> done{false};
    std::atomic<long> reads{0};
    std::atomic<long> torn{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t) {
        readers.emplace_back([&] {
            while (!done.load()) {
                auto v = cache->lookup("web");
                if (v) {
                    // Every snapshot the writer publishes has instances numbered 0..n-1.
                    for (std::size_t i = 0; i < v->instances.size(); ++i) {
                        if (v->instances[i].port != 8080) {
                            ++torn;
                        }
                    }
                    auto keep = v.share();
                    if (!keep || keep.get() != v.get()) {
                        ++torn;
                    }
                    ++reads;
                }
            }
        });
    }
    for (int i = 0; i < 300; ++i) {
        entries_t e;
        for (int k = 0; k <= i % 7; ++k) {
            e.push_back(instance("web", "i" + std::to_string(k)));
        }
        consul.set("web", e);
        io.restart();
        io.poll();
    }
    done = true;
    for (auto& t : readers) {
        t.join();
    }
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(torn.load(), 0);
    EXPECT_GT(cache->stats().updates, 100u);
}

TEST_F(cache_test, table_growth_and_tombstone_rebuilds_keep_every_key_findable_during_reads) {
    // Names around the 29-byte inline key limit, and a query key, live through the table
    // growing from 16 slots and being rebuilt to drop tombstones, while two threads probe it.
    const std::string long_name = "a-service-name-longer-than-the-inline-key-bytes";
    const std::string edge_name(29, 'e');
    service_query tagged;
    tagged.tag = "blue";
    for (const auto& s : {long_name, edge_name, std::string("web")}) {
        consul.set(s, {instance(s, "1", consul::check_status::passing, {"blue"})});
    }
    auto cfg = fast_config();
    cfg.max_services = 64;
    make(cfg);
    ASSERT_FALSE(resolve(long_name).first);
    ASSERT_FALSE(resolve(edge_name).first);
    ASSERT_FALSE(resolve("web", tagged).first);

    std::atomic<bool> done{false};
    std::atomic<long> reads{0};
    std::atomic<long> missing{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t) {
        readers.emplace_back([&] {
            while (!done.load()) {
                const bool all = cache->lookup(long_name) && cache->lookup(edge_name) &&
                                 cache->lookup("web", tagged) && !cache->lookup("web") &&
                                 !cache->lookup(long_name + "x") && !cache->lookup(edge_name + "e");
                missing += !all;
                ++reads;
            }
        });
    }
    // 40 names at once (growth to 128 slots), then 20 rounds of dropping and re-adding them:
    // each round leaves 40 tombstones, so the table is rebuilt over and over.
    for (int round = 0; round < 20; ++round) {
        for (int i = 0; i < 40; ++i) {
            const std::string name = "churn-" + std::to_string(i) + std::string(i % 3 * 15, 'x');
            if (round == 0) {
                consul.set(name, {instance(name, "1")});
            }
            ASSERT_FALSE(resolve(name).first) << name;
            ASSERT_TRUE(cache->lookup(name)) << name;
        }
        EXPECT_EQ(cache->stats().services, 43u);
        for (int i = 0; i < 40; ++i) {
            const std::string name = "churn-" + std::to_string(i) + std::string(i % 3 * 15, 'x');
            cache->invalidate(name);
            settle();
            EXPECT_FALSE(cache->lookup(name)) << name;
        }
    }
    done = true;
    for (auto& t : readers) {
        t.join();
    }
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(missing.load(), 0) << "a cached key was not found (or a foreign key was) mid-rebuild";
    EXPECT_EQ(cache->stats().evictions, 0u);
    EXPECT_EQ(cache->stats().services, 3u);
}

}  // namespace
}  // namespace lakemesh::discovery
