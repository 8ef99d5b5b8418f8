#include <lakemesh/resilience/circuit_breaker.hpp>

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace lakemesh::resilience {

namespace {

constexpr std::uint8_t failed_bit = 1;
constexpr std::uint8_t slow_bit = 2;

}  // namespace

std::string_view to_string(breaker_state state) noexcept {
    switch (state) {
        case breaker_state::closed:
            return "closed";
        case breaker_state::open:
            return "open";
        case breaker_state::half_open:
            return "half_open";
    }
    return "unknown";
}

circuit_breaker::circuit_breaker(circuit_breaker_config cfg) : cfg_(cfg) {
    reset_window();
}

void circuit_breaker::set_listener(std::shared_ptr<event_listener> listener, std::string target) {
    listener_ = std::move(listener);
    target_ = std::move(target);
}

void circuit_breaker::reconfigure(circuit_breaker_config cfg) {
    const bool same_shape = cfg.window == cfg_.window && cfg.window_size == cfg_.window_size &&
                            cfg.window_duration == cfg_.window_duration;
    cfg_ = cfg;
    if (!same_shape) {
        reset_window();
    }
}

void circuit_breaker::reset_window() {
    calls_ = failures_ = slow_ = 0;
    ring_.clear();
    buckets_.clear();
    ring_next_ = 0;
    head_epoch_ = -1;
    if (cfg_.window == window_kind::count) {
        ring_.assign(std::max(cfg_.window_size, 1U), std::uint8_t{0});
    } else {
        const duration length = cfg_.window_duration > duration::zero() ? cfg_.window_duration
                                                                        : std::chrono::seconds(1);
        bucket_ticks_ =
            std::max<std::int64_t>(1, length.count() / static_cast<std::int64_t>(time_buckets));
        buckets_.assign(time_buckets, time_bucket{});
    }
}

void circuit_breaker::advance_time_window(time_point now) noexcept {
    const std::int64_t epoch = now.time_since_epoch().count() / bucket_ticks_;
    if (epoch <= head_epoch_) {
        return;
    }
    const std::int64_t oldest_kept = epoch - static_cast<std::int64_t>(time_buckets) + 1;
    for (auto& b : buckets_) {
        if (b.epoch >= 0 && b.epoch < oldest_kept) {
            calls_ -= b.calls;
            failures_ -= b.failures;
            slow_ -= b.slow;
            b = time_bucket{};
        }
    }
    buckets_[static_cast<std::size_t>(epoch) % time_buckets].epoch = epoch;
    head_epoch_ = epoch;
}

void circuit_breaker::record(time_point now, bool failed, bool slow) {
    if (cfg_.window == window_kind::count) {
        // Calls count until the ring is full; afterwards the oldest entry is replaced.
        std::uint8_t& slot = ring_[ring_next_];
        if (calls_ == ring_.size()) {
            failures_ -= (slot & failed_bit) ? 1 : 0;
            slow_ -= (slot & slow_bit) ? 1 : 0;
        } else {
            ++calls_;
        }
        slot = static_cast<std::uint8_t>((failed ? failed_bit : 0) | (slow ? slow_bit : 0));
        ring_next_ = ring_next_ + 1 == ring_.size() ? 0 : ring_next_ + 1;
        failures_ += failed ? 1 : 0;
        slow_ += slow ? 1 : 0;
    } else {
        advance_time_window(now);
        time_bucket& b = buckets_[static_cast<std::size_t>(head_epoch_) % time_buckets];
        ++b.calls;
        ++calls_;
        if (failed) {
            ++b.failures;
            ++failures_;
        }
        if (slow) {
            ++b.slow;
            ++slow_;
        }
    }
}

breaker_permit circuit_breaker::try_acquire(time_point now) {
    switch (state_) {
        case breaker_state::closed:
            return {true, generation_};
        case breaker_state::open:
            if (now < open_until_) {
                return {false, generation_};
            }
            transition(breaker_state::half_open, now);
            [[fallthrough]];
        case breaker_state::half_open:
            if (probes_started_ >= std::max(cfg_.half_open_probes, 1U)) {
                return {false, generation_};
            }
            ++probes_started_;
            return {true, generation_};
    }
    return {false, generation_};
}

void circuit_breaker::on_success(breaker_permit permit, time_point now, duration latency) {
    if (!permit.admitted || permit.generation != generation_) {
        return;
    }
    const bool slow =
        cfg_.slow_call_duration > duration::zero() && latency >= cfg_.slow_call_duration;
    if (state_ == breaker_state::half_open) {
        if (slow && cfg_.slow_call_rate_threshold > 0.0) {
            // A slow probe says the target is still unhealthy.
            trip(now);
            return;
        }
        if (++probes_succeeded_ >= std::max(cfg_.half_open_probes, 1U)) {
            trips_ = 0;
            transition(breaker_state::closed, now);
        }
        return;
    }
    consecutive_failures_ = 0;
    record(now, false, slow);
    evaluate(now);
}

void circuit_breaker::on_failure(breaker_permit permit, time_point now, duration latency) {
    if (!permit.admitted || permit.generation != generation_) {
        return;
    }
    if (state_ == breaker_state::half_open) {
        trip(now);
        return;
    }
    const bool slow =
        cfg_.slow_call_duration > duration::zero() && latency >= cfg_.slow_call_duration;
    ++consecutive_failures_;
    record(now, true, slow);
    evaluate(now);
}

void circuit_breaker::on_ignored(breaker_permit permit) noexcept {
    if (!permit.admitted || permit.generation != generation_) {
        return;
    }
    if (state_ == breaker_state::half_open && probes_started_ > 0) {
        --probes_started_;
    }
}

void circuit_breaker::evaluate(time_point now) {
    if (cfg_.consecutive_failures > 0 && consecutive_failures_ >= cfg_.consecutive_failures) {
        trip(now);
        return;
    }
    if (cfg_.window == window_kind::time) {
        advance_time_window(now);
    }
    if (calls_ == 0 || calls_ < cfg_.minimum_calls) {
        return;
    }
    const double calls = static_cast<double>(calls_);
    if (cfg_.failure_rate_threshold > 0.0 &&
        static_cast<double>(failures_) / calls >= cfg_.failure_rate_threshold) {
        trip(now);
        return;
    }
    if (cfg_.slow_call_duration > duration::zero() && cfg_.slow_call_rate_threshold > 0.0 &&
        static_cast<double>(slow_) / calls >= cfg_.slow_call_rate_threshold) {
        trip(now);
    }
}

void circuit_breaker::trip(time_point now) {
    ++trips_;
    const double growth =
        std::pow(std::max(cfg_.open_duration_multiplier, 1.0), static_cast<double>(trips_ - 1));
    const double ticks = static_cast<double>(cfg_.open_duration.count()) * growth;
    duration open_for = ticks >= static_cast<double>(duration::max().count() / 2)
                            ? duration::max() / 2
                            : duration(static_cast<duration::rep>(ticks));
    if (cfg_.max_open_duration > duration::zero()) {
        open_for = std::min(open_for, cfg_.max_open_duration);
    }
    open_until_ = now + open_for;
    transition(breaker_state::open, now);
}

void circuit_breaker::transition(breaker_state to, time_point now) {
    const breaker_state from = state_;
    state_ = to;
    ++generation_;
    probes_started_ = 0;
    probes_succeeded_ = 0;
    consecutive_failures_ = 0;
    if (to == breaker_state::closed) {
        reset_window();
    }
    if (listener_) {
        listener_->on_breaker_transition(breaker_transition_event{
            target_, from, to, now,
            to == breaker_state::open ? open_until_ - now : duration::zero()});
    }
}

circuit_breaker_set::circuit_breaker_set(circuit_breaker_config cfg,
                                         std::shared_ptr<event_listener> listener)
    : cfg_(cfg), listener_(std::move(listener)) {}

circuit_breaker& circuit_breaker_set::get(std::string_view key) {
    auto it = breakers_.find(key);
    if (it == breakers_.end()) {
        it = breakers_.emplace(std::string(key), circuit_breaker(cfg_)).first;
        it->second.set_listener(listener_, it->first);
    }
    return it->second;
}

circuit_breaker* circuit_breaker_set::find(std::string_view key) noexcept {
    auto it = breakers_.find(key);
    return it == breakers_.end() ? nullptr : &it->second;
}

void circuit_breaker_set::retain(const std::vector<std::string>& keys) {
    const std::unordered_set<std::string_view> wanted(keys.begin(), keys.end());
    std::erase_if(breakers_, [&](const auto& entry) { return !wanted.contains(entry.first); });
}

void circuit_breaker_set::reconfigure(circuit_breaker_config cfg) {
    cfg_ = cfg;
    for (auto& [key, breaker] : breakers_) {
        breaker.reconfigure(cfg);
    }
}

}  // namespace lakemesh::resilience
