// decode_query_meta (X-Consul-Index, -KnownLeader, -LastContact). Input: one byte whose low
// three bits say which headers are present, then their values separated by '\n'.
// Checks: only a malformed index is an error, numbers decode exactly, absent headers leave
// `out` untouched.
// fuzz-dict: query_meta
#include "consul/meta_codec.hpp"
#include "fuzz_check.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

/// Decimal without sign, spaces or a base prefix, within 64 bits: what Consul sends.
std::optional<std::uint64_t> reference_u64(std::string_view v) {
    if (v.empty()) {
        return std::nullopt;
    }
    std::uint64_t out = 0;
    for (char c : v) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (out > (UINT64_MAX - digit) / 10) {
            return std::nullopt;
        }
        out = out * 10 + digit;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    if (size == 0) {
        return 0;
    }
    const unsigned present = data[0];
    const std::string values = fuzz::as_string(data + 1, size - 1);
    std::optional<std::string_view> fields[3];
    std::string_view rest = values;
    for (unsigned i = 0; i < 3; ++i) {
        const auto nl = rest.find('\n');
        const auto value = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (present & (1u << i)) {
            fields[i] = value;
        }
    }
    const consul::detail::consul_meta_headers headers{fields[0], fields[1], fields[2]};

    const consul::query_meta before{.index = 42,
                                    .known_leader = (present & 8u) != 0,
                                    .last_contact = std::chrono::milliseconds(7)};
    consul::query_meta out = before;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_query_meta(headers, out, diag); });
    fuzz::check_decode_error(ec, diag);

    const auto index = headers.index ? reference_u64(*headers.index) : std::nullopt;
    LAKEMESH_FUZZ_CHECK(bool(ec) == (headers.index && !index));
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec == decode_errc::invalid_header);
        return 0;
    }
    LAKEMESH_FUZZ_CHECK(out.index == (index ? *index : before.index));
    LAKEMESH_FUZZ_CHECK(out.known_leader == (headers.known_leader ? *headers.known_leader == "true"
                                                                  : before.known_leader));
    const auto contact = headers.last_contact ? reference_u64(*headers.last_contact) : std::nullopt;
    LAKEMESH_FUZZ_CHECK(out.last_contact.count() ==
                        static_cast<std::chrono::milliseconds::rep>(
                            contact ? *contact : std::uint64_t(before.last_contact.count())));
    return 0;
}
