// Transaction encoder, validation and answer decoder.
#include "consul/txn_codec.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace lakemesh::consul::detail {
namespace {

using json = nlohmann::json;
using v = txn_kv_verb;

TEST(txn_codec, encodes_every_verb_with_only_its_fields) {
    std::vector<txn_kv_op> ops{
        {.verb = v::set, .key = "a", .value = std::string("\0\xff", 2), .flags = 3},
        {.verb = v::cas, .key = "a", .value = "x", .index = 7},
        {.verb = v::get, .key = "a", .value = "ignored", .index = 9},
        {.verb = v::get_tree, .key = ""},
        {.verb = v::check_index, .key = "a", .index = 8},
        {.verb = v::check_session, .key = "a", .session = "s"},
        {.verb = v::check_not_exists, .key = "b"},
        {.verb = v::delete_key, .key = "a"},
        {.verb = v::delete_tree, .key = "p/"},
        {.verb = v::delete_cas, .key = "a", .index = 4},
        {.verb = v::lock, .key = "l", .value = "v", .session = "s"},
        {.verb = v::unlock, .key = "l", .session = "s"},
    };
    auto j = json::parse(encode_txn(ops));
    ASSERT_EQ(j.size(), ops.size());
    EXPECT_EQ(j[0], json::parse(R"({"KV":{"Verb":"set","Key":"a","Value":"AP8=","Flags":3}})"));
    EXPECT_EQ(j[1], json::parse(R"({"KV":{"Verb":"cas","Key":"a","Value":"eA==","Index":7}})"));
    EXPECT_EQ(j[2], json::parse(R"({"KV":{"Verb":"get","Key":"a"}})"));
    EXPECT_EQ(j[3]["KV"]["Verb"], "get-tree");
    EXPECT_EQ(j[4], json::parse(R"({"KV":{"Verb":"check-index","Key":"a","Index":8}})"));
    EXPECT_EQ(j[5], json::parse(R"({"KV":{"Verb":"check-session","Key":"a","Session":"s"}})"));
    EXPECT_EQ(j[6]["KV"]["Verb"], "check-not-exists");
    EXPECT_EQ(j[7]["KV"]["Verb"], "delete");
    EXPECT_EQ(j[8]["KV"]["Verb"], "delete-tree");
    EXPECT_EQ(j[9], json::parse(R"({"KV":{"Verb":"delete-cas","Key":"a","Index":4}})"));
    EXPECT_EQ(j[10],
              json::parse(R"({"KV":{"Verb":"lock","Key":"l","Value":"dg==","Session":"s"}})"));
    EXPECT_EQ(j[11], json::parse(R"({"KV":{"Verb":"unlock","Key":"l","Value":"","Session":"s"}})"));
    EXPECT_EQ(encode_txn({}), "[]");
}

TEST(txn_codec, read_only_means_no_write_verb) {
    EXPECT_TRUE(txn_is_read_only({}));
    EXPECT_TRUE(txn_is_read_only({{.verb = v::get, .key = "a"},
                                  {.verb = v::get_tree, .key = "a"},
                                  {.verb = v::check_index, .key = "a"},
                                  {.verb = v::check_session, .key = "a"},
                                  {.verb = v::check_not_exists, .key = "a"}}));
    for (auto w :
         {v::set, v::cas, v::delete_key, v::delete_tree, v::delete_cas, v::lock, v::unlock}) {
        EXPECT_FALSE(txn_is_read_only({{.verb = v::get, .key = "a"}, {.verb = w, .key = "a"}}))
            << txn_verb_name(w);
    }
}

TEST(txn_codec, validation) {
    diagnostics diag;
    EXPECT_FALSE(validate_txn({}, diag));
    std::vector<txn_kv_op> limit(max_txn_ops, txn_kv_op{.verb = v::get, .key = "k"});
    EXPECT_FALSE(validate_txn(limit, diag));
    limit.push_back(limit.back());
    EXPECT_EQ(validate_txn(limit, diag), validation_errc::invalid_argument);
    EXPECT_NE(diag.client_message().find("65"), std::string::npos);

    EXPECT_FALSE(validate_txn({{.verb = v::delete_tree, .key = ""}}, diag));
    EXPECT_FALSE(validate_txn({{.verb = v::get_tree, .key = ""}}, diag));
    EXPECT_EQ(validate_txn({{.verb = v::get, .key = ""}}, diag), validation_errc::invalid_key);
    EXPECT_EQ(validate_txn({{.verb = v::set, .key = "ok"}, {.verb = v::set, .key = "/bad"}}, diag),
              validation_errc::invalid_key);
    EXPECT_NE(diag.client_message().find("operation 1"), std::string::npos);
    EXPECT_EQ(validate_txn({{.verb = v::set, .key = "a\tb"}}, diag),
              validation_errc::control_character);
    for (auto needs_session : {v::lock, v::unlock, v::check_session}) {
        EXPECT_EQ(validate_txn({{.verb = needs_session, .key = "a"}}, diag),
                  validation_errc::invalid_name);
    }
    EXPECT_EQ(validate_txn({{.verb = static_cast<txn_kv_verb>(99), .key = "a"}}, diag),
              validation_errc::invalid_argument);
}

// Found by fuzz_txn_codec: a key or session that is not UTF-8 passed validation and then made
// encode_txn throw (json::dump), which the client reported as "out of memory".
TEST(txn_codec, validation_refuses_text_json_cannot_carry) {
    diagnostics diag;
    for (const char* bad : {"a\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
        EXPECT_EQ(validate_txn({{.verb = v::set, .key = "ok"}, {.verb = v::set, .key = bad}}, diag),
                  validation_errc::invalid_argument)
            << bad;
        EXPECT_NE(diag.client_message().find("operation 1"), std::string::npos);
        EXPECT_NE(diag.client_message().find("UTF-8"), std::string::npos);
        EXPECT_EQ(validate_txn({{.verb = v::lock, .key = "k", .session = bad}}, diag),
                  validation_errc::invalid_argument);
    }
    const std::vector<txn_kv_op> good{
        {.verb = v::set, .key = "caf\xc3\xa9/\xf0\x9f\x94\x92", .value = "\xff\x00"}};
    EXPECT_FALSE(validate_txn(good, diag));
    EXPECT_NO_THROW(encode_txn(good));
}

TEST(txn_codec, commit_answer) {
    txn_result out;
    diagnostics diag;
    ASSERT_FALSE(decode_txn_response(R"({"Results":[
        {"KV":{"LockIndex":0,"Key":"a","Flags":3,"Value":null,"CreateIndex":5,"ModifyIndex":6}},
        {"KV":{"LockIndex":1,"Key":"l","Flags":0,"Value":"dg==","Session":"s",
               "CreateIndex":7,"ModifyIndex":7}},
        {"Node":{"Node":"n"}}],"Errors":null})",
                                     out, diag))
        << diag.to_string();
    ASSERT_EQ(out.results.size(), 2u);
    EXPECT_EQ(out.results[0].key, "a");
    EXPECT_EQ(out.results[0].flags, 3u);
    EXPECT_TRUE(out.results[0].value.empty());
    EXPECT_EQ(out.results[0].modify_index, 6u);
    EXPECT_EQ(out.results[1].value, "v");
    EXPECT_EQ(out.results[1].session, "s");
    EXPECT_EQ(out.results[1].lock_index, 1u);
    EXPECT_TRUE(out.errors.empty());

    ASSERT_FALSE(decode_txn_response(R"({"Results":null,"Errors":null})", out, diag));
    EXPECT_TRUE(out.results.empty());
}

TEST(txn_codec, rollback_answer) {
    txn_result out;
    diagnostics diag;
    ASSERT_FALSE(decode_txn_response(R"({"Results":null,"Errors":[
        {"OpIndex":1,"What":"failed to set key \"x\", index is stale"},
        {"OpIndex":3,"What":"key \"y\" doesn't exist"}]})",
                                     out, diag));
    ASSERT_EQ(out.errors.size(), 2u);
    EXPECT_EQ(out.errors[0], (txn_op_error{1, "failed to set key \"x\", index is stale"}));
    EXPECT_EQ(out.errors[1].op_index, 3u);
    EXPECT_TRUE(out.results.empty());
}

TEST(txn_codec, bad_answers) {
    txn_result out;
    diagnostics diag;
    EXPECT_EQ(decode_txn_response("[]", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response(R"({"Results":{}})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response(R"({"Results":[{"KV":{"Flags":1}}]})", out, diag),
              decode_errc::missing_field);
    EXPECT_NE(diag.client_message().find("Results[0].KV.Key"), std::string::npos);
    EXPECT_EQ(decode_txn_response(R"({"Results":[{"KV":{"Key":"a","Value":"!!"}}]})", out, diag),
              decode_errc::invalid_base64);
    EXPECT_EQ(decode_txn_response(R"({"Results":[{"KV":{"Key":"a","Flags":-1}}]})", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response(R"({"Results":[7]})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response(R"({"Errors":[{"What":"x"}]})", out, diag),
              decode_errc::missing_field);
    EXPECT_EQ(decode_txn_response(R"({"Errors":[{"OpIndex":0,"What":1}]})", out, diag),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response(R"({"Errors":"boom"})", out, diag), decode_errc::wrong_type);
    EXPECT_EQ(decode_txn_response("{\"Results\":", out, diag), decode_errc::malformed_json);
    EXPECT_TRUE(out.results.empty());
    EXPECT_TRUE(out.errors.empty());
}

}  // namespace
}  // namespace lakemesh::consul::detail
