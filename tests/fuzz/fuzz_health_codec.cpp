// health_codec.hpp (GET /v1/health/service/:name and the check arrays of health/checks,
// health/state and health/node): both decoders run on the same body. Errors are decode_errc with
// a message and leave the output empty; whatever decodes keeps one value per array element, its
// numbers are the body's, and it survives being written back as Consul's JSON and decoded again.
// The tree-free reader of service entries gives the tree decoder's result whenever it answers.
// fuzz-dict: consul_json agent
#include "consul/health_codec.hpp"
#include "consul_shapes.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

namespace {

using namespace lakemesh;
using fuzz::json;

json parsed(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    LAKEMESH_FUZZ_CHECK(!j.is_discarded());
    return j;
}

json checks_json(const std::vector<consul::health_check>& checks) {
    auto list = json::array();
    for (const auto& c : checks) {
        list.push_back(fuzz::check_json(c));
    }
    return list;
}

void fuzz_service_entries(const std::string& body) {
    std::vector<consul::service_entry> entries;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_service_entries(body, entries, diag); });
    fuzz::check_decode_error(ec, diag);
    // The tree-free reader decides nothing: whatever it takes, the tree decoder reads the same.
    std::vector<consul::service_entry> fast;
    std::vector<consul::service_entry> tree;
    diagnostics diag_tree;
    const auto ec_tree = consul::detail::decode_service_entries_tree(body, tree, diag_tree);
    LAKEMESH_FUZZ_CHECK(ec_tree == ec && diag_tree.client_message() == diag.client_message());
    LAKEMESH_FUZZ_CHECK(tree == entries);
    if (consul::detail::read_service_entries_fast(body, fast)) {
        LAKEMESH_FUZZ_CHECK(!ec && fast == entries);
    }
    if (ec) {
        LAKEMESH_FUZZ_CHECK(entries.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.size() == entries.size());
    auto rebuilt = json::array();
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto& e = entries[i];
        LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(source[i].at("Service"), "Port", e.service.port));
        // Go writes an empty slice as null: both read as no checks.
        const auto checks = source[i].find("Checks");
        LAKEMESH_FUZZ_CHECK(e.checks.size() ==
                            (checks == source[i].end() || checks->is_null() ? 0 : checks->size()));
        rebuilt.push_back({{"Node", fuzz::node_json(e.node)},
                           {"Service", fuzz::service_json(e.service)},
                           {"Checks", checks_json(e.checks)}});
    }
    std::vector<consul::service_entry> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_service_entries(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == entries);
}

void fuzz_health_checks(const std::string& body) {
    std::vector<consul::health_check> checks;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_health_checks(body, checks, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(checks.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.is_array() && source.size() == checks.size());
    std::vector<consul::health_check> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(
        !consul::detail::decode_health_checks(checks_json(checks).dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == checks);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body = lakemesh::fuzz::as_string(data, size);
    fuzz_service_entries(body);
    fuzz_health_checks(body);
    return 0;
}
