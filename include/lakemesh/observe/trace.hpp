// Span events, for bridging lakemesh's calls, their attempts and its Consul requests to a
// tracer (OpenTelemetry or any other): a listener gets a start and an end event for each call
// and attempt, and an end event (with its start time) for each Consul request.
#pragma once

#include <lakemesh/error.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace lakemesh::observe {

enum class span_kind : std::uint8_t {
    call,            ///< async_call / async_call_partition, from start to completion
    attempt,         ///< one attempt at one instance (a hedge is an attempt of its own)
    consul_request,  ///< one request to the Consul HTTP API
};

/// "call", "attempt" or "consul_request".
std::string_view to_string(span_kind k) noexcept;

/// One span's start or end. Views are valid during the callback only.
struct span_event {
    span_kind kind = span_kind::call;
    /// The service called ("partitions:<prefix>" for partition calls), or the Consul API group
    /// ("kv", "agent", ...).
    std::string_view name;
    /// W3C trace ID (32 hex digits) and the span ID sent as traceparent's parent-id (16 hex) of
    /// the call; "" for Consul requests, which carry no trace context.
    std::string_view trace_id;
    std::string_view span_id;
    /// Attempts: "address:port" of the instance, and the attempt's number (1 for the first).
    std::string_view endpoint;
    unsigned attempt = 0;
    /// When the span started (system clock, for exporters).
    std::chrono::system_clock::time_point start;
    /// End events: how long it took, its outcome, and the HTTP status (0: no answer).
    std::chrono::nanoseconds duration{0};
    error_code ec;
    unsigned status = 0;
};

/// Receives span events on the mesh's executor. Every method has an empty default. Must be
/// cheap and must not throw.
class span_listener {
  public:
    virtual ~span_listener() = default;
    virtual void on_span_start(const span_event&) noexcept {}
    virtual void on_span_end(const span_event&) noexcept {}
};

}  // namespace lakemesh::observe
