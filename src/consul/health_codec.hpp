// Decoders of health answers, shared by the client, the unit tests and the fuzz targets.
#pragma once

#include <lakemesh/consul/health.hpp>

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::consul::detail {

/// GET /v1/health/service/:service: an array of {Node, Service, Checks}. Reads the common
/// shape without a JSON tree and falls back to decode_service_entries_tree for anything else:
/// same results and errors as the tree decoder.
error_code decode_service_entries(const std::string& body, std::vector<service_entry>& out,
                                  diagnostics& diag);
/// The tree-free reader alone: true with exactly what the tree decoder gives, or false when the
/// body is not of the common shape it reads (the output is then unspecified).
bool read_service_entries_fast(std::string_view body, std::vector<service_entry>& out);
/// The same through a full JSON tree (the reference the fast reader is tested against).
error_code decode_service_entries_tree(const std::string& body, std::vector<service_entry>& out,
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
