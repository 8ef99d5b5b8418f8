// Circuit breaker: closed / open / half-open, tripping on consecutive failures, on a failure
// rate or a slow-call rate over a count- or time-based sliding window. Sans-I/O.
#pragma once

#include <lakemesh/resilience/deadline.hpp>
#include <lakemesh/resilience/events.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lakemesh::resilience {

/// How the failure-rate window is measured.
enum class window_kind : std::uint8_t {
    count,  ///< The last `window_size` calls.
    time,   ///< Calls that ended in the last `window_duration` (ten buckets).
};

/// Settings of one circuit breaker.
struct circuit_breaker_config {
    /// Failures in a row that trip the breaker. Zero: this trigger is off.
    unsigned consecutive_failures = 5;
    /// Which sliding window the rate triggers use.
    window_kind window = window_kind::count;
    /// Size of a count window (calls). Zero is treated as 1.
    unsigned window_size = 100;
    /// Length of a time window. Zero is treated as one second.
    duration window_duration = std::chrono::seconds(10);
    /// Rate triggers only judge once the window holds at least this many calls.
    unsigned minimum_calls = 20;
    /// Failure rate in the window (0..1) at or above which the breaker trips. Zero: off.
    double failure_rate_threshold = 0.5;
    /// A call at least this slow counts as slow (successful or not). Zero: slow calls not tracked.
    duration slow_call_duration = duration::zero();
    /// Slow-call rate in the window (0..1) at or above which the breaker trips. Zero: off.
    double slow_call_rate_threshold = 1.0;
    /// How long the breaker stays open after its first trip.
    duration open_duration = std::chrono::seconds(5);
    /// Growth of the open duration on each trip that follows a failed half-open probe (1: fixed).
    double open_duration_multiplier = 2.0;
    /// Cap of the open duration. Zero: no cap.
    duration max_open_duration = std::chrono::seconds(60);
    /// Probe calls admitted in half-open; all must succeed to close. Zero is treated as 1.
    unsigned half_open_probes = 1;
};

/// Proof that a call was admitted; hand it back with the call's outcome.
struct breaker_permit {
    bool admitted = false;
    std::uint32_t generation = 0;  ///< State generation at admission; stale outcomes are ignored.
    explicit operator bool() const noexcept { return admitted; }
};

/// One circuit breaker (per service or per endpoint). Not thread-safe: drive it from one thread
/// or strand. Every admitted call must report exactly one of on_success, on_failure or
/// on_ignored with the permit it got.
class circuit_breaker {
  public:
    explicit circuit_breaker(circuit_breaker_config cfg = {});

    /// Reports transitions to `listener` with `target` as the name. Null: no events.
    void set_listener(std::shared_ptr<event_listener> listener, std::string target);

    /// Asks to start a call at `now`. Moves open to half-open once the open period ended.
    /// Not admitted: the breaker is open, or half-open with all probes taken.
    breaker_permit try_acquire(time_point now);
    /// The call succeeded after `latency`.
    void on_success(breaker_permit permit, time_point now, duration latency);
    /// The call failed after `latency`.
    void on_failure(breaker_permit permit, time_point now, duration latency);
    /// The call ended without an outcome that says anything about the target (cancelled by the
    /// caller, rejected by a bulkhead): its half-open probe slot is returned.
    void on_ignored(breaker_permit permit) noexcept;

    /// The state as of the last event (an elapsed open period is noticed by try_acquire).
    breaker_state state() const noexcept { return state_; }
    /// When the current open period ends (meaningful in the open state).
    time_point open_until() const noexcept { return open_until_; }
    /// Changes on every state transition; permits carry the value they were admitted under.
    std::uint32_t generation() const noexcept { return generation_; }
    /// Trips since the breaker last closed from half-open.
    unsigned trips() const noexcept { return trips_; }
    /// Calls, failures and slow calls in the window.
    std::uint32_t window_calls() const noexcept { return calls_; }
    std::uint32_t window_failures() const noexcept { return failures_; }
    std::uint32_t window_slow_calls() const noexcept { return slow_; }

    /// Replaces the settings, keeping the state; the window is cleared when its shape changes.
    void reconfigure(circuit_breaker_config cfg);
    const circuit_breaker_config& config() const noexcept { return cfg_; }

  private:
    struct time_bucket {
        std::int64_t epoch = -1;
        std::uint32_t calls = 0;
        std::uint32_t failures = 0;
        std::uint32_t slow = 0;
    };
    static constexpr std::size_t time_buckets = 10;

    void record(time_point now, bool failed, bool slow);
    void advance_time_window(time_point now) noexcept;
    void reset_window();
    void evaluate(time_point now);
    void trip(time_point now);
    void transition(breaker_state to, time_point now);

    circuit_breaker_config cfg_;
    breaker_state state_ = breaker_state::closed;
    std::uint32_t generation_ = 0;
    unsigned consecutive_failures_ = 0;
    unsigned trips_ = 0;
    time_point open_until_{};
    unsigned probes_started_ = 0;
    unsigned probes_succeeded_ = 0;

    // Window totals, for either kind.
    std::uint32_t calls_ = 0;
    std::uint32_t failures_ = 0;
    std::uint32_t slow_ = 0;
    // Count window: one byte per call (bit 0 failed, bit 1 slow), a ring.
    std::vector<std::uint8_t> ring_;
    std::size_t ring_next_ = 0;
    // Time window.
    std::vector<time_bucket> buckets_;
    std::int64_t bucket_ticks_ = 1;
    std::int64_t head_epoch_ = -1;

    std::shared_ptr<event_listener> listener_;
    std::string target_;
};

/// Circuit breakers keyed by name (one per endpoint, or per service), created on first use with a
/// shared configuration. `retain` drops the breakers of endpoints that left and keeps the state of
/// the others.
class circuit_breaker_set {
  public:
    explicit circuit_breaker_set(circuit_breaker_config cfg = {},
                                 std::shared_ptr<event_listener> listener = {});

    /// The breaker for `key`, created closed if absent.
    circuit_breaker& get(std::string_view key);
    /// Null when no breaker exists for `key`.
    circuit_breaker* find(std::string_view key) noexcept;
    /// Keeps only the breakers whose keys are in `keys`.
    void retain(const std::vector<std::string>& keys);
    std::size_t size() const noexcept { return breakers_.size(); }
    /// Applies new settings to every breaker, keeping their states.
    void reconfigure(circuit_breaker_config cfg);

  private:
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    circuit_breaker_config cfg_;
    std::shared_ptr<event_listener> listener_;
    std::unordered_map<std::string, circuit_breaker, string_hash, std::equal_to<>> breakers_;
};

}  // namespace lakemesh::resilience
