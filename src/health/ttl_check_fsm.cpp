#include <lakemesh/health/ttl_check_fsm.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

namespace lakemesh::health {

namespace {

duration refresh_after_of(const ttl_check_config& cfg) noexcept {
    if (cfg.ttl <= duration::zero()) {
        return duration::zero();
    }
    // NaN and out-of-range fractions fall back into [0.05, 1].
    const double fraction =
        cfg.refresh_fraction >= 0.05 ? std::min(cfg.refresh_fraction, 1.0) : 0.05;
    return std::max(duration(1), duration(static_cast<duration::rep>(
                                     std::floor(fraction * static_cast<double>(cfg.ttl.count())))));
}

duration probe_timeout_of(const ttl_check_config& cfg) noexcept {
    if (cfg.probe_timeout > duration::zero()) {
        return cfg.probe_timeout;
    }
    return cfg.ttl > duration::zero() ? cfg.ttl : duration::max();
}

time_point saturating_add(time_point t, duration d) noexcept {
    return d >= never - t ? never : t + d;
}

}  // namespace

std::string format_duration(duration d) {
    using std::chrono::duration_cast;
    const auto ns = std::chrono::nanoseconds(d);
    if (ns.count() != 0 && ns % std::chrono::seconds(1) == std::chrono::nanoseconds::zero()) {
        return std::to_string(duration_cast<std::chrono::seconds>(ns).count()) + "s";
    }
    if (ns.count() != 0 && ns % std::chrono::milliseconds(1) == std::chrono::nanoseconds::zero()) {
        return std::to_string(duration_cast<std::chrono::milliseconds>(ns).count()) + "ms";
    }
    if (ns.count() != 0 && ns % std::chrono::microseconds(1) == std::chrono::nanoseconds::zero()) {
        return std::to_string(duration_cast<std::chrono::microseconds>(ns).count()) + "us";
    }
    return std::to_string(ns.count()) + "ns";
}

ttl_check_fsm::ttl_check_fsm(const ttl_check_config& cfg)
    : cfg_(cfg), refresh_after_(refresh_after_of(cfg)), probe_timeout_(probe_timeout_of(cfg)) {}

void ttl_check_fsm::set_ttl(duration ttl) noexcept {
    cfg_.ttl = ttl;
    refresh_after_ = refresh_after_of(cfg_);
    probe_timeout_ = probe_timeout_of(cfg_);
}

check_action ttl_check_fsm::on_registered(time_point now, status registered_status) {
    registered_ = true;
    ++registration_;
    acked_status_ = registered_status;
    acked_output_.clear();
    acked_at_ = now;
    if (push_ == push_state::backing_off) {
        push_ = push_state::idle;
        retry_at_ = never;
        push_failures_ = 0;
    }
    return push_if_needed(now);
}

check_action ttl_check_fsm::on_probe_due(time_point now) {
    if (probe_ != probe_state::idle) {
        ++overlapping_ticks_;
        return {};
    }
    probe_ = probe_state::running;
    probe_deadline_ = saturating_add(now, probe_timeout_);
    check_action action;
    action.kind = check_action_kind::start_probe;
    action.probe_deadline = probe_deadline_;
    return action;
}

check_action ttl_check_fsm::on_probe_completed(time_point now, status result, std::string output) {
    if (probe_ != probe_state::running) {
        // Idle: a duplicate. Cancelling: the timeout was already reported for this probe.
        probe_ = probe_state::idle;
        return {};
    }
    probe_ = probe_state::idle;
    record(result, std::move(output));
    return push_if_needed(now);
}

check_action ttl_check_fsm::on_probe_threw(time_point now, std::string_view what) {
    if (probe_ != probe_state::running) {
        probe_ = probe_state::idle;
        return {};
    }
    probe_ = probe_state::idle;
    std::string output = "probe threw: ";
    output.append(what);
    record(status::critical, std::move(output));
    return push_if_needed(now);
}

check_action ttl_check_fsm::on_probe_timed_out(time_point now) {
    if (probe_ != probe_state::running) {
        probe_ = probe_state::idle;
        return {};
    }
    probe_ = probe_state::idle;
    record_timeout();
    return push_if_needed(now);
}

check_action ttl_check_fsm::on_push_succeeded(time_point now) {
    if (push_ != push_state::in_flight) {
        return {};
    }
    push_ = push_state::idle;
    push_failures_ = 0;
    // A push sent before a re-registration says nothing about what the new registration holds.
    if (sent_registration_ == registration_) {
        acked_status_ = sent_status_;
        acked_output_ = std::move(sent_output_);
        // Consul restarted the TTL when it received the update, which was after it was sent.
        acked_at_ = sent_at_;
    }
    sent_output_.clear();
    return push_if_needed(now);
}

check_action ttl_check_fsm::on_push_failed(time_point now, const error_code& ec,
                                           resilience::random_source& rng) {
    if (push_ != push_state::in_flight) {
        return {};
    }
    ++push_failures_;
    last_push_error_ = ec;
    sent_output_.clear();
    const duration ceiling = backoff_ceiling(push_failures_);
    // Half fixed, half jitter: never an immediate hammering of an agent that just failed, and
    // thousands of checks failing together still spread their retries.
    const auto half = static_cast<std::uint64_t>(ceiling.count() / 2);
    const duration delay = ceiling - duration(static_cast<duration::rep>(rng.below(half + 1)));
    push_ = push_state::backing_off;
    retry_at_ = saturating_add(now, delay);
    check_action action;
    action.kind = check_action_kind::back_off;
    action.retry_at = retry_at_;
    return action;
}

check_action ttl_check_fsm::on_wake(time_point now) {
    bool cancel = false;
    if (probe_ == probe_state::running && now >= probe_deadline_) {
        probe_ = probe_state::cancelling;
        probe_deadline_ = never;
        record_timeout();
        cancel = true;
    }
    if (push_ == push_state::backing_off && now >= retry_at_) {
        push_ = push_state::idle;
        retry_at_ = never;
    }
    check_action action = push_if_needed(now);
    action.cancel_probe = cancel;
    return action;
}

time_point ttl_check_fsm::wake_at() const noexcept {
    time_point wake = never;
    if (probe_ == probe_state::running) {
        wake = probe_deadline_;
    }
    if (push_ == push_state::backing_off) {
        wake = std::min(wake, retry_at_);
    } else if (push_ == push_state::idle && registered_ && has_result_ &&
               refresh_after_ > duration::zero()) {
        wake = std::min(wake, saturating_add(acked_at_, refresh_after_));
    }
    return wake;
}

void ttl_check_fsm::record(status result, std::string output) {
    status_ = result;
    output_ = std::move(output);
    has_result_ = true;
}

void ttl_check_fsm::record_timeout() {
    record(status::critical, "probe timed out after " + format_duration(probe_timeout_));
}

bool ttl_check_fsm::needs_push(time_point now) const noexcept {
    if (!registered_ || !has_result_) {
        return false;
    }
    if (status_ != acked_status_ || output_ != acked_output_) {
        return true;
    }
    return refresh_after_ > duration::zero() && now - acked_at_ >= refresh_after_;
}

check_action ttl_check_fsm::push_if_needed(time_point now) {
    if (push_ != push_state::idle || !needs_push(now)) {
        return {};
    }
    push_ = push_state::in_flight;
    sent_status_ = status_;
    sent_output_ = output_;
    sent_at_ = now;
    sent_registration_ = registration_;
    check_action action;
    action.kind = check_action_kind::push;
    action.push_status = status_;
    action.push_output = output_;
    return action;
}

duration ttl_check_fsm::backoff_ceiling(unsigned failures) const noexcept {
    if (failures == 0 || cfg_.push_backoff_base <= duration::zero()) {
        return duration::zero();
    }
    const duration cap =
        cfg_.push_backoff_cap > duration::zero() ? cfg_.push_backoff_cap : duration::max() / 2;
    duration ceiling = cfg_.push_backoff_base;
    for (unsigned i = 1; i < failures && ceiling < cap; ++i) {
        ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
    }
    return std::min(ceiling, cap);
}

}  // namespace lakemesh::health
