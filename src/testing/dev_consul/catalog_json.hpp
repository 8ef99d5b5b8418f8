// JSON forms of nodes, services and checks, shared by the agent, catalog and health endpoints
// (each endpoint family spells the same data differently in Consul), and the orders Consul's
// state store lists them in.
#pragma once

#include "router.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::testing::detail {

/// structs.Node: catalog/nodes, health/service "Node", catalog/node "Node".
json node_json(const node_entry& n);
/// structs.HealthCheck as the catalog holds it (health/*).
json check_json(const check_entry& c);
/// structs.HealthCheck as the agent holds it (agent/checks): its own output, no raft indexes.
json agent_check_json(const check_entry& c);
/// structs.NodeService: health/service "Service" and catalog/node "Services".
json node_service_json(const service_entry& svc);
/// api.AgentService: agent/services, and agent/service/:id (with_hash adds ContentHash).
json agent_service_json(const service_entry& svc, const std::string& datacenter, bool with_hash);
/// The hash agent/service/:id reports (ContentHash and X-Consul-Contenthash).
std::string service_content_hash(const service_entry& svc);
/// structs.ServiceNode: catalog/service.
json service_node_json(const node_entry& n, const service_entry& svc);
/// agent/self "DebugConfig" (debug_config.cpp).
json debug_config_json(const agent_info& a);

/// `text` with every invalid UTF-8 sequence replaced by U+FFFD: check output and notes come
/// from query strings and probed servers, and JSON can only carry valid UTF-8.
std::string valid_utf8(std::string_view text);

/// go-memdb's order for Consul's case-insensitive indexes (node names, service and check IDs):
/// by the lower-cased text.
bool lower_less(std::string_view a, std::string_view b);

/// Every check of the cluster in Consul's checks "id" index order (node, then check ID).
std::vector<const check_entry*> checks_in_order(const store& s);
/// The checks of one node, in check ID order.
std::vector<const check_entry*> node_checks_in_order(const store& s, const std::string& node);
/// Every node in Consul's order.
std::vector<const node_entry*> nodes_in_order(const store& s);

}  // namespace lakemesh::testing::detail
