#include <lakemesh/resilience/retry.hpp>

#include <boost/asio/error.hpp>

#include <algorithm>
#include <cmath>

namespace lakemesh::resilience {

namespace {

duration scale(duration d, double factor) noexcept {
    const double ticks = static_cast<double>(d.count()) * factor;
    // Doubles beyond the duration range saturate instead of overflowing.
    if (ticks >= static_cast<double>(duration::max().count())) {
        return duration::max();
    }
    return duration(static_cast<duration::rep>(ticks));
}

duration uniform_between(random_source& rng, duration low, duration high) noexcept {
    if (high <= low) {
        return low;
    }
    const auto span = static_cast<std::uint64_t>((high - low).count());
    // below(span + 1) covers [0, span]; span + 1 cannot overflow because span < 2^63.
    return low + duration(static_cast<duration::rep>(rng.below(span + 1)));
}

}  // namespace

backoff::backoff(const retry_config& cfg) noexcept
    : base_(std::max(cfg.base_backoff, duration::zero())),
      cap_(cfg.max_backoff > duration::zero() ? cfg.max_backoff : duration::max()),
      multiplier_(std::max(cfg.multiplier, 1.0)),
      jitter_(cfg.jitter) {
    base_ = std::min(base_, cap_);
}

duration backoff::ceiling(unsigned retry) const noexcept {
    if (retry == 0) {
        return duration::zero();
    }
    const double factor = std::pow(multiplier_, static_cast<double>(retry - 1));
    return std::min(scale(base_, factor), cap_);
}

duration backoff::next(random_source& rng) noexcept {
    ++retries_;
    switch (jitter_) {
        case jitter_kind::none:
            return ceiling(retries_);
        case jitter_kind::full:
            return uniform_between(rng, duration::zero(), ceiling(retries_));
        case jitter_kind::decorrelated: {
            const duration previous = retries_ == 1 ? base_ : previous_;
            const duration high = std::min(scale(previous, 3.0), cap_);
            previous_ = uniform_between(rng, base_, high);
            return previous_;
        }
    }
    return base_;
}

retry_budget::retry_budget(retry_budget_config cfg) {
    reconfigure(std::move(cfg));
}

void retry_budget::reconfigure(retry_budget_config cfg) {
    const bool same_window = cfg.window == cfg_.window && head_epoch_ >= 0;
    cfg_ = cfg;
    if (same_window) {
        return;
    }
    bucket_ticks_ =
        std::max<std::int64_t>(1, cfg_.window.count() / static_cast<std::int64_t>(bucket_count));
    head_epoch_ = -1;
    requests_ = 0;
    retries_ = 0;
    for (auto& b : buckets_) {
        b = bucket{};
    }
}

void retry_budget::advance(time_point now) noexcept {
    const std::int64_t epoch = now.time_since_epoch().count() / bucket_ticks_;
    if (epoch <= head_epoch_) {
        return;
    }
    const std::int64_t oldest_kept = epoch - static_cast<std::int64_t>(bucket_count) + 1;
    for (auto& b : buckets_) {
        if (b.epoch >= 0 && b.epoch < oldest_kept) {
            requests_ -= b.requests;
            retries_ -= b.retries;
            b = bucket{};
        }
    }
    buckets_[static_cast<std::size_t>(epoch) % bucket_count].epoch = epoch;
    head_epoch_ = epoch;
}

double retry_budget::allowance() const noexcept {
    const double seconds = std::chrono::duration<double>(cfg_.window).count();
    return std::max(0.0, cfg_.min_retries_per_second) * seconds +
           std::max(0.0, cfg_.ratio) * static_cast<double>(requests_);
}

void retry_budget::record_request(time_point now) noexcept {
    if (cfg_.window <= duration::zero()) {
        return;
    }
    advance(now);
    ++requests_;
    ++buckets_[static_cast<std::size_t>(head_epoch_) % bucket_count].requests;
}

bool retry_budget::try_withdraw(time_point now) noexcept {
    if (cfg_.window <= duration::zero()) {
        return true;
    }
    advance(now);
    if (static_cast<double>(retries_) + 1.0 > allowance()) {
        return false;
    }
    ++retries_;
    ++buckets_[static_cast<std::size_t>(head_epoch_) % bucket_count].retries;
    return true;
}

double retry_budget::available(time_point now) noexcept {
    if (cfg_.window <= duration::zero()) {
        return std::numeric_limits<double>::infinity();
    }
    advance(now);
    return std::max(0.0, allowance() - static_cast<double>(retries_));
}

bool is_unsent_failure(const error_code& ec) noexcept {
    namespace aerr = boost::asio::error;
    return ec == transport_errc::connect_failed || ec == transport_errc::resolve_failed ||
           ec == transport_errc::tls_handshake_failed ||
           ec == transport_errc::all_addresses_failed || ec == aerr::connection_refused ||
           ec == aerr::host_unreachable || ec == aerr::network_unreachable ||
           // A partition's "not owner" answer (or no owner to send to): nothing acted on it.
           ec == partition_errc::not_owner;
}

retry_state::retry_state(const retry_config& cfg, deadline call_deadline,
                         std::optional<bool> idempotent) noexcept
    : cfg_(&cfg),
      deadline_(call_deadline),
      backoff_(cfg),
      idempotent_(idempotent.value_or(cfg.idempotent)) {}

bool retry_state::should_retry(const error_code& ec) const {
    if (!ec) {
        return false;
    }
    const bool retryable = cfg_->retry_on ? cfg_->retry_on(ec) : lakemesh::is_retryable(ec);
    if (!retryable) {
        return false;
    }
    return idempotent_ || is_unsent_failure(ec);
}

retry_decision retry_state::on_failure(const error_code& ec, time_point now, retry_budget* budget,
                                       random_source& rng) {
    if (!should_retry(ec)) {
        return {false, {}, ec};
    }
    const unsigned max_attempts = std::max(cfg_->max_attempts, 1U);
    if (attempts_ >= max_attempts) {
        return {false, {}, attempts_ > 1 ? error_code(policy_errc::retries_exhausted) : ec};
    }
    const duration delay = backoff_.next(rng);
    if (deadline_.is_set() && (deadline_.expired(now) || delay >= deadline_.remaining(now))) {
        return {false, {}, policy_errc::deadline_exceeded};
    }
    if (budget != nullptr && !budget->try_withdraw(now)) {
        return {false, {}, policy_errc::retry_budget_exhausted};
    }
    return {true, delay, {}};
}

}  // namespace lakemesh::resilience
