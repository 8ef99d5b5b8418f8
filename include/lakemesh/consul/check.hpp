// Health checks as Consul reports them, shared by the agent and health endpoints and by the parts
// built on them (health scheduler, service cache).
// https://developer.hashicorp.com/consul/docs/services/usage/checks
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::consul {

/// The status of a check. Consul stores only passing, warning and critical; `maintenance` is
/// what aggregate_status() reports for an instance in maintenance mode (its maintenance check is
/// critical) and what health/state-style filters call HealthMaint.
enum class check_status { passing, warning, critical, maintenance };

/// "passing", "warning", "critical", "maintenance".
std::string_view to_string(check_status s) noexcept;
/// The inverse of to_string; nullopt for any other text (case-sensitive, as Consul is).
std::optional<check_status> check_status_from_string(std::string_view text) noexcept;

/// A service instance's load-balancing weights (DNS SRV weights). Consul's defaults: 1 and 1.
struct service_weights {
    /// Weight while every check passes. Must be >= 1 when registering.
    int passing = 1;
    /// Weight while some check warns (and none is critical). 0 takes the instance out.
    int warning = 1;

    friend bool operator==(const service_weights&, const service_weights&) = default;
};

/// One check as GET /v1/agent/checks and the /v1/health endpoints return it.
struct health_check {
    /// Node the check runs on.
    std::string node;
    std::string check_id;
    std::string name;
    check_status status = check_status::critical;
    std::string notes;
    /// Output of the last run (or the note/output of the last TTL update).
    std::string output;
    /// Empty for node-level checks.
    std::string service_id;
    std::string service_name;
    std::vector<std::string> service_tags;
    /// "ttl", "http", "tcp", "grpc", ... ; empty for serfHealth and maintenance checks.
    std::string type;
    /// Raft indexes; 0 where the endpoint does not report them (older agents' agent/checks).
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;

    friend bool operator==(const health_check&, const health_check&) = default;
};

/// The check ID Consul uses for node maintenance mode.
inline constexpr std::string_view node_maintenance_check_id = "_node_maintenance";
/// The prefix of the check ID Consul uses for a service's maintenance mode.
inline constexpr std::string_view service_maintenance_check_prefix = "_service_maintenance:";

/// One status for a set of checks, as Consul's Go API computes it: maintenance when a node or
/// service maintenance check is present, else the worst of critical > warning > passing;
/// passing for an empty set.
check_status aggregate_status(const std::vector<health_check>& checks) noexcept;

}  // namespace lakemesh::consul
