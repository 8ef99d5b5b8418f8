#include <lakemesh/partition/lease_fsm.hpp>

#include <algorithm>
#include <utility>

namespace lakemesh::partition {

using std::chrono::milliseconds;

milliseconds trust_window(const lease_config& c) noexcept {
    return std::min(c.session_ttl, c.lock_delay) - c.margin;
}

milliseconds effective_renew_interval(const lease_config& c) noexcept {
    if (c.renew_interval > milliseconds::zero()) {
        return c.renew_interval;
    }
    return std::max(milliseconds(1), trust_window(c) / 4);
}

error_code validate(const lease_config& c, diagnostics& diag) {
    auto fail = [&](std::string what) {
        diag.set_client_message(std::move(what));
        return make_error_code(validation_errc::invalid_duration);
    };
    if (c.session_ttl < std::chrono::seconds(10) || c.session_ttl > std::chrono::hours(24)) {
        return fail("session_ttl must lie within Consul's [10s, 86400s], got " +
                    std::to_string(c.session_ttl.count()) + " ms");
    }
    if (c.lock_delay < milliseconds::zero() || c.lock_delay > std::chrono::seconds(60)) {
        return fail("lock_delay must lie within [0, 60s] (Consul caps it at 60s), got " +
                    std::to_string(c.lock_delay.count()) + " ms");
    }
    if (c.margin <= milliseconds::zero()) {
        return fail("margin must be positive");
    }
    if (c.renew_interval < milliseconds::zero() || c.retry_base < milliseconds::zero() ||
        c.retry_cap < c.retry_base) {
        return fail(
            "renew_interval, retry_base and retry_cap must not be negative, and "
            "retry_cap not below retry_base");
    }
    const auto window = trust_window(c);
    if (window < 2 * effective_renew_interval(c) || window <= milliseconds::zero()) {
        return fail("the self-fencing window min(session_ttl, lock_delay) - margin = " +
                    std::to_string(window.count()) +
                    " ms must be at least twice the renew "
                    "interval (" +
                    std::to_string(effective_renew_interval(c).count()) +
                    " ms): raise lock_delay or lower margin or renew_interval");
    }
    return {};
}

lease_fsm::lease_fsm(const lease_config& cfg)
    : cfg_(cfg), window_(trust_window(cfg)), renew_every_(effective_renew_interval(cfg)) {}

lease_actions lease_fsm::plan(clock::time_point now, lease_actions a) {
    if (state_ == lease_state::held && !renew_in_flight_ && now >= next_renew_) {
        a.renew = true;
        a.renew_id = session_;
        renew_in_flight_ = true;
    }
    if (state_ == lease_state::none && now >= retry_at_) {
        a.create = true;
        state_ = lease_state::creating;
    }
    switch (state_) {
        case lease_state::held:
            a.wake_at = valid_until_;
            if (!renew_in_flight_) {
                a.wake_at = std::min(a.wake_at, next_renew_);
            }
            break;
        case lease_state::none:
            a.wake_at = retry_at_;
            break;
        default:
            break;
    }
    return a;
}

lease_actions lease_fsm::give_up(clock::time_point now) {
    lease_actions a;
    a.fenced = true;
    a.destroy.push_back(session_);
    session_.clear();
    renew_in_flight_ = false;
    state_ = lease_state::none;
    retry_at_ = now;
    ++fencings_;
    return plan(now, std::move(a));
}

lease_actions lease_fsm::start(clock::time_point now) {
    if (state_ != lease_state::none) {
        return {};
    }
    started_ = true;
    retry_at_ = now;
    return plan(now, {});
}

lease_actions lease_fsm::on_created(clock::time_point now, clock::time_point sent_at,
                                    std::string id) {
    if (state_ == lease_state::stopped) {
        // Created after a stop: nobody will use it.
        lease_actions a;
        a.destroy.push_back(std::move(id));
        return a;
    }
    if (state_ != lease_state::creating) {
        return plan(now, {});
    }
    retry_soon_ = false;
    if (now >= sent_at + window_) {
        // Answered after the window it would have opened had closed (a slow agent): it can
        // never be trusted. Given back at once, and a new one asked for after a back-off.
        lease_actions a;
        a.destroy.push_back(std::move(id));
        state_ = lease_state::none;
        const auto shift = std::min(failures_++, 16u);
        retry_at_ = now + std::min(cfg_.retry_cap, cfg_.retry_base * (1 << shift));
        return plan(now, std::move(a));
    }
    state_ = lease_state::held;
    session_ = std::move(id);
    valid_until_ = sent_at + window_;
    next_renew_ = now + renew_every_;
    failures_ = 0;
    ++created_;
    return plan(now, {});
}

lease_actions lease_fsm::on_create_failed(clock::time_point now, const error_code&) {
    if (state_ != lease_state::creating) {
        return plan(now, {});
    }
    state_ = lease_state::none;
    const auto shift = std::min(failures_++, 16u);
    retry_at_ = std::exchange(retry_soon_, false)
                    ? now
                    : now + std::min(cfg_.retry_cap, cfg_.retry_base * (1 << shift));
    return plan(now, {});
}

lease_actions lease_fsm::on_renewed(clock::time_point now, clock::time_point sent_at,
                                    const std::string& id) {
    if (state_ != lease_state::held || id != session_) {
        return plan(now, {});
    }
    renew_in_flight_ = false;
    // A renew that answers after the window ended cannot revive the lease: the node may already
    // have stopped acting, and on_timer() gives the session up at valid_until anyway.
    if (now >= valid_until_) {
        return give_up(now);
    }
    valid_until_ = std::max(valid_until_, sent_at + window_);
    next_renew_ = now + renew_every_;
    return plan(now, {});
}

lease_actions lease_fsm::on_renew_failed(clock::time_point now, const std::string& id,
                                         const error_code& ec) {
    if (state_ != lease_state::held || id != session_) {
        return plan(now, {});
    }
    renew_in_flight_ = false;
    if (ec == consul_errc::not_found || now >= valid_until_) {
        return give_up(now);
    }
    next_renew_ = now + renew_every_ / 2;
    return plan(now, {});
}

lease_actions lease_fsm::on_invalidated(clock::time_point now, const std::string& id) {
    if (state_ != lease_state::held || id != session_) {
        return plan(now, {});
    }
    return give_up(now);
}

lease_actions lease_fsm::on_timer(clock::time_point now) {
    if (state_ == lease_state::held && now >= valid_until_) {
        return give_up(now);
    }
    return plan(now, {});
}

lease_actions lease_fsm::retry_now(clock::time_point now) {
    if (!started_) {
        return {};  // the shell has not started the lease (it may be ending older sessions)
    }
    if (state_ == lease_state::none) {
        retry_at_ = std::min(retry_at_, now);
    } else if (state_ == lease_state::creating) {
        retry_soon_ = true;
    }
    return plan(now, {});
}

lease_actions lease_fsm::stop() {
    lease_actions a;
    if (!session_.empty()) {
        a.destroy.push_back(session_);
    }
    session_.clear();
    renew_in_flight_ = false;
    state_ = lease_state::stopped;
    return a;
}

}  // namespace lakemesh::partition
