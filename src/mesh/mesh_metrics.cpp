#include "mesh/mesh_metrics.hpp"

#include <boost/asio/error.hpp>

namespace lakemesh::mesh::detail {

using observe::histogram_family;

std::string_view to_string(call_outcome o) noexcept {
    switch (o) {
        case call_outcome::ok:
            return "ok";
        case call_outcome::upstream_status:
            return "upstream_status";
        case call_outcome::timeout:
            return "timeout";
        case call_outcome::circuit_open:
            return "circuit_open";
        case call_outcome::bulkhead_full:
            return "bulkhead_full";
        case call_outcome::budget_exhausted:
            return "budget_exhausted";
        case call_outcome::no_instances:
            return "no_instances";
        case call_outcome::not_owner:
            return "not_owner";
        case call_outcome::transport_error:
            return "transport_error";
        case call_outcome::cancelled:
            return "cancelled";
        case call_outcome::other:
            break;
    }
    return "other";
}

call_outcome classify_call(const error_code& ec) noexcept {
    if (!ec) {
        return call_outcome::ok;
    }
    if (ec.category() == call_category()) {
        switch (static_cast<call_errc>(ec.value())) {
            case call_errc::no_instances:
            case call_errc::all_endpoints_ejected:
                return call_outcome::no_instances;
            case call_errc::circuit_open:
                return call_outcome::circuit_open;
            case call_errc::bulkhead_full:
                return call_outcome::bulkhead_full;
            case call_errc::deadline_exceeded:
                return call_outcome::timeout;
            case call_errc::retry_budget_exhausted:
                return call_outcome::budget_exhausted;
            case call_errc::upstream_status:
                return call_outcome::upstream_status;
            case call_errc::not_owner:
                return call_outcome::not_owner;
            case call_errc::mesh_stopped:
                return call_outcome::cancelled;
        }
        return call_outcome::other;
    }
    if (ec.category() == transport_category()) {
        return ec == make_error_code(transport_errc::timeout) ? call_outcome::timeout
                                                              : call_outcome::transport_error;
    }
    if (ec == boost::asio::error::operation_aborted) {
        return call_outcome::cancelled;
    }
    if (ec.category() == discovery_category()) {
        return call_outcome::no_instances;
    }
    return call_outcome::other;
}

// ------------------------------------------------------------------ registration

template <class Family>
Family* mesh_metrics::fallback(error_code ec, diagnostics& diag, std::string_view name) {
    log_.warn("metrics: family '" + std::string(name) + "' not registered in the given registry (" +
              ec.message() + ": " + diag.client_message() + "); it is recorded but not exported");
    return nullptr;
}

observe::counter_family* mesh_metrics::counter_family(std::string_view name, std::string_view help,
                                                      std::vector<std::string> labels) {
    observe::counter_family* f = nullptr;
    diagnostics diag;
    if (auto ec = registry_->add_counter(name, help, labels, f, diag)) {
        fallback<observe::counter_family>(ec, diag, name);
        diagnostics d2;
        spare_.add_counter(name, help, std::move(labels), f, d2);
    }
    return f;
}

observe::gauge_family* mesh_metrics::gauge_family(std::string_view name, std::string_view help,
                                                  std::vector<std::string> labels) {
    observe::gauge_family* f = nullptr;
    diagnostics diag;
    if (auto ec = registry_->add_gauge(name, help, labels, f, diag)) {
        fallback<observe::gauge_family>(ec, diag, name);
        diagnostics d2;
        spare_.add_gauge(name, help, std::move(labels), f, d2);
    }
    return f;
}

observe::histogram_family* mesh_metrics::histogram_family(std::string_view name,
                                                          std::string_view help,
                                                          std::vector<std::string> labels) {
    const auto b = histogram_family::default_buckets();
    std::vector<double> bounds(b.begin(), b.end());
    observe::histogram_family* f = nullptr;
    diagnostics diag;
    if (auto ec = registry_->add_histogram(name, help, labels, bounds, f, diag)) {
        fallback<observe::histogram_family>(ec, diag, name);
        diagnostics d2;
        spare_.add_histogram(name, help, std::move(labels), std::move(bounds), f, d2);
    }
    return f;
}

mesh_metrics::mesh_metrics(std::shared_ptr<observe::metrics_registry> registry, observe::logger log)
    : registry_(registry ? std::move(registry) : std::make_shared<observe::metrics_registry>()),
      log_(std::move(log)) {
    auto c0 = [&](std::string_view name, std::string_view help) {
        return counter_family(name, help, {})->with({});
    };
    auto g0 = [&](std::string_view name, std::string_view help) {
        return gauge_family(name, help, {})->with({});
    };

    // Consul.
    consul_requests_ = counter_family(
        "lakemesh_consul_requests_total",
        "Requests to the Consul HTTP API by API group (kv, agent, health, ...) and outcome (ok: "
        "2xx, not_found: 404, client_error: other 4xx, server_error: 5xx, transport_error: no "
        "answer, cancelled).",
        {"group", "outcome"});
    consul_duration_ = histogram_family(
        "lakemesh_consul_request_duration_seconds",
        "Time from sending a Consul API request to its answer, by API group. Blocking queries "
        "are left out (they wait for a change by design).",
        {"group"});
    consul_connections = g0("lakemesh_consul_connections",
                            "Connections open to the preferred Consul agent address.");

    // Calls.
    calls_ = counter_family("lakemesh_calls_total",
                            "Calls to services through the mesh, by service and outcome (ok, "
                            "upstream_status, timeout, circuit_open, bulkhead_full, "
                            "budget_exhausted, no_instances, not_owner, transport_error, "
                            "cancelled, other).",
                            {"service", "outcome"});
    call_duration_ = histogram_family(
        "lakemesh_call_duration_seconds",
        "Time from async_call to its completion, retries and back-off included, by service.",
        {"service"});
    attempts_ = counter_family("lakemesh_call_attempts_total",
                               "Attempts sent to one instance, by service, endpoint and outcome "
                               "(ok, or error: no answer, 5xx or 429).",
                               {"service", "endpoint", "outcome"});
    attempt_duration_ = histogram_family(
        "lakemesh_call_attempt_duration_seconds",
        "Time of one attempt at one instance, by service and endpoint.", {"service", "endpoint"});
    retries_ = counter_family("lakemesh_call_retries_total", "Retries scheduled, by service.",
                              {"service"});
    hedges_ = counter_family("lakemesh_call_hedges_total", "Hedged requests sent, by service.",
                             {"service"});
    hedges_won_ =
        counter_family("lakemesh_call_hedges_won_total",
                       "Calls answered by their hedge rather than the first attempt.", {"service"});
    rejections_ = counter_family(
        "lakemesh_call_rejections_total",
        "Calls refused before any attempt, by service and reason (circuit_open, bulkhead_full).",
        {"service", "reason"});
    budget_exhausted_ =
        counter_family("lakemesh_call_retry_budget_exhausted_total",
                       "Retries the retry budget refused, by service.", {"service"});
    breaker_transitions_ = counter_family("lakemesh_circuit_breaker_transitions_total",
                                          "Circuit breaker state changes, by service and the "
                                          "state entered (closed, open, half_open).",
                                          {"service", "to"});
    breaker_state_ = gauge_family(
        "lakemesh_circuit_breaker_state",
        "Circuit breaker state by service: 0 closed, 1 half open, 2 open.", {"service"});
    bulkhead_in_use_ = gauge_family("lakemesh_bulkhead_in_use",
                                    "Calls holding a bulkhead slot, by service.", {"service"});
    endpoints_ = gauge_family("lakemesh_endpoints", "Instances the balancer knows, by service.",
                              {"service"});
    ejected_ = gauge_family("lakemesh_endpoints_ejected",
                            "Instances ejected as outliers right now, by service.", {"service"});
    calls_in_flight = g0("lakemesh_calls_in_flight", "Calls started and not yet completed.");

    // Service cache.
    staleness_ =
        gauge_family("lakemesh_cache_staleness_seconds",
                     "Age of the cached instance list of a service this mesh calls.", {"service"});
    auto* lookups = counter_family(
        "lakemesh_cache_lookups_total",
        "Cache lookups made by calls, by result (hit: a snapshot was there).", {"result"});
    cache_lookup_hits = lookups->with({"hit"});
    cache_lookup_misses = lookups->with({"miss"});
    cache_services = g0("lakemesh_cache_services", "Services in the service cache.");
    cache_watches = g0("lakemesh_cache_watches", "Blocking-query watches running.");
    cache_resolves =
        c0("lakemesh_cache_resolves_total", "First fetches of a service into the cache.");
    cache_updates = c0("lakemesh_cache_updates_total", "Snapshots published by the cache.");
    cache_evictions =
        c0("lakemesh_cache_evictions_total", "Services evicted by the cache's memory bound.");
    cache_watch_errors =
        c0("lakemesh_cache_watch_errors_total", "Failed blocking queries of the cache's watches.");
    cache_resyncs = c0("lakemesh_cache_resyncs_total",
                       "Watches that saw Consul's index go backwards (agent lost its state).");

    // Health.
    auto* checks = gauge_family("lakemesh_health_checks",
                                "Checks of this process's services, by status.", {"status"});
    checks_by_status = {checks->with({"passing"}), checks->with({"warning"}),
                        checks->with({"critical"})};
    ttl_updates =
        c0("lakemesh_health_ttl_updates_total", "TTL check updates sent to the Consul agent.");
    ttl_update_batches = c0("lakemesh_health_ttl_update_batches_total",
                            "Pipelined batches the TTL check updates went in.");
    registration_repairs = c0("lakemesh_health_registration_repairs_total",
                              "Registrations restored after the agent lost them (anti-entropy).");
    registered = g0("lakemesh_service_registered",
                    "1 when Consul accepted this service's latest registration.");
    ready = g0("lakemesh_ready", "1 when the mesh is ready (see /readyz).");

    // Partitions.
    partitions_owned = g0("lakemesh_partitions_owned", "Partitions this node owns.");
    partition_members =
        g0("lakemesh_partition_members", "Live members of the partitioned cluster.");
    partition_acquisitions =
        c0("lakemesh_partition_acquisitions_total", "Partitions this node acquired.");
    partition_handoffs = c0("lakemesh_partition_handoffs_total",
                            "Partitions this node started handing off to their new owner.");
    partition_drain_timeouts =
        c0("lakemesh_partition_drain_timeouts_total", "Handoffs whose drain ran past its timeout.");
    partition_terms_lost = c0("lakemesh_partition_terms_lost_total",
                              "Ownership terms this node lost without handing off (failover).");
    partition_self_fencings =
        c0("lakemesh_partition_self_fencings_total",
           "Times this node stopped owning everything because it could not renew its session.");
    session_renew_failures =
        c0("lakemesh_session_renew_failures_total", "Session renewals that failed.");
    sessions_created = c0("lakemesh_sessions_created_total", "Consul sessions created.");
    session_renew_latency = g0("lakemesh_session_renew_latency_seconds",
                               "Duration of the latest successful session renewal.");
    partition_misdirected =
        c0("lakemesh_partition_misdirected_total",
           "Partition calls answered 421 (not owner) by the node the table named.");
    fence_rejections = c0("lakemesh_partition_fence_rejections_total",
                          "Requests refused by the fences registered with watch_fence() (a "
                          "stale owner's token).");

    // Runtime policy reload.
    policy_reloads =
        c0("lakemesh_policy_reloads_total", "Call policies applied from Consul KV at run time.");
    policy_reload_rejections = c0("lakemesh_policy_reload_rejections_total",
                                  "Call policies in Consul KV rejected as invalid (the old "
                                  "policy stays).");
}

std::unique_ptr<service_metrics> mesh_metrics::make_service(const std::string& service) {
    auto s = std::make_unique<service_metrics>();
    s->service = service;
    for (std::size_t i = 0; i < call_outcome_count; ++i) {
        s->calls[i] = calls_->with({service, to_string(static_cast<call_outcome>(i))});
    }
    s->duration = call_duration_->with({service});
    s->retries = retries_->with({service});
    s->hedges = hedges_->with({service});
    s->hedges_won = hedges_won_->with({service});
    s->rejected_circuit_open = rejections_->with({service, "circuit_open"});
    s->rejected_bulkhead_full = rejections_->with({service, "bulkhead_full"});
    s->budget_exhausted = budget_exhausted_->with({service});
    s->breaker_state = breaker_state_->with({service});
    s->bulkhead_in_use = bulkhead_in_use_->with({service});
    s->ejected_endpoints = ejected_->with({service});
    s->endpoints = endpoints_->with({service});
    s->staleness = staleness_->with({service});
    return s;
}

endpoint_metrics& mesh_metrics::endpoint(service_metrics& s, std::uint64_t key,
                                         std::string_view address) {
    auto it = s.by_endpoint.find(key);
    if (it != s.by_endpoint.end()) {
        return it->second;
    }
    endpoint_metrics m;
    m.ok = attempts_->with({s.service, address, "ok"});
    m.failed = attempts_->with({s.service, address, "error"});
    m.duration = attempt_duration_->with({s.service, address});
    return s.by_endpoint.emplace(key, m).first->second;
}

// ------------------------------------------------------------------ Consul requests

namespace {

/// Children of the Consul families for the API groups lakemesh uses; anything else is "other".
class consul_request_metrics final : public consul::request_observer {
  public:
    consul_request_metrics(observe::counter_family& requests, observe::histogram_family& duration) {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            for (std::size_t o = 0; o < outcomes.size(); ++o) {
                counters_[g][o] = requests.with({groups[g], outcomes[o]});
            }
            durations_[g] = duration.with({groups[g]});
        }
    }

    void on_request(const consul::request_event& e) noexcept override {
        std::size_t g = groups.size() - 1;
        for (std::size_t i = 0; i + 1 < groups.size(); ++i) {
            if (groups[i] == e.group) {
                g = i;
                break;
            }
        }
        std::size_t o = 0;  // ok
        if (e.ec == boost::asio::error::operation_aborted) {
            o = 5;
        } else if (e.ec && e.status == 0) {
            o = 4;
        } else if (e.status == 404) {
            o = 1;
        } else if (e.status >= 500) {
            o = 3;
        } else if (e.status >= 400) {
            o = 2;
        }
        counters_[g][o]->inc();
        if (!e.blocking && o != 5) {
            durations_[g]->observe(e.elapsed);
        }
    }

  private:
    static constexpr std::array<std::string_view, 10> groups{
        "kv", "agent", "health", "catalog", "session", "txn", "status", "event", "acl", "other"};
    static constexpr std::array<std::string_view, 6> outcomes{
        "ok", "not_found", "client_error", "server_error", "transport_error", "cancelled"};
    std::array<std::array<observe::counter*, 6>, 10> counters_{};
    std::array<observe::histogram*, 10> durations_{};
};

/// One service's policy events.
class policy_event_metrics final : public resilience::event_listener {
  public:
    policy_event_metrics(service_metrics& s, observe::counter_family& transitions)
        : s_(s),
          to_closed_(transitions.with({s.service, "closed"})),
          to_open_(transitions.with({s.service, "open"})),
          to_half_open_(transitions.with({s.service, "half_open"})) {}

    void on_retry(const resilience::retry_event&) override { s_.retries->inc(); }
    void on_budget_exhausted(const resilience::budget_exhausted_event&) override {
        s_.budget_exhausted->inc();
    }
    void on_breaker_transition(const resilience::breaker_transition_event& e) override {
        switch (e.to) {
            case resilience::breaker_state::closed:
                to_closed_->inc();
                s_.breaker_state->set(0);
                break;
            case resilience::breaker_state::half_open:
                to_half_open_->inc();
                s_.breaker_state->set(1);
                break;
            case resilience::breaker_state::open:
                to_open_->inc();
                s_.breaker_state->set(2);
                break;
        }
    }
    void on_rejection(const resilience::rejection_event& e) override {
        if (e.reason == make_error_code(policy_errc::circuit_open)) {
            s_.rejected_circuit_open->inc();
        } else {
            s_.rejected_bulkhead_full->inc();
        }
    }

  private:
    service_metrics& s_;
    observe::counter* to_closed_;
    observe::counter* to_open_;
    observe::counter* to_half_open_;
};

}  // namespace

std::shared_ptr<consul::request_observer> mesh_metrics::consul_observer() {
    return std::make_shared<consul_request_metrics>(*consul_requests_, *consul_duration_);
}

std::shared_ptr<resilience::event_listener> mesh_metrics::policy_listener(service_metrics& s) {
    return std::make_shared<policy_event_metrics>(s, *breaker_transitions_);
}

}  // namespace lakemesh::mesh::detail
