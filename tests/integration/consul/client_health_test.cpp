// consul::client health endpoints against dev_consul (or a real agent): passing-only and tag
// selection, checks by service, state and node, query meta, and a blocking health/service query
// woken by a check status change.
#include "typed_client_fixture.hpp"

#include <algorithm>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using consul::check_definition;
using consul::check_status;
using consul::health_check;
using consul::service_entry;
using consul::service_registration;
using empty = std::monostate;
using entries_t = std::vector<service_entry>;

class health_test : public typed_client_fixture {
  protected:
    std::string svc = unique_name("svc");

    /// Registers instance `id` of `svc` with one TTL check "<id>:ttl" in status `initial`.
    void add_instance(const std::string& id, std::vector<std::string> tags, check_status initial) {
        service_registration reg;
        reg.id = id;
        reg.name = svc;
        reg.tags = std::move(tags);
        reg.port = 9000;
        check_definition ttl;
        ttl.id = id + ":ttl";
        ttl.ttl = 60s;
        ttl.status = initial;
        reg.check = ttl;
        register_service(reg);
    }

    std::vector<std::string> ids(const entries_t& entries) {
        std::vector<std::string> out;
        for (const auto& e : entries) {
            out.push_back(e.service.id);
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    entries_t instances(const consul::health_service_options& o) {
        return ok<entries_t>([&](auto h) { c.health().async_service(svc, o, std::move(h)); });
    }
};

TEST_F(health_test, passing_only_keeps_instances_whose_every_check_passes) {
    add_instance(svc + "-a", {}, check_status::passing);
    add_instance(svc + "-b", {}, check_status::critical);
    add_instance(svc + "-c", {}, check_status::warning);
    consul::health_service_options all;
    EXPECT_EQ(ids(instances(all)), (std::vector<std::string>{svc + "-a", svc + "-b", svc + "-c"}));
    consul::health_service_options passing;
    passing.passing_only = true;
    EXPECT_EQ(ids(instances(passing)), std::vector<std::string>{svc + "-a"});

    // Passing the critical one brings it in.
    ok<empty>([&](auto h) { c.agent().async_check_pass(svc + "-b:ttl", "", std::move(h)); });
    EXPECT_EQ(ids(instances(passing)), (std::vector<std::string>{svc + "-a", svc + "-b"}));
}

TEST_F(health_test, tags_select_instances_carrying_all_of_them) {
    add_instance(svc + "-a", {"blue", "v1"}, check_status::passing);
    add_instance(svc + "-b", {"blue"}, check_status::passing);
    add_instance(svc + "-c", {"green"}, check_status::passing);
    consul::health_service_options blue;
    blue.tags = {"blue"};
    EXPECT_EQ(ids(instances(blue)), (std::vector<std::string>{svc + "-a", svc + "-b"}));
    consul::health_service_options blue_v1;
    blue_v1.tags = {"blue", "v1"};
    EXPECT_EQ(ids(instances(blue_v1)), std::vector<std::string>{svc + "-a"});
    consul::health_service_options none;
    none.tags = {"red"};
    EXPECT_TRUE(instances(none).empty());
}

TEST_F(health_test, filter_and_query_meta) {
    add_instance(svc + "-a", {"x"}, check_status::passing);
    add_instance(svc + "-b", {}, check_status::passing);
    consul::query_options q;
    q.filter = "\"x\" in Service.Tags";
    auto [ec, r] = call<entries_t>([&](auto h) { c.health().async_service(svc, q, std::move(h)); });
    ASSERT_FALSE(ec) << r.diag.to_string();
    EXPECT_EQ(ids(r.value), std::vector<std::string>{svc + "-a"});
    EXPECT_GT(r.meta.index, 0u);
    EXPECT_TRUE(r.meta.known_leader);

    consul::query_options bad;
    bad.filter = "Service.Tags ==";
    auto [ec2, r2] =
        call<entries_t>([&](auto h) { c.health().async_service(svc, bad, std::move(h)); });
    EXPECT_EQ(ec2, consul_errc::bad_request);
    EXPECT_FALSE(r2.diag.server_message().empty());
}

TEST_F(health_test, unknown_service_is_an_empty_answer) {
    auto [ec, r] =
        call<entries_t>([&](auto h) { c.health().async_service(svc + "-nobody", std::move(h)); });
    EXPECT_FALSE(ec);
    EXPECT_TRUE(r.value.empty());
    EXPECT_GT(r.meta.index, 0u);
    auto checks = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_checks(svc + "-nobody", std::move(h)); });
    EXPECT_TRUE(checks.empty());
}

TEST_F(health_test, checks_state_and_node) {
    add_instance(svc + "-a", {}, check_status::passing);
    add_instance(svc + "-b", {}, check_status::critical);
    auto checks =
        ok<std::vector<health_check>>([&](auto h) { c.health().async_checks(svc, std::move(h)); });
    ASSERT_EQ(checks.size(), 2u);
    auto critical = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_state(consul::health_state::critical, std::move(h)); });
    auto in = [](const std::vector<health_check>& v, const std::string& id) {
        return std::any_of(v.begin(), v.end(), [&](const auto& x) { return x.check_id == id; });
    };
    EXPECT_TRUE(in(critical, svc + "-b:ttl"));
    EXPECT_FALSE(in(critical, svc + "-a:ttl"));
    auto any = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_state(consul::health_state::any, std::move(h)); });
    EXPECT_TRUE(in(any, svc + "-a:ttl") && in(any, svc + "-b:ttl"));
    auto node = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_node(target.node_name(), std::move(h)); });
    EXPECT_TRUE(in(node, svc + "-a:ttl") && in(node, "serfHealth"));
}

TEST_F(health_test, blocking_service_query_wakes_on_a_check_status_change) {
    const std::string id = svc + "-a";
    add_instance(id, {}, check_status::critical);
    auto [ec, first] =
        call<entries_t>([&](auto h) { c.health().async_service(svc, std::move(h)); });
    ASSERT_FALSE(ec);
    ASSERT_EQ(first.value.size(), 1u);
    EXPECT_EQ(first.value[0].status(), check_status::critical);

    consul::query_options q;
    q.index = first.meta.index;
    q.wait = 10s;
    std::optional<std::pair<error_code, consul::result<entries_t>>> woken;
    auto hold = [&] {
        woken.reset();
        c.health().async_service(svc, q, [&](error_code e, consul::result<entries_t> r) {
            woken.emplace(e, std::move(r));
        });
        io.restart();
    };
    hold();
    if (auto* d = target.dev()) {
        while (d->blocking_queries() == 0) {
            io.run_one_for(5ms);
        }
    } else {
        // A real agent may answer early without the check having changed: its anti-entropy
        // sync of the fresh registration moves the index, and Consul documents such wake-ups.
        // Hold again at the index it answered, until a query stays held for 300 ms.
        for (int i = 0; i < 10; ++i) {
            io.run_for(300ms);
            if (!woken) {
                break;
            }
            ASSERT_FALSE(woken->first) << woken->second.diag.to_string();
            ASSERT_EQ(woken->second.value.size(), 1u);
            EXPECT_EQ(woken->second.value[0].status(), check_status::critical);
            q.index = woken->second.meta.index;
            hold();
        }
    }
    EXPECT_FALSE(woken) << "the query answered before anything changed";
    // A second client changes the check while the query is held.
    boost::asio::io_context io2;
    consul::client writer(io2, target.client_config());
    error_code pass_ec;
    writer.agent().async_check_pass(id + ":ttl", "up", [&](error_code e, auto) { pass_ec = e; });
    io2.run();
    ASSERT_FALSE(pass_ec) << pass_ec.message();
    const auto start = std::chrono::steady_clock::now();
    while (!woken) {
        io.run_one_for(10ms);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    ASSERT_FALSE(woken->first) << woken->second.diag.to_string();
    EXPECT_GT(woken->second.meta.index, q.index);
    ASSERT_EQ(woken->second.value.size(), 1u);
    EXPECT_EQ(woken->second.value[0].status(), check_status::passing);
}

TEST_F(health_test, invalid_names_are_rejected_before_sending) {
    // Runs on a real agent too; only the request count needs dev_consul.
    const auto before = target.dev() != nullptr ? target.dev()->requests_served() : 0;
    auto [ec, r] = call<entries_t>(
        [&](auto h) { c.health().async_service("web\r\nX-Evil: 1", std::move(h)); });
    EXPECT_EQ(ec, validation_errc::header_injection);
    EXPECT_NE(r.diag.client_message().find("service name"), std::string::npos);
    EXPECT_EQ(call<entries_t>([&](auto h) { c.health().async_service("", std::move(h)); }).first,
              validation_errc::invalid_name);
    consul::health_service_options bad_tag;
    bad_tag.tags = {"ok", "bad\x01"};
    EXPECT_EQ(call<entries_t>([&](auto h) {
                  c.health().async_service(svc, bad_tag, std::move(h));
              }).first,
              validation_errc::control_character);
    consul::query_options bad_dc;
    bad_dc.datacenter = "dc1\n";
    EXPECT_EQ(call<std::vector<health_check>>([&](auto h) {
                  c.health().async_node("n", bad_dc, std::move(h));
              }).first,
              validation_errc::header_injection);
    EXPECT_EQ(call<std::vector<health_check>>([&](auto h) {
                  c.health().async_checks("", std::move(h));
              }).first,
              validation_errc::invalid_name);
    if (target.dev() != nullptr) {
        EXPECT_EQ(target.dev()->requests_served(), before);
    }
}

}  // namespace
}  // namespace lakemesh::test
