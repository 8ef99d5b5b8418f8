// Transaction endpoint: https://developer.hashicorp.com/consul/api-docs/txn
//
// Only KV operations are supported; Node, Service and Check operations get 400. A transaction is
// all-or-nothing: the operations run against a copy of the KV table, which replaces the real one
// only when every operation succeeded, under one raft index.
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

struct kv_op {
    std::string verb;
    std::string key;
    std::string value;
    std::uint64_t flags = 0;
    std::uint64_t index = 0;
    std::string session;
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

bool is_write(const std::string& verb) {
    return verb == "set" || verb == "delete" || verb == "delete-cas" || verb == "delete-tree" ||
           verb == "cas" || verb == "lock" || verb == "unlock";
}

bool read_u64(const json& kv, std::string_view name, std::uint64_t& out, response& err) {
    const json* v = go_field(kv, name);
    if (v == nullptr || v->is_null()) {
        return true;
    }
    if (v->is_number_unsigned()) {
        out = v->get<std::uint64_t>();
        return true;
    }
    if (v->is_number_float()) {
        double d = v->get<double>();
        if (d >= 0 && d < 1.8e19 && std::floor(d) == d) {
            out = static_cast<std::uint64_t>(d);
            return true;
        }
    }
    err = parse_error("json: cannot unmarshal value into Go struct field KVTxnOp.KV." +
                      std::string(name) + " of type uint64");
    return false;
}

bool read_string(const json& kv, std::string_view name, std::string& out, response& err) {
    const json* v = go_field(kv, name);
    if (v == nullptr || v->is_null()) {
        return true;
    }
    if (!v->is_string()) {
        err = parse_error("json: cannot unmarshal value into Go struct field KVTxnOp.KV." +
                          std::string(name) + " of type string");
        return false;
    }
    out = v->get<std::string>();
    return true;
}

/// Decodes one KV operation; on failure sets the 400 answer.
bool decode_kv_op(const json& kv, kv_op& op, response& err) {
    if (!kv.is_object()) {
        err = parse_error(
            "json: cannot unmarshal value into Go struct field TxnOp.KV of type "
            "api.KVTxnOp");
        return false;
    }
    std::string value64;
    if (!read_string(kv, "Verb", op.verb, err) || !read_string(kv, "Key", op.key, err) ||
        !read_string(kv, "Session", op.session, err) || !read_u64(kv, "Flags", op.flags, err) ||
        !read_u64(kv, "Index", op.index, err)) {
        return false;
    }
    if (const json* v = go_field(kv, "Value"); v != nullptr && !v->is_null()) {
        if (!v->is_string()) {
            err = parse_error("unexpected value type: " + std::string(v->type_name()));
            return false;
        }
        auto decoded = lakemesh::detail::base64_decode(v->get<std::string>());
        if (!decoded) {
            err = parse_error("failed to decode value: illegal base64 data");
            return false;
        }
        op.value = std::move(*decoded);
    }
    return true;
}

json entry_json(const kv_entry& e, bool with_value) {
    json j{
        {"LockIndex", e.lock_index},
        {"Key", e.key},
        {"Flags", e.flags},
        {"Value", (with_value && !e.value.empty()) ? json(lakemesh::detail::base64_encode(e.value))
                                                   : json(nullptr)},
        {"CreateIndex", e.create_index},
        {"ModifyIndex", e.modify_index}};
    if (!e.session.empty()) {
        j["Session"] = e.session;
    }
    return j;
}

/// Runs the transaction against `kv` (a copy of the store's table) at raft index `idx`.
/// Returns the error of the first failing operation, or appends results.
class txn_runner {
  public:
    txn_runner(const store& s, std::map<std::string, kv_entry>& kv, std::uint64_t idx)
        : s_(s), kv_(kv), idx_(idx) {}

    std::optional<std::string> run(const kv_op& op, json& results) {
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
            kv_.erase(op.key);
            return std::nullopt;
        }
        if (v == "delete-tree") {
            auto first = kv_.lower_bound(op.key);
            auto last = first;
            while (last != kv_.end() && last->first.starts_with(op.key)) {
                ++last;
            }
            kv_.erase(first, last);
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
            kv_.erase(it);
            return std::nullopt;
        }
        return "unknown KV verb " + go_quote(v);
    }

  private:
    /// Writes value and flags, keeping the lock holder and LockIndex (Consul's plain set).
    kv_entry& write(const kv_op& op) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            it = kv_.emplace(op.key, kv_entry{}).first;
            it->second.key = op.key;
            it->second.create_index = idx_;
        }
        auto& e = it->second;
        e.value = op.value;
        e.flags = op.flags;
        e.modify_index = idx_;
        return e;
    }

    std::optional<std::string> set(const kv_op& op, json& results) {
        results.push_back({{"KV", entry_json(write(op), false)}});
        return std::nullopt;
    }

    std::optional<std::string> cas(const kv_op& op, json& results) {
        auto it = kv_.find(op.key);
        bool ok = op.index == 0 ? it == kv_.end()
                                : (it != kv_.end() && it->second.modify_index == op.index);
        if (!ok) {
            return "failed to set key " + go_quote(op.key) + ", index is stale";
        }
        return set(op, results);
    }

    std::optional<std::string> lock(const kv_op& op, json& results) {
        if (op.session.empty()) {
            return "missing session";
        }
        if (!s_.sessions.count(op.session)) {
            return "invalid session " + go_quote(op.session);
        }
        auto it = kv_.find(op.key);
        if (it != kv_.end() && !it->second.session.empty() && it->second.session != op.session) {
            return "failed to lock key " + go_quote(op.key) + ", lock is already held";
        }
        bool newly_held = it == kv_.end() || it->second.session != op.session;
        auto& e = write(op);
        if (newly_held) {
            ++e.lock_index;
            e.session = op.session;
        }
        results.push_back({{"KV", entry_json(e, false)}});
        return std::nullopt;
    }

    std::optional<std::string> unlock(const kv_op& op, json& results) {
        if (op.session.empty()) {
            return "missing session";
        }
        auto it = kv_.find(op.key);
        if (it == kv_.end() || it->second.session != op.session) {
            return "failed to unlock key " + go_quote(op.key) +
                   ", lock isn't held, or is held by another session";
        }
        auto& e = write(op);
        e.session.clear();
        results.push_back({{"KV", entry_json(e, false)}});
        return std::nullopt;
    }

    std::optional<std::string> get(const kv_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "key " + go_quote(op.key) + " doesn't exist";
        }
        results.push_back({{"KV", entry_json(it->second, true)}});
        return std::nullopt;
    }

    std::optional<std::string> get_tree(const kv_op& op, json& results) {
        for (auto it = kv_.lower_bound(op.key); it != kv_.end() && it->first.starts_with(op.key);
             ++it) {
            results.push_back({{"KV", entry_json(it->second, true)}});
        }
        return std::nullopt;
    }

    std::optional<std::string> check_index(const kv_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "failed to check index, key " + go_quote(op.key) + " doesn't exist";
        }
        if (it->second.modify_index != op.index) {
            return "failed index check for key " + go_quote(op.key) + ", current modify index " +
                   std::to_string(it->second.modify_index) + " != " + std::to_string(op.index);
        }
        results.push_back({{"KV", entry_json(it->second, false)}});
        return std::nullopt;
    }

    std::optional<std::string> check_session(const kv_op& op, json& results) {
        auto it = kv_.find(op.key);
        if (it == kv_.end()) {
            return "failed to check session, key " + go_quote(op.key) + " doesn't exist";
        }
        if (it->second.session != op.session) {
            return "failed session check for key " + go_quote(op.key) + ", current session " +
                   go_quote(it->second.session) + " != " + go_quote(op.session);
        }
        results.push_back({{"KV", entry_json(it->second, false)}});
        return std::nullopt;
    }

    const store& s_;
    std::map<std::string, kv_entry>& kv_;
    std::uint64_t idx_;
};

response conflict(const std::vector<op_error>& errors) {
    json list = json::array();
    for (const auto& e : errors) {
        list.push_back({{"OpIndex", e.op_index}, {"What", e.what}});
    }
    response r = json_response(json{{"Results", nullptr}, {"Errors", list}});
    r.status = 409;
    return r;
}

/// Checks Consul makes before applying: keys present, no lock-delay in force.
std::vector<op_error> pre_check(const store& s, const std::vector<kv_op>& ops) {
    std::vector<op_error> errors;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto& op = ops[i];
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
    return errors;
}

response txn_put(route_context& c) {
    auto& s = c.s;
    const auto max_len = std::max(default_txn_max_req_len, c.kv_max_value_size);
    if (c.req.body.size() > max_len) {
        return error_response(
            413, "Request body too large, max size: " + std::to_string(max_len) + " bytes");
    }
    if (c.req.body.empty()) {
        return parse_error("EOF");
    }
    auto body = json::parse(c.req.body, nullptr, false);
    if (body.is_discarded()) {
        return parse_error("invalid character in JSON body");
    }
    if (!body.is_null() && !body.is_array()) {
        return parse_error("json: cannot unmarshal " + std::string(body.type_name()) +
                           " into Go value of type api.TxnOps");
    }
    const std::size_t count = body.is_array() ? body.size() : 0;
    if (count > max_txn_ops) {
        return error_response(413, "Transaction contains too many operations (" +
                                       std::to_string(count) + " > " + std::to_string(max_txn_ops) +
                                       ")");
    }
    std::vector<kv_op> ops;
    bool writes = false;
    for (std::size_t i = 0; i < count; ++i) {
        const json& item = body[i];
        if (!item.is_object()) {
            return parse_error("json: cannot unmarshal " + std::string(item.type_name()) +
                               " into Go value of type api.TxnOp");
        }
        if (go_field(item, "Node") || go_field(item, "Service") || go_field(item, "Check")) {
            return error_response(400,
                                  "dev_consul supports only KV operations in transactions (op " +
                                      std::to_string(i) + ")");
        }
        const json* kv = go_field(item, "KV");
        if (kv == nullptr || kv->is_null()) {
            continue;  // Consul skips operations of no known kind
        }
        kv_op op;
        response err;
        if (!decode_kv_op(*kv, op, err)) {
            return err;
        }
        if (op.value.size() > c.kv_max_value_size) {
            return error_response(413, "Value for key " + go_quote(op.key) + " is too large (" +
                                           std::to_string(op.value.size()) + " > " +
                                           std::to_string(c.kv_max_value_size) + " bytes)");
        }
        writes = writes || is_write(op.verb);
        ops.push_back(std::move(op));
    }

    if (auto errors = pre_check(s, ops); !errors.empty()) {
        return conflict(errors);
    }
    auto working = s.kv;
    const std::uint64_t idx = s.index + 1;  // what s.write() will assign on commit
    txn_runner runner(s, working, idx);
    json results = json::array();
    for (std::size_t i = 0; i < ops.size(); ++i) {
        if (auto what = runner.run(ops[i], results)) {
            return conflict({op_error{i, std::move(*what)}});
        }
    }
    if (writes) {
        s.write(table_kv);
        s.kv = std::move(working);
    }
    response ok = json_response(
        json{{"Results", results.empty() ? json(nullptr) : results}, {"Errors", nullptr}});
    // Consul serves a read-only transaction like a read: leader headers, but no index.
    ok.leader_meta = !writes;
    return ok;
}

}  // namespace

void add_txn_routes(router& r) {
    r.add(http::verb::put, "txn", txn_put);
}

}  // namespace lakemesh::testing::detail
