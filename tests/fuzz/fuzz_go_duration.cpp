// go_duration.hpp (TTL, Interval and LockDelay text): parse_go_duration never throws; on
// text of whole numbers only it equals an exact 128-bit evaluation of Go's grammar (nullopt
// exactly when that is malformed or beyond the parser's 9.2e18 ns bound); whatever it gives
// in whole milliseconds comes back unchanged through format_go_duration; and the input's first
// eight bytes, read as milliseconds, round-trip through format and parse whenever in range.
// fuzz-dict: go_duration
#include "consul/go_duration.hpp"
#include "fuzz_check.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

namespace {

using namespace lakemesh;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr __int128 bound_ns = 9'200'000'000'000'000'000;  // the parser's documented range

/// Go's grammar for text without fractions, in exact integers: [+-] ("0" | (digits unit)+).
/// The outer nullopt: malformed; the inner: well formed but out of range.
std::optional<std::optional<__int128>> exact(std::string_view text) {
    bool negative = false;
    if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
        negative = text.front() == '-';
        text.remove_prefix(1);
    }
    if (text == "0") {
        return std::optional<__int128>(0);
    }
    if (text.empty()) {
        return std::nullopt;
    }
    __int128 total = 0;
    bool overflow = false;
    while (!text.empty()) {
        std::size_t i = 0;
        __int128 n = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            n = n * 10 + (text[i] - '0');
            if (n > bound_ns) {
                n = bound_ns + 1;  // saturate: far beyond the bound either way
            }
            ++i;
        }
        if (i == 0) {
            return std::nullopt;
        }
        text.remove_prefix(i);
        std::size_t u = 0;
        while (u < text.size() && !(text[u] >= '0' && text[u] <= '9') && text[u] != '.') {
            ++u;
        }
        const std::string_view unit = text.substr(0, u);
        text.remove_prefix(u);
        __int128 scale = 0;
        if (unit == "ns") {
            scale = 1;
        } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
            scale = 1'000;
        } else if (unit == "ms") {
            scale = 1'000'000;
        } else if (unit == "s") {
            scale = 1'000'000'000;
        } else if (unit == "m") {
            scale = 60'000'000'000;
        } else if (unit == "h") {
            scale = 3'600'000'000'000;
        } else {
            return std::nullopt;
        }
        total += n * scale;
        overflow = overflow || total > bound_ns;
        if (overflow) {
            total = bound_ns + 1;
        }
    }
    if (overflow) {
        return std::optional<__int128>();
    }
    return std::optional<__int128>(negative ? -total : total);
}

void check_round_trip(milliseconds ms) {
    const auto text = consul::detail::format_go_duration(ms);
    const auto back =
        fuzz::without_throwing([&] { return consul::detail::parse_go_duration(text); });
    const __int128 ns = static_cast<__int128>(ms.count()) * 1'000'000;
    if (ns > bound_ns || ns < -bound_ns) {
        LAKEMESH_FUZZ_CHECK(!back);
    } else {
        LAKEMESH_FUZZ_CHECK(back && *back == ms);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text = fuzz::as_string(data, size);
    const auto parsed =
        fuzz::without_throwing([&] { return consul::detail::parse_go_duration(text); });

    if (text.find('.') == std::string::npos) {
        const auto want = exact(text);
        if (!want || !*want) {
            LAKEMESH_FUZZ_CHECK(!parsed);
        } else {
            LAKEMESH_FUZZ_CHECK(parsed && parsed->count() == **want);
        }
    }
    if (parsed) {
        LAKEMESH_FUZZ_CHECK(parsed->count() <= bound_ns && parsed->count() >= -bound_ns);
        if (parsed->count() != 0) {
            LAKEMESH_FUZZ_CHECK((parsed->count() < 0) == text.starts_with('-'));
        }
        if (parsed->count() % 1'000'000 == 0) {
            check_round_trip(std::chrono::duration_cast<milliseconds>(*parsed));
        }
    }

    if (size > 0) {
        std::int64_t raw = 0;
        std::memcpy(&raw, data, std::min(size, sizeof raw));
        check_round_trip(milliseconds(raw));
    }
    return 0;
}
