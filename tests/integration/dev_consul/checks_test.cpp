// HTTP, TCP and script checks that the agent runs itself, against tiny loopback servers.
#include "dev_hook.hpp"
#include "recording_http_server.hpp"
#include "test_certs.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

using loopback_http_server = recording_http_server;

/// A loopback port with nothing listening on it.
std::uint16_t closed_port() {
    asio::io_context io;
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint().port();
}

class checks : public ::testing::Test {
  protected:
    void TearDown() override { c.put("/v1/agent/service/deregister/" + name); }

    json check(const std::string& id) {
        auto all = c.get("/v1/agent/checks").json_body();
        return all.contains(id) ? all[id] : json();
    }
    bool status_becomes(const std::string& id, const std::string& want) {
        return eventually([&] {
            auto chk = check(id);
            return chk.is_object() && chk["Status"] == want;
        });
    }
    /// Lets the next interval run happen: the dev agent schedules on its virtual clock;
    /// a real agent just needs the (1 s) interval to pass in real time.
    void next_interval() {
        if (target.dev() != nullptr) {
            target.dev()->advance_clock(std::chrono::seconds(1));
        }
    }

    consul_target target;
    raw_http c = target.client();
    std::string name = unique_name("chk");
};

TEST_F(checks, http_check_follows_the_endpoint_status) {
    loopback_http_server server;
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/health";
    ASSERT_EQ(c.put("/v1/agent/service/register",
                    json{{"Name", name}, {"Check", {{"HTTP", url}, {"Interval", "1s"}}}}.dump())
                  .status,
              200u);
    const std::string id = "service:" + name;
    ASSERT_TRUE(status_becomes(id, "passing")) << check(id).dump();
    EXPECT_EQ(check(id)["Output"], "HTTP GET " + url + ": 200 OK Output: body-200");
    EXPECT_EQ(check(id)["Type"], "http");
    EXPECT_EQ(server.last_method(), "GET");

    server.status = 500;
    next_interval();
    ASSERT_TRUE(status_becomes(id, "critical")) << check(id).dump();
    EXPECT_EQ(check(id)["Output"],
              "HTTP GET " + url + ": 500 Internal Server Error Output: body-500");

    server.status = 429;
    next_interval();
    ASSERT_TRUE(status_becomes(id, "warning")) << check(id).dump();
}

TEST_F(checks, http_check_sends_method_headers_and_body) {
    loopback_http_server server;
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/probe?x=1";
    ASSERT_EQ(c.put("/v1/agent/service/register", json{{"Name", name},
                                                       {"Check",
                                                        {{"HTTP", url},
                                                         {"Method", "POST"},
                                                         {"Header", {{"X-Probe", {"yes"}}}},
                                                         {"Body", "ping"},
                                                         {"Interval", "1s"},
                                                         {"Timeout", "2s"}}}}
                                                      .dump())
                  .status,
              200u);
    ASSERT_TRUE(status_becomes("service:" + name, "passing"));
    EXPECT_EQ(server.last_method(), "POST");
    EXPECT_EQ(server.last_header("X-Probe"), "yes");
    EXPECT_EQ(server.last_body(), "ping");
}

TEST_F(checks, http_check_to_a_closed_port_is_critical) {
    const std::string port = std::to_string(closed_port());
    const std::string url = "http://127.0.0.1:" + port + "/";
    ASSERT_EQ(c.put("/v1/agent/service/register",
                    json{{"Name", name},
                         {"Check", {{"HTTP", url}, {"Interval", "1s"}, {"Status", "passing"}}}}
                        .dump())
                  .status,
              200u);
    ASSERT_TRUE(status_becomes("service:" + name, "critical"));
    // Go's error: the request, the dial and the errno text.
    EXPECT_EQ(check("service:" + name)["Output"],
              "Get \"" + url + "\": dial tcp 127.0.0.1:" + port + ": connect: connection refused");
}

TEST_F(checks, tcp_check_passes_on_a_listening_port_and_fails_on_a_closed_one) {
    asio::io_context io;
    tcp::acceptor listening(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const std::string open = "127.0.0.1:" + std::to_string(listening.local_endpoint().port());
    const std::string closed = "127.0.0.1:" + std::to_string(closed_port());
    ASSERT_EQ(c.put("/v1/agent/service/register",
                    json{{"Name", name},
                         {"Checks",
                          {{{"CheckID", name + "-open"}, {"TCP", open}, {"Interval", "1s"}},
                           {{"CheckID", name + "-closed"},
                            {"TCP", closed},
                            {"Interval", "1s"},
                            {"Status", "passing"}}}}}
                        .dump())
                  .status,
              200u);
    ASSERT_TRUE(status_becomes(name + "-open", "passing"));
    EXPECT_EQ(check(name + "-open")["Output"], "TCP connect " + open + ": Success");
    ASSERT_TRUE(status_becomes(name + "-closed", "critical"));
    EXPECT_TRUE(eventually([&] {
        return check(name + "-closed")["Output"] ==
               "dial tcp " + closed + ": connect: connection refused";
    })) << check(name + "-closed").dump();
    // A check of a service definition shows no Interval/Timeout in Consul 1.10.
    EXPECT_EQ(check(name + "-open")["Interval"], "");
    EXPECT_EQ(check(name + "-open")["Type"], "tcp");
}

TEST_F(checks, https_check_honours_tls_skip_verify) {
    // The probed HTTPS server is a second, TLS-serving dev agent with a self-signed certificate.
    self_signed_cert cert;
    ASSERT_TRUE(cert.ok());
    testing::dev_consul_options opts;
    opts.tls_cert_file = cert.cert_file();
    opts.tls_key_file = cert.key_file();
    testing::dev_consul tls_server(opts);
    const std::string url = tls_server.url() + "/v1/status/leader";
    ASSERT_EQ(c.put("/v1/agent/service/register", json{{"Name", name},
                                                       {"Checks",
                                                        {{{"CheckID", name + "-skip"},
                                                          {"HTTP", url},
                                                          {"TLSSkipVerify", true},
                                                          {"Interval", "1s"}},
                                                         {{"CheckID", name + "-verify"},
                                                          {"HTTP", url},
                                                          {"Interval", "1s"},
                                                          {"Status", "passing"}}}}}
                                                      .dump())
                  .status,
              200u);
    EXPECT_TRUE(status_becomes(name + "-skip", "passing")) << check(name + "-skip").dump();
    EXPECT_TRUE(status_becomes(name + "-verify", "critical")) << check(name + "-verify").dump();
    c.put("/v1/agent/service/deregister/" + name);
}

TEST_F(checks, deregistering_a_running_check_stops_it) {
    loopback_http_server server;
    const std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
    ASSERT_EQ(c.put("/v1/agent/service/register",
                    json{{"Name", name}, {"Check", {{"HTTP", url}, {"Interval", "1s"}}}}.dump())
                  .status,
              200u);
    ASSERT_TRUE(status_becomes("service:" + name, "passing"));
    ASSERT_EQ(c.put("/v1/agent/service/deregister/" + name).status, 200u);
    const int hits = server.hits.load();
    next_interval();
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    if (target.dev() != nullptr) {
        EXPECT_EQ(server.hits.load(), hits);
    }
    EXPECT_TRUE(check("service:" + name).is_null());
}

testing::dev_consul_options with_script_checks() {
    testing::dev_consul_options o;
    o.enable_script_checks = true;
    return o;
}

// Script checks run as Consul's CheckMonitor runs them: exit 0 passing, 1 warning, anything
// else critical, stdout and stderr captured, killed after the timeout. The real agent must run
// with -hcl 'enable_script_checks = true', as lakemesh-dev-consul can too.
class script_checks : public ::testing::Test {
  protected:
    void TearDown() override {
        for (const auto& id : ids) {
            c.put("/v1/agent/check/deregister/" + id);
        }
    }
    http_reply add(const std::string& id, const json& args, const std::string& timeout = "") {
        ids.push_back(id);
        json def{{"Name", id}, {"ID", id}, {"Args", args}, {"Interval", "1s"}};
        if (!timeout.empty()) {
            def["Timeout"] = timeout;
        }
        return c.put("/v1/agent/check/register", def.dump());
    }
    json check(const std::string& id) {
        auto all = c.get("/v1/agent/checks").json_body();
        return all.contains(id) ? all[id] : json();
    }
    bool becomes(const std::string& id, const std::string& status) {
        return eventually([&] {
            auto chk = check(id);
            return chk.is_object() && chk["Status"] == status;
        });
    }

    consul_target target{with_script_checks()};
    raw_http c = target.client();
    std::string name = unique_name("script");
    std::vector<std::string> ids;
};

TEST_F(script_checks, exit_codes_decide_the_status_and_output_is_captured) {
    ASSERT_EQ(add(name + "-ok", {"sh", "-c", "echo out; echo err >&2; exit 0"}).status, 200u);
    ASSERT_EQ(add(name + "-warn", {"sh", "-c", "echo careful; exit 1"}).status, 200u);
    ASSERT_EQ(add(name + "-bad", {"sh", "-c", "exit 2"}).status, 200u);
    ASSERT_TRUE(becomes(name + "-ok", "passing")) << check(name + "-ok").dump();
    EXPECT_EQ(check(name + "-ok")["Output"], "out\nerr\n");
    EXPECT_EQ(check(name + "-ok")["Type"], "script");
    EXPECT_EQ(check(name + "-ok")["Interval"], "1s");
    ASSERT_TRUE(becomes(name + "-warn", "warning")) << check(name + "-warn").dump();
    EXPECT_EQ(check(name + "-warn")["Output"], "careful\n");
    // Critical from the start, the check's output reaches the agent's copy at once.
    EXPECT_TRUE(eventually([&] { return check(name + "-bad")["Output"] == ""; }));
    EXPECT_EQ(check(name + "-bad")["Status"], "critical");
}

TEST_F(script_checks, a_script_over_its_timeout_is_killed_and_critical) {
    ASSERT_EQ(add(name + "-slow", {"sh", "-c", "echo started; sleep 30"}, "300ms").status, 200u);
    ASSERT_TRUE(eventually(
        [&] {
            return check(name + "-slow")["Output"].get<std::string>().starts_with(
                "Timed out (300ms) running check");
        },
        std::chrono::seconds(10)))
        << check(name + "-slow").dump();
    EXPECT_EQ(check(name + "-slow")["Status"], "critical");
    EXPECT_EQ(check(name + "-slow")["Output"], "Timed out (300ms) running check\n\nstarted\n");
}

TEST_F(script_checks, a_program_that_is_not_there_is_critical) {
    ASSERT_EQ(add(name + "-none", {"lakemesh-no-such-program"}).status, 200u);
    EXPECT_TRUE(eventually([&] {
        return check(name + "-none")["Output"] ==
               "exec: \"lakemesh-no-such-program\": executable file not found in $PATH";
    })) << check(name + "-none").dump();
}

TEST(script_checks_off, are_refused_unless_enabled) {
    consul_target target;
    LAKEMESH_NEEDS_DEV_HOOK(target, "options (the real agent runs with enable_script_checks)");
    auto c = target.client();
    const auto id = unique_name("script");
    auto r = c.put("/v1/agent/check/register",
                   json{{"Name", id}, {"Args", {"true"}}, {"Interval", "1s"}}.dump());
    EXPECT_EQ(r.status, 500u);
    EXPECT_EQ(r.body,
              "Scripts are disabled on this agent from remote calls; to enable, configure "
              "'enable_script_checks' to true");
    auto svc =
        c.put("/v1/agent/service/register",
              json{{"Name", id}, {"Check", {{"Args", {"true"}}, {"Interval", "1s"}}}}.dump());
    EXPECT_EQ(svc.status, 500u);
    EXPECT_FALSE(c.get("/v1/agent/services").json_body().contains(id));
}

}  // namespace
}  // namespace lakemesh::test
