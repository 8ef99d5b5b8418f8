// Shared pieces of the dev agent: route matching, response helpers, Go durations, UUIDs.
#include "go_json.hpp"
#include "router.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <random>

namespace lakemesh::testing::detail {

std::string router::pattern_for(std::string_view path) const {
    std::string best;
    for (const auto& r : routes_) {
        const bool prefix = !r.path.empty() && r.path.back() == '/';
        const bool hit = prefix ? path.starts_with(r.path) : path == r.path;
        if (hit && r.path.size() > best.size()) {
            best = r.path;
        }
    }
    return best;
}

const route* router::find(std::string_view pattern, http::verb method) const {
    for (const auto& r : routes_) {
        if (r.path == pattern && r.method == method) {
            return &r;
        }
    }
    return nullptr;
}

std::string router::allow(std::string_view pattern) const {
    std::string out = "OPTIONS";
    for (const auto& r : routes_) {
        if (r.path == pattern) {
            out += ',';
            out += std::string(http::to_string(r.method));
        }
    }
    return out;
}

response json_response(json body, std::optional<std::uint64_t> index) {
    response r;
    r.value = std::move(body);
    r.content_type = "application/json";
    r.index = index;
    return r;
}

response error_response(unsigned status, std::string text) {
    response r;
    r.status = status;
    r.body = std::move(text);
    return r;
}

std::optional<json> parse_body(const request& req, response& err) {
    auto v = go_decode(req.body);
    if (auto* e = std::get_if<std::string>(&v)) {
        err = error_response(400, "Request decode failed: " + *e);
        return std::nullopt;
    }
    return std::get<json>(std::move(v));
}

std::optional<std::chrono::nanoseconds> parse_go_duration(std::string_view text) {
    using namespace std::chrono;
    if (text.empty()) {
        return std::nullopt;
    }
    bool neg = false;
    if (text.front() == '-' || text.front() == '+') {
        neg = text.front() == '-';
        text.remove_prefix(1);
    }
    if (text == "0") {
        return nanoseconds{0};
    }
    double total = 0;
    bool any = false;
    while (!text.empty()) {
        std::size_t i = 0;
        while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) {
            ++i;
        }
        if (i == 0) {
            return std::nullopt;
        }
        double value = 0;
        auto num = std::string(text.substr(0, i));
        try {
            std::size_t used = 0;
            value = std::stod(num, &used);
            if (used != num.size()) {
                return std::nullopt;
            }
        } catch (...) {
            return std::nullopt;
        }
        text.remove_prefix(i);
        std::size_t j = 0;
        while (j < text.size() && !((text[j] >= '0' && text[j] <= '9') || text[j] == '.')) {
            ++j;
        }
        auto unit = text.substr(0, j);
        text.remove_prefix(j);
        double scale = 0;
        if (unit == "ns")
            scale = 1;
        else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs")
            scale = 1e3;
        else if (unit == "ms")
            scale = 1e6;
        else if (unit == "s")
            scale = 1e9;
        else if (unit == "m")
            scale = 60e9;
        else if (unit == "h")
            scale = 3600e9;
        else
            return std::nullopt;
        total += value * scale;
        any = true;
    }
    if (!any || !std::isfinite(total) || total > 9.2e18) {
        return std::nullopt;
    }
    auto ns = nanoseconds{static_cast<std::int64_t>(total)};
    return neg ? -ns : ns;
}

std::string format_go_duration(std::chrono::nanoseconds d) {
    using namespace std::chrono;
    if (d.count() == 0) {
        return "0s";
    }
    std::string out;
    if (d.count() < 0) {
        out = "-";
        d = -d;
    }
    if (d < seconds(1)) {
        auto ns = d.count();
        if (ns % 1000000 == 0)
            return out + std::to_string(ns / 1000000) + "ms";
        if (ns % 1000 == 0)
            return out + std::to_string(ns / 1000) + "\xC2\xB5s";
        return out + std::to_string(ns) + "ns";
    }
    auto h = duration_cast<hours>(d);
    d -= h;
    auto m = duration_cast<minutes>(d);
    d -= m;
    if (h.count() > 0)
        out += std::to_string(h.count()) + "h";
    if (h.count() > 0 || m.count() > 0)
        out += std::to_string(m.count()) + "m";
    auto ns = d.count();
    auto whole = ns / 1000000000;
    auto frac = ns % 1000000000;
    out += std::to_string(whole);
    if (frac != 0) {
        std::string f = std::to_string(frac);
        f.insert(0, 9 - f.size(), '0');
        while (!f.empty() && f.back() == '0')
            f.pop_back();
        out += "." + f;
    }
    out += "s";
    return out;
}

std::optional<std::string> memdb_uuid_error(std::string_view id) {
    if (id.size() != 36) {
        return std::string("UUID must be 36 characters");
    }
    const auto hyphens = std::count(id.begin(), id.end(), '-');
    if (hyphens > 4) {
        return "UUID should have maximum of 4 \"-\"; got " + std::to_string(hyphens);
    }
    std::string hex;
    for (char c : id) {
        if (c != '-') {
            hex += c;
        }
    }
    if (hex.size() % 2 != 0) {
        return std::string("Input (without hyphens) must be even length");
    }
    const auto is_hex = [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    };
    for (char c : hex) {
        if (!is_hex(c)) {
            const auto b = static_cast<unsigned char>(c);
            char buf[32];
            if (b >= 0x20 && b < 0x7f) {
                std::snprintf(buf, sizeof buf, "U+%04X '%c'", b, c);
            } else if (b >= 0xa0 && b != 0xad) {
                std::snprintf(buf, sizeof buf, "U+%04X '%c%c'", b,
                              static_cast<char>(0xC0 | (b >> 6)),
                              static_cast<char>(0x80 | (b & 0x3F)));
            } else {
                std::snprintf(buf, sizeof buf, "U+%04X", b);
            }
            return std::string("Invalid UUID: encoding/hex: invalid byte: ") + buf;
        }
    }
    return std::nullopt;
}

std::optional<std::uint64_t> go_parse_uint(std::string_view text, std::string& error) {
    std::uint64_t out = 0;
    const auto quoted = "\"" + std::string(text) + "\"";
    const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) {
        error = "strconv.ParseUint: parsing " + quoted + ": invalid syntax";
        return std::nullopt;
    }
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc{} || p != text.data() + text.size()) {
        error = "strconv.ParseUint: parsing " + quoted + ": value out of range";
        return std::nullopt;
    }
    return out;
}

std::string go_encode_query(const std::multimap<std::string, std::string>& query) {
    static constexpr char hex[] = "0123456789ABCDEF";
    const auto escape = [](const std::string& s) {
        std::string out;
        for (unsigned char c : s) {
            if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
                out += static_cast<char>(c);
            } else if (c == ' ') {
                out += '+';
            } else {
                out += '%';
                out += hex[c >> 4];
                out += hex[c & 15];
            }
        }
        return out;
    };
    std::string out;
    for (const auto& [k, v] : query) {  // a multimap: sorted by key, values in arrival order
        if (!out.empty()) {
            out += '&';
        }
        out += escape(k) + "=" + escape(v);
    }
    return out;
}

std::string make_uuid() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    std::uint64_t a = rng();
    std::uint64_t b = rng();
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                  static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                  static_cast<unsigned>(b >> 48),
                  static_cast<unsigned long long>(b & 0xffffffffffffULL));
    return buf;
}

}  // namespace lakemesh::testing::detail
