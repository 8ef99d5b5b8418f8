// KV endpoints: https://developer.hashicorp.com/consul/api-docs/kv
//
// Indexes follow Consul's state store: a read of one key answers its ModifyIndex; a missing key
// the KV table's index (deletes included); a listing the highest ModifyIndex under the prefix or
// of a tombstone (deleted key) under it, else the table index. A blocking read therefore wakes
// only when its own answer's index moves.
#include "router.hpp"

#include "core/base64.hpp"

namespace lakemesh::testing::detail {
namespace {

/// Consul's tombstone_ttl default: deleted keys are remembered for this long.
constexpr auto tombstone_ttl = std::chrono::minutes(15);

json entry_json(const kv_entry& e) {
    json j{
        {"LockIndex", e.lock_index},
        {"Key", e.key},
        {"Flags", e.flags},
        {"Value", e.value.empty() ? json(nullptr) : json(lakemesh::detail::base64_encode(e.value))},
    };
    if (!e.session.empty()) {
        j["Session"] = e.session;
    }
    j["CreateIndex"] = e.create_index;
    j["ModifyIndex"] = e.modify_index;
    return j;
}

/// Consul tells whether a flag is set by its presence alone: ?recurse=false recurses.
bool present(const route_context& c, const char* name) {
    return c.req.has(name);
}

/// Consul's conflictingFlags: more than one of `names` given is a 400 naming the whole query.
std::optional<response> conflicting(const route_context& c,
                                    std::initializer_list<const char*> names) {
    int n = 0;
    for (const char* name : names) {
        n += present(c, name) ? 1 : 0;
    }
    if (n > 1) {
        return error_response(400, "Conflicting flags: " + go_encode_query(c.req.query));
    }
    return std::nullopt;
}

/// A 404 that still carries the index, as Consul's empty KV reads do.
response not_found(std::uint64_t index) {
    response r;
    r.status = 404;
    r.index = index;
    return r;
}

response kv_get(route_context& c) {
    auto& s = c.s;
    const auto& key = c.rest;
    if (present(c, "keys")) {
        const auto sep = c.req.param("separator").value_or("");
        json out = json::array();
        std::string last;
        for (auto it = s.kv.lower_bound(key); it != s.kv.end() && it->first.starts_with(key);
             ++it) {
            std::string k = it->first;
            if (!sep.empty()) {
                if (auto pos = k.find(sep, key.size()); pos != std::string::npos) {
                    k.resize(pos + sep.size());
                    if (k == last) {
                        continue;
                    }
                    last = k;
                }
            }
            out.push_back(std::move(k));
        }
        const auto idx = kv_list_index(s, key);
        if (out.empty()) {
            return not_found(idx);
        }
        return json_response(std::move(out), idx);
    }
    if (present(c, "recurse")) {
        json out = json::array();
        for (auto it = s.kv.lower_bound(key); it != s.kv.end() && it->first.starts_with(key);
             ++it) {
            out.push_back(entry_json(it->second));
        }
        const auto idx = kv_list_index(s, key);
        if (out.empty()) {
            return not_found(idx);
        }
        return json_response(std::move(out), idx);
    }
    if (key.empty()) {
        response r = error_response(400, "Missing key name");
        r.no_index = true;
        return r;
    }
    auto it = s.kv.find(key);
    if (it == s.kv.end()) {
        return not_found(s.kv_index);
    }
    const auto idx = it->second.modify_index;
    if (present(c, "raw")) {
        // Consul serves raw values so that no browser runs them (the fix for CVE-2020-7219).
        response r;
        r.body = it->second.value;
        r.content_type = "text/plain";
        r.explicit_length = true;
        r.headers = {{"Content-Security-Policy", "sandbox"}, {"X-Content-Type-Options", "nosniff"}};
        r.index = idx;
        return r;
    }
    return json_response(json::array({entry_json(it->second)}), idx);
}

/// "raft apply failed: <why>" as a KV write's state-store error reaches the client.
response apply_failed(const std::string& why) {
    return error_response(500, "raft apply failed: " + why);
}

response kv_put(route_context& c) {
    auto& s = c.s;
    const auto& key = c.rest;
    if (key.empty()) {
        return error_response(400, "Missing key name");
    }
    if (auto bad = conflicting(c, {"cas", "acquire", "release"})) {
        return *bad;
    }
    std::string err;
    std::uint64_t flags = 0;
    if (present(c, "flags")) {
        auto f = go_parse_uint(*c.req.param("flags"), err);
        if (!f) {
            return error_response(500, err);
        }
        flags = *f;
    }
    std::optional<std::uint64_t> cas;
    if (present(c, "cas")) {
        cas = go_parse_uint(*c.req.param("cas"), err);
        if (!cas) {
            return error_response(500, err);
        }
    }
    if (c.req.body.size() > c.kv_max_value_size) {
        response r = error_response(
            413,
            "Request body(" + std::to_string(c.req.body.size()) +
                " bytes) too large, max size: " + std::to_string(c.kv_max_value_size) +
                " bytes. See https://www.consul.io/docs/agent/options.html#kv_max_value_size.");
        r.close = true;  // Go's server hangs up on a large body its handler did not read
        return r;
    }
    auto it = s.kv.find(key);
    const auto acquire = c.req.param("acquire");
    const auto release = c.req.param("release");
    kv_entry next;
    next.key = key;
    next.value = c.req.body;
    next.flags = flags;
    if (it != s.kv.end()) {
        next.session = it->second.session;
        next.lock_index = it->second.lock_index;
        next.create_index = it->second.create_index;
    }
    if (acquire) {
        // The leader refuses a lock during its lock-delay before anything else (kvsPreApply).
        if (auto d = s.lock_delays.find(key); d != s.lock_delays.end()) {
            if (s.now() < d->second) {
                return json_response(false);
            }
            s.lock_delays.erase(d);
        }
        if (acquire->empty()) {
            return apply_failed("missing session");
        }
        if (auto bad = memdb_uuid_error(*acquire)) {
            return apply_failed("failed session lookup: index error: " + *bad);
        }
        if (!s.sessions.count(*acquire)) {
            return apply_failed("invalid session \"" + *acquire + "\"");
        }
        if (it != s.kv.end() && !it->second.session.empty() && it->second.session != *acquire) {
            return json_response(false);
        }
        if (it == s.kv.end()) {
            next.lock_index = 1;
        } else if (it->second.session != *acquire) {
            ++next.lock_index;
        }
        next.session = *acquire;
    } else if (release) {
        if (release->empty()) {
            return apply_failed("missing session");
        }
        if (it == s.kv.end() || it->second.session != *release) {
            return json_response(false);
        }
        next.session.clear();
    } else if (cas) {
        const bool ok =
            *cas == 0 ? it == s.kv.end() : (it != s.kv.end() && it->second.modify_index == *cas);
        if (!ok) {
            return json_response(false);
        }
    }
    // An unchanged entry is not written again: its ModifyIndex stays (kvsSetTxn).
    if (it != s.kv.end() && it->second.value == next.value && it->second.flags == next.flags &&
        it->second.session == next.session && it->second.lock_index == next.lock_index) {
        return json_response(true);
    }
    const auto idx = s.write(table_kv);
    if (it == s.kv.end()) {
        next.create_index = idx;
        it = s.kv.emplace(key, kv_entry{}).first;
    }
    next.modify_index = idx;
    it->second = std::move(next);
    return json_response(true);
}

response kv_delete(route_context& c) {
    auto& s = c.s;
    const auto& key = c.rest;
    if (auto bad = conflicting(c, {"recurse", "cas"})) {
        return *bad;
    }
    if (present(c, "recurse")) {
        if (s.kv.lower_bound(key) != s.kv.end() && s.kv.lower_bound(key)->first.starts_with(key)) {
            kv_delete_tree(s, key, s.write(table_kv));
        }
        return json_response(true);
    }
    if (key.empty()) {
        return error_response(400, "Missing key name");
    }
    auto it = s.kv.find(key);
    if (present(c, "cas")) {
        std::string err;
        auto want = go_parse_uint(*c.req.param("cas"), err);
        if (!want) {
            return error_response(500, err);
        }
        if (it == s.kv.end()) {
            return json_response(true);  // nothing to delete is a success (kvsDeleteCASTxn)
        }
        if (it->second.modify_index != *want) {
            return json_response(false);
        }
    }
    if (it != s.kv.end()) {
        kv_delete_key(s, key, s.write(table_kv));
    }
    return json_response(true);
}

}  // namespace

std::uint64_t kv_list_index(const store& s, const std::string& prefix) {
    if (prefix.empty()) {
        return s.kv_index;
    }
    std::uint64_t idx = 0;
    for (auto it = s.kv.lower_bound(prefix); it != s.kv.end() && it->first.starts_with(prefix);
         ++it) {
        idx = std::max(idx, it->second.modify_index);
    }
    for (auto it = s.tombstones.lower_bound(prefix);
         it != s.tombstones.end() && it->first.starts_with(prefix); ++it) {
        idx = std::max(idx, it->second.index);
    }
    return idx != 0 ? idx : s.kv_index;
}

bool kv_delete_key(store& s, const std::string& key, std::uint64_t idx) {
    if (s.kv.erase(key) == 0) {
        return false;
    }
    s.tombstones[key] = tombstone{idx, s.now()};
    return true;
}

bool kv_delete_tree(store& s, const std::string& prefix, std::uint64_t idx) {
    auto first = s.kv.lower_bound(prefix);
    auto last = first;
    while (last != s.kv.end() && last->first.starts_with(prefix)) {
        ++last;
    }
    if (first == last) {
        return false;
    }
    s.kv.erase(first, last);
    // One tombstone for the prefix; none when the whole tree goes (the table index covers it).
    if (!prefix.empty()) {
        s.tombstones[prefix] = tombstone{idx, s.now()};
    }
    return true;
}

void kv_reap_tombstones(store& s) {
    const auto limit = s.now() - tombstone_ttl;
    bool reaped = false;
    for (auto it = s.tombstones.begin(); it != s.tombstones.end();) {
        if (it->second.created <= limit) {
            it = s.tombstones.erase(it);
            reaped = true;
        } else {
            ++it;
        }
    }
    if (reaped) {
        s.write(table_kv);  // the graveyard's table index moves with a reap
    }
}

void kv_release_session(store& s, const session_entry& session) {
    std::vector<std::string> held;
    for (const auto& [key, e] : s.kv) {
        if (e.session == session.id) {
            held.push_back(key);
        }
    }
    if (held.empty()) {
        return;
    }
    const auto idx = s.write(table_kv);
    const auto delay_until =
        s.now() + std::chrono::duration_cast<clock::duration>(session.lock_delay);
    for (const auto& key : held) {
        if (session.lock_delay.count() > 0) {
            s.lock_delays[key] = delay_until;
        }
        if (session.behavior == "delete") {
            kv_delete_key(s, key, idx);
        } else {
            auto& e = s.kv[key];
            e.session.clear();
            e.modify_index = idx;
        }
    }
}

void add_kv_routes(router& r) {
    r.add(http::verb::get, "kv/", kv_get, table_kv);
    r.add(http::verb::put, "kv/", kv_put);
    r.add(http::verb::delete_, "kv/", kv_delete);
}

}  // namespace lakemesh::testing::detail
