// Agent endpoints: https://developer.hashicorp.com/consul/api-docs/agent,
// .../agent/service and .../agent/check. They act on the receiving agent's own node.
#include "catalog_json.hpp"
#include "filter.hpp"
#include "go_json.hpp"
#include "router.hpp"

#include <cctype>
#include <cstdio>
#include <functional>

namespace lakemesh::testing::detail {
namespace {

constexpr const char* consul_version = "1.17.0";
constexpr std::size_t max_check_output = 4096;
const std::string node_maintenance_id = "_node_maintenance";
const std::string service_maintenance_prefix = "_service_maintenance:";
const std::string default_node_maintenance_reason =
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default "
    "message.";
const std::string default_service_maintenance_reason =
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default "
    "message.";

// ------------------------------------------------------------------ request decoding

/// Go's encoding/json matches field names case-insensitively, and Consul also accepts the
/// snake_case spellings of its config files; both are folded here.
std::string fold_key(std::string_view k) {
    std::string out;
    for (char ch : k) {
        if (ch != '_') {
            out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
    }
    return out;
}

const json* field(const json& obj, std::string_view name) {
    if (!obj.is_object()) {
        return nullptr;
    }
    if (auto it = obj.find(std::string(name)); it != obj.end()) {
        return it->is_null() ? nullptr : &*it;
    }
    const auto want = fold_key(name);
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        if (fold_key(it.key()) == want) {
            return it->is_null() ? nullptr : &*it;
        }
    }
    return nullptr;
}

/// Reads typed fields of one JSON object, remembering the first type error as Consul's 400.
class decoder {
  public:
    decoder(const json& obj, std::string go_struct) : obj_(obj), struct_(std::move(go_struct)) {}

    std::optional<std::string> error;

    bool has(std::string_view name) const { return field(obj_, name) != nullptr; }

    std::string str(std::string_view name) {
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return {};
        }
        if (!v->is_string()) {
            mismatch(*v, name, "string");
            return {};
        }
        return v->get<std::string>();
    }

    std::optional<std::int64_t> integer(std::string_view name) {
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return std::nullopt;
        }
        if (!v->is_number_integer()) {
            mismatch(*v, name, "int");
            return std::nullopt;
        }
        return v->get<std::int64_t>();
    }

    bool boolean(std::string_view name) {
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return false;
        }
        if (!v->is_boolean()) {
            mismatch(*v, name, "bool");
            return false;
        }
        return v->get<bool>();
    }

    std::vector<std::string> strings(std::string_view name) {
        std::vector<std::string> out;
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return out;
        }
        if (!v->is_array()) {
            mismatch(*v, name, "[]string");
            return out;
        }
        for (const auto& e : *v) {
            if (!e.is_string()) {
                mismatch(e, name, "string");
                return {};
            }
            out.push_back(e.get<std::string>());
        }
        return out;
    }

    std::map<std::string, std::string> string_map(std::string_view name) {
        std::map<std::string, std::string> out;
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return out;
        }
        if (!v->is_object()) {
            mismatch(*v, name, "map[string]string");
            return out;
        }
        for (auto it = v->begin(); it != v->end(); ++it) {
            if (!it->is_string()) {
                mismatch(*it, name, "string");
                return {};
            }
            out[it.key()] = it->get<std::string>();
        }
        return out;
    }

    std::map<std::string, std::vector<std::string>> header_map(std::string_view name) {
        std::map<std::string, std::vector<std::string>> out;
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return out;
        }
        if (!v->is_object()) {
            mismatch(*v, name, "map[string][]string");
            return out;
        }
        for (auto it = v->begin(); it != v->end(); ++it) {
            if (!it->is_array()) {
                mismatch(*it, name, "[]string");
                return {};
            }
            for (const auto& e : *it) {
                if (!e.is_string()) {
                    mismatch(e, name, "string");
                    return {};
                }
                out[it.key()].push_back(e.get<std::string>());
            }
        }
        return out;
    }

    /// Consul takes durations as Go duration text or as a number of nanoseconds.
    std::string duration(std::string_view name) {
        const json* v = field(obj_, name);
        if (v == nullptr) {
            return {};
        }
        if (v->is_number_integer()) {
            return format_go_duration(std::chrono::nanoseconds(v->get<std::int64_t>()));
        }
        if (!v->is_string()) {
            mismatch(*v, name, "time.Duration");
            return {};
        }
        auto text = v->get<std::string>();
        if (!text.empty() && !parse_go_duration(text) && !error) {
            error = "Request decode failed: time: invalid duration \"" + text + "\"";
        }
        return text;
    }

  private:
    void mismatch(const json& v, std::string_view name, const char* go_type) {
        if (!error) {
            error = std::string("Request decode failed: json: cannot unmarshal ") + json_kind(v) +
                    " into Go struct field " + struct_ + "." + std::string(name) + " of type " +
                    go_type;
        }
    }

    const json& obj_;
    std::string struct_;
};

std::chrono::nanoseconds duration_of(const std::string& text) {
    return text.empty() ? std::chrono::nanoseconds{0}
                        : parse_go_duration(text).value_or(std::chrono::nanoseconds{0});
}

bool valid_status(const std::string& s) {
    return s == "passing" || s == "warning" || s == "critical";
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
    std::string udp;
    std::string grpc;
    bool grpc_use_tls = false;
    std::string h2ping;
    std::string os_service;
    std::string alias_service;
    std::string alias_node;
    bool script = false;
    std::string interval;
    std::string timeout;
    std::string deregister_critical_service_after;

    std::string type() const {
        if (!ttl.empty() && duration_of(ttl).count() > 0)
            return "ttl";
        if (!http.empty())
            return "http";
        if (!tcp.empty())
            return "tcp";
        if (!udp.empty())
            return "udp";
        if (!grpc.empty())
            return "grpc";
        if (!h2ping.empty())
            return "h2ping";
        if (!os_service.empty())
            return "os_service";
        if (!alias_service.empty() || !alias_node.empty())
            return "alias";
        if (script)
            return "script";
        return "";
    }
};

/// Decodes a check definition; `prefixed_id` is "CheckID" for agent/check/register (which also
/// takes "ID") and for checks inside a service definition.
check_definition decode_check(const json& obj, const std::string& go_struct,
                              std::optional<std::string>& error) {
    decoder d(obj, go_struct);
    check_definition c;
    c.id = d.has("CheckID") ? d.str("CheckID") : d.str("ID");
    c.name = d.str("Name");
    c.notes = d.str("Notes");
    c.status = d.str("Status");
    c.service_id = d.str("ServiceID");
    c.ttl = d.duration("TTL");
    c.http = d.str("HTTP");
    c.method = d.str("Method");
    c.header = d.header_map("Header");
    c.body = d.str("Body");
    c.tls_skip_verify = d.boolean("TLSSkipVerify");
    c.tcp = d.str("TCP");
    c.udp = d.str("UDP");
    c.grpc = d.str("GRPC");
    c.grpc_use_tls = d.boolean("GRPCUseTLS");
    c.h2ping = d.str("H2PING");
    c.os_service = d.str("OSService");
    c.alias_service = d.str("AliasService");
    c.alias_node = d.str("AliasNode");
    c.script =
        !d.strings("Args").empty() || !d.strings("ScriptArgs").empty() || !d.str("Script").empty();
    c.interval = d.duration("Interval");
    c.timeout = d.duration("Timeout");
    c.deregister_critical_service_after = d.duration("DeregisterCriticalServiceAfter");
    if (!error) {
        error = d.error;
    }
    return c;
}

/// structs.CheckType.Validate: the reason after "Invalid check: ".
std::optional<std::string> validate_check(const check_definition& c) {
    const bool interval_check = c.script || !c.http.empty() || !c.tcp.empty() || !c.udp.empty() ||
                                !c.grpc.empty() || !c.h2ping.empty() || !c.os_service.empty();
    const bool alias = !c.alias_service.empty() || !c.alias_node.empty();
    const auto interval = duration_of(c.interval);
    const auto ttl = duration_of(c.ttl);
    if (interval.count() > 0 && ttl.count() > 0) {
        return "Interval and TTL cannot both be specified";
    }
    if (interval_check && interval.count() <= 0) {
        return "Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks";
    }
    if (interval_check && alias) {
        return "Interval cannot be set for Alias checks";
    }
    if (alias && ttl.count() > 0) {
        return "TTL must be not be set for Alias checks";
    }
    if (!interval_check && !alias && ttl.count() <= 0) {
        return "TTL must be > 0 for TTL checks";
    }
    return std::nullopt;
}

/// A check definition made only of zero values counts as absent (CheckType.Empty()).
bool empty_definition(const json& obj) {
    if (!obj.is_object()) {
        return false;
    }
    for (const auto& v : obj) {
        bool zero = v.is_null() || (v.is_string() && v.get<std::string>().empty()) ||
                    (v.is_number() && v.get<double>() == 0) || (v.is_boolean() && !v.get<bool>()) ||
                    ((v.is_array() || v.is_object()) && v.empty());
        if (!zero) {
            return false;
        }
    }
    return true;
}

const char* scripts_disabled =
    "Scripts are disabled on this agent from remote calls; to enable, configure the "
    "'enable_script_checks' or 'enable_local_script_checks' option to true";

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
    c.deregister_critical_service_after = def.deregister_critical_service_after;
    return c;
}

bool same_check(const check_entry& a, const check_entry& b) {
    return a.name == b.name && a.status == b.status && a.notes == b.notes && a.output == b.output &&
           a.service_id == b.service_id && a.service_name == b.service_name &&
           a.service_tags == b.service_tags && a.type == b.type && a.interval == b.interval &&
           a.timeout == b.timeout && a.ttl == b.ttl && a.http == b.http && a.method == b.method &&
           a.header == b.header && a.body == b.body && a.tls_skip_verify == b.tls_skip_verify &&
           a.tcp == b.tcp && a.grpc == b.grpc && a.grpc_use_tls == b.grpc_use_tls &&
           a.deregister_critical_service_after == b.deregister_critical_service_after;
}

bool same_service(const service_entry& a, const service_entry& b) {
    return a.name == b.name && a.tags == b.tags && a.meta == b.meta && a.address == b.address &&
           a.port == b.port && a.weights.passing == b.weights.passing &&
           a.weights.warning == b.weights.warning &&
           a.enable_tag_override == b.enable_tag_override && a.kind == b.kind;
}

/// Stores `c` (replacing a check with the same id). The catalog index moves only when
/// something visible changed, as Consul's anti-entropy only syncs differences. Timers restart
/// as a re-registered check's runner does.
void put_check(store& s, check_entry c) {
    auto& slot = s.checks[c.node][c.id];
    const bool existed = slot.create_index != 0;
    const auto now = s.now();
    if (c.type == "ttl") {
        c.ttl_deadline = now + std::chrono::duration_cast<clock::duration>(duration_of(c.ttl));
    }
    if (c.type == "http" || c.type == "tcp") {
        c.next_run = now;
    }
    if (existed && same_check(slot, c)) {
        c.create_index = slot.create_index;
        c.modify_index = slot.modify_index;
        c.critical_since = slot.critical_since;
        slot = std::move(c);
        return;
    }
    const auto idx = s.write(table_catalog);
    c.create_index = existed ? slot.create_index : idx;
    c.modify_index = idx;
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
    if (n == s.checks.end() || n->second.erase(id) == 0) {
        return false;
    }
    s.write(table_catalog);
    // Consul invalidates sessions whose linked check is deregistered.
    sessions_on_check_critical(s, node, id);
    return true;
}

// ------------------------------------------------------------------ handlers

json member_json(const agent_info& a) {
    return json{{"Name", a.node_name},
                {"Addr", a.address},
                {"Port", 8301},
                {"Tags",
                 {{"role", "consul"},
                  {"dc", a.datacenter},
                  {"id", a.node_id},
                  {"port", "8300"},
                  {"build", consul_version},
                  {"vsn", "2"},
                  {"vsn_min", "2"},
                  {"vsn_max", "3"}}},
                {"Status", a.running ? 1 : 4},
                {"ProtocolMin", 1},
                {"ProtocolMax", 5},
                {"ProtocolCur", 2},
                {"DelegateMin", 2},
                {"DelegateMax", 5},
                {"DelegateCur", 4}};
}

response agent_self(route_context& c) {
    json meta = json::object();
    if (auto n = c.s.nodes.find(c.agent.node_name); n != c.s.nodes.end()) {
        for (const auto& [k, v] : n->second.meta) {
            meta[k] = v;
        }
    }
    json config{{"Datacenter", c.agent.datacenter}, {"PrimaryDatacenter", c.agent.datacenter},
                {"NodeName", c.agent.node_name},    {"NodeID", c.agent.node_id},
                {"Revision", "lakemesh-dev"},       {"Server", true},
                {"Version", consul_version},        {"BuildDate", "2023-11-01T00:00:00Z"}};
    return json_response(json{{"Config", config},
                              {"DebugConfig", json::object()},
                              {"Coord", nullptr},
                              {"Member", member_json(c.agent)},
                              {"Stats", json::object()},
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
            out[id] = agent_service_json(svc, c.agent.datacenter);
        }
    }
    if (auto err = apply_filter(c.req.param("filter"), out)) {
        return error_response(400, *err);
    }
    return json_response(out);
}

response agent_service(route_context& c) {
    const service_entry* svc = find_service(c.s, c.agent.node_name, c.rest);
    if (svc == nullptr) {
        return error_response(404, "unknown service ID: " + c.rest);
    }
    json out = agent_service_json(*svc, c.agent.datacenter);
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(out.dump()));
    out["ContentHash"] = hash;
    return json_response(out);
}

response agent_checks(route_context& c) {
    json out = json::object();
    if (auto n = c.s.checks.find(c.agent.node_name); n != c.s.checks.end()) {
        for (const auto& [id, chk] : n->second) {
            if (id == "serfHealth") {
                continue;  // a cluster-level check, not one the agent owns
            }
            out[id] = check_json(chk);
        }
    }
    if (auto err = apply_filter(c.req.param("filter"), out)) {
        return error_response(400, *err);
    }
    return json_response(out);
}

response service_register(route_context& c) {
    response err;
    auto body = parse_body(c.req, err);
    if (!body) {
        return err;
    }
    if (!body->is_object()) {
        return error_response(400, std::string("Request decode failed: json: cannot unmarshal ") +
                                       json_kind(*body) +
                                       " into Go value of type structs.ServiceDefinition");
    }
    decoder d(*body, "ServiceDefinition");
    service_entry svc;
    svc.node = c.agent.node_name;
    svc.name = d.str("Name");
    svc.id = d.str("ID");
    svc.tags = d.strings("Tags");
    svc.meta = d.string_map("Meta");
    svc.address = d.str("Address");
    svc.kind = d.str("Kind");
    svc.port = static_cast<int>(d.integer("Port").value_or(0));
    svc.enable_tag_override = d.boolean("EnableTagOverride");
    bool weights_given = false;
    if (const json* w = field(*body, "Weights")) {
        if (!w->is_object()) {
            return error_response(
                400, std::string("Request decode failed: json: cannot unmarshal ") + json_kind(*w) +
                         " into Go struct field ServiceDefinition.Weights of "
                         "type structs.Weights");
        }
        decoder wd(*w, "Weights");
        svc.weights.passing = static_cast<int>(wd.integer("Passing").value_or(0));
        svc.weights.warning = static_cast<int>(wd.integer("Warning").value_or(0));
        if (wd.error) {
            return error_response(400, *wd.error);
        }
        weights_given = true;
    }
    std::vector<check_definition> defs;
    std::optional<std::string> check_err;
    if (const json* one = field(*body, "Check")) {
        if (!one->is_object()) {
            return error_response(400,
                                  std::string("Request decode failed: json: cannot unmarshal ") +
                                      json_kind(*one) +
                                      " into Go struct field ServiceDefinition.Check of "
                                      "type structs.CheckType");
        }
        if (!empty_definition(*one)) {
            defs.push_back(decode_check(*one, "CheckType", check_err));
        }
    }
    if (const json* many = field(*body, "Checks")) {
        if (!many->is_array()) {
            return error_response(400,
                                  std::string("Request decode failed: json: cannot unmarshal ") +
                                      json_kind(*many) +
                                      " into Go struct field ServiceDefinition.Checks of "
                                      "type structs.CheckTypes");
        }
        for (const auto& one : *many) {
            if (!one.is_object()) {
                return error_response(
                    400, std::string("Request decode failed: json: cannot unmarshal ") +
                             json_kind(one) +
                             " into Go struct field ServiceDefinition.Checks of type "
                             "structs.CheckType");
            }
            defs.push_back(decode_check(one, "CheckType", check_err));
        }
    }
    if (d.error) {
        return error_response(400, *d.error);
    }
    if (check_err) {
        return error_response(400, *check_err);
    }
    if (svc.name.empty()) {
        return error_response(400, "Missing service name");
    }
    if (svc.id.empty()) {
        svc.id = svc.name;
    }
    if (weights_given) {
        if (svc.weights.passing < 1) {
            return error_response(400, "Invalid Weights: Passing must be greater than 0");
        }
        if (svc.weights.warning < 0) {
            return error_response(400, "Invalid Weights: Warning must be greater or equal than 0");
        }
    } else {
        svc.weights = service_weights{};
    }
    for (const auto& def : defs) {
        if (def.status != "" && !valid_status(def.status)) {
            return error_response(400, "Invalid check: Bad check status");
        }
        if (auto why = validate_check(def)) {
            return error_response(400, "Invalid check: " + *why);
        }
        if (def.script) {
            return error_response(500, scripts_disabled);
        }
    }

    auto& s = c.s;
    const std::string& node = c.agent.node_name;
    if (auto* existing = find_service(s, node, svc.id)) {
        svc.create_index = existing->create_index;
        svc.modify_index = existing->modify_index;
        if (!same_service(*existing, svc)) {
            svc.modify_index = s.write(table_catalog);
        }
        *existing = svc;
    } else {
        svc.create_index = svc.modify_index = s.write(table_catalog);
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
    // ?replace-existing-checks, otherwise kept with the service's new name and tags.
    std::vector<std::string> stale;
    if (auto n = s.checks.find(node); n != s.checks.end()) {
        for (auto& [id, chk] : n->second) {
            if (chk.service_id != svc.id || defined.count(id)) {
                continue;
            }
            if (c.req.flag("replace-existing-checks")) {
                stale.push_back(id);
            } else if (chk.service_name != svc.name || chk.service_tags != svc.tags) {
                chk.service_name = svc.name;
                chk.service_tags = svc.tags;
                chk.modify_index = s.write(table_catalog);
            }
        }
    }
    for (const auto& id : stale) {
        remove_check(s, node, id);
    }
    return json_response(nullptr);
}

response service_deregister(route_context& c) {
    if (!remove_service(c.s, c.agent.node_name, c.rest)) {
        return error_response(404, "Unknown service ID \"" + c.rest + "\"");
    }
    return json_response(nullptr);
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
        return error_response(400, "Invalid value for enable: \"" + v + "\"");
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
    if (svc == nullptr) {
        return error_response(404, "No service registered with ID \"" + c.rest + "\"");
    }
    const std::string id = service_maintenance_prefix + c.rest;
    if (!enable) {
        remove_check(c.s, node, id);
        return json_response(nullptr);
    }
    if (find_check(c.s, node, id) != nullptr) {
        return json_response(nullptr);  // already in maintenance: Consul keeps the first reason
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
    return json_response(nullptr);
}

response node_maintenance(route_context& c) {
    bool enable = false;
    if (auto bad = parse_enable(c.req, enable)) {
        return *bad;
    }
    const std::string& node = c.agent.node_name;
    if (!enable) {
        remove_check(c.s, node, node_maintenance_id);
        return json_response(nullptr);
    }
    if (find_check(c.s, node, node_maintenance_id) != nullptr) {
        return json_response(nullptr);
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
    return json_response(nullptr);
}

response check_register(route_context& c) {
    response err;
    auto body = parse_body(c.req, err);
    if (!body) {
        return err;
    }
    if (!body->is_object()) {
        return error_response(400, std::string("Request decode failed: json: cannot unmarshal ") +
                                       json_kind(*body) +
                                       " into Go value of type structs.CheckDefinition");
    }
    std::optional<std::string> decode_err;
    check_definition def = decode_check(*body, "CheckDefinition", decode_err);
    if (decode_err) {
        return error_response(400, *decode_err);
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
    if (!def.service_id.empty()) {
        const service_entry* svc = find_service(c.s, node, def.service_id);
        if (svc == nullptr) {
            return error_response(404, "ServiceID \"" + def.service_id + "\" does not exist");
        }
        chk.service_id = svc->id;
        chk.service_name = svc->name;
        chk.service_tags = svc->tags;
    }
    if (def.script) {
        return error_response(500, scripts_disabled);
    }
    put_check(c.s, std::move(chk));
    return json_response(nullptr);
}

response check_deregister(route_context& c) {
    if (!remove_check(c.s, c.agent.node_name, c.rest)) {
        return error_response(404, "Unknown check ID \"" + c.rest +
                                       "\". Ensure that the check ID is passed, not the check "
                                       "name.");
    }
    return json_response(nullptr);
}

/// Sets a TTL check's status and re-arms its TTL (agent.updateTTLCheck).
response update_ttl_check(route_context& c, const std::string& id, const std::string& status,
                          std::string output) {
    auto& s = c.s;
    const std::string& node = c.agent.node_name;
    check_entry* chk = find_check(s, node, id);
    if (chk == nullptr) {
        return error_response(404, "Unknown check ID \"" + id +
                                       "\". Ensure that the check ID is passed, not the check "
                                       "name.");
    }
    if (chk->type != "ttl") {
        return error_response(500, "CheckID \"" + id + "\" does not have associated TTL");
    }
    if (output.size() > max_check_output) {
        const auto total = output.size();
        output.resize(max_check_output);
        output += "\n...\nCaptured " + std::to_string(max_check_output) + " of " +
                  std::to_string(total) + " bytes";
    }
    chk->ttl_deadline =
        s.now() + std::chrono::duration_cast<clock::duration>(duration_of(chk->ttl));
    set_check_status(s, node, id, status, output);
    return json_response(nullptr);
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
    decoder d(*body, "checkUpdate");
    auto status = d.str("Status");
    auto output = d.str("Output");
    if (d.error) {
        return error_response(400, *d.error);
    }
    if (!valid_status(status)) {
        return error_response(400, "Invalid check status: '" + status + "'");
    }
    return update_ttl_check(c, c.rest, status, std::move(output));
}

}  // namespace

void add_agent_routes(router& r) {
    using v = http::verb;
    r.add(v::get, "agent/self", agent_self);
    r.add(v::get, "agent/members", agent_members);
    r.add(v::get, "agent/services", agent_services);
    r.add(v::get, "agent/service/", agent_service);
    r.add(v::put, "agent/service/register", service_register);
    r.add(v::put, "agent/service/deregister/", service_deregister);
    r.add(v::put, "agent/service/maintenance/", service_maintenance);
    r.add(v::put, "agent/maintenance", node_maintenance);
    r.add(v::get, "agent/checks", agent_checks);
    r.add(v::put, "agent/check/register", check_register);
    r.add(v::put, "agent/check/deregister/", check_deregister);
    r.add(v::put, "agent/check/pass/", ttl_handler("passing"));
    r.add(v::put, "agent/check/warn/", ttl_handler("warning"));
    r.add(v::put, "agent/check/fail/", ttl_handler("critical"));
    r.add(v::put, "agent/check/update/", check_update);
}

}  // namespace lakemesh::testing::detail
