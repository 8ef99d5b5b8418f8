// Health endpoints: https://developer.hashicorp.com/consul/api-docs/health
#include "catalog_query.hpp"
#include "filter.hpp"

namespace lakemesh::testing::detail {
namespace {

/// A check listing, at the checks table's index (Consul's catalogChecksMaxIndex).
response filtered(const store& s, const request& req, json out, filter_schema schema) {
    if (auto err = apply_filter(req.param("filter"), out, schema)) {
        return filter_error(*err);
    }
    return json_response(std::move(out), s.checks_index);
}

/// ?passing as Consul 1.10 reads it: no value means true, else strconv.ParseBool.
std::optional<bool> passing_param(const request& req, bool& bad) {
    auto v = req.param("passing");
    if (!v) {
        return false;
    }
    if (v->empty() || *v == "1" || *v == "t" || *v == "T" || *v == "true" || *v == "TRUE" ||
        *v == "True") {
        return true;
    }
    if (*v == "0" || *v == "f" || *v == "F" || *v == "false" || *v == "FALSE" || *v == "False") {
        return false;
    }
    bad = true;
    return std::nullopt;
}

response health_service(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing service name");
        r.no_index = true;
        return r;
    }
    bool bad = false;
    const auto passing = passing_param(c.req, bad);
    json out = json::array();
    const auto instances = instances_of(c.s, c.rest);
    const auto index = service_read_index(c.s, c.rest, !instances.empty(), true);
    for (const service_entry* svc : instances) {
        auto n = c.s.nodes.find(svc->node);
        if (n == c.s.nodes.end() || !has_all_tags(*svc, c.req)) {
            continue;
        }
        // The node's own checks, then this instance's, each in check ID order.
        json checks = json::array();
        bool all_passing = true;
        const auto node_checks = node_checks_in_order(c.s, svc->node);
        for (bool node_level : {true, false}) {
            for (const check_entry* chk : node_checks) {
                if (node_level ? !chk->service_id.empty() : chk->service_id != svc->id) {
                    continue;
                }
                all_passing = all_passing && chk->status == "passing";
                checks.push_back(check_json(*chk));
            }
        }
        // ?passing keeps only instances whose every check passes (warning is not passing).
        if (passing.value_or(false) && !all_passing) {
            continue;
        }
        out.push_back(json{{"Node", node_json(n->second)},
                           {"Service", node_service_json(*svc)},
                           {"Checks", checks}});
    }
    if (auto err = apply_filter(c.req.param("filter"), out, filter_schema::health_service)) {
        return filter_error(*err, false);
    }
    if (bad) {
        // Consul reads ?passing after the query, so the answer still carries its index.
        response r = error_response(400, "Invalid value for ?passing");
        r.index = index;
        return r;
    }
    return json_response(std::move(out), index);
}

json checks_where(const store& s, const std::function<bool(const check_entry&)>& keep) {
    json out = json::array();
    for (const check_entry* chk : checks_in_order(s)) {
        if (keep(*chk)) {
            out.push_back(check_json(*chk));
        }
    }
    return out;
}

response health_checks(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing service name");
        r.no_index = true;
        return r;
    }
    const auto& name = c.rest;
    return filtered(c.s, c.req,
                    checks_where(c.s,
                                 [&](const check_entry& chk) {
                                     return !chk.service_id.empty() &&
                                            equal_fold(chk.service_name, name);
                                 }),
                    filter_schema::health_check);
}

response health_state(route_context& c) {
    const auto& state = c.rest;
    if (state.empty()) {
        response r = error_response(400, "Missing check state");
        r.no_index = true;
        return r;
    }
    // Consul 1.10 does not check the state: an unknown one matches no check.
    return filtered(
        c.s, c.req,
        checks_where(c.s,
                     [&](const check_entry& chk) { return state == "any" || chk.status == state; }),
        filter_schema::health_check);
}

response health_node(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing node name");
        r.no_index = true;
        return r;
    }
    const auto& node = c.rest;
    return filtered(
        c.s, c.req,
        checks_where(c.s, [&](const check_entry& chk) { return equal_fold(chk.node, node); }),
        filter_schema::health_check);
}

}  // namespace

void add_health_routes(router& r) {
    using v = http::verb;
    r.add(v::get, "health/node/", health_node, table_catalog).consistency_header = true;
    r.add(v::get, "health/checks/", health_checks, table_catalog).consistency_header = true;
    r.add(v::get, "health/state/", health_state, table_catalog).consistency_header = true;
    // Every watch of a service re-reads this answer after each catalog write: one encoding per
    // (query, index) is shared by all of them.
    r.add(v::get, "health/service/", health_service, table_catalog, true).consistency_header = true;
}

}  // namespace lakemesh::testing::detail
