// Load balancing over a changing set of endpoints: round robin, random, weighted (Consul's
// Weights.Passing / Weights.Warning), least-request and peak-EWMA power-of-two-choices, with
// outlier ejection. Sans-I/O: time comes in as `now`, randomness from an owned, seeded source.
#pragma once

#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/events.hpp>
#include <lakemesh/resilience/outlier_detector.hpp>
#include <lakemesh/resilience/random.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace lakemesh::resilience {

/// Picking algorithm.
enum class balancer_kind : std::uint8_t {
    round_robin,    ///< In turn.
    random,         ///< Uniformly at random.
    weighted,       ///< At random, in proportion to Consul weights (Passing or Warning by health).
    least_request,  ///< Two at random, the one with fewer calls in flight.
    peak_ewma,      ///< Two at random, the lower (peak-sensitive latency EWMA) x (in flight + 1).
};

/// Health of an endpoint as discovery reports it (critical endpoints are not offered at all).
enum class endpoint_health : std::uint8_t { passing, warning };

/// One instance of a service.
struct endpoint {
    /// Unique and stable across discovery updates (e.g. node + service ID); state follows it.
    std::string id{};
    std::string address{};
    std::uint16_t port = 0;
    endpoint_health health = endpoint_health::passing;
    /// Consul Weights.Passing: relative weight while passing.
    std::uint32_t weight_passing = 1;
    /// Consul Weights.Warning: relative weight while warning.
    std::uint32_t weight_warning = 1;
};

/// Settings of one load balancer.
struct load_balancer_config {
    balancer_kind kind = balancer_kind::peak_ewma;
    /// Time constant of the peak-EWMA latency average: older samples weigh e^(-age/decay).
    duration ewma_decay = std::chrono::seconds(10);
    /// Outlier ejection. Empty: no endpoint is ever ejected.
    std::optional<outlier_config> outlier_detection = outlier_config{};
};

/// The endpoint a pick chose. Hand it back to on_start / on_finish; a handle from before an
/// update still reaches its endpoint if that endpoint remained.
struct endpoint_handle {
    std::uint32_t index = 0;    ///< Position in endpoints() at the time of the pick.
    std::uint32_t version = 0;  ///< Endpoint-set version of the pick.
    std::uint64_t key = 0;      ///< Hash of the endpoint id.
};

/// A load balancer with per-endpoint state. Not thread-safe: drive it from one thread or strand.
class load_balancer {
  public:
    explicit load_balancer(load_balancer_config cfg = {}, std::uint64_t seed = 1,
                           std::shared_ptr<event_listener> listener = {});

    /// Replaces the endpoint set. Endpoints whose id remains keep their state (calls in flight,
    /// latency average, ejection); new ones start fresh.
    void update(std::vector<endpoint> endpoints, time_point now);

    /// Chooses an endpoint among the eligible ones (all of them in panic mode). Empty when the set
    /// is empty (callers report policy_errc::no_endpoints).
    std::optional<endpoint_handle> pick(time_point now);

    /// A call to the endpoint starts (counts it in flight for the P2C balancers).
    void on_start(const endpoint_handle& h) noexcept;
    /// The call ended after `latency`; `success` feeds outlier ejection.
    void on_finish(const endpoint_handle& h, time_point now, duration latency, bool success);
    /// The call was abandoned by its caller (cancelled, or a hedge that lost): it no longer
    /// counts in flight, and says nothing about the endpoint's health or latency.
    void on_abandon(const endpoint_handle& h) noexcept;

    const std::vector<endpoint>& endpoints() const noexcept { return endpoints_; }
    const endpoint& at(const endpoint_handle& h) const noexcept { return endpoints_[h.index]; }
    /// Calls in flight on endpoints()[index].
    std::uint32_t in_flight(std::size_t index) const noexcept { return stats_[index].in_flight; }
    /// Peak-EWMA cost of endpoints()[index] at `now`.
    double cost(std::size_t index, time_point now) const noexcept;
    /// Indices that pick() chooses from right now.
    const std::vector<std::uint32_t>& eligible() const noexcept { return eligible_; }
    const outlier_detector& outliers() const noexcept { return outliers_; }
    const load_balancer_config& config() const noexcept { return cfg_; }

  private:
    struct endpoint_stats {
        std::uint32_t in_flight = 0;
        double ewma_ns = 0.0;  ///< 0: no sample yet.
        time_point stamp{};
    };
    std::optional<std::size_t> resolve(const endpoint_handle& h) const noexcept;
    void rebuild_eligible();
    std::uint32_t weight_of(std::size_t index) const noexcept;
    std::uint32_t choose_p2c(std::size_t a, std::size_t b, time_point now) noexcept;

    load_balancer_config cfg_;
    random_source rng_;
    outlier_detector outliers_;
    std::vector<endpoint> endpoints_;
    std::vector<std::uint64_t> keys_;
    std::vector<endpoint_stats> stats_;
    std::unordered_map<std::uint64_t, std::uint32_t> index_by_key_;
    std::uint32_t version_ = 0;
    std::vector<std::uint32_t> eligible_;
    std::vector<std::uint64_t> cumulative_weight_;  ///< Over eligible_, for weighted picks.
    std::uint64_t outliers_generation_ = ~std::uint64_t{0};
    std::size_t cursor_ = 0;
    double decay_ns_;
};

}  // namespace lakemesh::resilience
