// Transaction endpoint of dev_consul (and of a real agent when CONSUL_HTTP_ADDR is set).
#include "dev_hook.hpp"

#include "core/base64.hpp"

#include <chrono>
#include <thread>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using lakemesh::detail::base64_encode;

json kv_op(const std::string& verb, const std::string& key, json extra = json::object()) {
    extra["Verb"] = verb;
    extra["Key"] = key;
    return json{{"KV", extra}};
}

class txn : public ::testing::Test {
  protected:
    void TearDown() override {
        c.del("/v1/kv/" + p + "?recurse");
        for (const auto& id : sessions_) {
            c.put("/v1/session/destroy/" + id);
        }
    }

    http_reply run(const json& ops) { return c.put("/v1/txn", ops.dump()); }

    std::uint64_t modify_index(const std::string& key) {
        return c.get("/v1/kv/" + key).json_body()[0]["ModifyIndex"].get<std::uint64_t>();
    }

    std::string new_session() {
        auto r = c.put("/v1/session/create", R"({"LockDelay":"0s"})");
        EXPECT_EQ(r.status, 200u) << r.body;
        auto id = r.json_body()["ID"].get<std::string>();
        sessions_.push_back(id);
        return id;
    }

    consul_target target;
    raw_http c = target.client();
    std::string p = unique_name("txn");
    std::vector<std::string> sessions_;
};

TEST_F(txn, set_returns_entries_without_values_under_one_index) {
    auto r = run(json::array({kv_op("set", p + "/a", {{"Value", base64_encode("1")}, {"Flags", 7}}),
                              kv_op("set", p + "/b", {{"Value", base64_encode("2")}})}));
    ASSERT_EQ(r.status, 200u) << r.body;
    auto j = r.json_body();
    EXPECT_TRUE(j["Errors"].is_null());
    ASSERT_EQ(j["Results"].size(), 2u);
    auto a = j["Results"][0]["KV"];
    EXPECT_EQ(a["Key"], p + "/a");
    EXPECT_EQ(a["Flags"], 7);
    EXPECT_TRUE(a["Value"].is_null());
    EXPECT_EQ(a["ModifyIndex"], j["Results"][1]["KV"]["ModifyIndex"]);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/a?raw").body, "1");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/b?raw").body, "2");
}

TEST_F(txn, failing_op_rolls_back_everything_with_409_shape) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/keep", "old").json_body(), json(true));
    auto idx = modify_index(p + "/keep");
    auto r = run(json::array(
        {kv_op("set", p + "/keep", {{"Value", base64_encode("new")}}),
         kv_op("set", p + "/fresh", {{"Value", base64_encode("x")}}),
         kv_op("cas", p + "/keep", {{"Value", base64_encode("cas")}, {"Index", idx + 1000}})}));
    EXPECT_EQ(r.status, 409u);
    EXPECT_EQ(r.header("content-type"), "application/json");
    auto j = r.json_body();
    EXPECT_TRUE(j["Results"].is_null());
    ASSERT_EQ(j["Errors"].size(), 1u);
    EXPECT_EQ(j["Errors"][0]["OpIndex"], 2);
    EXPECT_EQ(j["Errors"][0]["What"], "failed to set key \"" + p + "/keep\", index is stale");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/keep?raw").body, "old");
    EXPECT_EQ(modify_index(p + "/keep"), idx);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/fresh").status, 404u);
}

TEST_F(txn, cas_succeeds_with_current_index_and_zero_means_absent) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/k", "v1").json_body(), json(true));
    auto idx = modify_index(p + "/k");
    auto ok =
        run(json::array({kv_op("cas", p + "/k", {{"Value", base64_encode("v2")}, {"Index", idx}}),
                         kv_op("cas", p + "/new", {{"Value", base64_encode("n")}, {"Index", 0}})}));
    ASSERT_EQ(ok.status, 200u) << ok.body;
    EXPECT_EQ(c.get("/v1/kv/" + p + "/k?raw").body, "v2");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/new?raw").body, "n");
    auto again = run(json::array({kv_op("cas", p + "/new", {{"Index", 0}})}));
    EXPECT_EQ(again.status, 409u);
}

TEST_F(txn, get_and_get_tree_return_values) {
    for (auto k : {"t/1", "t/2", "u"}) {
        ASSERT_EQ(c.put("/v1/kv/" + p + "/" + k, k).json_body(), json(true));
    }
    auto r = run(json::array({kv_op("get", p + "/u"), kv_op("get-tree", p + "/t/")}));
    ASSERT_EQ(r.status, 200u) << r.body;
    auto results = r.json_body()["Results"];
    ASSERT_EQ(results.size(), 3u);
    EXPECT_EQ(results[0]["KV"]["Value"], base64_encode("u"));
    EXPECT_EQ(results[1]["KV"]["Key"], p + "/t/1");
    EXPECT_EQ(results[2]["KV"]["Value"], base64_encode("t/2"));
    // Read-only transactions carry leader headers like reads, but no index; their body carries
    // the query meta of Consul's read path.
    EXPECT_EQ(r.header("x-consul-knownleader"), "true");
    EXPECT_EQ(r.header("x-consul-lastcontact"), "0");
    EXPECT_FALSE(r.header("x-consul-index").has_value());
    auto body = r.json_body();
    EXPECT_TRUE(body["Errors"].is_null());
    EXPECT_EQ(body["Index"], 1);
    EXPECT_EQ(body["KnownLeader"], true);
    EXPECT_EQ(body["LastContact"], 0);
    EXPECT_EQ(body["ConsistencyLevel"], "");
    EXPECT_EQ(body["NotModified"], false);
    EXPECT_EQ(body["Backend"], 0);
    auto missing = run(json::array({kv_op("get", p + "/nope")}));
    EXPECT_EQ(missing.status, 409u);
    EXPECT_EQ(missing.json_body()["Errors"][0]["What"], "key \"" + p + "/nope\" doesn't exist");
    EXPECT_TRUE(missing.json_body()["Results"].is_null());
    EXPECT_EQ(missing.json_body()["KnownLeader"], true);
    // A KV verb Consul does not know is no write: it is refused on the read path.
    auto unknown = run(json::array({kv_op("frobnicate", p + "/u")}));
    EXPECT_EQ(unknown.status, 409u);
    EXPECT_EQ(unknown.json_body()["Errors"][0]["What"], "unknown KV verb \"frobnicate\"");
    EXPECT_EQ(unknown.json_body()["Index"], 1);
}

TEST_F(txn, catalog_gets_read_nodes_services_and_checks) {
    const auto node = target.node_name();
    auto r = run(json::array(
        {json{{"Node", {{"Verb", "get"}, {"Node", {{"Node", node}}}}}},
         json{{"Service", {{"Verb", "get"}, {"Node", node}, {"Service", {{"ID", "consul"}}}}}},
         json{{"Check",
               {{"Verb", "get"}, {"Check", {{"Node", node}, {"CheckID", "serfHealth"}}}}}}}));
    ASSERT_EQ(r.status, 200u) << r.body;
    auto results = r.json_body()["Results"];
    ASSERT_EQ(results.size(), 3u);
    EXPECT_EQ(results[0]["Node"]["Node"], node);
    EXPECT_EQ(results[1]["Service"]["Service"], "consul");
    EXPECT_EQ(results[2]["Check"]["CheckID"], "serfHealth");
    EXPECT_EQ(r.json_body()["KnownLeader"], true);
    auto missing = run(json::array(
        {json{{"Service", {{"Verb", "get"}, {"Node", node}, {"Service", {{"ID", p}}}}}}}));
    EXPECT_EQ(missing.status, 409u);
    EXPECT_EQ(missing.json_body()["Errors"][0]["What"],
              "service \"" + p + "\" on node \"" + node + "\" doesn't exist");
}

TEST_F(txn, check_index_check_not_exists_and_delete_cas) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/k", "v").json_body(), json(true));
    auto idx = modify_index(p + "/k");
    EXPECT_EQ(run(json::array({kv_op("check-index", p + "/k", {{"Index", idx}}),
                               kv_op("check-not-exists", p + "/absent")}))
                  .status,
              200u);
    auto stale = run(json::array({kv_op("check-index", p + "/k", {{"Index", idx + 1}})}));
    EXPECT_EQ(stale.status, 409u);
    EXPECT_EQ(stale.json_body()["Errors"][0]["What"],
              "failed index check for key \"" + p + "/k\", current modify index " +
                  std::to_string(idx) + " != " + std::to_string(idx + 1));
    EXPECT_EQ(run(json::array({kv_op("check-not-exists", p + "/k")})).status, 409u);

    EXPECT_EQ(run(json::array({kv_op("delete-cas", p + "/k", {{"Index", idx + 1}})})).status, 409u);
    EXPECT_EQ(c.get("/v1/kv/" + p + "/k").status, 200u);
    auto del = run(json::array({kv_op("delete-cas", p + "/k", {{"Index", idx}})}));
    EXPECT_EQ(del.status, 200u) << del.body;
    EXPECT_EQ(c.get("/v1/kv/" + p + "/k").status, 404u);
}

TEST_F(txn, delete_and_delete_tree) {
    for (auto k : {"d/1", "d/2", "e"}) {
        ASSERT_EQ(c.put("/v1/kv/" + p + "/" + k, "v").json_body(), json(true));
    }
    auto r = run(json::array({kv_op("delete-tree", p + "/d/"), kv_op("delete", p + "/e")}));
    EXPECT_EQ(r.status, 200u) << r.body;
    // Writes with nothing to report answer an empty list, and no query meta.
    EXPECT_EQ(r.json_body(), json({{"Results", json::array()}, {"Errors", nullptr}}));
    EXPECT_EQ(c.get("/v1/kv/" + p + "?recurse").status, 404u);
}

TEST_F(txn, lock_unlock_and_check_session) {
    auto a = new_session();
    auto b = new_session();
    const auto k = p + "/lock";
    auto locked =
        run(json::array({kv_op("lock", k, {{"Session", a}, {"Value", base64_encode("a")}})}));
    ASSERT_EQ(locked.status, 200u) << locked.body;
    auto entry = locked.json_body()["Results"][0]["KV"];
    EXPECT_EQ(entry["Session"], a);
    EXPECT_EQ(entry["LockIndex"], 1);

    auto held = run(json::array({kv_op("lock", k, {{"Session", b}})}));
    EXPECT_EQ(held.status, 409u);
    EXPECT_EQ(held.json_body()["Errors"][0]["What"],
              "failed to lock key \"" + k + "\", lock is already held");
    EXPECT_EQ(run(json::array({kv_op("check-session", k, {{"Session", a}})})).status, 200u);
    EXPECT_EQ(run(json::array({kv_op("check-session", k, {{"Session", b}})})).status, 409u);
    EXPECT_EQ(run(json::array({kv_op("unlock", k, {{"Session", b}})})).status, 409u);

    auto unlocked = run(json::array({kv_op("unlock", k, {{"Session", a}})}));
    ASSERT_EQ(unlocked.status, 200u) << unlocked.body;
    EXPECT_FALSE(unlocked.json_body()["Results"][0]["KV"].contains("Session"));
    auto relock = run(json::array({kv_op("lock", k, {{"Session", b}})}));
    ASSERT_EQ(relock.status, 200u) << relock.body;
    EXPECT_EQ(relock.json_body()["Results"][0]["KV"]["LockIndex"], 2);
    EXPECT_EQ(c.get("/v1/kv/" + k).json_body()[0]["Session"], b);
}

TEST_F(txn, lock_needs_a_valid_session) {
    auto none = run(json::array({kv_op("lock", p + "/l")}));
    EXPECT_EQ(none.status, 409u);
    EXPECT_EQ(none.json_body()["Errors"][0]["What"], "missing session");
    auto bogus = run(json::array(
        {kv_op("lock", p + "/l", {{"Session", "00000000-0000-0000-0000-000000000000"}})}));
    EXPECT_EQ(bogus.status, 409u);
    EXPECT_EQ(bogus.json_body()["Errors"][0]["What"],
              "invalid session \"00000000-0000-0000-0000-000000000000\"");
    auto malformed = run(json::array({kv_op("lock", p + "/l", {{"Session", "x"}})}));
    EXPECT_EQ(malformed.json_body()["Errors"][0]["What"],
              "failed session lookup: index error: UUID must be 36 characters");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/l").status, 404u);
}

TEST_F(txn, lock_delay_applies_to_txn_lock) {
    auto r = c.put("/v1/session/create", R"({"LockDelay":"10s"})");
    ASSERT_EQ(r.status, 200u);
    auto a = r.json_body()["ID"].get<std::string>();
    auto b = new_session();
    const auto k = p + "/delayed";
    ASSERT_EQ(run(json::array({kv_op("lock", k, {{"Session", a}})})).status, 200u);
    ASSERT_EQ(c.put("/v1/session/destroy/" + a).json_body(), json(true));
    auto refused = run(json::array({kv_op("lock", k, {{"Session", b}})}));
    EXPECT_EQ(refused.status, 409u);
    EXPECT_EQ(refused.json_body()["Errors"][0]["What"],
              "failed to lock key \"" + k + "\" due to lock delay");
    if (target.dev() != nullptr) {  // dev_consul's clock can skip the delay
        target.dev()->advance_clock(11s);
        EXPECT_EQ(run(json::array({kv_op("lock", k, {{"Session", b}})})).status, 200u);
    }
}

TEST_F(txn, bad_bodies_are_rejected) {
    auto not_json = c.put("/v1/txn", "{not json");
    EXPECT_EQ(not_json.status, 400u);
    EXPECT_EQ(not_json.body,
              "Failed to parse body: invalid character 'n' looking for beginning of object key "
              "string");
    auto object = c.put("/v1/txn", R"({"KV":{}})");
    EXPECT_EQ(object.status, 400u);
    EXPECT_EQ(object.body,
              "Failed to parse body: json: cannot unmarshal object into Go value of type "
              "api.TxnOps");
    auto base64 = run(json::array({kv_op("set", p + "/x", {{"Value", "%%%not-base64"}})}));
    EXPECT_EQ(base64.status, 400u);
    EXPECT_EQ(base64.body, "Failed to parse body: illegal base64 data at input byte 0");
    auto flags = run(json::array({kv_op("set", p + "/x", {{"Flags", "high"}})}));
    EXPECT_EQ(flags.status, 400u);
    EXPECT_EQ(flags.body,
              "Failed to parse body: json: cannot unmarshal string into Go struct field "
              "KVTxnOp.KV.Flags of type uint64");
    auto unknown = run(json::array({kv_op("set", p + "/x", {{"Bogus", 1}})}));
    EXPECT_EQ(unknown.status, 400u);
    EXPECT_EQ(unknown.body, "Failed to parse body: json: unknown field \"Bogus\"");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/x").status, 404u);
    json too_many = json::array();
    for (int i = 0; i < 65; ++i) {
        too_many.push_back(kv_op("set", p + "/m" + std::to_string(i)));
    }
    auto r = run(too_many);
    EXPECT_EQ(r.status, 413u);
    EXPECT_EQ(r.body, "Transaction contains too many operations (65 > 64)");
    EXPECT_EQ(c.get("/v1/kv/" + p + "/m0").status, 404u);
    too_many.erase(too_many.end() - 1);
    EXPECT_EQ(run(too_many).status, 200u);
}

TEST_F(txn, value_larger_than_kv_limit_is_413) {
    std::string big(512 * 1024 + 1, 'x');
    auto r = run(json::array({kv_op("set", p + "/big", {{"Value", base64_encode(big)}})}));
    EXPECT_EQ(r.status, 413u);
    EXPECT_TRUE(r.body.starts_with("Request body(")) << r.body;
    EXPECT_TRUE(r.body.ends_with("#txn_max_req_len.")) << r.body;
    EXPECT_EQ(c.get("/v1/kv/" + p + "/big").status, 404u);
}

TEST_F(txn, blocking_kv_get_is_woken_by_txn_write) {
    ASSERT_EQ(c.put("/v1/kv/" + p + "/w", "0").json_body(), json(true));
    auto first = c.get("/v1/kv/" + p + "/w");
    std::thread writer([&] {
        std::this_thread::sleep_for(50ms);
        raw_http other = target.client();
        other.put("/v1/txn",
                  json::array({kv_op("set", p + "/w", {{"Value", base64_encode("1")}})}).dump());
    });
    auto started = std::chrono::steady_clock::now();
    auto r = c.get("/v1/kv/" + p + "/w?index=" + std::to_string(first.index()) + "&wait=5s");
    writer.join();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
    EXPECT_GT(r.index(), first.index());
    EXPECT_EQ(r.json_body()[0]["Value"], base64_encode("1"));
}

}  // namespace
}  // namespace lakemesh::test
