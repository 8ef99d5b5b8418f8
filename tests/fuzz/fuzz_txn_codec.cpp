// txn_codec.hpp (PUT /v1/txn's answer on commit and on rollback; the request encoder): errors are
// decode_errc with a message and leave the result empty; results and errors survive being written
// back as Consul writes them (values base64) and decoded again; the entries, written as set /
// lock / check-index operations, either fail validation with a message or encode, without
// throwing, a body that carries each key, value (base64), flags, index and session.
// fuzz-dict: consul_json kv txn
#include "consul/txn_codec.hpp"
#include "core/base64.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace {

using namespace lakemesh;
using json = nlohmann::json;

json parsed(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    LAKEMESH_FUZZ_CHECK(!j.is_discarded());
    return j;
}

json result_json(const consul::txn_result& r) {
    auto results = json::array();
    for (const auto& e : r.results) {
        results.push_back({{"KV",
                            {{"Key", e.key},
                             {"Value", lakemesh::detail::base64_encode(e.value)},
                             {"Flags", e.flags},
                             {"Session", e.session},
                             {"LockIndex", e.lock_index},
                             {"CreateIndex", e.create_index},
                             {"ModifyIndex", e.modify_index}}}});
    }
    auto errors = json::array();
    for (const auto& e : r.errors) {
        errors.push_back({{"OpIndex", e.op_index}, {"What", e.what}});
    }
    // Go writes an empty slice as null.
    return {{"Results", results.empty() ? json(nullptr) : results},
            {"Errors", errors.empty() ? json(nullptr) : errors}};
}

/// Encodes `ops` if validation accepts them and checks the body against them.
void fuzz_encode(const std::vector<consul::txn_kv_op>& ops) {
    diagnostics diag;
    const auto ec = fuzz::without_throwing([&] { return consul::detail::validate_txn(ops, diag); });
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec.category() == validation_category());
        LAKEMESH_FUZZ_CHECK(!diag.client_message().empty());
        return;
    }
    const json body =
        parsed(fuzz::without_throwing([&] { return consul::detail::encode_txn(ops); }));
    LAKEMESH_FUZZ_CHECK(body.is_array() && body.size() == ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto& op = ops[i];
        const json& kv = body[i].at("KV");
        LAKEMESH_FUZZ_CHECK(kv.at("Verb") == consul::detail::txn_verb_name(op.verb));
        LAKEMESH_FUZZ_CHECK(kv.at("Key") == op.key);
        LAKEMESH_FUZZ_CHECK(kv.value("Flags", std::uint64_t{0}) == op.flags);
        if (op.verb == consul::txn_kv_verb::set || op.verb == consul::txn_kv_verb::lock) {
            const auto value = lakemesh::detail::base64_decode(kv.at("Value").get<std::string>());
            LAKEMESH_FUZZ_CHECK(value && *value == op.value);
        }
        if (op.verb == consul::txn_kv_verb::lock) {
            LAKEMESH_FUZZ_CHECK(kv.at("Session") == op.session);
        }
        if (op.verb == consul::txn_kv_verb::check_index) {
            LAKEMESH_FUZZ_CHECK(kv.at("Index") == op.index);
        }
    }
    LAKEMESH_FUZZ_CHECK(consul::detail::txn_is_read_only(ops) ==
                        std::all_of(ops.begin(), ops.end(), [](const auto& op) {
                            return op.verb == consul::txn_kv_verb::check_index;
                        }));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body = fuzz::as_string(data, size);
    consul::txn_result result;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_txn_response(body, result, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(result.results.empty() && result.errors.empty());
    } else {
        const json rebuilt = result_json(result);
        consul::txn_result again;
        diagnostics diag_again;
        LAKEMESH_FUZZ_CHECK(
            !consul::detail::decode_txn_response(rebuilt.dump(), again, diag_again));
        LAKEMESH_FUZZ_CHECK(again.results == result.results && again.errors == result.errors);

        // Writing the entries back: a lock where the entry has a session, a set otherwise,
        // each guarded by a check-index on its ModifyIndex.
        std::vector<consul::txn_kv_op> ops;
        for (const auto& e : result.results) {
            if (ops.size() + 2 > consul::max_txn_ops) {
                break;
            }
            ops.push_back({consul::txn_kv_verb::check_index, e.key, "", 0, e.modify_index, ""});
            ops.push_back({e.session.empty() ? consul::txn_kv_verb::set : consul::txn_kv_verb::lock,
                           e.key, e.value, e.flags, 0, e.session});
        }
        fuzz_encode(ops);
    }

    // The raw bytes as a key and a value (not JSON, maybe not UTF-8): whatever validation
    // accepts encodes without throwing.
    const std::string raw = body.substr(0, 256);
    fuzz_encode({{consul::txn_kv_verb::set, raw, raw, 0, 0, ""}});
    return 0;
}
