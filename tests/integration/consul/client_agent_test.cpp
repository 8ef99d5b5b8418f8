// consul::client agent endpoints against dev_consul (or a real agent): self and members,
// service registration with TTL, HTTP and TCP checks read back through agent and health
// endpoints, TTL updates, standalone checks, maintenance, deregistration, validation and error
// mapping.
#include "typed_client_fixture.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using consul::agent_check;
using consul::agent_service;
using consul::check_definition;
using consul::check_status;
using consul::health_check;
using consul::service_entry;
using consul::service_registration;
using empty = std::monostate;
using checks_map = std::map<std::string, agent_check>;
using services_map = std::map<std::string, agent_service>;

class agent_test : public typed_client_fixture {
  protected:
    std::string svc = unique_name("svc");

    /// A service with one TTL check "<id>:ttl" in the given initial status.
    service_registration ttl_service(const std::string& id, check_status initial) {
        service_registration reg;
        reg.id = id;
        reg.name = svc;
        reg.port = 8080;
        reg.address = "127.0.0.1";
        check_definition ttl;
        ttl.id = id + ":ttl";
        ttl.name = "heartbeat";
        ttl.ttl = 60s;
        ttl.status = initial;
        reg.checks = {ttl};
        return reg;
    }

    checks_map agent_checks() {
        return ok<checks_map>([&](auto h) { c.agent().async_checks(std::move(h)); });
    }
    std::vector<health_check> service_checks() {
        return ok<std::vector<health_check>>(
            [&](auto h) { c.health().async_checks(svc, std::move(h)); });
    }
    std::optional<health_check> service_check(const std::string& id) {
        for (auto& chk : service_checks()) {
            if (chk.check_id == id) {
                return chk;
            }
        }
        return std::nullopt;
    }
};

TEST_F(agent_test, self_and_members_describe_the_agent) {
    auto self = ok<consul::agent_info>([&](auto h) { c.agent().async_self(std::move(h)); });
    EXPECT_EQ(self.node_name, target.node_name());
    EXPECT_FALSE(self.datacenter.empty());
    EXPECT_FALSE(self.version.empty());
    EXPECT_FALSE(self.address.empty());
    auto members = ok<std::vector<consul::agent_member>>(
        [&](auto h) { c.agent().async_members(std::move(h)); });
    auto me = std::find_if(members.begin(), members.end(),
                           [&](const auto& m) { return m.name == self.node_name; });
    ASSERT_NE(me, members.end());
    EXPECT_EQ(me->status, 1);  // alive
    EXPECT_EQ(me->tags.at("dc"), self.datacenter);
}

TEST_F(agent_test, registers_a_service_with_ttl_http_and_tcp_checks_and_reads_it_back) {
    const std::string id = svc + "-1";
    service_registration reg;
    reg.id = id;
    reg.name = svc;
    reg.tags = {"v1", "primary"};
    reg.meta = {{"version", "1.2.3"}};
    reg.port = 8080;
    reg.address = "127.0.0.1";
    reg.weights = consul::service_weights{.passing = 5, .warning = 2};
    check_definition ttl;
    ttl.id = id + ":ttl";
    ttl.name = "heartbeat";
    ttl.ttl = 30s;
    ttl.notes = "the service reports itself";
    check_definition http;
    http.id = id + ":http";
    http.name = "agent answers HTTP";
    http.http = "http://" + target.address() + "/v1/status/leader";
    http.method = "GET";
    http.header = {{"X-Probe", {"lakemesh"}}};
    // Consul staggers a check's first run randomly within its interval: keep it short.
    http.interval = 1s;
    http.timeout = 2s;
    check_definition tcp;
    tcp.id = id + ":tcp";
    tcp.name = "agent accepts TCP";
    tcp.tcp = target.address();
    tcp.interval = 1s;
    reg.checks = {ttl, http, tcp};
    reg.replace_existing_checks = true;
    register_service(reg);

    auto services = ok<services_map>([&](auto h) { c.agent().async_services(std::move(h)); });
    ASSERT_EQ(services.count(id), 1u);
    const auto& s = services.at(id);
    EXPECT_EQ(s.service, svc);
    EXPECT_EQ(s.tags, reg.tags);
    EXPECT_EQ(s.meta, reg.meta);
    EXPECT_EQ(s.port, 8080);
    EXPECT_EQ(s.address, "127.0.0.1");
    EXPECT_EQ(s.weights, (consul::service_weights{5, 2}));
    EXPECT_FALSE(s.datacenter.empty());

    // A filter narrows agent/services on the agent's side.
    consul::query_options only_mine;
    only_mine.filter = "Service == \"" + svc + "\"";
    auto filtered =
        ok<services_map>([&](auto h) { c.agent().async_services(only_mine, std::move(h)); });
    EXPECT_EQ(filtered.size(), 1u);

    auto checks = agent_checks();
    ASSERT_EQ(checks.count(id + ":ttl"), 1u);
    ASSERT_EQ(checks.count(id + ":http"), 1u);
    ASSERT_EQ(checks.count(id + ":tcp"), 1u);
    EXPECT_EQ(checks.at(id + ":ttl").type, "ttl");
    EXPECT_EQ(checks.at(id + ":ttl").status, check_status::critical);  // Consul's initial status
    EXPECT_EQ(checks.at(id + ":ttl").notes, "the service reports itself");
    EXPECT_EQ(checks.at(id + ":http").type, "http");
    EXPECT_EQ(checks.at(id + ":tcp").type, "tcp");
    for (const auto& suffix : {":ttl", ":http", ":tcp"}) {
        EXPECT_EQ(checks.at(id + suffix).service_id, id);
        EXPECT_EQ(checks.at(id + suffix).service_name, svc);
    }

    auto entries = ok<std::vector<service_entry>>(
        [&](auto h) { c.health().async_service(svc, std::move(h)); });
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].service.id, id);
    EXPECT_EQ(entries[0].node.node, target.node_name());
    EXPECT_EQ(entries[0].address(), "127.0.0.1");
    auto has = [&](const std::string& check_id) {
        return std::any_of(entries[0].checks.begin(), entries[0].checks.end(),
                           [&](const auto& chk) { return chk.check_id == check_id; });
    };
    EXPECT_TRUE(has(id + ":ttl") && has(id + ":http") && has(id + ":tcp"));
    EXPECT_EQ(entries[0].status(), check_status::critical);

    // The agent runs the HTTP and TCP probes against itself: both pass soon.
    EXPECT_TRUE(eventually(
        [&] {
            auto now = agent_checks();
            return now[id + ":http"].status == check_status::passing &&
                   now[id + ":tcp"].status == check_status::passing;
        },
        10s));
}

TEST_F(agent_test, grpc_check_and_deregister_critical_service_after) {
    const std::string id = svc + "-g";
    service_registration reg;
    reg.id = id;
    reg.name = svc;
    reg.port = 9090;
    check_definition grpc;
    grpc.id = id + ":grpc";
    grpc.name = "gRPC health";
    grpc.grpc = "127.0.0.1:1/lakemesh.Health";  // nothing listens: stays critical
    grpc.grpc_use_tls = true;
    grpc.interval = 10s;
    check_definition ttl;
    ttl.id = id + ":ttl";
    ttl.name = "heartbeat";
    ttl.ttl = 10s;
    ttl.deregister_critical_service_after = 1min;
    reg.checks = {grpc, ttl};
    register_service(reg);

    auto checks = agent_checks();
    ASSERT_EQ(checks.count(id + ":grpc"), 1u);
    EXPECT_EQ(checks.at(id + ":grpc").type, "grpc");
    EXPECT_EQ(checks.at(id + ":grpc").service_id, id);
    ASSERT_EQ(checks.count(id + ":ttl"), 1u);

    // Critical for longer than DeregisterCriticalServiceAfter: the agent removes the service.
    // Needs the dev agent's clock; a real agent would take over a minute.
    if (target.dev() == nullptr) {
        return;
    }
    ok<empty>([&](auto h) { c.agent().async_check_pass(id + ":ttl", "", std::move(h)); });
    target.dev()->advance_clock(30s);  // the TTL ran out 20 s ago
    EXPECT_EQ(agent_checks().at(id + ":ttl").status, check_status::critical);
    auto services = ok<services_map>([&](auto h) { c.agent().async_services(std::move(h)); });
    EXPECT_EQ(services.count(id), 1u);
    target.dev()->advance_clock(41s);  // critical for 61 s
    services = ok<services_map>([&](auto h) { c.agent().async_services(std::move(h)); });
    EXPECT_EQ(services.count(id), 0u);
    EXPECT_EQ(agent_checks().count(id + ":ttl"), 0u);
}

TEST_F(agent_test, ttl_pass_warn_fail_and_update_show_in_health_checks_and_state) {
    const std::string id = svc + "-1";
    const std::string check = id + ":ttl";
    register_service(ttl_service(id, check_status::critical));

    ok<empty>([&](auto h) { c.agent().async_check_pass(check, "all good", std::move(h)); });
    auto chk = service_check(check);
    ASSERT_TRUE(chk);
    EXPECT_EQ(chk->status, check_status::passing);
    EXPECT_EQ(chk->output, "all good");

    ok<empty>([&](auto h) { c.agent().async_check_warn(check, "slow disk", std::move(h)); });
    EXPECT_EQ(service_check(check)->status, check_status::warning);
    auto warning = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_state(consul::health_state::warning, std::move(h)); });
    EXPECT_TRUE(std::any_of(warning.begin(), warning.end(),
                            [&](const auto& x) { return x.check_id == check; }));

    ok<empty>([&](auto h) { c.agent().async_check_fail(check, "", std::move(h)); });
    EXPECT_EQ(service_check(check)->status, check_status::critical);
    auto passing = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_state(consul::health_state::passing, std::move(h)); });
    EXPECT_TRUE(std::none_of(passing.begin(), passing.end(),
                             [&](const auto& x) { return x.check_id == check; }));

    ok<empty>([&](auto h) {
        c.agent().async_check_update(check, check_status::warning, "queue depth 900", std::move(h));
    });
    chk = service_check(check);
    EXPECT_EQ(chk->status, check_status::warning);
    EXPECT_EQ(chk->output, "queue depth 900");

    // The node's checks include the service's.
    auto node = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_node(target.node_name(), std::move(h)); });
    EXPECT_TRUE(std::any_of(node.begin(), node.end(), [&](const auto& x) {
        return x.check_id == check && x.status == check_status::warning;
    }));
}

// A batch of updates: each has its own outcome, an invalid one is refused alone without being
// sent, and the batch shares one connection. (client_pipeline_test shows the wire side.)
TEST_F(agent_test, check_updates_pipeline_a_batch_with_an_outcome_per_update) {
    const std::string id = svc + "-batch";
    auto reg = ttl_service(id, check_status::critical);
    for (const char* extra : {":b", ":c"}) {
        auto more = reg.checks.front();
        more.id = id + extra;
        more.name = std::string("heartbeat") + extra;
        reg.checks.push_back(more);
    }
    register_service(reg);

    using consul::check_update;
    std::vector<check_update> batch{
        check_update{id + ":ttl", check_status::passing, "a is fine"},
        check_update{id + ":missing", check_status::passing, ""},
        check_update{"bad\r\nX-Evil: 1", check_status::passing, ""},
        check_update{id + ":b", check_status::warning, "b is slow"},
        check_update{id + ":c", check_status::maintenance, ""},
        check_update{id + ":c", check_status::critical, "c is down"},
    };
    auto* dev = target.dev();
    const auto before = dev ? dev->requests_served() : 0;
    auto out = call<std::vector<consul::check_update_outcome>>(
        [&](auto h) { c.agent().async_check_updates(batch, std::move(h)); });
    ASSERT_FALSE(out.first) << out.first.message();
    const auto& o = out.second.value;
    ASSERT_EQ(o.size(), batch.size());
    EXPECT_FALSE(o[0].error) << o[0].diag.to_string();
    // No such check: 1.11+ answers 404, 1.10 a 500 "does not have associated TTL"; both are
    // not_found, which is what tells the health scheduler the agent lost the check.
    EXPECT_EQ(o[1].error, consul_errc::not_found) << o[1].diag.to_string();
    EXPECT_TRUE(o[1].diag.http_status() == 404u || o[1].diag.http_status() == 500u)
        << o[1].diag.http_status();
    EXPECT_EQ(o[2].error, validation_errc::header_injection);
    EXPECT_NE(o[2].diag.client_message().find("check ID"), std::string::npos);
    EXPECT_FALSE(o[3].error) << o[3].diag.to_string();
    EXPECT_EQ(o[4].error, validation_errc::invalid_argument);
    EXPECT_FALSE(o[5].error) << o[5].diag.to_string();
    if (dev) {
        EXPECT_EQ(dev->requests_served(), before + 4);
        EXPECT_EQ(c.open_connections(0), 1u);
    }

    auto checks = agent_checks();
    EXPECT_EQ(checks[id + ":ttl"].status, check_status::passing);
    EXPECT_EQ(checks[id + ":ttl"].output, "a is fine");
    EXPECT_EQ(checks[id + ":b"].status, check_status::warning);
    EXPECT_EQ(checks[id + ":b"].output, "b is slow");
    EXPECT_EQ(checks[id + ":c"].status, check_status::critical);
    EXPECT_EQ(checks[id + ":c"].output, "c is down");

    // An empty batch completes with no outcomes and sends nothing.
    auto [ec, none] = call<std::vector<consul::check_update_outcome>>(
        [&](auto h) { c.agent().async_check_updates({}, std::move(h)); });
    EXPECT_FALSE(ec);
    EXPECT_TRUE(none.value.empty());
}

// A pipelined connection the agent drops part way: the unanswered updates go out again on a
// new connection (they are idempotent); an error answer stays that update's alone.
TEST_F(agent_test, check_updates_survive_a_dropped_connection_and_keep_errors_per_update) {
    LAKEMESH_NEEDS_DEV(target);
    const std::string id = svc + "-drop";
    auto reg = ttl_service(id, check_status::critical);
    auto more = reg.checks.front();
    more.id = id + ":b";
    more.name = "second";
    reg.checks.push_back(more);
    register_service(reg);  // leaves one kept-alive connection in the pool

    using consul::check_update;
    using outcomes = std::vector<consul::check_update_outcome>;
    auto updates = [&](check_status s, const std::string& output) {
        return std::vector<check_update>{check_update{id + ":ttl", s, output},
                                         check_update{id + ":b", s, output}};
    };
    target.dev()->fail_next(1, testing::dev_fault::drop_connection);
    auto [ec, r] = call<outcomes>([&](auto h) {
        c.agent().async_check_updates(updates(check_status::warning, "w"), std::move(h));
    });
    ASSERT_FALSE(ec);
    ASSERT_EQ(r.value.size(), 2u);
    EXPECT_FALSE(r.value[0].error) << r.value[0].diag.to_string();
    EXPECT_FALSE(r.value[1].error) << r.value[1].diag.to_string();
    auto checks = agent_checks();
    EXPECT_EQ(checks[id + ":ttl"].status, check_status::warning);
    EXPECT_EQ(checks[id + ":b"].status, check_status::warning);

    target.dev()->fail_next(1, testing::dev_fault::http_500);
    auto [ec2, r2] = call<outcomes>([&](auto h) {
        c.agent().async_check_updates(updates(check_status::passing, "p"), std::move(h));
    });
    ASSERT_FALSE(ec2);
    ASSERT_EQ(r2.value.size(), 2u);
    EXPECT_EQ(r2.value[0].error, consul_errc::internal_error);
    EXPECT_NE(r2.value[0].diag.server_message().find("injected fault"), std::string::npos);
    EXPECT_FALSE(r2.value[1].error) << r2.value[1].diag.to_string();
    checks = agent_checks();
    EXPECT_EQ(checks[id + ":ttl"].status, check_status::warning);
    EXPECT_EQ(checks[id + ":b"].status, check_status::passing);

    // An agent that is gone: every update fails with a transport error, none is lost silently.
    target.dev()->stop();
    auto [ec3, r3] = call<outcomes>([&](auto h) {
        c.agent().async_check_updates(updates(check_status::passing, "p"), std::move(h));
    });
    EXPECT_FALSE(ec3);
    ASSERT_EQ(r3.value.size(), 2u);
    EXPECT_TRUE(r3.value[0].error);
    EXPECT_TRUE(r3.value[1].error);
    EXPECT_TRUE(is_retryable(r3.value[0].error)) << r3.value[0].error.message();
    target.dev()->start();
}

TEST_F(agent_test, standalone_check_bound_to_a_service_then_deregistered) {
    const std::string id = svc + "-1";
    register_service(ttl_service(id, check_status::passing));
    check_definition def;
    def.id = id + ":extra";
    def.name = "extra";
    def.service_id = id;
    def.ttl = 60s;
    def.status = check_status::warning;
    ok<empty>([&](auto h) { c.agent().async_check_register(def, std::move(h)); });
    auto checks = agent_checks();
    ASSERT_EQ(checks.count(def.id), 1u);
    EXPECT_EQ(checks.at(def.id).service_id, id);
    EXPECT_EQ(checks.at(def.id).status, check_status::warning);
    auto entries = ok<std::vector<service_entry>>(
        [&](auto h) { c.health().async_service(svc, std::move(h)); });
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].status(), check_status::warning);

    ok<empty>([&](auto h) { c.agent().async_check_deregister(def.id, std::move(h)); });
    EXPECT_EQ(agent_checks().count(def.id), 0u);

    // Deregistering it again: Consul 1.10 (and dev_consul, which follows it) answers 200, 1.11+
    // answers 404 with its own words. Neither is worth a retry.
    auto [ec, r] =
        call<empty>([&](auto h) { c.agent().async_check_deregister(def.id, std::move(h)); });
    if (ec) {
        EXPECT_EQ(ec, consul_errc::not_found);
        EXPECT_EQ(r.diag.http_status(), 404u);
        EXPECT_NE(r.diag.server_message().find("Unknown check ID"), std::string::npos)
            << r.diag.server_message();
    }
    EXPECT_FALSE(is_retryable(ec));
    EXPECT_EQ(agent_checks().count(def.id), 0u);
}

TEST_F(agent_test, consul_rejections_map_to_bad_request_and_not_found) {
    // TTL and Interval together: Consul's 400 with its reason.
    check_definition both;
    both.name = unique_name("check");
    both.ttl = 10s;
    both.tcp = target.address();
    both.interval = 10s;
    auto [ec, r] = call<empty>([&](auto h) { c.agent().async_check_register(both, std::move(h)); });
    EXPECT_EQ(ec, consul_errc::bad_request);
    EXPECT_EQ(r.diag.http_status(), 400u);
    EXPECT_NE(r.diag.server_message().find("Interval and TTL"), std::string::npos)
        << r.diag.server_message();

    // pass on a check that is not a TTL check: Consul answers 500 "does not have associated
    // TTL", the same words 1.10 uses for an unknown check: the agent has no TTL check of that
    // ID, so it is not_found, not a server error worth retrying.
    const std::string id = svc + "-1";
    service_registration reg;
    reg.id = id;
    reg.name = svc;
    check_definition tcp;
    tcp.id = id + ":tcp";
    tcp.tcp = target.address();
    tcp.interval = 30s;
    reg.check = tcp;
    register_service(reg);
    auto [ec2, r2] =
        call<empty>([&](auto h) { c.agent().async_check_pass(tcp.id, "", std::move(h)); });
    EXPECT_EQ(ec2, consul_errc::not_found);
    EXPECT_EQ(r2.diag.http_status(), 500u);
    EXPECT_FALSE(is_retryable(ec2));
    EXPECT_NE(r2.diag.server_message().find("TTL"), std::string::npos) << r2.diag.server_message();
}

TEST_F(agent_test, service_maintenance_takes_the_instance_out_of_passing_results) {
    const std::string id = svc + "-1";
    register_service(ttl_service(id, check_status::passing));
    consul::health_service_options passing;
    passing.passing_only = true;
    auto healthy = [&] {
        return ok<std::vector<service_entry>>(
            [&](auto h) { c.health().async_service(svc, passing, std::move(h)); });
    };
    ASSERT_EQ(healthy().size(), 1u);

    ok<empty>([&](auto h) {
        c.agent().async_service_maintenance(id, true, "deploying v2", std::move(h));
    });
    EXPECT_TRUE(healthy().empty());
    auto maint = service_check(std::string(consul::service_maintenance_check_prefix) + id);
    ASSERT_TRUE(maint);
    EXPECT_EQ(maint->status, check_status::critical);
    EXPECT_EQ(maint->notes, "deploying v2");
    auto all = ok<std::vector<service_entry>>(
        [&](auto h) { c.health().async_service(svc, std::move(h)); });
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].status(), check_status::maintenance);

    ok<empty>([&](auto h) { c.agent().async_service_maintenance(id, false, "", std::move(h)); });
    EXPECT_EQ(healthy().size(), 1u);

    auto [ec, r] = call<empty>([&](auto h) {
        c.agent().async_service_maintenance(svc + "-unknown", true, "", std::move(h));
    });
    EXPECT_EQ(ec, consul_errc::not_found);
}

// Node maintenance takes every service of the node out of service: against a real agent shared
// with other tests it runs alone (suites *_exclusive).
class agent_test_exclusive : public agent_test {};

TEST_F(agent_test_exclusive, node_maintenance_applies_to_every_service_on_the_node) {
    const std::string id = svc + "-1";
    register_service(ttl_service(id, check_status::passing));
    ok<empty>(
        [&](auto h) { c.agent().async_node_maintenance(true, "kernel update", std::move(h)); });
    auto node = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_node(target.node_name(), std::move(h)); });
    // Leave maintenance before asserting, so a failure cannot leave a shared agent in it.
    ok<empty>([&](auto h) { c.agent().async_node_maintenance(false, "", std::move(h)); });
    auto maint = std::find_if(node.begin(), node.end(), [](const auto& x) {
        return x.check_id == consul::node_maintenance_check_id;
    });
    ASSERT_NE(maint, node.end());
    EXPECT_EQ(maint->notes, "kernel update");
    EXPECT_EQ(consul::aggregate_status(node), check_status::maintenance);
    auto after = ok<std::vector<health_check>>(
        [&](auto h) { c.health().async_node(target.node_name(), std::move(h)); });
    EXPECT_TRUE(std::none_of(after.begin(), after.end(), [](const auto& x) {
        return x.check_id == consul::node_maintenance_check_id;
    }));
}

TEST_F(agent_test, deregister_removes_the_service_and_its_checks) {
    const std::string id = svc + "-1";
    register_service(ttl_service(id, check_status::passing));
    ok<empty>([&](auto h) { c.agent().async_service_deregister(id, std::move(h)); });
    registered.clear();
    auto services = ok<services_map>([&](auto h) { c.agent().async_services(std::move(h)); });
    EXPECT_EQ(services.count(id), 0u);
    EXPECT_EQ(agent_checks().count(id + ":ttl"), 0u);
    auto entries = ok<std::vector<service_entry>>(
        [&](auto h) { c.health().async_service(svc, std::move(h)); });
    EXPECT_TRUE(entries.empty());

    // Again: 200 from Consul 1.10 (and dev_consul), 404 "Unknown service ID" from 1.11+.
    auto [ec, r] =
        call<empty>([&](auto h) { c.agent().async_service_deregister(id, std::move(h)); });
    if (ec) {
        EXPECT_EQ(ec, consul_errc::not_found);
        EXPECT_EQ(r.diag.http_status(), 404u);
    }
    EXPECT_FALSE(is_retryable(ec));
}

TEST_F(agent_test, invalid_names_are_rejected_before_sending) {
    // Runs on a real agent too; only the request count needs dev_consul.
    const auto before = target.dev() != nullptr ? target.dev()->requests_served() : 0;
    service_registration reg;
    reg.name = "web\r\nX-Evil: 1";
    auto [ec, r] =
        call<empty>([&](auto h) { c.agent().async_service_register(reg, std::move(h)); });
    EXPECT_EQ(ec, validation_errc::header_injection);
    EXPECT_NE(r.diag.client_message().find("service name"), std::string::npos);

    reg.name.clear();
    EXPECT_EQ(
        call<empty>([&](auto h) { c.agent().async_service_register(reg, std::move(h)); }).first,
        validation_errc::invalid_name);
    EXPECT_EQ(
        call<empty>([&](auto h) { c.agent().async_service_deregister("", std::move(h)); }).first,
        validation_errc::invalid_name);
    auto [ec2, r2] = call<empty>(
        [&](auto h) { c.agent().async_check_pass("check\r\nX: 1", "note", std::move(h)); });
    EXPECT_EQ(ec2, validation_errc::header_injection);
    EXPECT_NE(r2.diag.client_message().find("check ID"), std::string::npos);
    EXPECT_EQ(call<empty>([&](auto h) {
                  c.agent().async_check_update("c", check_status::maintenance, "", std::move(h));
              }).first,
              validation_errc::invalid_argument);
    check_definition negative;
    negative.name = "n";
    negative.ttl = -5s;
    EXPECT_EQ(
        call<empty>([&](auto h) { c.agent().async_check_register(negative, std::move(h)); }).first,
        validation_errc::invalid_duration);
    if (target.dev() != nullptr) {
        EXPECT_EQ(target.dev()->requests_served(), before);
    }
}

TEST_F(agent_test, works_from_a_coroutine_with_named_options) {
    const std::string id = svc + "-co";
    auto reg = ttl_service(id, check_status::critical);
    registered.push_back(id);
    std::vector<health_check> seen;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            auto agent = c.agent();
            co_await agent.async_service_register(reg, asio::use_awaitable);
            co_await agent.async_check_pass(id + ":ttl", "from a coroutine", asio::use_awaitable);
            consul::query_options q;
            q.consistency = consul::consistency_mode::consistent;
            auto r = co_await c.health().async_checks(svc, q, asio::use_awaitable);
            seen = std::move(r.value);
        },
        asio::detached);
    io.restart();
    io.run();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].status, check_status::passing);
    EXPECT_EQ(seen[0].output, "from a coroutine");
}

}  // namespace
}  // namespace lakemesh::test
