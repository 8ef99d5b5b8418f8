// The one timer structure of the health scheduler: when each of many checks must probe next, and
// when its state machine wants to be woken (probe deadline, push retry, TTL refresh).
//
// An indexed binary min-heap keyed by (due, sequence): O(log n) add, remove, reschedule and pop,
// O(1) next_due(), and nothing at all happens between two due times, so thousands of idle checks
// cost one armed timer in the shell. Sans-I/O: time comes in as `now`.
//
// Periodic probes are anchored: the k-th firing of a check is due within
// anchor + k * interval ± jitter * interval, where the anchor is its first due time. The jitter
// is drawn afresh around each nominal time and never added to the previous firing, so a check
// does not drift however long it runs, and checks started together do not fire together.
#pragma once

#include <lakemesh/health/types.hpp>
#include <lakemesh/resilience/random.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace lakemesh::health {

/// Shortest probe interval; shorter intervals (zero included) are raised to it, so that a
/// rescheduled check is always due strictly after the `now` it fired at.
inline constexpr duration min_probe_interval = std::chrono::milliseconds(1);
/// Longest probe interval; longer ones are lowered to it, so that time arithmetic cannot overflow.
inline constexpr duration max_probe_interval = std::chrono::hours(24 * 366);

/// Settings of a check_schedule. Plain aggregate; every field has a usable default.
struct schedule_config {
    /// Jitter of every firing after the first, as a fraction of the interval: the k-th firing is
    /// uniform within nominal ± jitter * interval. Clamped to [0, 0.5], so that firings of one
    /// check never swap order. Zero: firings exactly on the nominal times.
    double jitter = 0.1;
    /// Spread of the first firing of a check added with add(): uniform in
    /// [now, now + first_spread * interval). Clamped to [0, 1]. Zero: the first firing is at
    /// `now`. add_at() ignores it.
    double first_spread = 1.0;
    /// Seed of the jitter PRNG, for reproducible tests. Empty: seeded from std::random_device.
    std::optional<std::uint64_t> seed{};
    /// Slack of the owner's timer, as a fraction of the shortest interval in the schedule:
    /// next_wake() is next_due() plus the slack, so that one wake-up pops every timer that
    /// came due meanwhile, and no timer pops later than its due time plus the slack. Clamped
    /// to [0, 0.1]. Zero: next_wake() is next_due().
    double slack_fraction = 0.0;
    /// Upper bound of the slack (so that long intervals do not delay probe deadlines and TTL
    /// refreshes by seconds). Zero or negative: no slack.
    duration slack_cap = duration::zero();
};

/// Names one check in a check_schedule. Issued by add(); stale once the check is removed (the
/// generation tells a reused slot from the removed check). `index` is dense and below
/// check_schedule::capacity(), so an owner may keep per-check data in a vector indexed by it.
struct check_handle {
    static constexpr std::uint32_t invalid_index = 0xffff'ffffU;

    std::uint32_t index = invalid_index;
    std::uint32_t generation = 0;

    constexpr bool valid() const noexcept { return index != invalid_index; }
    friend constexpr bool operator==(check_handle, check_handle) = default;
};

/// Which timer of a check came due.
enum class due_kind : std::uint8_t {
    probe,  ///< The periodic probe timer: start a probe (ttl_check_fsm::on_probe_due).
    wake,   ///< The one-shot wake timer set with set_wake(): call ttl_check_fsm::on_wake.
};

/// One timer that came due, as returned by pop_next() and pop_due().
struct due_check {
    check_handle check{};
    due_kind kind = due_kind::probe;
    /// When it was due (at or before the `now` it was popped at).
    time_point due{};

    friend bool operator==(const due_check&, const due_check&) = default;
};

/// The timers of many checks. Each check has a periodic probe timer, which pop_next() re-arms
/// for the next interval as it pops it, and a one-shot wake timer, which is disarmed when popped
/// and re-armed with set_wake().
///
/// Order: timers come out in due order; equal due times come out in the order they were armed
/// (a check re-armed by a pop is armed at that moment).
///
/// Late pops: a probe timer popped more than one interval late fires once, and the nominal
/// times it missed are skipped (counted in missed_firings()), so a paused process does not
/// catch up with a burst of probes. Its next firing stays on the original grid.
///
/// Thread safety: none; one owner (the shell's strand).
class check_schedule {
  public:
    explicit check_schedule(const schedule_config& cfg = {});

    /// Adds a check whose first probe is due uniformly within
    /// [now, now + first_spread * interval), so that checks added together spread out.
    check_handle add(duration interval, time_point now);
    /// Adds a check whose first probe is due exactly at `first_due`.
    check_handle add_at(duration interval, time_point first_due);
    /// Removes the check and both its timers. False if the handle is stale. Safe between two
    /// pop_next() calls and for a handle already returned by pop_due().
    bool remove(check_handle check) noexcept;
    /// Moves the next probe to exactly `due` (e.g. `now` to probe at once); later probes are
    /// anchored on it. False if the handle is stale.
    bool reschedule(check_handle check, time_point due);
    /// Changes the interval from the next firing on: the already armed firing keeps its time,
    /// the ones after it follow the new interval. False if the handle is stale.
    bool set_interval(check_handle check, duration interval);
    /// Arms the check's wake timer at `when`, replacing any earlier setting; `never` disarms it.
    /// O(1) when unchanged. False if the handle is stale.
    bool set_wake(check_handle check, time_point when);

    /// The earliest armed timer; empty when nothing is armed.
    std::optional<time_point> next_due() const noexcept;
    /// When the owner's timer should wake: next_due() plus slack(). Popping everything due at
    /// that wake-up handles each timer at most slack() late, which is at most
    /// slack_fraction * interval of its check and at most slack_cap.
    std::optional<time_point> next_wake() const noexcept;
    /// min(slack_cap, slack_fraction * shortest interval in the schedule); zero when empty.
    duration slack() const noexcept;
    /// Pops the earliest timer if it is due at `now`. A probe timer is re-armed for the check's
    /// next interval before this returns; a wake timer is disarmed.
    std::optional<due_check> pop_next(time_point now);
    /// Pops every timer due at `now` into `out` (appended, in order) and returns how many.
    /// A handle in `out` may be removed while the batch is handled: check contains().
    std::size_t pop_due(time_point now, std::vector<due_check>& out);

    bool contains(check_handle check) const noexcept;
    /// Checks in the schedule.
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    /// One past the largest handle index issued so far.
    std::size_t capacity() const noexcept { return slots_.size(); }
    /// The check's interval, its armed probe and wake times (`never` for a stale handle or a
    /// disarmed wake timer).
    duration interval(check_handle check) const noexcept;
    time_point probe_due(check_handle check) const noexcept;
    time_point wake_at(check_handle check) const noexcept;
    /// Nominal probe times skipped because a probe timer was popped more than an interval late.
    std::uint64_t missed_firings() const noexcept { return missed_firings_; }
    const schedule_config& config() const noexcept { return cfg_; }

  private:
    static constexpr std::uint32_t not_armed = 0xffff'ffffU;

    struct heap_entry {
        time_point due;
        std::uint64_t sequence;
        std::uint32_t slot;
        due_kind kind;
    };
    struct slot {
        time_point anchor{};  ///< Nominal (unjittered) time of the armed probe firing.
        duration interval{};
        std::uint32_t generation = 0;
        std::uint32_t position[2] = {not_armed, not_armed};  ///< Heap index per due_kind.
        bool live = false;
    };

    static bool earlier(const heap_entry& a, const heap_entry& b) noexcept {
        return a.due < b.due || (a.due == b.due && a.sequence < b.sequence);
    }
    const slot* find(check_handle check) const noexcept;
    slot* find(check_handle check) noexcept;
    check_handle allocate(duration interval, time_point anchor, time_point due);
    duration jitter_offset(duration interval);
    void arm(std::uint32_t slot_index, due_kind kind, time_point due);
    void disarm(std::uint32_t slot_index, due_kind kind) noexcept;
    void place(std::size_t position, const heap_entry& entry) noexcept;
    void sift_up(std::size_t position) noexcept;
    void sift_down(std::size_t position) noexcept;
    void restore(std::size_t position) noexcept;
    void count_interval(duration interval);
    void uncount_interval(duration interval) noexcept;

    schedule_config cfg_;
    resilience::random_source rng_;
    std::vector<heap_entry> heap_;
    std::vector<slot> slots_;
    std::vector<std::uint32_t> free_slots_;
    /// Live checks per interval, for the shortest one (slack()).
    std::map<duration, std::size_t> interval_counts_;
    std::size_t size_ = 0;
    std::uint64_t next_sequence_ = 0;
    std::uint64_t missed_firings_ = 0;
};

}  // namespace lakemesh::health
