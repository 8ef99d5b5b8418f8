// decode_bool (answers of KV writes, ?acquire, ?release, ?cas): exactly "true" or "false",
// optionally followed by newlines or spaces, is accepted; everything else is a clear error.
#include "consul/kv_codec.hpp"
#include "fuzz_check.hpp"

#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string body = fuzz::as_string(data, size);
    // Start from the opposite of what the body says, so an untouched `out` is caught.
    std::string_view trimmed = body;
    while (!trimmed.empty() &&
           (trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == ' ')) {
        trimmed.remove_suffix(1);
    }
    const bool says_true = trimmed == "true";
    const bool says_false = trimmed == "false";
    bool out = !says_true;
    diagnostics diag;
    const auto ec =
        fuzz::without_throwing([&] { return consul::detail::decode_bool(body, out, diag); });
    fuzz::check_decode_error(ec, diag);
    LAKEMESH_FUZZ_CHECK(!ec == (says_true || says_false));
    if (!ec) {
        LAKEMESH_FUZZ_CHECK(out == says_true);
    }
    return 0;
}
