// Catalog endpoints: https://developer.hashicorp.com/consul/api-docs/catalog
#include "catalog_query.hpp"
#include "filter.hpp"

namespace lakemesh::testing::detail {
namespace {

response catalog_services(route_context& c) {
    json entries = json::array();
    for (const auto* n : nodes_in_order(c.s)) {
        auto by_id = c.s.services.find(n->name);
        if (by_id == c.s.services.end()) {
            continue;
        }
        for (const auto& [id, svc] : by_id->second) {
            entries.push_back(service_node_json(*n, svc));
        }
    }
    // Consul 1.10 does not filter this endpoint: ?filter is ignored.
    // Consul lists each service's distinct tags (in no set order; sorted here).
    std::map<std::string, std::set<std::string>> tags;
    for (const auto& e : entries) {
        auto& set = tags[e["ServiceName"].get<std::string>()];
        for (const auto& t : e["ServiceTags"]) {
            set.insert(t.get<std::string>());
        }
    }
    json out = json::object();
    for (const auto& [name, set] : tags) {
        out[name] = json(std::vector<std::string>(set.begin(), set.end()));
    }
    return json_response(out, std::max(c.s.nodes_index, c.s.services_index));
}

response catalog_service(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing service name");
        r.no_index = true;
        return r;
    }
    json out = json::array();
    const auto instances = instances_of(c.s, c.rest);
    for (const service_entry* svc : instances) {
        auto n = c.s.nodes.find(svc->node);
        if (n == c.s.nodes.end() || !has_all_tags(*svc, c.req)) {
            continue;
        }
        out.push_back(service_node_json(n->second, *svc));
    }
    if (auto err = apply_filter(c.req.param("filter"), out, filter_schema::service_node)) {
        return filter_error(*err);
    }
    return json_response(out, service_read_index(c.s, c.rest, !instances.empty(), false));
}

response catalog_nodes(route_context& c) {
    json out = json::array();
    for (const auto* n : nodes_in_order(c.s)) {
        out.push_back(node_json(*n));
    }
    if (auto err = apply_filter(c.req.param("filter"), out, filter_schema::node)) {
        return filter_error(*err);
    }
    return json_response(out, c.s.nodes_index);
}

response catalog_node(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing node name");
        r.no_index = true;
        return r;
    }
    const auto index = std::max(c.s.nodes_index, c.s.services_index);
    const node_entry* n = find_node(c.s, c.rest);
    if (n == nullptr) {
        // Consul answers 200 with null for an unknown node, at index 0 (sent as 1).
        return json_response(nullptr, 1);
    }
    json services = json::object();
    if (auto by_id = c.s.services.find(n->name); by_id != c.s.services.end()) {
        for (const auto& [id, svc] : by_id->second) {
            services[id] = node_service_json(svc);
        }
    }
    if (auto err = apply_filter(c.req.param("filter"), services, filter_schema::node_service)) {
        return filter_error(*err);
    }
    return json_response(json{{"Node", node_json(*n)}, {"Services", services}}, index);
}

response catalog_datacenters(route_context& c) {
    std::set<std::string> dcs{c.agent.datacenter};
    for (const auto& m : c.members) {
        dcs.insert(m.datacenter);
    }
    return json_response(json(std::vector<std::string>(dcs.begin(), dcs.end())));
}

}  // namespace

void add_catalog_routes(router& r) {
    using v = http::verb;
    r.add(v::get, "catalog/datacenters", catalog_datacenters);
    r.add(v::get, "catalog/nodes", catalog_nodes, table_catalog).consistency_header = true;
    r.add(v::get, "catalog/services", catalog_services, table_catalog).consistency_header = true;
    r.add(v::get, "catalog/service/", catalog_service, table_catalog).consistency_header = true;
    r.add(v::get, "catalog/node/", catalog_node, table_catalog).consistency_header = true;
}

}  // namespace lakemesh::testing::detail
