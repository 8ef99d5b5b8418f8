// KV endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "consul_target.hpp"

namespace lakemesh::test {
namespace {

/// A 200 whose body is the JSON value true (Consul's answer to a KV write that happened).
bool yes(const http_reply& r) {
    return r.status == 200u && json::parse(r.body, nullptr, false) == json(true);
}
bool no(const http_reply& r) {
    return r.status == 200u && json::parse(r.body, nullptr, false) == json(false);
}

class kv : public ::testing::Test {
  protected:
    void TearDown() override { c.del("/v1/kv/" + p + "?recurse"); }

    std::uint64_t modify_index(const std::string& key) {
        return c.get("/v1/kv/" + key).json_body()[0]["ModifyIndex"].get<std::uint64_t>();
    }

    consul_target target;
    raw_http c = target.client();
    std::string p = unique_name("kv");
};

TEST_F(kv, put_then_get_returns_base64_value_and_indexes) {
    auto put = c.put("/v1/kv/" + p + "/a?flags=42", "hello");
    ASSERT_EQ(put.status, 200u);
    // consul agent -dev indents its JSON and ends it with a newline, bare booleans included.
    EXPECT_EQ(put.body, "true\n");
    EXPECT_EQ(put.header("content-type"), "application/json");
    auto get = c.get("/v1/kv/" + p + "/a");
    ASSERT_EQ(get.status, 200u);
    auto j = get.json_body();
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["Key"], p + "/a");
    EXPECT_EQ(j[0]["Value"], "aGVsbG8=");
    EXPECT_EQ(j[0]["Flags"], 42);
    EXPECT_EQ(j[0]["LockIndex"], 0);
    EXPECT_GT(j[0]["CreateIndex"].get<std::uint64_t>(), 0u);
    EXPECT_EQ(j[0]["CreateIndex"], j[0]["ModifyIndex"]);
    EXPECT_FALSE(j[0].contains("Session"));
    // Consul's field order, as its DirEntry struct declares it.
    EXPECT_EQ(get.body.find("\"LockIndex\""), get.body.find('"'));
    EXPECT_LT(get.body.find("\"Key\""), get.body.find("\"Flags\""));
    EXPECT_LT(get.body.find("\"Value\""), get.body.find("\"CreateIndex\""));
    // A read of one key answers with that key's ModifyIndex.
    EXPECT_EQ(get.index(), j[0]["ModifyIndex"].get<std::uint64_t>());
    EXPECT_EQ(get.header("x-consul-knownleader"), "true");
    EXPECT_EQ(get.header("x-consul-lastcontact"), "0");
    EXPECT_EQ(get.header("x-consul-query-backend"), "blocking-query");
    EXPECT_EQ(get.header("x-consul-default-acl-policy"), "allow");
    EXPECT_EQ(get.header("content-type"), "application/json");
    EXPECT_FALSE(get.header("x-consul-effective-consistency").has_value());
}

TEST_F(kv, empty_value_is_null_and_raw_returns_bytes_as_sandboxed_text) {
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/empty")));
    EXPECT_TRUE(c.get("/v1/kv/" + p + "/empty").json_body()[0]["Value"].is_null());
    std::string bytes("a\0b\xff", 4);
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/bin", bytes)));
    auto raw = c.get("/v1/kv/" + p + "/bin?raw");
    EXPECT_EQ(raw.status, 200u);
    EXPECT_EQ(raw.body, bytes);
    EXPECT_EQ(raw.header("content-type"), "text/plain");
    EXPECT_EQ(raw.header("content-security-policy"), "sandbox");
    EXPECT_EQ(raw.header("x-content-type-options"), "nosniff");
    EXPECT_EQ(raw.header("content-length"), "4");
}

TEST_F(kv, missing_key_is_404_with_the_tables_index_and_no_body) {
    auto r = c.get("/v1/kv/" + p + "/nope");
    EXPECT_EQ(r.status, 404u);
    EXPECT_EQ(r.body, "");
    EXPECT_FALSE(r.header("content-type").has_value());
    EXPECT_GT(r.index(), 0u);
    // The KV table's index covers every key: a write anywhere moves it.
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/elsewhere", "x")));
    const auto written = modify_index(p + "/elsewhere");
    EXPECT_GE(c.get("/v1/kv/" + p + "/nope").index(), written);
}

TEST_F(kv, recurse_keys_and_separator) {
    for (auto k : {"a", "b/c", "b/d", "b/e/f", "c"}) {
        ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/" + k, "v")));
    }
    auto rec = c.get("/v1/kv/" + p + "/b?recurse").json_body();
    ASSERT_EQ(rec.size(), 3u);
    EXPECT_EQ(rec[0]["Key"], p + "/b/c");
    auto keys = c.get("/v1/kv/" + p + "/?keys").json_body();
    EXPECT_EQ(keys.size(), 5u);
    auto sep = c.get("/v1/kv/" + p + "/?keys&separator=/").json_body();
    EXPECT_EQ(sep, json::array({p + "/a", p + "/b/", p + "/c"}));
    auto sep2 = c.get("/v1/kv/" + p + "/b/?keys&separator=/").json_body();
    EXPECT_EQ(sep2, json::array({p + "/b/c", p + "/b/d", p + "/b/e/"}));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/zzz?recurse").status, 404u);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/zzz?keys").status, 404u);
    // Consul looks at the presence of ?recurse, not its value.
    EXPECT_EQ(c.get("/v1/kv/" + p + "/b?recurse=false").json_body().size(), 3u);
}

// X-Consul-Index of a listing is what Consul's state store computes (kvsListTxn): the highest
// ModifyIndex under the prefix or of a tombstone (deleted key) under it, else the table index.
TEST_F(kv, listing_index_is_the_highest_index_under_the_prefix_tombstones_included) {
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/dir/a", "1")));
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/dir/b", "2")));
    const auto b = modify_index(p + "/dir/b");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/dir/?recurse").index(), b);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/dir/?keys").index(), b);

    // A write outside the prefix leaves the listing's index alone.
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/other", "x")));
    const auto other = modify_index(p + "/other");
    EXPECT_GT(other, b);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/dir/?recurse").index(), b);

    // Deleting a key under the prefix moves it, through the tombstone the delete leaves.
    ASSERT_TRUE(yes(c.del("/v1/kv/" + p + "/dir/b")));
    const auto after_delete = c.get("/v1/kv/" + p + "/dir/?recurse");
    EXPECT_GT(after_delete.index(), other);
    EXPECT_EQ(after_delete.json_body().size(), 1u);
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/other", "y")));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/dir/?recurse").index(), after_delete.index());
    EXPECT_EQ(c.get("/v1/kv/" + p + "/dir/?keys").index(), after_delete.index());

    // Deleted below the prefix, the listing is empty (404) but keeps the tombstone's index.
    ASSERT_TRUE(yes(c.del("/v1/kv/" + p + "/dir/a")));
    const auto gone = c.get("/v1/kv/" + p + "/dir/?recurse");
    EXPECT_EQ(gone.status, 404u);
    EXPECT_GT(gone.index(), after_delete.index());

    // Nothing under a prefix, ever: the table's index.
    const auto latest = modify_index(p + "/other");
    EXPECT_GE(c.get("/v1/kv/" + p + "/never/?recurse").index(), latest);
}

TEST_F(kv, writing_the_same_entry_again_keeps_its_modify_index) {
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/same?flags=3", "v")));
    const auto idx = modify_index(p + "/same");
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/same?flags=3", "v")));
    EXPECT_EQ(modify_index(p + "/same"), idx);
    ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/same?flags=4", "v")));
    EXPECT_GT(modify_index(p + "/same"), idx);
}

TEST_F(kv, cas_zero_creates_only_when_absent_and_cas_index_must_match) {
    EXPECT_TRUE(yes(c.put("/v1/kv/" + p + "/k?cas=0", "1")));
    EXPECT_TRUE(no(c.put("/v1/kv/" + p + "/k?cas=0", "2")));
    auto idx = modify_index(p + "/k");
    EXPECT_TRUE(no(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx + 1000), "3")));
    EXPECT_TRUE(yes(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx), "4")));
    EXPECT_TRUE(no(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx), "5")));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/k?raw").body, "4");
}

TEST_F(kv, delete_single_cas_and_recurse) {
    for (auto k : {"x/1", "x/2", "y"}) {
        ASSERT_TRUE(yes(c.put("/v1/kv/" + p + "/" + k, "v")));
    }
    auto idx = modify_index(p + "/y");
    EXPECT_TRUE(no(c.del("/v1/kv/" + p + "/y?cas=" + std::to_string(idx + 1))));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/y").status, 200u);
    EXPECT_TRUE(yes(c.del("/v1/kv/" + p + "/y?cas=" + std::to_string(idx))));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/y").status, 404u);
    // A CAS delete of a key that is not there succeeds: nothing to delete.
    EXPECT_TRUE(yes(c.del("/v1/kv/" + p + "/y?cas=" + std::to_string(idx))));
    EXPECT_TRUE(yes(c.del("/v1/kv/" + p + "/x?recurse")));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/?recurse").status, 404u);
    EXPECT_TRUE(yes(c.del("/v1/kv/" + p + "/never")));
}

// Consul 1.10 answers a malformed number with strconv's error and status 500, and names the
// whole query when flags conflict.
TEST_F(kv, bad_input_gets_consul_status_codes) {
    auto missing = c.put("/v1/kv/", "v");
    EXPECT_EQ(missing.status, 400u);
    EXPECT_EQ(missing.body, "Missing key name");
    EXPECT_EQ(c.get("/v1/kv/").status, 400u);
    EXPECT_EQ(c.del("/v1/kv/").status, 400u);
    auto flags = c.put("/v1/kv/" + p + "?flags=abc", "v");
    EXPECT_EQ(flags.status, 500u);
    EXPECT_EQ(flags.body, "strconv.ParseUint: parsing \"abc\": invalid syntax");
    EXPECT_EQ(flags.header("content-type"), "text/plain; charset=utf-8");
    auto cas = c.put("/v1/kv/" + p + "?cas=-1", "v");
    EXPECT_EQ(cas.status, 500u);
    EXPECT_EQ(cas.body, "strconv.ParseUint: parsing \"-1\": invalid syntax");
    auto big_flags = c.put("/v1/kv/" + p + "?flags=18446744073709551616", "v");
    EXPECT_EQ(big_flags.status, 500u);
    EXPECT_EQ(big_flags.body,
              "strconv.ParseUint: parsing \"18446744073709551616\": value out of range");
    auto del_cas = c.del("/v1/kv/" + p + "?cas=x");
    EXPECT_EQ(del_cas.status, 500u);
    auto conflict = c.del("/v1/kv/" + p + "?cas=1&recurse");
    EXPECT_EQ(conflict.status, 400u);
    EXPECT_EQ(conflict.body, "Conflicting flags: cas=1&recurse=");
    auto put_conflict = c.put("/v1/kv/" + p + "?cas=0&release=x", "v");
    EXPECT_EQ(put_conflict.status, 400u);
    EXPECT_EQ(put_conflict.body, "Conflicting flags: cas=0&release=x");
    EXPECT_EQ(c.get("/v1/kv/" + p).status, 404u);

    std::string big(512 * 1024 + 1, 'x');
    auto r = c.put("/v1/kv/" + p + "/big", big);
    EXPECT_EQ(r.status, 413u);
    EXPECT_EQ(r.body,
              "Request body(524289 bytes) too large, max size: 524288 bytes. See "
              "https://www.consul.io/docs/agent/options.html#kv_max_value_size.");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/big").status, 404u);
    // A value of exactly the limit is accepted.
    EXPECT_EQ(c.put("/v1/kv/" + p + "/big", std::string(512 * 1024, 'x')).status, 200u);
}

TEST_F(kv, lock_requests_with_malformed_or_unknown_sessions) {
    auto bogus = c.put("/v1/kv/" + p + "/l?acquire=bogus", "v");
    EXPECT_EQ(bogus.status, 500u);
    EXPECT_EQ(bogus.body,
              "raft apply failed: failed session lookup: index error: UUID must be 36 characters");
    const std::string unknown = "00000000-0000-0000-0000-000000000000";
    auto absent = c.put("/v1/kv/" + p + "/l?acquire=" + unknown, "v");
    EXPECT_EQ(absent.status, 500u);
    EXPECT_EQ(absent.body, "raft apply failed: invalid session \"" + unknown + "\"");
    auto empty = c.put("/v1/kv/" + p + "/l?acquire=", "v");
    EXPECT_EQ(empty.status, 500u);
    EXPECT_EQ(empty.body, "raft apply failed: missing session");
    // A release by a session that holds nothing is refused with false, not an error.
    EXPECT_TRUE(no(c.put("/v1/kv/" + p + "/l?release=" + unknown, "v")));
    EXPECT_EQ(c.get("/v1/kv/" + p + "/l").status, 404u);
}

TEST_F(kv, percent_encoded_keys_round_trip) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/sp%20ace%3Fq", "v").status, 200u);
    auto j = c.get("/v1/kv/" + p + "/sp%20ace%3Fq").json_body();
    EXPECT_EQ(j[0]["Key"], p + "/sp ace?q");
}

TEST_F(kv, write_raises_index_monotonically) {
    auto i1 = c.get("/v1/kv/" + p + "?recurse").index();
    c.put("/v1/kv/" + p + "/m", "1");
    auto i2 = c.get("/v1/kv/" + p + "/m").index();
    c.put("/v1/kv/" + p + "/m", "2");
    auto i3 = c.get("/v1/kv/" + p + "/m").index();
    EXPECT_LT(i1, i2);
    EXPECT_LT(i2, i3);
}

}  // namespace
}  // namespace lakemesh::test
