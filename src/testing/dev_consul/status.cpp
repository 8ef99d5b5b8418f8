// Status endpoints: https://developer.hashicorp.com/consul/api-docs/status
#include "router.hpp"

namespace lakemesh::testing::detail {
namespace {

/// The dev cluster has one server: the first agent still running; Consul reports its RPC
/// address (port 8300).
std::string leader_address(const std::vector<agent_info>& members) {
    for (const auto& m : members) {
        if (m.running) {
            return m.address + ":8300";
        }
    }
    return "";
}

}  // namespace

void add_status_routes(router& r) {
    r.add(http::verb::get, "status/leader",
          [](route_context& c) { return json_response(leader_address(c.members)); });
    r.add(http::verb::get, "status/peers", [](route_context& c) {
        auto leader = leader_address(c.members);
        return json_response(leader.empty() ? json::array() : json::array({leader}));
    });
}

}  // namespace lakemesh::testing::detail
