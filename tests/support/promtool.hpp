// Runs Prometheus' checker on an exposition, and reads samples back out of one, for tests.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace lakemesh::test {

/// promtool's path: $PROMTOOL, else the first on PATH; "" when there is none.
std::string find_promtool();

/// `promtool check metrics` on `text`: nullopt when it exits 0 with nothing printed, else its
/// exit status and output.
std::optional<std::string> promtool_problems(const std::string& promtool, std::string_view text);

/// The value of the sample written exactly as `series` (e.g. `x_total{a="b"}`), nullopt when
/// the exposition has no such line.
std::optional<double> sample_value(std::string_view exposition, std::string_view series);

}  // namespace lakemesh::test
