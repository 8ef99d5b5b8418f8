// Typed requests and results of the Consul client. Plain aggregates; no JSON types here.
#pragma once

#include <lakemesh/consul/client_config.hpp>
#include <lakemesh/error.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lakemesh::consul {

/// Options of a read. https://developer.hashicorp.com/consul/api-docs/features/blocking
struct query_options {
    /// Blocking query: wait for an index greater than this. 0: answer at once.
    std::uint64_t index = 0;
    /// Longest time Consul holds a blocking query (?wait). Zero: Consul's default (5 min).
    std::chrono::milliseconds wait{0};
    /// Overrides client_config::consistency when set.
    std::optional<consistency_mode> consistency;
    /// Overrides client_config::datacenter when non-empty.
    std::string datacenter;
    /// Overrides client_config::namespace_name when non-empty.
    std::string namespace_name;
    /// Consul filter expression (?filter). Empty: none.
    std::string filter;
};

/// What Consul says about a read, from its X-Consul-* headers.
struct query_meta {
    /// X-Consul-Index: pass it back as query_options::index to block for the next change.
    std::uint64_t index = 0;
    /// X-Consul-KnownLeader
    bool known_leader = false;
    /// X-Consul-LastContact: how stale a ?stale read may be.
    std::chrono::milliseconds last_contact{0};
};

/// Every operation completes with (error_code, result<T>). On error, `value` is
/// default-constructed and `diag` says what went wrong (Consul's error text, HTTP status).
template <class T>
struct result {
    T value{};
    query_meta meta;
    diagnostics diag;
};

// ------------------------------------------------------------------ KV

/// One KV entry. https://developer.hashicorp.com/consul/api-docs/kv
struct kv_pair {
    std::string key;
    /// Raw bytes (base64-decoded).
    std::string value;
    std::uint64_t flags = 0;
    /// ID of the session holding the lock; empty when unlocked.
    std::string session;
    std::uint64_t lock_index = 0;
    std::uint64_t create_index = 0;
    std::uint64_t modify_index = 0;

    friend bool operator==(const kv_pair&, const kv_pair&) = default;
};

struct kv_put_options {
    /// Opaque flags stored with the value.
    std::uint64_t flags = 0;
    /// Check-and-set: write only if the key's ModifyIndex equals this; 0 means "only if absent".
    std::optional<std::uint64_t> cas;
    /// Lock acquisition with this session ID (?acquire). Answer true when acquired.
    std::string acquire;
    /// Lock release by this session ID (?release).
    std::string release;
    /// Datacenter and namespace for this write; empty uses client_config's.
    std::string datacenter;
    std::string namespace_name;
};

struct kv_delete_options {
    /// Delete every key under the prefix.
    bool recurse = false;
    /// Delete only if the key's ModifyIndex equals this.
    std::optional<std::uint64_t> cas;
    /// Datacenter and namespace for this delete; empty uses client_config's.
    std::string datacenter;
    std::string namespace_name;
};

// ------------------------------------------------------------------ raw requests

/// A request to any Consul endpoint, for calls the typed API does not cover yet.
struct raw_request {
    /// "GET", "PUT", "DELETE", "POST".
    std::string method = "GET";
    /// Path below /v1/, not encoded, e.g. "agent/self". Each segment is percent-encoded.
    std::string path;
    /// Query parameters, not encoded.
    std::vector<std::pair<std::string, std::string>> params;
    std::string body;
    /// Safe to send again after a kept-alive connection turned out closed. Unset means: only
    /// GET and HEAD are. Set it to true for a write the caller knows to be idempotent, or to
    /// false for a read with side effects.
    std::optional<bool> idempotent;
};

struct raw_response {
    unsigned status = 0;
    std::string body;
};

}  // namespace lakemesh::consul
