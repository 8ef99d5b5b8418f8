// JSON of the health endpoints: https://developer.hashicorp.com/consul/api-docs/health
#include "health_codec.hpp"

#include "agent_codec.hpp"
#include "client_impl.hpp"

namespace lakemesh::consul::detail {

namespace {

error_code decode_node_object(const json& j, node_info& out, diagnostics& diag,
                              const std::string& where) {
    error_code ec;
    if ((ec = expect_object(j, diag, where)) ||
        (ec = get_string(j, "ID", out.id, diag, where, false)) ||
        (ec = get_string(j, "Node", out.node, diag, where)) ||
        (ec = get_string(j, "Address", out.address, diag, where)) ||
        (ec = get_string(j, "Datacenter", out.datacenter, diag, where, false)) ||
        (ec = get_string_map(j, "TaggedAddresses", out.tagged_addresses, diag, where)) ||
        (ec = get_string_map(j, "Meta", out.meta, diag, where)) ||
        (ec = get_u64(j, "CreateIndex", out.create_index, diag, where, false)) ||
        (ec = get_u64(j, "ModifyIndex", out.modify_index, diag, where, false))) {
        return ec;
    }
    return {};
}

error_code decode_checks_array(const json& j, std::vector<health_check>& out, diagnostics& diag,
                               const std::string& where) {
    out.clear();
    if (j.is_null()) {
        return {};  // Go encodes an empty slice as null
    }
    if (auto ec = expect_array(j, diag, where)) {
        return ec;
    }
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        health_check c;
        if (auto ec = decode_check_object(j[i], c, diag, where + "[" + std::to_string(i) + "]")) {
            out.clear();
            return ec;
        }
        out.push_back(std::move(c));
    }
    return {};
}

const json& member(const json& obj, const char* field) {
    static const json null_value;
    auto it = obj.find(field);
    return it == obj.end() ? null_value : *it;
}

}  // namespace

error_code decode_service_entries_json(const json& j, std::vector<service_entry>& out,
                                       diagnostics& diag) {
    out.clear();
    if (auto ec = expect_array(j, diag, "entries")) {
        return ec;
    }
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
        const std::string where = "entries[" + std::to_string(i) + "]";
        service_entry e;
        error_code ec;
        if ((ec = expect_object(j[i], diag, where))) {
            out.clear();
            return ec;
        }
        for (const char* part : {"Node", "Service"}) {
            if (member(j[i], part).is_null()) {
                diag.set_client_message("missing field " + where + "." + part);
                out.clear();
                return decode_errc::missing_field;
            }
        }
        if ((ec = decode_node_object(member(j[i], "Node"), e.node, diag, where + ".Node")) ||
            (ec = decode_service_object(member(j[i], "Service"), e.service, diag,
                                        where + ".Service")) ||
            (ec = decode_checks_array(member(j[i], "Checks"), e.checks, diag, where + ".Checks"))) {
            out.clear();
            return ec;
        }
        out.push_back(std::move(e));
    }
    return {};
}

error_code decode_service_entries(const std::string& body, std::vector<service_entry>& out,
                                  diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        out.clear();
        return ec;
    }
    return decode_service_entries_json(j, out, diag);
}

error_code decode_health_checks_json(const json& j, std::vector<health_check>& out,
                                     diagnostics& diag) {
    if (j.is_null()) {
        out.clear();
        diag.set_client_message("checks is not a JSON array");
        return decode_errc::wrong_type;
    }
    return decode_checks_array(j, out, diag, "checks");
}

error_code decode_health_checks(const std::string& body, std::vector<health_check>& out,
                                diagnostics& diag) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        out.clear();
        return ec;
    }
    return decode_health_checks_json(j, out, diag);
}

}  // namespace lakemesh::consul::detail
