// Time types shared by the resilience state machines, and the per-call deadline.
//
// The state machines never read a clock: every decision takes an explicit `now`, so tests drive
// them with a manual clock. Only the Asio shell (policy.hpp) calls clock::now().
#pragma once

#include <chrono>

namespace lakemesh::resilience {

using clock = std::chrono::steady_clock;
using time_point = clock::time_point;
using duration = clock::duration;

/// A point in time after which a call must not be attempted any more. Cheap to copy; a
/// default-constructed deadline is "none" (never expires).
///
/// Nested calls inherit the remaining time: pass the outer call's deadline in
/// `call_options::deadline` (or use `nested()`), and the inner call gets the earlier of the two.
class deadline {
  public:
    /// No deadline.
    constexpr deadline() noexcept = default;

    static constexpr deadline none() noexcept { return deadline{}; }
    static constexpr deadline at(time_point when) noexcept { return deadline{when}; }
    /// `timeout` from `now`. A zero or negative timeout gives a deadline that has already passed.
    static constexpr deadline after(time_point now, duration timeout) noexcept {
        return deadline{timeout > duration::zero() ? saturating_add(now, timeout) : now};
    }

    constexpr bool is_set() const noexcept { return when_ != time_point::max(); }
    /// The expiry time; time_point::max() when there is no deadline.
    constexpr time_point when() const noexcept { return when_; }
    constexpr bool expired(time_point now) const noexcept { return now >= when_; }
    /// Time left; zero once expired, duration::max() when there is no deadline.
    constexpr duration remaining(time_point now) const noexcept {
        if (!is_set()) {
            return duration::max();
        }
        return now >= when_ ? duration::zero() : when_ - now;
    }
    /// The earlier of the two deadlines.
    constexpr deadline earliest(deadline other) const noexcept {
        return other.when_ < when_ ? other : *this;
    }
    /// The deadline of a call nested inside this one that has its own `timeout` (zero: none):
    /// the inner call never outlives the outer one.
    constexpr deadline nested(time_point now, duration timeout) const noexcept {
        return timeout > duration::zero() ? earliest(after(now, timeout)) : *this;
    }

    friend constexpr bool operator==(deadline, deadline) noexcept = default;

  private:
    constexpr explicit deadline(time_point when) noexcept : when_(when) {}

    static constexpr time_point saturating_add(time_point t, duration d) noexcept {
        return time_point::max() - t < d ? time_point::max() : t + d;
    }

    time_point when_ = time_point::max();
};

}  // namespace lakemesh::resilience
