// JSON forms of nodes, services and checks, shared by the agent, catalog and health endpoints
// (each endpoint family spells the same data differently in Consul).
#pragma once

#include "store.hpp"

namespace lakemesh::testing::detail {

/// catalog/nodes, health/service "Node".
json node_json(const node_entry& n);
/// structs.HealthCheck as agent/checks and health/* answer it.
json check_json(const check_entry& c);
/// structs.NodeService as health/service "Service" and catalog/node "Services" answer it.
json node_service_json(const service_entry& svc);
/// api.AgentService as agent/services answers it.
json agent_service_json(const service_entry& svc, const std::string& datacenter);
/// structs.ServiceNode as catalog/service answers it.
json service_node_json(const node_entry& n, const service_entry& svc);

/// `text` with every invalid UTF-8 sequence replaced by U+FFFD: check output and notes come
/// from query strings and probed servers, and JSON can only carry valid UTF-8.
std::string valid_utf8(std::string_view text);

/// Interval/Timeout text as Consul echoes it ("10s", "1m0s"), or "" when unset.
std::string normalised_duration(const std::string& text);

}  // namespace lakemesh::testing::detail
