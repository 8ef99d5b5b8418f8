// Runtime policy reload: the watch of `<prefix>config/policies/` and the checks of its values.
// The JSON reader itself lives with the configuration file's (mesh_config_json.cpp).
#include "mesh/policy_watch.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace lakemesh::mesh::detail {

namespace {

bool valid_service_name(std::string_view s) {
    return !s.empty() && s.size() <= 256 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

bool same_outliers(const std::optional<resilience::outlier_config>& a,
                   const std::optional<resilience::outlier_config>& b) {
    if (a.has_value() != b.has_value()) {
        return false;
    }
    if (!a) {
        return true;
    }
    return a->consecutive_failures == b->consecutive_failures && a->interval == b->interval &&
           a->success_rate_minimum_hosts == b->success_rate_minimum_hosts &&
           a->success_rate_request_volume == b->success_rate_request_volume &&
           a->success_rate_stdev_factor == b->success_rate_stdev_factor &&
           a->base_ejection_time == b->base_ejection_time &&
           a->max_ejection_time == b->max_ejection_time &&
           a->max_ejection_percent == b->max_ejection_percent &&
           a->panic_threshold_percent == b->panic_threshold_percent;
}

bool same_balancer(const resilience::load_balancer_config& a,
                   const resilience::load_balancer_config& b) {
    return a.kind == b.kind && a.ewma_decay == b.ewma_decay &&
           same_outliers(a.outlier_detection, b.outlier_detection);
}

}  // namespace

// ------------------------------------------------------------------ checks

error_code validate_calls(const service_call_config& sc, diagnostics& diag) {
    auto fail = [&](std::string msg) {
        diag.set_client_message(std::move(msg));
        return make_error_code(validation_errc::invalid_argument);
    };
    const auto& r = sc.policy.retry;
    if (r.max_backoff > resilience::duration::zero() && r.max_backoff < r.base_backoff) {
        return fail("retry.max_backoff: shorter than retry.base_backoff");
    }
    if (const auto& b = sc.policy.circuit_breaker;
        b && b->max_open_duration > resilience::duration::zero() &&
        b->max_open_duration < b->open_duration) {
        return fail("circuit_breaker.max_open_duration: shorter than open_duration");
    }
    if (const auto& o = sc.balancer.outlier_detection;
        o && o->max_ejection_time < o->base_ejection_time) {
        return fail("outlier_detection.max_ejection_time: shorter than base_ejection_time");
    }
    return {};
}

error_code validate(const policy_reload_config& cfg, diagnostics& diag) {
    const auto& p = cfg.prefix;
    if (p.empty() || p.front() == '/' || p.back() != '/' || p.find("//") != std::string::npos ||
        std::any_of(p.begin(), p.end(),
                    [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; })) {
        diag.set_client_message(
            "policy_reload.prefix must end in '/', not start with one, and hold no control "
            "characters or empty segments: \"" +
            p + "\"");
        return make_error_code(validation_errc::invalid_key);
    }
    return {};
}

bool apply_call_config(const std::string& service, service_call_config& current,
                       resilience::policy& policy, resilience::load_balancer& balancer,
                       service_call_config next, std::uint64_t seed) {
    auto p = next.policy;
    p.target = service;
    policy.replace(std::move(p));
    bool reload = false;
    if (!same_balancer(current.balancer, next.balancer)) {
        balancer = resilience::load_balancer(next.balancer, seed);
        reload = true;
    }
    if (!(current.query == next.query)) {
        reload = true;
    }
    current = std::move(next);
    return reload;
}

// ------------------------------------------------------------------ the watch

struct policy_watch::impl : std::enable_shared_from_this<impl> {
    struct entry {
        std::uint64_t modify_index = 0;
    };

    impl(boost::asio::any_io_executor e, consul::client& c, const policy_reload_config& rc,
         observe::logger l, callbacks callbacks, mesh_stats& n, const consul::watch_config& w)
        : ex(std::move(e)),
          client(c),
          folder(rc.prefix + "config/policies/"),
          log(std::move(l)),
          cb(std::move(callbacks)),
          counters(n),
          wcfg(w) {}

    boost::asio::any_io_executor ex;
    consul::client& client;
    std::string folder;
    observe::logger log;
    callbacks cb;
    mesh_stats& counters;
    consul::watch_config wcfg;
    std::optional<consul::blocking_watch<std::vector<consul::kv_pair>>> watch;
    bool stopped = false;
    /// Every key seen in the last listing, with the ModifyIndex last processed.
    std::map<std::string, entry, std::less<>> keys;
    /// The valid override of each service (by service name).
    std::map<std::string, service_call_config, std::less<>> overrides;

    void reject(const std::string& key, const std::string& why) {
        ++counters.policy_reload_rejections;
        log.warn("mesh: policy key '" + key + "' rejected, the service keeps its policy: " + why);
    }

    void publish(const std::vector<consul::kv_pair>& listing) {
        std::map<std::string, const consul::kv_pair*, std::less<>> now;
        for (const auto& kv : listing) {
            if (kv.key.size() >= folder.size() && kv.key.compare(0, folder.size(), folder) == 0) {
                now.emplace(kv.key, &kv);
            }
        }
        // Deleted keys first: a service whose key moved is then set by its new key.
        for (auto it = keys.begin(); it != keys.end();) {
            if (now.count(it->first)) {
                ++it;
                continue;
            }
            const std::string name = it->first.substr(folder.size());
            it = keys.erase(it);
            if (overrides.erase(name) > 0) {
                ++counters.policy_reloads;
                std::string msg = "mesh: policy key '";
                msg.append(folder).append(name).append("' deleted; service '");
                msg.append(name).append("' is back to its static policy");
                log.info(msg);
                if (cb.changed) {
                    cb.changed(name);
                }
            }
        }
        for (const auto& [key, kv] : now) {
            auto& e = keys[key];
            if (e.modify_index == kv->modify_index && e.modify_index != 0) {
                continue;  // unchanged since last processed
            }
            e.modify_index = kv->modify_index;
            process(key, *kv);
            if (stopped) {
                return;  // a callback stopped the watch
            }
        }
    }

    void process(const std::string& key, const consul::kv_pair& kv) {
        const std::string name = key.substr(folder.size());
        if (name.empty()) {
            return;  // the folder's own key (as Consul's UI creates it): not a policy
        }
        if (name.find('/') != std::string::npos) {
            reject(key, "a policy key is " + folder + "<service>, with no '/' after the service");
            return;
        }
        if (!valid_service_name(name)) {
            reject(key, "'" + name + "' is not a valid service name");
            return;
        }
        if (kv.value.empty()) {
            reject(key, "the value is empty (delete the key to return to the static policy)");
            return;
        }
        if (kv.value.size() > max_policy_value_size) {
            reject(key, "the value has " + std::to_string(kv.value.size()) +
                            " bytes, more than the " + std::to_string(max_policy_value_size) +
                            " allowed");
            return;
        }
        error_code ec;
        diagnostics diag;
        auto base = cb.static_calls ? cb.static_calls(name) : service_call_config{};
        auto sc = service_call_config_from_json(kv.value, base, ec, diag);
        if (!ec) {
            ec = validate_calls(sc, diag);
        }
        if (ec) {
            reject(key, diag.client_message());
            return;
        }
        overrides.insert_or_assign(name, std::move(sc));
        ++counters.policy_reloads;
        log.info("mesh: policy of service '" + name + "' reloaded from '" + key +
                 "' (ModifyIndex " + std::to_string(kv.modify_index) + ")");
        if (cb.changed) {
            cb.changed(name);
        }
    }
};

policy_watch::policy_watch(boost::asio::any_io_executor ex, consul::client& client,
                           const policy_reload_config& cfg, observe::logger log, callbacks cb,
                           mesh_stats& counters, const consul::watch_config& wcfg)
    : impl_(std::make_shared<impl>(std::move(ex), client, cfg, std::move(log), std::move(cb),
                                   counters, wcfg)) {}

policy_watch::~policy_watch() {
    stop();
}

void policy_watch::start() {
    auto& m = *impl_;
    if (m.watch || m.stopped) {
        return;
    }
    auto fetch = consul::watch_read<std::vector<consul::kv_pair>>(
        consul::query_options{},
        [&c = m.client, folder = m.folder](const consul::query_options& q, auto handler) {
            c.async_kv_list(folder, q, std::move(handler));
        });
    consul::watch_handlers<std::vector<consul::kv_pair>> handlers;
    std::weak_ptr<impl> w = impl_;
    handlers.on_value = [w](const std::vector<consul::kv_pair>& listing, std::uint64_t) {
        if (auto self = w.lock(); self && !self->stopped) {
            self->publish(listing);
        }
    };
    handlers.on_error = [w](const error_code& ec) {
        if (auto self = w.lock()) {
            self->log.debug("mesh: reading the policies under '" + self->folder +
                            "' failed (retrying): " + ec.message());
        }
    };
    m.watch.emplace(m.ex, m.wcfg, std::move(fetch), std::move(handlers));
    m.watch->start();
}

void policy_watch::stop() noexcept {
    if (!impl_ || impl_->stopped) {
        return;
    }
    impl_->stopped = true;
    if (impl_->watch) {
        impl_->watch->stop();
    }
}

const std::string& policy_watch::folder() const noexcept {
    return impl_->folder;
}

const service_call_config* policy_watch::override_of(const std::string& service) const {
    auto it = impl_->overrides.find(service);
    return it == impl_->overrides.end() ? nullptr : &it->second;
}

}  // namespace lakemesh::mesh::detail
