#include "partition/table_codec.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <limits>

namespace lakemesh::partition::detail {

using json = nlohmann::json;

namespace {

std::optional<json> parse_object(std::string_view text) {
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
        return std::nullopt;
    }
    return j;
}

bool read_string(const json& j, const char* name, std::string& out, bool required = true) {
    auto it = j.find(name);
    if (it == j.end()) {
        return !required;
    }
    if (!it->is_string()) {
        return false;
    }
    out = it->get<std::string>();
    return true;
}

template <class U>
bool read_unsigned(const json& j, const char* name, U& out, bool required = true) {
    auto it = j.find(name);
    if (it == j.end()) {
        return !required;
    }
    if (!it->is_number_unsigned()) {
        return false;
    }
    const auto v = it->get<std::uint64_t>();
    if (v > std::numeric_limits<U>::max()) {
        return false;
    }
    out = static_cast<U>(v);
    return true;
}

partition_state state_from(std::string_view s) {
    for (auto st : {partition_state::acquiring, partition_state::active, partition_state::draining,
                    partition_state::released}) {
        if (s == to_string(st)) {
            return st;
        }
    }
    return partition_state::unknown;
}

}  // namespace

std::string encode(const cluster_config_value& v) {
    return json{{"cluster", v.cluster},
                {"partitions", v.partitions},
                {"epoch", v.epoch},
                {"created_unix_ms", v.created_unix_ms}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode(const owner_value& v) {
    return json{{"node", v.node}, {"address", v.address}, {"port", v.port}, {"token", v.token}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode(const status_value& v) {
    return json{{"state", to_string(v.state)},
                {"owner", v.owner},
                {"token", v.token},
                {"updated_at", v.updated_at},
                {"meta", v.meta}}
        .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<cluster_config_value> decode_config(std::string_view text) {
    auto j = parse_object(text);
    cluster_config_value v;
    if (!j || !read_string(*j, "cluster", v.cluster) ||
        !read_unsigned(*j, "partitions", v.partitions) || !read_unsigned(*j, "epoch", v.epoch)) {
        return std::nullopt;
    }
    if (auto it = j->find("created_unix_ms"); it != j->end()) {
        if (!it->is_number_integer()) {
            return std::nullopt;
        }
        v.created_unix_ms = it->get<std::int64_t>();
    }
    return v;
}

std::optional<owner_value> decode_owner(std::string_view text) {
    auto j = parse_object(text);
    owner_value v;
    if (!j || !read_string(*j, "node", v.node) || !read_string(*j, "address", v.address, false) ||
        !read_unsigned(*j, "port", v.port, false) || !read_unsigned(*j, "token", v.token)) {
        return std::nullopt;
    }
    return v;
}

std::optional<status_value> decode_status(std::string_view text) {
    auto j = parse_object(text);
    status_value v;
    std::string state;
    if (!j || !read_string(*j, "state", state) || !read_string(*j, "owner", v.owner, false) ||
        !read_unsigned(*j, "token", v.token, false) ||
        !read_string(*j, "updated_at", v.updated_at, false)) {
        return std::nullopt;
    }
    v.state = state_from(state);
    if (auto it = j->find("meta"); it != j->end()) {
        if (!it->is_object()) {
            return std::nullopt;
        }
        for (const auto& [k, val] : it->items()) {
            if (!val.is_string()) {
                return std::nullopt;
            }
            v.meta.emplace(k, val.get<std::string>());
        }
    }
    return v;
}

namespace {

/// `decode(raw)`, or the cached result when `slot` holds the same bytes (then updated).
template <class Entry, class Decode>
auto decode_cached(Entry* slot, const std::string& raw, Decode decode) {
    if (slot == nullptr) {
        return decode(raw);
    }
    if (slot->raw != raw) {  // a fresh slot holds "", whose decoding is nullopt
        slot->raw = raw;
        slot->value = decode(raw);
    }
    return slot->value;
}

}  // namespace

table_read read_table(const std::vector<consul::kv_pair>& entries, std::string_view prefix,
                      std::uint32_t partitions, decode_cache* cache) {
    table_read out;
    out.records.resize(partitions);
    out.statuses.resize(partitions);
    if (cache != nullptr) {
        cache->owners.resize(partitions);
        cache->statuses.resize(partitions);
    }
    constexpr std::string_view parts = "partitions/";
    for (const auto& e : entries) {
        std::string_view key = e.key;
        if (!key.starts_with(prefix)) {
            continue;
        }
        key.remove_prefix(prefix.size());
        if (key == "config") {
            out.config = decode_config(e.value);
            out.config_malformed = !out.config;
            continue;
        }
        if (!key.starts_with(parts)) {
            continue;  // other keys under the prefix (e.g. config/policies/...) are not ours
        }
        key.remove_prefix(parts.size());
        const auto slash = key.find('/');
        std::uint32_t p = 0;
        const auto num = key.substr(0, slash);
        auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), p);
        if (slash == std::string_view::npos || ec != std::errc{} ||
            end != num.data() + num.size() || num.empty() ||
            (num.size() > 1 && num.front() == '0') || p >= partitions) {
            ++out.ignored;
            continue;
        }
        const auto leaf = key.substr(slash + 1);
        auto& rec = out.records[p];
        if (leaf == "owner") {
            rec.owner_index = e.modify_index;
            rec.session = e.session;
            if (auto v =
                    decode_cached(cache ? &cache->owners[p] : nullptr, e.value, decode_owner)) {
                rec.node = v->node;
                rec.address = v->address;
                rec.port = v->port;
                rec.token = v->token;
            } else {
                ++out.ignored;
            }
        } else if (leaf == "status") {
            rec.status_index = e.modify_index;
            if (auto v =
                    decode_cached(cache ? &cache->statuses[p] : nullptr, e.value, decode_status)) {
                rec.state = v->state;
                out.statuses[p] = std::move(*v);
            } else {
                ++out.ignored;
            }
        } else {
            ++out.ignored;
        }
    }
    return out;
}

std::string rfc3339_ms(std::int64_t unix_ms) {
    unix_ms = std::max<std::int64_t>(unix_ms, 0);
    const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    const auto n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return std::string(buf, n) + "." + std::to_string(1000 + unix_ms % 1000).substr(1) + "Z";
}

}  // namespace lakemesh::partition::detail
