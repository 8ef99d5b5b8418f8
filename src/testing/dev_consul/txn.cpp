// Transaction endpoint: https://developer.hashicorp.com/consul/api-docs/txn
//
// All KV verbs; of the Node, Service and Check operations only "get" (dev_consul changes the
// catalog through the agent endpoints only). A transaction is all-or-nothing: the operations
// run against copies of the KV table and its tombstones, which replace the real ones only when
// every operation succeeded, under one raft index. Read-only transactions answer as Consul's
// read path does (its query meta in the body, leader headers).
#include "catalog_json.hpp"
#include "go_json.hpp"
#include "router.hpp"

#include "core/base64.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace lakemesh::testing::detail {
namespace {

constexpr std::size_t max_txn_ops = 64;
// Consul's txn_max_req_len default; the larger of it and kv_max_value_size applies.
constexpr std::size_t default_txn_max_req_len = 512u * 1024u;

struct txn_op {
    enum kind_t { kv_op, node_op, service_op, check_op } kind = kv_op;
    std::string verb;
    // KV
    std::string key;
    std::string value;
    std::uint64_t flags = 0;
    std::uint64_t index = 0;
    std::string session;
    // Node / Service / Check gets
    std::string node;
    std::string id;
};

struct op_error {
    std::size_t op_index = 0;
    std::string what;
};

/// Go's %q for the ASCII subset Consul's messages show.
std::string go_quote(std::string_view text) {
    std::string out = "\"";
    for (unsigned char ch : text) {
        switch (ch) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\r':
                out += "\\r";
                break;
            default:
                if (ch < 0x20 || ch == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\x%02x", ch);
                    out += buf;
                } else {
                    out += static_cast<char>(ch);
                }
        }
    }
    return out + "\"";
}

response parse_error(std::string_view what) {
    return error_response(400, "Failed to parse body: " + std::string(what));
}

/// Consul's isWrite: a KV verb it does not know counts as a read; a catalog operation other
/// than "get" as a write.
bool is_read(const txn_op& op) {
    if (op.kind != txn_op::kv_op) {
        return op.verb == "get";
    }
    return !(op.verb == "set" || op.verb == "delete" || op.verb == "delete-cas" ||
             op.verb == "delete-tree" || op.verb == "cas" || op.verb == "lock" ||
             op.verb == "unlock");
}

/// Where base64.StdEncoding stops on `text`, as encoding/json reports it.
std::optional<std::size_t> base64_error_offset(std::string_view text) {
    const auto in_alphabet = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '/';
    };
    std::size_t i = 0;
    for (; i < text.size(); ++i) {
        if (!in_alphabet(text[i])) {
            break;
        }
    }
    if (i == text.size()) {
        if (text.size() % 4 != 0) {
            return text.size() - text.size() % 4;
        }
        return std::nullopt;
    }
    // Padding: only at the end, completing the last quantum.
    if (text[i] == '=' && i % 4 >= 2) {
        std::size_t pad = 0;
        while (i + pad < text.size() && text[i + pad] == '=') {
            ++pad;
        }
        if (i + pad == text.size() && (i + pad) % 4 == 0 && pad <= 2) {
            return std::nullopt;
        }
        return i + pad < text.size() ? i + pad : i;
    }
    return i;
}

json kv_entry_json(const kv_entry& e, bool with_value) {
    json j{
        {"LockIndex", e.lock_index},
        {"Key", e.key},
        {"Flags", e.flags},
        {"Value", (with_value && !e.value.empty()) ? json(lakemesh::detail::base64_encode(e.value))
                                                   : json(nullptr)}};
    if (!e.session.empty()) {
        j["Session"] = e.session;
    }
    j["CreateIndex"] = e.create_index;
    j["ModifyIndex"] = e.modify_index;
    return j;
}

/// The catalog's own form of a service and a check (the transaction API does not turn empty
/// lists into [] as the HTTP endpoints do).
json raw_service_json(const service_entry& svc) {
    json j = node_service_json(svc);
    if (svc.tags.empty()) {
        j["Tags"] = nullptr;
    }
    return j;
}

json raw_check_json(const check_entry& c) {
    json j = check_json(c);
    if (c.service_tags.empty()) {
        j["ServiceTags"] = nullptr;
    }
    return j;
}

/// Runs the operations against `kv` / `graveyard` (copies of the store's) at raft index `idx`.
class txn_runner {
  public:
    txn_runner(const store& s, std::map<std::string, kv_entry>& kv,
               std::map<std::string, tombstone>& graveyard, std::uint64_t idx)
        : s_(s), kv_(kv), graveyard_(graveyard), idx_(idx) {}

    bool changed = false;

    std::optional<std::string> run(const txn_op& op, json& results) {
        switch (op.kind) {
            case txn_op::node_op:
                return node_get(op, results);
            case txn_op::service_op:
                return service_get(op, results);
            case txn_op::check_op:
                return check_get(op, results);
            case txn_op::kv_op:
                break;
        }
        const auto& v = op.verb;
        if (v == "set")
            return set(op, results);
        if (v == "cas")
            return cas(op, results);
        if (v == "lock")
            return lock(op, results);
        if (v == "unlock")
            return unlock(op, results);
        if (v == "get")
            return get(op, results);
        if (v == "get-tree")
            return get_tree(op, results);
        if (v == "check-index")
            return check_index(op, results);
        if (v == "check-session")
            return check_session(op, results);
        if (v == "check-not-exists") {
            if (kv_.count(op.key))
                return "key " + go_quote(op.key) + " exists";
            return std::nullopt;
        }
        if (v == "delete") {
            erase(op.key);
            return std::nullopt;
        }
        if (v == "delete-tree") {
            auto first = kv_.lower_bound(op.key);
            auto last = first;
            while (last != kv_.end() && last->first.starts_with(op.key)) {
                ++last;
            }
            if (first != last) {
                kv_.erase(first, last);
                if (!op.key.empty()) {
                    graveyard_[op.key] = tombstone{idx_, s_.now()};
                }
                changed = true;
            }
            return std::nullopt;
        }
        if (v == "delete-cas") {
            auto it = kv_.find(op.key);
            if (it == kv_.end()) {
                return std::nullopt;  // Consul: deleting an absent key is a success
            }
            if (it->second.modify_index != op.index) {
                return "failed to delete key " + go_quote(op.key) + ", index is stale";
            }
            erase(op.key);
            return std::nullopt;
        }
        return "unknown KV verb " + go_quote(v);
    }

  private:
    void erase(const std::string& key) {
        if (kv_.erase(key) != 0) {
            graveyard_[key] = tombstone{idx_, s_.now()};
            changed = true;
        }
    }

    /// kvsSetTxn: writes value and flags (and the lock fields given), keeping CreateIndex;
    /// an unchanged entry keeps its ModifyIndex.
    kv_entry& write(const txn_op& op, std::optional<std::string> session,
                    std::optional<std::uint64_t> lock_index) {
        auto it = kv_.find(op.key);
        kv_entry next;
        next.key = op.key;
        next.value = op.value;
        next.flags = op.flags;
        if (it != kv_.end()) {
            next.session = it->second.session;
            next.lock_index = it->second.lock_index;
            next.create_index = it->second.create_index;
        } else {
            next.create_index = idx_;
        }
        if (session) {
            next.session = *session;
        }
        if (lock_index) {
            next.lock_index = *lock_index;
        }
        if (it != kv_.end() && it->second.value == next.value && it->second.flags == next.flags &&
            it->second.session == next.session && it->second.lock_index == next.lock_index) {
            return it->second;
        }
        next.modify_index = idx_;
        changed = true;
        return kv_[op.key] = std::move(next);
    }

    std::optional<std::string> set(const txn_op& op, json& results) {
        results.push_back({{"KV", kv_entry_json(write(op, std::nullopt, std::nullopt), false)}});
        return std::nullopt;
    }

    std::optional<std::string> cas(const txn_op& op, json& results) {
        auto it = kv_.find(op.key);
        bool ok = op.index == 0 ? it == kv_.end()
                                : (it != kv_.end() && it->second.modify_index == op.index);
        if (!ok) {
            return "failed to set key " + go_quote(op.key) + ", index is stale";
        }
        return set(op, results);
    }

    std::optional<std::string> lock(const txn_op& op, json& results) {
        if (op.session.empty()) {
            return "missing session";
        }
        if (auto bad = memdb_uuid_error(op.session)) {
            return "failed session lookup: index error: " + *bad;
        }
        if (!s_.sessions.count(op.session)) {
            return "invalid session " + go_quote(op.session);
        }
        auto it = kv_.find(op.key);
        if (it != kv_.end() && !it->second.session.empty() && it->second.session != op.session) {
            return "failed to lock key " + go_quote(op.key) + ", lock is already held";
        }
        std::uint64_t lock_index = 1;
        if (it != kv_.end()) {
            lock_index = it->second.lock_index + (it->second.session == op.session ? 0 : 1);
        }
        results.push_back({{"KV", kv_entry_json(write(op, op.session, lock_index), false)}});
        return std::nullopt;
    }

    std::optional<std::string> unlock(const txn_op& op, json& results) {
        if (op.session.empty()) {
            return "missing session";
        }
        auto it = kv_.find(op.key);
        if (it == kv_.end() || it->second.session != op.session) {
            return "failed to unlock key " + go_quote(op.key) +
                   ", lock isn't held, or is held by another session";
        }
        results.push_back({{"KV", kv_entry_json(write(op, std::string{}, std::nullopt), false)}});
        return std::nullopt;
    }

    std::optional<std::string> get(const txn_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "key " + go_quote(op.key) + " doesn't exist";
        }
        results.push_back({{"KV", kv_entry_json(it->second, true)}});
        return std::nullopt;
    }

    std::optional<std::string> get_tree(const txn_op& op, json& results) {
        for (auto it = kv_.lower_bound(op.key); it != kv_.end() && it->first.starts_with(op.key);
             ++it) {
            results.push_back({{"KV", kv_entry_json(it->second, true)}});
        }
        return std::nullopt;
    }

    std::optional<std::string> check_index(const txn_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "failed to check index, key " + go_quote(op.key) + " doesn't exist";
        }
        if (it->second.modify_index != op.index) {
            return "failed index check for key " + go_quote(op.key) + ", current modify index " +
                   std::to_string(it->second.modify_index) + " != " + std::to_string(op.index);
        }
        results.push_back({{"KV", kv_entry_json(it->second, false)}});
        return std::nullopt;
    }

    std::optional<std::string> check_session(const txn_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "failed to check session, key " + go_quote(op.key) + " doesn't exist";
        }
        if (it->second.session != op.session) {
            return "failed session check for key " + go_quote(op.key) + ", current session " +
                   go_quote(it->second.session) + " != " + go_quote(op.session);
        }
        results.push_back({{"KV", kv_entry_json(it->second, false)}});
        return std::nullopt;
    }

    std::optional<std::string> node_get(const txn_op& op, json& results) {
        if (op.verb != "get") {
            return "unknown Node verb " + go_quote(op.verb);
        }
        auto it = s_.nodes.find(op.node);
        if (it == s_.nodes.end()) {
            return "node " + go_quote(op.node) + " doesn't exist";
        }
        results.push_back({{"Node", node_json(it->second)}});
        return std::nullopt;
    }

    std::optional<std::string> service_get(const txn_op& op, json& results) {
        if (op.verb != "get") {
            return "unknown Service verb " + go_quote(op.verb);
        }
        if (auto n = s_.services.find(op.node); n != s_.services.end()) {
            if (auto it = n->second.find(op.id); it != n->second.end()) {
                results.push_back({{"Service", raw_service_json(it->second)}});
                return std::nullopt;
            }
        }
        return "service " + go_quote(op.id) + " on node " + go_quote(op.node) + " doesn't exist";
    }

    std::optional<std::string> check_get(const txn_op& op, json& results) {
        if (op.verb != "get") {
            return "unknown Check verb " + go_quote(op.verb);
        }
        if (auto n = s_.checks.find(op.node); n != s_.checks.end()) {
            if (auto it = n->second.find(op.id); it != n->second.end()) {
                results.push_back({{"Check", raw_check_json(it->second)}});
                return std::nullopt;
            }
        }
        return "check " + go_quote(op.id) + " on node " + go_quote(op.node) + " doesn't exist";
    }

    const store& s_;
    std::map<std::string, kv_entry>& kv_;
    std::map<std::string, tombstone>& graveyard_;
    std::uint64_t idx_;
};

/// Consul's read path puts its query meta in the body too.
void add_read_meta(json& body) {
    body["Index"] = 1;
    body["LastContact"] = 0;
    body["KnownLeader"] = true;
    body["ConsistencyLevel"] = "";
    body["NotModified"] = false;
    body["Backend"] = 0;
}

response answer(json results, const std::vector<op_error>& errors, bool read) {
    json body = json::object();
    if (errors.empty()) {
        body["Results"] = std::move(results);
        body["Errors"] = nullptr;
    } else {
        json list = json::array();
        for (const auto& e : errors) {
            list.push_back({{"OpIndex", e.op_index}, {"What", e.what}});
        }
        body["Results"] = nullptr;
        body["Errors"] = std::move(list);
    }
    if (read) {
        add_read_meta(body);
    }
    response r = json_response(std::move(body));
    r.status = errors.empty() ? 200 : 409;
    // Consul serves a read-only transaction like a read: leader headers, but no index.
    r.leader_meta = read;
    return r;
}

/// Decodes the body as Consul's Txn endpoint does (api.TxnOps, unknown fields refused).
std::optional<response> decode_ops(const json& body, std::vector<txn_op>& ops) {
    if (!body.is_null() && !body.is_array()) {
        return parse_error(std::string("json: cannot unmarshal ") + json_kind(body) +
                           " into Go value of type api.TxnOps");
    }
    go_decode_state st;
    if (body.is_null()) {
        return std::nullopt;
    }
    for (const json& item : body) {
        if (item.is_null()) {
            continue;
        }
        if (!item.is_object()) {
            if (!st.saved) {
                st.saved = std::string("json: cannot unmarshal ") + json_kind(item) +
                           " into Go value of type api.TxnOp";
            }
            continue;
        }
        std::optional<txn_op> op;
        const auto kv_fields = [&op](const json& v, go_decode_state& state) {
            const auto f = go_read_struct(v,
                                          {{"Verb", go_kind::string, "api.KVOp"},
                                           {"Key", go_kind::string, "string"},
                                           {"Value", go_kind::bytes, "[]uint8"},
                                           {"Flags", go_kind::uint64, "uint64"},
                                           {"Index", go_kind::uint64, "uint64"},
                                           {"Session", go_kind::string, "string"},
                                           {"Namespace", go_kind::string, "string"}},
                                          go_error_context{"KVTxnOp", "KV", false}, true, state);
            txn_op o;
            o.kind = txn_op::kv_op;
            o.verb = f[0] ? f[0]->get<std::string>() : "";
            o.key = f[1] ? f[1]->get<std::string>() : "";
            if (f[2]) {
                const auto text = f[2]->get<std::string>();
                if (auto at = base64_error_offset(text)) {
                    if (!state.saved) {
                        state.saved = "illegal base64 data at input byte " + std::to_string(*at);
                    }
                } else if (auto decoded = lakemesh::detail::base64_decode(text)) {
                    o.value = std::move(*decoded);
                }
            }
            o.flags = f[3] ? f[3]->get<std::uint64_t>() : 0;
            o.index = f[4] ? f[4]->get<std::uint64_t>() : 0;
            o.session = f[5] ? f[5]->get<std::string>() : "";
            op = std::move(o);
        };
        const auto catalog_get = [&op](txn_op::kind_t kind, const char* name) {
            return [&op, kind, name](const json& v, go_decode_state& state) {
                const std::string type = std::string("api.") + name + "TxnOp";
                const std::string verb_type = std::string("api.") + name + "Op";
                const auto f = go_read_struct(
                    v,
                    {{"Verb", go_kind::string, verb_type},
                     {"Node", kind == txn_op::node_op ? go_kind::object : go_kind::any, "api.Node"},
                     {"Service", go_kind::object, "api.AgentService"},
                     {"Check", go_kind::object, "api.HealthCheck"}},
                    go_error_context{type.substr(4), name, false}, false, state);
                txn_op o;
                o.kind = kind;
                o.verb = f[0] && f[0]->is_string() ? f[0]->get<std::string>() : "";
                const auto str = [](const json* obj, const char* key) {
                    if (obj == nullptr || !obj->is_object()) {
                        return std::string{};
                    }
                    const json* x = go_field(*obj, key);
                    return x != nullptr && x->is_string() ? x->get<std::string>() : std::string{};
                };
                if (kind == txn_op::node_op) {
                    o.node = str(f[1], "Node");
                } else if (kind == txn_op::service_op) {
                    o.node = f[1] && f[1]->is_string() ? f[1]->get<std::string>() : "";
                    o.id = str(f[2], "ID");
                } else {
                    o.node = str(f[3], "Node");
                    o.id = str(f[3], "CheckID");
                }
                op = std::move(o);
            };
        };
        go_read_struct(
            item,
            {{"KV", go_kind::object, "api.KVTxnOp", "", kv_fields},
             {"Node", go_kind::object, "api.NodeTxnOp", "", catalog_get(txn_op::node_op, "Node")},
             {"Service", go_kind::object, "api.ServiceTxnOp", "",
              catalog_get(txn_op::service_op, "Service")},
             {"Check", go_kind::object, "api.CheckTxnOp", "",
              catalog_get(txn_op::check_op, "Check")}},
            go_error_context{"TxnOp", "", false}, true, st);
        if (op) {
            ops.push_back(std::move(*op));
        }
    }
    if (auto e = st.error()) {
        return parse_error(*e);
    }
    return std::nullopt;
}

response txn_put(route_context& c) {
    auto& s = c.s;
    const auto max_len = std::max(default_txn_max_req_len, c.kv_max_value_size);
    if (c.req.body.size() > max_len) {
        response r = error_response(
            413, "Request body(" + std::to_string(c.req.body.size()) +
                     " bytes) too large, max size: " + std::to_string(max_len) +
                     " bytes. See https://www.consul.io/docs/agent/options.html#txn_max_req_len.");
        r.close = true;
        return r;
    }
    auto decoded = go_decode(c.req.body);
    if (auto* err = std::get_if<std::string>(&decoded)) {
        return parse_error(*err);
    }
    const json& body = std::get<json>(decoded);
    std::vector<txn_op> ops;
    if (auto bad = decode_ops(body, ops)) {
        return *bad;
    }
    if (ops.size() > max_txn_ops) {
        return error_response(413, "Transaction contains too many operations (" +
                                       std::to_string(ops.size()) + " > " +
                                       std::to_string(max_txn_ops) + ")");
    }
    for (const auto& op : ops) {
        if (op.kind == txn_op::kv_op && op.value.size() > c.kv_max_value_size) {
            return error_response(413, "Value for key " + go_quote(op.key) + " is too large (" +
                                           std::to_string(op.value.size()) + " > " +
                                           std::to_string(c.kv_max_value_size) + " bytes)");
        }
    }
    const bool read = std::all_of(ops.begin(), ops.end(), is_read);

    // The leader's checks before applying: a key given, no lock-delay in force.
    std::vector<op_error> errors;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto& op = ops[i];
        if (op.kind != txn_op::kv_op) {
            continue;
        }
        if (op.key.empty() && op.verb != "delete-tree") {
            errors.push_back({i, "Must provide key"});
            continue;
        }
        if (op.verb == "lock") {
            auto d = s.lock_delays.find(op.key);
            if (d != s.lock_delays.end() && s.now() < d->second) {
                errors.push_back(
                    {i, "failed to lock key " + go_quote(op.key) + " due to lock delay"});
            }
        }
    }
    if (!errors.empty()) {
        return answer(nullptr, errors, read);
    }
    auto kv = s.kv;
    auto graveyard = s.tombstones;
    const std::uint64_t idx = s.index + 1;  // what s.write() will assign on commit
    txn_runner runner(s, kv, graveyard, idx);
    json results = json::array();
    for (std::size_t i = 0; i < ops.size(); ++i) {
        if (auto what = runner.run(ops[i], results)) {
            return answer(nullptr, {op_error{i, std::move(*what)}}, read);
        }
    }
    if (!read && runner.changed) {
        s.write(table_kv);
        s.kv = std::move(kv);
        s.tombstones = std::move(graveyard);
    }
    return answer(std::move(results), {}, read);
}

}  // namespace

void add_txn_routes(router& r) {
    r.add(http::verb::put, "txn", txn_put);
}

}  // namespace lakemesh::testing::detail
