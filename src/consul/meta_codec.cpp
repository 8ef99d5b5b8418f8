#include "meta_codec.hpp"

#include <charconv>
#include <cstdint>

namespace lakemesh::consul::detail {
namespace {

std::optional<std::uint64_t> parse_u64(std::string_view v) {
    std::uint64_t out = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || p != v.data() + v.size() || v.empty()) {
        return std::nullopt;
    }
    return out;
}

}  // namespace

error_code decode_query_meta(const consul_meta_headers& headers, query_meta& out,
                             diagnostics& diag) {
    if (headers.index) {
        auto v = parse_u64(*headers.index);
        if (!v) {
            diag.set_client_message("X-Consul-Index header is not a number");
            return decode_errc::invalid_header;
        }
        out.index = *v;
    }
    if (headers.known_leader) {
        out.known_leader = *headers.known_leader == "true";
    }
    if (headers.last_contact) {
        if (auto v = parse_u64(*headers.last_contact)) {
            out.last_contact = std::chrono::milliseconds(*v);
        }
    }
    return {};
}

}  // namespace lakemesh::consul::detail
