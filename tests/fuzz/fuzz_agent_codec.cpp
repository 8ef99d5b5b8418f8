// agent_codec.hpp (GET /v1/agent/self, members, services, checks, and the register/update
// encoders): every decoder runs on the same body. Errors are decode_errc with a message;
// whatever decodes equals what the body says (numbers included) and survives being written back
// as Consul's JSON and decoded again; the encoders fed with decoded values never throw and
// either refuse with validation_errc and a message or write the same values.
// fuzz-dict: consul_json agent
#include "consul/agent_codec.hpp"
#include "consul_shapes.hpp"
#include "fuzz_check.hpp"

#include <nlohmann/json.hpp>

namespace {

using namespace lakemesh;
using fuzz::json;

void check_encode_error(const error_code& ec, const diagnostics& diag) {
    if (ec) {
        LAKEMESH_FUZZ_CHECK(ec.category() == validation_category());
        LAKEMESH_FUZZ_CHECK(!diag.client_message().empty());
    }
}

json parsed(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    LAKEMESH_FUZZ_CHECK(!j.is_discarded());
    return j;
}

void fuzz_self(const std::string& body) {
    consul::agent_info info;
    diagnostics diag;
    const auto ec =
        fuzz::without_throwing([&] { return consul::detail::decode_agent_self(body, info, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        return;
    }
    const json rebuilt{{"Config",
                        {{"NodeName", info.node_name},
                         {"NodeID", info.node_id},
                         {"Datacenter", info.datacenter},
                         {"PrimaryDatacenter", info.primary_datacenter},
                         {"Version", info.version},
                         {"Revision", info.revision},
                         {"Server", info.server}}},
                       {"Member", {{"Addr", info.address}}},
                       {"Meta", info.node_meta}};
    consul::agent_info again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_agent_self(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again.node_name == info.node_name && again.node_id == info.node_id &&
                        again.datacenter == info.datacenter &&
                        again.primary_datacenter == info.primary_datacenter &&
                        again.version == info.version && again.revision == info.revision &&
                        again.server == info.server && again.address == info.address &&
                        again.node_meta == info.node_meta);
}

void fuzz_members(const std::string& body) {
    std::vector<consul::agent_member> members;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_agent_members(body, members, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(members.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.size() == members.size());
    auto rebuilt = json::array();
    for (std::size_t i = 0; i < members.size(); ++i) {
        const auto& m = members[i];
        LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(source[i], "Port", m.port));
        LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(source[i], "Status", m.status));
        rebuilt.push_back({{"Name", m.name},
                           {"Addr", m.address},
                           {"Port", m.port},
                           {"Tags", m.tags},
                           {"Status", m.status}});
    }
    std::vector<consul::agent_member> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_agent_members(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == members);
}

/// A registration of `s` as a user would write it from a listing: the encoder validates it
/// (control characters, port range) and otherwise writes exactly these values.
void fuzz_register(const consul::agent_service& s) {
    consul::service_registration reg;
    reg.id = s.id;
    reg.name = s.service;
    reg.tags = s.tags;
    reg.meta = s.meta;
    reg.port = s.port;
    reg.address = s.address;
    reg.weights = s.weights;
    reg.enable_tag_override = s.enable_tag_override;
    std::string body;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::encode_service_registration(reg, body, diag); });
    check_encode_error(ec, diag);
    if (ec) {
        return;
    }
    const json j = parsed(body);
    LAKEMESH_FUZZ_CHECK(j.at("Name") == reg.name);
    LAKEMESH_FUZZ_CHECK(j.value("ID", std::string()) == reg.id);
    LAKEMESH_FUZZ_CHECK(j.value("Tags", std::vector<std::string>()) == reg.tags);
    LAKEMESH_FUZZ_CHECK(j.value("Port", 0) == reg.port);
    LAKEMESH_FUZZ_CHECK(j.value("Address", std::string()) == reg.address);
    LAKEMESH_FUZZ_CHECK((j.value("Meta", std::map<std::string, std::string>()) == reg.meta));
    LAKEMESH_FUZZ_CHECK(j.at("Weights") == fuzz::service_weights_json(s.weights));
}

void fuzz_services(const std::string& body) {
    std::map<std::string, consul::agent_service> services;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_agent_services(body, services, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(services.empty());
        return;
    }
    const json source = parsed(body);
    LAKEMESH_FUZZ_CHECK(source.size() == services.size());
    auto rebuilt = json::object();
    for (const auto& [id, s] : services) {
        LAKEMESH_FUZZ_CHECK(source.contains(id));
        LAKEMESH_FUZZ_CHECK(fuzz::number_agrees(source[id], "Port", s.port));
        rebuilt[id] = fuzz::service_json(s);
        fuzz_register(s);
    }
    std::map<std::string, consul::agent_service> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_agent_services(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == services);
}

/// The check definition and update a user would write from a listed check.
void fuzz_check_encoders(const consul::health_check& c) {
    consul::check_definition def;
    def.id = c.check_id;
    def.name = c.name;
    def.service_id = c.service_id;
    def.notes = c.notes;
    def.status = c.status;
    std::string body;
    diagnostics diag;
    auto ec = fuzz::without_throwing(
        [&] { return consul::detail::encode_check_definition(def, body, diag); });
    check_encode_error(ec, diag);
    if (c.status == consul::check_status::maintenance) {
        LAKEMESH_FUZZ_CHECK(static_cast<bool>(ec));  // maintenance is no status to register with
    }
    if (!ec) {
        const json j = parsed(body);
        LAKEMESH_FUZZ_CHECK(j.value("ID", std::string()) == def.id);
        LAKEMESH_FUZZ_CHECK(j.value("Name", std::string()) == def.name);
        LAKEMESH_FUZZ_CHECK(j.value("ServiceID", std::string()) == def.service_id);
        LAKEMESH_FUZZ_CHECK(j.value("Notes", std::string()) == def.notes);
        LAKEMESH_FUZZ_CHECK(j.at("Status") == std::string(consul::to_string(c.status)));
    }

    body.clear();
    diagnostics diag_update;
    ec = fuzz::without_throwing(
        [&] { return consul::detail::encode_check_update(c.status, c.output, body, diag_update); });
    check_encode_error(ec, diag_update);
    LAKEMESH_FUZZ_CHECK(static_cast<bool>(ec) == (c.status == consul::check_status::maintenance));
    if (!ec) {
        const json j = parsed(body);
        LAKEMESH_FUZZ_CHECK(j.at("Output") == c.output);
        LAKEMESH_FUZZ_CHECK(j.at("Status") == std::string(consul::to_string(c.status)));
    }
}

void fuzz_checks(const std::string& body) {
    std::map<std::string, consul::agent_check> checks;
    diagnostics diag;
    const auto ec = fuzz::without_throwing(
        [&] { return consul::detail::decode_agent_checks(body, checks, diag); });
    fuzz::check_decode_error(ec, diag);
    if (ec) {
        LAKEMESH_FUZZ_CHECK(checks.empty());
        return;
    }
    LAKEMESH_FUZZ_CHECK(parsed(body).size() == checks.size());
    auto rebuilt = json::object();
    for (const auto& [id, c] : checks) {
        rebuilt[id] = fuzz::check_json(c);
        fuzz_check_encoders(c);
    }
    std::map<std::string, consul::agent_check> again;
    diagnostics diag_again;
    LAKEMESH_FUZZ_CHECK(!consul::detail::decode_agent_checks(rebuilt.dump(), again, diag_again));
    LAKEMESH_FUZZ_CHECK(again == checks);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string body = lakemesh::fuzz::as_string(data, size);
    fuzz_self(body);
    fuzz_members(body);
    fuzz_services(body);
    fuzz_checks(body);
    return 0;
}
