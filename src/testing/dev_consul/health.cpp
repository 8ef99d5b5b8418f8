// Health endpoints: https://developer.hashicorp.com/consul/api-docs/health
#include "catalog_json.hpp"
#include "catalog_query.hpp"
#include "filter.hpp"

namespace lakemesh::testing::detail {
namespace {

json checks_array(const store& s, const std::function<bool(const check_entry&)>& keep) {
    json out = json::array();
    for (const auto& [node, by_id] : s.checks) {
        for (const auto& [id, chk] : by_id) {
            if (keep(chk)) {
                out.push_back(check_json(chk));
            }
        }
    }
    return out;
}

response filtered(const request& req, json out) {
    if (auto err = apply_filter(req.param("filter"), out)) {
        return error_response(400, *err);
    }
    return json_response(out);
}

response health_service(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing service name");
    }
    bool passing = false;
    if (auto v = c.req.param("passing")) {
        if (v->empty() || *v == "1" || *v == "t" || *v == "T" || *v == "true" || *v == "TRUE" ||
            *v == "True") {
            passing = true;
        } else if (!(*v == "0" || *v == "f" || *v == "F" || *v == "false" || *v == "FALSE" ||
                     *v == "False")) {
            return error_response(400, "Invalid value for ?passing");
        }
    }
    json out = json::array();
    for (const service_entry* svc : instances_of(c.s, c.rest)) {
        auto n = c.s.nodes.find(svc->node);
        if (n == c.s.nodes.end() || !has_all_tags(*svc, c.req)) {
            continue;
        }
        json checks = json::array();
        bool all_passing = true;
        if (auto by_id = c.s.checks.find(svc->node); by_id != c.s.checks.end()) {
            // Node checks (serfHealth, node maintenance) apply to every service on the node.
            for (int pass = 0; pass < 2; ++pass) {
                for (const auto& [id, chk] : by_id->second) {
                    bool node_level = chk.service_id.empty();
                    if ((pass == 0) != node_level || (!node_level && chk.service_id != svc->id)) {
                        continue;
                    }
                    all_passing = all_passing && chk.status == "passing";
                    checks.push_back(check_json(chk));
                }
            }
        }
        // ?passing keeps only instances whose every check passes (warning is not passing).
        if (passing && !all_passing) {
            continue;
        }
        out.push_back(json{{"Node", node_json(n->second)},
                           {"Service", node_service_json(*svc)},
                           {"Checks", checks}});
    }
    return filtered(c.req, std::move(out));
}

response health_checks(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing service name");
    }
    const auto& name = c.rest;
    return filtered(c.req, checks_array(c.s, [&](const check_entry& chk) {
                        return !chk.service_id.empty() && chk.service_name == name;
                    }));
}

response health_state(route_context& c) {
    const auto& state = c.rest;
    if (state.empty()) {
        return error_response(400, "Missing check state");
    }
    if (state != "any" && state != "passing" && state != "warning" && state != "critical") {
        return error_response(400, "Invalid check state: \"" + state + "\"");
    }
    return filtered(c.req, checks_array(c.s, [&](const check_entry& chk) {
                        return state == "any" || chk.status == state;
                    }));
}

response health_node(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing node name");
    }
    const auto& node = c.rest;
    return filtered(c.req,
                    checks_array(c.s, [&](const check_entry& chk) { return chk.node == node; }));
}

}  // namespace

void add_health_routes(router& r) {
    using v = http::verb;
    // Every watch of a service re-reads this answer after each catalog write: one encoding per
    // (query, index) is shared by all of them.
    r.add(v::get, "health/service/", health_service, table_catalog, true);
    r.add(v::get, "health/checks/", health_checks, table_catalog);
    r.add(v::get, "health/state/", health_state, table_catalog);
    r.add(v::get, "health/node/", health_node, table_catalog);
}

}  // namespace lakemesh::testing::detail
