// consul::client through a fault_proxy in front of dev_consul or the real agent: a slow agent ends
// in the timeout error and the same client works again once the fault clears; bursts of reset,
// truncated and corrupted answers each end in a classified error (or a correct answer), never a
// hang; an oversized answer is refused by the body limit before it is read whole.
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "fault_proxy.hpp"
#include "run_future.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <optional>
#include <set>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

class fault_consul_client : public ::testing::Test {
  protected:
    consul_target target;
    fault_proxy proxy{target.host(), target.port()};
    asio::io_context io;
    std::string key = unique_name("faults") + "/k";

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
        return test::run_until(io, done, limit);
    }

    consul::client_config config() {
        auto cfg = target.client_config();
        cfg.addresses = {consul::agent_address{"127.0.0.1", proxy.port()}};
        cfg.connect_timeout = 1s;
        cfg.request_timeout = 2s;
        return cfg;
    }

    struct got {
        error_code ec;
        std::optional<consul::kv_pair> value;
    };
    /// One KV read, run until it completes; a hang fails the test.
    got get(consul::client& c) {
        std::optional<got> out;
        c.async_kv_get(key, {},
                       [&](error_code ec, consul::result<std::optional<consul::kv_pair>> r) {
                           out = got{ec, std::move(r.value)};
                       });
        EXPECT_TRUE(run_until([&] { return out.has_value(); }, 30s)) << "the read hung";
        return out.value_or(got{make_error_code(transport_errc::timeout), {}});
    }
    void put(consul::client& c, const std::string& value) {
        std::optional<error_code> done;
        c.async_kv_put(key, value, {}, [&](error_code ec, auto) { done = ec; });
        ASSERT_TRUE(run_until([&] { return done.has_value(); }, 30s));
        ASSERT_FALSE(*done) << done->message();
    }
    void TearDown() override {
        proxy.clear();
        target.client().del("/v1/kv/" + key);
    }
};

TEST_F(fault_consul_client, slow_agent_ends_in_the_timeout_then_the_same_client_works_again) {
    auto cfg = config();
    cfg.request_timeout = 300ms;
    consul::client c(io, cfg);
    put(c, "v1");
    ASSERT_EQ(c.open_connections(), 1u);
    proxy.set_fault({.latency = 10s});  // seconds per answer, on the pooled connection too
    for (int i = 0; i < 2; ++i) {
        auto start = clock_type::now();
        auto r = get(c);
        auto took = clock_type::now() - start;
        EXPECT_EQ(r.ec, transport_errc::timeout) << r.ec.message();
        EXPECT_GE(took, 300ms);
        EXPECT_LT(took, 8s) << "the read waited for the slow answer";
    }
    // A catalog read too.
    {
        std::optional<error_code> ec;
        const auto start = clock_type::now();
        c.catalog().async_services({}, [&](error_code e, auto) { ec = e; });
        ASSERT_TRUE(run_until([&] { return ec.has_value(); }, 30s));
        EXPECT_EQ(*ec, transport_errc::timeout) << ec->message();
        EXPECT_LT(clock_type::now() - start, 8s);
    }
    proxy.clear();
    auto r = get(c);
    ASSERT_FALSE(r.ec) << r.ec.message();
    ASSERT_TRUE(r.value);
    EXPECT_EQ(r.value->value, "v1") << "a pooled connection carried a stale answer";
    std::optional<error_code> catalog_ec;
    c.catalog().async_services({}, [&](error_code e, auto) { catalog_ec = e; });
    ASSERT_TRUE(run_until([&] { return catalog_ec.has_value(); }, 30s));
    EXPECT_FALSE(*catalog_ec) << catalog_ec->message();
    // And again, on whatever connection the pool kept.
    r = get(c);
    ASSERT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.value->value, "v1");
}

TEST_F(fault_consul_client, bursts_of_broken_answers_end_in_classified_errors_then_recover) {
    consul::client c(io, config());
    // A value of 2000 bytes: its answer's body (base64 in JSON) is well past byte 1000.
    const std::string value(2000, 'v');
    put(c, value);
    struct burst {
        const char* name;
        proxy_fault fault;
        std::set<error_code> allowed;
    };
    const error_code closed = make_error_code(transport_errc::connection_closed);
    const error_code connect = make_error_code(transport_errc::connect_failed);
    const error_code all_failed = make_error_code(transport_errc::all_addresses_failed);
    const error_code protocol = make_error_code(transport_errc::protocol_error);
    const error_code malformed = make_error_code(decode_errc::malformed_json);
    std::vector<burst> bursts = {
        {"reset as the answer starts", {.reset_after = 0}, {closed, all_failed}},
        {"reset inside the head", {.reset_after = 40}, {closed, all_failed}},
        {"reset on accept", {.reset_on_accept = true}, {closed, all_failed, connect}},
        {"truncated head", {.truncate_after = 30}, {closed, all_failed, protocol}},
        {"truncated body", {.truncate_after = 1000}, {closed, all_failed, protocol}},
        {"garbage body", {.garbage_body = true, .seed = 21}, {malformed, protocol}},
        {"corrupted status line", {.flip_offsets = {0, 1, 2}}, {protocol}},
    };
    for (const auto& b : bursts) {
        SCOPED_TRACE(b.name);
        proxy.set_fault(b.fault);
        if (b.fault.reset_on_accept) {
            // Pooled connections closed too (as an agent closing idle connections would), so
            // that the reconnects meet the fault.
            proxy.drop_connections();
        }
        int failed = 0;
        for (int i = 0; i < 3; ++i) {
            auto r = get(c);
            failed += r.ec ? 1 : 0;
            if (!r.ec) {
                // A correct answer is acceptable; a wrong one never is.
                ASSERT_TRUE(r.value);
                EXPECT_EQ(r.value->value, value);
                continue;
            }
            EXPECT_TRUE(b.allowed.count(r.ec) == 1)
                << "unclassified error: " << r.ec.category().name() << ":" << r.ec.value() << " "
                << r.ec.message();
        }
        // The fault is on every connection: no read can have got through it.
        EXPECT_EQ(failed, 3) << "accepted " << proxy.counters().accepted << " corrupted "
                             << proxy.counters().corrupted << " open " << proxy.counters().open;
        proxy.clear();
        auto r = get(c);
        ASSERT_FALSE(r.ec) << "no recovery after the burst: " << r.ec.message();
        ASSERT_TRUE(r.value);
        EXPECT_EQ(r.value->value, value);
    }
    EXPECT_GT(proxy.counters().faults_applied, 0u);
}

TEST_F(fault_consul_client, an_oversized_answer_is_refused_before_it_is_read_whole) {
    consul::client writer(io, config());
    const std::string big(300 * 1024, 'x');  // its JSON answer (base64) is about 400 KiB
    put(writer, big);
    auto cfg = config();
    cfg.max_response_body = 4096;
    consul::client c(io, cfg);
    // 256 KiB/s: reading the whole answer would take more than a second.
    proxy.set_fault({.bytes_per_second = 256 * 1024});
    const auto before = proxy.counters().bytes_down;
    auto r = get(c);
    EXPECT_EQ(r.ec, decode_errc::body_too_large) << r.ec.message();
    const auto relayed = proxy.counters().bytes_down - before;
    EXPECT_LT(relayed, 100u * 1024u) << "the client read " << relayed << " bytes of the answer";
    proxy.clear();
    auto whole = get(writer);
    ASSERT_FALSE(whole.ec) << whole.ec.message();
    EXPECT_EQ(whole.value->value.size(), big.size());
}

}  // namespace
}  // namespace lakemesh::test
