// decode_kv_entries: the tree-free reader for the common shape and the full JSON decoder it
// falls back to must give the same answers.
#include "consul/kv_codec.hpp"

#include <gtest/gtest.h>

namespace lakemesh::consul::detail {
namespace {

// "hello" in base64.
constexpr const char* plain_entry =
    R"({"LockIndex":0,"Key":"a/b","Flags":7,"Value":"aGVsbG8=","CreateIndex":41,"ModifyIndex":42})";

std::vector<kv_pair> decode_ok(const std::string& body) {
    std::vector<kv_pair> out;
    diagnostics diag;
    auto ec = decode_kv_entries(body, out, diag);
    EXPECT_FALSE(ec) << body << ": " << ec.message() << " " << diag.client_message();
    return out;
}

error_code decode_err(const std::string& body) {
    std::vector<kv_pair> out;
    diagnostics diag;
    auto ec = decode_kv_entries(body, out, diag);
    EXPECT_TRUE(ec) << body;
    return ec;
}

TEST(kv_codec, common_shape) {
    auto v = decode_ok(std::string("[") + plain_entry + "]");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key, "a/b");
    EXPECT_EQ(v[0].value, "hello");
    EXPECT_EQ(v[0].flags, 7u);
    EXPECT_EQ(v[0].session, "");
    EXPECT_EQ(v[0].create_index, 41u);
    EXPECT_EQ(v[0].modify_index, 42u);
    EXPECT_TRUE(decode_ok(" [ ] \n").empty());
    EXPECT_EQ(decode_ok(std::string("[") + plain_entry + " ,\n " + plain_entry + "]").size(), 2u);
}

TEST(kv_codec, shapes_the_fast_reader_leaves_to_the_json_parser) {
    // Escapes and non-ASCII text in strings.
    auto v = decode_ok(
        R"([{"Key":"a\"b\u00e9","Value":"aGVsbG8=","Session":"s\/1","CreateIndex":1,"ModifyIndex":2}])");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key, "a\"b\xc3\xa9");
    EXPECT_EQ(v[0].session, "s/1");
    EXPECT_EQ(v[0].value, "hello");
    // Nested and fractional values in fields the client does not use.
    v = decode_ok(
        R"([{"Key":"k","Extra":{"x":[1,2]},"Weight":-1.5,"CreateIndex":1,"ModifyIndex":2}])");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].value, "");
    // null means absent.
    v = decode_ok(R"([{"Key":"k","Value":null,"Session":null,"Flags":null,"CreateIndex":1,)"
                  R"("ModifyIndex":2}])");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].flags, 0u);
    // A repeated field: the last one counts, in both readers.
    v = decode_ok(R"([{"Key":"first","Key":"second","CreateIndex":1,"ModifyIndex":2}])");
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].key, "second");
}

TEST(kv_codec, errors_come_from_the_json_decoder) {
    EXPECT_EQ(decode_err(""), decode_errc::malformed_json);
    EXPECT_EQ(decode_err(std::string("[") + plain_entry), decode_errc::malformed_json);
    EXPECT_EQ(decode_err(std::string("[") + plain_entry + "]x"), decode_errc::malformed_json);
    EXPECT_EQ(decode_err(R"({"Key":"k"})"), decode_errc::wrong_type);
    EXPECT_EQ(decode_err(R"([{"Key":"k","ModifyIndex":2}])"), decode_errc::missing_field);
    EXPECT_EQ(decode_err(R"([{"Key":"k","CreateIndex":null,"ModifyIndex":2}])"),
              decode_errc::missing_field);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Flags":-1,"CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Flags":1.5,"CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Flags":01,"CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::malformed_json);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Flags":99999999999999999999,"CreateIndex":1,)"
                         R"("ModifyIndex":2}])"),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_err(R"([{"Key":7,"CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::wrong_type);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Value":"!!","CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::invalid_base64);
    EXPECT_EQ(decode_err(R"([{"Key":"k","Extra":nul,"CreateIndex":1,"ModifyIndex":2}])"),
              decode_errc::malformed_json);
}

TEST(kv_codec, errors_name_the_entry_and_field) {
    std::vector<kv_pair> out;
    diagnostics diag;
    auto body = std::string("[") + plain_entry + R"(,{"Key":"k"}])";
    EXPECT_EQ(decode_kv_entries(body, out, diag), decode_errc::missing_field);
    EXPECT_NE(diag.client_message().find("KV[1].CreateIndex"), std::string::npos);
}

}  // namespace
}  // namespace lakemesh::consul::detail
