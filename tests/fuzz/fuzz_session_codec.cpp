// session_codec.hpp (session/create's {"ID"} and the session arrays of info, list, node and
// renew; the create encoder): both decoders run on the same body. Errors are decode_errc with a
// message and leave the output empty; a decoded ID is the body's and never empty; sessions
// survive being written back as Consul writes them (LockDelay in ns, TTL as Go text) and decoded
// again; a create request built from a decoded session either fails validation with a message or
// encodes, without throwing, a body holding the same values.
// fuzz-dict: consul_json session
#include "consul/go_duration.hpp"
#include "consul/session_codec.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

namespace {

using namespace lakemesh;
using json = nlohmann::json;

json parsed(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    LAKEMESH_FUZZ_CHECK(!j.is_discarded());
    return j;
}

json session_json(const consul::session_info& s) {
    auto service_checks = json::array();
    for (const auto& sc : s.service_checks) {
        service_checks.push_back({{"ID", sc.id}, {"Namespace", sc.namespace_name}});
    }
    return {
        {"ID", s.id},
        {"Name", s.name},
        {"Node", s.node},
        {"LockDelay", std::chrono::nanoseconds(s.lock_delay).count()},
        {"Behavior", s.behavior == consul::session_behavior::delete_keys ? "delete" : "release"},
        {"TTL", consul::detail::format_go_duration(s.ttl)},
        {"NodeChecks", s.node_checks},
        {"ServiceChecks", service_checks},
        {"CreateIndex", s.create_index},
        {"ModifyIndex", s.modify_index}};
}

void fuzz_session_id(const std::string& body) {
    std::string id;
    diagnostics diag;
    const auto ec =
        fuzz::without_throwing([&] { return consul::detail::decode_session_id(body, id, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(id.empty());
        return;
    }
    LAKEMESH_FUZZ_CHECK(!id.empty());
    LAKEMESH_FUZZ_CHECK(parsed(body).at("ID") == id);
}

/// The create request a user would write to recreate `s`.
void fuzz_create(const consul::session_info& s) {
    consul::session_options o;
    o.name = s.name;
    o.node = s.node;
    o.lock_delay = s.lock_delay;
    o.behavior = s.behavior;
    o.ttl = s.ttl;
    o.node_checks = s.node_checks;
    o.service_checks = s.service_checks;
    diagnostics diag;
    const auto ec =
        fuzz::without_throwing([&] { return consul::detail::validate_session_options(o, diag); });
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec.category() == validation_category());
        LAKEMESH_FUZZ_CHECK(!diag.client_message().empty());
        return;
    }
    const json j =
        parsed(fuzz::without_throwing([&] { return consul::detail::encode_session_create(o); }));
    LAKEMESH_FUZZ_CHECK(j.value("Name", std::string()) == o.name);
    LAKEMESH_FUZZ_CHECK(j.value("Node", std::string()) == o.node);
    LAKEMESH_FUZZ_CHECK(
        j.at("Behavior") ==
        (o.behavior == consul::session_behavior::delete_keys ? "delete" : "release"));
    const auto lock_delay = consul::detail::parse_go_duration(j.at("LockDelay").get<std::string>());
    LAKEMESH_FUZZ_CHECK(lock_delay && *lock_delay == *o.lock_delay);
    if (o.ttl.count() == 0) {
        LAKEMESH_FUZZ_CHECK(!j.contains("TTL"));
    } else {
        const auto ttl = consul::detail::parse_go_duration(j.at("TTL").get<std::string>());
        LAKEMESH_FUZZ_CHECK(ttl && *ttl == o.ttl);
    }
    LAKEMESH_FUZZ_CHECK(j.at("NodeChecks") == *o.node_checks);
    LAKEMESH_FUZZ_CHECK(j.contains("ServiceChecks") == !o.service_checks.empty());
}

void fuzz_sessions(const std::string& body) {
    std::vector<consul::session_info> sessions;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_sessions(body, sessions, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(sessions.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.is_null() ? sessions.empty() : source.size() == sessions.size());
    auto rebuilt = json::array();
    for (const auto& s : sessions) {
        rebuilt.push_back(session_json(s));
        fuzz_create(s);
    }
    std::vector<consul::session_info> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_sessions(rebuilt.dump(), again, diag_again));
    auto again_json = json::array();
    for (const auto& s : again) {
        again_json.push_back(session_json(s));
    }
    LAKEMESH_FUZZ_CHECK(again_json == rebuilt);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lakemesh;
    const std::string body = fuzz::as_string(data, size);
    fuzz_session_id(body);
    fuzz_sessions(body);
    // The raw bytes as a session name (not JSON, maybe not UTF-8): whatever validation accepts
    // encodes without throwing.
    consul::session_info named;
    named.name = body.substr(0, 256);
    fuzz_create(named);
    return 0;
}
