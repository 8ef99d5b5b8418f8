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

TEST(kv_codec, single_entry_reads_one_key_and_refuses_other_counts) {
    kv_pair e;
    diagnostics diag;
    ASSERT_FALSE(decode_single_kv_entry(std::string(" [") + plain_entry + "]\n", e, diag));
    EXPECT_EQ(e.key, "a/b");
    EXPECT_EQ(e.value, "hello");
    EXPECT_EQ(e.modify_index, 42u);
    // Shapes the fast reader leaves to the JSON decoder give the same entry.
    ASSERT_FALSE(decode_single_kv_entry(
        R"([{"Key":"a\"b","Value":"aGVsbG8=","CreateIndex":1,"ModifyIndex":2}])", e, diag));
    EXPECT_EQ(e.key, "a\"b");
    EXPECT_EQ(e.value, "hello");
    EXPECT_EQ(decode_single_kv_entry("[]", e, diag), decode_errc::wrong_type);
    EXPECT_EQ(
        decode_single_kv_entry(std::string("[") + plain_entry + "," + plain_entry + "]", e, diag),
        decode_errc::wrong_type);
    EXPECT_NE(diag.client_message().find("got 2"), std::string::npos);
    EXPECT_EQ(decode_single_kv_entry(R"([{"Key":"k","ModifyIndex":2}])", e, diag),
              decode_errc::missing_field);
    EXPECT_EQ(e, kv_pair{});  // nothing half-decoded is left behind
}

// The string scan looks at eight bytes at a time: a byte it must stop at (quote, backslash,
// control, DEL, non-ASCII) is found at every offset of a word, and the answer is the one the
// JSON decoder gives.
TEST(kv_codec, special_bytes_in_strings_at_every_offset) {
    for (std::size_t at = 0; at < 20; ++at) {
        const std::string before(at, 'a');
        const auto entry = [&](const std::string& key_json) {
            return R"([{"Key":")" + key_json + R"(","CreateIndex":1,"ModifyIndex":2}])";
        };
        kv_pair e;
        diagnostics diag;
        ASSERT_FALSE(decode_single_kv_entry(entry(before + R"(\/x)"), e, diag)) << at;
        EXPECT_EQ(e.key, before + "/x") << at;
        ASSERT_FALSE(decode_single_kv_entry(entry(before + "\x7fx"), e, diag)) << at;
        EXPECT_EQ(e.key, before + "\x7fx") << at;
        ASSERT_FALSE(decode_single_kv_entry(entry(before + "\xc3\xa9x"), e, diag)) << at;
        EXPECT_EQ(e.key, before + "\xc3\xa9x") << at;
        EXPECT_EQ(decode_single_kv_entry(entry(before + "\x01x"), e, diag),
                  decode_errc::malformed_json)
            << at;
        EXPECT_EQ(decode_single_kv_entry(entry(before + "\xffx"), e, diag),
                  decode_errc::malformed_json)
            << at;
        ASSERT_FALSE(decode_single_kv_entry(entry(before), e, diag)) << at;
        EXPECT_EQ(e.key, before) << at;
    }
}

}  // namespace
}  // namespace lakemesh::consul::detail
