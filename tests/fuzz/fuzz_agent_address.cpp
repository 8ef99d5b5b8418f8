// parse_agent_address and client_config::from_env (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN).
// Checks: an accepted address is usable (a host without control characters, a port) and
// reads back the same from its own to_string(); from_env errors carry a message, and a
// rejected token never appears in it.
// fuzz-dict: agent_address
#include "fuzz_check.hpp"

#include <lakemesh/consul/client_config.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

namespace {

bool has_control(std::string_view v) {
    return std::any_of(v.begin(), v.end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string text = fuzz::as_string(data, size);

    bool tls = false;
    const auto addr =
        fuzz::without_throwing([&] { return consul::parse_agent_address(text, &tls); });
    if (addr) {
        LAKEMESH_FUZZ_CHECK(!addr->host.empty());
        LAKEMESH_FUZZ_CHECK(!has_control(addr->host));
        LAKEMESH_FUZZ_CHECK(addr->host.find_first_of("/?#@ ") == std::string::npos);
        LAKEMESH_FUZZ_CHECK(addr->port != 0);
        LAKEMESH_FUZZ_CHECK(tls == std::string_view(text).starts_with("https://"));
        const auto again = consul::parse_agent_address(addr->to_string());
        LAKEMESH_FUZZ_CHECK(again.has_value());
        LAKEMESH_FUZZ_CHECK(*again == *addr);
    } else {
        LAKEMESH_FUZZ_CHECK(!tls);
    }

    auto only = [](const char* name, const std::string& value) {
        return [name, value](std::string_view asked) -> std::optional<std::string> {
            if (asked == name) {
                return value;
            }
            return std::nullopt;
        };
    };
    error_code ec;
    diagnostics diag;
    auto cfg = fuzz::without_throwing(
        [&] { return consul::client_config::from_env(only("CONSUL_HTTP_ADDR", text), ec, diag); });
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec == validation_errc::invalid_environment);
        LAKEMESH_FUZZ_CHECK(!diag.client_message().empty());
    } else {
        LAKEMESH_FUZZ_CHECK(!cfg.addresses.empty());
        diagnostics validate_diag;
        LAKEMESH_FUZZ_CHECK(!cfg.validate(validate_diag));
    }

    cfg = fuzz::without_throwing(
        [&] { return consul::client_config::from_env(only("CONSUL_HTTP_TOKEN", text), ec, diag); });
    if (has_control(text)) {
        LAKEMESH_FUZZ_CHECK(ec == validation_errc::invalid_environment);
        // The token is a secret: its value must not leak into an error message.
        LAKEMESH_FUZZ_CHECK(diag.client_message().find(text) == std::string::npos);
    } else {
        LAKEMESH_FUZZ_CHECK(!ec);
        LAKEMESH_FUZZ_CHECK(cfg.token == text);
    }
    return 0;
}
