// What the Consul client reports about each request it makes, for metrics and tracing.
#pragma once

#include <lakemesh/error.hpp>

#include <chrono>
#include <string_view>

namespace lakemesh::consul {

/// One request to Consul, over: an answer (any status) or a failure to get one. A request that
/// failed over to another agent address is one event; a batch of pipelined check updates is one
/// event per update, each with the batch's duration.
struct request_event {
    /// The API's group, the first segment after /v1/: "kv", "agent", "health", "catalog",
    /// "session", "txn", "status", ... ("" for a target outside /v1/).
    std::string_view group;
    /// "GET", "PUT", ...
    std::string_view method;
    /// A blocking query (its duration includes Consul's wait).
    bool blocking = false;
    /// The HTTP status of the answer, 0 when none arrived.
    unsigned status = 0;
    /// The transport's outcome: success when an answer arrived (whatever its status).
    error_code ec;
    /// When the request started, and how long until its outcome.
    std::chrono::system_clock::time_point start;
    std::chrono::nanoseconds elapsed{0};
};

/// Receives request_events on the client's executor. Must not throw; must be cheap (it runs on
/// every request) and must not call back into the client synchronously.
class request_observer {
  public:
    virtual ~request_observer() = default;
    virtual void on_request(const request_event& e) noexcept = 0;
};

}  // namespace lakemesh::consul
