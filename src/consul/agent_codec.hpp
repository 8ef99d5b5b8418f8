// Encoders of agent write bodies and decoders of agent answers, shared by the client, the unit
// tests and the fuzz targets. Each decoder comes as a function of the body text (what a fuzz
// target feeds) and of the parsed JSON (what the client has after call_json).
#pragma once

#include <lakemesh/consul/agent.hpp>

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "go_duration.hpp"

namespace lakemesh::consul::detail {

// ------------------------------------------------------------------ encoding

/// The JSON body of PUT /v1/agent/service/register. Validates first: name required; IDs, names
/// and tags free of control characters; durations not negative; initial statuses not
/// maintenance; port in 0..65535.
error_code encode_service_registration(const service_registration& reg, std::string& body,
                                       diagnostics& diag);
/// The JSON body of PUT /v1/agent/check/register (name required), validated likewise.
error_code encode_check_definition(const check_definition& def, std::string& body,
                                   diagnostics& diag);
/// The JSON body of PUT /v1/agent/check/update/:id. `status` must not be maintenance.
error_code encode_check_update(check_status status, const std::string& output, std::string& body,
                               diagnostics& diag);

// ------------------------------------------------------------------ decoding

/// GET /v1/agent/self
error_code decode_agent_self(const std::string& body, agent_info& out, diagnostics& diag);
error_code decode_agent_self_json(const nlohmann::json& j, agent_info& out, diagnostics& diag);

/// GET /v1/agent/members
error_code decode_agent_members(const std::string& body, std::vector<agent_member>& out,
                                diagnostics& diag);
error_code decode_agent_members_json(const nlohmann::json& j, std::vector<agent_member>& out,
                                     diagnostics& diag);

/// GET /v1/agent/services: an object of services by ID.
error_code decode_agent_services(const std::string& body, std::map<std::string, agent_service>& out,
                                 diagnostics& diag);
error_code decode_agent_services_json(const nlohmann::json& j,
                                      std::map<std::string, agent_service>& out, diagnostics& diag);

/// GET /v1/agent/checks: an object of checks by ID.
error_code decode_agent_checks(const std::string& body, std::map<std::string, agent_check>& out,
                               diagnostics& diag);
error_code decode_agent_checks_json(const nlohmann::json& j,
                                    std::map<std::string, agent_check>& out, diagnostics& diag);

/// One service object (agent/services values, health/service "Service"); `where` names it in
/// diagnostics, e.g. "entries[0].Service".
error_code decode_service_object(const nlohmann::json& j, agent_service& out, diagnostics& diag,
                                 const std::string& where);
/// One check object (agent/checks values, health check arrays).
error_code decode_check_object(const nlohmann::json& j, health_check& out, diagnostics& diag,
                               const std::string& where);

}  // namespace lakemesh::consul::detail
