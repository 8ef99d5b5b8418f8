// Catalog answer decoders: good bodies, missing fields, wrong types, malformed JSON.
#include "consul/catalog_codec.hpp"

#include <gtest/gtest.h>

namespace lakemesh::consul::detail {
namespace {

TEST(catalog_codec, services_map_names_to_tags) {
    std::map<std::string, std::vector<std::string>> out;
    diagnostics diag;
    ASSERT_FALSE(
        decode_catalog_services(R"({"consul":[],"web":["v1","blue"],"db":null})", out, diag));
    EXPECT_EQ(out.size(), 3u);
    EXPECT_TRUE(out["consul"].empty());
    EXPECT_EQ(out["web"], (std::vector<std::string>{"v1", "blue"}));
    EXPECT_TRUE(out["db"].empty());
}

TEST(catalog_codec, services_rejects_wrong_shapes) {
    std::map<std::string, std::vector<std::string>> out;
    diagnostics diag;
    EXPECT_EQ(decode_catalog_services("[]", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_services(R"({"web":"v1"})", out, diag), decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find("web"), std::string::npos);
    EXPECT_EQ(decode_catalog_services(R"({"web":[1]})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_services("{", out, diag), decode_errc::malformed_json);
    EXPECT_TRUE(out.empty());
}

// Found by fuzz_catalog_codec: the tags were looked up again by name.c_str(), so a name with a
// NUL read the tags of the name cut at the NUL, or none, and accepted values of any type.
TEST(catalog_codec, services_names_with_nul_keep_their_own_tags) {
    std::map<std::string, std::vector<std::string>> out;
    diagnostics diag;
    EXPECT_EQ(decode_catalog_services(R"({"web\u0000x":5})", out, diag), decode_errc::wrong_type);
    EXPECT_TRUE(out.empty());
    ASSERT_FALSE(decode_catalog_services(R"({"web":["a"],"web\u0000x":["b"]})", out, diag));
    EXPECT_EQ(out.at("web"), std::vector<std::string>{"a"});
    EXPECT_EQ(out.at(std::string("web\0x", 5)), std::vector<std::string>{"b"});
}

constexpr const char* service_body = R"([{
  "ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "n1", "Address": "192.168.10.10",
  "Datacenter": "dc1", "TaggedAddresses": {"lan": "192.168.10.10"}, "NodeMeta": {"rack": "r1"},
  "ServiceKind": "", "ServiceID": "web-1", "ServiceName": "web", "ServiceTags": ["v1"],
  "ServiceAddress": "10.0.0.1", "ServicePort": 8080, "ServiceMeta": {"version": "2"},
  "ServiceWeights": {"Passing": 10, "Warning": 1}, "ServiceEnableTagOverride": false,
  "CreateIndex": 51, "ModifyIndex": 52}])";

TEST(catalog_codec, service_entries_are_typed) {
    std::vector<catalog_service> out;
    diagnostics diag;
    ASSERT_FALSE(decode_catalog_service(service_body, out, diag)) << diag.to_string();
    ASSERT_EQ(out.size(), 1u);
    const auto& s = out[0];
    EXPECT_EQ(s.id, "40e4a748-2192-161a-0510-9bf59fe950b5");
    EXPECT_EQ(s.node, "n1");
    EXPECT_EQ(s.address, "192.168.10.10");
    EXPECT_EQ(s.datacenter, "dc1");
    EXPECT_EQ(s.tagged_addresses.at("lan"), "192.168.10.10");
    EXPECT_EQ(s.node_meta.at("rack"), "r1");
    EXPECT_EQ(s.service_id, "web-1");
    EXPECT_EQ(s.service_name, "web");
    EXPECT_EQ(s.service_tags, std::vector<std::string>{"v1"});
    EXPECT_EQ(s.service_address, "10.0.0.1");
    EXPECT_EQ(s.service_port, 8080);
    EXPECT_EQ(s.service_meta.at("version"), "2");
    EXPECT_EQ(s.service_weights, (catalog_weights{10, 1}));
    EXPECT_EQ(s.create_index, 51u);
    EXPECT_EQ(s.modify_index, 52u);
}

TEST(catalog_codec, service_optional_fields_may_be_null_or_absent) {
    std::vector<catalog_service> out;
    diagnostics diag;
    ASSERT_FALSE(decode_catalog_service(
        R"([{"Node":"n","ServiceID":"a","ServiceName":"b","ServiceTags":null,"NodeMeta":null}])",
        out, diag))
        << diag.to_string();
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].service_tags.empty());
    EXPECT_EQ(out[0].service_weights, catalog_weights{});
    ASSERT_FALSE(decode_catalog_service("null", out, diag));
    EXPECT_TRUE(out.empty());
    ASSERT_FALSE(decode_catalog_service("[]", out, diag));
}

TEST(catalog_codec, service_errors_name_the_field) {
    std::vector<catalog_service> out;
    diagnostics diag;
    EXPECT_EQ(decode_catalog_service(R"([{"Node":"n","ServiceName":"b"}])", out, diag),
              decode_errc::missing_field);
    EXPECT_NE(diag.client_message().find("ServiceID"), std::string::npos);
    EXPECT_EQ(decode_catalog_service(R"([{"Node":"n","ServiceID":"a","ServiceName":"b",
        "ServicePort":"80"}])",
                                     out, diag),
              decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find("ServicePort"), std::string::npos);
    EXPECT_EQ(decode_catalog_service(R"([{"Node":"n","ServiceID":"a","ServiceName":"b",
        "ServicePort":70000}])",
                                     out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_service(R"([{"Node":"n","ServiceID":"a","ServiceName":"b",
        "ServiceWeights":{"Passing":"x"}}])",
                                     out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_service(R"({"Node":"n"})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_service(R"([1])", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_service(R"([{"Node":)", out, diag), decode_errc::malformed_json);
    EXPECT_TRUE(out.empty());
}

TEST(catalog_codec, nodes) {
    std::vector<catalog_node> out;
    diagnostics diag;
    ASSERT_FALSE(decode_catalog_nodes(R"([{"ID":"id1","Node":"n1","Address":"10.0.0.1",
        "Datacenter":"dc1","TaggedAddresses":{"wan":"1.2.3.4"},"Meta":{"k":"v"},
        "CreateIndex":3,"ModifyIndex":4},{"Node":"n2"}])",
                                      out, diag))
        << diag.to_string();
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].id, "id1");
    EXPECT_EQ(out[0].node, "n1");
    EXPECT_EQ(out[0].tagged_addresses.at("wan"), "1.2.3.4");
    EXPECT_EQ(out[0].meta.at("k"), "v");
    EXPECT_EQ(out[0].modify_index, 4u);
    EXPECT_EQ(out[1].node, "n2");

    EXPECT_EQ(decode_catalog_nodes(R"([{"ID":"x"}])", out, diag), decode_errc::missing_field);
    EXPECT_EQ(decode_catalog_nodes(R"([{"Node":"n","Meta":{"k":1}}])", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_nodes("nope", out, diag), decode_errc::malformed_json);
}

TEST(catalog_codec, node_with_services_and_null_for_unknown) {
    std::optional<catalog_node_services> out;
    diagnostics diag;
    ASSERT_FALSE(decode_catalog_node(R"({"Node":{"Node":"n1","Address":"10.0.0.1"},
        "Services":{"web-1":{"ID":"web-1","Service":"web","Tags":["a"],"Port":80,
        "Weights":{"Passing":1,"Warning":1},"Meta":{}}}})",
                                     out, diag))
        << diag.to_string();
    ASSERT_TRUE(out);
    EXPECT_EQ(out->node.node, "n1");
    ASSERT_EQ(out->services.size(), 1u);
    EXPECT_EQ(out->services.at("web-1").service, "web");
    EXPECT_EQ(out->services.at("web-1").port, 80);

    ASSERT_FALSE(decode_catalog_node("null", out, diag));
    EXPECT_FALSE(out);
    ASSERT_FALSE(decode_catalog_node(R"({"Node":{"Node":"n"},"Services":null})", out, diag));
    ASSERT_TRUE(out);
    EXPECT_TRUE(out->services.empty());

    EXPECT_EQ(decode_catalog_node(R"({"Services":{}})", out, diag), decode_errc::missing_field);
    EXPECT_FALSE(out);
    EXPECT_EQ(decode_catalog_node(R"({"Node":{"Node":"n"},"Services":[]})", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(
        decode_catalog_node(R"({"Node":{"Node":"n"},"Services":{"a":{"ID":"a"}}})", out, diag),
        decode_errc::missing_field);
    EXPECT_NE(diag.client_message().find("Services.a"), std::string::npos);
    EXPECT_EQ(decode_catalog_node("[]", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_catalog_node("{\"Node\"", out, diag), decode_errc::malformed_json);
}

}  // namespace
}  // namespace lakemesh::consul::detail
