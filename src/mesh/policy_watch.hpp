// Runtime policy reload (mesh_config::policy_reload): the parser of one service's call settings
// (the configuration file's "services" entries and the KV values share it), their consistency
// check, and the watch of `<prefix>config/policies/` that turns KV changes into per-service
// overrides. Internal: the mesh applies the overrides (see mesh_integrator.cpp).
#pragma once

#include <lakemesh/consul/client.hpp>
#include <lakemesh/consul/watch.hpp>
#include <lakemesh/error.hpp>
#include <lakemesh/mesh_integrator.hpp>
#include <lakemesh/observe/log.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::mesh::detail {

/// Largest KV value accepted as a policy.
inline constexpr std::size_t max_policy_value_size = 64u * 1024u;

/// Reads one service's call settings from `text`, a JSON object shaped as an entry of the
/// configuration file's "services" map ({"timeout": "2s", "retry": {"max_attempts": 2}, ...}).
/// Starts from `base`: fields absent from `text` keep base's values, nested objects included
/// (e.g. {"retry": {"max_attempts": 1}} keeps base's backoff). Errors (ec set, diag's client
/// message names the field, e.g. "retry.max_attempts: 0 is out of range [1, 100]"):
/// validation_errc::invalid_configuration for bad JSON (with line and column), a value that is
/// not an object, an unknown field or a wrong type; invalid_argument / invalid_duration for a
/// value out of range. The result is then unspecified. Does not run validate_calls().
service_call_config service_call_config_from_json(std::string_view text,
                                                  const service_call_config& base, error_code& ec,
                                                  diagnostics& diag);

/// Consistency of call settings beyond the ranges the parser checks: a non-zero backoff cap,
/// breaker open-duration cap or maximum ejection time must not be below its base value.
/// Errors: validation_errc::invalid_argument with the field in diag.
error_code validate_calls(const service_call_config& sc, diagnostics& diag);

/// The prefix must be a valid KV prefix: ends in '/', does not start with one, no empty segment
/// or control characters. Errors: validation_errc::invalid_key with the field in diag.
error_code validate(const policy_reload_config& cfg, diagnostics& diag);

/// Applies `next` to a service's running settings: the policy is replaced (calls in flight keep
/// theirs), the hedge and query settings are taken, and when the balancer settings differ the
/// balancer is recreated with `seed` (empty: its endpoints come with the next refresh).
/// Returns true when the caller must reload the endpoints (new balancer or new query).
bool apply_call_config(const std::string& service, service_call_config& current,
                       resilience::policy& policy, resilience::load_balancer& balancer,
                       service_call_config next, std::uint64_t seed);

/// Watches `<prefix>config/policies/` (one recursive blocking listing, index-based, backing off
/// on errors) and keeps the valid override of each service. Rejections are logged and counted.
/// Thread safety: on the executor only. stop() (or the destructor) is final; nothing is called
/// back after it.
class policy_watch {
  public:
    struct callbacks {
        /// The static settings of a service (mesh_config::services entry or default_calls).
        std::function<service_call_config(const std::string& service)> static_calls;
        /// The override of `service` changed (set, replaced or removed).
        std::function<void(const std::string& service)> changed;
    };

    /// `counters` receives policy_reloads / policy_reload_rejections; it must outlive the watch.
    policy_watch(boost::asio::any_io_executor ex, consul::client& client,
                 const policy_reload_config& cfg, observe::logger log, callbacks cb,
                 mesh_stats& counters, const consul::watch_config& wcfg = {});
    ~policy_watch();
    policy_watch(const policy_watch&) = delete;
    policy_watch& operator=(const policy_watch&) = delete;

    void start();
    void stop() noexcept;

    /// The KV folder watched: `<prefix>config/policies/`.
    const std::string& folder() const noexcept;
    /// The valid override of `service`, null when none.
    const service_call_config* override_of(const std::string& service) const;

  private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace lakemesh::mesh::detail
