// Requests, responses and routes of the dev agent. Endpoint groups register their routes here;
// handlers are pure functions of (store, agent, request) run on the cluster's io thread.
#pragma once

#include "store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/http/verb.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lakemesh::testing::detail {

namespace http = boost::beast::http;

struct request {
    http::verb method = http::verb::get;
    /// Percent-decoded path after "/v1/", e.g. "kv/foo/bar".
    std::string path;
    /// Percent-decoded query parameters; a parameter given without '=' has an empty value.
    std::multimap<std::string, std::string> query;
    std::string body;

    bool has(const std::string& name) const { return query.count(name) != 0; }
    std::optional<std::string> param(const std::string& name) const {
        auto it = query.find(name);
        if (it == query.end())
            return std::nullopt;
        return it->second;
    }
    /// Consul treats "?recurse", "?recurse=" and "?recurse=true" as set (and "=false" as unset).
    bool flag(const std::string& name) const {
        auto v = param(name);
        return v && *v != "false" && *v != "0";
    }
};

struct response {
    unsigned status = 200;
    std::string body;
    /// Content-Type set by the handler. Empty: none, or for a non-empty body the one Go's server
    /// sniffs for Consul's error texts (text/plain; charset=utf-8).
    std::string content_type;
    /// A JSON answer; the server encodes it as Go does (indented in -dev mode and with ?pretty).
    std::optional<json> value;
    /// Sets X-Consul-Index, X-Consul-Knownleader, X-Consul-Lastcontact and
    /// X-Consul-Query-Backend when present.
    std::optional<std::uint64_t> index;
    /// No query meta at all, even on a blocking endpoint (errors found before Consul's RPC).
    bool no_index = false;
    /// X-Consul-Knownleader: false on errors from inside Consul's RPC, before its query ran.
    bool known_leader = true;
    /// Sets Knownleader / Lastcontact without an index (Consul's read-only transactions).
    bool leader_meta = false;
    /// Further headers the handler sets, in Go's canonical spelling (written sorted, as Go does).
    std::vector<std::pair<std::string, std::string>> headers;
    /// The handler set Content-Length itself (raw KV reads), so it sorts among the headers.
    bool explicit_length = false;
    /// Close the connection after answering (Go does when it did not read a large body).
    bool close = false;
};
/// What a handler knows about the agent that received the request.
struct agent_info {
    std::string node_name;
    std::string node_id;
    std::string datacenter;
    std::string address;  // IP the agent listens on
    std::uint16_t port = 0;
    bool running = false;
    bool enable_script_checks = false;
    bool enable_local_script_checks = false;
    bool acl_enabled = false;
};

struct route_context {
    store& s;
    const agent_info& agent;
    /// Every agent of the cluster (for agent/members, status/peers).
    const std::vector<agent_info>& members;
    const request& req;
    /// Path after the route's prefix, e.g. the key for "kv/".
    std::string rest;
    /// The cluster's executor, for handlers that start asynchronous work (HTTP/TCP checks).
    boost::asio::any_io_executor executor;
    std::size_t kv_max_value_size = 512u * 1024u;
};

using handler = std::function<response(route_context&)>;

struct route {
    http::verb method;
    /// Path after /v1/. A prefix ending in '/' matches anything below it; otherwise exact.
    std::string path;
    handler fn;
    /// Tables a blocking query on this route depends on; 0: not a blocking endpoint.
    unsigned blocking_tables = 0;
    /// The answer is a function of the request's path and query and of the store only (not of
    /// the agent, the clock or anything a write leaves the raft index unchanged by), so waiters
    /// of the same query at the same index can share one encoded answer.
    bool shared_answer = false;
    /// Answers carry X-Consul-Effective-Consistency (Consul's health and catalog reads).
    bool consistency_header = false;
};

class router {
  public:
    route& add(http::verb method, std::string path, handler fn, unsigned blocking_tables = 0,
               bool shared_answer = false) {
        routes_.push_back(
            route{method, std::move(path), std::move(fn), blocking_tables, shared_answer});
        return routes_.back();
    }
    /// The pattern Go's ServeMux picks for `path` (the longest: exact, or a prefix ending in
    /// '/'), or empty when none does.
    std::string pattern_for(std::string_view path) const;
    /// The route of `pattern` for `method`, or null (then the pattern exists only for others).
    const route* find(std::string_view pattern, http::verb method) const;
    /// Consul's Allow header for `pattern`: OPTIONS, then the methods in registration order.
    std::string allow(std::string_view pattern) const;

  private:
    std::vector<route> routes_;
};

// ---- Response helpers.
response json_response(json body, std::optional<std::uint64_t> index = std::nullopt);
/// Consul writes errors as the bare reason; Go's server sniffs text/plain; charset=utf-8.
response error_response(unsigned status, std::string text);
/// Parses a request body as JSON; on failure fills `err` with Consul's 400 answer.
std::optional<json> parse_body(const request& req, response& err);

// ---- Route groups (each in its own file).
void add_kv_routes(router& r);       // kv.cpp
void add_status_routes(router& r);   // status.cpp
void add_agent_routes(router& r);    // agent.cpp
void add_catalog_routes(router& r);  // catalog.cpp
void add_health_routes(router& r);   // health.cpp
void add_session_routes(router& r);  // sessions.cpp
void add_txn_routes(router& r);      // txn.cpp

// ---- HTTP/TCP checks run by the agent (check_runner.cpp).

/// Marks due HTTP/TCP checks as running and returns (node, check id) for each.
std::vector<std::pair<std::string, std::string>> checks_due(store& s);
/// Runs one check definition on `ex` and calls done(status, output) on `ex`.
void run_check_async(boost::asio::any_io_executor ex, const check_entry& def,
                     std::function<void(std::string status, std::string output)> done);
/// Applies a finished run: schedules the next one and sets the status.
void check_run_finished(store& s, const std::string& node, const std::string& check_id,
                        const std::string& status, const std::string& output);

}  // namespace lakemesh::testing::detail
