// The partition registry's KV values (JSON) and the reading of a recursive KV listing of its
// prefix into one record per partition. Bytes from Consul: every decoder refuses what it does
// not understand and never throws.
//
//   <prefix>config                {"cluster":"lake","partitions":256,"epoch":E,"created_unix_ms":T}
//   <prefix>partitions/<p>/owner  {"node":"n1","address":"10.0.0.1","port":8080,"token":T}
//   <prefix>partitions/<p>/status {"state":"active","owner":"n1","token":T,
//                                  "updated_at":"2026-12-04T15:00:00.123Z","meta":{...}}
#pragma once

#include <lakemesh/consul/types.hpp>
#include <lakemesh/partition/ownership_fsm.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::partition::detail {

struct cluster_config_value {
    std::string cluster;
    std::uint32_t partitions = 0;
    std::uint32_t epoch = 0;
    std::int64_t created_unix_ms = 0;
    friend bool operator==(const cluster_config_value&, const cluster_config_value&) = default;
};

struct owner_value {
    std::string node;
    std::string address;
    std::uint16_t port = 0;
    fencing_token token = 0;
    friend bool operator==(const owner_value&, const owner_value&) = default;
};

struct status_value {
    partition_state state = partition_state::unknown;
    std::string owner;
    fencing_token token = 0;
    std::string updated_at;
    std::map<std::string, std::string> meta;
    friend bool operator==(const status_value&, const status_value&) = default;
};

std::string encode(const cluster_config_value& v);
std::string encode(const owner_value& v);
std::string encode(const status_value& v);
std::optional<cluster_config_value> decode_config(std::string_view json);
std::optional<owner_value> decode_owner(std::string_view json);
std::optional<status_value> decode_status(std::string_view json);

/// A recursive listing of the prefix, read.
struct table_read {
    std::optional<cluster_config_value> config;
    /// The config key exists but does not decode.
    bool config_malformed = false;
    std::vector<partition_record> records;
    std::vector<status_value> statuses;
    /// Keys under partitions/ that were not understood (bad partition number, bad JSON).
    std::size_t ignored = 0;
};

/// The values decoded by the previous read_table, so that a watch wake decodes only the keys
/// whose bytes changed (a planned move rewrites 2 of the 2P keys; the rest are reused). Keyed
/// by the value's bytes, not its ModifyIndex: after a Consul state loss the indexes start over
/// and a new value can carry an index an old one had.
struct decode_cache {
    struct owner_entry {
        std::string raw;
        std::optional<owner_value> value;
    };
    struct status_entry {
        std::string raw;
        std::optional<status_value> value;
    };
    std::vector<owner_entry> owners;
    std::vector<status_entry> statuses;
};

/// Reads `entries` (a ?recurse listing of `prefix`) for `partitions` partitions. With `cache`,
/// a value whose bytes equal the previous read's for the same key is not decoded again.
table_read read_table(const std::vector<consul::kv_pair>& entries, std::string_view prefix,
                      std::uint32_t partitions, decode_cache* cache = nullptr);

/// "2026-12-04T15:00:00.123Z" for a Unix time in milliseconds.
std::string rfc3339_ms(std::int64_t unix_ms);

}  // namespace lakemesh::partition::detail
