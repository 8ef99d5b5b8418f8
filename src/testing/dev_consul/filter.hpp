// Consul's ?filter language as Consul 1.10 evaluates it (hashicorp/go-bexpr v0.1): the same
// grammar and parse errors (a PEG parser that fails as pigeon's generated one does), the same
// validation of selectors, operators and values against the type each endpoint filters, and
// the same matching, over the JSON form of each result entry.
// https://developer.hashicorp.com/consul/api-docs/features/filtering
#pragma once

#include "store.hpp"

#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace lakemesh::testing::detail {

/// The Go type an endpoint filters: it decides which selectors exist and their operators.
enum class filter_schema {
    health_service,  // structs.CheckServiceNode (health/service)
    health_check,    // structs.HealthCheck (health/checks, state, node; agent/checks)
    service_node,    // structs.ServiceNode (catalog/service, catalog/services)
    node,            // structs.Node (catalog/nodes)
    node_service,    // structs.NodeService (catalog/node "Services")
    agent_service,   // api.AgentService (agent/services)
};

struct filter_node;
struct filter_type;

class filter_expression {
  public:
    /// Parses and validates `text` for `schema`; on failure returns the text of Consul's 500
    /// ("Failed to create boolean expression evaluator: ...").
    static std::variant<filter_expression, std::string> parse(std::string_view text,
                                                              filter_schema schema);
    /// True when `entry` matches.
    bool matches(const json& entry) const;

  private:
    std::shared_ptr<const filter_node> root_;
};

/// Consul's answer to a bad ?filter: 500. Where Consul's RPC made the filter (catalog, health
/// checks) the answer carries the meta of a query that never ran (index 1, no known leader);
/// where its HTTP handler did (health/service), none.
struct response;
response filter_error(std::string text, bool rpc_meta = true);

/// Applies the request's ?filter to a JSON array (or to the values of a JSON object) in place,
/// or returns Consul's error text (which Consul answers with status 500).
std::optional<std::string> apply_filter(const std::optional<std::string>& filter, json& entries,
                                        filter_schema schema);

}  // namespace lakemesh::testing::detail
