// Events the resilience layer reports for metrics and logs, through one listener interface.
#pragma once

#include <lakemesh/error.hpp>
#include <lakemesh/resilience/deadline.hpp>

#include <cstdint>
#include <string_view>

namespace lakemesh::resilience {

/// Circuit breaker states.
enum class breaker_state : std::uint8_t {
    closed,     ///< Calls flow; outcomes are counted.
    open,       ///< Calls are rejected with policy_errc::circuit_open until the open period ends.
    half_open,  ///< A fixed number of probe calls decide between closing and re-opening.
};

/// "closed", "open" or "half_open".
std::string_view to_string(breaker_state state) noexcept;

/// Why an endpoint was ejected.
enum class ejection_reason : std::uint8_t {
    consecutive_failures,  ///< Too many failures in a row.
    success_rate,          ///< Success rate far below the other endpoints' (mean - k * stddev).
};

/// An attempt (first try or retry) is about to start.
struct attempt_event {
    std::string_view target{};  ///< Policy target: service or endpoint name.
    unsigned attempt = 0;       ///< 1 for the first try.
};

/// A failed attempt will be retried after `delay`.
struct retry_event {
    std::string_view target{};
    unsigned next_attempt = 0;  ///< Number of the attempt that will follow.
    error_code error{};         ///< The failure being retried.
    duration delay{};           ///< Backoff before the next attempt.
};

/// A retry was wanted but the retry budget refused it.
struct budget_exhausted_event {
    std::string_view target{};
    error_code error{};  ///< The failure that would have been retried.
};

/// The circuit breaker changed state.
struct breaker_transition_event {
    std::string_view target{};
    breaker_state from = breaker_state::closed;
    breaker_state to = breaker_state::closed;
    time_point at{};
    duration open_for{};  ///< When `to` is open: how long it stays open.
};

/// A call was rejected without being attempted (circuit open, bulkhead full or wait timeout).
struct rejection_event {
    std::string_view target{};
    error_code reason{};  ///< A policy_errc value.
};

/// An endpoint was ejected from, or returned to, load balancing.
struct ejection_event {
    std::string_view endpoint_id{};
    bool ejected = true;  ///< False when the endpoint returns.
    ejection_reason reason = ejection_reason::consecutive_failures;
    time_point at{};
    time_point until{};           ///< End of the ejection (meaningful when `ejected`).
    unsigned ejection_count = 0;  ///< How many times in a row it was ejected (grows the time).
};

/// Receives resilience events. Every method has an empty default so a listener overrides only
/// what it needs. Called synchronously on the thread that drives the policy or state machine;
/// implementations must be cheap and must not throw.
class event_listener {
  public:
    virtual ~event_listener() = default;
    virtual void on_attempt(const attempt_event&) {}
    virtual void on_retry(const retry_event&) {}
    virtual void on_budget_exhausted(const budget_exhausted_event&) {}
    virtual void on_breaker_transition(const breaker_transition_event&) {}
    virtual void on_rejection(const rejection_event&) {}
    virtual void on_ejection(const ejection_event&) {}
};

}  // namespace lakemesh::resilience
