// decode_string_array (?keys, status/peers): errors carry a message, and whatever decodes
// survives being written back as JSON and decoded again.
// fuzz-dict: consul_json
#include "consul/kv_codec.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string body = fuzz::as_string(data, size);
    std::vector<std::string> strings;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_string_array(body, strings, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        return 0;
    }
    std::vector<std::string> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(
        !consul::detail::decode_string_array(nlohmann::json(strings).dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == strings);
    return 0;
}
