// Session endpoints: https://developer.hashicorp.com/consul/api-docs/session
//
// Invalidation follows Consul: a session ends when it is destroyed, when a check it is linked to
// turns critical or is removed, when its node goes away, or when its TTL lapses. Consul only
// promises to invalidate after up to twice the TTL (its session_ttl multiplier is 2), so a
// session here expires exactly 2 x TTL after its creation or last renewal. Every invalidation,
// explicit destroy included, releases or deletes the session's keys per Behavior and applies the
// session's lock-delay (capped at 60s, as Consul does).
#include "go_json.hpp"
#include "router.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>

namespace lakemesh::testing::detail {
namespace {

using namespace std::chrono_literals;

constexpr std::chrono::nanoseconds session_ttl_min = 10s;
constexpr std::chrono::nanoseconds session_ttl_max = 86400s;
constexpr std::chrono::nanoseconds max_lock_delay = 60s;
constexpr int session_ttl_multiplier = 2;
// Consul reads a LockDelay below 1000 (ns) as seconds: clients often send 15 meaning "15s".
constexpr std::int64_t lock_delay_seconds_threshold = 1000;

json session_json(const session_entry& e) {
    json node_checks = e.node_checks.empty() ? json(nullptr) : json(e.node_checks);
    json service_checks = nullptr;
    if (!e.service_checks.empty()) {
        service_checks = json::array();
        for (const auto& [id, ns] : e.service_checks) {
            service_checks.push_back({{"ID", id}, {"Namespace", ns}});
        }
    }
    return json{{"ID", e.id},
                {"Name", e.name},
                {"Node", e.node},
                {"LockDelay", e.lock_delay.count()},
                {"Behavior", e.behavior},
                {"TTL", e.ttl},
                {"NodeChecks", node_checks},
                {"ServiceChecks", service_checks},
                {"CreateIndex", e.create_index},
                {"ModifyIndex", e.modify_index}};
}

/// Fills `e` from a session/create body as Consul 1.10's Session.UnmarshalJSON does (unknown
/// fields ignored). On failure sets Consul's 400 answer in `err`.
bool decode_create_body(const json& body, session_entry& e, response& err) {
    const auto fail = [&err](const std::string& what) {
        err = error_response(400, "Request decode failed: " + what);
        return false;
    };
    if (body.is_null()) {
        return true;
    }
    if (!body.is_object()) {
        return fail(std::string("json: cannot unmarshal ") + json_kind(body) +
                    " into Go value of type struct { LockDelay interface {}; *structs.Alias }");
    }
    go_decode_state st;
    std::vector<std::pair<std::string, std::string>> service_checks;
    const std::vector<go_field_spec> fields{
        {"ID", go_kind::string, "string"},
        {"Name", go_kind::string, "string"},
        {"Node", go_kind::string, "string"},
        {"Checks", go_kind::string_slice, "[]types.CheckID", "types.CheckID"},
        {"NodeChecks", go_kind::string_slice, "[]string", "string"},
        {"ServiceChecks", go_kind::object_slice, "[]structs.ServiceCheck", "structs.ServiceCheck",
         [&service_checks](const json& v, go_decode_state& state) {
             const auto sc = go_read_struct(
                 v, {{"ID", go_kind::string, "string"}, {"Namespace", go_kind::string, "string"}},
                 go_error_context{"ServiceCheck", "ServiceChecks", false}, false, state);
             service_checks.emplace_back(sc[0] ? sc[0]->get<std::string>() : std::string{},
                                         sc[1] ? sc[1]->get<std::string>() : std::string{});
         }},
        {"LockDelay", go_kind::any, ""},
        {"Behavior", go_kind::string, "structs.SessionBehavior"},
        {"TTL", go_kind::string, "string"},
        {"CreateIndex", go_kind::uint64, "uint64"},
        {"ModifyIndex", go_kind::uint64, "uint64"},
    };
    const auto v = go_read_struct(body, fields, go_error_context{"", "", false}, false, st);
    if (auto e2 = st.error()) {
        return fail(*e2);
    }
    if (v[1]) {
        e.name = v[1]->get<std::string>();
    }
    if (v[2]) {
        e.node = v[2]->get<std::string>();
    }
    if (v[7]) {
        e.behavior = v[7]->get<std::string>();
    }
    if (v[8]) {
        e.ttl = v[8]->get<std::string>();
    }
    if (const json* d = v[6]) {
        std::chrono::nanoseconds delay{0};
        if (d->is_string()) {
            const auto text = d->get<std::string>();
            auto parsed = parse_go_duration(text);
            if (!parsed) {
                std::string quoted;
                append_go_string(quoted, text);
                return fail("time: invalid duration " + quoted);
            }
            delay = *parsed;
        } else if (d->is_number()) {
            delay = std::chrono::nanoseconds(static_cast<std::int64_t>(d->get<double>()));
        }
        if (d->is_string() || d->is_number()) {
            // Consul reads a LockDelay below 1000 (ns) as seconds: clients send 15 for "15s".
            if (delay.count() != 0 && delay.count() < lock_delay_seconds_threshold) {
                delay *= 1'000'000'000;
            }
            e.lock_delay = delay;
        }
    }
    for (auto& sc : service_checks) {
        e.service_checks.push_back(std::move(sc));
    }
    // Both lists default to [serfHealth]; then Consul's agent (fixupEmptySessionChecks) applies:
    // "Checks": [] empties NodeChecks too; a Checks still at its default is dropped in favour of
    // NodeChecks (so "NodeChecks": [...] alone is the exact list); otherwise an empty NodeChecks
    // drops Checks. ServiceChecks add to whatever remains.
    const bool legacy_present = go_field(body, "Checks") != nullptr;
    const bool node_present = go_field(body, "NodeChecks") != nullptr;
    std::vector<std::string> legacy_checks =
        v[3] ? std::vector<std::string>{} : std::vector<std::string>{};
    std::vector<std::string> node_checks;
    if (v[3]) {
        for (const auto& x : *v[3]) {
            legacy_checks.push_back(x.is_string() ? x.get<std::string>() : std::string{});
        }
    }
    if (v[4]) {
        for (const auto& x : *v[4]) {
            node_checks.push_back(x.is_string() ? x.get<std::string>() : std::string{});
        }
    }
    if (!legacy_present) {
        legacy_checks = {"serfHealth"};
    }
    if (!node_present) {
        node_checks = {"serfHealth"};
    }
    if (legacy_checks.empty()) {
        node_checks.clear();
    } else if (legacy_checks.size() == 1 && legacy_checks.front() == "serfHealth") {
        legacy_checks.clear();
    } else if (node_checks.empty()) {
        legacy_checks.clear();
    }
    // Consul reports the legacy list merged into NodeChecks.
    e.node_checks.clear();
    for (auto* list : {&node_checks, &legacy_checks}) {
        for (auto& id : *list) {
            if (std::find(e.node_checks.begin(), e.node_checks.end(), id) == e.node_checks.end()) {
                e.node_checks.push_back(std::move(id));
            }
        }
    }
    return true;
}

/// Consul's server-side validation; errors are 500 with Consul's text, as a real agent answers.
std::optional<response> validate_session(const store& s, session_entry& e) {
    if (e.node.empty()) {
        return error_response(500, "Must provide Node");
    }
    if (e.behavior.empty()) {
        e.behavior = "release";
    }
    if (e.behavior != "release" && e.behavior != "delete") {
        return error_response(500, "Invalid Behavior setting '" + e.behavior + "'");
    }
    if (!e.ttl.empty()) {
        auto ttl = parse_go_duration(e.ttl);
        if (!ttl) {
            return error_response(500, "Session TTL '" + e.ttl +
                                           "' invalid: time: invalid duration \"" + e.ttl + "\"");
        }
        if (ttl->count() != 0 && (*ttl < session_ttl_min || *ttl > session_ttl_max)) {
            return error_response(500, "Invalid Session TTL '" + std::to_string(ttl->count()) +
                                           "', must be between [" +
                                           format_go_duration(session_ttl_min) + "=" +
                                           format_go_duration(session_ttl_max) + "]");
        }
        e.ttl_duration = *ttl;
    }
    // What the state store refuses reaches the client as "apply failed: ...".
    if (!s.nodes.count(e.node)) {
        return error_response(500, "apply failed: Missing node registration");
    }
    std::vector<std::string> ids = e.node_checks;
    for (const auto& sc : e.service_checks) {
        ids.push_back(sc.first);
    }
    auto node_checks = s.checks.find(e.node);
    for (const auto& id : ids) {
        const check_entry* check = nullptr;
        if (node_checks != s.checks.end()) {
            if (auto it = node_checks->second.find(id); it != node_checks->second.end()) {
                check = &it->second;
            }
        }
        if (check == nullptr) {
            return error_response(500, "apply failed: Missing check '" + id + "' registration");
        }
        if (check->status == "critical") {
            return error_response(500, "apply failed: Check '" + id + "' is in critical state");
        }
    }
    return std::nullopt;
}

void arm_ttl(const store& s, session_entry& e) {
    if (e.ttl_duration.count() > 0) {
        e.ttl_deadline = s.now() + std::chrono::duration_cast<clock::duration>(
                                       e.ttl_duration * session_ttl_multiplier);
    } else {
        e.ttl_deadline.reset();
    }
}

response session_create(route_context& c) {
    auto& s = c.s;
    session_entry e;
    e.node = c.agent.node_name;
    e.node_checks = {"serfHealth"};
    if (!c.req.body.empty()) {
        response err;
        auto body = parse_body(c.req, err);
        if (!body) {
            return err;
        }
        if (!decode_create_body(*body, e, err)) {
            return err;
        }
    }
    if (auto err = validate_session(s, e)) {
        return *err;
    }
    do {
        e.id = make_uuid();
    } while (s.sessions.count(e.id));
    auto idx = s.write(table_sessions);
    e.create_index = idx;
    e.modify_index = idx;
    arm_ttl(s, e);
    auto id = e.id;
    s.sessions.emplace(id, std::move(e));
    return json_response(json{{"ID", id}});
}

response session_destroy(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing session");
    }
    if (auto bad = memdb_uuid_error(c.rest)) {
        return error_response(500, "apply failed: failed session lookup: index error: " + *bad);
    }
    // Destroying an absent session is not an error in Consul.
    destroy_session(c.s, c.rest);
    return json_response(true);
}

response session_renew(route_context& c) {
    if (c.rest.empty()) {
        return error_response(400, "Missing session");
    }
    if (auto bad = memdb_uuid_error(c.rest)) {
        return error_response(500, "failed session lookup: index error: " + *bad);
    }
    auto it = c.s.sessions.find(c.rest);
    if (it == c.s.sessions.end()) {
        return error_response(404, "Session id '" + c.rest + "' not found");
    }
    arm_ttl(c.s, it->second);
    return json_response(json::array({session_json(it->second)}));
}

response session_info(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing session");
        r.no_index = true;
        return r;
    }
    if (auto bad = memdb_uuid_error(c.rest)) {
        response r = error_response(500, "failed session lookup: index error: " + *bad);
        r.index = 1;  // the failed query's meta still goes out
        return r;
    }
    json out = json::array();
    if (auto it = c.s.sessions.find(c.rest); it != c.s.sessions.end()) {
        out.push_back(session_json(it->second));
    }
    return json_response(out, c.s.table_index(table_sessions));
}

response session_list(route_context& c) {
    json out = json::array();
    for (const auto& [id, e] : c.s.sessions) {
        out.push_back(session_json(e));
    }
    return json_response(out, c.s.table_index(table_sessions));
}

response session_node(route_context& c) {
    if (c.rest.empty()) {
        response r = error_response(400, "Missing node name");
        r.no_index = true;
        return r;
    }
    json out = json::array();
    for (const auto& [id, e] : c.s.sessions) {
        if (e.node == c.rest) {
            out.push_back(session_json(e));
        }
    }
    return json_response(out, c.s.table_index(table_sessions));
}

void destroy_all(store& s, const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
        destroy_session(s, id);
    }
}

}  // namespace

bool destroy_session(store& s, const std::string& id) {
    auto it = s.sessions.find(id);
    if (it == s.sessions.end()) {
        return false;
    }
    session_entry ended = std::move(it->second);
    s.sessions.erase(it);
    s.write(table_sessions);
    ended.lock_delay = std::min(ended.lock_delay, max_lock_delay);
    kv_release_session(s, ended);
    return true;
}

void sessions_tick(store& s) {
    const auto now = s.now();
    std::vector<std::string> expired;
    for (const auto& [id, e] : s.sessions) {
        if (e.ttl_deadline && now >= *e.ttl_deadline) {
            expired.push_back(id);
        }
    }
    destroy_all(s, expired);
}

void sessions_on_check_critical(store& s, const std::string& node, const std::string& check_id) {
    const bool node_gone = !s.nodes.count(node);
    std::vector<std::string> doomed;
    for (const auto& [id, e] : s.sessions) {
        if (e.node != node) {
            continue;
        }
        bool linked = node_gone ||
                      std::find(e.node_checks.begin(), e.node_checks.end(), check_id) !=
                          e.node_checks.end() ||
                      std::any_of(e.service_checks.begin(), e.service_checks.end(),
                                  [&](const auto& sc) { return sc.first == check_id; });
        if (linked) {
            doomed.push_back(id);
        }
    }
    destroy_all(s, doomed);
}

void add_session_routes(router& r) {
    r.add(http::verb::put, "session/create", session_create);
    r.add(http::verb::put, "session/destroy/", session_destroy);
    r.add(http::verb::put, "session/renew/", session_renew);
    r.add(http::verb::get, "session/info/", session_info, table_sessions);
    r.add(http::verb::get, "session/list", session_list, table_sessions);
    r.add(http::verb::get, "session/node/", session_node, table_sessions);
}

}  // namespace lakemesh::testing::detail
