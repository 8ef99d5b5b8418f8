// Decoders of health answers, shared by the client, the unit tests and the fuzz targets.
#pragma once

#include <lakemesh/consul/health.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace lakemesh::consul::detail {

/// GET /v1/health/service/:service: an array of {Node, Service, Checks}.
error_code decode_service_entries(const std::string& body, std::vector<service_entry>& out,
                                  diagnostics& diag);
error_code decode_service_entries_json(const nlohmann::json& j, std::vector<service_entry>& out,
                                       diagnostics& diag);

/// GET /v1/health/checks/:service, /v1/health/state/:state, /v1/health/node/:node: an array of
/// checks.
error_code decode_health_checks(const std::string& body, std::vector<health_check>& out,
                                diagnostics& diag);
error_code decode_health_checks_json(const nlohmann::json& j, std::vector<health_check>& out,
                                     diagnostics& diag);

}  // namespace lakemesh::consul::detail
