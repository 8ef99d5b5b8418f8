// catalog_codec.hpp (GET /v1/catalog/services, service/:name, nodes, node/:node): every decoder
// runs on the same body. Errors are decode_errc with a message and leave the output empty;
// catalog/services holds exactly the body's names with their tags; ports are the body's
// numbers; whatever decodes survives being written back as Consul's JSON and decoded again
// (compared through that JSON, which names every field).
// fuzz-dict: consul_json agent
#include "consul/catalog_codec.hpp"
#include "consul_shapes.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

namespace {

using namespace lakemesh;
using json = nlohmann::json;

json parsed(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    LAKEMESH_FUZZ_CHECK(!j.is_discarded());
    return j;
}

json weights_json(const consul::catalog_weights& w) {
    return {{"Passing", w.passing}, {"Warning", w.warning}};
}

json node_json(const consul::catalog_node& n) {
    return {{"ID", n.id},
            {"Node", n.node},
            {"Address", n.address},
            {"Datacenter", n.datacenter},
            {"TaggedAddresses", n.tagged_addresses},
            {"Meta", n.meta},
            {"CreateIndex", n.create_index},
            {"ModifyIndex", n.modify_index}};
}

json instance_json(const consul::catalog_service& s) {
    return {{"ID", s.id},
            {"Node", s.node},
            {"Address", s.address},
            {"Datacenter", s.datacenter},
            {"TaggedAddresses", s.tagged_addresses},
            {"NodeMeta", s.node_meta},
            {"ServiceID", s.service_id},
            {"ServiceName", s.service_name},
            {"ServiceTags", s.service_tags},
            {"ServiceAddress", s.service_address},
            {"ServicePort", s.service_port},
            {"ServiceMeta", s.service_meta},
            {"ServiceWeights", weights_json(s.service_weights)},
            {"CreateIndex", s.create_index},
            {"ModifyIndex", s.modify_index}};
}

json node_services_json(const consul::catalog_node_services& ns) {
    auto services = json::object();
    for (const auto& [id, s] : ns.services) {
        services[id] = {{"ID", s.id},
                        {"Service", s.service},
                        {"Tags", s.tags},
                        {"Address", s.address},
                        {"Port", s.port},
                        {"Meta", s.meta},
                        {"Weights", weights_json(s.weights)},
                        {"CreateIndex", s.create_index},
                        {"ModifyIndex", s.modify_index}};
    }
    return {{"Node", node_json(ns.node)}, {"Services", services}};
}

template <class T>
json list_json(const std::vector<T>& list, json (*one)(const T&)) {
    auto out = json::array();
    for (const auto& e : list) {
        out.push_back(one(e));
    }
    return out;
}

void fuzz_services(const std::string& body) {
    std::map<std::string, std::vector<std::string>> services;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_catalog_services(body, services, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(services.empty());
        return;
    }
    // Every name of the body, with its own tags (null: none).
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.size() == services.size());
    for (const auto& [name, tags] : services) {
        LAKEMESH_FUZZ_CHECK(source.contains(name));
        const json& v = source.at(name);
        LAKEMESH_FUZZ_CHECK(v.is_null() ? tags.empty() : v == json(tags));
    }
    std::map<std::string, std::vector<std::string>> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(
        !consul::detail::decode_catalog_services(json(services).dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == services);
}

void fuzz_service(const std::string& body) {
    std::vector<consul::catalog_service> instances;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_catalog_service(body, instances, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(instances.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.is_null() ? instances.empty() : source.size() == instances.size());
    for (std::size_t i = 0; i < instances.size(); ++i) {
        const auto& s = instances[i];
        LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(source[i], "ServicePort", s.service_port));
        if (auto w = source[i].find("ServiceWeights"); w != source[i].end() && !w->is_null()) {
            LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(*w, "Passing", s.service_weights.passing));
            LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(*w, "Warning", s.service_weights.warning));
        }
    }
    const json rebuilt = list_json(instances, &instance_json);
    std::vector<consul::catalog_service> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_catalog_service(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(list_json(again, &instance_json) == rebuilt);
}

void fuzz_nodes(const std::string& body) {
    std::vector<consul::catalog_node> nodes;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_catalog_nodes(body, nodes, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(nodes.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.is_null() ? nodes.empty() : source.size() == nodes.size());
    const json rebuilt = list_json(nodes, &node_json);
    std::vector<consul::catalog_node> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_catalog_nodes(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(list_json(again, &node_json) == rebuilt);
}

void fuzz_node(const std::string& body) {
    std::optional<consul::catalog_node_services> node;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_catalog_node(body, node, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(!node);
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.is_null() == !node);
    if (!node) {
        return;
    }
    const json rebuilt = node_services_json(*node);
    std::optional<consul::catalog_node_services> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_catalog_node(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again && node_services_json(*again) == rebuilt);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body = lakemesh::fuzz::as_string(data, size);
    fuzz_services(body);
    fuzz_service(body);
    fuzz_nodes(body);
    fuzz_node(body);
    return 0;
}
