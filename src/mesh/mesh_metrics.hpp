// The mesh's metric families (README "Metrics" lists them) and the cheap per-service and
// per-endpoint children the call path updates. Everything here runs on the mesh's executor.
#pragma once

#include <lakemesh/consul/observer.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/observe/log.hpp>
#include <lakemesh/observe/metrics.hpp>
#include <lakemesh/resilience/events.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace lakemesh::mesh::detail {

/// How a call ended, as the `outcome` label says it.
enum class call_outcome : std::uint8_t {
    ok,               ///< an answer below 500 (other than 429)
    upstream_status,  ///< 5xx or 429
    timeout,          ///< the call's deadline or a per-try timeout
    circuit_open,
    bulkhead_full,
    budget_exhausted,  ///< the retry budget refused a retry
    no_instances,      ///< none known, all ejected, or a partition without an owner
    not_owner,         ///< misdirected twice (partition calls)
    transport_error,   ///< connect failures, resets, protocol errors
    cancelled,         ///< by the caller or the mesh's stop
    other,
};
inline constexpr std::size_t call_outcome_count = 11;
std::string_view to_string(call_outcome o) noexcept;
call_outcome classify_call(const error_code& ec) noexcept;

class mesh_metrics;

/// One endpoint's children (attempts by outcome, attempt latency).
struct endpoint_metrics {
    observe::counter* ok = nullptr;
    observe::counter* failed = nullptr;
    observe::histogram* duration = nullptr;
};

/// One service's children, created when the mesh first calls the service.
struct service_metrics {
    std::string service;
    std::array<observe::counter*, call_outcome_count> calls{};
    observe::histogram* duration = nullptr;
    observe::counter* retries = nullptr;
    observe::counter* hedges = nullptr;
    observe::counter* hedges_won = nullptr;
    observe::counter* rejected_circuit_open = nullptr;
    observe::counter* rejected_bulkhead_full = nullptr;
    observe::counter* budget_exhausted = nullptr;
    observe::gauge* breaker_state = nullptr;
    observe::gauge* bulkhead_in_use = nullptr;
    observe::gauge* ejected_endpoints = nullptr;
    observe::gauge* endpoints = nullptr;
    observe::gauge* staleness = nullptr;
    /// By the load balancer's endpoint key.
    std::unordered_map<std::uint64_t, endpoint_metrics> by_endpoint;

    void record_call(const error_code& ec, std::chrono::nanoseconds elapsed) noexcept {
        calls[static_cast<std::size_t>(classify_call(ec))]->inc();
        duration->observe(elapsed);
    }
};

/// The families of one mesh. Registered in the registry the mesh was given (or its own); a
/// family the registry already has with other settings is logged and kept in a private registry
/// instead, so recording never finds a null family.
class mesh_metrics {
  public:
    mesh_metrics(std::shared_ptr<observe::metrics_registry> registry, observe::logger log);

    observe::metrics_registry& registry() noexcept { return *registry_; }
    const std::shared_ptr<observe::metrics_registry>& registry_ptr() const noexcept {
        return registry_;
    }

    /// The children of `service` (a service name, or "partitions:<prefix>" for partition
    /// calls).
    std::unique_ptr<service_metrics> make_service(const std::string& service);
    /// The children of one endpoint ("address:port") of `s`, created on first use.
    endpoint_metrics& endpoint(service_metrics& s, std::uint64_t key, std::string_view address);

    /// The observer the Consul client reports its requests to.
    std::shared_ptr<consul::request_observer> consul_observer();
    /// A listener for one service's policy: retries, budget, breaker, rejections. `s` must
    /// outlive the policy.
    std::shared_ptr<resilience::event_listener> policy_listener(service_metrics& s);

    /// Raises a counter to `value` (a part's own running count); never lowers it.
    static void catch_up(observe::counter* c, std::uint64_t value) noexcept {
        if (const auto now = c->value(); value > now) {
            c->inc(value - now);
        }
    }

    // Refreshed from the parts' own counters by the mesh (collect()).
    observe::gauge* calls_in_flight;
    observe::counter* cache_lookup_hits;
    observe::counter* cache_lookup_misses;
    observe::gauge* cache_services;
    observe::gauge* cache_watches;
    observe::counter* cache_resolves;
    observe::counter* cache_updates;
    observe::counter* cache_evictions;
    observe::counter* cache_watch_errors;
    observe::counter* cache_resyncs;
    observe::gauge* consul_connections;
    std::array<observe::gauge*, 3> checks_by_status{};  ///< passing, warning, critical
    observe::counter* ttl_updates;
    observe::counter* ttl_update_batches;
    observe::counter* registration_repairs;
    observe::gauge* registered;
    observe::gauge* ready;
    observe::gauge* partitions_owned;
    observe::gauge* partition_members;
    observe::counter* partition_acquisitions;
    observe::counter* partition_handoffs;
    observe::counter* partition_drain_timeouts;
    observe::counter* partition_terms_lost;
    observe::counter* partition_self_fencings;
    observe::counter* session_renew_failures;
    observe::counter* sessions_created;
    observe::gauge* session_renew_latency;
    observe::counter* partition_misdirected;
    observe::counter* fence_rejections;
    observe::counter* policy_reloads;
    observe::counter* policy_reload_rejections;

  private:
    observe::counter_family* counter_family(std::string_view name, std::string_view help,
                                            std::vector<std::string> labels);
    observe::gauge_family* gauge_family(std::string_view name, std::string_view help,
                                        std::vector<std::string> labels);
    observe::histogram_family* histogram_family(std::string_view name, std::string_view help,
                                                std::vector<std::string> labels);
    template <class Family>
    Family* fallback(error_code ec, diagnostics& diag, std::string_view name);

    std::shared_ptr<observe::metrics_registry> registry_;
    /// Where families go that the given registry refused (see the class comment).
    observe::metrics_registry spare_;
    observe::logger log_;

    observe::counter_family* consul_requests_;
    observe::histogram_family* consul_duration_;
    observe::counter_family* calls_;
    observe::histogram_family* call_duration_;
    observe::counter_family* attempts_;
    observe::histogram_family* attempt_duration_;
    observe::counter_family* retries_;
    observe::counter_family* hedges_;
    observe::counter_family* hedges_won_;
    observe::counter_family* rejections_;
    observe::counter_family* budget_exhausted_;
    observe::counter_family* breaker_transitions_;
    observe::gauge_family* breaker_state_;
    observe::gauge_family* bulkhead_in_use_;
    observe::gauge_family* ejected_;
    observe::gauge_family* endpoints_;
    observe::gauge_family* staleness_;
};

}  // namespace lakemesh::mesh::detail
