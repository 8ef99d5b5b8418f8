// The dev cluster's shared state: catalog (nodes, services, checks), KV, sessions, and the raft
// index. Only ever touched on the cluster's io thread, so no locking here.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lakemesh::testing::detail {

using clock = std::chrono::steady_clock;
// Ordered: Consul's answers list struct fields in declaration order, and encoding/json writes
// map keys sorted, which is the order std::map iteration inserts them in.
using json = nlohmann::ordered_json;

/// Tables a write can touch; blocking queries name the tables they read.
enum table : unsigned {
    table_kv = 1u << 0,
    table_catalog = 1u << 1,  // nodes, services, checks
    table_sessions = 1u << 2,
    table_all = 0xffu,
};

struct node_entry {
    std::string id;  // node UUID
    std::string name;
    std::string address;
    std::string datacenter;
    std::map<std::string, std::string> meta;
    std::map<std::string, std::string> tagged_addresses;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

struct service_weights {
    int passing = 1;
    int warning = 1;
};

struct service_entry {
    std::string node;
    std::string id;
    std::string name;
    std::vector<std::string> tags;
    std::map<std::string, std::string> meta;
    /// Registered without any Meta: the catalog shows null, the agent {}.
    bool meta_null = true;
    /// Explicit TaggedAddresses (name -> address, port); the agent adds lan_ipv4 / wan_ipv4 for
    /// an IPv4 Address.
    std::map<std::string, std::pair<std::string, int>> tagged_addresses;
    std::string address;
    int port = 0;
    service_weights weights;
    bool enable_tag_override = false;
    std::string kind;  // "" for typical services
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

struct check_entry {
    std::string node;
    std::string id;
    std::string name;
    std::string status = "critical";  // passing | warning | critical | maintenance is critical
    std::string notes;
    /// The catalog's copy of the output (health and catalog endpoints)...
    std::string output;
    /// ...and the agent's own (agent/checks). A change of output alone reaches the catalog only
    /// after Consul's check_update_interval (output_sync_at); a change of status at once.
    std::string agent_output;
    std::optional<clock::time_point> output_sync_at;
    std::string service_id;
    std::string service_name;
    std::vector<std::string> service_tags;
    std::string type;  // ttl | http | tcp | grpc | script | maintenance | "" (serfHealth)
    /// Interval and Timeout as the catalog shows them: Go durations ("10s", "0s") for checks
    /// registered with agent/check/register, "" for checks of a service definition.
    std::string shown_interval;
    std::string shown_timeout;
    // Definition (as registered), kept so that the agent can run it.
    std::string interval;  // Consul duration text
    std::string timeout;
    std::string ttl;
    std::string http;
    std::string method;
    std::map<std::string, std::vector<std::string>> header;
    std::string body;
    bool tls_skip_verify = false;
    std::string tcp;
    std::string grpc;
    bool grpc_use_tls = false;
    std::vector<std::string> script_args;
    std::string deregister_critical_service_after;
    // Runtime state.
    std::optional<clock::time_point> ttl_deadline;    // TTL checks: critical after this
    std::optional<clock::time_point> critical_since;  // for DeregisterCriticalServiceAfter
    std::optional<clock::time_point> next_run;        // HTTP/TCP/script checks
    bool run_in_flight = false;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

struct kv_entry {
    std::string key;
    std::string value;  // raw bytes
    std::uint64_t flags = 0;
    std::string session;  // lock holder, empty when unlocked
    std::uint64_t lock_index = 0;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

/// A deleted key (or prefix, for a recursive delete): Consul's graveyard keeps the index of the
/// delete so that listings under it report an index that never goes backwards.
struct tombstone {
    std::uint64_t index = 0;
    clock::time_point created;
};

struct session_entry {
    std::string id;
    std::string name;
    std::string node;
    std::vector<std::string> node_checks;                             // default {"serfHealth"}
    std::vector<std::pair<std::string, std::string>> service_checks;  // (check id, namespace)
    std::string behavior = "release";                                 // release | delete
    std::string ttl;                                                  // "" or e.g. "15s"
    std::chrono::nanoseconds ttl_duration{0};
    std::chrono::nanoseconds lock_delay{std::chrono::seconds(15)};
    std::optional<clock::time_point> ttl_deadline;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;
};

struct store {
    /// The raft index: grows by one on every write; 1 right after start.
    std::uint64_t index = 1;
    std::uint64_t kv_index = 1;
    std::uint64_t catalog_index = 1;
    std::uint64_t sessions_index = 1;
    /// The catalog's own tables, as Consul indexes them: "nodes", "services", "checks", one
    /// index per service name (lower-cased) that its instances and their checks move, and the
    /// index at which the last instance of some service went away.
    std::uint64_t nodes_index = 1;
    std::uint64_t services_index = 1;
    std::uint64_t checks_index = 1;
    std::uint64_t service_extinction_index = 0;
    std::map<std::string, std::uint64_t> service_name_index;
    /// Tables written since the blocking-query layer last looked.
    unsigned dirty = 0;

    std::map<std::string, node_entry> nodes;
    // node -> service id -> service
    std::map<std::string, std::map<std::string, service_entry>> services;
    // node -> check id -> check
    std::map<std::string, std::map<std::string, check_entry>> checks;
    std::map<std::string, kv_entry> kv;
    std::map<std::string, tombstone> tombstones;
    std::map<std::string, session_entry> sessions;
    /// Keys whose lock was released by an invalidated session: no acquire before the time.
    std::map<std::string, clock::time_point> lock_delays;

    /// Virtual clock: real steady time plus what tests advanced it by.
    clock::duration clock_offset{0};
    clock::time_point now() const { return clock::now() + clock_offset; }

    /// Begins a write: bumps the raft index and returns it; marks the tables it touches.
    std::uint64_t write(unsigned tables) {
        ++index;
        if (tables & table_kv)
            kv_index = index;
        if (tables & table_catalog)
            catalog_index = index;
        if (tables & table_sessions)
            sessions_index = index;
        dirty |= tables;
        return index;
    }
    std::uint64_t table_index(unsigned tables) const {
        std::uint64_t i = 0;
        if (tables & table_kv)
            i = std::max(i, kv_index);
        if (tables & table_catalog)
            i = std::max(i, catalog_index);
        if (tables & table_sessions)
            i = std::max(i, sessions_index);
        return i == 0 ? index : i;
    }
    /// Forgets everything (restart with state lost): indexes start over.
    void wipe() {
        auto off = clock_offset;
        *this = store{};
        clock_offset = off;
        dirty = table_all;
    }
};

// ---- Operations shared between endpoint groups (each defined in the file named).

/// checks.cpp: sets a check's status/output in the catalog at once (server-side checks such as
/// serfHealth); a change bumps the catalog index, a transition to critical invalidates sessions
/// linked to the check. Returns false if no such check.
bool set_check_status(store& s, const std::string& node, const std::string& check_id,
                      const std::string& status, const std::string& output);
/// checks.cpp: an update from the agent's own check runner or TTL endpoints (Consul's
/// local.State.UpdateCheck): a new status reaches the catalog at once; new output alone is kept
/// by the agent and synced later. Returns false if no such check.
bool agent_update_check(store& s, const std::string& node, const std::string& check_id,
                        const std::string& status, const std::string& output);
/// checks.cpp: records that check `c` changed at raft index `idx`: the checks table, and the
/// service indexes its change shows in (its service's, or every service of its node).
void catalog_check_changed(store& s, const check_entry& c, std::uint64_t idx);
/// checks.cpp: records that an instance of service `name` changed at `idx`.
void catalog_service_changed(store& s, const std::string& name, std::uint64_t idx);
/// checks.cpp: TTL expiries and DeregisterCriticalServiceAfter.
void checks_tick(store& s);
/// checks.cpp: removes a service and its checks from a node (no-op if absent).
bool remove_service(store& s, const std::string& node, const std::string& service_id);
/// sessions.cpp: session TTL expiry.
void sessions_tick(store& s);
/// sessions.cpp: invalidates every session linked to (node, check) or bound to a removed node.
void sessions_on_check_critical(store& s, const std::string& node, const std::string& check_id);
/// sessions.cpp: destroys one session: releases or deletes its locks per Behavior and applies
/// its lock-delay. Returns false when absent.
bool destroy_session(store& s, const std::string& id);
/// kv.cpp: applies `session`'s end to the keys it holds (release or delete) and lock delay.
void kv_release_session(store& s, const session_entry& session);
/// kv.cpp: the X-Consul-Index of a KV listing of `prefix` (Consul's kvsListTxn).
std::uint64_t kv_list_index(const store& s, const std::string& prefix);
/// kv.cpp: removes `key` leaving a tombstone at raft index `idx` (no-op when absent).
bool kv_delete_key(store& s, const std::string& key, std::uint64_t idx);
/// kv.cpp: removes every key under `prefix` leaving one tombstone for it.
bool kv_delete_tree(store& s, const std::string& prefix, std::uint64_t idx);
/// kv.cpp: forgets tombstones older than Consul's tombstone TTL.
void kv_reap_tombstones(store& s);

/// common.cpp: why go-memdb's UUID index refuses `id` ("UUID must be 36 characters", ...), or
/// nullopt when it is a well-formed UUID.
std::optional<std::string> memdb_uuid_error(std::string_view id);
/// common.cpp: strconv.ParseUint(text, 10, 64), or its error text.
std::optional<std::uint64_t> go_parse_uint(std::string_view text, std::string& error);
/// common.cpp: url.Values.Encode() of the query (keys sorted, values escaped).
std::string go_encode_query(const std::multimap<std::string, std::string>& query);

/// Formats Consul-style durations ("10s", "1m30s", "500ms") and parses them (Go syntax).
std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text);
std::string format_go_duration(std::chrono::nanoseconds d);

/// A fresh random UUID in Consul's 8-4-4-4-12 form.
std::string make_uuid();

}  // namespace lakemesh::testing::detail
