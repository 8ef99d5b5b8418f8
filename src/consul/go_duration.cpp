#include "go_duration.hpp"

#include <cmath>
#include <cstdint>

namespace lakemesh::consul::detail {

std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
    bool negative = false;
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
        negative = text.front() == '-';
        text.remove_prefix(1);
    }
    if (text == "0") {
        return std::chrono::nanoseconds{0};
    }
    if (text.empty()) {
        return std::nullopt;
    }
    // Accumulate in long double: exact for every integral duration an int64 holds that Consul
    // uses, and it gives fractions ("1.5s") without a hand-written decimal parser.
    long double total_ns = 0;
    auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    while (!text.empty()) {
        long double whole = 0;
        std::size_t i = 0;
        bool digits = false;
        while (i < text.size() && is_digit(text[i])) {
            whole = whole * 10 + (text[i] - '0');
            digits = true;
            ++i;
        }
        long double fraction = 0;
        if (i < text.size() && text[i] == '.') {
            ++i;
            long double scale = 0.1L;
            while (i < text.size() && is_digit(text[i])) {
                fraction += (text[i] - '0') * scale;
                scale /= 10;
                digits = true;
                ++i;
            }
        }
        if (!digits) {
            return std::nullopt;
        }
        text.remove_prefix(i);
        std::size_t u = 0;
        while (u < text.size() && !is_digit(text[u]) && text[u] != '.') {
            ++u;
        }
        const std::string_view unit = text.substr(0, u);
        text.remove_prefix(u);
        long double unit_ns = 0;
        if (unit == "ns") {
            unit_ns = 1;
        } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
            unit_ns = 1e3L;
        } else if (unit == "ms") {
            unit_ns = 1e6L;
        } else if (unit == "s") {
            unit_ns = 1e9L;
        } else if (unit == "m") {
            unit_ns = 60e9L;
        } else if (unit == "h") {
            unit_ns = 3600e9L;
        } else {
            return std::nullopt;  // missing or unknown unit
        }
        total_ns += (whole + fraction) * unit_ns;
        if (total_ns > 9.2e18L) {
            return std::nullopt;
        }
    }
    auto ns = std::chrono::nanoseconds{static_cast<std::int64_t>(std::llround(total_ns))};
    return negative ? -ns : ns;
}

std::string format_go_duration(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) {
        return std::to_string(d.count() / 1000) + "s";
    }
    return std::to_string(d.count()) + "ms";
}

}  // namespace lakemesh::consul::detail
