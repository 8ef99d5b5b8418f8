// Outlier ejection per endpoint: consecutive failures and success-rate ejection, ejection time
// growing with repeated ejections and capped, a max-ejected percentage, and panic mode.
// Sans-I/O: time comes in as `now`.
#pragma once

#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/events.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lakemesh::resilience {

/// Settings of outlier ejection.
struct outlier_config {
    /// Failures in a row that eject an endpoint. Zero: this trigger is off.
    unsigned consecutive_failures = 5;
    /// How often success rates are compared (and repeat-ejection counts decay).
    /// Zero: no success-rate ejection and no decay.
    duration interval = std::chrono::seconds(10);
    /// Success-rate ejection needs at least this many endpoints with enough volume.
    unsigned success_rate_minimum_hosts = 5;
    /// Calls an endpoint needs in an interval for its success rate to count.
    unsigned success_rate_request_volume = 100;
    /// An endpoint is ejected when its success rate is below mean - factor * stddev.
    double success_rate_stdev_factor = 1.9;
    /// Ejection time of a first ejection; the n-th ejection in a row lasts n times this.
    duration base_ejection_time = std::chrono::seconds(30);
    /// Cap of the ejection time. Zero: no cap.
    duration max_ejection_time = std::chrono::seconds(300);
    /// Most endpoints that may be ejected at once, in percent of the set (rounded down, but one
    /// endpoint may always be ejected when this is above zero). Zero: nothing is ever ejected.
    unsigned max_ejection_percent = 10;
    /// Panic when fewer than this percent of endpoints are eligible: then every endpoint is used,
    /// ejected or not. Zero: never panic.
    unsigned panic_threshold_percent = 50;
};

/// Tracks endpoints by index (the order of the last update()). Not thread-safe.
class outlier_detector {
  public:
    explicit outlier_detector(outlier_config cfg = {},
                              std::shared_ptr<event_listener> listener = {});

    /// Sets the endpoint list. Endpoints whose id was already known keep their state
    /// (ejection, counts); new ones start clean.
    void update(const std::vector<std::string>& ids, time_point now);
    /// Outcome of a call to endpoint `index`. Ignored for an index out of range.
    void record(std::size_t index, bool success, time_point now);
    /// Returns ejected endpoints whose time is up and runs success-rate analysis when an interval
    /// has passed. Cheap when nothing is due. True when the ejected set changed.
    bool tick(time_point now);

    bool is_ejected(std::size_t index) const noexcept { return states_[index].ejected; }
    std::size_t ejected_count() const noexcept { return ejected_; }
    std::size_t size() const noexcept { return states_.size(); }
    /// True when too few endpoints are eligible and every endpoint should be used.
    bool panic() const noexcept;
    /// Changes whenever the ejected set or the endpoint list changes.
    std::uint64_t generation() const noexcept { return generation_; }
    /// Times the endpoint was ejected in a row (decays by one per clean interval).
    unsigned ejection_count(std::size_t index) const noexcept {
        return states_[index].ejection_count;
    }
    const outlier_config& config() const noexcept { return cfg_; }

  private:
    struct endpoint_state {
        std::string id;
        bool ejected = false;
        time_point until{};
        unsigned ejection_count = 0;
        unsigned consecutive_failures = 0;
        std::uint32_t successes = 0;  ///< In the current interval.
        std::uint32_t failures = 0;   ///< In the current interval.
    };
    std::size_t max_ejectable() const noexcept;
    bool eject(std::size_t index, ejection_reason reason, time_point now);
    void analyse_success_rates(time_point now);
    void schedule(time_point now);

    outlier_config cfg_;
    std::shared_ptr<event_listener> listener_;
    std::vector<endpoint_state> states_;
    std::size_t ejected_ = 0;
    std::uint64_t generation_ = 0;
    time_point next_interval_ = time_point::max();
    time_point next_due_ = time_point::max();
};

}  // namespace lakemesh::resilience
