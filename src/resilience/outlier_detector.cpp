#include <lakemesh/resilience/outlier_detector.hpp>

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace lakemesh::resilience {

outlier_detector::outlier_detector(outlier_config cfg, std::shared_ptr<event_listener> listener)
    : cfg_(cfg), listener_(std::move(listener)) {}

void outlier_detector::update(const std::vector<std::string>& ids, time_point now) {
    std::unordered_map<std::string, endpoint_state> previous;
    previous.reserve(states_.size());
    for (auto& s : states_) {
        previous.emplace(s.id, std::move(s));
    }
    states_.clear();
    states_.reserve(ids.size());
    ejected_ = 0;
    for (const auto& id : ids) {
        auto it = previous.find(id);
        if (it != previous.end()) {
            states_.push_back(std::move(it->second));
        } else {
            states_.push_back(endpoint_state{});
        }
        states_.back().id = id;
        ejected_ += states_.back().ejected ? 1 : 0;
    }
    if (next_interval_ == time_point::max() && cfg_.interval > duration::zero()) {
        next_interval_ = now + cfg_.interval;
    }
    ++generation_;
    schedule(now);
}

std::size_t outlier_detector::max_ejectable() const noexcept {
    if (cfg_.max_ejection_percent == 0) {
        return 0;
    }
    const std::size_t by_percent = states_.size() * std::min(cfg_.max_ejection_percent, 100U) / 100;
    return std::max<std::size_t>(by_percent, 1);
}

bool outlier_detector::panic() const noexcept {
    if (cfg_.panic_threshold_percent == 0 || states_.empty()) {
        return false;
    }
    const std::size_t eligible = states_.size() - ejected_;
    return eligible * 100 < states_.size() * cfg_.panic_threshold_percent;
}

bool outlier_detector::eject(std::size_t index, ejection_reason reason, time_point now) {
    endpoint_state& s = states_[index];
    if (s.ejected || ejected_ >= max_ejectable()) {
        return false;
    }
    ++s.ejection_count;
    duration length = cfg_.base_ejection_time * s.ejection_count;
    if (cfg_.max_ejection_time > duration::zero()) {
        length = std::min(length, cfg_.max_ejection_time);
    }
    s.ejected = true;
    s.until = now + length;
    s.consecutive_failures = 0;
    s.successes = s.failures = 0;
    ++ejected_;
    ++generation_;
    next_due_ = std::min(next_due_, s.until);
    if (listener_) {
        listener_->on_ejection(ejection_event{s.id, true, reason, now, s.until, s.ejection_count});
    }
    return true;
}

void outlier_detector::record(std::size_t index, bool success, time_point now) {
    if (index >= states_.size()) {
        return;
    }
    endpoint_state& s = states_[index];
    if (s.ejected) {
        return;
    }
    if (success) {
        s.consecutive_failures = 0;
        ++s.successes;
        return;
    }
    ++s.failures;
    if (cfg_.consecutive_failures > 0 && ++s.consecutive_failures >= cfg_.consecutive_failures) {
        eject(index, ejection_reason::consecutive_failures, now);
    }
}

void outlier_detector::analyse_success_rates(time_point now) {
    std::vector<std::pair<std::size_t, double>> rates;
    for (std::size_t i = 0; i < states_.size(); ++i) {
        const endpoint_state& s = states_[i];
        const std::uint32_t volume = s.successes + s.failures;
        if (!s.ejected && volume > 0 && volume >= cfg_.success_rate_request_volume) {
            rates.emplace_back(i, static_cast<double>(s.successes) / volume);
        }
    }
    if (!rates.empty() && rates.size() >= cfg_.success_rate_minimum_hosts) {
        double mean = 0.0;
        for (const auto& [i, rate] : rates) {
            mean += rate;
        }
        mean /= static_cast<double>(rates.size());
        double variance = 0.0;
        for (const auto& [i, rate] : rates) {
            variance += (rate - mean) * (rate - mean);
        }
        const double stddev = std::sqrt(variance / static_cast<double>(rates.size()));
        const double threshold = mean - cfg_.success_rate_stdev_factor * stddev;
        // Worst first, so that the max-ejection cap keeps the worst endpoints out.
        std::sort(rates.begin(), rates.end(),
                  [](const auto& a, const auto& b) { return a.second < b.second; });
        for (const auto& [i, rate] : rates) {
            if (rate < threshold) {
                eject(i, ejection_reason::success_rate, now);
            }
        }
    }
    for (auto& s : states_) {
        if (!s.ejected && s.ejection_count > 0) {
            --s.ejection_count;
        }
        s.successes = s.failures = 0;
    }
}

void outlier_detector::schedule(time_point) {
    next_due_ = next_interval_;
    for (const auto& s : states_) {
        if (s.ejected) {
            next_due_ = std::min(next_due_, s.until);
        }
    }
}

bool outlier_detector::tick(time_point now) {
    if (now < next_due_) {
        return false;
    }
    const std::uint64_t before = generation_;
    // The interval runs first so that an ejection ending now still counts as ejected in it and
    // does not decay its own repeat count.
    if (cfg_.interval > duration::zero() && now >= next_interval_) {
        analyse_success_rates(now);
        next_interval_ = now + cfg_.interval;
    }
    for (auto& s : states_) {
        if (s.ejected && now >= s.until) {
            s.ejected = false;
            s.consecutive_failures = 0;
            --ejected_;
            ++generation_;
            if (listener_) {
                listener_->on_ejection(ejection_event{s.id, false,
                                                      ejection_reason::consecutive_failures, now,
                                                      s.until, s.ejection_count});
            }
        }
    }
    schedule(now);
    return generation_ != before;
}

}  // namespace lakemesh::resilience
