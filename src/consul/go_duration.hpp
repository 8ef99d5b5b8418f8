// Go duration strings as Consul reads and writes them ("15s", "1m30s", "250ms", "1.5h").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::consul::detail {

/// Parses Go's time.ParseDuration syntax: an optional sign, then one or more decimal numbers
/// each with a unit (ns, us, µs, ms, s, m, h); "0" alone is allowed. nullopt when malformed or
/// out of range.
std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text);

/// A Go duration string Consul accepts: whole seconds as "90s", anything finer as "1500ms".
std::string format_go_duration(std::chrono::milliseconds d);

}  // namespace lakemesh::consul::detail
