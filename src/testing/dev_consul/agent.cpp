// Agent endpoints: https://developer.hashicorp.com/consul/api-docs/agent,
// .../agent/service and .../agent/check. They act on the receiving agent's own node.
//
// Request bodies are decoded as Consul 1.10 decodes them (encoding/json with unknown fields
// refused, its error texts), and answers follow Consul 1.10.11's.
#include "catalog_json.hpp"
#include "filter.hpp"
#include "go_json.hpp"
#include "router.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>
#include <random>
#include <set>

namespace lakemesh::testing::detail {
namespace {

constexpr const char* consul_version = "1.10.11";
constexpr const char* consul_revision = "de95b6f546";
constexpr std::size_t max_check_output = 4096;  // checks.DefaultBufSize
const std::string node_maintenance_id = "_node_maintenance";
const std::string service_maintenance_prefix = "_service_maintenance:";
const std::string default_node_maintenance_reason =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default "
    "message.";
const std::string default_service_maintenance_reason =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default "
    "message.";
const char* scripts_disabled =
    "Scripts are disabled on this agent from remote calls; to enable, configure "
    "'enable_script_checks' to true";

// The Go types Consul's custom UnmarshalJSON methods decode into, as its errors name them.
constexpr std::string_view check_type_alias =
    "struct { Interval interface {}; Timeout interface {}; TTL interface {}; "
    "DeregisterCriticalServiceAfter interface {}; Args []string \"json:\\\"args\\\"\"; "
    "ScriptArgsSnake []string \"json:\\\"script_args\\\"\"; DeregisterCriticalServiceAfterSnake "
    "interface {} \"json:\\\"deregister_critical_service_after\\\"\"; DockerContainerIDSnake "
    "string \"json:\\\"docker_container_id\\\"\"; TLSServerNameSnake string "
    "\"json:\\\"tls_server_name\\\"\"; TLSSkipVerifySnake bool \"json:\\\"tls_skip_verify\\\"\"; "
    "GRPCUseTLSSnake bool \"json:\\\"grpc_use_tls\\\"\"; ServiceID string "
    "\"json:\\\"ServiceID\\\"\"; ServiceIDSnake string \"json:\\\"service_id\\\"\"; "
    "*structs.Alias }";
constexpr std::string_view check_definition_alias =
    "struct { Interval interface {}; Timeout interface {}; TTL interface {}; "
    "DeregisterCriticalServiceAfter interface {}; Args []string \"json:\\\"args\\\"\"; "
    "ScriptArgsSnake []string \"json:\\\"script_args\\\"\"; DeregisterCriticalServiceAfterSnake "
    "interface {} \"json:\\\"deregister_critical_service_after\\\"\"; DockerContainerIDSnake "
    "string \"json:\\\"docker_container_id\\\"\"; TLSServerNameSnake string "
    "\"json:\\\"tls_server_name\\\"\"; TLSSkipVerifySnake bool \"json:\\\"tls_skip_verify\\\"\"; "
    "GRPCUseTLSSnake bool \"json:\\\"grpc_use_tls\\\"\"; ServiceIDSnake string "
    "\"json:\\\"service_id\\\"\"; DisableRedirectsSnake bool \"json:\\\"disable_redirects\\\"\"; "
    "*structs.Alias }";
constexpr std::string_view service_definition_alias =
    "struct { EnableTagOverrideSnake bool \"json:\\\"enable_tag_override\\\"\"; "
    "TaggedAddressesSnake map[string]structs.ServiceAddress \"json:\\\"tagged_addresses\\\"\"; "
    "*structs.Alias }";

// ------------------------------------------------------------------ request decoding

std::chrono::nanoseconds duration_of(const std::string& text) {
    return text.empty() ? std::chrono::nanoseconds{0}
                        : parse_go_duration(text).value_or(std::chrono::nanoseconds{0});
}

bool valid_status(const std::string& s) {
    return s == "passing" || s == "warning" || s == "critical";
}

const json* at(const std::vector<const json*>& values, std::size_t i) {
    return values[i];
}

std::string str_at(const std::vector<const json*>& values, std::size_t i) {
    return values[i] != nullptr ? values[i]->get<std::string>() : std::string{};
}

bool bool_at(const std::vector<const json*>& values, std::size_t i) {
    return values[i] != nullptr && values[i]->get<bool>();
}

std::vector<std::string> strings_at(const std::vector<const json*>& values, std::size_t i) {
    std::vector<std::string> out;
    if (values[i] != nullptr) {
        for (const auto& e : *values[i]) {
            out.push_back(e.is_string() ? e.get<std::string>() : std::string{});
        }
    }
    return out;
}

/// A time.Duration field that Consul's UnmarshalJSON takes as Go duration text or as a number
/// of nanoseconds (anything else is ignored). Returns the duration as Go prints it, or "" when
/// unset; a malformed text ends decoding with time.ParseDuration's error.
std::string duration_at(const std::vector<const json*>& values, std::size_t i,
                        go_decode_state& st) {
    const json* v = values[i];
    if (v == nullptr) {
        return {};
    }
    if (v->is_string()) {
        const auto text = v->get<std::string>();
        auto d = parse_go_duration(text);
        if (!d) {
            if (!st.fatal) {
                std::string quoted;
                append_go_string(quoted, text);
                st.fatal = "time: invalid duration " + quoted;
            }
            return {};
        }
        return d->count() == 0 ? std::string{} : format_go_duration(*d);
    }
    if (v->is_number()) {
        const auto ns = static_cast<std::int64_t>(v->get<double>());
        return ns == 0 ? std::string{} : format_go_duration(std::chrono::nanoseconds(ns));
    }
    return {};
}

struct check_definition {
    std::string id;
    std::string name;
    std::string notes;
    std::string status;
    std::string service_id;
    std::string ttl;
    std::string http;
    std::string method;
    std::map<std::string, std::vector<std::string>> header;
    std::string body;
    bool tls_skip_verify = false;
    std::string tcp;
    std::string grpc;
    bool grpc_use_tls = false;
    std::string h2ping;
    std::string alias_service;
    std::string alias_node;
    std::string docker_container_id;
    std::vector<std::string> script_args;
    std::string interval;
    std::string timeout;
    std::string deregister_critical_service_after;
    bool empty = true;  // CheckType.Empty(): every field at its zero value

    bool interval_set() const { return duration_of(interval).count() > 0; }
    bool is_script() const { return !script_args.empty(); }
    bool is_alias() const { return !alias_node.empty() || !alias_service.empty(); }

    /// structs.CheckType.Type() of Consul 1.10.
    std::string type() const {
        if (!grpc.empty() && interval_set())
            return "grpc";
        if (!http.empty() && interval_set())
            return "http";
        if (duration_of(ttl).count() > 0)
            return "ttl";
        if (!tcp.empty() && interval_set())
            return "tcp";
        if (is_alias())
            return "alias";
        if (is_script() && !docker_container_id.empty() && interval_set())
            return "docker";
        if (is_script())
            return "script";
        if (!h2ping.empty() && interval_set())
            return "h2ping";
        return "";
    }
};

/// The fields of a check, in Consul 1.10's CheckType (service definitions) or CheckDefinition
/// (agent/check/register), with the snake_case aliases their UnmarshalJSON adds.
enum check_field : std::size_t {
    cf_id,
    cf_name,
    cf_notes,
    cf_service_id,
    cf_token,
    cf_status,
    cf_script_args,
    cf_http,
    cf_header,
    cf_method,
    cf_body,
    cf_disable_redirects,
    cf_tcp,
    cf_interval,
    cf_docker,
    cf_shell,
    cf_grpc,
    cf_grpc_tls,
    cf_tls_server_name,
    cf_tls_skip_verify,
    cf_alias_node,
    cf_alias_service,
    cf_timeout,
    cf_ttl,
    cf_success_before,
    cf_failures_before,
    cf_dcsa,
    cf_output_max,
    cf_h2ping,
    cf_proxy_http,
    cf_proxy_grpc,
    cf_args,
    cf_script_args_snake,
    cf_dcsa_snake,
    cf_docker_snake,
    cf_tls_server_name_snake,
    cf_tls_skip_verify_snake,
    cf_grpc_tls_snake,
    cf_service_id_snake,
    cf_disable_redirects_snake,
    cf_count,
};

/// `service`: a check inside a service definition (CheckType: "CheckID", ProxyHTTP/GRPC, no
/// Token); otherwise agent/check/register's CheckDefinition ("ID", Token).
std::vector<go_field_spec> check_fields(bool service) {
    using k = go_kind;
    std::vector<go_field_spec> f(cf_count, go_field_spec{"\x01", k::any, ""});
    f[cf_id] = {service ? "CheckID" : "ID", k::string, service ? "types.CheckID" : "types.CheckID"};
    f[cf_name] = {"Name", k::string, "string"};
    f[cf_notes] = {"Notes", k::string, "string"};
    f[cf_service_id] = {"ServiceID", k::string, "string"};
    if (!service) {
        f[cf_token] = {"Token", k::string, "string"};
    }
    f[cf_status] = {"Status", k::string, "string"};
    f[cf_script_args] = {"ScriptArgs", k::string_slice, "[]string", "string"};
    f[cf_http] = {"HTTP", k::string, "string"};
    f[cf_header] = {"Header", k::header_map, "map[string][]string"};
    f[cf_method] = {"Method", k::string, "string"};
    f[cf_body] = {"Body", k::string, "string"};
    f[cf_disable_redirects] = {"DisableRedirects", k::boolean, "bool"};
    f[cf_tcp] = {"TCP", k::string, "string"};
    f[cf_interval] = {"Interval", k::any, ""};
    f[cf_docker] = {"DockerContainerID", k::string, "string"};
    f[cf_shell] = {"Shell", k::string, "string"};
    f[cf_grpc] = {"GRPC", k::string, "string"};
    f[cf_grpc_tls] = {"GRPCUseTLS", k::boolean, "bool"};
    f[cf_tls_server_name] = {"TLSServerName", k::string, "string"};
    f[cf_tls_skip_verify] = {"TLSSkipVerify", k::boolean, "bool"};
    f[cf_alias_node] = {"AliasNode", k::string, "string"};
    f[cf_alias_service] = {"AliasService", k::string, "string"};
    f[cf_timeout] = {"Timeout", k::any, ""};
    f[cf_ttl] = {"TTL", k::any, ""};
    f[cf_success_before] = {"SuccessBeforePassing", k::int64, "int"};
    f[cf_failures_before] = {"FailuresBeforeCritical", k::int64, "int"};
    f[cf_dcsa] = {"DeregisterCriticalServiceAfter", k::any, ""};
    f[cf_output_max] = {"OutputMaxSize", k::int64, "int"};
    f[cf_h2ping] = {"H2PING", k::string, "string"};
    if (service) {
        f[cf_proxy_http] = {"ProxyHTTP", k::string, "string"};
        f[cf_proxy_grpc] = {"ProxyGRPC", k::string, "string"};
    }
    f[cf_args] = {"args", k::string_slice, "[]string", "string"};
    f[cf_script_args_snake] = {"script_args", k::string_slice, "[]string", "string"};
    f[cf_dcsa_snake] = {"deregister_critical_service_after", k::any, ""};
    f[cf_docker_snake] = {"docker_container_id", k::string, "string"};
    f[cf_tls_server_name_snake] = {"tls_server_name", k::string, "string"};
    f[cf_tls_skip_verify_snake] = {"tls_skip_verify", k::boolean, "bool"};
    f[cf_grpc_tls_snake] = {"grpc_use_tls", k::boolean, "bool"};
    f[cf_service_id_snake] = {"service_id", k::string, "string"};
    if (!service) {
        f[cf_disable_redirects_snake] = {"disable_redirects", k::boolean, "bool"};
    }
    return f;
}

/// Decodes one check object (UnmarshalJSON of CheckType / CheckDefinition): every error it
/// meets ends the decoding of the whole request.
check_definition decode_check(const json& obj, bool service, const go_error_context& where,
                              go_decode_state& outer) {
    check_definition c;
    go_decode_state st;
    const auto fields = check_fields(service);
    const auto v = go_read_struct(obj, fields, where, true, st);
    if (auto err = st.error()) {
        if (!outer.fatal) {
            outer.fatal = *err;
        }
        return c;
    }
    c.id = str_at(v, cf_id);
    c.name = str_at(v, cf_name);
    c.notes = str_at(v, cf_notes);
    c.status = str_at(v, cf_status);
    c.service_id = str_at(v, cf_service_id);
    if (c.service_id.empty()) {
        c.service_id = str_at(v, cf_service_id_snake);
    }
    c.http = str_at(v, cf_http);
    c.method = str_at(v, cf_method);
    if (const json* h = at(v, cf_header)) {
        for (auto it = h->begin(); it != h->end(); ++it) {
            auto& list = c.header[it.key()];
            if (it->is_array()) {
                for (const auto& e : *it) {
                    list.push_back(e.is_string() ? e.get<std::string>() : std::string{});
                }
            }
        }
    }
    c.body = str_at(v, cf_body);
    c.tls_skip_verify = bool_at(v, cf_tls_skip_verify) || bool_at(v, cf_tls_skip_verify_snake);
    c.tcp = str_at(v, cf_tcp);
    c.grpc = str_at(v, cf_grpc);
    c.grpc_use_tls = bool_at(v, cf_grpc_tls) || bool_at(v, cf_grpc_tls_snake);
    c.h2ping = str_at(v, cf_h2ping);
    c.alias_node = str_at(v, cf_alias_node);
    c.alias_service = str_at(v, cf_alias_service);
    c.docker_container_id = str_at(v, cf_docker);
    if (c.docker_container_id.empty()) {
        c.docker_container_id = str_at(v, cf_docker_snake);
    }
    c.script_args = strings_at(v, cf_script_args);
    for (auto alt : {cf_args, cf_script_args_snake}) {
        if (c.script_args.empty()) {
            c.script_args = strings_at(v, alt);
        }
    }
    c.interval = duration_at(v, cf_interval, st);
    c.timeout = duration_at(v, cf_timeout, st);
    c.ttl = duration_at(v, cf_ttl, st);
    c.deregister_critical_service_after = duration_at(v, cf_dcsa, st);
    if (auto snake = duration_at(v, cf_dcsa_snake, st); !snake.empty()) {
        c.deregister_critical_service_after = snake;
    }
    if (st.fatal && !outer.fatal) {
        outer.fatal = st.fatal;
    }
    c.empty = std::all_of(v.begin(), v.end(), [](const json* x) {
        return x == nullptr || (x->is_string() && x->get<std::string>().empty()) ||
               (x->is_boolean() && !x->get<bool>()) || (x->is_number() && x->get<double>() == 0) ||
               ((x->is_array() || x->is_object()) && x->empty());
    });
    return c;
}

/// structs.CheckType.Validate of Consul 1.10: the reason after "Invalid check: ".
std::optional<std::string> validate_check(const check_definition& c) {
    const bool interval_check =
        c.is_script() || !c.http.empty() || !c.tcp.empty() || !c.grpc.empty() || !c.h2ping.empty();
    const auto interval = duration_of(c.interval);
    const auto ttl = duration_of(c.ttl);
    if (interval.count() > 0 && ttl.count() > 0) {
        return "Interval and TTL cannot both be specified";
    }
    if (interval_check && interval.count() <= 0) {
        return "Interval must be > 0 for Script, HTTP, H2PING, or TCP checks";
    }
    if (interval_check && c.is_alias()) {
        return "Interval cannot be set for Alias checks";
    }
    if (c.is_alias() && ttl.count() > 0) {
        return "TTL must be not set for Alias checks";
    }
    if (!interval_check && !c.is_alias() && ttl.count() <= 0) {
        return "TTL must be > 0 for TTL checks";
    }
    return std::nullopt;
}

struct service_definition {
    service_entry svc;
    bool weights_given = false;
    std::vector<check_definition> checks;
};

/// structs.ServiceDefinition as Consul 1.10 decodes it (unknown fields refused).
std::optional<service_definition> decode_service(const json& body, std::string& error) {
    service_definition out;
    auto& svc = out.svc;
    go_decode_state st;
    if (!body.is_object()) {
        error = std::string("json: cannot unmarshal ") + json_kind(body) +
                " into Go value of type " + std::string(service_definition_alias);
        return std::nullopt;
    }
    const go_error_context top{"", "", false};
    const auto nested_check = [&](std::string_view field) {
        return [&out, field](const json& v, go_decode_state& state) {
            if (!v.is_object()) {
                if (!state.fatal) {
                    state.fatal = go_type_error(v, go_error_context{"", std::string(field), true},
                                                field, check_type_alias);
                }
                return;
            }
            auto c = decode_check(v, true, go_error_context{"", std::string(field), true}, state);
            if (field == "Check" && c.empty) {
                return;  // a Check of zero values is no check (CheckType.Empty)
            }
            out.checks.push_back(std::move(c));
        };
    };
    const auto address_map = [](std::string_view field) {
        return [field](const json& v, go_decode_state& state) {
            for (const auto& e : v) {
                if (e.is_null()) {
                    continue;
                }
                if (!e.is_object()) {
                    if (!state.saved) {
                        state.saved = go_type_error(e, go_error_context{"", "", false}, field,
                                                    "structs.ServiceAddress");
                    }
                    continue;
                }
                go_read_struct(
                    e, {{"Address", go_kind::string, "string"}, {"Port", go_kind::int64, "int"}},
                    go_error_context{"ServiceAddress", std::string(field), false}, false, state);
            }
        };
    };
    const std::vector<go_field_spec> fields{
        {"Kind", go_kind::string, "structs.ServiceKind"},
        {"ID", go_kind::string, "string"},
        {"Name", go_kind::string, "string"},
        {"Tags", go_kind::string_slice, "[]string", "string"},
        {"Address", go_kind::string, "string"},
        {"TaggedAddresses", go_kind::object, "map[string]structs.ServiceAddress", "",
         address_map("TaggedAddresses")},
        {"Meta", go_kind::string_map, "map[string]string", "string"},
        {"Port", go_kind::int64, "int"},
        {"SocketPath", go_kind::string, "string"},
        {"Check", go_kind::any, "", "", nested_check("Check")},
        {"Checks", go_kind::object_slice, "structs.CheckTypes", check_type_alias,
         [&out](const json& v, go_decode_state& state) {
             out.checks.push_back(
                 decode_check(v, true, go_error_context{"", "Checks", true}, state));
         }},
        {"Weights", go_kind::object, "structs.Weights", "",
         [](const json& v, go_decode_state& state) {
             go_read_struct(
                 v, {{"Passing", go_kind::int64, "int"}, {"Warning", go_kind::int64, "int"}},
                 go_error_context{"Weights", "Weights", false}, true, state);
         }},
        {"Token", go_kind::string, "string"},
        {"EnableTagOverride", go_kind::boolean, "bool"},
        {"Proxy", go_kind::object, "structs.ConnectProxyConfig"},
        {"Connect", go_kind::object, "structs.ServiceConnect"},
        {"enable_tag_override", go_kind::boolean, "bool"},
        {"tagged_addresses", go_kind::object, "map[string]structs.ServiceAddress", "",
         address_map("tagged_addresses")},
    };
    const auto v = go_read_struct(body, fields, top, true, st);
    if (auto err = st.error()) {
        error = *err;
        return std::nullopt;
    }
    svc.kind = str_at(v, 0);
    svc.id = str_at(v, 1);
    svc.name = str_at(v, 2);
    svc.tags = strings_at(v, 3);
    svc.address = str_at(v, 4);
    for (std::size_t i : {std::size_t{5}, std::size_t{17}}) {
        if (const json* m = v[i]) {
            for (auto it = m->begin(); it != m->end(); ++it) {
                if (!it->is_object()) {
                    continue;
                }
                std::string address;
                int port = 0;
                if (auto a = it->find("Address"); a != it->end() && a->is_string()) {
                    address = a->get<std::string>();
                }
                if (auto p = it->find("Port"); p != it->end() && p->is_number_integer()) {
                    port = p->get<int>();
                }
                svc.tagged_addresses[it.key()] = {address, port};
            }
        }
    }
    if (const json* m = v[6]) {
        svc.meta_null = false;
        for (auto it = m->begin(); it != m->end(); ++it) {
            svc.meta[it.key()] = it->is_string() ? it->get<std::string>() : std::string{};
        }
    }
    if (const json* p = v[7]) {
        svc.port = static_cast<int>(p->get<std::int64_t>());
    }
    svc.enable_tag_override = bool_at(v, 13) || bool_at(v, 16);
    if (const json* w = v[11]) {
        out.weights_given = true;
        svc.weights.passing = 0;
        svc.weights.warning = 0;
        if (auto p = w->find("Passing"); p != w->end() && p->is_number_integer()) {
            svc.weights.passing = p->get<int>();
        }
        if (auto p = w->find("Warning"); p != w->end() && p->is_number_integer()) {
            svc.weights.warning = p->get<int>();
        }
    }
    return out;
}

/// Consul adds lan_ipv4 / wan_ipv4 tagged addresses for a service with an IPv4 Address.
void add_default_tagged_addresses(service_entry& svc) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    char tail = 0;
    if (std::sscanf(svc.address.c_str(), "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a < 256 &&
        b < 256 && c < 256 && d < 256) {
        svc.tagged_addresses.try_emplace("lan_ipv4", svc.address, svc.port);
        svc.tagged_addresses.try_emplace("wan_ipv4", svc.address, svc.port);
    }
}

// ------------------------------------------------------------------ store changes

check_entry* find_check(store& s, const std::string& node, const std::string& id) {
    auto n = s.checks.find(node);
    if (n == s.checks.end()) {
        return nullptr;
    }
    auto it = n->second.find(id);
    return it == n->second.end() ? nullptr : &it->second;
}

service_entry* find_service(store& s, const std::string& node, const std::string& id) {
    auto n = s.services.find(node);
    if (n == s.services.end()) {
        return nullptr;
    }
    auto it = n->second.find(id);
    return it == n->second.end() ? nullptr : &it->second;
}

check_entry make_check(const check_definition& def, const std::string& node) {
    check_entry c;
    c.node = node;
    c.id = def.id;
    c.name = def.name;
    c.notes = def.notes;
    c.status = def.status.empty() ? "critical" : def.status;
    c.type = def.type();
    c.interval = def.interval;
    c.timeout = def.timeout;
    c.ttl = def.ttl;
    c.http = def.http;
    c.method = def.method;
    c.header = def.header;
    c.body = def.body;
    c.tls_skip_verify = def.tls_skip_verify;
    c.tcp = def.tcp;
    c.grpc = def.grpc;
    c.grpc_use_tls = def.grpc_use_tls;
    c.script_args = def.script_args;
    c.deregister_critical_service_after = def.deregister_critical_service_after;
    return c;
}

bool same_check(const check_entry& a, const check_entry& b) {
    return a.name == b.name && a.status == b.status && a.notes == b.notes && a.output == b.output &&
           a.service_id == b.service_id && a.service_name == b.service_name &&
           a.service_tags == b.service_tags && a.type == b.type &&
           a.shown_interval == b.shown_interval && a.shown_timeout == b.shown_timeout &&
           a.interval == b.interval && a.timeout == b.timeout && a.ttl == b.ttl &&
           a.http == b.http && a.method == b.method && a.header == b.header && a.body == b.body &&
           a.tls_skip_verify == b.tls_skip_verify && a.tcp == b.tcp && a.grpc == b.grpc &&
           a.grpc_use_tls == b.grpc_use_tls && a.script_args == b.script_args &&
           a.deregister_critical_service_after == b.deregister_critical_service_after;
}

bool same_service(const service_entry& a, const service_entry& b) {
    return a.name == b.name && a.tags == b.tags && a.meta == b.meta && a.meta_null == b.meta_null &&
           a.tagged_addresses == b.tagged_addresses && a.address == b.address && a.port == b.port &&
           a.weights.passing == b.weights.passing && a.weights.warning == b.weights.warning &&
           a.enable_tag_override == b.enable_tag_override && a.kind == b.kind;
}

/// Stores `c` (replacing a check with the same id). The catalog index moves only when
/// something visible changed, as Consul's anti-entropy only syncs differences. Timers restart
/// as a re-registered check's runner does; an interval check first runs after a random part of
/// its interval, as Consul staggers them.
void put_check(store& s, check_entry c) {
    auto& slot = s.checks[c.node][c.id];
    const bool existed = slot.create_index != 0;
    const auto now = s.now();
    if (c.type == "ttl") {
        c.ttl_deadline = now + std::chrono::duration_cast<clock::duration>(duration_of(c.ttl));
    }
    if (c.type == "http" || c.type == "tcp" || c.type == "script") {
        const auto interval = duration_of(c.interval);
        thread_local std::mt19937_64 rng{std::random_device{}()};
        const auto stagger = std::chrono::nanoseconds(std::uniform_int_distribution<std::int64_t>(
            0, std::max<std::int64_t>(interval.count() - 1, 0))(rng));
        c.next_run = now + std::chrono::duration_cast<clock::duration>(stagger);
    }
    c.agent_output = c.output;
    if (existed && same_check(slot, c)) {
        c.create_index = slot.create_index;
        c.modify_index = slot.modify_index;
        c.critical_since = slot.critical_since;
        c.agent_output = slot.agent_output;
        c.output_sync_at = slot.output_sync_at;
        slot = std::move(c);
        return;
    }
    const auto idx = s.write(table_catalog);
    c.create_index = existed ? slot.create_index : idx;
    c.modify_index = idx;
    catalog_check_changed(s, c, idx);
    if (c.status == "critical") {
        c.critical_since =
            existed && slot.status == "critical" && slot.critical_since ? slot.critical_since : now;
    } else {
        c.critical_since.reset();
    }
    const bool became_critical = c.status == "critical" && (!existed || slot.status != "critical");
    slot = std::move(c);
    if (became_critical && existed) {
        sessions_on_check_critical(s, slot.node, slot.id);
    }
}

bool remove_check(store& s, const std::string& node, const std::string& id) {
    auto n = s.checks.find(node);
    if (n == s.checks.end()) {
        return false;
    }
    auto it = n->second.find(id);
    if (it == n->second.end()) {
        return false;
    }
    const check_entry removed = std::move(it->second);
    n->second.erase(it);
    catalog_check_changed(s, removed, s.write(table_catalog));
    // Consul invalidates sessions whose linked check is deregistered.
    sessions_on_check_critical(s, node, id);
    return true;
}

// ------------------------------------------------------------------ handlers

json member_json(const agent_info& a) {
    return json{
        {"Name", a.node_name},
        {"Addr", a.address},
        {"Port", 8301},
        {"Tags",
         {{"acls", a.acl_enabled ? "1" : "0"},
          {"build", std::string(consul_version) + ":" + std::string(consul_revision).substr(0, 8)},
          {"dc", a.datacenter},
          {"ft_fs", "1"},
          {"ft_si", "1"},
          {"id", a.node_id},
          {"port", "8300"},
          {"raft_vsn", "3"},
          {"role", "consul"},
          {"segment", ""},
          {"vsn", "2"},
          {"vsn_max", "3"},
          {"vsn_min", "2"},
          {"wan_join_port", "8302"}}},
        {"Status", a.running ? 1 : 4},
        {"ProtocolMin", 1},
        {"ProtocolMax", 5},
        {"ProtocolCur", 2},
        {"DelegateMin", 2},
        {"DelegateMax", 5},
        {"DelegateCur", 4}};
}

std::size_t count_checks(const store& s, const std::string& node, const char* type) {
    std::size_t n = 0;
    if (auto it = s.checks.find(node); it != s.checks.end()) {
        for (const auto& [id, chk] : it->second) {
            if (id != "serfHealth" && (type == nullptr || chk.type == type)) {
                ++n;
            }
        }
    }
    return n;
}

response agent_self(route_context& c) {
    json meta = json::object();
    if (auto n = c.s.nodes.find(c.agent.node_name); n != c.s.nodes.end()) {
        for (const auto& [k, v] : n->second.meta) {
            meta[k] = v;
        }
    }
    const auto& a = c.agent;
    json config{{"Datacenter", a.datacenter},  {"PrimaryDatacenter", a.datacenter},
                {"NodeName", a.node_name},     {"NodeID", a.node_id},
                {"Revision", consul_revision}, {"Server", true},
                {"Version", consul_version}};
    std::size_t services = 0;
    if (auto it = c.s.services.find(a.node_name); it != c.s.services.end()) {
        services = it->second.size();
    }
    const auto leader = a.address + ":8300";
    json stats{
        {"agent",
         {{"check_monitors", std::to_string(count_checks(c.s, a.node_name, "script"))},
          {"check_ttls", std::to_string(count_checks(c.s, a.node_name, "ttl"))},
          {"checks", std::to_string(count_checks(c.s, a.node_name, nullptr))},
          {"services", std::to_string(services)}}},
        {"build",
         {{"prerelease", ""},
          {"revision", std::string(consul_revision).substr(0, 8)},
          {"version", consul_version}}},
        {"consul",
         {{"acl", a.acl_enabled ? "enabled" : "disabled"},
          {"bootstrap", "false"},
          {"known_datacenters", "1"},
          {"leader", "true"},
          {"leader_addr", leader},
          {"server", "true"}}},
        {"raft",
         {{"applied_index", std::to_string(c.s.index)},
          {"commit_index", std::to_string(c.s.index)},
          {"fsm_pending", "0"},
          {"last_contact", "0"},
          {"last_log_index", std::to_string(c.s.index)},
          {"last_log_term", "2"},
          {"last_snapshot_index", "0"},
          {"last_snapshot_term", "0"},
          {"latest_configuration",
           "[{Suffrage:Voter ID:" + a.node_id + " Address:" + leader + "}]"},
          {"latest_configuration_index", "0"},
          {"num_peers", "0"},
          {"protocol_version", "3"},
          {"protocol_version_max", "3"},
          {"protocol_version_min", "0"},
          {"snapshot_version_max", "1"},
          {"snapshot_version_min", "0"},
          {"state", "Leader"},
          {"term", "2"}}},
        {"runtime",
         {{"arch", "amd64"},
          {"cpu_count", "1"},
          {"goroutines", "1"},
          {"max_procs", "1"},
          {"os", "linux"},
          {"version", "go1.19.8"}}},
    };
    for (const char* pool : {"serf_lan", "serf_wan"}) {
        stats[pool] = json{{"coordinate_resets", "0"},
                           {"encrypted", "false"},
                           {"event_queue", "0"},
                           {"event_time", "1"},
                           {"failed", "0"},
                           {"health_score", "0"},
                           {"intent_queue", "0"},
                           {"left", "0"},
                           {"member_time", "1"},
                           {"members", std::to_string(c.members.size())},
                           {"query_queue", "0"},
                           {"query_time", "1"}};
    }
    json coord{{"Vec", json::array({0, 0, 0, 0, 0, 0, 0, 0})},
               {"Error", 1.5},
               {"Adjustment", 0},
               {"Height", 1e-05}};
    return json_response(json{{"Config", config},
                              {"DebugConfig", debug_config_json(a)},
                              {"Coord", coord},
                              {"Member", member_json(a)},
                              {"Stats", stats},
                              {"Meta", meta}});
}

response agent_members(route_context& c) {
    json out = json::array();
    for (const auto& m : c.members) {
        out.push_back(member_json(m));
    }
    return json_response(out);
}

response agent_services(route_context& c) {
    json out = json::object();
    if (auto n = c.s.services.find(c.agent.node_name); n != c.s.services.end()) {
        for (const auto& [id, svc] : n->second) {
            if (id == "consul") {
                continue;  // the server's own service is the catalog's, not the agent's
            }
            out[id] = agent_service_json(svc, c.agent.datacenter, false);
        }
    }
    // Consul 1.10 filters the agent's own structs.NodeService records.
    if (auto err = apply_filter(c.req.param("filter"), out, filter_schema::node_service)) {
        return error_response(500, *err);
    }
    return json_response(out);
}

response agent_service(route_context& c) {
    const service_entry* svc = find_service(c.s, c.agent.node_name, c.rest);
    if (svc == nullptr || c.rest == "consul") {
        return error_response(404, "unknown service ID: " + c.rest);
    }
    json out = agent_service_json(*svc, c.agent.datacenter, true);
    response r = json_response(std::move(out));
    r.headers.emplace_back("X-Consul-Contenthash", service_content_hash(*svc));
    return r;
}

response agent_checks(route_context& c) {
    json out = json::object();
    if (auto n = c.s.checks.find(c.agent.node_name); n != c.s.checks.end()) {
        for (const auto& [id, chk] : n->second) {
            if (id == "serfHealth") {
                continue;  // a cluster-level check, not one the agent owns
            }
            out[id] = agent_check_json(chk);
        }
    }
    const bool any = !out.empty();
    if (auto err = apply_filter(c.req.param("filter"), out, filter_schema::health_check)) {
        // Consul 1.10 parses this filter up front but checks its selectors only while matching
        // a check, handing that error back bare: with no check there is nothing to refuse.
        const std::string prefix = "Failed to create boolean expression evaluator: ";
        const std::string why = err->substr(prefix.size());
        const bool syntax = !why.empty() && std::isdigit(static_cast<unsigned char>(why[0]));
        if (syntax) {
            return error_response(500, *err);
        }
        if (any) {
            return error_response(500, why);
        }
    }
    return json_response(out);
}

response service_register(route_context& c) {
    response err;
    auto body = parse_body(c.req, err);
    if (!body) {
        return err;
    }
    std::string decode_error;
    auto def = decode_service(*body, decode_error);
    if (!def) {
        return error_response(400, "Request decode failed: " + decode_error);
    }
    service_entry& svc = def->svc;
    svc.node = c.agent.node_name;
    if (svc.name.empty()) {
        return error_response(400, "Missing service name");
    }
    if (svc.address == "0.0.0.0" || svc.address == "::" || svc.address == "[::]") {
        return error_response(400, "Invalid service address");
    }
    if (svc.id.empty()) {
        svc.id = svc.name;
    }
    if (def->weights_given) {
        if (svc.weights.passing < 1) {
            return error_response(400, "Invalid Weights: Passing must be greater than 0");
        }
        if (svc.weights.warning < 0) {
            return error_response(400, "Invalid Weights: Warning must be greater or equal than 0");
        }
    } else {
        svc.weights = service_weights{};
    }
    const auto& defs = def->checks;
    for (const auto& d : defs) {
        if (auto why = validate_check(d)) {
            return error_response(400, "Invalid check: " + *why);
        }
    }
    for (const auto& d : defs) {
        if (!d.status.empty() && !valid_status(d.status)) {
            return error_response(400, "Status for checks must 'passing', 'warning', 'critical'");
        }
    }
    for (const auto& d : defs) {
        if (d.is_script() && !c.agent.enable_script_checks) {
            return error_response(500, scripts_disabled);
        }
    }
    add_default_tagged_addresses(svc);

    auto& s = c.s;
    const std::string& node = c.agent.node_name;
    if (auto* existing = find_service(s, node, svc.id)) {
        svc.create_index = existing->create_index;
        svc.modify_index = existing->modify_index;
        if (!same_service(*existing, svc)) {
            svc.modify_index = s.write(table_catalog);
            catalog_service_changed(s, existing->name, svc.modify_index);
            catalog_service_changed(s, svc.name, svc.modify_index);
        }
        *existing = svc;
    } else {
        svc.create_index = svc.modify_index = s.write(table_catalog);
        catalog_service_changed(s, svc.name, svc.modify_index);
        s.services[node][svc.id] = svc;
    }

    std::set<std::string> defined;
    for (std::size_t i = 0; i < defs.size(); ++i) {
        check_entry chk = make_check(defs[i], node);
        if (chk.id.empty()) {
            chk.id = "service:" + svc.id;
            if (defs.size() > 1) {
                chk.id += ":" + std::to_string(i + 1);
            }
        }
        if (chk.name.empty()) {
            chk.name = "Service '" + svc.name + "' check";
        }
        chk.service_id = svc.id;
        chk.service_name = svc.name;
        chk.service_tags = svc.tags;
        // Re-registering a service keeps the status and output its checks had (Consul restores
        // them from the agent's check-state snapshot).
        if (const check_entry* prev = find_check(s, node, chk.id)) {
            chk.status = prev->status;
            chk.output = prev->output;
        }
        defined.insert(chk.id);
        put_check(s, std::move(chk));
    }
    // Checks of this service that the new definition does not name: dropped with
    // ?replace-existing-checks (bare or "true"; Consul 1.10 takes no other spelling), otherwise
    // kept with the service's new name and tags.
    const auto replace_param = c.req.param("replace-existing-checks");
    const bool replace_existing =
        replace_param && (replace_param->empty() || *replace_param == "true");
    std::vector<std::string> stale;
    if (auto n = s.checks.find(node); n != s.checks.end()) {
        for (auto& [id, chk] : n->second) {
            if (chk.service_id != svc.id || defined.count(id)) {
                continue;
            }
            if (replace_existing) {
                stale.push_back(id);
            } else if (chk.service_name != svc.name || chk.service_tags != svc.tags) {
                chk.service_name = svc.name;
                chk.service_tags = svc.tags;
                chk.modify_index = s.write(table_catalog);
                catalog_check_changed(s, chk, chk.modify_index);
            }
        }
    }
    for (const auto& id : stale) {
        remove_check(s, node, id);
    }
    return response{};
}

response service_deregister(route_context& c) {
    // Consul logs an unknown service ID and answers 200.
    if (c.rest != "consul") {
        remove_service(c.s, c.agent.node_name, c.rest);
    }
    return response{};
}

/// Reads ?enable= as Go's strconv.ParseBool does.
std::optional<response> parse_enable(const request& req, bool& enable) {
    auto raw = req.param("enable");
    if (!raw) {
        return error_response(400, "Missing value for enable");
    }
    const std::string& v = *raw;
    if (v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True") {
        enable = true;
    } else if (v == "0" || v == "f" || v == "F" || v == "false" || v == "FALSE" || v == "False") {
        enable = false;
    } else {
        std::string quoted;
        append_go_string(quoted, v);
        return error_response(400, "Invalid value for enable: " + quoted);
    }
    return std::nullopt;
}

response service_maintenance(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing service ID");
    }
    bool enable = false;
    if (auto bad = parse_enable(c.req, enable)) {
        return *bad;
    }
    const std::string& node = c.agent.node_name;
    const service_entry* svc = find_service(c.s, node, c.rest);
    if (svc == nullptr || c.rest == "consul") {
        std::string quoted;
        append_go_string(quoted, c.rest);
        return error_response(404, "No service registered with ID " + quoted);
    }
    const std::string id = service_maintenance_prefix + c.rest;
    if (!enable) {
        remove_check(c.s, node, id);
        return response{};
    }
    if (find_check(c.s, node, id) != nullptr) {
        return response{};  // already in maintenance: Consul keeps the first reason
    }
    check_entry chk;
    chk.node = node;
    chk.id = id;
    chk.name = "Service Maintenance Mode";
    chk.notes = c.req.param("reason").value_or("");
    if (chk.notes.empty()) {
        chk.notes = default_service_maintenance_reason;
    }
    chk.status = "critical";
    chk.type = "maintenance";
    chk.service_id = svc->id;
    chk.service_name = svc->name;
    chk.service_tags = svc->tags;
    put_check(c.s, std::move(chk));
    return response{};
}

response node_maintenance(route_context& c) {
    bool enable = false;
    if (auto bad = parse_enable(c.req, enable)) {
        return *bad;
    }
    const std::string& node = c.agent.node_name;
    if (!enable) {
        remove_check(c.s, node, node_maintenance_id);
        return response{};
    }
    if (find_check(c.s, node, node_maintenance_id) != nullptr) {
        return response{};
    }
    check_entry chk;
    chk.node = node;
    chk.id = node_maintenance_id;
    chk.name = "Node Maintenance Mode";
    chk.notes = c.req.param("reason").value_or("");
    if (chk.notes.empty()) {
        chk.notes = default_node_maintenance_reason;
    }
    chk.status = "critical";
    chk.type = "maintenance";
    put_check(c.s, std::move(chk));
    return response{};
}

response check_register(route_context& c) {
    response err;
    auto body = parse_body(c.req, err);
    if (!body) {
        return err;
    }
    if (!body->is_object()) {
        return error_response(400, std::string("Request decode failed: json: cannot unmarshal ") +
                                       json_kind(*body) + " into Go value of type " +
                                       std::string(check_definition_alias));
    }
    go_decode_state st;
    check_definition def = decode_check(*body, false, go_error_context{"", "", false}, st);
    if (auto e = st.error()) {
        return error_response(400, "Request decode failed: " + *e);
    }
    if (def.name.empty()) {
        return error_response(400, "Missing check name");
    }
    if (!def.status.empty() && !valid_status(def.status)) {
        return error_response(400, "Bad check status");
    }
    if (auto why = validate_check(def)) {
        return error_response(400, "Invalid check: " + *why);
    }
    const std::string& node = c.agent.node_name;
    check_entry chk = make_check(def, node);
    if (chk.id.empty()) {
        chk.id = def.name;
    }
    // CheckDefinition.HealthCheck() prints its durations: "0s" when unset.
    chk.shown_interval = def.interval.empty() ? "0s" : def.interval;
    chk.shown_timeout = def.timeout.empty() ? "0s" : def.timeout;
    if (!def.service_id.empty()) {
        const service_entry* svc = find_service(c.s, node, def.service_id);
        if (svc == nullptr || def.service_id == "consul") {
            std::string quoted;
            append_go_string(quoted, def.service_id);
            return error_response(500, "ServiceID " + quoted + " does not exist");
        }
        chk.service_id = svc->id;
        chk.service_name = svc->name;
        chk.service_tags = svc->tags;
    }
    if (def.is_script() && !c.agent.enable_script_checks) {
        return error_response(500, scripts_disabled);
    }
    put_check(c.s, std::move(chk));
    return response{};
}

response check_deregister(route_context& c) {
    // Consul answers 200 for a check it does not know.
    if (c.rest != "serfHealth") {
        remove_check(c.s, c.agent.node_name, c.rest);
    }
    return response{};
}

/// Sets a TTL check's status and re-arms its TTL (agent.updateTTLCheck, CheckTTL.SetStatus).
response update_ttl_check(route_context& c, const std::string& id, const std::string& status,
                          std::string output) {
    auto& s = c.s;
    const std::string& node = c.agent.node_name;
    check_entry* chk = find_check(s, node, id);
    if (chk == nullptr || chk->type != "ttl") {
        std::string quoted;
        append_go_string(quoted, id);
        return error_response(500, "CheckID " + quoted + " does not have associated TTL");
    }
    if (output.size() > max_check_output) {
        const auto total = output.size();
        output.resize(max_check_output);
        output += " ... (captured " + std::to_string(max_check_output) + " of " +
                  std::to_string(total) + " bytes)";
    }
    chk->ttl_deadline =
        s.now() + std::chrono::duration_cast<clock::duration>(duration_of(chk->ttl));
    agent_update_check(s, node, id, status, output);
    return response{};
}

handler ttl_handler(std::string status) {
    return [status](route_context& c) {
        return update_ttl_check(c, c.rest, status, c.req.param("note").value_or(""));
    };
}

response check_update(route_context& c) {
    response err;
    auto body = parse_body(c.req, err);
    if (!body) {
        return err;
    }
    if (!body->is_object()) {
        return error_response(400, std::string("Request decode failed: json: cannot unmarshal ") +
                                       json_kind(*body) +
                                       " into Go value of type agent.checkUpdate");
    }
    go_decode_state st;
    const auto v = go_read_struct(
        *body, {{"Status", go_kind::string, "string"}, {"Output", go_kind::string, "string"}},
        go_error_context{"checkUpdate", "", false}, true, st);
    if (auto e = st.error()) {
        return error_response(400, "Request decode failed: " + *e);
    }
    const auto status = str_at(v, 0);
    if (!valid_status(status)) {
        return error_response(400, "Invalid check status: '" + status + "'");
    }
    return update_ttl_check(c, c.rest, status, str_at(v, 1));
}

}  // namespace

void add_agent_routes(router& r) {
    using v = http::verb;
    r.add(v::get, "agent/self", agent_self);
    r.add(v::put, "agent/maintenance", node_maintenance);
    r.add(v::get, "agent/services", agent_services);
    r.add(v::get, "agent/service/", agent_service);
    r.add(v::get, "agent/checks", agent_checks);
    r.add(v::get, "agent/members", agent_members);
    r.add(v::put, "agent/check/register", check_register);
    r.add(v::put, "agent/check/deregister/", check_deregister);
    r.add(v::put, "agent/check/pass/", ttl_handler("passing"));
    r.add(v::put, "agent/check/warn/", ttl_handler("warning"));
    r.add(v::put, "agent/check/fail/", ttl_handler("critical"));
    r.add(v::put, "agent/check/update/", check_update);
    r.add(v::put, "agent/service/register", service_register);
    r.add(v::put, "agent/service/deregister/", service_deregister);
    r.add(v::put, "agent/service/maintenance/", service_maintenance);
}

}  // namespace lakemesh::testing::detail
