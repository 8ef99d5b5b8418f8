// JSON of the agent endpoints: https://developer.hashicorp.com/consul/api-docs/agent
#include "agent_codec.hpp"

#include "client_impl.hpp"

#include <limits>

namespace lakemesh::consul::detail {

// ------------------------------------------------------------------ encoding

namespace {

error_code check_duration(const std::string& where, const char* field, std::chrono::milliseconds d,
                          diagnostics& diag) {
    if (d.count() < 0) {
        diag.set_client_message(where + "." + field + " must not be negative");
        return validation_errc::invalid_duration;
    }
    return {};
}

void put_duration(json& j, const char* field, std::chrono::milliseconds d) {
    if (d.count() > 0) {
        j[field] = format_go_duration(d);
    }
}

/// Validates and encodes one check. In a service definition the ID field is "CheckID" and
/// ServiceID is implied; a standalone definition uses "ID" and may name its service.
error_code check_json(const check_definition& def, bool standalone, const std::string& where,
                      json& out, diagnostics& diag) {
    error_code ec;
    if ((ec = validate_path_segment(where + ".ID", def.id, diag, true)) ||
        (ec = validate_text(where + ".Name", def.name, diag, !standalone)) ||
        (ec = validate_path_segment(where + ".ServiceID", def.service_id, diag, true)) ||
        (ec = check_duration(where, "TTL", def.ttl, diag)) ||
        (ec = check_duration(where, "Interval", def.interval, diag)) ||
        (ec = check_duration(where, "Timeout", def.timeout, diag)) ||
        (ec = check_duration(where, "DeregisterCriticalServiceAfter",
                             def.deregister_critical_service_after, diag))) {
        return ec;
    }
    if (def.status == check_status::maintenance) {
        diag.set_client_message(where +
                                ".Status: maintenance is not a status a check can be given");
        return validation_errc::invalid_argument;
    }
    out = json::object();
    if (!def.id.empty()) {
        out[standalone ? "ID" : "CheckID"] = def.id;
    }
    if (!def.name.empty()) {
        out["Name"] = def.name;
    }
    if (standalone && !def.service_id.empty()) {
        out["ServiceID"] = def.service_id;
    }
    if (!def.notes.empty()) {
        out["Notes"] = def.notes;
    }
    if (def.status) {
        out["Status"] = std::string(to_string(*def.status));
    }
    put_duration(out, "TTL", def.ttl);
    if (!def.http.empty()) {
        out["HTTP"] = def.http;
        if (!def.method.empty()) {
            out["Method"] = def.method;
        }
        if (!def.header.empty()) {
            out["Header"] = def.header;
        }
        if (def.tls_skip_verify) {
            out["TLSSkipVerify"] = true;
        }
    }
    if (!def.tcp.empty()) {
        out["TCP"] = def.tcp;
    }
    if (!def.grpc.empty()) {
        out["GRPC"] = def.grpc;
        if (def.grpc_use_tls) {
            out["GRPCUseTLS"] = true;
        }
    }
    put_duration(out, "Interval", def.interval);
    put_duration(out, "Timeout", def.timeout);
    put_duration(out, "DeregisterCriticalServiceAfter", def.deregister_critical_service_after);
    return {};
}

/// json::dump throws on invalid UTF-8; a name that is not UTF-8 is the caller's mistake.
error_code dump(const json& j, std::string& body, diagnostics& diag, const char* what) {
    try {
        body = j.dump();
    } catch (const json::exception&) {
        diag.set_client_message(std::string(what) + " contains text that is not valid UTF-8");
        return validation_errc::invalid_argument;
    }
    return {};
}

/// Appends `text` (valid UTF-8) escaped as the inside of a JSON string, as json::dump does.
void append_json_string_content(std::string_view text, std::string& out) {
    static constexpr char hex[] = "0123456789abcdef";
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
            case '"':
                out += "\\\"";
                continue;
            case '\\':
                out += "\\\\";
                continue;
            case '\b':
                out += "\\b";
                continue;
            case '\f':
                out += "\\f";
                continue;
            case '\n':
                out += "\\n";
                continue;
            case '\r':
                out += "\\r";
                continue;
            case '\t':
                out += "\\t";
                continue;
            default:
                break;
        }
        if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0x0f];
        } else {
            out += c;
        }
    }
}

}  // namespace

error_code encode_service_registration(const service_registration& reg, std::string& body,
                                       diagnostics& diag) {
    error_code ec;
    if ((ec = validate_path_segment("service name", reg.name, diag)) ||
        (ec = validate_path_segment("service ID", reg.id, diag, true)) ||
        (ec = validate_text("service address", reg.address, diag))) {
        return ec;
    }
    for (const auto& t : reg.tags) {
        if ((ec = validate_text("service tag", t, diag))) {
            return ec;
        }
    }
    if (reg.port < 0 || reg.port > 65535) {
        diag.set_client_message("service port " + std::to_string(reg.port) + " is not in 0..65535");
        return validation_errc::invalid_argument;
    }
    json j = json::object();
    if (!reg.id.empty()) {
        j["ID"] = reg.id;
    }
    j["Name"] = reg.name;
    if (!reg.tags.empty()) {
        j["Tags"] = reg.tags;
    }
    if (!reg.meta.empty()) {
        j["Meta"] = reg.meta;
    }
    if (reg.port != 0) {
        j["Port"] = reg.port;
    }
    if (!reg.address.empty()) {
        j["Address"] = reg.address;
    }
    if (reg.weights) {
        j["Weights"] = json{{"Passing", reg.weights->passing}, {"Warning", reg.weights->warning}};
    }
    if (reg.enable_tag_override) {
        j["EnableTagOverride"] = true;
    }
    if (reg.check) {
        json c;
        if ((ec = check_json(*reg.check, false, "Check", c, diag))) {
            return ec;
        }
        j["Check"] = std::move(c);
    }
    if (!reg.checks.empty()) {
        json arr = json::array();
        for (std::size_t i = 0; i < reg.checks.size(); ++i) {
            json c;
            if ((ec = check_json(reg.checks[i], false, "Checks[" + std::to_string(i) + "]", c,
                                 diag))) {
                return ec;
            }
            arr.push_back(std::move(c));
        }
        j["Checks"] = std::move(arr);
    }
    return dump(j, body, diag, "service registration");
}

error_code encode_check_definition(const check_definition& def, std::string& body,
                                   diagnostics& diag) {
    json j;
    if (auto ec = check_json(def, true, "check", j, diag)) {
        return ec;
    }
    return dump(j, body, diag, "check definition");
}

error_code encode_check_update(check_status status, const std::string& output, std::string& body,
                               diagnostics& diag) {
    if (status == check_status::maintenance) {
        diag.set_client_message("check update: maintenance is not a status a check can be given");
        return validation_errc::invalid_argument;
    }
    // Sent for every TTL update of every check, so written directly: a json object and its dump
    // cost several allocations per update.
    if (auto ec = validate_utf8("check output", output, diag)) {
        return ec;
    }
    body.clear();
    body.reserve(32 + output.size());
    body += R"({"Status":")";
    body += to_string(status);
    body += R"(","Output":")";
    append_json_string_content(output, body);
    body += "\"}";
    return {};
}

// ------------------------------------------------------------------ decoding

namespace {

template <class T, class Json>
error_code from_text(const std::string& body, T& out, diagnostics& diag, Json decode_json) {
    json j;
    if (auto ec = parse_json(body, j, diag)) {
        return ec;
    }
    return decode_json(j, out, diag);
}

error_code get_int(const json& obj, const char* field, int& out, diagnostics& diag,
                   const std::string& where) {
    std::int64_t v = 0;
    if (auto ec = get_i64(obj, field, v, diag, where, false)) {
        return ec;
    }
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
        diag.set_client_message("field " + where + "." + field + " is out of range");
        return decode_errc::wrong_type;
    }
    out = static_cast<int>(v);
    return {};
}

}  // namespace

error_code decode_service_object(const json& j, agent_service& out, diagnostics& diag,
                                 const std::string& where) {
    if (auto ec = expect_object(j, diag, where)) {
        return ec;
    }
    out = agent_service{};
    error_code ec;
    if ((ec = get_string(j, "ID", out.id, diag, where)) ||
        (ec = get_string(j, "Service", out.service, diag, where)) ||
        (ec = get_string_list(j, "Tags", out.tags, diag, where)) ||
        (ec = get_string_map(j, "Meta", out.meta, diag, where)) ||
        (ec = get_int(j, "Port", out.port, diag, where)) ||
        (ec = get_string(j, "Address", out.address, diag, where, false)) ||
        (ec = get_bool(j, "EnableTagOverride", out.enable_tag_override, diag, where, false)) ||
        (ec = get_string(j, "Kind", out.kind, diag, where, false)) ||
        (ec = get_string(j, "Datacenter", out.datacenter, diag, where, false)) ||
        (ec = get_string(j, "Namespace", out.namespace_name, diag, where, false)) ||
        (ec = get_u64(j, "CreateIndex", out.create_index, diag, where, false)) ||
        (ec = get_u64(j, "ModifyIndex", out.modify_index, diag, where, false))) {
        return ec;
    }
    if (auto w = j.find("Weights"); w != j.end() && !w->is_null()) {
        const std::string ww = where + ".Weights";
        if ((ec = expect_object(*w, diag, ww)) ||
            (ec = get_int(*w, "Passing", out.weights.passing, diag, ww)) ||
            (ec = get_int(*w, "Warning", out.weights.warning, diag, ww))) {
            return ec;
        }
    }
    return {};
}

error_code decode_check_object(const json& j, health_check& out, diagnostics& diag,
                               const std::string& where) {
    if (auto ec = expect_object(j, diag, where)) {
        return ec;
    }
    out = health_check{};
    std::string status;
    error_code ec;
    if ((ec = get_string(j, "Node", out.node, diag, where, false)) ||
        (ec = get_string(j, "CheckID", out.check_id, diag, where)) ||
        (ec = get_string(j, "Name", out.name, diag, where, false)) ||
        (ec = get_string(j, "Status", status, diag, where)) ||
        (ec = get_string(j, "Notes", out.notes, diag, where, false)) ||
        (ec = get_string(j, "Output", out.output, diag, where, false)) ||
        (ec = get_string(j, "ServiceID", out.service_id, diag, where, false)) ||
        (ec = get_string(j, "ServiceName", out.service_name, diag, where, false)) ||
        (ec = get_string_list(j, "ServiceTags", out.service_tags, diag, where)) ||
        (ec = get_string(j, "Type", out.type, diag, where, false)) ||
        (ec = get_u64(j, "CreateIndex", out.create_index, diag, where, false)) ||
        (ec = get_u64(j, "ModifyIndex", out.modify_index, diag, where, false))) {
        return ec;
    }
    auto s = check_status_from_string(status);
    if (!s) {
        diag.set_client_message("field " + where + ".Status has the unknown value \"" +
                                status.substr(0, 64) + "\"");
        return decode_errc::wrong_type;
    }
    out.status = *s;
    return {};
}

error_code decode_agent_self_json(const json& j, agent_info& out, diagnostics& diag) {
    out = agent_info{};
    error_code ec;
    if ((ec = expect_object(j, diag, "self"))) {
        return ec;
    }
    auto cfg = j.find("Config");
    if (cfg == j.end() || cfg->is_null()) {
        diag.set_client_message("missing field self.Config");
        return decode_errc::missing_field;
    }
    const std::string where = "self.Config";
    if ((ec = expect_object(*cfg, diag, where)) ||
        (ec = get_string(*cfg, "NodeName", out.node_name, diag, where)) ||
        (ec = get_string(*cfg, "Datacenter", out.datacenter, diag, where)) ||
        (ec = get_string(*cfg, "NodeID", out.node_id, diag, where, false)) ||
        (ec = get_string(*cfg, "PrimaryDatacenter", out.primary_datacenter, diag, where, false)) ||
        (ec = get_string(*cfg, "Version", out.version, diag, where, false)) ||
        (ec = get_string(*cfg, "Revision", out.revision, diag, where, false)) ||
        (ec = get_bool(*cfg, "Server", out.server, diag, where, false)) ||
        (ec = get_string_map(j, "Meta", out.node_meta, diag, "self"))) {
        return ec;
    }
    if (auto m = j.find("Member"); m != j.end() && !m->is_null()) {
        if ((ec = expect_object(*m, diag, "self.Member")) ||
            (ec = get_string(*m, "Addr", out.address, diag, "self.Member", false))) {
            return ec;
        }
    }
    return {};
}

error_code decode_agent_self(const std::string& body, agent_info& out, diagnostics& diag) {
    return from_text(body, out, diag, decode_agent_self_json);
}

error_code decode_agent_members_json(const json& j, std::vector<agent_member>& out,
                                     diagnostics& diag) {
    return decode_array(
        j, out, diag, "members", "members",
        [](const json& e, agent_member& m, diagnostics& d, const std::string& where) {
            error_code ec;
            if ((ec = expect_object(e, d, where)) ||
                (ec = get_string(e, "Name", m.name, d, where)) ||
                (ec = get_string(e, "Addr", m.address, d, where)) ||
                (ec = get_int(e, "Port", m.port, d, where)) ||
                (ec = get_string_map(e, "Tags", m.tags, d, where)) ||
                (ec = get_int(e, "Status", m.status, d, where))) {
                return ec;
            }
            return error_code{};
        },
        false);
}

error_code decode_agent_members(const std::string& body, std::vector<agent_member>& out,
                                diagnostics& diag) {
    return from_text(body, out, diag, decode_agent_members_json);
}

error_code decode_agent_services_json(const json& j, std::map<std::string, agent_service>& out,
                                      diagnostics& diag) {
    out.clear();
    if (auto ec = expect_object(j, diag, "services")) {
        return ec;
    }
    for (const auto& [id, v] : j.items()) {
        agent_service s;
        if (auto ec = decode_service_object(v, s, diag, "services[\"" + id + "\"]")) {
            out.clear();
            return ec;
        }
        out.emplace(id, std::move(s));
    }
    return {};
}

error_code decode_agent_services(const std::string& body, std::map<std::string, agent_service>& out,
                                 diagnostics& diag) {
    return from_text(body, out, diag, decode_agent_services_json);
}

error_code decode_agent_checks_json(const json& j, std::map<std::string, agent_check>& out,
                                    diagnostics& diag) {
    out.clear();
    if (auto ec = expect_object(j, diag, "checks")) {
        return ec;
    }
    for (const auto& [id, v] : j.items()) {
        agent_check c;
        if (auto ec = decode_check_object(v, c, diag, "checks[\"" + id + "\"]")) {
            out.clear();
            return ec;
        }
        out.emplace(id, std::move(c));
    }
    return {};
}

error_code decode_agent_checks(const std::string& body, std::map<std::string, agent_check>& out,
                               diagnostics& diag) {
    return from_text(body, out, diag, decode_agent_checks_json);
}

}  // namespace lakemesh::consul::detail
