#include "catalog_json.hpp"

namespace lakemesh::testing::detail {
namespace {

json string_map(const std::map<std::string, std::string>& m) {
    json j = json::object();
    for (const auto& [k, v] : m) {
        j[k] = v;
    }
    return j;
}

json weights_json(const service_weights& w) {
    return json{{"Passing", w.passing}, {"Warning", w.warning}};
}

}  // namespace

std::string valid_utf8(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    std::size_t i = 0;
    while (i < text.size()) {
        const auto b0 = static_cast<unsigned char>(text[i]);
        std::size_t len = 0;
        std::uint32_t min = 0;
        if (b0 < 0x80) {
            out += text[i++];
            continue;
        }
        if ((b0 & 0xE0) == 0xC0) {
            len = 2;
            min = 0x80;
        } else if ((b0 & 0xF0) == 0xE0) {
            len = 3;
            min = 0x800;
        } else if ((b0 & 0xF8) == 0xF0) {
            len = 4;
            min = 0x10000;
        }
        bool ok = len != 0 && i + len <= text.size();
        std::uint32_t cp = len == 0 ? 0 : (b0 & (0x7F >> len));
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(text[i + k]);
            ok = (b & 0xC0) == 0x80;
            cp = (cp << 6) | (b & 0x3F);
        }
        ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        if (ok) {
            out.append(text.substr(i, len));
            i += len;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

std::string normalised_duration(const std::string& text) {
    if (text.empty()) {
        return "";
    }
    auto d = parse_go_duration(text);
    return d ? format_go_duration(*d) : text;
}

json node_json(const node_entry& n) {
    return json{{"ID", n.id},
                {"Node", n.name},
                {"Address", n.address},
                {"Datacenter", n.datacenter},
                {"TaggedAddresses", string_map(n.tagged_addresses)},
                {"Meta", string_map(n.meta)},
                {"CreateIndex", n.create_index},
                {"ModifyIndex", n.modify_index}};
}

json check_json(const check_entry& c) {
    json header = json::object();
    for (const auto& [k, v] : c.header) {
        header[k] = v;
    }
    json definition = json::object();
    if (c.type == "http") {
        definition = json{{"HTTP", c.http},
                          {"Method", c.method},
                          {"Header", header},
                          {"Body", c.body},
                          {"TLSSkipVerify", c.tls_skip_verify}};
    } else if (c.type == "tcp") {
        definition = json{{"TCP", c.tcp}};
    } else if (c.type == "grpc") {
        definition = json{{"GRPC", c.grpc}, {"GRPCUseTLS", c.grpc_use_tls}};
    }
    if (!c.interval.empty()) {
        definition["Interval"] = normalised_duration(c.interval);
    }
    if (!c.timeout.empty()) {
        definition["Timeout"] = normalised_duration(c.timeout);
    }
    if (!c.deregister_critical_service_after.empty()) {
        definition["DeregisterCriticalServiceAfter"] =
            normalised_duration(c.deregister_critical_service_after);
    }
    return json{{"Node", c.node},
                {"CheckID", c.id},
                {"Name", c.name},
                {"Status", c.status},
                {"Notes", valid_utf8(c.notes)},
                {"Output", valid_utf8(c.output)},
                {"ServiceID", c.service_id},
                {"ServiceName", c.service_name},
                {"ServiceTags", c.service_tags},
                {"Type", c.type},
                {"Interval", normalised_duration(c.interval)},
                {"Timeout", normalised_duration(c.timeout)},
                {"ExposedPort", 0},
                {"Definition", definition},
                {"CreateIndex", c.create_index},
                {"ModifyIndex", c.modify_index}};
}

json node_service_json(const service_entry& svc) {
    return json{{"ID", svc.id},
                {"Service", svc.name},
                {"Tags", svc.tags},
                {"Address", svc.address},
                {"Meta", string_map(svc.meta)},
                {"Port", svc.port},
                {"Weights", weights_json(svc.weights)},
                {"EnableTagOverride", svc.enable_tag_override},
                {"CreateIndex", svc.create_index},
                {"ModifyIndex", svc.modify_index}};
}

json agent_service_json(const service_entry& svc, const std::string& datacenter) {
    json j{{"ID", svc.id},
           {"Service", svc.name},
           {"Tags", svc.tags},
           {"Meta", string_map(svc.meta)},
           {"Port", svc.port},
           {"Address", svc.address},
           {"Weights", weights_json(svc.weights)},
           {"EnableTagOverride", svc.enable_tag_override},
           {"Datacenter", datacenter}};
    if (!svc.kind.empty()) {
        j["Kind"] = svc.kind;
    }
    return j;
}

json service_node_json(const node_entry& n, const service_entry& svc) {
    return json{{"ID", n.id},
                {"Node", n.name},
                {"Address", n.address},
                {"Datacenter", n.datacenter},
                {"TaggedAddresses", string_map(n.tagged_addresses)},
                {"NodeMeta", string_map(n.meta)},
                {"ServiceKind", svc.kind},
                {"ServiceID", svc.id},
                {"ServiceName", svc.name},
                {"ServiceTags", svc.tags},
                {"ServiceAddress", svc.address},
                {"ServiceWeights", weights_json(svc.weights)},
                {"ServiceMeta", string_map(svc.meta)},
                {"ServicePort", svc.port},
                {"ServiceEnableTagOverride", svc.enable_tag_override},
                {"CreateIndex", svc.create_index},
                {"ModifyIndex", svc.modify_index}};
}

}  // namespace lakemesh::testing::detail
