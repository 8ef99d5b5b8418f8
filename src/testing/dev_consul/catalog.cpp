// Catalog endpoints: https://developer.hashicorp.com/consul/api-docs/catalog
#include "catalog_json.hpp"
#include "catalog_query.hpp"
#include "filter.hpp"

namespace lakemesh::testing::detail {
namespace {

response catalog_services(route_context& c) {
    json entries = json::array();
    for (const auto& [node, by_id] : c.s.services) {
        auto n = c.s.nodes.find(node);
        if (n == c.s.nodes.end()) {
            continue;
        }
        for (const auto& [id, svc] : by_id) {
            entries.push_back(service_node_json(n->second, svc));
        }
    }
    if (auto err = apply_filter(c.req.param("filter"), entries)) {
        return error_response(400, *err);
    }
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
    return json_response(out);
}

response catalog_service(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing service name");
    }
    json out = json::array();
    for (const service_entry* svc : instances_of(c.s, c.rest)) {
        auto n = c.s.nodes.find(svc->node);
        if (n == c.s.nodes.end() || !has_all_tags(*svc, c.req)) {
            continue;
        }
        out.push_back(service_node_json(n->second, *svc));
    }
    if (auto err = apply_filter(c.req.param("filter"), out)) {
        return error_response(400, *err);
    }
    return json_response(out);
}

response catalog_nodes(route_context& c) {
    json out = json::array();
    for (const auto& [name, n] : c.s.nodes) {
        out.push_back(node_json(n));
    }
    if (auto err = apply_filter(c.req.param("filter"), out)) {
        return error_response(400, *err);
    }
    return json_response(out);
}

response catalog_node(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing node name");
    }
    auto n = c.s.nodes.find(c.rest);
    if (n == c.s.nodes.end()) {
        return json_response(nullptr);  // Consul answers 200 with null for an unknown node
    }
    json services = json::object();
    if (auto by_id = c.s.services.find(c.rest); by_id != c.s.services.end()) {
        for (const auto& [id, svc] : by_id->second) {
            services[id] = node_service_json(svc);
        }
    }
    if (auto err = apply_filter(c.req.param("filter"), services)) {
        return error_response(400, *err);
    }
    return json_response(json{{"Node", node_json(n->second)}, {"Services", services}});
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
    r.add(v::get, "catalog/services", catalog_services, table_catalog);
    r.add(v::get, "catalog/service/", catalog_service, table_catalog);
    r.add(v::get, "catalog/nodes", catalog_nodes, table_catalog);
    r.add(v::get, "catalog/node/", catalog_node, table_catalog);
    r.add(v::get, "catalog/datacenters", catalog_datacenters);
}

}  // namespace lakemesh::testing::detail
