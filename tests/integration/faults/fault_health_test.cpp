// health_scheduler whose Consul client goes through a fault_proxy, against dev_consul or the real
// agent: while TTL updates are stalled the agent lets the check expire to critical, a burst of
// resets follows, and once the fault clears the scheduler brings the check back to passing.
#include <lakemesh/consul/client.hpp>
#include <lakemesh/health/health_scheduler.hpp>

#include "../consul/typed_client_fixture.hpp"
#include "fault_proxy.hpp"
#include "run_future.hpp"

#include <functional>

namespace lakemesh::test {
namespace {

using namespace std::chrono_literals;
using health::health_scheduler;
using health::probe_check;
using health::probe_result;
using health::scheduler_config;
using health::service_definition;
using health::status;

class fault_health : public typed_client_fixture {
  protected:
    fault_proxy proxy{target.host(), target.port()};
    std::string svc = unique_name("fhs");
    raw_http agent = target.client();  // the test's own view of the agent, not proxied

    bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
        return test::run_until(io, pred, limit, 20ms);
    }
    std::string check_status(const std::string& id) {
        auto r = agent.get("/v1/agent/checks");
        if (r.status != 200) {
            return "";
        }
        auto j = r.json_body();
        return j.contains(id) ? j[id]["Status"].get<std::string>() : "absent";
    }
    void TearDown() override {
        proxy.clear();
        typed_client_fixture::TearDown();
    }
};

TEST_F(fault_health, ttl_checks_return_to_passing_after_a_stall_and_a_reset_burst) {
    auto cfg = target.client_config();
    cfg.addresses = {consul::agent_address{"127.0.0.1", proxy.port()}};
    cfg.request_timeout = 500ms;
    cfg.connect_timeout = 500ms;
    consul::client through(io, cfg);
    scheduler_config sc;
    sc.seed = 42;
    sc.backoff_base = 50ms;
    sc.backoff_cap = 300ms;
    health_scheduler hs(io, through, sc);

    const std::string id = svc + "-1";
    std::vector<health::service_check> checks;
    for (int i = 0; i < 2; ++i) {
        probe_check c;
        c.id = id + ":ttl" + std::to_string(i);
        c.probe = [] { return probe_result{status::passing, "up"}; };
        c.interval = 300ms;
        c.timeout = 200ms;
        c.ttl = 2s;
        checks.emplace_back(std::move(c));
    }
    service_definition d;
    d.registration.id = id;
    d.registration.name = svc;
    d.registration.port = 9100;
    d.checks = std::move(checks);
    ASSERT_FALSE(hs.register_service(d));
    registered.push_back(id);
    auto all_are = [&](const char* st) {
        return check_status(id + ":ttl0") == st && check_status(id + ":ttl1") == st;
    };
    ASSERT_TRUE(run_until([&] { return all_are("passing"); }, 15s));

    // Stalled: the updates reach the agent but its answers are held; the TTLs run out.
    proxy.set_fault({.stall = true});
    ASSERT_TRUE(run_until([&] { return proxy.counters().stalled > 0; }, 10s));
    proxy.set_fault({.blackhole = true});  // nothing reaches the agent any more
    ASSERT_TRUE(run_until([&] { return all_are("critical"); }, 15s))
        << "the TTLs never expired: updates crossed the fault";
    // Then a burst of resets: the open connections and every new one, before any update gets
    // through.
    const auto resets = proxy.counters().resets;
    proxy.set_fault({.reset_on_accept = true});
    proxy.drop_connections(/*reset=*/true);
    ASSERT_TRUE(run_until([&] { return proxy.counters().resets >= resets + 3; }, 15s));
    EXPECT_TRUE(all_are("critical"));

    proxy.clear();
    EXPECT_TRUE(run_until([&] { return all_are("passing"); }, 15s))
        << "after the fault: " << check_status(id + ":ttl0") << ", " << check_status(id + ":ttl1");
    std::optional<error_code> stopped;
    hs.async_stop([&](error_code ec) { stopped = ec; });
    ASSERT_TRUE(run_until([&] { return stopped.has_value(); }, 15s));
    EXPECT_FALSE(*stopped) << stopped->message();
}

}  // namespace
}  // namespace lakemesh::test
