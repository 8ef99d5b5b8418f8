// Consul's JSON shapes rebuilt from decoded values, for the round-trip checks of the fuzz
// targets: decode(body) -> to_json -> decode must give the same values. Written from Consul's
// API documentation (and dev_consul's answers), not from the decoders, so a decoder that drops
// or misreads a field shows up as a difference.
#pragma once

#include <lakemesh/consul/agent.hpp>
#include <lakemesh/consul/health.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace lakemesh::fuzz {

using json = nlohmann::json;

inline json service_weights_json(const consul::service_weights& w) {
    return {{"Passing", w.passing}, {"Warning", w.warning}};
}

/// An agent/services value or a health/service entry's "Service".
inline json service_json(const consul::agent_service& s) {
    return {{"ID", s.id},
            {"Service", s.service},
            {"Tags", s.tags},
            {"Meta", s.meta},
            {"Port", s.port},
            {"Address", s.address},
            {"Weights", service_weights_json(s.weights)},
            {"EnableTagOverride", s.enable_tag_override},
            {"Kind", s.kind},
            {"Datacenter", s.datacenter},
            {"Namespace", s.namespace_name},
            {"CreateIndex", s.create_index},
            {"ModifyIndex", s.modify_index}};
}

/// An agent/checks value or an element of a health check array.
inline json check_json(const consul::health_check& c) {
    return {{"Node", c.node},
            {"CheckID", c.check_id},
            {"Name", c.name},
            {"Status", std::string(consul::to_string(c.status))},
            {"Notes", c.notes},
            {"Output", c.output},
            {"ServiceID", c.service_id},
            {"ServiceName", c.service_name},
            {"ServiceTags", c.service_tags},
            {"Type", c.type},
            {"CreateIndex", c.create_index},
            {"ModifyIndex", c.modify_index}};
}

/// A health/service entry's "Node".
inline json node_json(const consul::node_info& n) {
    return {{"ID", n.id},
            {"Node", n.node},
            {"Address", n.address},
            {"Datacenter", n.datacenter},
            {"TaggedAddresses", n.tagged_addresses},
            {"Meta", n.meta},
            {"CreateIndex", n.create_index},
            {"ModifyIndex", n.modify_index}};
}

/// Whether a decoded integer is the number the body holds in obj[field]: absent or null
/// decodes as 0; a float only when it is exactly that integer. Catches a decoder that wraps
/// 2^64-1 to -1 or truncates 1.5 to 1 instead of reporting a wrong type.
inline bool number_agrees(const json& obj, const char* field, std::int64_t decoded) {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
        return decoded == 0;
    }
    if (it->is_number_unsigned()) {
        return decoded >= 0 && it->get<std::uint64_t>() == static_cast<std::uint64_t>(decoded);
    }
    if (it->is_number_integer()) {
        return it->get<std::int64_t>() == decoded;
    }
    if (it->is_number_float()) {
        return it->get<double>() == static_cast<double>(decoded);
    }
    return false;
}

}  // namespace lakemesh::fuzz
