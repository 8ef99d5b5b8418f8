#include "catalog_json.hpp"

#include <algorithm>
#include <cstdio>

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

json service_addresses(const service_entry& svc) {
    json j = json::object();
    for (const auto& [name, address] : svc.tagged_addresses) {
        j[name] = json{{"Address", address.first}, {"Port", address.second}};
    }
    return j;
}

/// structs.ConnectProxyConfig of a typical service: every field empty but these.
json empty_proxy() {
    return json{{"Mode", ""}, {"MeshGateway", json::object()}, {"Expose", json::object()}};
}

json check_common(const check_entry& c, const std::string& output) {
    return json{{"Node", c.node},
                {"CheckID", c.id},
                {"Name", c.name},
                {"Status", c.status},
                {"Notes", valid_utf8(c.notes)},
                {"Output", valid_utf8(output)},
                {"ServiceID", c.service_id},
                {"ServiceName", c.service_name},
                {"ServiceTags", c.service_tags},
                {"Type", c.type},
                {"Interval", c.shown_interval},
                {"Timeout", c.shown_timeout},
                {"ExposedPort", 0},
                // Consul 1.10 sends the definition empty over its API.
                {"Definition", json::object()}};
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

bool lower_less(std::string_view a, std::string_view b) {
    return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) <
               std::tolower(static_cast<unsigned char>(y));
    });
}

std::vector<const node_entry*> nodes_in_order(const store& s) {
    std::vector<const node_entry*> out;
    for (const auto& [name, n] : s.nodes) {
        out.push_back(&n);
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const auto* a, const auto* b) { return lower_less(a->name, b->name); });
    return out;
}

std::vector<const check_entry*> node_checks_in_order(const store& s, const std::string& node) {
    std::vector<const check_entry*> out;
    if (auto it = s.checks.find(node); it != s.checks.end()) {
        for (const auto& [id, c] : it->second) {
            out.push_back(&c);
        }
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const auto* a, const auto* b) { return lower_less(a->id, b->id); });
    return out;
}

std::vector<const check_entry*> checks_in_order(const store& s) {
    std::vector<const check_entry*> out;
    for (const auto* n : nodes_in_order(s)) {
        auto part = node_checks_in_order(s, n->name);
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
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
    json j = check_common(c, c.output);
    j["CreateIndex"] = c.create_index;
    j["ModifyIndex"] = c.modify_index;
    return j;
}

json agent_check_json(const check_entry& c) {
    json j = check_common(c, c.agent_output);
    j["CreateIndex"] = 0;
    j["ModifyIndex"] = 0;
    return j;
}

json node_service_json(const service_entry& svc) {
    json j = json::object();
    if (!svc.kind.empty()) {
        j["Kind"] = svc.kind;
    }
    j["ID"] = svc.id;
    j["Service"] = svc.name;
    j["Tags"] = svc.tags;
    j["Address"] = svc.address;
    if (!svc.tagged_addresses.empty()) {
        j["TaggedAddresses"] = service_addresses(svc);
    }
    j["Meta"] = svc.meta_null ? json(nullptr) : string_map(svc.meta);
    if (svc.port != 0) {
        j["Port"] = svc.port;
    }
    j["Weights"] = weights_json(svc.weights);
    j["EnableTagOverride"] = svc.enable_tag_override;
    j["Proxy"] = empty_proxy();
    j["Connect"] = json::object();
    j["CreateIndex"] = svc.create_index;
    j["ModifyIndex"] = svc.modify_index;
    return j;
}

std::string service_content_hash(const service_entry& svc) {
    // Consul hashes the service definition (hashstructure); any stable hash that moves with the
    // definition serves the same purpose: FNV-1a over its JSON form.
    const auto text = node_service_json(svc).dump();
    std::uint64_t h = 14695981039346656037ULL;
    for (unsigned char ch : text) {
        h ^= ch;
        h *= 1099511628211ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

json agent_service_json(const service_entry& svc, const std::string& datacenter, bool with_hash) {
    json j = json::object();
    if (!svc.kind.empty()) {
        j["Kind"] = svc.kind;
    }
    j["ID"] = svc.id;
    j["Service"] = svc.name;
    j["Tags"] = svc.tags;
    j["Meta"] = string_map(svc.meta);
    j["Port"] = svc.port;
    j["Address"] = svc.address;
    if (!svc.tagged_addresses.empty()) {
        j["TaggedAddresses"] = service_addresses(svc);
    }
    j["Weights"] = weights_json(svc.weights);
    j["EnableTagOverride"] = svc.enable_tag_override;
    if (with_hash) {
        j["ContentHash"] = service_content_hash(svc);
    }
    j["Datacenter"] = datacenter;
    return j;
}

json service_node_json(const node_entry& n, const service_entry& svc) {
    json j{{"ID", n.id},
           {"Node", n.name},
           {"Address", n.address},
           {"Datacenter", n.datacenter},
           {"TaggedAddresses", string_map(n.tagged_addresses)},
           {"NodeMeta", string_map(n.meta)},
           {"ServiceKind", svc.kind},
           {"ServiceID", svc.id},
           {"ServiceName", svc.name},
           {"ServiceTags", svc.tags},
           {"ServiceAddress", svc.address}};
    if (!svc.tagged_addresses.empty()) {
        j["ServiceTaggedAddresses"] = service_addresses(svc);
    }
    j["ServiceWeights"] = weights_json(svc.weights);
    j["ServiceMeta"] = string_map(svc.meta);  // {} even where NodeService shows null
    j["ServicePort"] = svc.port;
    j["ServiceSocketPath"] = "";
    j["ServiceEnableTagOverride"] = svc.enable_tag_override;
    j["ServiceProxy"] = empty_proxy();
    j["ServiceConnect"] = json::object();
    j["CreateIndex"] = svc.create_index;
    j["ModifyIndex"] = svc.modify_index;
    return j;
}

}  // namespace lakemesh::testing::detail
