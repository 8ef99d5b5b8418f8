// Shared pieces of the dev agent: route matching, response helpers, Go durations, UUIDs.
#include "router.hpp"

#include <charconv>
#include <cmath>
#include <random>

namespace lakemesh::testing::detail {

const route* router::match(http::verb method, const std::string& path, std::string& rest,
                           bool& path_exists) const {
    const route* best = nullptr;
    path_exists = false;
    for (const auto& r : routes_) {
        bool prefix = !r.path.empty() && r.path.back() == '/';
        bool hit = prefix ? path.starts_with(r.path) : path == r.path;
        if (!hit) {
            continue;
        }
        if (r.method != method) {
            path_exists = true;
            continue;
        }
        if (best == nullptr || r.path.size() > best->path.size()) {
            best = &r;
        }
    }
    if (best != nullptr) {
        bool prefix = best->path.back() == '/';
        rest = prefix ? path.substr(best->path.size()) : std::string{};
        // A longer route for another method (e.g. PUT agent/service/register) must not make
        // a prefix route for this method (GET agent/service/) claim its path.
        for (const auto& r : routes_) {
            if (r.method != method && r.path.size() > best->path.size() &&
                (r.path.back() == '/' ? path.starts_with(r.path) : path == r.path)) {
                path_exists = true;
                return nullptr;
            }
        }
    }
    return best;
}

response json_response(const json& body, std::optional<std::uint64_t> index) {
    response r;
    r.body = body.dump();
    r.index = index;
    return r;
}

response error_response(unsigned status, std::string text) {
    response r;
    r.status = status;
    r.body = std::move(text);
    r.content_type = "text/plain; charset=utf-8";
    return r;
}

std::optional<json> parse_body(const request& req, response& err) {
    if (req.body.empty()) {
        err = error_response(400, "Request decode failed: EOF");
        return std::nullopt;
    }
    auto j = json::parse(req.body, nullptr, false);
    if (j.is_discarded()) {
        err = error_response(400, "Request decode failed: invalid character in JSON body");
        return std::nullopt;
    }
    return j;
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
