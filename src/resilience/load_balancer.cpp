#include <lakemesh/resilience/load_balancer.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string_view>

namespace lakemesh::resilience {

namespace {

std::uint64_t key_of(const std::string& id) noexcept {
    // FNV-1a, stable across processes and standard libraries.
    std::uint64_t h = 0xcbf2'9ce4'8422'2325ULL;
    for (const char c : id) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x0000'0100'0000'01b3ULL;
    }
    return h;
}

// Cost of an endpoint in flight with no latency sample: high enough that a measured endpoint
// is preferred, so an unknown endpoint takes one call at a time until it has a sample.
constexpr double unmeasured_penalty_ns = 1e12;

}  // namespace

load_balancer::load_balancer(load_balancer_config cfg, std::uint64_t seed,
                             std::shared_ptr<event_listener> listener)
    : cfg_(cfg),
      rng_(seed),
      outliers_(cfg.outlier_detection.value_or(outlier_config{}), std::move(listener)),
      decay_ns_(std::max(
          1.0, static_cast<double>(
                   std::chrono::duration_cast<std::chrono::nanoseconds>(cfg.ewma_decay).count()))) {
}

void load_balancer::update(std::vector<endpoint> endpoints, time_point now) {
    std::vector<std::uint64_t> keys;
    std::vector<endpoint_stats> stats;
    std::vector<std::string> ids;
    keys.reserve(endpoints.size());
    stats.reserve(endpoints.size());
    ids.reserve(endpoints.size());
    std::unordered_map<std::uint64_t, std::uint32_t> index_by_key;
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
        const std::uint64_t key = key_of(endpoints[i].id);
        keys.push_back(key);
        const auto old = index_by_key_.find(key);
        stats.push_back(old != index_by_key_.end() ? stats_[old->second] : endpoint_stats{});
        index_by_key.emplace(key, static_cast<std::uint32_t>(i));
        ids.push_back(endpoints[i].id);
    }
    endpoints_ = std::move(endpoints);
    keys_ = std::move(keys);
    stats_ = std::move(stats);
    index_by_key_ = std::move(index_by_key);
    ++version_;
    outliers_.update(ids, now);
    rebuild_eligible();
}

void load_balancer::rebuild_eligible() {
    eligible_.clear();
    cumulative_weight_.clear();
    const bool use_all = !cfg_.outlier_detection || outliers_.panic();
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < endpoints_.size(); ++i) {
        if (use_all || !outliers_.is_ejected(i)) {
            eligible_.push_back(static_cast<std::uint32_t>(i));
            total += weight_of(i);
            cumulative_weight_.push_back(total);
        }
    }
    outliers_generation_ = outliers_.generation();
}

std::uint32_t load_balancer::weight_of(std::size_t index) const noexcept {
    const endpoint& e = endpoints_[index];
    return e.health == endpoint_health::passing ? e.weight_passing : e.weight_warning;
}

double load_balancer::cost(std::size_t index, time_point now) const noexcept {
    const endpoint_stats& s = stats_[index];
    const double load = static_cast<double>(s.in_flight) + 1.0;
    if (s.ewma_ns <= 0.0) {
        return s.in_flight == 0 ? 0.0 : unmeasured_penalty_ns * load;
    }
    // The average decays toward zero while no sample arrives, so a once-slow endpoint gets probed
    // again after a while.
    const double idle_ns = static_cast<double>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.stamp).count());
    const double decayed = idle_ns > 0.0 ? s.ewma_ns * std::exp(-idle_ns / decay_ns_) : s.ewma_ns;
    return decayed * load;
}

std::uint32_t load_balancer::choose_p2c(std::size_t a, std::size_t b, time_point now) noexcept {
    const std::uint32_t i = eligible_[a];
    const std::uint32_t j = eligible_[b];
    if (cfg_.kind == balancer_kind::least_request) {
        return stats_[j].in_flight < stats_[i].in_flight ? j : i;
    }
    return cost(j, now) < cost(i, now) ? j : i;
}

std::optional<endpoint_handle> load_balancer::pick(time_point now) {
    if (cfg_.outlier_detection &&
        (outliers_.tick(now) || outliers_.generation() != outliers_generation_)) {
        rebuild_eligible();
    }
    const std::size_t n = eligible_.size();
    if (n == 0) {
        return std::nullopt;
    }
    std::uint32_t chosen = eligible_[0];
    if (n > 1) {
        switch (cfg_.kind) {
            case balancer_kind::round_robin:
                chosen = eligible_[cursor_++ % n];
                break;
            case balancer_kind::random:
                chosen = eligible_[rng_.below(n)];
                break;
            case balancer_kind::weighted: {
                const std::uint64_t total = cumulative_weight_.back();
                if (total == 0) {
                    chosen = eligible_[rng_.below(n)];
                    break;
                }
                const std::uint64_t r = rng_.below(total);
                const auto it =
                    std::upper_bound(cumulative_weight_.begin(), cumulative_weight_.end(), r);
                chosen = eligible_[static_cast<std::size_t>(it - cumulative_weight_.begin())];
                break;
            }
            case balancer_kind::least_request:
            case balancer_kind::peak_ewma: {
                const std::size_t a = rng_.below(n);
                std::size_t b = rng_.below(n - 1);
                b += b >= a ? 1 : 0;
                chosen = choose_p2c(a, b, now);
                break;
            }
        }
    }
    return endpoint_handle{chosen, version_, keys_[chosen]};
}

std::optional<std::size_t> load_balancer::resolve(const endpoint_handle& h) const noexcept {
    if (h.version == version_) {
        return h.index < stats_.size() ? std::optional<std::size_t>(h.index) : std::nullopt;
    }
    const auto it = index_by_key_.find(h.key);
    return it == index_by_key_.end() ? std::nullopt : std::optional<std::size_t>(it->second);
}

void load_balancer::on_start(const endpoint_handle& h) noexcept {
    if (const auto i = resolve(h)) {
        ++stats_[*i].in_flight;
    }
}

void load_balancer::on_abandon(const endpoint_handle& h) noexcept {
    if (const auto i = resolve(h); i && stats_[*i].in_flight > 0) {
        --stats_[*i].in_flight;
    }
}

void load_balancer::on_finish(const endpoint_handle& h, time_point now, duration latency,
                              bool success) {
    const auto index = resolve(h);
    if (!index) {
        return;
    }
    endpoint_stats& s = stats_[*index];
    if (s.in_flight > 0) {
        --s.in_flight;
    }
    const double sample_ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(latency).count());
    if (s.ewma_ns <= 0.0 || sample_ns > s.ewma_ns) {
        // Peak sensitivity: a slower sample is taken at once, faster ones are averaged in.
        s.ewma_ns = std::max(sample_ns, 1.0);
    } else {
        const double idle_ns = static_cast<double>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.stamp).count());
        const double keep = std::exp(-std::max(idle_ns, 0.0) / decay_ns_);
        s.ewma_ns = s.ewma_ns * keep + sample_ns * (1.0 - keep);
    }
    s.stamp = now;
    if (cfg_.outlier_detection) {
        outliers_.record(*index, success, now);
        if (outliers_.generation() != outliers_generation_) {
            rebuild_eligible();
        }
    }
}

}  // namespace lakemesh::resilience
