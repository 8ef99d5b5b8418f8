// decode_kv_entries (GET /v1/kv/...): errors carry a message, and whatever decodes survives
// being written back as Consul's JSON and decoded again.
// fuzz-dict: consul_json kv
#include "consul/kv_codec.hpp"
#include "core/base64.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string body = fuzz::as_string(data, size);
    std::vector<consul::kv_pair> entries;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_kv_entries(body, entries, diag); });
    fuzz::check_decode_error(ec, diag);

    // The one-entry reader (GET of a key) agrees with the list reader.
    consul::kv_pair single;
    diagnostics single_diag;
    const auto single_ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_single_kv_entry(body, single, single_diag); });
    fuzz::check_decode_error(single_ec, single_diag);
    LAKEMESH_FUZZ_CHECK(!single_ec == (!ec && entries.size() == 1));
    if (!single_ec) {
        LAKEMESH_FUZZ_CHECK(single == entries.front());
    }
    if (ec) {
        return 0;
    }

    auto json = nlohmann::json::array();
    for (const auto& e : entries) {
        json.push_back({{"Key", e.key},
                        {"Value", lakemesh::detail::base64_encode(e.value)},
                        {"Flags", e.flags},
                        {"Session", e.session},
                        {"LockIndex", e.lock_index},
                        {"CreateIndex", e.create_index},
                        {"ModifyIndex", e.modify_index}});
    }
    std::vector<consul::kv_pair> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_kv_entries(json.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == entries);
    return 0;
}
