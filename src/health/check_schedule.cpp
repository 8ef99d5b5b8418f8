#include <lakemesh/health/check_schedule.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

namespace lakemesh::health {

namespace {

std::uint64_t initial_seed(const schedule_config& cfg) {
    if (cfg.seed) {
        return *cfg.seed;
    }
    std::random_device device;
    return (static_cast<std::uint64_t>(device()) << 32) ^ device();
}

double clamped(double value, double high) noexcept {
    // NaN compares false everywhere and ends up as 0: no jitter rather than undefined ranges.
    return value > 0.0 ? std::min(value, high) : 0.0;
}

duration clamped_interval(duration interval) noexcept {
    return std::clamp(interval, min_probe_interval, max_probe_interval);
}

/// floor(fraction * d) in ticks, for fraction in [0, 1].
std::uint64_t fraction_of(double fraction, duration d) noexcept {
    return static_cast<std::uint64_t>(std::floor(fraction * static_cast<double>(d.count())));
}

}  // namespace

check_schedule::check_schedule(const schedule_config& cfg) : cfg_(cfg), rng_(initial_seed(cfg)) {
    cfg_.jitter = clamped(cfg.jitter, 0.5);
    cfg_.first_spread = clamped(cfg.first_spread, 1.0);
    cfg_.slack_fraction = clamped(cfg.slack_fraction, 0.1);
    cfg_.slack_cap = std::max(cfg.slack_cap, duration::zero());
}

check_handle check_schedule::add(duration interval, time_point now) {
    interval = clamped_interval(interval);
    // [0, spread): below() never returns its bound, so a full spread stays short of `interval`.
    const auto offset =
        duration(static_cast<duration::rep>(rng_.below(fraction_of(cfg_.first_spread, interval))));
    return allocate(interval, now + offset, now + offset);
}

check_handle check_schedule::add_at(duration interval, time_point first_due) {
    return allocate(clamped_interval(interval), first_due, first_due);
}

check_handle check_schedule::allocate(duration interval, time_point anchor, time_point due) {
    std::uint32_t index = 0;
    if (free_slots_.empty()) {
        index = static_cast<std::uint32_t>(slots_.size());
        slots_.emplace_back();
    } else {
        index = free_slots_.back();
        free_slots_.pop_back();
    }
    slot& s = slots_[index];
    s.live = true;
    s.anchor = anchor;
    s.interval = interval;
    arm(index, due_kind::probe, due);
    count_interval(interval);
    ++size_;
    return {index, s.generation};
}

bool check_schedule::remove(check_handle check) noexcept {
    slot* s = find(check);
    if (s == nullptr) {
        return false;
    }
    disarm(check.index, due_kind::probe);
    disarm(check.index, due_kind::wake);
    uncount_interval(s->interval);
    s->live = false;
    ++s->generation;
    free_slots_.push_back(check.index);
    --size_;
    return true;
}

bool check_schedule::reschedule(check_handle check, time_point due) {
    slot* s = find(check);
    if (s == nullptr) {
        return false;
    }
    s->anchor = due;
    arm(check.index, due_kind::probe, due);
    return true;
}

bool check_schedule::set_interval(check_handle check, duration interval) {
    slot* s = find(check);
    if (s == nullptr) {
        return false;
    }
    uncount_interval(s->interval);
    s->interval = clamped_interval(interval);
    count_interval(s->interval);
    return true;
}

bool check_schedule::set_wake(check_handle check, time_point when) {
    slot* s = find(check);
    if (s == nullptr) {
        return false;
    }
    if (when == never) {
        disarm(check.index, due_kind::wake);
        return true;
    }
    const std::uint32_t position = s->position[static_cast<int>(due_kind::wake)];
    if (position != not_armed && heap_[position].due == when) {
        // The state machine answers most events with an unchanged wake time.
        return true;
    }
    arm(check.index, due_kind::wake, when);
    return true;
}

std::optional<time_point> check_schedule::next_due() const noexcept {
    if (heap_.empty()) {
        return std::nullopt;
    }
    return heap_.front().due;
}

std::optional<time_point> check_schedule::next_wake() const noexcept {
    if (heap_.empty()) {
        return std::nullopt;
    }
    const time_point due = heap_.front().due;
    const duration s = slack();
    return s >= never - due ? never : due + s;
}

duration check_schedule::slack() const noexcept {
    if (interval_counts_.empty() || cfg_.slack_cap <= duration::zero()) {
        return duration::zero();
    }
    const auto shortest = interval_counts_.begin()->first;
    return std::min(
        cfg_.slack_cap,
        duration(static_cast<duration::rep>(fraction_of(cfg_.slack_fraction, shortest))));
}

void check_schedule::count_interval(duration interval) {
    ++interval_counts_[interval];
}

void check_schedule::uncount_interval(duration interval) noexcept {
    if (auto it = interval_counts_.find(interval);
        it != interval_counts_.end() && --it->second == 0) {
        interval_counts_.erase(it);
    }
}

std::optional<due_check> check_schedule::pop_next(time_point now) {
    if (heap_.empty() || heap_.front().due > now) {
        return std::nullopt;
    }
    const heap_entry top = heap_.front();
    slot& s = slots_[top.slot];
    const due_check fired{{top.slot, s.generation}, top.kind, top.due};
    if (top.kind == due_kind::wake) {
        disarm(top.slot, due_kind::wake);
        return fired;
    }
    // Next nominal time on the grid; the jitter is drawn around it, never added to the last
    // firing, so errors cannot accumulate.
    s.anchor += s.interval;
    if (s.anchor <= now) {
        const auto missed = (now - s.anchor) / s.interval + 1;
        s.anchor += missed * s.interval;
        missed_firings_ += static_cast<std::uint64_t>(missed);
    }
    time_point due = s.anchor + jitter_offset(s.interval);
    if (due <= now) {
        // Only after a late pop: a firing at or before `now` would come out of this same pop
        // loop again, so fall back to the nominal time, which is within the bounds and ahead.
        due = s.anchor;
    }
    heap_.front().due = due;
    heap_.front().sequence = next_sequence_++;
    sift_down(0);
    return fired;
}

std::size_t check_schedule::pop_due(time_point now, std::vector<due_check>& out) {
    std::size_t popped = 0;
    while (auto fired = pop_next(now)) {
        out.push_back(*fired);
        ++popped;
    }
    return popped;
}

bool check_schedule::contains(check_handle check) const noexcept {
    return find(check) != nullptr;
}

duration check_schedule::interval(check_handle check) const noexcept {
    const slot* s = find(check);
    return s == nullptr ? duration::zero() : s->interval;
}

time_point check_schedule::probe_due(check_handle check) const noexcept {
    const slot* s = find(check);
    if (s == nullptr) {
        return never;
    }
    return heap_[s->position[static_cast<int>(due_kind::probe)]].due;
}

time_point check_schedule::wake_at(check_handle check) const noexcept {
    const slot* s = find(check);
    if (s == nullptr) {
        return never;
    }
    const std::uint32_t position = s->position[static_cast<int>(due_kind::wake)];
    return position == not_armed ? never : heap_[position].due;
}

const check_schedule::slot* check_schedule::find(check_handle check) const noexcept {
    if (check.index >= slots_.size()) {
        return nullptr;
    }
    const slot& s = slots_[check.index];
    return s.live && s.generation == check.generation ? &s : nullptr;
}

check_schedule::slot* check_schedule::find(check_handle check) noexcept {
    return const_cast<slot*>(std::as_const(*this).find(check));
}

duration check_schedule::jitter_offset(duration interval) {
    const std::uint64_t span = fraction_of(cfg_.jitter, interval);
    if (span == 0) {
        return duration::zero();
    }
    // Uniform in [-span, +span]; 2 * span + 1 fits, as span <= interval / 2.
    return duration(static_cast<duration::rep>(rng_.below(2 * span + 1)) -
                    static_cast<duration::rep>(span));
}

void check_schedule::arm(std::uint32_t slot_index, due_kind kind, time_point due) {
    const heap_entry entry{due, next_sequence_++, slot_index, kind};
    const std::uint32_t position = slots_[slot_index].position[static_cast<int>(kind)];
    if (position != not_armed) {
        place(position, entry);
        restore(position);
        return;
    }
    heap_.push_back(entry);
    place(heap_.size() - 1, entry);
    sift_up(heap_.size() - 1);
}

void check_schedule::disarm(std::uint32_t slot_index, due_kind kind) noexcept {
    std::uint32_t& position = slots_[slot_index].position[static_cast<int>(kind)];
    if (position == not_armed) {
        return;
    }
    const std::size_t hole = position;
    position = not_armed;
    const heap_entry last = heap_.back();
    heap_.pop_back();
    if (hole < heap_.size()) {
        place(hole, last);
        restore(hole);
    }
}

void check_schedule::place(std::size_t position, const heap_entry& entry) noexcept {
    heap_[position] = entry;
    slots_[entry.slot].position[static_cast<int>(entry.kind)] =
        static_cast<std::uint32_t>(position);
}

void check_schedule::sift_up(std::size_t position) noexcept {
    const heap_entry entry = heap_[position];
    while (position > 0) {
        const std::size_t parent = (position - 1) / 2;
        if (!earlier(entry, heap_[parent])) {
            break;
        }
        place(position, heap_[parent]);
        position = parent;
    }
    place(position, entry);
}

void check_schedule::sift_down(std::size_t position) noexcept {
    const heap_entry entry = heap_[position];
    const std::size_t count = heap_.size();
    for (;;) {
        std::size_t child = 2 * position + 1;
        if (child >= count) {
            break;
        }
        if (child + 1 < count && earlier(heap_[child + 1], heap_[child])) {
            ++child;
        }
        if (!earlier(heap_[child], entry)) {
            break;
        }
        place(position, heap_[child]);
        position = child;
    }
    place(position, entry);
}

void check_schedule::restore(std::size_t position) noexcept {
    if (position > 0 && earlier(heap_[position], heap_[(position - 1) / 2])) {
        sift_up(position);
    } else {
        sift_down(position);
    }
}

}  // namespace lakemesh::health
