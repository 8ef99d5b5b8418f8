#include <lakemesh/consul/check.hpp>
#include <lakemesh/consul/health.hpp>

namespace lakemesh::consul {

std::string_view to_string(check_status s) noexcept {
    switch (s) {
        case check_status::passing:
            return "passing";
        case check_status::warning:
            return "warning";
        case check_status::critical:
            return "critical";
        case check_status::maintenance:
            return "maintenance";
    }
    return "critical";
}

std::optional<check_status> check_status_from_string(std::string_view text) noexcept {
    for (auto s : {check_status::passing, check_status::warning, check_status::critical,
                   check_status::maintenance}) {
        if (to_string(s) == text) {
            return s;
        }
    }
    return std::nullopt;
}

check_status aggregate_status(const std::vector<health_check>& checks) noexcept {
    bool warning = false;
    bool critical = false;
    for (const auto& c : checks) {
        if (c.check_id == node_maintenance_check_id ||
            c.check_id.starts_with(service_maintenance_check_prefix) ||
            c.status == check_status::maintenance) {
            return check_status::maintenance;
        }
        warning = warning || c.status == check_status::warning;
        critical = critical || c.status == check_status::critical;
    }
    return critical ? check_status::critical
                    : (warning ? check_status::warning : check_status::passing);
}

std::string_view to_string(health_state s) noexcept {
    switch (s) {
        case health_state::any:
            return "any";
        case health_state::passing:
            return "passing";
        case health_state::warning:
            return "warning";
        case health_state::critical:
            return "critical";
    }
    return "any";
}

}  // namespace lakemesh::consul
