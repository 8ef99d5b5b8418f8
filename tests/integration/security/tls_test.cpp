// TLS fails closed with the defaults: a client configured only with an https address (no CA,
// no verify setting, as CONSUL_HTTP_ADDR=https://... alone gives) refuses an agent whose
// certificate is self-signed, before any request, so the ACL token is never sent to it. Calls
// to service instances over TLS fail closed the same way with the defaults (http_pool_test's
// http_pool_tls_test cases, and mesh_integrator_test's
// an_instance_whose_meta_says_secure_is_called_over_verified_tls).
#include <lakemesh/consul/client.hpp>

#include "consul_target.hpp"
#include "test_certs.hpp"

#include <boost/asio/io_context.hpp>

#include <optional>

namespace lakemesh::test {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class security_tls : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(cert.ok());
        testing::dev_consul_options opts;
        opts.tls_cert_file = cert.cert_file();
        opts.tls_key_file = cert.key_file();
        opts.acl_token = "lmTlsToken";
        agent = std::make_unique<testing::dev_consul>(opts);
    }

    std::pair<error_code, diagnostics> put(const consul::client_config& cfg) {
        consul::client c(io, cfg);
        std::optional<std::pair<error_code, diagnostics>> out;
        c.async_kv_put("tls-key", "never", [&](error_code ec, auto r) { out.emplace(ec, r.diag); });
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (!out && std::chrono::steady_clock::now() < deadline) {
            io.restart();
            io.run_one_for(10ms);
        }
        EXPECT_TRUE(out) << "the request did not complete";
        return out.value_or(std::pair{error_code(asio::error::timed_out), diagnostics{}});
    }

    self_signed_cert cert{"127.0.0.1"};
    std::unique_ptr<testing::dev_consul> agent;
    asio::io_context io;
};

TEST_F(security_tls, verification_is_on_by_default_and_a_self_signed_agent_is_refused) {
    consul::client_config defaults;
    EXPECT_TRUE(defaults.tls.verify);
    auto cfg = defaults;
    cfg.addresses = {consul::agent_address{"127.0.0.1", agent->port()}};
    cfg.use_tls = true;
    cfg.token = "lmTlsToken";
    const auto served = agent->requests_served();
    const auto [ec, diag] = put(cfg);
    EXPECT_EQ(ec, transport_errc::tls_verify_failed) << ec.message();
    EXPECT_FALSE(diag.client_message().empty());
    EXPECT_EQ(diag.client_message().find("lmTlsToken"), std::string::npos);
    EXPECT_EQ(agent->requests_served(), served) << "nothing, and so no token, reached the agent";

    // The same agent trusted explicitly: the refusal above was the certificate, nothing else.
    cfg.tls.ca_file = cert.cert_file();
    const auto [ok, ok_diag] = put(cfg);
    EXPECT_FALSE(ok) << ok.message() << " " << ok_diag.to_string();
    EXPECT_GT(agent->requests_served(), served);
}

TEST_F(security_tls, an_https_address_from_the_environment_verifies_too) {
    const std::string addr = "https://127.0.0.1:" + std::to_string(agent->port());
    error_code env_ec;
    diagnostics env_diag;
    auto cfg = consul::client_config::from_env(
        [&](std::string_view name) -> std::optional<std::string> {
            if (name == "CONSUL_HTTP_ADDR") {
                return addr;
            }
            if (name == "CONSUL_HTTP_TOKEN") {
                return "lmTlsToken";
            }
            return std::nullopt;
        },
        env_ec, env_diag);
    ASSERT_FALSE(env_ec) << env_diag.to_string();
    EXPECT_TRUE(cfg.use_tls);
    EXPECT_TRUE(cfg.tls.verify);
    const auto served = agent->requests_served();
    const auto [ec, diag] = put(cfg);
    EXPECT_EQ(ec, transport_errc::tls_verify_failed) << ec.message();
    EXPECT_EQ(agent->requests_served(), served);
}

}  // namespace
}  // namespace lakemesh::test
