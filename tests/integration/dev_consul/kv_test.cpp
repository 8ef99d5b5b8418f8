// KV endpoints of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "consul_target.hpp"

namespace lakemesh::test {
namespace {

class kv : public ::testing::Test {
  protected:
    consul_target target;
    raw_http c = target.client();
    std::string p = unique_name("kv");
};

TEST_F(kv, put_then_get_returns_base64_value_and_indexes) {
    auto put = c.put("/v1/kv/" + p + "/a?flags=42", "hello");
    ASSERT_EQ(put.status, 200u);
    EXPECT_EQ(put.body, "true");
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
    EXPECT_GE(get.index(), j[0]["ModifyIndex"].get<std::uint64_t>());
    EXPECT_EQ(get.header("x-consul-knownleader"), "true");
    EXPECT_TRUE(get.header("x-consul-lastcontact").has_value());
    EXPECT_EQ(get.header("content-type"), "application/json");
}

TEST_F(kv, empty_value_is_null_and_raw_returns_bytes) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/empty").body, "true");
    EXPECT_TRUE(c.get("/v1/kv/" + p + "/empty").json_body()[0]["Value"].is_null());
    std::string bytes("a\0b\xff", 4);
    ASSERT_EQ(c.put("/v1/kv/" + p + "/bin", bytes).body, "true");
    auto raw = c.get("/v1/kv/" + p + "/bin?raw");
    EXPECT_EQ(raw.status, 200u);
    EXPECT_EQ(raw.body, bytes);
}

TEST_F(kv, missing_key_is_404_with_index) {
    auto r = c.get("/v1/kv/" + p + "/nope");
    EXPECT_EQ(r.status, 404u);
    EXPECT_GT(r.index(), 0u);
}

TEST_F(kv, recurse_keys_and_separator) {
    for (auto k : {"a", "b/c", "b/d", "b/e/f", "c"}) {
        ASSERT_EQ(c.put("/v1/kv/" + p + "/" + k, "v").body, "true");
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
}

TEST_F(kv, cas_zero_creates_only_when_absent_and_cas_index_must_match) {
    EXPECT_EQ(c.put("/v1/kv/" + p + "/k?cas=0", "1").body, "true");
    EXPECT_EQ(c.put("/v1/kv/" + p + "/k?cas=0", "2").body, "false");
    auto idx = c.get("/v1/kv/" + p + "/k").json_body()[0]["ModifyIndex"].get<std::uint64_t>();
    EXPECT_EQ(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx + 1000), "3").body, "false");
    EXPECT_EQ(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx), "4").body, "true");
    EXPECT_EQ(c.put("/v1/kv/" + p + "/k?cas=" + std::to_string(idx), "5").body, "false");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/k?raw").body, "4");
}

TEST_F(kv, delete_single_cas_and_recurse) {
    for (auto k : {"x/1", "x/2", "y"}) {
        ASSERT_EQ(c.put("/v1/kv/" + p + "/" + k, "v").body, "true");
    }
    auto idx = c.get("/v1/kv/" + p + "/y").json_body()[0]["ModifyIndex"].get<std::uint64_t>();
    EXPECT_EQ(c.del("/v1/kv/" + p + "/y?cas=" + std::to_string(idx + 1)).body, "false");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/y").status, 200u);
    EXPECT_EQ(c.del("/v1/kv/" + p + "/y?cas=" + std::to_string(idx)).body, "true");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/y").status, 404u);
    EXPECT_EQ(c.del("/v1/kv/" + p + "/x?recurse").body, "true");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/?recurse").status, 404u);
    EXPECT_EQ(c.del("/v1/kv/" + p + "/never").body, "true");
}

TEST_F(kv, bad_input_gets_consul_status_codes) {
    EXPECT_EQ(c.put("/v1/kv/", "v").status, 400u);
    EXPECT_EQ(c.get("/v1/kv/").status, 400u);
    EXPECT_EQ(c.put("/v1/kv/" + p + "?flags=abc", "v").status, 400u);
    EXPECT_EQ(c.put("/v1/kv/" + p + "?cas=-1", "v").status, 400u);
    EXPECT_EQ(c.del("/v1/kv/" + p + "?cas=1&recurse").status, 400u);
    std::string big(512 * 1024 + 1, 'x');
    auto r = c.put("/v1/kv/" + p + "/big", big);
    EXPECT_EQ(r.status, 413u);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/big").status, 404u);
    // A value of exactly the limit is accepted.
    EXPECT_EQ(c.put("/v1/kv/" + p + "/big", std::string(512 * 1024, 'x')).status, 200u);
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
