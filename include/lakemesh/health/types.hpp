// Vocabulary of the health part: its time types and the status a check reports.
//
// The health state machines never read a clock: every decision takes an explicit `now`, so tests
// drive them with a manual clock. Only the Asio shell reads clock::now().
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace lakemesh::health {

using clock = std::chrono::steady_clock;
using time_point = clock::time_point;
using duration = clock::duration;

/// "No such time": a timer that is not armed, an event that never happens.
inline constexpr time_point never = time_point::max();

/// Result of one probe, in Consul's three TTL-check states.
/// See https://developer.hashicorp.com/consul/api-docs/agent/check#ttl-check-update
enum class status : std::uint8_t {
    passing,
    warning,
    critical,
};

/// "passing", "warning" or "critical": the words Consul uses in its API.
std::string_view to_string(status s) noexcept;

}  // namespace lakemesh::health
