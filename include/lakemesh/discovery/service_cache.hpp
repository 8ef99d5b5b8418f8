// lakemesh::discovery::service_cache: the instances of the services a process calls, kept fresh
// by Consul blocking queries (push, no polling), bounded in memory, honest about staleness, and
// readable from any thread without locks or allocation.
//
// Writers (resolves, watch updates, invalidation, eviction) run on the cache's executor;
// lookup() runs on any thread.
// https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
#pragma once

#include <lakemesh/consul/check.hpp>
#include <lakemesh/consul/watch.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/observe/log.hpp>
#include <lakemesh/resilience/policy.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::consul {
class client;
struct service_entry;
}  // namespace lakemesh::consul

namespace lakemesh::discovery {

using clock = std::chrono::steady_clock;

/// Which instances of a service to keep. Each distinct query of a service is its own cache entry.
struct service_query {
    /// false (default): passing instances only. true: passing and warning (critical and
    /// maintenance are always left out).
    bool include_warning = false;
    /// Only instances carrying this tag. Empty: any.
    std::string tag;
    /// Only instances whose service meta has every one of these key/value pairs.
    std::map<std::string, std::string> meta;
    /// Datacenter to ask. Empty: the client's.
    std::string datacenter;

    friend bool operator==(const service_query&, const service_query&) = default;
};

/// One instance of a service as the cache keeps it.
struct service_instance {
    /// Service ID (unique on its node).
    std::string id;
    std::string service;
    std::string node;
    /// The address to call: the service's own, else its node's.
    std::string address;
    std::uint16_t port = 0;
    std::string datacenter;
    std::vector<std::string> tags;
    std::map<std::string, std::string> meta;
    std::map<std::string, std::string> node_meta;
    consul::service_weights weights;
    /// Aggregate of the instance's checks (its own and its node's).
    consul::check_status status = consul::check_status::passing;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;

    friend bool operator==(const service_instance&, const service_instance&) = default;
};

/// An immutable set of instances of one service/query, as Consul reported it at `index`.
struct service_snapshot : std::enable_shared_from_this<service_snapshot> {
    std::string service;
    service_query query;
    /// Sorted by (node, id). At most service_cache_config::max_instances.
    std::vector<service_instance> instances;
    /// X-Consul-Index of the answer.
    std::uint64_t index = 0;
    /// Instances Consul reported beyond max_instances and left out.
    std::size_t truncated = 0;
    /// When the answer arrived.
    clock::time_point received{};
};

namespace detail {
struct epoch_reader;
}

/// What lookup() returns: the current snapshot of a service, pinned for as long as the view
/// lives, with its staleness at lookup time.
///
/// A view is a cheap, move-only guard of the calling thread: destroy it on the thread that made
/// it, and keep it short (a long-lived view delays the freeing of replaced snapshots). For a
/// snapshot to keep or pass to another thread, call share().
class snapshot_view {
  public:
    snapshot_view() noexcept = default;
    snapshot_view(snapshot_view&& o) noexcept;
    snapshot_view& operator=(snapshot_view&& o) noexcept;
    snapshot_view(const snapshot_view&) = delete;
    snapshot_view& operator=(const snapshot_view&) = delete;
    ~snapshot_view();

    /// False when the service is not cached (or was evicted, or is past its max staleness).
    explicit operator bool() const noexcept { return snap_ != nullptr; }
    const service_snapshot& operator*() const noexcept { return *snap_; }
    const service_snapshot* operator->() const noexcept { return snap_; }
    const service_snapshot* get() const noexcept { return snap_; }

    /// True when Consul could not be reached since this snapshot was last confirmed.
    bool stale() const noexcept { return stale_; }
    /// Time since the snapshot was last confirmed by Consul: zero while the watch is healthy,
    /// growing while Consul is unreachable.
    clock::duration age(clock::time_point now = clock::now()) const noexcept;
    /// A shared owner of the snapshot, usable on any thread and for any time (no allocation).
    std::shared_ptr<const service_snapshot> share() const;

  private:
    friend class service_cache;
    const service_snapshot* snap_ = nullptr;
    detail::epoch_reader* reader_ = nullptr;
    bool stale_ = false;
    clock::time_point confirmed_{};
};

/// Outcome of async_resolve.
struct resolve_result {
    std::shared_ptr<const service_snapshot> snapshot;
    /// Consul unreachable since the snapshot was last confirmed (served stale-if-error).
    bool stale = false;
    /// Time since Consul last confirmed the snapshot (zero when fresh).
    clock::duration age{};
};

/// Per-service settings that override the cache-wide ones.
struct service_settings {
    /// Follow changes with a blocking-query watch (push). False: refresh every `ttl` (poll).
    std::optional<bool> watch;
    std::optional<std::chrono::milliseconds> ttl;
    std::optional<std::chrono::milliseconds> max_staleness;
};

struct service_cache_config {
    /// Most services (distinct service/query pairs) kept. Beyond it the least recently used is
    /// evicted and its watch stopped. Zero is treated as 1.
    std::size_t max_services = 1024;
    /// Most instances kept per service; the rest are counted in service_snapshot::truncated.
    std::size_t max_instances = 1024;
    /// Follow changes with blocking-query watches (push). False: refresh every `ttl`.
    bool watch = true;
    /// Refresh interval when watching is off (jittered by ±10%).
    std::chrono::milliseconds ttl{30'000};
    /// How long a snapshot is still served (marked stale) after Consul became unreachable.
    /// Past it, lookup() finds nothing and async_resolve fails with stale_beyond_limit.
    std::chrono::milliseconds max_staleness{300'000};
    /// Settings of the blocking-query watches (wait, backoff on errors with jitter).
    consul::watch_config watch_settings{};
    /// The policy the first resolve of a service goes through (retries, breaker, timeout).
    resilience::policy_config first_resolve{};
    /// Overrides by service name.
    std::map<std::string, service_settings> per_service;
};

/// Counters, for metrics. Read from any thread.
struct service_cache_stats {
    std::uint64_t resolves = 0;
    std::uint64_t updates = 0;    ///< snapshots published
    std::uint64_t evictions = 0;  ///< entries evicted by the max_services bound
    std::uint64_t truncated_instances = 0;
    std::uint64_t watch_errors = 0;
    std::uint64_t resyncs = 0;  ///< index went backwards (agent lost its state)
    std::size_t services = 0;   ///< entries cached now
    std::size_t watches = 0;    ///< watches running now
};

/// A subscription; unsubscribes when destroyed or reset.
class subscription {
  public:
    subscription() = default;
    explicit subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
    subscription(subscription&&) noexcept = default;
    subscription& operator=(subscription&& o) noexcept {
        reset();
        cancel_ = std::move(o.cancel_);
        return *this;
    }
    ~subscription() { reset(); }
    void reset() {
        if (cancel_) {
            auto c = std::move(cancel_);
            cancel_ = nullptr;
            c();
        }
    }

  private:
    std::function<void()> cancel_;
};

/// Where instances come from: one read of GET /v1/health/service/:service for `query` with
/// blocking parameters `params`, completing with (error, entries, X-Consul-Index). The default
/// source is a consul::client; tests and other sources plug in here.
using service_source = std::function<void(
    const std::string& service, const service_query& query, consul::fetch_params params,
    boost::asio::any_completion_handler<void(error_code, std::vector<consul::service_entry>,
                                             std::uint64_t)>
        handler)>;

/// The source reading through `c` (which must outlive the cache).
service_source consul_source(consul::client& c);

/// Called on the cache's executor when the instance set of a cached service changes (not for
/// an answer that changed nothing). `before` is null on the first snapshot.
using change_callback = std::function<void(const std::string& service,
                                           const std::shared_ptr<const service_snapshot>& before,
                                           const std::shared_ptr<const service_snapshot>& after)>;

/// Thread safety: lookup(), stats() and the snapshot views are safe from any thread. Everything
/// else must be called on the cache's executor (a strand if the io_context has several threads).
class service_cache {
  public:
    using executor_type = boost::asio::any_io_executor;

    service_cache(executor_type ex, consul::client& c, service_cache_config cfg = {},
                  observe::logger log = {});
    service_cache(executor_type ex, service_source source, service_cache_config cfg = {},
                  observe::logger log = {});
    ~service_cache();
    service_cache(const service_cache&) = delete;
    service_cache& operator=(const service_cache&) = delete;

    executor_type get_executor() const noexcept;

    /// The instances of `service` matching `query`. A cached service answers at once (stale
    /// ones too, flagged, until max_staleness); the first resolve goes through the
    /// first_resolve policy and then starts the watch that keeps the entry fresh.
    /// Completion: void(error_code, resolve_result). Errors: the source's (after the policy),
    /// policy_errc, discovery_errc::stale_beyond_limit, cache_stopped, invalidated.
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    auto async_resolve(std::string service, const service_query& query, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, resolve_result)>(
            [this, s = std::move(service), q = query](auto h) mutable {
                start_resolve(std::move(s), std::move(q),
                              boost::asio::any_completion_handler<void(error_code, resolve_result)>(
                                  std::move(h)));
            },
            token);
    }
    /// async_resolve with the default query (passing instances, any tag).
    template <class Token = boost::asio::default_completion_token_t<executor_type>>
    requires(!std::is_convertible_v<Token, const service_query&>) auto async_resolve(
        std::string service, Token&& token = {}) {
        return async_resolve(std::move(service), service_query{}, std::forward<Token>(token));
    }

    /// The current snapshot of `service` (default query) or of `service`/`query`, without
    /// waiting: lock-free and allocation-free for the default query. An empty view when the
    /// service is not cached or is past its max staleness. Any thread.
    snapshot_view lookup(std::string_view service) const noexcept;
    snapshot_view lookup(std::string_view service, const service_query& query) const;

    /// Calls `cb` on every change of `service` (any query of it). Executor only.
    subscription subscribe(std::string service, change_callback cb);

    /// Drops every cached query of `service` and stops their watches; the next use resolves
    /// afresh. Executor only.
    void invalidate(std::string_view service);
    void invalidate_all();
    /// Consul is known to answer again (e.g. another request of the application succeeded):
    /// every watch waiting out an error backoff fetches now instead of after up to
    /// watch.error_backoff_cap. Executor only.
    void retry_now();
    /// Stops every watch and fails pending resolves with cache_stopped; lookups find nothing.
    void stop();

    service_cache_stats stats() const noexcept;

  private:
    void start_resolve(std::string service, service_query query,
                       boost::asio::any_completion_handler<void(error_code, resolve_result)> h);

    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::discovery
