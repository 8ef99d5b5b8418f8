// Health codecs without sockets: service entries and check arrays, good and bad.
#include "consul/health_codec.hpp"

#include <gtest/gtest.h>

namespace lakemesh::consul::detail {
namespace {

constexpr const char* entries_body = R"([
  {"Node": {"ID": "0b4d2b9e-0000-4000-8000-000000000001", "Node": "node-a",
            "Address": "10.0.0.1", "Datacenter": "dc1", "TaggedAddresses": {"lan": "10.0.0.1"},
            "Meta": {"rack": "r1"}, "CreateIndex": 5, "ModifyIndex": 6},
   "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Address": "",
               "Meta": {"version": "1.2"}, "Port": 8080,
               "Weights": {"Passing": 10, "Warning": 1}, "EnableTagOverride": false,
               "CreateIndex": 7, "ModifyIndex": 8},
   "Checks": [
     {"Node": "node-a", "CheckID": "serfHealth", "Name": "Serf Health Status",
      "Status": "passing", "Notes": "", "Output": "Agent alive and reachable",
      "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
      "CreateIndex": 5, "ModifyIndex": 5},
     {"Node": "node-a", "CheckID": "service:web-1", "Name": "Service 'web' check",
      "Status": "critical", "Notes": "", "Output": "", "ServiceID": "web-1",
      "ServiceName": "web", "ServiceTags": ["v1", "primary"], "Type": "ttl",
      "CreateIndex": 7, "ModifyIndex": 9}]},
  {"Node": {"Node": "node-b", "Address": "10.0.0.2"},
   "Service": {"ID": "web-2", "Service": "web", "Address": "10.0.1.2", "Port": 8080},
   "Checks": null}])";

TEST(decode_service_entries, reads_nodes_services_and_checks) {
    std::vector<service_entry> e;
    diagnostics diag;
    ASSERT_FALSE(decode_service_entries(entries_body, e, diag)) << diag.to_string();
    ASSERT_EQ(e.size(), 2u);
    EXPECT_EQ(e[0].node.id, "0b4d2b9e-0000-4000-8000-000000000001");
    EXPECT_EQ(e[0].node.node, "node-a");
    EXPECT_EQ(e[0].node.datacenter, "dc1");
    EXPECT_EQ(e[0].node.meta.at("rack"), "r1");
    EXPECT_EQ(e[0].node.tagged_addresses.at("lan"), "10.0.0.1");
    EXPECT_EQ(e[0].node.modify_index, 6u);
    EXPECT_EQ(e[0].service.id, "web-1");
    EXPECT_EQ(e[0].service.tags, (std::vector<std::string>{"v1", "primary"}));
    EXPECT_EQ(e[0].service.port, 8080);
    EXPECT_EQ(e[0].service.weights, (service_weights{10, 1}));
    EXPECT_EQ(e[0].service.modify_index, 8u);
    EXPECT_EQ(e[0].address(), "10.0.0.1");  // the node's: the service has none
    ASSERT_EQ(e[0].checks.size(), 2u);
    EXPECT_EQ(e[0].checks[0].check_id, "serfHealth");
    EXPECT_EQ(e[0].checks[1].status, check_status::critical);
    EXPECT_EQ(e[0].status(), check_status::critical);
    EXPECT_EQ(e[1].address(), "10.0.1.2");
    EXPECT_TRUE(e[1].checks.empty());
    EXPECT_EQ(e[1].status(), check_status::passing);
    EXPECT_EQ(e[1].service.weights, (service_weights{1, 1}));  // absent: Consul's defaults
}

TEST(decode_service_entries, empty_array_is_no_instances) {
    std::vector<service_entry> e{service_entry{}};
    diagnostics diag;
    ASSERT_FALSE(decode_service_entries("[]", e, diag));
    EXPECT_TRUE(e.empty());
}

TEST(decode_service_entries, names_the_missing_or_mistyped_field) {
    struct bad {
        const char* body;
        error_code ec;
        const char* message;
    };
    const bad cases[] = {
        {R"([{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "x", "Service": "x",
              "Port": "80"}}])",
         decode_errc::wrong_type, "field entries[0].Service.Port is not an integer"},
        {R"([{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "x"}}])",
         decode_errc::missing_field, "missing field entries[0].Service.Service"},
        {R"([{"Node": {"Node": "n"}, "Service": {"ID": "x", "Service": "x"}}])",
         decode_errc::missing_field, "missing field entries[0].Node.Address"},
        {R"([{"Service": {"ID": "x", "Service": "x"}}])", decode_errc::missing_field,
         "missing field entries[0].Node"},
        {R"([{"Node": {"Node": "n", "Address": "a"}}])", decode_errc::missing_field,
         "missing field entries[0].Service"},
        {R"([{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "x", "Service": "x"},
              "Checks": [{"CheckID": "c", "Status": "passing"}, {"CheckID": "d"}]}])",
         decode_errc::missing_field, "missing field entries[0].Checks[1].Status"},
        {R"([{"Node": {"Node": "n", "Address": "a"}, "Service": {"ID": "x", "Service": "x"},
              "Checks": {}}])",
         decode_errc::wrong_type, "entries[0].Checks is not a JSON array"},
        {R"([{"Node": {"Node": "n", "Address": "a", "Meta": {"k": 1}},
              "Service": {"ID": "x", "Service": "x"}}])",
         decode_errc::wrong_type, "field entries[0].Node.Meta is not an object of strings"},
        {R"([7])", decode_errc::wrong_type, "entries[0] is not a JSON object"},
        {R"({"Node": {}})", decode_errc::wrong_type, "entries is not a JSON array"},
        {R"([{"Node": )", decode_errc::malformed_json, "response body is not valid JSON"},
    };
    for (const auto& c : cases) {
        std::vector<service_entry> e;
        diagnostics diag;
        EXPECT_EQ(decode_service_entries(c.body, e, diag), c.ec) << c.body;
        EXPECT_EQ(diag.client_message(), c.message) << c.body;
        EXPECT_TRUE(e.empty());
    }
}

TEST(decode_health_checks, reads_a_check_array) {
    std::vector<health_check> c;
    diagnostics diag;
    ASSERT_FALSE(decode_health_checks(
        R"([{"Node": "n", "CheckID": "a", "Name": "A", "Status": "passing", "Notes": "note",
             "Output": "ok", "ServiceID": "s", "ServiceName": "svc", "ServiceTags": ["t"],
             "Type": "http", "CreateIndex": 3, "ModifyIndex": 4},
            {"CheckID": "b", "Status": "warning"}])",
        c, diag));
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(
        c[0],
        (health_check{
            "n", "a", "A", check_status::passing, "note", "ok", "s", "svc", {"t"}, "http", 3, 4}));
    EXPECT_EQ(c[1].status, check_status::warning);
}

TEST(decode_health_checks, errors) {
    std::vector<health_check> c;
    diagnostics diag;
    EXPECT_EQ(decode_health_checks("null", c, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_health_checks(R"([{"CheckID": 1, "Status": "passing"}])", c, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(diag.client_message(), "field checks[0].CheckID is not a string");
    EXPECT_EQ(decode_health_checks(R"([{"CheckID": "a", "Status": "maintenance?"}])", c, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_health_checks("not json", c, diag), decode_errc::malformed_json);
    EXPECT_TRUE(c.empty());
}

TEST(health_decoders, never_throw_on_garbage) {
    for (std::string in : {"", "null", "[", "[null]", "[[]]", "[{}]", "[{\"Node\":null}]",
                           "[{\"Node\":[],\"Service\":[]}]", "\"x\"", "1e999", "\xc3\x28"}) {
        diagnostics diag;
        std::vector<service_entry> e;
        std::vector<health_check> c;
        EXPECT_NO_THROW({
            (void)decode_service_entries(in, e, diag);
            (void)decode_health_checks(in, c, diag);
        }) << in;
    }
    EXPECT_EQ(to_string(health_state::critical), "critical");
}

// ---- The tree-free reader against the tree decoder.

/// Decodes `body` both ways and expects the same error, message and entries; returns whether
/// the fast reader took it.
bool same_as_tree(const std::string& body) {
    std::vector<service_entry> fast;
    std::vector<service_entry> tree;
    std::vector<service_entry> both;
    diagnostics diag_tree;
    diagnostics diag_both;
    const bool took = read_service_entries_fast(body, fast);
    const error_code ec_tree = decode_service_entries_tree(body, tree, diag_tree);
    const error_code ec_both = decode_service_entries(body, both, diag_both);
    EXPECT_EQ(ec_both, ec_tree) << body;
    EXPECT_EQ(diag_both.client_message(), diag_tree.client_message()) << body;
    EXPECT_EQ(both, tree) << body;
    if (took) {
        EXPECT_FALSE(ec_tree) << "fast reader accepted what the tree decoder refuses: " << body;
        EXPECT_EQ(fast, tree) << body;
    }
    return took;
}

// What dev_consul and Consul send: nested Definition, Proxy and Connect objects the client skips.
constexpr const char* consul_body = R"([{"Node":{"ID":"9b2c","Node":"dev","Address":"127.0.0.1",
"Datacenter":"dc1","TaggedAddresses":{"lan":"127.0.0.1","wan":"127.0.0.1"},
"Meta":{"consul-network-segment":""},"CreateIndex":2,"ModifyIndex":2},
"Service":{"ID":"web-1","Service":"web","Tags":[],"Address":"","Meta":{},"Port":9000,
"Weights":{"Passing":1,"Warning":1},"EnableTagOverride":false,"Kind":"","Proxy":{"Mode":"",
"Upstreams":[],"Config":{"a":[1,true,null,{"b":"c"}],"d":false}},"Connect":{},"PeerName":"",
"CreateIndex":10,"ModifyIndex":10},"Checks":[{"Node":"dev","CheckID":"serfHealth",
"Name":"Serf Health Status","Status":"passing","Notes":"","Output":"Agent alive and reachable",
"ServiceID":"","ServiceName":"","ServiceTags":[],"Type":"","Interval":"","Timeout":"",
"ExposedPort":0,"Definition":{},"CreateIndex":2,"ModifyIndex":2}]}])";

TEST(read_service_entries_fast, takes_the_common_shapes) {
    EXPECT_TRUE(same_as_tree(entries_body));
    EXPECT_TRUE(same_as_tree(consul_body));
    EXPECT_TRUE(same_as_tree("[]"));
    EXPECT_TRUE(same_as_tree(" \n[ ]\t\r\n"));
    const std::string minimal =
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"}}])";
    EXPECT_TRUE(same_as_tree(minimal));
    // Escapes other than \u, nulls for optional fields, empty Weights (read as 0 and 0).
    EXPECT_TRUE(same_as_tree(R"([{"Node":{"Node":"n","Address":"a","ID":null,"Meta":null},
        "Service":{"ID":"x","Service":"x","Port":null,"Tags":null,"Weights":{},
        "EnableTagOverride":true,"Kind":null},"Checks":[{"CheckID":"c","Status":"warning",
        "Output":"line 1\nline \"2\"\t\\ \/ \b\f\r","Definition":{"Header":{"k":["v"]}}}]}])"));
    EXPECT_TRUE(same_as_tree(R"([{"Node":{"Node":"n","Address":"a"},
        "Service":{"ID":"x","Service":"x","Weights":null},"Checks":null}])"));
    EXPECT_TRUE(same_as_tree(R"([{"Node":{"Node":"n","Address":"a",
        "Meta":{"k":"1","k":"2"}},"Service":{"ID":"x","Service":"x","Port":2147483647}}])"));
    std::vector<service_entry> e;
    ASSERT_TRUE(read_service_entries_fast(consul_body, e));
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].service.port, 9000);
    EXPECT_EQ(e[0].checks.at(0).status, check_status::passing);
}

TEST(read_service_entries_fast, leaves_the_unusual_to_the_tree_decoder) {
    const char* cases[] = {
        // Valid answers outside the fast reader's subset.
        R"([{"Node":{"Node":"n\u00e9","Address":"a"},"Service":{"ID":"x","Service":"x"}}])",
        "[{\"Node\":{\"Node\":\"n\xc3\xa9\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\","
        "\"Service\":\"x\"}}]",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","Port":80.0}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","Port":-1}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","X":-1.5e3}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Node":{"Node":"m","Address":"b"},
            "Service":{"ID":"x","Service":"x"}}])",
        R"([{"Node":{"Node":"n","Address":"a","Meta":{"k":1,"k":"2"}},
            "Service":{"ID":"x","Service":"x"}}])",
        // Errors, each with the tree decoder's message.
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x",
            "Port":2147483648}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x",
            "CreateIndex":18446744073709551616}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","Tags":[1]}}])",
        R"([{"Node":{"Node":"n","Address":"a","Meta":{"k":null}},
            "Service":{"ID":"x","Service":"x"}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"},
            "Checks":[{"CheckID":"c","Status":"sleepy"}]}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"},
            "Checks":[{"CheckID":"c","Status":null}]}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"},
            "Checks":[{"Status":"passing"}]}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"},
            "Checks":[null]}])",
        R"([{"Node":null,"Service":{"ID":"x","Service":"x"}}])",
        R"([{"Node":{"Node":"n","Address":null},"Service":{"ID":"x","Service":"x"}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x",
            "Weights":{"Passing":"1"}}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x",
            "EnableTagOverride":"yes"}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"}},])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x"}}] x)",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","y":01}}])",
        R"([{"Node":{"Node":"n","Address":"a"},"Service":{"ID":"x","Service":"x","y":"\q"}}])",
        "[{\"Node\":{\"Node\":\"n\tn\",\"Address\":\"a\"},\"Service\":{\"ID\":\"x\","
        "\"Service\":\"x\"}}]",
        "{}",
        "null",
        "",
        "[",
        "[{}]",
        "[[]]",
    };
    for (const char* body : cases) {
        EXPECT_FALSE(same_as_tree(body)) << body;
    }
}

TEST(read_service_entries_fast, agrees_on_every_truncation_and_deletion) {
    for (const std::string& body : {std::string(entries_body), std::string(consul_body)}) {
        for (std::size_t n = 0; n < body.size(); ++n) {
            EXPECT_FALSE(same_as_tree(body.substr(0, n))) << n;
            std::string cut = body;
            cut.erase(n, 1);
            same_as_tree(cut);
        }
    }
}

}  // namespace
}  // namespace lakemesh::consul::detail
