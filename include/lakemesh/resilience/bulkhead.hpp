// Bulkhead: a concurrency limit per target with a bounded FIFO wait queue and a wait timeout.
// Sans-I/O: waiters are tickets; the caller (the Asio shell, or a test) wakes or expires them.
#pragma once

#include <lakemesh/resilience/deadline.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace lakemesh::resilience {

/// Settings of one bulkhead.
struct bulkhead_config {
    /// Calls allowed in flight at once. Zero: no limit (the bulkhead admits everything).
    unsigned max_concurrent = 64;
    /// Calls allowed to wait for a slot. Zero: a call that finds no slot is rejected at once.
    unsigned max_queue = 0;
    /// Longest wait for a slot. Zero: wait until a slot frees or the call's deadline passes.
    duration max_wait = std::chrono::milliseconds(100);
};

/// What try_acquire decided.
enum class bulkhead_admission : std::uint8_t {
    admitted,  ///< A slot is held; call release() when the call ends.
    queued,    ///< Waiting with `ticket` until `wait_until`.
    rejected,  ///< No slot and no room in the queue: policy_errc::bulkhead_full.
};

struct bulkhead_result {
    bulkhead_admission admission = bulkhead_admission::rejected;
    std::uint64_t ticket = 0;  ///< When queued: identifies the waiter.
    time_point wait_until{};   ///< When queued: the waiter times out at this time.
};

/// One bulkhead. Not thread-safe: drive it from one thread or strand.
class bulkhead {
  public:
    explicit bulkhead(bulkhead_config cfg = {});

    /// Asks for a slot at `now` for a call that must finish by `call_deadline`. A free slot is
    /// given only when nobody waits, so waiters keep their FIFO order.
    bulkhead_result try_acquire(time_point now, deadline call_deadline = {});
    /// A call that held a slot ended. When a waiter takes the freed slot, its ticket is returned
    /// (the slot is already counted as held by it).
    std::optional<std::uint64_t> release() noexcept;
    /// Removes a waiter (its caller gave up or its timer fired). False when it is no longer
    /// waiting (already admitted or removed).
    bool cancel_wait(std::uint64_t ticket) noexcept;
    /// Removes every waiter whose wait ended at `now` and returns their tickets.
    std::vector<std::uint64_t> expire(time_point now);

    /// Replaces the settings. A raised limit admits waiters at once: their tickets are returned.
    /// Calls in flight keep their slots even when the new limit is lower.
    std::vector<std::uint64_t> reconfigure(bulkhead_config cfg);

    unsigned in_flight() const noexcept { return in_flight_; }
    std::size_t waiting() const noexcept { return queue_.size(); }
    const bulkhead_config& config() const noexcept { return cfg_; }

  private:
    struct waiter {
        std::uint64_t ticket;
        time_point until;
    };
    bool has_free_slot() const noexcept {
        return cfg_.max_concurrent == 0 || in_flight_ < cfg_.max_concurrent;
    }

    bulkhead_config cfg_;
    unsigned in_flight_ = 0;
    std::uint64_t next_ticket_ = 1;
    std::deque<waiter> queue_;
};

}  // namespace lakemesh::resilience
