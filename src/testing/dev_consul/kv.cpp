// KV endpoints: https://developer.hashicorp.com/consul/api-docs/kv
#include "router.hpp"

#include "core/base64.hpp"

#include <charconv>

namespace lakemesh::testing::detail {
namespace {

std::optional<std::uint64_t> parse_u64(const std::string& v) {
    std::uint64_t out = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || p != v.data() + v.size() || v.empty()) {
        return std::nullopt;
    }
    return out;
}

json entry_json(const kv_entry& e) {
    json j{
        {"LockIndex", e.lock_index},
        {"Key", e.key},
        {"Flags", e.flags},
        {"Value", e.value.empty() ? json(nullptr) : json(lakemesh::detail::base64_encode(e.value))},
        {"CreateIndex", e.create_index},
        {"ModifyIndex", e.modify_index}};
    if (!e.session.empty()) {
        j["Session"] = e.session;
    }
    return j;
}

/// Consul strips one leading slash from keys.
std::string normalise_key(std::string key) {
    if (!key.empty() && key.front() == '/') {
        key.erase(0, 1);
    }
    return key;
}

response kv_get(route_context& c) {
    auto& s = c.s;
    const auto key = normalise_key(c.rest);
    const auto idx = s.table_index(table_kv);
    if (c.req.has("keys")) {
        auto sep = c.req.param("separator").value_or("");
        json out = json::array();
        std::string last;
        for (auto it = s.kv.lower_bound(key); it != s.kv.end() && it->first.starts_with(key);
             ++it) {
            std::string k = it->first;
            if (!sep.empty()) {
                auto pos = k.find(sep, key.size());
                if (pos != std::string::npos) {
                    k = k.substr(0, pos + sep.size());
                }
            }
            if (k != last) {
                out.push_back(k);
                last = k;
            }
        }
        if (out.empty()) {
            response r = error_response(404, "");
            r.index = idx;
            return r;
        }
        return json_response(out, idx);
    }
    if (c.req.flag("recurse")) {
        json out = json::array();
        for (auto it = s.kv.lower_bound(key); it != s.kv.end() && it->first.starts_with(key);
             ++it) {
            out.push_back(entry_json(it->second));
        }
        if (out.empty()) {
            response r = error_response(404, "");
            r.index = idx;
            return r;
        }
        return json_response(out, idx);
    }
    if (key.empty()) {
        return error_response(400, "Missing key name");
    }
    auto it = s.kv.find(key);
    if (it == s.kv.end()) {
        response r = error_response(404, "");
        r.index = idx;
        return r;
    }
    if (c.req.has("raw")) {
        response r;
        r.body = it->second.value;
        r.content_type = "text/plain; charset=utf-8";
        r.index = idx;
        return r;
    }
    return json_response(json::array({entry_json(it->second)}), idx);
}

response kv_put(route_context& c) {
    auto& s = c.s;
    const auto key = normalise_key(c.rest);
    if (key.empty()) {
        return error_response(400, "Missing key name");
    }
    if (c.req.body.size() > c.kv_max_value_size) {
        return error_response(413, "Request body(" + std::to_string(c.req.body.size()) +
                                       " bytes) too large, max size: " +
                                       std::to_string(c.kv_max_value_size) + " bytes");
    }
    std::uint64_t flags = 0;
    if (auto v = c.req.param("flags")) {
        auto f = parse_u64(*v);
        if (!f) {
            return error_response(400, "Invalid flags");
        }
        flags = *f;
    }
    auto it = s.kv.find(key);
    auto acquire = c.req.param("acquire");
    auto release = c.req.param("release");
    if (acquire || release) {
        const std::string& sid = acquire ? *acquire : *release;
        if (!s.sessions.count(sid)) {
            return error_response(500, "Invalid session \"" + sid + "\"");
        }
        if (acquire) {
            if (it != s.kv.end() && !it->second.session.empty() && it->second.session != sid) {
                return json_response(false);
            }
            if (auto d = s.lock_delays.find(key); d != s.lock_delays.end()) {
                if (s.now() < d->second) {
                    return json_response(false);
                }
                s.lock_delays.erase(d);
            }
        } else if (it == s.kv.end() || it->second.session != sid) {
            return json_response(false);
        }
    } else if (auto cas = c.req.param("cas")) {
        auto want = parse_u64(*cas);
        if (!want) {
            return error_response(400, "Invalid cas value");
        }
        if (*want == 0 ? it != s.kv.end()
                       : (it == s.kv.end() || it->second.modify_index != *want)) {
            return json_response(false);
        }
    }
    auto idx = s.write(table_kv);
    if (it == s.kv.end()) {
        it = s.kv.emplace(key, kv_entry{}).first;
        it->second.key = key;
        it->second.create_index = idx;
    }
    auto& e = it->second;
    e.value = c.req.body;
    e.flags = flags;
    e.modify_index = idx;
    if (acquire && e.session != *acquire) {
        e.session = *acquire;
        ++e.lock_index;
    }
    if (release) {
        e.session.clear();
    }
    return json_response(true);
}

response kv_delete(route_context& c) {
    auto& s = c.s;
    const auto key = normalise_key(c.rest);
    bool recurse = c.req.flag("recurse");
    auto cas = c.req.param("cas");
    if (recurse && cas) {
        return error_response(400, "Conflicting flags: cas=&recurse");
    }
    if (recurse) {
        auto first = s.kv.lower_bound(key);
        auto last = first;
        while (last != s.kv.end() && last->first.starts_with(key)) {
            ++last;
        }
        if (first != last) {
            s.write(table_kv);
            s.kv.erase(first, last);
        }
        return json_response(true);
    }
    if (key.empty()) {
        return error_response(400, "Missing key name");
    }
    auto it = s.kv.find(key);
    if (cas) {
        auto want = parse_u64(*cas);
        if (!want) {
            return error_response(400, "Invalid cas value");
        }
        if (it == s.kv.end() ? *want != 0 : it->second.modify_index != *want) {
            return json_response(false);
        }
    }
    if (it != s.kv.end()) {
        s.write(table_kv);
        s.kv.erase(it);
    }
    return json_response(true);
}

}  // namespace

void kv_release_session(store& s, const session_entry& session) {
    bool touched = false;
    auto delay_until = s.now() + std::chrono::duration_cast<clock::duration>(session.lock_delay);
    for (auto it = s.kv.begin(); it != s.kv.end();) {
        if (it->second.session != session.id) {
            ++it;
            continue;
        }
        if (!touched) {
            s.write(table_kv);
            touched = true;
        }
        if (session.lock_delay.count() > 0) {
            s.lock_delays[it->first] = delay_until;
        }
        if (session.behavior == "delete") {
            it = s.kv.erase(it);
        } else {
            it->second.session.clear();
            it->second.modify_index = s.index;
            ++it;
        }
    }
}

void add_kv_routes(router& r) {
    r.add(http::verb::get, "kv/", kv_get, table_kv);
    r.add(http::verb::put, "kv/", kv_put);
    r.add(http::verb::delete_, "kv/", kv_delete);
}

}  // namespace lakemesh::testing::detail
